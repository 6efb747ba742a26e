"""Structural safety checks for untrusted `.tflite` files, and a crash-proof loader.

TFLite has had dozens of advisories for crafted models, and TensorFlow's security
policy says to treat a model as a program. Before any interpreter sees the bytes,
`validate_model_bytes` parses the flatbuffer with a bounds-checked reader and checks
what the interpreter trusts: offsets and vectors inside the file, tensor, buffer and
subgraph indices in range, buffer sizes that match the tensors, no op reading and
writing the same tensor, no cycle of subgraph calls, non-negative shapes, finite
positive scales and in-range zero points, and a cap on the total declared size.

A file that passes can still trip a bug in a kernel (the fuzz test finds such files
by rewiring ops to tensors of the wrong shape or type), so `run_in_subprocess` loads
it and runs one inference on zeros in a separate process (a loader server started
with `python -m edgekit.lite.validate`, which forks one process per model), with a
timeout and a memory cap: a crash or a hang ends that process, never the caller.
The loader needs `os.fork` (Linux, macOS).

Example:
    >>> report = validate_model_bytes(data)
    >>> report.accepted, report.check, report.where
    (False, 'tensor_index', 'subgraph 0, operator 3, input 1')
    >>> result = run_in_subprocess("model.tflite", timeout=30)
    >>> result.status           # "ok", "error", "crash" or "timeout"
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import queue
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekit import errors
from edgekit.lite import _schema

# Every check, in the order they run; a rejection names one of them.
CHECKS = (
    "file_identifier",
    "flatbuffer_structure",
    "schema_version",
    "subgraphs",
    "opcode_index",
    "tensor_type",
    "shape",
    "buffer_index",
    "buffer_size",
    "quantization",
    "sparsity",
    "size_cap",
    "tensor_index",
    "optional_input",
    "op_in_place",
    "constant_output",
    "op_shape",
    "op_type",
    "tensor_writers",
    "io_type",
    "subgraph_index",
    "subgraph_cycle",
)

DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3  # declared tensor bytes, all subgraphs together
# TFLite kernels support at most 6 dimensions (a few 8). The fuzz test found that a
# rank-11 input fed to WHILE segfaults the LiteRT 2.21 interpreter, so cap at 8.
_MAX_RANK = 8
_SCHEMA_VERSION = 3
# Ops whose output has the shape of a constant input. XNNPack reads such outputs at
# their declared shape when it delegates (before any Prepare corrects them): the fuzz
# test found that a float16 weight's DEQUANTIZE output declared larger than its
# input makes LiteRT 2.21 read out of bounds (a segfault).
_SAME_SHAPE_OPS = {6: "DEQUANTIZE", 124: "DENSIFY"}
# Handles, not data: the fuzz test found that a variant-typed model output segfaults
# the interpreter when it is read.
_OPAQUE_TYPES = {13, 14}  # resource, variant
# Inputs that may be absent (-1). Kernels dereference the others without a check (the
# fuzz test crashed CONV_2D, FULLY_CONNECTED and WHILE with a -1 filter or input), so
# -1 elsewhere is rejected. Recurrent ops, custom ops and newer ops (code >= 160,
# mostly StableHLO) keep their own rules and may use -1 anywhere.
_OPTIONAL_INPUTS = {
    3: {2}, 4: {2}, 9: {2}, 15: {2}, 67: {3}, 132: {2}, 141: {3},
}  # fmt: skip
_ANY_OPTIONAL = {16, 24, 27, 32, 35, 44, 46, 52}
# Ops that copy their input's bytes into an output of the same size: the kernel trusts
# the output type (the fuzz test overflowed RESHAPE with a float input and int8 output).
_SAME_TYPE_OPS = {22: "RESHAPE", 43: "SQUEEZE", 70: "EXPAND_DIMS"}


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """The verdict on one file: accepted, or the first check that failed and where."""

    accepted: bool
    check: str | None = None
    where: str | None = None
    message: str | None = None
    size_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Reject(Exception):
    def __init__(self, check: str, where: str, message: str) -> None:
        super().__init__(message)
        self.check, self.where, self.message = check, where, message


def validate_model_bytes(
    data: bytes, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
) -> ValidationReport:
    """Runs every structural check on the bytes of a `.tflite` file.

    Args:
      data: the whole file.
      max_total_bytes: cap on the sum of declared tensor sizes over all subgraphs.

    Returns:
      A `ValidationReport`; `accepted` is False with `check`, `where` and `message`
      set when a check fails. Never raises for bad bytes.

    Example:
        >>> validate_model_bytes(pathlib.Path("m.tflite").read_bytes()).accepted
        True
    """
    data = bytes(data)
    try:
        _parse_or_reject(data, max_total_bytes)
    except _Reject as e:
        return ValidationReport(False, e.check, e.where, e.message, len(data))
    return ValidationReport(True, size_bytes=len(data))


def check_model_bytes(data: bytes, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> None:
    """Raises `UserInputError` when the bytes fail a structural check (see `CHECKS`).

    This is what `edgekit.runtime.LiteModel` runs before the interpreter sees a file.
    """
    parse_model(data, max_total_bytes=max_total_bytes)


def parse_model(data: bytes, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> _schema.Model:
    """Checks the bytes and returns their parsed structure (what `inspect` reads).

    Raises:
      UserInputError: a check failed; the message names the check and where.
    """
    data = bytes(data)
    try:
        return _parse_or_reject(data, max_total_bytes)
    except _Reject as e:
        raise errors.UserInputError(
            f"The .tflite file failed the {e.check!r} safety check at {e.where}: "
            f"{e.message}. The file is malformed, truncated or crafted; it was not "
            "loaded. Re-export it from the original model, or check how it was copied. "
            + errors.received(check=e.check, where=e.where, size_bytes=len(data))
        ) from None


def _parse_or_reject(data: bytes, max_total_bytes: int) -> _schema.Model:
    """Parses and checks the bytes; raises `_Reject` on the first failure."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise _Reject(
            "file_identifier", "file header", f"bytes 4-8 are {data[4:8]!r}, expected b'TFL3'"
        )
    try:
        model = _schema.parse(data)
    except _schema.StructureError as e:
        raise _Reject("flatbuffer_structure", e.where, e.message) from None
    _check_model(model, data, max_total_bytes)
    return model


