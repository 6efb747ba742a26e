"""Float `.tflite` -> quantized `.tflite` with LiteRT Quantizer (no TensorFlow needed).

LiteRT's successor to the converter's post-training quantization: it works on any
float `.tflite` (from Keras, a SavedModel, or another framework) and offers schemes
the converter lacks: weight-only and dynamic int4, blockwise scales, int16
activations, and per-scope precision by regular expression. This module closes its
traps the way `converter` does for the TFLite converter: an already-quantized file,
calibration data that does not fit the input signature, a scope regex that matches
no op, and ops that have no kernel for the chosen precision (which LiteRT Quantizer
would otherwise leave in float without a word) are refused before the slow part.
Its progress bars and interpreter notes are captured, never printed.

Example:
    >>> r = quantize("model_float.tflite", ConvertConfig(backend="litert_quantizer",
    ...              scheme="static_wi8_ai8"), calibration_data=x)
    >>> r.save("model_int8.tflite")
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as _io
import os
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from edgekit import data, errors, runtime
from edgekit.config import ConvertConfig, IOType
from edgekit.convert import calibration as calibration_lib
from edgekit.convert import converter, logs
from edgekit.convert.result import ConversionResult, gzip_size
from edgekit.lite import inspect, schema, validate

_QUANTIZED_TYPES = frozenset({2, 3, 7, 9, 17})  # int32 is bias-only; uint8, int16, int8, int4
_WEIGHT_TYPES = frozenset({3, 7, 9, 17})  # uint8, int16, int8, int4


@dataclasses.dataclass(frozen=True)
class Op:
    """One op of a `.tflite` graph, named as LiteRT Quantizer's scopes name it.

    `name` is its first output tensor's name (what `scope` regexes match), `type`
    the builtin op name, `index` its position in the main subgraph.
    """

    index: int
    type: str
    name: str

    @property
    def scope(self) -> str:
        """An anchored regex that matches this op's scope and no other."""
        return scope(self.name)


def scope(op_name: str) -> str:
    """The anchored regex (a `float_scopes` entry) that matches the op named `op_name` only."""
    return "^" + re.escape(op_name) + ";"


def _lq() -> Any:
    # Lazy: importing LiteRT Quantizer loads the interpreter and scipy.
    import litert_quantizer
    from litert_quantizer import algorithm_manager, qtyping, recipe

    return litert_quantizer, recipe, qtyping, algorithm_manager


def model_ops(blob: bytes) -> list[Op]:
    """The ops of the main subgraph, in execution order."""

    m = schema.parse(blob)
    sg = m.subgraphs[0]
    ops = []
    for i, op in enumerate(sg.operators):
        outs = [sg.tensors[t].name for t in op.outputs if t >= 0]
        ops.append(Op(index=i, type=inspect.op_type(m, op), name=outs[0] if outs else f"op{i}"))
    return ops


def check_float_model(blob: bytes, *, where: str = "the model") -> None:
    """Refuses a `.tflite` that is already quantized (its weights are integers)."""

    m = schema.parse(blob)
    quantized = sorted(
        {
            t.name
            for sg in m.subgraphs
            for t in sg.tensors
            if t.type in _WEIGHT_TYPES and t.quantization is not None and t.quantization.scales
        }
    )
    if quantized:
        raise errors.UserInputError(
            f"{where} is already quantized ({len(quantized)} integer tensors, for example "
            f"{quantized[0]!r}); quantizing it again would stack a second rounding on the "
            "first. Pass the float32 .tflite it was made from (edgekit-convert --mode=float32 "
            "makes one from a Keras model). " + errors.received(quantized_tensors=len(quantized))
        )


def _granularity(config: ConvertConfig, qtyping: Any) -> Any:
    if config.block_size:
        return qtyping.QuantGranularity(f"BLOCKWISE_{config.block_size}")
    if not config.per_channel:
        return qtyping.QuantGranularity.TENSORWISE
    return qtyping.QuantGranularity.CHANNELWISE


