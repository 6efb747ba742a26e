"""The fine-tune loop every training-time technique shares, and its helpers.

`fine_tune` builds the model inside a `tf.distribute` strategy scope, compiles it
(choosing a loss that fits the labels and the model's output), trains it for a
known number of steps, and returns it with a `FitReport`. The helpers check the
model and the data before any long work starts, clone models so the caller's is
never touched, and select the layers a technique applies to.

Example:
    >>> def build():
    ...     return tfmot.sparsity.keras.prune_low_magnitude(clone(model))
    >>> trained, report = fine_tune(build, (x, y), fit=FitConfig(epochs=2))
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from edgekit import _compat, errors, io
from edgekit import config as config_lib

# Layer classes whose weights carry a model's arithmetic; everything else (batch
# norm, activations, pooling) is never a candidate for pruning or clustering.
_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


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
# Model checks and cloning


def _is_tfmot_layer(layer: Any) -> bool:
    return type(layer).__module__.startswith("tensorflow_model_optimization")


def iter_layers(model: Any) -> Iterator[Any]:
    """Yields every layer of `model`, descending into nested models, in order."""
    tf_keras = _compat.tf_keras()
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def _is_functional(model: Any) -> bool:
    tf_keras = _compat.tf_keras()
    return isinstance(model, tf_keras.Sequential) or bool(
        getattr(model, "_is_graph_network", False)
    )


def check_functional(model: Any, *, what: str = "This technique") -> Any:
    """Checks that `model` is a Functional or Sequential tf_keras model, not yet wrapped.

    Args:
      model: the model to check.
      what: how error messages name the caller, e.g. "Pruning".

    Returns:
      The model.

    Raises:
      UserInputError: a Keras 3 or non-Keras object, a subclassed model (also one
        nested inside), or a model that already holds TF-MOT wrappers.
    """
    io.require_tf_keras(model, what=what)
    tf_keras = _compat.tf_keras()

    def walk(m: Any) -> None:
        if not _is_functional(m):
            raise errors.UserInputError(
                f"{what} needs a Functional or Sequential tf_keras model; {m.name!r} is a "
                f"subclassed model ({type(m).__name__}), whose layers and connections TF-MOT "
                "cannot see. Build a Functional model instead (tf_keras.Input(...) then "
                "tf_keras.Model(inputs, outputs)), reusing your layers. "
                + errors.received(model=type(m).__name__)
            )
        for layer in m.layers:
            if _is_tfmot_layer(layer):
                raise errors.UserInputError(
                    f"{what} needs a plain model, and layer {layer.name!r} is already wrapped by "
                    f"TF-MOT ({type(layer).__name__}). Strip the wrappers first "
                    "(tfmot.sparsity.keras.strip_pruning, tfmot.clustering.keras."
                    "strip_clustering), or pass the stripped model edgekit returned. "
                    + errors.received(layer=layer.name, wrapper=type(layer).__name__)
                )
            if isinstance(layer, tf_keras.Model):
                walk(layer)

    walk(model)
    return model


def clone(model: Any) -> Any:
    """Returns an independent copy of a Functional/Sequential model, weights included.

    Nested models are cloned too and shared layers stay shared, so nothing that is
    trained or wrapped later reaches the caller's model.
    """
    tf_keras = _compat.tf_keras()
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def weights_snapshot(model: Any) -> list[np.ndarray]:
    """Copies of every weight, for proving later that a model did not change."""
    return [np.array(w, copy=True) for w in model.get_weights()]


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
        from edgekit import data as data_lib

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
# Layer selection


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A layer a technique left alone, and why."""

    name: str
    type: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def has_kernel(layer: Any) -> bool:
    """True when the layer owns a kernel-like weight (what compression acts on)."""
    names = {getattr(w, "name", "").split("/")[-1].split(":")[0] for w in layer.weights}
    return any(n in names for n in _KERNEL_NAMES) or any(
        hasattr(layer, n) for n in _KERNEL_NAMES[:2]
    )


