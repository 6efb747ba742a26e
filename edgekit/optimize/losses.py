"""The loss and optimizer fine-tuning compiles with, chosen from the labels and the model.

Example:
    >>> loss, name, from_logits, metrics = choose_loss(model, y)
    >>> model.compile(optimizer=get_optimizer("adam", 1e-4), loss=loss, metrics=metrics)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit import _compat, errors
from edgekit.optimize import layers as layers_lib


def _last_layer(model: Any) -> Any:
    tf_keras = _compat.tf_keras()
    layer = model.layers[-1]
    while isinstance(layer, tf_keras.Model):
        layer = layer.layers[-1]
    while layers_lib.is_tfmot_layer(layer) and hasattr(layer, "layer"):
        layer = layer.layer
    return layer


def _output_activation(model: Any) -> str | None:
    layer = _last_layer(model)
    kind = type(layer).__name__
    if kind == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", None)


def choose_loss(model: Any, y: np.ndarray) -> tuple[Any, str, bool | None, list[str]]:
    """Picks a loss from the labels and the model's output.

    Integer class ids with a multi-unit output: sparse categorical cross-entropy,
    reading logits unless the last layer applies softmax. One-hot float labels:
    categorical cross-entropy. 0/1 labels with a one-unit sigmoid output: binary
    cross-entropy. Anything else: mean squared error.

    Returns:
      (loss object, its name, from_logits or None, metric names).
    """
    tf_keras = _compat.tf_keras()
    out_shape = model.output_shape
    if isinstance(out_shape, list):
        raise errors.UserInputError(
            "Fine-tuning with an automatic loss supports models with one output; pass "
            "loss= for this one. " + errors.received(num_outputs=len(out_shape))
        )
    units = out_shape[-1]
    activation = _output_activation(model)
    from_logits = activation not in ("softmax", "sigmoid")
    integral = y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0))
    label_dims = y.shape[1:]
    if integral and units and units > 1 and (label_dims == () or label_dims == (1,)):
        if y.min() < 0 or y.max() >= units:
            raise errors.UserInputError(
                f"The labels are class ids, and they must lie in [0, {units}) for a model with "
                f"{units} outputs. "
                + errors.received(min_label=int(y.min()), max_label=int(y.max()))
            )
        loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        return loss, "sparse_categorical_crossentropy", from_logits, ["accuracy"]
    if units and units > 1 and label_dims == (units,) and activation == "softmax":
        loss = tf_keras.losses.CategoricalCrossentropy(from_logits=False)
        return loss, "categorical_crossentropy", False, ["accuracy"]
    if units == 1 and activation == "sigmoid" and integral and set(np.unique(y)) <= {0, 1}:
        loss = tf_keras.losses.BinaryCrossentropy(from_logits=False)
        return loss, "binary_crossentropy", False, ["accuracy"]
    return tf_keras.losses.MeanSquaredError(), "mean_squared_error", None, []


def get_optimizer(name: str, learning_rate: float) -> Any:
    """A tf_keras optimizer by name, with this learning rate.

    Raises:
      UserInputError: a name tf_keras does not know.
    """
    tf_keras = _compat.tf_keras()
    try:
        opt = tf_keras.optimizers.get(
            {"class_name": name, "config": {"learning_rate": learning_rate}}
        )
    except (ValueError, TypeError) as e:
        raise errors.UserInputError(
            f"Unknown optimizer {name!r} ({e}). Use a tf_keras optimizer name such as 'adam', "
            "'sgd' or 'rmsprop'. " + errors.received(optimizer=name)
        ) from None
    return opt
