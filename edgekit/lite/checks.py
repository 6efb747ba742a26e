"""The structural checks of a `.tflite` file, run on its parsed flatbuffer.

Each check guards something the interpreter trusts without checking it: indices in
range, buffer sizes that match their tensors, no op reading and writing the same
tensor, no cycle of subgraph calls, sane shapes and quantization parameters, and a cap
on the total declared size. `parse_and_check` raises `Reject` at the first failure, named
by one of `CHECKS`. The public entry points are in `edgekit.lite.validate`.
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.lite import schema

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


class Reject(Exception):
    """A failed check: which one (a name in `CHECKS`), where, and why."""

    def __init__(self, check: str, where: str, message: str) -> None:
        super().__init__(message)
        self.check, self.where, self.message = check, where, message


def parse_and_check(data: bytes, max_total_bytes: int) -> schema.Model:
    """Parses the bytes and runs every check; raises `Reject` at the first failure."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise Reject(
            "file_identifier", "file header", f"bytes 4-8 are {data[4:8]!r}, expected b'TFL3'"
        )
    try:
        model = schema.parse(data)
    except schema.StructureError as e:
        raise Reject("flatbuffer_structure", e.where, e.message) from None
    check_model(model, data, max_total_bytes)
    return model


def check_model(model: schema.Model, data: bytes, max_total_bytes: int) -> None:
    """Runs the checks after parsing (from "schema_version" on) on a parsed model."""
    if model.version != _SCHEMA_VERSION:
        raise Reject(
            "schema_version", "model", f"version {model.version}, expected {_SCHEMA_VERSION}"
        )
    if not model.subgraphs:
        raise Reject("subgraphs", "model", "the model has no subgraph")
    n_codes, n_buffers, n_sub = len(model.operator_codes), len(model.buffers), len(model.subgraphs)
    total = 0
    for si, sg in enumerate(model.subgraphs):
        for ti, t in enumerate(sg.tensors):
            where = f"subgraph {si}, tensor {ti} ({t.name[:60]!r})"
            total += _check_tensor(t, where, model, n_buffers)
            if total > max_total_bytes:
                raise Reject(
                    "size_cap", where, f"declared tensor sizes exceed {max_total_bytes} bytes"
                )
        n_t = len(sg.tensors)
        for kind, indices in (("input", sg.inputs), ("output", sg.outputs)):
            for k, idx in enumerate(indices):
                if not 0 <= idx < n_t:
                    raise Reject(
                        "tensor_index",
                        f"subgraph {si}, {kind} {k}",
                        f"tensor index {idx} is out of range [0, {n_t})",
                    )
        written = dict.fromkeys(sg.inputs, -1)  # tensor -> the op that writes it (-1: input)
        for oi, op in enumerate(sg.operators):
            where = f"subgraph {si}, operator {oi}"
            if not 0 <= op.opcode_index < n_codes:
                raise Reject(
                    "opcode_index", where, f"opcode index {op.opcode_index} not in [0, {n_codes})"
                )
            for kind, indices, optional in (
                ("input", op.inputs, True),
                ("output", op.outputs, False),
                ("intermediate", op.intermediates, True),
            ):
                for k, idx in enumerate(indices):
                    if not (0 <= idx < n_t or (optional and idx == -1)):
                        raise Reject(
                            "tensor_index",
                            f"{where}, {kind} {k}",
                            f"tensor index {idx} is out of range [0, {n_t})",
                        )
            shared = set(op.inputs) & set(op.outputs) - {-1}
            if shared:
                raise Reject(
                    "op_in_place", where, f"tensor {min(shared)} is both an input and an output"
                )
            for k, idx in enumerate(op.outputs):
                if idx in written:
                    by = (
                        "it is a subgraph input"
                        if written[idx] < 0
                        else f"operator {written[idx]} writes it"
                    )
                    raise Reject(
                        "tensor_writers", f"{where}, output {k}", f"writes tensor {idx}, but {by}"
                    )
                written[idx] = oi
                b = sg.tensors[idx].buffer
                if model.buffers[b].size:
                    raise Reject(
                        "constant_output",
                        f"{where}, output {k}",
                        f"the op writes tensor {idx}, which holds constant data (buffer {b})",
                    )
            code = model.operator_codes[op.opcode_index].builtin_code
            if code not in _ANY_OPTIONAL and code < 160:
                allowed = _OPTIONAL_INPUTS.get(code, ())
                for k, idx in enumerate(op.inputs):
                    if idx == -1 and k not in allowed:
                        raise Reject(
                            "optional_input",
                            f"{where}, input {k}",
                            f"input {k} is absent (-1) but this op (builtin {code}) requires it",
                        )
            if code in _SAME_TYPE_OPS and op.inputs and op.outputs and op.inputs[0] >= 0:
                t_in, t_out = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
                if t_in.type != t_out.type:
                    raise Reject(
                        "op_type",
                        where,
                        f"{_SAME_TYPE_OPS[code]} turns {t_in.dtype} into {t_out.dtype}; the "
                        "types must be equal",
                    )
            if code in _SAME_SHAPE_OPS and op.inputs and op.outputs and op.inputs[0] >= 0:
                src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
                if model.buffers[src.buffer].size and src.shape != dst.shape:
                    raise Reject(
                        "op_shape",
                        where,
                        f"{_SAME_SHAPE_OPS[code]} turns shape {list(src.shape)} into "
                        f"{list(dst.shape)}; they must be equal",
                    )
            for ref in op.subgraph_refs:
                if not 0 <= ref < n_sub:
                    raise Reject(
                        "subgraph_index", where, f"calls subgraph {ref}, not in [0, {n_sub})"
                    )
    main = model.subgraphs[0]
    for kind, indices in (("input", main.inputs), ("output", main.outputs)):
        for k, idx in enumerate(indices):
            if main.tensors[idx].type in _OPAQUE_TYPES:
                raise Reject(
                    "io_type",
                    f"subgraph 0, {kind} {k}",
                    f"tensor {idx} is of type {main.tensors[idx].dtype}; a model input or "
                    "output must hold data",
                )
    for i, sig in enumerate(model.signatures):
        where = f"signature {i} ({sig.key[:60]!r})"
        if not 0 <= sig.subgraph_index < n_sub:
            raise Reject(
                "subgraph_index", where, f"subgraph {sig.subgraph_index} not in [0, {n_sub})"
            )
        n_t = len(model.subgraphs[sig.subgraph_index].tensors)
        for name, idx in sig.inputs + sig.outputs:
            if not 0 <= idx < n_t:
                raise Reject(
                    "tensor_index", f"{where}, {name[:60]!r}", f"tensor {idx} not in [0, {n_t})"
                )
    for i, (name, b) in enumerate(model.metadata):
        if not 0 <= b < n_buffers:
            raise Reject(
                "buffer_index",
                f"metadata {i} ({name[:60]!r})",
                f"buffer {b} not in [0, {n_buffers})",
            )
    _check_no_cycle(model)