def _check_model(model: _schema.Model, data: bytes, max_total_bytes: int) -> None:
    if model.version != _SCHEMA_VERSION:
        raise _Reject(
            "schema_version", "model", f"version {model.version}, expected {_SCHEMA_VERSION}"
        )
    if not model.subgraphs:
        raise _Reject("subgraphs", "model", "the model has no subgraph")
    n_codes, n_buffers, n_sub = len(model.operator_codes), len(model.buffers), len(model.subgraphs)
    total = 0
    for si, sg in enumerate(model.subgraphs):
        for ti, t in enumerate(sg.tensors):
            where = f"subgraph {si}, tensor {ti} ({t.name[:60]!r})"
            total += _check_tensor(t, where, model, n_buffers)
            if total > max_total_bytes:
                raise _Reject(
                    "size_cap", where, f"declared tensor sizes exceed {max_total_bytes} bytes"
                )
        n_t = len(sg.tensors)
        for kind, indices in (("input", sg.inputs), ("output", sg.outputs)):
            for k, idx in enumerate(indices):
                if not 0 <= idx < n_t:
                    raise _Reject(
                        "tensor_index",
                        f"subgraph {si}, {kind} {k}",
                        f"tensor index {idx} is out of range [0, {n_t})",
                    )
        written = dict.fromkeys(sg.inputs, -1)  # tensor -> the op that writes it (-1: input)
        for oi, op in enumerate(sg.operators):
            where = f"subgraph {si}, operator {oi}"
            if not 0 <= op.opcode_index < n_codes:
                raise _Reject(
                    "opcode_index", where, f"opcode index {op.opcode_index} not in [0, {n_codes})"
                )
            for kind, indices, optional in (
                ("input", op.inputs, True),
                ("output", op.outputs, False),
                ("intermediate", op.intermediates, True),
            ):
                for k, idx in enumerate(indices):
                    if not (0 <= idx < n_t or (optional and idx == -1)):
                        raise _Reject(
                            "tensor_index",
                            f"{where}, {kind} {k}",
                            f"tensor index {idx} is out of range [0, {n_t})",
                        )
            shared = set(op.inputs) & set(op.outputs) - {-1}
            if shared:
                raise _Reject(
                    "op_in_place", where, f"tensor {min(shared)} is both an input and an output"
                )
            for k, idx in enumerate(op.outputs):
                if idx in written:
                    by = (
                        "it is a subgraph input"
                        if written[idx] < 0
                        else f"operator {written[idx]} writes it"
                    )
                    raise _Reject(
                        "tensor_writers", f"{where}, output {k}", f"writes tensor {idx}, but {by}"
                    )
                written[idx] = oi
                b = sg.tensors[idx].buffer
                if model.buffers[b].size:
                    raise _Reject(
                        "constant_output",
                        f"{where}, output {k}",
                        f"the op writes tensor {idx}, which holds constant data (buffer {b})",
                    )
            code = model.operator_codes[op.opcode_index].builtin_code
            if code not in _ANY_OPTIONAL and code < 160:
                allowed = _OPTIONAL_INPUTS.get(code, ())
                for k, idx in enumerate(op.inputs):
                    if idx == -1 and k not in allowed:
                        raise _Reject(
                            "optional_input",
                            f"{where}, input {k}",
                            f"input {k} is absent (-1) but this op (builtin {code}) requires it",
                        )
            if code in _SAME_TYPE_OPS and op.inputs and op.outputs and op.inputs[0] >= 0:
                t_in, t_out = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
                if t_in.type != t_out.type:
                    raise _Reject(
                        "op_type",
                        where,
                        f"{_SAME_TYPE_OPS[code]} turns {t_in.dtype} into {t_out.dtype}; the "
                        "types must be equal",
                    )
            if code in _SAME_SHAPE_OPS and op.inputs and op.outputs and op.inputs[0] >= 0:
                src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
                if model.buffers[src.buffer].size and src.shape != dst.shape:
                    raise _Reject(
                        "op_shape",
                        where,
                        f"{_SAME_SHAPE_OPS[code]} turns shape {list(src.shape)} into "
                        f"{list(dst.shape)}; they must be equal",
                    )
            for ref in op.subgraph_refs:
                if not 0 <= ref < n_sub:
                    raise _Reject(
                        "subgraph_index", where, f"calls subgraph {ref}, not in [0, {n_sub})"
                    )
    main = model.subgraphs[0]
    for kind, indices in (("input", main.inputs), ("output", main.outputs)):
        for k, idx in enumerate(indices):
            if main.tensors[idx].type in _OPAQUE_TYPES:
                raise _Reject(
                    "io_type",
                    f"subgraph 0, {kind} {k}",
                    f"tensor {idx} is of type {main.tensors[idx].dtype}; a model input or "
                    "output must hold data",
                )
    for i, sig in enumerate(model.signatures):
        where = f"signature {i} ({sig.key[:60]!r})"
        if not 0 <= sig.subgraph_index < n_sub:
            raise _Reject(
                "subgraph_index", where, f"subgraph {sig.subgraph_index} not in [0, {n_sub})"
            )
        n_t = len(model.subgraphs[sig.subgraph_index].tensors)
        for name, idx in sig.inputs + sig.outputs:
            if not 0 <= idx < n_t:
                raise _Reject(
                    "tensor_index", f"{where}, {name[:60]!r}", f"tensor {idx} not in [0, {n_t})"
                )
    for i, (name, b) in enumerate(model.metadata):
        if not 0 <= b < n_buffers:
            raise _Reject(
                "buffer_index",
                f"metadata {i} ({name[:60]!r})",
                f"buffer {b} not in [0, {n_buffers})",
            )
    _check_no_cycle(model)