def build_recipe(
    config: ConvertConfig,
    *,
    op_types: Sequence[str] = (),
    float_scopes: Sequence[str] = (),
    int16_scopes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """LiteRT Quantizer's recipe for `config`, with ops kept float or moved to int16.

    Args:
      config: a config with backend "litert_quantizer" and a scheme.
      op_types: the model's op types; with a block size, those that have blockwise
        kernels get blocks, the others per-channel scales.
      float_scopes: regexes of op scopes (output tensor names) to leave in float.
      int16_scopes: static schemes: regexes of op scopes to give int16 activations.
    """
    _, _, qtyping, _ = _lq()
    from litert_quantizer import recipe_manager

    scheme = config.scheme
    manager = recipe_manager.RecipeManager()
    gran = _granularity(config, qtyping)
    all_ops = qtyping.TFLOperationName.ALL_SUPPORTED
    bits = 4 if "wi4" in scheme else 8
    if not scheme.startswith("static"):
        add = manager.add_dynamic_config if scheme.startswith("dynamic") else None
        add = add or manager.add_weight_only_config
        base = gran if not config.block_size else qtyping.QuantGranularity.CHANNELWISE
        add(".*", all_ops, bits, granularity=base)
        for op_type in blockwise_op_types(config, op_types):
            add(".*", qtyping.TFLOperationName(op_type), bits, granularity=gran)
    else:
        act = 16 if scheme.endswith("ai16") else 8
        manager.add_static_config(".*", all_ops, act, 8, weight_granularity=gran)
        for scope in int16_scopes:
            manager.add_static_config(scope, all_ops, 16, 8, weight_granularity=gran)
    recipe = manager.get_quantization_recipe()
    if scheme.startswith("static") and config.io_type is IOType.FLOAT32:
        # LiteRT Quantizer makes integer inputs and outputs by default; the converter's
        # default (and the config's) is float I/O with QUANTIZE/DEQUANTIZE inside.
        for io_op in ("INPUT", "OUTPUT"):
            recipe.append({"regex": ".*", "operation": io_op, "algorithm_key": "no_quantize"})
    for scope in float_scopes:
        recipe.append({"regex": scope, "operation": "*", "algorithm_key": "no_quantize"})
    return recipe


def blockwise_op_types(config: ConvertConfig, op_types: Sequence[str]) -> list[str]:
    """Of `op_types`, those LiteRT Quantizer can give blockwise weights (fully connected)."""
    if not config.block_size:
        return []
    from litert_quantizer import recipe_manager

    _, _, qtyping, _ = _lq()
    known = {o.value for o in qtyping.TFLOperationName} - {"*", "INPUT", "OUTPUT"}
    gran = _granularity(config, qtyping)
    found = []
    for op_type in sorted(set(op_types) & known):
        probe = recipe_manager.RecipeManager()
        add = probe.add_dynamic_config if config.scheme.startswith("dynamic") else None
        add = add or probe.add_weight_only_config
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                add(".*", qtyping.TFLOperationName(op_type), 4, granularity=gran)
        except ValueError:
            continue
        found.append(op_type)
    return found


def _op_config(config: ConvertConfig, qtyping: Any, act_bits: int) -> Any:
    weight = qtyping.TensorQuantizationConfig(num_bits=8, symmetric=True)
    act = qtyping.TensorQuantizationConfig(num_bits=act_bits, symmetric=act_bits == 16)
    return qtyping.OpQuantizationConfig(
        activation_tensor_config=act,
        weight_tensor_config=weight,
        compute_precision=qtyping.ComputePrecision.INTEGER,
    )


def ops_without_kernels(blob: bytes, act_bits: int, config: ConvertConfig) -> list[Op]:
    """Ops that LiteRT Quantizer cannot give `act_bits`-bit activations (they stay float)."""
    _, _, qtyping, algorithm_manager = _lq()
    op_config = _op_config(config, qtyping, act_bits)
    known = {o.value for o in qtyping.TFLOperationName}
    missing = []
    for op in model_ops(blob):
        if op.type in ("QUANTIZE", "DEQUANTIZE"):
            continue
        ok = op.type in known
        if ok:
            try:
                algorithm_manager.check_op_quantization_config(
                    algorithm_manager.AlgorithmName.MIN_MAX_UNIFORM_QUANT,
                    qtyping.TFLOperationName(op.type),
                    op_config,
                )
            except ValueError:
                ok = False
        if not ok:
            missing.append(op)
    return missing


def check_scopes(blob: bytes, scopes: Sequence[str], *, what: str) -> None:
    """Refuses a scope regex that is invalid or matches no op of the model."""
    ops = model_ops(blob)
    for scope in scopes:
        try:
            pattern = re.compile(scope)
        except re.error as e:
            raise errors.UserInputError(
                f"{what} {scope!r} is not a valid regular expression ({e}). "
                + errors.received(scope=scope)
            ) from None
        if not any(pattern.search(op.name + ";") for op in ops):
            names = ", ".join(repr(op.name) for op in ops[:5])
            raise errors.UserInputError(
                f"{what} {scope!r} matches no op of the model, so it would change nothing. "
                f"Scopes are matched against each op's output tensor name (edgekit-inspect "
                f"lists them), for example {names}. " + errors.received(scope=scope)
            )


@dataclasses.dataclass(frozen=True)
class Signature:
    """The one input a calibration set feeds: signature key, input name and shape."""

    key: str
    input_name: str
    shape: tuple[int, ...]


def signature(blob: bytes) -> Signature:
    """The model's single-input signature (LiteRT Quantizer calibrates through it)."""
    lm = runtime.LiteModel(blob)
    if len(lm.inputs) != 1:
        raise errors.UserInputError(
            "Calibration of models with several inputs is not supported yet; use a dynamic or "
            "weight-only scheme, which needs none. " + errors.received(num_inputs=len(lm.inputs))
        )

    sigs = schema.parse(blob).signatures
    if not sigs:
        raise errors.UserInputError(
            "LiteRT Quantizer calibrates through a signature, and this .tflite has none. "
            "Re-export the float model with a serving signature (the TFLite converter adds "
            "one), or use a dynamic or weight-only scheme. " + errors.received(signatures=0)
        )
    key, name = sigs[0].key, sigs[0].inputs[0][0]
    return Signature(key=key, input_name=name, shape=tuple(lm.inputs[0].shape_signature))


def calibration_samples(blob: bytes, config: ConvertConfig, calibration_data: Any) -> np.ndarray:
    """Loads and checks calibration data against the float model's input signature."""
    if calibration_data is None:
        raise errors.UserInputError(
            f"Scheme {config.scheme!r} quantizes activations, so it needs calibration data to "
            "measure their ranges. Pass --calibration_data=DATA (a few hundred representative "
            "samples), or choose a dynamic or weight-only scheme, which needs none. "
            + errors.received(scheme=config.scheme, calibration_data=None)
        )
    x = (
        calibration_data
        if isinstance(calibration_data, np.ndarray)
        else calibration_lib.load_calibration(calibration_data).x
    )
    data.check_inputs(x, signature(blob).shape, what="calibration data")
    calibration_lib.check_float(x)
    return data.calibration_samples(x, config.num_calibration_samples).astype(np.float32)


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """Captures LiteRT Quantizer's progress bars, notes and Python warnings."""
    out = _io.StringIO()
    with logs.captured_stderr() as lines, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield lines
    lines.extend(out.getvalue().splitlines())


class Session:
    """One float model, calibrated once, quantized with as many recipes as asked.

    The selective search quantizes the same model many times with different ops
    kept in float; calibration (the slow part) is done once for all of them.
    """

    def __init__(self, blob: bytes, config: ConvertConfig, calibration: np.ndarray | None):
        self.blob = blob
        self.config = config
        self.calibration = calibration
        self.log: list[str] = []
        self.calibration_seconds = 0.0
        self._qsvs: dict | None = None
        self.op_types = sorted({op.type for op in model_ops(blob)})

    def quantize(
        self, *, float_scopes: Sequence[str] = (), int16_scopes: Sequence[str] = ()
    ) -> bytes:
        """The quantized flatbuffer for the config's scheme with these exceptions."""
        litert_quantizer, _, _, _ = _lq()
        recipe = build_recipe(
            self.config,
            op_types=self.op_types,
            float_scopes=float_scopes,
            int16_scopes=int16_scopes,
        )
        with quiet() as lines:
            q = litert_quantizer.Quantizer(bytearray(self.blob), recipe)
            if q.need_calibration and self._qsvs is None:
                start = time.perf_counter()
                self._qsvs = self._calibrate(q, int16=bool(int16_scopes))
                self.calibration_seconds = time.perf_counter() - start
            result = q.quantize(
                self._qsvs if q.need_calibration else None, enable_progress_report=False
            )
        self.log.extend(lines)
        return bytes(result.quantized_model)

    def _calibrate(self, q: Any, *, int16: bool) -> dict:
        if self.calibration is None:
            raise errors.UserInputError("Calibration data is missing.")  # checked before
        sig = signature(self.blob)
        samples = [{sig.input_name: s[None]} for s in self.calibration]
        return q.calibrate({sig.key: samples}, num_threads=os.cpu_count() or 1)


def quantize(
    model: bytes | str | os.PathLike,
    config: ConvertConfig,
    *,
    calibration_data: Any = None,
    float_scopes: Sequence[str] = (),
) -> ConversionResult:
    """Quantizes a float `.tflite` with LiteRT Quantizer.

    Args:
      model: the float `.tflite` (path or bytes).
      config: backend "litert_quantizer" with a scheme (and block size).
      calibration_data: static schemes: inputs that fit the model's signature (any
        source `edgekit.data.load` accepts, or an array).
      float_scopes: regexes of op scopes (output tensor names) to keep in float,
        besides those of `config.float_scopes`.

    Returns:
      A `ConversionResult` with the same fields as the converter's.

    Raises:
      UserInputError: an already-quantized model, calibration data that does not fit,
        a scope that matches no op, int16 activations on ops without int16 kernels.
    """
    float_scopes = tuple(dict.fromkeys((*config.float_scopes, *float_scopes)))
    blob, calibration = prepare(model, config, calibration_data, float_scopes=float_scopes)
    session = Session(blob, config, calibration)
    start = time.perf_counter()
    out = session.quantize(float_scopes=float_scopes)
    return result_for(session, out, time.perf_counter() - start, float_scopes=float_scopes)


def prepare(
    model: bytes | str | os.PathLike,
    config: ConvertConfig,
    calibration_data: Any,
    *,
    float_scopes: Sequence[str] = (),
) -> tuple[bytes, np.ndarray | None]:
    """Every check that can fail, before any quantizing: returns (float bytes, calibration)."""
    if config.scheme is None:
        raise errors.UserInputError(
            "LiteRT Quantizer needs a scheme. " + errors.received(scheme=None)
        )
    blob = runtime.read_model_bytes(model)

    validate.check_model_bytes(blob)
    check_float_model(blob, where=str(model) if not isinstance(model, bytes) else "the model")
    check_scopes(blob, float_scopes, what="The float scope")
    op_types = sorted({op.type for op in model_ops(blob)})
    if config.block_size and not blockwise_op_types(config, op_types):
        raise errors.UserInputError(
            f"block_size={config.block_size} would change nothing: LiteRT Quantizer has "
            f"blockwise {config.scheme!r} kernels for none of this model's ops "
            f"({', '.join(op_types)}); it has them for FULLY_CONNECTED with the dynamic "
            "schemes. Drop block_size for per-channel scales. "
            + errors.received(scheme=config.scheme, block_size=config.block_size)
        )
    static = config.scheme.startswith("static")
    calibration = calibration_samples(blob, config, calibration_data) if static else None
    if config.scheme == "static_wi8_ai16":
        missing = [
            op for op in ops_without_kernels(blob, 16, config) if not _kept(op, float_scopes)
        ]
        if missing:
            kinds = sorted({op.type for op in missing})
            raise errors.UserInputError(
                f"Scheme 'static_wi8_ai16' gives every op int16 activations, but LiteRT has no "
                f"int16 kernel for {', '.join(kinds)} ({len(missing)} op(s), for example "
                f"{missing[0].name!r}); LiteRT Quantizer would leave them in float without a "
                "word. Use 'static_wi8_ai8', or keep those ops float with --float_scope=REGEX. "
                + errors.received(scheme=config.scheme, ops_without_int16_kernels=kinds)
            )
    return blob, calibration


def _kept(op: Op, scopes: Sequence[str]) -> bool:
    return any(re.search(s, op.name + ";") for s in scopes)


def result_for(
    session: Session,
    blob: bytes,
    seconds: float,
    *,
    float_scopes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> ConversionResult:
    """A `ConversionResult` for a quantized flatbuffer this session made."""
    config = session.config
    lm = runtime.LiteModel(blob)
    dtype = lm.inputs[0].dtype if lm.inputs else "float32"
    io_type = IOType(dtype) if dtype in {t.value for t in IOType} else IOType.FLOAT32
    settings: dict[str, Any] = {
        "backend": config.backend.value,
        "scheme": config.scheme,
        "weight_granularity": _granularity(config, _lq()[2]).value.lower(),
        "recipe": build_recipe(config, op_types=session.op_types, float_scopes=float_scopes),
        "float_ops": converter.float_ops(blob) if config.scheme.startswith("static") else [],
    }
    if session.calibration is not None:
        settings["representative_dataset"] = (
            f"{len(session.calibration)} samples spread over the data"
        )
    if config.block_size:
        blocked = blockwise_op_types(config, session.op_types)
        settings["blockwise_ops"] = blocked
        settings["block_size"] = config.block_size
    settings.update(extra or {})
    return ConversionResult(
        tflite_bytes=blob,
        mode=config.mode,
        io_type=io_type,
        size_bytes=len(blob),
        gzip_size_bytes=gzip_size(blob),
        conversion_seconds=seconds,
        converter_settings=settings,
        converter_warnings=logs.warnings_from(session.log),
        num_calibration_samples=0 if session.calibration is None else len(session.calibration),
    )
