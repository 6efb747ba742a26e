"""The models a technique works on: checks, copies, and the layers it applies to.

Every technique clones the caller's model before it wraps or trains anything
(`clone`), refuses what TF-MOT cannot handle (`check_functional`), and chooses its
layers with `select_layers`: candidates are the layers that own a kernel, and the
technique's own `supports` check plus the user's selection leave some out, each
with the reason.

Example:
    >>> selected, skipped = select_layers(model, skip_first=True, supports=supports)
    >>> wrapped = wrap_layers(clone(model), selected, prune_low_magnitude)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from edgekit import _compat, errors, io

# The weights compression acts on, by weight (and layer attribute) name. Layers
# without one (batch norm, activations, pooling) are never a candidate for pruning
# or clustering. `kernel_of` reads them in this order.
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


# ----------------------------------------------------------------------------
# Model checks and cloning


def is_tfmot_layer(layer: Any) -> bool:
    """True for a TF-MOT wrapper layer (pruning, clustering or quantization)."""
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
            if is_tfmot_layer(layer):
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


def unshare(model: Any) -> Any:
    """Copies a model trained under a strategy into plain variables.

    Call it outside the strategy scope: models built in a scope hold distributed
    variables, and the copy saves, converts and predicts like any other model.
    """
    return clone(model)


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
    return any(n in names for n in KERNEL_NAMES) or any(hasattr(layer, n) for n in KERNEL_NAMES[:2])


def kernel_of(layer: Any) -> np.ndarray | None:
    """The layer's main weight tensor as an array (None if it has none)."""
    for attr in KERNEL_NAMES:
        var = getattr(layer, attr, None)
        if var is not None and hasattr(var, "numpy"):
            return np.asarray(var.numpy())
    return None


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
