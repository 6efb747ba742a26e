"""Keras -> `.tflite` in every post-training mode, with TensorFlow's TFLite converter.

Wraps `tf.lite.TFLiteConverter` and closes its usual traps: calibration data is
checked (shape, dtype, finiteness, emptiness) before the slow part starts and is
sampled evenly over the data, not just the first N; an op TFLite lacks is named
in the error together with the flag that allows it; the converter's own warnings
(printed by C++ to stderr) are captured into the result. A quantization-aware
trained model is converted with the activation ranges it learned, not re-calibrated.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgekit import _compat, errors, io, runtime
from edgekit.config import ConvertConfig, ConvertMode, IOType
from edgekit.convert import calibration as calibration_lib
from edgekit.convert import granularity, logs
from edgekit.convert.logs import captured_stderr
from edgekit.convert.result import ConversionResult, gzip_size
from edgekit.lite import inspect, schema


def _converter_error() -> type[Exception]:
    # tf.lite.ConverterError is not exported in every TF 2.x; the class lives here.
    _compat.tf()
    from tensorflow.lite.python.convert_phase import ConverterError

    return ConverterError


def _fixed_batch_specs(model: Any, batch_size: int) -> list[Any]:
    """One `tf.TensorSpec` per model input, with the batch dimension set to `batch_size`."""
    tf = _compat.tf()
    return [
        tf.TensorSpec([batch_size, *t.shape[1:]], t.dtype, name=t.name.split(":")[0])
        for t in model.inputs
    ]


def make_converter(model: Any, workdir: str, *, batch_size: int | None = None) -> Any:
    """A `tf.lite.TFLiteConverter` for a Keras model (tf_keras or Keras 3) or SavedModel.

    With `batch_size`, a Keras model is traced with its inputs' batch dimension fixed:
    the file then has static shapes, and a Reshape needs no SHAPE/STRIDED_SLICE/PACK
    ops at run time.
    """
    tf = _compat.tf()
    if isinstance(model, io.SavedModelDir):
        if batch_size is not None:
            raise errors.UserInputError(
                "batch_size is supported for Keras models only; a SavedModel keeps the "
                "signature it was saved with. Save the model with a fixed input shape, or "
                "convert the Keras model. " + errors.received(batch_size=batch_size)
            )
        return tf.lite.TFLiteConverter.from_saved_model(
            model.path, signature_keys=[model.signature]
        )
    if io.is_keras3_model(model):
        # Keras 3 objects cannot enter the TF1-style Keras path; export a SavedModel
        # (serving signature) and convert that.
        path = os.path.join(workdir, "keras3_export")
        kwargs = {}
        if batch_size is not None:
            kwargs["input_signature"] = _fixed_batch_specs(model, batch_size)
        with captured_stderr():
            model.export(path, format="tf_saved_model", verbose=False, **kwargs)
        return tf.lite.TFLiteConverter.from_saved_model(path)
    if batch_size is None:
        return tf.lite.TFLiteConverter.from_keras_model(model)
    specs = _fixed_batch_specs(model, batch_size)

    def call(*xs: Any) -> Any:
        return model(xs[0] if len(xs) == 1 else list(xs), training=False)

    fn = tf.function(call, input_signature=specs)
    return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)


def configure(
    converter: Any, config: ConvertConfig, calibration: np.ndarray | None, *, qat: bool = False
) -> dict[str, Any]:
    """Sets the converter's attributes for `config`; returns the ones it set, by name."""
    tf = _compat.tf()
    settings: dict[str, Any] = {}
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    ops = [builtins]
    optimizations = []
    mode = config.mode
    if mode is not ConvertMode.FLOAT32:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if config.sparse_weights:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if mode is ConvertMode.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
        settings["target_spec.supported_types"] = ["float16"]
    if mode is ConvertMode.INT8 and not qat:
        # (A QAT model is checked for float ops after converting instead: the converter
        # insists on calibration data whenever this op set is asked for.)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if mode is ConvertMode.INT16X8:
        ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if config.allow_select_tf_ops:
        ops = [*ops, tf.lite.OpsSet.SELECT_TF_OPS]
        if mode is ConvertMode.INT8 and not qat:
            ops.append(builtins)
    if calibration is not None:
        step = config.batch_size or 1

        def representative_dataset() -> Iterator[list[np.ndarray]]:
            for i in range(0, len(calibration) - step + 1, step):
                yield [calibration[i : i + step]]

        converter.representative_dataset = representative_dataset
        settings["representative_dataset"] = f"{len(calibration)} samples spread over the data"
    if config.batch_size is not None:
        settings["batch_size"] = config.batch_size
    if config.io_type is not IOType.FLOAT32:
        dtype = {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16}[config.io_type.value]
        converter.inference_input_type = dtype
        converter.inference_output_type = dtype
        settings["inference_input_type"] = settings["inference_output_type"] = config.io_type.value
    if not config.per_channel:
        # No public switch exists; this private attribute has been stable since TF 2.4.
        converter._experimental_disable_per_channel = True
        settings["per_channel"] = False
    converter.optimizations = optimizations
    converter.target_spec.supported_ops = ops
    settings["optimizations"] = [o.name for o in optimizations]
    settings["target_spec.supported_ops"] = [o.name for o in ops]
    return settings