def _check_tensor(t: _schema.Tensor, where: str, model: _schema.Model, n_buffers: int) -> int:
    """Checks one tensor and returns its declared size in bytes."""
    if t.type not in _schema.TYPE_NAMES:
        raise _Reject("tensor_type", where, f"unknown tensor type {t.type}")
    if len(t.shape) > _MAX_RANK:
        raise _Reject("shape", where, f"rank {len(t.shape)} exceeds {_MAX_RANK}")
    if any(d < 0 for d in t.shape):
        raise _Reject("shape", where, f"negative dimension in shape {list(t.shape)}")
    if t.shape_signature is not None:
        if len(t.shape_signature) != len(t.shape) or any(d < -1 for d in t.shape_signature):
            raise _Reject(
                "shape",
                where,
                f"shape_signature {list(t.shape_signature)} does not match shape {list(t.shape)}",
            )
    if not 0 <= t.buffer < n_buffers:
        raise _Reject("buffer_index", where, f"buffer {t.buffer} not in [0, {n_buffers})")
    count = math.prod(t.shape)
    if count >= 2**40:
        raise _Reject("size_cap", where, f"shape {list(t.shape)} has {count} elements")
    nbytes = declared_bytes(t.type, count)
    buf = model.buffers[t.buffer]
    if buf.size and t.sparsity is None and nbytes is not None and buf.size != nbytes:
        raise _Reject(
            "buffer_size",
            where,
            f"buffer {t.buffer} holds {buf.size} bytes; shape {list(t.shape)} of {t.dtype} "
            f"needs {nbytes}",
        )
    if t.quantization is not None:
        _check_quantization(t, where)
    if t.sparsity is not None:
        _check_sparsity(t, where, buf.size)
    return nbytes or buf.size


