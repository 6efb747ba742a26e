"""What is inside a `.tflite` file, read from the flatbuffer without running it.

`inspect_model` validates the file (see `edgekit.lite.validate`), then reports its
signatures, inputs and outputs, ops (custom and Select-TF ops flagged with the runtime
they need, and the ops XNNPack will not take), tensors (size, dtype, quantization,
sparsity), where the bytes go, the multiply-accumulates of the common ops, and an
estimate of the activation memory (arena) a runtime needs.

How the numbers are made:
- params: elements of the constant tensors that hold weights, i.e. float constants and
  quantized constants (int8 weights, int32 biases); integer shape/axis constants are
  not counted. It matches Keras' `count_params()` when the converter folds nothing
  into the weights (batch normalization folded into a conv, or a zero bias added to
  a bias-free layer, make the counts differ).
- MACs: conv, depthwise conv, fully connected, batch matmul and transpose conv, at the
  shapes stored in the file (batch as converted). Ops in called subgraphs (WHILE/IF
  bodies) count once.
- arena: the peak of a greedy offset plan over the non-constant tensors of the main
  subgraph (largest first, lowest free offset), lifetimes from the op order. It is
  the activation memory only: TFLite Micro adds per-tensor alignment and its own
  persistent buffers on top, so budget some headroom.

Example:
    >>> report = inspect_model("model.tflite", ram_kb=256, flash_kb=1024)
    >>> report.params, report.total_macs, report.memory["arena_bytes"]
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import os
from typing import Any

import numpy as np

from edgekit import _compat, errors, io
from edgekit.lite import schema, validate

# Builtin ops the XNNPack delegate takes (tensorflow/lite/delegates/xnnpack, 2.21);
# dtype and attribute limits are not checked here, so this is an upper bound.
XNNPACK_OPS = frozenset(
    """ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CEIL CONCATENATION CONV_2D COS DEPTH_TO_SPACE
    DEPTHWISE_CONV_2D DEQUANTIZE DIV ELU EXP FLOOR FULLY_CONNECTED GELU HARD_SWISH
    LEAKY_RELU LOG LOGISTIC MAX_POOL_2D MAXIMUM MEAN MINIMUM MUL NEG PAD PRELU QUANTIZE
    REDUCE_MAX RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR ROUND RSQRT SIN SLICE
    SOFTMAX SPACE_TO_DEPTH SPLIT SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM
    TANH TRANSPOSE TRANSPOSE_CONV""".split()
)
_XNNPACK_CUSTOM = frozenset(
    {"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D"}
)
# Custom ops the standard TFLite / LiteRT op resolver registers.
_BUILTIN_CUSTOM = frozenset({"TFLite_Detection_PostProcess"})
FLOAT_TYPES = frozenset({0, 1, 10, 18})  # float32, float16, float64, bfloat16
_NUMPY = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
          7: np.int16, 9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ModelReport(io.SavesJson):
    """Everything `inspect_model` found; `to_dict()` is JSON-ready."""

    file_size: int
    schema_version: int
    description: str
    num_subgraphs: int
    signatures: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    op_counts: dict[str, int]
    ops: list[dict[str, Any]]
    custom_ops: list[dict[str, str]]
    xnnpack_unsupported: list[str]
    tensors: list[dict[str, Any]]
    size: dict[str, Any]
    params: int
    total_macs: int
    macs_by_op_type: dict[str, int]
    memory: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def op_names(self) -> list[str]:
        """The distinct op types, sorted (what an op resolver must register)."""
        return sorted(self.op_counts)


def inspect_model(
    model: str | os.PathLike | bytes,
    *,
    ram_kb: float | None = None,
    flash_kb: float | None = None,
) -> ModelReport:
    """Reads a `.tflite` file and reports what is inside it, without running it.

    Args:
      model: path to a `.tflite` file, or its bytes.
      ram_kb: a RAM budget in KiB; the report says whether the arena estimate fits.
      flash_kb: a flash budget in KiB; the report says whether the file fits.

    Returns:
      A `ModelReport`.

    Raises:
      UserInputError: the file is missing, not a `.tflite` file, or fails a safety check.

    Example:
        >>> r = inspect_model("model.tflite")
        >>> r.op_counts
        {'CONV_2D': 1, 'FULLY_CONNECTED': 1, ...}
    """
    for name, value in (("ram_kb", ram_kb), ("flash_kb", flash_kb)):
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise errors.UserInputError(
                f"{name} must be a positive number of KiB, or None. "
                + errors.received(**{name: value})
            )
    data = validate.read_model_bytes(model)
    m = validate.parse_model(data)
    return _build_report(m, data, ram_kb=ram_kb, flash_kb=flash_kb)


@functools.cache
def _op_names() -> dict[int, str]:
    ops = _compat.litert_schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def op_type(m: schema.Model, op: schema.Operator) -> str:
    code = m.operator_codes[op.opcode_index]
    if code.builtin_code == 32:  # CUSTOM
        return code.custom_code or "CUSTOM"
    return _op_names().get(code.builtin_code, f"BUILTIN_{code.builtin_code}")


def _is_custom(m: schema.Model, op: schema.Operator) -> bool:
    return m.operator_codes[op.opcode_index].builtin_code == 32


def runtime_needed(name: str) -> str:
    """Which runtime a custom op needs, in words."""
    if name.startswith("Flex"):
        return (
            "Select TF ops (Flex): link the Flex delegate (tensorflow-lite-select-tf-ops on "
            "Android) or run with full TensorFlow; not available on microcontrollers"
        )
    if name in _BUILTIN_CUSTOM:
        return "registered by the standard TFLite/LiteRT op resolver"
    return f"a runtime with the custom op {name!r} registered (op resolver AddCustom)"


def _quant_dict(t: schema.Tensor) -> dict[str, Any]:
    q = t.quantization
    if q is None or not q.scales:
        return {"kind": "none"}
    if len(q.scales) == 1:
        return {
            "kind": "per-tensor",
            "scale": float(q.scales[0]),
            "zero_point": int(q.zero_points[0]) if q.zero_points else 0,
        }
    return {
        "kind": "per-channel",
        "quantized_dimension": q.quantized_dimension,
        "num_channels": len(q.scales),
        "scales": [float(s) for s in q.scales],
        "zero_points": [int(z) for z in q.zero_points],
    }


def _io_dict(t: schema.Tensor, index: int) -> dict[str, Any]:
    q = _quant_dict(t)
    return {
        "name": t.name,
        "index": index,
        "shape": list(t.shape),
        "shape_signature": list(t.shape_signature or t.shape),
        "dtype": t.dtype,
        "scale": q.get("scale"),
        "zero_point": q.get("zero_point"),
        "quantization": q,
    }


def _tensor_bytes(t: schema.Tensor) -> int | None:
    return validate.declared_bytes(t.type, math.prod(t.shape))


def _zero_fraction(t: schema.Tensor, raw: bytes) -> float | None:
    dtype = _NUMPY.get(t.type)
    if dtype is None or t.sparsity is not None:
        return None
    values = np.frombuffer(raw, dtype=dtype)
    if values.size == 0:
        return None
    zero = 0
    q = t.quantization
    if q is not None and q.scales and q.zero_points:
        if len(set(q.zero_points)) != 1:
            return None
        zero = q.zero_points[0]
    return float(np.count_nonzero(values == zero)) / values.size


def _macs(name: str, op: schema.Operator, tensors: tuple[schema.Tensor, ...]) -> int:
    def shape(k: int) -> tuple[int, ...] | None:
        if k >= len(op.inputs) or op.inputs[k] < 0:
            return None
        return tensors[op.inputs[k]].shape

    out = tensors[op.outputs[0]].shape if op.outputs else ()
    w = shape(1)
    if name == "CONV_2D" and w is not None and len(w) == 4:
        return math.prod(out) * w[1] * w[2] * w[3]
    if name == "DEPTHWISE_CONV_2D" and w is not None and len(w) == 4:
        return math.prod(out) * w[1] * w[2]
    if name == "FULLY_CONNECTED" and w is not None and len(w) == 2:
        return math.prod(out) * w[1]
    if name == "TRANSPOSE_CONV" and w is not None and len(w) == 4 and shape(2) is not None:
        return math.prod(shape(2)) * w[0] * w[1] * w[2]
    if name == "BATCH_MATMUL" and shape(0) and len(shape(0)) >= 2 and len(out) >= 2:
        a = shape(0)
        k = a[-1] if a[-2] == out[-2] else a[-2]
        return math.prod(out) * k
    return 0


def _plan_arena(sg: schema.Subgraph, is_const: list[bool]) -> dict[str, Any]:
    """Greedy offset plan (largest first, lowest free offset) of the main subgraph."""
    n_ops = len(sg.operators)
    last = max(n_ops - 1, 0)
    first: dict[int, int] = {i: 0 for i in sg.inputs}
    end: dict[int, int] = {}
    for oi, op in enumerate(sg.operators):
        for t in op.inputs:
            if t >= 0:
                end[t] = oi
        for t in list(op.outputs) + list(op.intermediates):
            if t >= 0:
                first.setdefault(t, oi)
                end[t] = max(end.get(t, oi), oi)
    for t in sg.outputs:
        end[t] = last
    for ti, t in enumerate(sg.tensors):
        if t.is_variable:  # persistent state lives for the whole run
            first[ti], end[ti] = 0, last
    items = []
    for ti, start in first.items():
        size = _tensor_bytes(sg.tensors[ti])
        if is_const[ti] or not size:
            continue
        items.append((size, start, end.get(ti, start), ti))
    items.sort(key=lambda x: (-x[0], x[1], x[3]))
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, start, end)
    peak = 0
    for size, start, stop, _ in items:
        busy = sorted((o, o + s) for o, s, a, b in placed if a <= stop and start <= b)
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append((offset, size, start, stop))
        peak = max(peak, offset + size)
    sizes = [x[0] for x in items]
    return {
        "arena_bytes": peak,
        "largest_activation_bytes": max(sizes, default=0),
        "sum_activation_bytes": sum(sizes),
        "num_activations": len(sizes),
        "method": "greedy offset plan of the main subgraph's non-constant tensors, "
        "largest first, lifetimes from op order; activations only (no runtime overhead)",
    }


def _build_report(
    m: schema.Model, data: bytes, *, ram_kb: float | None, flash_kb: float | None
) -> ModelReport:
    file_size = len(data)
    main = m.subgraphs[0]

    def raw(b: int) -> bytes:
        buf = m.buffers[b]
        return data[buf.start : buf.start + buf.size]

    tensors_out: list[dict[str, Any]] = []
    ops_out: list[dict[str, Any]] = []
    op_counts: collections.Counter[str] = collections.Counter()
    macs_by_type: collections.Counter[str] = collections.Counter()
    custom: dict[str, str] = {}
    no_xnnpack: set[str] = set()
    weight_buffers: set[int] = set()
    params = 0
    main_const: list[bool] = []
    for si, sg in enumerate(m.subgraphs):
        consts = [m.buffers[t.buffer].size > 0 for t in sg.tensors]
        if si == 0:
            main_const = consts
        for ti, t in enumerate(sg.tensors):
            q = _quant_dict(t)
            entry: dict[str, Any] = {
                "subgraph": si,
                "index": ti,
                "name": t.name,
                "shape": list(t.shape),
                "dtype": t.dtype,
                "bytes": m.buffers[t.buffer].size if consts[ti] else _tensor_bytes(t),
                "constant": consts[ti],
                "quantization": q["kind"],
                "sparse_encoded": t.sparsity is not None,
                "zero_fraction": None,
            }
            if consts[ti]:
                weight_buffers.add(t.buffer)
                entry["zero_fraction"] = _zero_fraction(t, raw(t.buffer))
                if t.type in FLOAT_TYPES or q["kind"] != "none":
                    params += math.prod(t.shape)
            tensors_out.append(entry)
        for oi, op in enumerate(sg.operators):
            name = op_type(m, op)
            op_counts[name] += 1
            if _is_custom(m, op):
                custom[name] = runtime_needed(name)
                if name not in _XNNPACK_CUSTOM:
                    no_xnnpack.add(name)
            elif name not in XNNPACK_OPS:
                no_xnnpack.add(name)
            macs = _macs(name, op, sg.tensors)
            macs_by_type[name] += macs
            const_bufs = {sg.tensors[i].buffer for i in op.inputs if i >= 0 and consts[i]}
            wbytes = sum(m.buffers[b].size for b in const_bufs)
            ops_out.append(
                {
                    "subgraph": si,
                    "index": oi,
                    "type": name,
                    "inputs": list(op.inputs),
                    "outputs": list(op.outputs),
                    "macs": macs,
                    "weight_bytes": wbytes,
                    "weight_share": wbytes / file_size,
                    "custom": _is_custom(m, op),
                    "flex": name.startswith("Flex"),
                    "xnnpack": name not in no_xnnpack,
                }
            )
    metadata_buffers = {b for _, b in m.metadata}
    weights_bytes = sum(m.buffers[b].size for b in weight_buffers)
    metadata_bytes = sum(m.buffers[b].size for b in metadata_buffers - weight_buffers)
    all_buffer_bytes = sum(b.size for b in m.buffers)
    other = all_buffer_bytes - weights_bytes - metadata_bytes
    by_tensor = sorted((t for t in tensors_out if t["constant"]), key=lambda t: -(t["bytes"] or 0))
    size = {
        "file_bytes": file_size,
        "weights_bytes": weights_bytes,
        "weights_share": weights_bytes / file_size,
        "metadata_bytes": metadata_bytes,
        "metadata": [{"name": n, "buffer": b, "bytes": m.buffers[b].size} for n, b in m.metadata],
        "other_buffer_bytes": other,
        "structure_bytes": file_size - all_buffer_bytes,
        "by_weight_tensor": [
            {
                "subgraph": t["subgraph"],
                "index": t["index"],
                "name": t["name"],
                "bytes": t["bytes"],
                "share": (t["bytes"] or 0) / file_size,
            }
            for t in by_tensor
        ],
    }
    memory = _plan_arena(main, main_const)
    memory["weights_bytes"] = weights_bytes
    memory["ram_kb"] = ram_kb
    memory["flash_kb"] = flash_kb
    memory["fits_ram"] = None if ram_kb is None else memory["arena_bytes"] <= ram_kb * 1024
    memory["fits_flash"] = None if flash_kb is None else file_size <= flash_kb * 1024
    signatures = [
        {
            "key": s.key,
            "subgraph": s.subgraph_index,
            "inputs": [{"name": n, "tensor": i} for n, i in s.inputs],
            "outputs": [{"name": n, "tensor": i} for n, i in s.outputs],
        }
        for s in m.signatures
    ]
    return ModelReport(
        file_size=file_size,
        schema_version=m.version,
        description=m.description,
        num_subgraphs=len(m.subgraphs),
        signatures=signatures,
        inputs=[_io_dict(main.tensors[i], i) for i in main.inputs],
        outputs=[_io_dict(main.tensors[i], i) for i in main.outputs],
        op_counts=dict(sorted(op_counts.items())),
        ops=ops_out,
        custom_ops=[{"name": k, "runtime": v} for k, v in sorted(custom.items())],
        xnnpack_unsupported=sorted(no_xnnpack),
        tensors=tensors_out,
        size=size,
        params=params,
        total_macs=sum(macs_by_type.values()),
        macs_by_op_type={k: v for k, v in sorted(macs_by_type.items()) if v},
        memory=memory,
    )


@dataclasses.dataclass(frozen=True)
class DelegateFit:
    """How well a file suits XNNPack, read from the file (what can make it slow).

    Attributes:
      not_taken: `OP (reason)` for each op of the main graph XNNPack will not take.
      partitions: delegate partitions, estimated as the runs of taken ops between
        ops it does not take (in execution order); each boundary hands tensors back
        to the builtin kernels and costs time on a small model.
      quantize_ops, dequantize_ops: QUANTIZE / DEQUANTIZE ops in the main graph.
      free_batch: an input's batch dimension is left free (-1), which makes the
        converter compute Reshape shapes at run time (SHAPE, STRIDED_SLICE, PACK).
      int16_activations: activations are int16 (the int16x8 mode), which XNNPack
        does not run: every op falls back to the slow reference kernels.
    """

    not_taken: tuple[str, ...]
    partitions: int
    quantize_ops: int
    dequantize_ops: int
    free_batch: bool
    int16_activations: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def delegate_fit(model: str | os.PathLike | bytes) -> DelegateFit:
    """Which ops of a `.tflite` file XNNPack leaves out, and how many partitions that makes.

    Beyond `ModelReport.xnnpack_unsupported` (op types XNNPack has no kernel for), a
    RESHAPE whose new shape is computed at run time, an op computing on int32 tensors
    (shape arithmetic) and every op on int16 tensors are counted as not taken: XNNPack
    needs static shapes and has no int16 or int32 kernels for these ops.
    """
    r = inspect_model(model)
    consts = {(t["subgraph"], t["index"]): t["constant"] for t in r.tensors}
    dtypes = {(t["subgraph"], t["index"]): t["dtype"] for t in r.tensors}
    not_taken: list[str] = []
    partitions, in_run, counts = 0, False, collections.Counter()
    for op in (o for o in r.ops if o["subgraph"] == 0):
        name = op["type"]
        counts[name] += 1
        ts = [(0, i) for i in (*op["inputs"], *op["outputs"]) if i >= 0]
        reason = None
        if not op["xnnpack"]:
            reason = "no XNNPack kernel"
        elif name == "RESHAPE" and len(op["inputs"]) > 1 and not consts.get((0, op["inputs"][1])):
            reason = "shape computed at run time"
        elif any(dtypes.get(t) == "int16" for t in ts):
            reason = "int16 tensors"
        elif any(dtypes.get(t) in ("int32", "int64") and not consts.get(t) for t in ts):
            reason = "computes on int32 shapes"
        if reason:
            not_taken.append(f"{name} ({reason})")
            in_run = False
        elif not in_run:
            partitions, in_run = partitions + 1, True
    return DelegateFit(
        not_taken=tuple(not_taken),
        partitions=partitions,
        quantize_ops=counts["QUANTIZE"],
        dequantize_ops=counts["DEQUANTIZE"],
        free_batch=any(-1 in (i.get("shape_signature") or [])[:1] for i in r.inputs),
        int16_activations=any(t["dtype"] == "int16" and not t["constant"] for t in r.tensors),
    )