_UNSUPPORTED_OP_PATTERNS = (
    r"'(tf\.\w+)' op is neither a custom op nor a flex op",
    r"failed to legalize operation '(tf\.\w+)'",
    r"Ops that can be supported by the flex runtime[^:]*:\s*\n?\s*(tf\.\w+)",
    r"\b(tf\.\w+)\s*\{",
)


def _explain_failure(message: str, config: ConvertConfig) -> errors.UserInputError:
    ops: list[str] = []
    for pattern in _UNSUPPORTED_OP_PATTERNS:
        for op in re.findall(pattern, message):
            if op not in ops:
                ops.append(op)
    first = next(
        (ln.strip() for ln in message.splitlines() if "error" in ln.lower()), message[:300]
    )
    if ops and not config.allow_select_tf_ops:
        return errors.UserInputError(
            f"TFLite has no builtin kernel for op(s) {ops}, so the model cannot be converted to "
            "pure TFLite ops. Rewrite that part of the model with supported ops, or pass "
            "--allow_select_tf_ops (allow_select_tf_ops=True) to run them as Select TF ops "
            "(the app then needs the Flex delegate, several MB). "
            + errors.received(mode=config.mode.value, unsupported_ops=ops)
        )
    if config.mode is ConvertMode.INT8 and ("quantiz" in message.lower() or ops):
        return errors.UserInputError(
            f"Full-integer conversion failed: {first}. Some ops of this model have no int8 "
            "kernel; try mode 'int8_float_fallback', which keeps those ops in float. "
            + errors.received(mode=config.mode.value)
        )
    return errors.UserInputError(
        f"The TFLite converter failed: {first}. " + errors.received(mode=config.mode.value, ops=ops)
    )


_QAT_LAYERS = frozenset({"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"})
_FAKE_QUANT_OPS = (b"FakeQuantWithMinMaxVars", b"QuantizeAndDequantizeV")