def declared_bytes(tensor_type: int, count: int) -> int | None:
    """Bytes a dense tensor of `count` elements takes; None for strings and resources."""
    if tensor_type in _schema.ITEM_SIZE:
        return count * _schema.ITEM_SIZE[tensor_type]
    if tensor_type in _schema.PACKED_BITS:
        return (count * _schema.PACKED_BITS[tensor_type] + 7) // 8
    return None


def _check_quantization(t: _schema.Tensor, where: str) -> None:
    q = t.quantization
    # numpy, not a Python loop: per-channel models carry tens of thousands of scales.
    scales = np.asarray(q.scales, dtype=np.float64)
    bad = ~(np.isfinite(scales) & (scales > 0))
    if bad.any():
        s = scales[np.argmax(bad)]
        raise _Reject("quantization", where, f"scale {s} is not finite and positive")
    bounds = np.asarray(q.min + q.max, dtype=np.float64)
    if not np.isfinite(bounds).all():
        raise _Reject("quantization", where, "a min/max value is not finite")
    if q.zero_points and q.scales and len(q.zero_points) != len(q.scales):
        raise _Reject(
            "quantization",
            where,
            f"{len(q.scales)} scales but {len(q.zero_points)} zero points",
        )
    lo_hi = _schema.ZERO_POINT_RANGE.get(t.type)
    if lo_hi is not None and q.scales and q.zero_points:
        z_lo, z_hi = min(q.zero_points), max(q.zero_points)
        if z_lo < lo_hi[0] or z_hi > lo_hi[1]:
            z = z_lo if z_lo < lo_hi[0] else z_hi
            raise _Reject(
                "quantization", where, f"zero point {z} outside the {t.dtype} range {lo_hi}"
            )
    if len(q.scales) > 1:
        qd = q.quantized_dimension
        if not 0 <= qd < len(t.shape) or t.shape[qd] != len(q.scales):
            raise _Reject(
                "quantization",
                where,
                f"{len(q.scales)} per-channel scales on dimension {qd} of shape {list(t.shape)}",
            )