def select_layers(
    model: Any,
    *,
    layers: str | None = None,
    exclude_layers: str | None = None,
    layer_types: Sequence[str] = (),
    skip_types: Sequence[str] = (),
    skip_first: bool = False,
    skip_last: bool = False,
    supports: Callable[[Any], str | None] | None = None,
) -> tuple[list[str], list[Skipped]]:
    """Chooses the layers a technique applies to.

    Candidates are the layers (nested models included) that own a kernel. Of those,
    `supports(layer)` returns None when the technique can handle the layer, or the
    reason it cannot. "First" and "last" are the model's first and last candidates.

    Args:
      model: the model.
      layers: regular expression; only layers whose names match (re.search) are kept.
      exclude_layers: regular expression; layers whose names match are left out.
      layer_types: keep only these layer class names; empty keeps every type.
      skip_types: leave these layer class names out.
      skip_first: leave the first candidate (usually the stem conv) out.
      skip_last: leave the last candidate (usually the classifier) out.
      supports: the technique's own check.

    Returns:
      (names of the selected layers, the left-out candidates with their reasons).
    """
    include_re = re.compile(layers) if layers else None
    exclude_re = re.compile(exclude_layers) if exclude_layers else None
    seen: set[int] = set()
    candidates = []
    for layer in iter_layers(model):
        if id(layer) in seen or not has_kernel(layer):
            continue
        seen.add(id(layer))
        candidates.append(layer)

    skipped: list[Skipped] = []
    supported = []
    for layer in candidates:
        reason = supports(layer) if supports is not None else None
        if reason:
            skipped.append(Skipped(layer.name, type(layer).__name__, reason))
        else:
            supported.append(layer)
    first = candidates[0].name if candidates else None
    last = candidates[-1].name if candidates else None

    selected: list[str] = []
    for layer in supported:
        kind = type(layer).__name__
        reason = None
        if skip_first and layer.name == first:
            reason = "first layer (skip_first)"
        elif skip_last and layer.name == last:
            reason = "last layer (skip_last)"
        elif kind in skip_types:
            reason = f"{kind} is in skip_types"
        elif layer_types and kind not in layer_types:
            reason = f"{kind} is not in layer_types {list(layer_types)}"
        elif include_re is not None and not include_re.search(layer.name):
            reason = f"name does not match layers={layers!r}"
        elif exclude_re is not None and exclude_re.search(layer.name):
            reason = f"name matches exclude_layers={exclude_layers!r}"
        if reason:
            skipped.append(Skipped(layer.name, kind, reason))
        else:
            selected.append(layer.name)
    order = {layer.name: i for i, layer in enumerate(candidates)}
    skipped.sort(key=lambda s: order[s.name])
    return selected, skipped


def wrap_layers(model: Any, selected: Sequence[str], wrap: Callable[[Any], Any]) -> Any:
    """Clones `model` structure, replacing each selected layer by `wrap(layer)`.

    Nested models are descended into; shared layers are wrapped once and stay
    shared. The layers that are not selected are reused as they are, so pass a
    model you own (a `clone`).
    """
    tf_keras = _compat.tf_keras()
    chosen = set(selected)

    def clone_fn(layer: Any) -> Any:
        if isinstance(layer, tf_keras.Model):
            return tf_keras.models.clone_model(layer, clone_function=clone_fn)
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        if layer.name in chosen:
            return wrap(layer)
        return layer

    return tf_keras.models.clone_model(model, clone_function=clone_fn)


# ----------------------------------------------------------------------------
# Strategies


_STRATEGIES: dict[config_lib.Strategy, Any] = {}


