"""Calibration data checked before the slow part: shape, dtype, finiteness, emptiness."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit import data, errors, io
from edgekit.config import ConvertConfig, ConvertMode

# Modes in which a quantization-aware-trained model keeps the ranges it learned.
QAT_MODES = (ConvertMode.INT8, ConvertMode.INT8_FLOAT_FALLBACK)


def model_input_shapes(model: Any) -> list[tuple[int | None, ...]]:
    """The input shapes (batch first, None for unknown) of a Keras model or SavedModel."""
    if isinstance(model, io.SavedModelDir):
        fn = io.load_saved_model_signature(model.path, model.signature)
        return [tuple(spec.shape.as_list()) for spec in fn.structured_input_signature[1].values()]
    shapes = model.input_shape
    if isinstance(shapes, list):
        return [tuple(s) for s in shapes]
    if isinstance(shapes, dict):
        return [tuple(s) for s in shapes.values()]
    return [tuple(shapes)]


def calibration_set(
    model: Any, config: ConvertConfig, calibration_data: Any, *, qat: bool = False
) -> np.ndarray | None:
    """The calibration samples `config` needs for `model`, checked; None if it needs none."""
    if not config.mode.needs_calibration:
        return None
    if calibration_data is None and qat and config.mode in QAT_MODES:
        return None  # the ranges come from training
    if calibration_data is None:
        raise errors.UserInputError(
            f"Mode {config.mode.value!r} needs calibration data to measure activation ranges. "
            "Pass --calibration_data=DATA (a .npz/.npy file or image folder; a few hundred "
            "representative samples), or choose mode 'dynamic' or 'float16', which need none. "
            + errors.received(mode=config.mode.value, calibration_data=None)
        )
    ds = load_calibration(calibration_data)
    shapes = model_input_shapes(model)
    if len(shapes) != 1:
        raise errors.UserInputError(
            "Calibration of models with several inputs is not supported yet; convert with mode "
            "'dynamic' or 'float16'. " + errors.received(num_inputs=len(shapes))
        )
    data.check_inputs(ds.x, shapes[0], what="calibration data")
    check_float(ds.x)
    return data.calibration_samples(ds.x, config.num_calibration_samples).astype(np.float32)


def check_float(x: np.ndarray) -> None:
    """Refuses integer calibration data: it is almost always on the wrong scale."""
    if x.dtype.kind != "f":
        # Integer images are common (uint8 pixels), but the float model was trained on
        # something else; calibrating on the wrong scale silently ruins int8 accuracy.
        raise errors.UserInputError(
            "Calibration data must be float, preprocessed exactly as the model's training "
            "inputs were (for example scaled to [0, 1]). Convert it with x.astype('float32') "
            "and the same scaling. " + errors.received(dtype=str(x.dtype))
        )


def load_calibration(calibration_data: Any) -> data.Dataset:
    """Loads calibration data, with a message that says why an empty set cannot work."""
    try:
        return data.load(calibration_data)
    except errors.UserInputError as e:
        message = str(e)
        if "empty" in message:
            raise errors.UserInputError(
                "The calibration set is empty: int8 and int16x8 conversion need a few hundred "
                "representative samples. " + errors.received(num_samples=0)
            ) from None
        raise