def _check_sparsity(t: _schema.Tensor, where: str, buffer_size: int) -> None:
    """Walks the compressed structure as the densifier will, so no index leaves its array.

    The fuzz test found that a dense dimension whose size disagrees with the tensor's
    shape makes the interpreter's densifier write out of bounds (a segfault), so every
    size is checked against the shape and the data length against the stored values.
    """
    sp = t.sparsity
    n = len(sp.traversal_order)
    rank = len(t.shape)
    if sorted(sp.traversal_order) != list(range(n)) or n < rank:
        raise _Reject(
            "sparsity", where, f"traversal_order {list(sp.traversal_order)} is not a permutation"
        )
    if len(sp.dim_metadata) != n:
        raise _Reject("sparsity", where, f"{len(sp.dim_metadata)} dim_metadata for {n} dims")
    if any(not 0 <= b < rank for b in sp.block_map) or n - rank != len(sp.block_map):
        raise _Reject("sparsity", where, f"block_map {list(sp.block_map)} does not fit rank {rank}")
    if any(sp.traversal_order[k] != k for k in range(rank)):
        # The converter always writes the tensor's own order first; others are not checked.
        raise _Reject("sparsity", where, "traversal_order reorders the tensor's dimensions")
    # Expected size of each traversed dimension: a blocked dimension counts blocks, a
    # block dimension counts elements of one block.
    expected = []
    for k in range(n):
        if k < rank:
            blocks = [j for j, b in enumerate(sp.block_map) if b == k]
            size = t.shape[k]
            if blocks:
                bs = sp.dim_metadata[rank + blocks[0]].dense_size
                if bs <= 0 or size % bs:
                    raise _Reject("sparsity", where, f"block size {bs} does not divide {size}")
                size //= bs
            expected.append(size)
        else:
            expected.append(sp.dim_metadata[k].dense_size)
    values = 1
    for k, dm in enumerate(sp.dim_metadata):
        if dm.format == 0:
            if dm.dense_size != expected[k] or dm.dense_size < 0:
                raise _Reject(
                    "sparsity",
                    where,
                    f"dim {k}: dense_size {dm.dense_size}, the shape needs {expected[k]}",
                )
            values *= dm.dense_size
        elif dm.format == 1:
            seg = dm.segments
            if len(seg) != values + 1 or seg[0] != 0 or seg[-1] != len(dm.indices):
                raise _Reject("sparsity", where, f"dim {k}: {len(seg)} segments for {values} rows")
            if any(b < a for a, b in zip(seg, seg[1:], strict=False)):
                raise _Reject("sparsity", where, f"dim {k}: segments are not increasing")
            if any(not 0 <= i < expected[k] for i in dm.indices):
                raise _Reject("sparsity", where, f"dim {k}: an index is outside [0, {expected[k]})")
            values = len(dm.indices)
        else:
            raise _Reject("sparsity", where, f"dim {k}: unknown format {dm.format}")
        if values > 2**31:
            raise _Reject("sparsity", where, f"dim {k}: {values} entries")
    if buffer_size:
        need = declared_bytes(t.type, values)
        if need is not None and need != buffer_size:
            raise _Reject(
                "sparsity",
                where,
                f"{values} stored values need {need} bytes, buffer has {buffer_size}",
            )


def _check_no_cycle(model: _schema.Model) -> None:
    calls = [sorted({r for op in sg.operators for r in op.subgraph_refs}) for sg in model.subgraphs]
    state = [0] * len(calls)  # 0 new, 1 on the stack, 2 done
    for start in range(len(calls)):
        if state[start]:
            continue
        stack = [(start, iter(calls[start]))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state[nxt] == 1:
                path = [s for s, _ in stack] + [nxt]
                raise _Reject(
                    "subgraph_cycle",
                    f"subgraph {node}",
                    "subgraph calls form a cycle: " + " -> ".join(map(str, path)),
                )
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(calls[nxt])))


