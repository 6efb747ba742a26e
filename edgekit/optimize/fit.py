"""The fine-tune loop every training-time technique shares, and its helpers.

`fine_tune` builds the model inside a `tf.distribute` strategy scope, compiles it
(choosing a loss that fits the labels and the model's output), trains it for a
known number of steps, and returns it with a `FitReport`. The helpers here check
the data before any long work starts; the model checks, cloning and layer selection
are in `layers`, the strategies in `strategy`, the loss and optimizer in `losses`.

Example:
    >>> def build():
    ...     return tfmot.sparsity.keras.prune_low_magnitude(layers.clone(model))
    >>> trained, report = fine_tune(build, (x, y), fit=FitConfig(epochs=2))
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgekit import _compat, errors
from edgekit import config as config_lib
from edgekit import data as data_lib
from edgekit.optimize import losses
from edgekit.optimize import strategy as strategy_lib

# ----------------------------------------------------------------------------
# Report


@dataclasses.dataclass(frozen=True)
class FitReport:
    """What fine-tuning did.

    Attributes:
      epochs: epochs run.
      steps_per_epoch: batches per epoch.
      total_steps: optimizer steps run (epochs x steps_per_epoch).
      batch_size: global batch size.
      num_replicas: replicas the strategy trained on.
      strategy: the strategy's name.
      loss: the loss used (its name).
      from_logits: whether the loss read logits (None for losses without the option).
      seconds: wall time of `fit`.
      history: per-epoch metrics as Keras reported them.
    """

    epochs: int
    steps_per_epoch: int
    total_steps: int
    batch_size: int
    num_replicas: int
    strategy: str
    loss: str
    from_logits: bool | None
    seconds: float
    history: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------
# Data


def as_arrays(data: Any, *, what: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Returns (x, y) from an `edgekit.data.Dataset` or an (x, y) tuple of arrays.

    Raises:
      UserInputError: no labels, sizes that do not match, or non-finite values.
    """
    if hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    elif isinstance(data, (str, os.PathLike)) or hasattr(data, "element_spec"):
        loaded = data_lib.load(data)
        x, y = loaded.x, loaded.y
    else:
        raise errors.UserInputError(
            f"Fine-tuning needs labelled {what}: an edgekit.data.Dataset with labels, a "
            "tuple (x, y) of arrays, a .npz path or a tf.data.Dataset of (x, y) batches. "
            + errors.received(**{what: type(data).__name__})
        )
    if y is None:
        raise errors.UserInputError(
            f"Fine-tuning needs labels, and the {what} has none. Pass (x, y), or an .npz "
            "file with 'x' and 'y' arrays. "
            + errors.received(**{what: getattr(data, "source", "?")})
        )
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype.kind not in "fiub" or y.dtype.kind not in "fiub":
        raise errors.UserInputError(
            f"The {what} must hold numbers. "
            + errors.received(x_dtype=str(x.dtype), y_dtype=str(y.dtype))
        )
    if x.ndim == 0 or len(x) == 0 or len(x) != len(y):
        raise errors.UserInputError(
            f"The {what} must have the same number (>= 1) of samples in x and y. "
            + errors.received(x_shape=list(x.shape), y_shape=list(y.shape))
        )
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise errors.UserInputError(
            f"The {what} holds NaN or infinite values; clean or drop those samples. "
            + errors.received(num_non_finite=int((~np.isfinite(x)).sum()))
        )
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    return x, y


def check_data_fits(model: Any, x: np.ndarray, *, what: str = "data") -> None:
    """Checks that samples of `x` have the shape the model's (single) input takes.

    Raises:
      UserInputError: the shapes do not match.
    """
    shape = model.input_shape
    if isinstance(shape, list):
        raise errors.UserInputError(
            f"Fine-tuning supports models with one input; this one has {len(shape)}. "
            + errors.received(input_shapes=[list(s) for s in shape])
        )
    want = list(shape[1:])
    got = list(x.shape[1:])
    ok = len(want) == len(got) and all(w is None or w == g for w, g in zip(want, got, strict=True))
    if not ok:
        raise errors.UserInputError(
            f"The {what} does not fit the model: each sample has shape {got}, and the model's "
            f"input takes {want} (None means any size). Resize or reshape the data (for "
            "images, edgekit.data.load(..., image_size=(H, W))), or check that the data "
            "belongs to this model. "
            + errors.received(data_shape=list(x.shape), model_input_shape=list(shape))
        )


# ----------------------------------------------------------------------------
# The loop