def is_quantization_aware(model: Any) -> bool:
    """Whether `model` was made by quantization-aware training (carries fake-quant ranges)."""
    if isinstance(model, io.SavedModelDir):
        pb = pathlib.Path(model.path) / "saved_model.pb"
        blob = pb.read_bytes() if pb.is_file() else b""
        return any(op in blob for op in _FAKE_QUANT_OPS)
    if io.is_keras3_model(model):
        return False
    stack, seen = [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if type(layer).__name__ in _QAT_LAYERS:
            return True
        stack.extend(getattr(layer, "layers", ()))
    return False


def float_ops(blob: bytes) -> list[str]:
    """Ops of a `.tflite` file that compute in float, apart from (de)quantizing its I/O.

    An int8 file made from a QAT model still has a QUANTIZE after each float input
    and a DEQUANTIZE before each float output; every other op should take and give
    integers.
    """
    m = schema.parse(blob)
    found = []
    for sg in m.subgraphs:
        for op in sg.operators:
            name = inspect.op_type(m, op)
            tensors = [sg.tensors[i] for i in (*op.inputs, *op.outputs) if i >= 0]
            is_float = any(t.type in inspect.FLOAT_TYPES for t in tensors)
            if is_float and name not in ("QUANTIZE", "DEQUANTIZE"):
                found.append(name)
    return sorted(set(found))


def _convert_once(
    model: Any, config: ConvertConfig, calibration: np.ndarray | None, *, qat: bool = False
) -> tuple[bytes | None, str | None, dict[str, Any], list[str], float]:
    with tempfile.TemporaryDirectory(prefix="edgekit-convert-") as workdir:
        converter = make_converter(model, workdir, batch_size=config.batch_size)
        settings = configure(converter, config, calibration, qat=qat)
        start = time.perf_counter()
        with captured_stderr() as log:
            try:
                blob, failure = bytes(converter.convert()), None
            except (_converter_error(), ValueError, RuntimeError) as e:
                blob, failure = None, str(e)
    return blob, failure, settings, log, time.perf_counter() - start


def _measures_granularity(config: ConvertConfig) -> bool:
    """Whether both weight granularities are measured (by default, whenever it can be)."""
    if config.choose_granularity is None:
        return config.per_channel and config.mode in calibration_lib.QAT_MODES
    return config.choose_granularity


def _float_outputs(model: Any, x: np.ndarray) -> np.ndarray:
    """The float model's outputs on `x` (what a quantized file should agree with)."""
    if hasattr(model, "predict"):
        return np.asarray(model.predict(x, verbose=0))
    # A SavedModel: its float32 conversion computes the same function.
    f32, _, _, _, _ = _convert_once(model, ConvertConfig(), None)
    return runtime.LiteModel(f32).predict(x)


def convert(
    model: Any,
    config: ConvertConfig | None = None,
    *,
    calibration_data: Any = None,
    custom_objects: dict[str, Any] | None = None,
    safe_mode: bool = True,
) -> ConversionResult:
    """Converts a Keras model (or SavedModel) to a `.tflite` flatbuffer.

    Args:
      model: a tf_keras or Keras 3 model, a path to one (.keras, .h5, SavedModel
        directory), or an `io.SavedModelDir`.
      config: the conversion settings; defaults to float32.
      calibration_data: any source `edgekit.data.load` accepts; required by the
        int8, int8_float_fallback and int16x8 modes, except for a quantization-aware
        trained model in int8 / int8_float_fallback: that one keeps the ranges it
        learned, and calibration data is used only for ops that have none.
      custom_objects / safe_mode: passed to `io.load_model` when `model` is a path.

    Returns:
      A `ConversionResult`.

    Raises:
      UserInputError: bad model or calibration data (checked before converting), or
        an op TFLite lacks (named in the message).

    Example:
        >>> r = convert("model.keras", ConvertConfig(mode="float16"))
        >>> r.size_bytes
    """
    config = config or ConvertConfig()
    model = io.load_model(model, custom_objects=custom_objects, safe_mode=safe_mode)
    qat = config.mode in calibration_lib.QAT_MODES and is_quantization_aware(model)
    calibration = calibration_lib.calibration_set(model, config, calibration_data, qat=qat)
    blob = failure = None
    if qat:
        # Calibrating a QAT model would replace the ranges it learned (and its int8
        # file would then disagree with it); convert with those ranges instead, and
        # calibrate only if some op was left without one.
        blob, failure, settings, log, seconds = _convert_once(model, config, None, qat=True)
        left_float = float_ops(blob) if blob is not None and config.mode is ConvertMode.INT8 else []
        if left_float or failure is not None:
            if calibration is None:
                raise errors.UserInputError(
                    "This quantization-aware-trained model has ops without trained ranges "
                    f"({', '.join(left_float) or 'the converter said: ' + failure[:200]}), so "
                    "full-integer conversion needs calibration data for them. Pass "
                    "--calibration_data=DATA, or use mode 'int8_float_fallback' to keep "
                    "them in float. " + errors.received(mode=config.mode.value)
                )
            blob = failure = None
        else:
            settings["ranges"] = "from quantization-aware training (no calibration)"
            calibration = None
    if blob is None and failure is None:
        blob, failure, settings, log, seconds = _convert_once(model, config, calibration)
        if qat:
            settings["ranges"] = "calibrated: some ops had no trained range"
    if failure is not None:
        raise _explain_failure(failure + "\n" + "\n".join(log), config) from None
    if config.choose_granularity and qat:
        settings["granularity_choice"] = "not made: the QAT model fixed it in training"
    elif _measures_granularity(config) and calibration is not None and not qat:
        other = dataclasses.replace(config, per_channel=not config.per_channel)
        blob2, failure2, settings2, log2, seconds2 = _convert_once(model, other, calibration)
        if failure2 is None:
            blob, settings, log, seconds = granularity.choose(
                _float_outputs(model, calibration),
                calibration,
                (blob, settings, log, seconds),
                (blob2, settings2, log2, seconds2),
            )
    return ConversionResult(
        tflite_bytes=blob,
        mode=config.mode,
        io_type=config.io_type,
        size_bytes=len(blob),
        gzip_size_bytes=gzip_size(blob),
        conversion_seconds=seconds,
        converter_settings=settings,
        converter_warnings=logs.warnings_from(log),
        num_calibration_samples=0 if calibration is None else len(calibration),
    )
