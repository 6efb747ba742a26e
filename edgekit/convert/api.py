"""`convert()`: one entry point for both post-training backends.

The TFLite converter quantizes while converting; LiteRT Quantizer quantizes the
float32 `.tflite` the converter makes. Either way the caller gets the same
`ConversionResult` (the same JSON keys), so the pipeline, evaluate, benchmark,
bundle and check work on the output unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekit import errors, io
from edgekit.config import Backend, ConvertConfig, ConvertMode
from edgekit.convert import calibration as calibration_lib
from edgekit.convert import converter, litert_quantizer
from edgekit.convert.result import ConversionResult


def float_config(config: ConvertConfig) -> ConvertConfig:
    """The converter's config of the float32 file LiteRT Quantizer quantizes for `config`.

    Its op names are the ones `config.float_scopes` match.
    """
    return dataclasses.replace(
        config,
        backend=Backend.CONVERTER,
        scheme=None,
        block_size=None,
        mode=ConvertMode.FLOAT32,
        io_type="float32",
        choose_granularity=None,
        float_scopes=(),
    )


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
      config: the conversion settings; defaults to float32 with the TFLite converter.
        With backend "litert_quantizer", the model is converted to float32 by the
        converter and then quantized by LiteRT Quantizer with `config.scheme`,
        keeping the ops `config.float_scopes` match in float.
      calibration_data: any source `edgekit.data.load` accepts; required by the
        int8, int8_float_fallback and int16x8 modes (and the static schemes), except
        for a quantization-aware trained model in int8 / int8_float_fallback with
        the converter: that one keeps the ranges it learned, and calibration data is
        used only for ops that have none.
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
    if config.backend is Backend.CONVERTER:
        return converter.convert(
            model,
            config,
            calibration_data=calibration_data,
            custom_objects=custom_objects,
            safe_mode=safe_mode,
        )
    model = io.load_model(model, custom_objects=custom_objects, safe_mode=safe_mode)
    if converter.is_quantization_aware(model):
        raise errors.UserInputError(
            "This model was made by quantization-aware training; its learned ranges reach "
            "the .tflite only through the TFLite converter. Use backend 'converter' with mode "
            "'int8'. " + errors.received(backend=config.backend.value, scheme=config.scheme)
        )
    # Check the calibration data against the Keras model before the slow part.
    calibration = calibration_lib.calibration_set(model, config, calibration_data)
    f32 = converter.convert(model, float_config(config))
    result = litert_quantizer.quantize(f32.tflite_bytes, config, calibration_data=calibration)
    settings = dict(result.converter_settings)
    settings["float_conversion"] = {
        "converter_settings": f32.converter_settings,
        "size_bytes": f32.size_bytes,
        "seconds": round(f32.conversion_seconds, 3),
    }
    return dataclasses.replace(
        result,
        converter_settings=settings,
        converter_warnings=f32.converter_warnings + result.converter_warnings,
        conversion_seconds=f32.conversion_seconds + result.conversion_seconds,
    )