# ---------------------------------------------------------------------------
# Loading in a child process


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """What happened when a separate process loaded a model and ran it once on zeros.

    `status` is "ok" (loaded and ran), "rejected" (failed a structural check, never
    loaded), "error" (the interpreter refused it with an error), "crash" (the loading
    process died, e.g. a segfault) or "timeout" (it hung and was killed). `inputs` and
    `outputs` are `runtime.TensorSpec.to_dict()` of the loaded model when "ok".
    """

    status: str
    message: str = ""
    check: str | None = None
    inputs: tuple[dict[str, Any], ...] = ()
    outputs: tuple[dict[str, Any], ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    outputs_finite: bool | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_in_subprocess(
    model: str | os.PathLike | bytes,
    *,
    timeout: float = 60.0,
    validate: bool = True,
    memory_limit_mb: int | None = 4096,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> LoadResult:
    """Validates, then loads and runs a model once on zeros in a child process.

    Args:
      model: path to a `.tflite` file, or its bytes.
      timeout: seconds the child may take before it is killed ("timeout").
      validate: run the structural checks first (in this process; they cannot crash).
      memory_limit_mb: address-space cap of the child, so a model that asks for huge
        buffers fails there instead of exhausting the machine; None for no cap.
      max_total_bytes: the validation's cap on declared tensor sizes.

    Returns:
      A `LoadResult`. Never raises for a bad model; raises `UserInputError` only if
      the path does not exist.
    """
    from edgekit import runtime

    data = runtime.read_model_bytes(model) if not isinstance(model, bytes) else model
    return run_many_in_subprocess(
        [data],
        timeout=timeout,
        validate=validate,
        memory_limit_mb=memory_limit_mb,
        max_total_bytes=max_total_bytes,
    )[0]


def run_many_in_subprocess(
    models: Sequence[bytes],
    *,
    timeout: float = 60.0,
    validate: bool = True,
    memory_limit_mb: int | None = 4096,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> list[LoadResult]:
    """Like `run_in_subprocess` for many models, sharing one loader server.

    The server starts once and forks a fresh process per model, so each verdict
    belongs to its own model: a crash or hang is recorded as "crash" or "timeout"
    for that model only. `timeout` applies to each model.
    """
    results: list[LoadResult | None] = [None] * len(models)
    todo = []
    for i, data in enumerate(models):
        if validate:
            report = validate_model_bytes(data, max_total_bytes=max_total_bytes)
            if not report.accepted:
                results[i] = LoadResult(
                    "rejected", f"{report.where}: {report.message}", check=report.check
                )
                continue
        todo.append(i)
    if not todo:
        return results  # type: ignore[return-value]
    with tempfile.TemporaryDirectory(prefix="edgekit-child-") as tmp:
        case_file = pathlib.Path(tmp) / "cases.bin"
        with open(case_file, "wb") as f:
            for i in todo:
                f.write(struct.pack("<IQ", i, len(models[i])))
                f.write(models[i])
        pos = 0
        while pos < len(todo):
            pos = _run_child(case_file, todo, pos, results, timeout, memory_limit_mb)
    return results  # type: ignore[return-value]


def _run_child(
    case_file: pathlib.Path,
    todo: list[int],
    pos: int,
    results: list[LoadResult | None],
    timeout: float,
    memory_limit_mb: int | None,
) -> int:
    """Runs one loader server from case `todo[pos]` on; returns where the next one starts.

    The server (`python -m edgekit.lite.validate`) imports the runtime once and forks
    a fresh process per case, so a case that corrupts memory without crashing cannot
    take the blame onto a later one, and the server itself never loads a model. If
    the server dies anyway, the current case is marked "crash" and a new server
    continues with the next.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "edgekit.lite.validate", str(case_file), str(todo[pos]),
        str(timeout), str(memory_limit_mb or 0),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    lines: queue.Queue[bytes | None] = queue.Queue()
    stderr_tail: list[bytes] = []

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def drain() -> None:
        for line in proc.stderr:
            stderr_tail.append(line)
            del stderr_tail[:-5]

    threading.Thread(target=pump, daemon=True).start()
    threading.Thread(target=drain, daemon=True).start()
    # The server enforces `timeout` per case; this outer limit only guards the server.
    patience = timeout + 60.0
    try:
        while pos < len(todo):
            case = todo[pos]
            try:
                line = lines.get(timeout=patience)
            except queue.Empty:
                results[case] = LoadResult("timeout", f"no result within {patience:.0f} s")
                return pos + 1
            if line is None:
                proc.wait()
                tail = b"".join(stderr_tail).decode(errors="replace").strip()[-300:]
                results[case] = LoadResult(
                    "crash", f"loader exited with status {proc.returncode}: {tail}"
                )
                return pos + 1
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # not ours
            if not isinstance(msg, dict) or msg.get("case") != case or "status" not in msg:
                continue
            results[case] = LoadResult(
                status=msg["status"],
                message=msg.get("message", ""),
                inputs=tuple(msg.get("inputs", ())),
                outputs=tuple(msg.get("outputs", ())),
                output_shapes=tuple(tuple(s) for s in msg.get("output_shapes", ())),
                outputs_finite=msg.get("outputs_finite"),
            )
            pos += 1
        return pos
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _load_and_run(data: bytes) -> dict[str, Any]:
    """Loads a model and runs it once on zeros (in the forked case process)."""
    import numpy as np

    from edgekit import runtime

    try:
        lm = runtime.LiteModel(data, num_threads=1, validate=False)
        feeds = [np.zeros(s.shape, dtype=s.dtype) for s in lm.inputs]
        ys = lm.invoke(feeds)
        return {
            "status": "ok",
            "inputs": [s.to_dict() for s in lm.inputs],
            "outputs": [s.to_dict() for s in lm.outputs],
            "output_shapes": [list(y.shape) for y in ys],
            "outputs_finite": bool(all(np.isfinite(y).all() for y in ys if y.dtype.kind == "f")),
        }
    # This process exists to absorb failures: any exception is this case's verdict.
    except Exception as e:  # noqa: BLE001
        text = str(e).splitlines()[0][:500] if str(e) else type(e).__name__
        return {"status": "error", "message": text}


def _run_case_forked(data: bytes, timeout: float, memory_limit_mb: int) -> dict[str, Any]:
    """Forks, runs one case in the child, and turns its death or silence into a verdict."""
    import select
    import signal
    import time

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the case process: never returns
        try:
            os.close(r)
            if memory_limit_mb:
                import resource

                limit = memory_limit_mb * 1024 * 1024
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            payload = json.dumps(_load_and_run(data)).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(w, view) :]
        finally:
            os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([r], [], [], remaining)
            if ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"status": "timeout", "message": f"no result within {timeout:g} s; killed"}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {
            "status": "crash",
            "message": f"the loader died with signal {sig} ({signal.Signals(sig).name})",
        }
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {
            "status": "crash",
            "message": f"the loader exited with status {os.WEXITSTATUS(status)} without a result",
        }


def _server_main(case_file: str, first_case: int, timeout: float, memory_limit_mb: int) -> None:
    """The loader server: one JSON line per case, each case in its own forked process."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the runtime's own prints go to stderr, never into our protocol
    from edgekit import _compat, runtime  # noqa: F401 - imported once, before forking

    _compat.litert_interpreter()
    started = False
    with open(case_file, "rb") as f:
        while True:
            head = f.read(12)
            if len(head) < 12:
                break
            case, size = struct.unpack("<IQ", head)
            data = f.read(size)
            started = started or case == first_case
            if not started:
                continue
            msg = {"case": case, **_run_case_forked(data, timeout, memory_limit_mb)}
            out.write(json.dumps(msg) + "\n")
            out.flush()


if __name__ == "__main__":
    _server_main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