def _check_tensor(t: schema.Tensor, where: str, model: schema.Model, n_buffers: int) -> int:
    """Checks one tensor and returns its declared size in bytes."""
    if t.type not in schema.TYPE_NAMES:
        raise Reject("tensor_type", where, f"unknown tensor type {t.type}")
    if len(t.shape) > _MAX_RANK:
        raise Reject("shape", where, f"rank {len(t.shape)} exceeds {_MAX_RANK}")
    if any(d < 0 for d in t.shape):
        raise Reject("shape", where, f"negative dimension in shape {list(t.shape)}")
    if t.shape_signature is not None:
        if len(t.shape_signature) != len(t.shape) or any(d < -1 for d in t.shape_signature):
            raise Reject(
                "shape",
                where,
                f"shape_signature {list(t.shape_signature)} does not match shape {list(t.shape)}",
            )
    if not 0 <= t.buffer < n_buffers:
        raise Reject("buffer_index", where, f"buffer {t.buffer} not in [0, {n_buffers})")
    count = math.prod(t.shape)
    if count >= 2**40:
        raise Reject("size_cap", where, f"shape {list(t.shape)} has {count} elements")
    nbytes = declared_bytes(t.type, count)
    buf = model.buffers[t.buffer]
    if buf.size and t.sparsity is None and nbytes is not None and buf.size != nbytes:
        raise Reject(
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
    if tensor_type in schema.ITEM_SIZE:
        return count * schema.ITEM_SIZE[tensor_type]
    if tensor_type in schema.PACKED_BITS:
        return (count * schema.PACKED_BITS[tensor_type] + 7) // 8
    return None


def _check_quantization(t: schema.Tensor, where: str) -> None:
    q = t.quantization
    # numpy, not a Python loop: per-channel models carry tens of thousands of scales.
    scales = np.asarray(q.scales, dtype=np.float64)
    bad = ~(np.isfinite(scales) & (scales > 0))
    if bad.any():
        s = scales[np.argmax(bad)]
        raise Reject("quantization", where, f"scale {s} is not finite and positive")
    bounds = np.asarray(q.min + q.max, dtype=np.float64)
    if not np.isfinite(bounds).all():
        raise Reject("quantization", where, "a min/max value is not finite")
    if q.zero_points and q.scales and len(q.zero_points) != len(q.scales):
        raise Reject(
            "quantization",
            where,
            f"{len(q.scales)} scales but {len(q.zero_points)} zero points",
        )
    lo_hi = schema.ZERO_POINT_RANGE.get(t.type)
    if lo_hi is not None and q.scales and q.zero_points:
        z_lo, z_hi = min(q.zero_points), max(q.zero_points)
        if z_lo < lo_hi[0] or z_hi > lo_hi[1]:
            z = z_lo if z_lo < lo_hi[0] else z_hi
            raise Reject(
                "quantization", where, f"zero point {z} outside the {t.dtype} range {lo_hi}"
            )
    if len(q.scales) > 1:
        qd = q.quantized_dimension
        if not 0 <= qd < len(t.shape) or t.shape[qd] != len(q.scales):
            raise Reject(
                "quantization",
                where,
                f"{len(q.scales)} per-channel scales on dimension {qd} of shape {list(t.shape)}",
            )


def _check_sparsity(t: schema.Tensor, where: str, buffer_size: int) -> None:
    """Walks the compressed structure as the densifier will, so no index leaves its array.

    The fuzz test found that a dense dimension whose size disagrees with the tensor's
    shape makes the interpreter's densifier write out of bounds (a segfault), so every
    size is checked against the shape and the data length against the stored values.
    """
    sp = t.sparsity
    n = len(sp.traversal_order)
    rank = len(t.shape)
    if sorted(sp.traversal_order) != list(range(n)) or n < rank:
        raise Reject(
            "sparsity", where, f"traversal_order {list(sp.traversal_order)} is not a permutation"
        )
    if len(sp.dim_metadata) != n:
        raise Reject("sparsity", where, f"{len(sp.dim_metadata)} dim_metadata for {n} dims")
    if any(not 0 <= b < rank for b in sp.block_map) or n - rank != len(sp.block_map):
        raise Reject("sparsity", where, f"block_map {list(sp.block_map)} does not fit rank {rank}")
    if any(sp.traversal_order[k] != k for k in range(rank)):
        # The converter always writes the tensor's own order first; others are not checked.
        raise Reject("sparsity", where, "traversal_order reorders the tensor's dimensions")
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
                    raise Reject("sparsity", where, f"block size {bs} does not divide {size}")
                size //= bs
            expected.append(size)
        else:
            expected.append(sp.dim_metadata[k].dense_size)
    values = 1
    for k, dm in enumerate(sp.dim_metadata):
        if dm.format == 0:
            if dm.dense_size != expected[k] or dm.dense_size < 0:
                raise Reject(
                    "sparsity",
                    where,
                    f"dim {k}: dense_size {dm.dense_size}, the shape needs {expected[k]}",
                )
            values *= dm.dense_size
        elif dm.format == 1:
            seg = dm.segments
            if len(seg) != values + 1 or seg[0] != 0 or seg[-1] != len(dm.indices):
                raise Reject("sparsity", where, f"dim {k}: {len(seg)} segments for {values} rows")
            if any(b < a for a, b in zip(seg, seg[1:], strict=False)):
                raise Reject("sparsity", where, f"dim {k}: segments are not increasing")
            if any(not 0 <= i < expected[k] for i in dm.indices):
                raise Reject("sparsity", where, f"dim {k}: an index is outside [0, {expected[k]})")
            values = len(dm.indices)
        else:
            raise Reject("sparsity", where, f"dim {k}: unknown format {dm.format}")
        if values > 2**31:
            raise Reject("sparsity", where, f"dim {k}: {values} entries")
    if buffer_size:
        need = declared_bytes(t.type, values)
        if need is not None and need != buffer_size:
            raise Reject(
                "sparsity",
                where,
                f"{values} stored values need {need} bytes, buffer has {buffer_size}",
            )


def _check_no_cycle(model: schema.Model) -> None:
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
                raise Reject(
                    "subgraph_cycle",
                    f"subgraph {node}",
                    "subgraph calls form a cycle: " + " -> ".join(map(str, path)),
                )
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(calls[nxt])))
