"""Post-training conversion: Keras/SavedModel -> `.tflite`, in every mode.

- `api`: `convert()`, the one entry point for both backends.
- `converter`: TensorFlow's TFLite converter (Keras or SavedModel -> `.tflite`, with
  post-training quantization).
- `litert_quantizer`: LiteRT Quantizer (float `.tflite` -> quantized `.tflite`).
- `granularity`: per-channel against per-tensor int8 weights, measured.
- `calibration`: checks calibration data before the slow part.
- `result`: `ConversionResult`, what every conversion returns.

Example:
    >>> result = edgekit.convert.convert(model, ConvertConfig(mode="int8"), calibration_data=x)
    >>> result.save("model_int8.tflite")
"""

from edgekit.config import Backend, ConvertConfig, ConvertMode, IOType
from edgekit.convert.api import convert
from edgekit.convert.calibration import calibration_set, model_input_shapes
from edgekit.convert.converter import (
    captured_stderr,
    configure,
    float_ops,
    is_quantization_aware,
    make_converter,
)
from edgekit.convert.result import ConversionResult, gzip_size

__all__ = [
    "Backend",
    "ConversionResult",
    "ConvertConfig",
    "ConvertMode",
    "IOType",
    "calibration_set",
    "captured_stderr",
    "configure",
    "convert",
    "float_ops",
    "gzip_size",
    "is_quantization_aware",
    "make_converter",
    "model_input_shapes",
]