def check_log_dir(log_dir: str | None) -> None:
    """Checks that TensorBoard summaries can be written, before training starts.

    Raises:
      UserInputError: a log_dir was given and the `tensorboard` package is missing
        (tf.summary then fails at the end of the first epoch).
    """
    if log_dir and importlib.util.find_spec("tensorboard") is None:
        raise errors.UserInputError(
            "log_dir asks for TensorBoard summaries, and the tensorboard package is not "
            "installed. Install edgekit[tensorflow] (it includes tensorboard) or pip install "
            "tensorboard, or leave log_dir unset. " + errors.received(log_dir=log_dir)
        )


def plan_steps(num_samples: int, fit: config_lib.FitConfig) -> tuple[int, int]:
    """Returns (steps_per_epoch, total_steps) that fine-tuning will run."""
    steps = fit.steps_per_epoch or max(1, math.ceil(num_samples / fit.batch_size))
    return steps, steps * fit.epochs


def _dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int | None, repeat: bool
) -> Any:
    tf = _compat.tf()
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if repeat:
        ds = ds.shuffle(min(len(x), 10_000), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size)
    options = tf.data.Options()
    # Every worker reads the same arrays; sharding by element keeps them disjoint.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def fine_tune(
    build: Callable[[], Any],
    data: Any,
    *,
    fit: config_lib.FitConfig,
    val_data: Any = None,
    callbacks: Sequence[Any] = (),
    loss: Any = None,
    metrics: Sequence[Any] | None = None,
) -> tuple[Any, FitReport]:
    """Builds a model inside the chosen strategy's scope, compiles and trains it.

    Args:
      build: called with no arguments inside the strategy scope; returns the model
        to train (for example a pruning-wrapped clone). Must not return the
        caller's model itself.
      data: an `edgekit.data.Dataset` with labels, or a tuple (x, y).
      fit: epochs, steps, batch size, optimizer, learning rate, strategy, log_dir.
      val_data: optional labelled validation data, evaluated after each epoch.
      callbacks: extra Keras callbacks (a technique's required ones). A callable
        taking the built model and returning a list of callbacks is also accepted,
        for callbacks that must be created after the model.
      loss: a Keras loss; None chooses one from the labels (see `losses.choose_loss`).
      metrics: Keras metrics; None chooses accuracy for classification losses.

    Returns:
      (the trained model, a `FitReport`).

    Raises:
      UserInputError: data without labels, data that does not fit the model.
    """
    tf_keras = _compat.tf_keras()
    check_log_dir(fit.log_dir)
    x, y = as_arrays(data)
    val = as_arrays(val_data, what="val_data") if val_data is not None else None
    steps_per_epoch, total_steps = plan_steps(len(x), fit)
    if fit.seed is not None:
        tf_keras.utils.set_random_seed(fit.seed)
    strategy = strategy_lib.get_strategy(fit.strategy)
    with strategy.scope():
        model = build()
        check_data_fits(model, x)
        if val is not None:
            check_data_fits(model, val[0], what="val_data")
        if loss is None:
            chosen_loss, loss_name, from_logits, auto_metrics = losses.choose_loss(model, y)
        else:
            chosen_loss, from_logits, auto_metrics = loss, None, []
            loss_name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or str(loss)
        model.compile(
            optimizer=losses.get_optimizer(fit.optimizer, fit.learning_rate),
            loss=chosen_loss,
            metrics=list(metrics) if metrics is not None else auto_metrics,
        )
    all_callbacks = list(callbacks(model) if callable(callbacks) else callbacks)
    if fit.log_dir:
        if not any(isinstance(c, tf_keras.callbacks.TensorBoard) for c in all_callbacks):
            all_callbacks.append(tf_keras.callbacks.TensorBoard(log_dir=fit.log_dir))
    train_ds = _dataset(x, y, fit.batch_size, seed=fit.seed, repeat=True)
    val_ds = _dataset(*val, fit.batch_size, seed=None, repeat=False) if val is not None else None
    start = time.perf_counter()
    history = model.fit(
        train_ds,
        epochs=fit.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_ds,
        callbacks=all_callbacks,
        verbose=fit.verbose,
    )
    seconds = time.perf_counter() - start
    report = FitReport(
        epochs=fit.epochs,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        batch_size=fit.batch_size,
        num_replicas=int(strategy.num_replicas_in_sync),
        strategy=config_lib.Strategy(fit.strategy).value,
        loss=str(loss_name),
        from_logits=from_logits,
        seconds=round(seconds, 3),
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
    )
    return model, report