def get_strategy(strategy: config_lib.Strategy | str) -> Any:
    """Returns the process's `tf.distribute` strategy of this kind, creating it once.

    A multi-worker strategy must exist before TensorFlow runs any op in the process,
    so the techniques call this first, before loading the model. A script that
    builds its model in memory calls `get_strategy("multi_worker")` at its start.
    """
    strategy = config_lib.Strategy(strategy)
    if strategy is config_lib.Strategy.DEFAULT:
        return make_strategy(strategy)
    if strategy not in _STRATEGIES:
        _STRATEGIES[strategy] = make_strategy(strategy)
    return _STRATEGIES[strategy]


def make_strategy(strategy: config_lib.Strategy | str) -> Any:
    """Creates the `tf.distribute` strategy; checks TF_CONFIG for multi_worker first."""
    tf = _compat.tf()
    strategy = config_lib.Strategy(strategy)
    if strategy is config_lib.Strategy.DEFAULT:
        return tf.distribute.get_strategy()
    if strategy is config_lib.Strategy.MIRRORED:
        # The default collective all-reduce packs gradients per replica, and TF-MOT's
        # clustering gradients then pack differently on different replicas ("shape
        # mismatch in the collective instance"). Reducing on one device is robust.
        return tf.distribute.MirroredStrategy(cross_device_ops=tf.distribute.ReductionToOneDevice())
    raw = os.environ.get("TF_CONFIG")
    try:
        tf_config = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        tf_config = None
    if not isinstance(tf_config, dict) or "cluster" not in tf_config or "task" not in tf_config:
        raise errors.UserInputError(
            "strategy='multi_worker' runs one process per worker, and each needs the "
            'TF_CONFIG environment variable, e.g. TF_CONFIG=\'{"cluster": {"worker": '
            '["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}\'. '
            "Set it in every worker, or use strategy='default' or 'mirrored'. "
            + errors.received(TF_CONFIG=raw)
        )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as e:
        raise errors.UserInputError(
            f"Could not start the multi-worker strategy ({e}). It must be created before "
            "TensorFlow runs anything else in the process: pass the model as a path (edgekit "
            "then starts the strategy before loading it), or call edgekit.optimize._fit."
            "get_strategy('multi_worker') first thing in the script. "
            + errors.received(strategy="multi_worker")
        ) from None


# ----------------------------------------------------------------------------
# Loss


def _last_layer(model: Any) -> Any:
    tf_keras = _compat.tf_keras()
    layer = model.layers[-1]
    while isinstance(layer, tf_keras.Model):
        layer = layer.layers[-1]
    while _is_tfmot_layer(layer) and hasattr(layer, "layer"):
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


def _optimizer(name: str, learning_rate: float) -> Any:
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


# ----------------------------------------------------------------------------
# The loop


def check_log_dir(log_dir: str | None) -> None:
    """Checks that TensorBoard summaries can be written, before training starts.

    Raises:
      UserInputError: a log_dir was given and the `tensorboard` package is missing
        (tf.summary then fails at the end of the first epoch).
    """
    import importlib.util

    if log_dir and importlib.util.find_spec("tensorboard") is None:
        raise errors.UserInputError(
            "log_dir asks for TensorBoard summaries, and the tensorboard package is not "
            "installed. Install it (pip install tensorboard), or leave log_dir unset. "
            + errors.received(log_dir=log_dir)
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
      loss: a Keras loss; None chooses one from the labels (see `choose_loss`).
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
    strategy = get_strategy(fit.strategy)
    with strategy.scope():
        model = build()
        check_data_fits(model, x)
        if val is not None:
            check_data_fits(model, val[0], what="val_data")
        if loss is None:
            chosen_loss, loss_name, from_logits, auto_metrics = choose_loss(model, y)
        else:
            chosen_loss, from_logits, auto_metrics = loss, None, []
            loss_name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or str(loss)
        model.compile(
            optimizer=_optimizer(fit.optimizer, fit.learning_rate),
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


def unshare(model: Any) -> Any:
    """Copies a model trained under a strategy into plain variables.

    Call it outside the strategy scope: models built in a scope hold distributed
    variables, and the copy saves, converts and predicts like any other model.
    """
    return clone(model)
