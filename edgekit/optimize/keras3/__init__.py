"""The Keras 3 <-> tf_keras bridge: training-time techniques for Keras 3 models.

TF-MOT takes tf_keras (Keras 2) models only, and current TensorFlow gives users
Keras 3. The bridge translates a Keras 3 Functional or Sequential model (nested
models, shared layers, `keras.ops` calls, `keras.applications` models) layer by
layer into an equivalent tf_keras model with the same weights, and translates
the result of a technique back into the user's own Keras 3 model. Every
translation is checked on sample inputs (max abs error and cosine of all
outputs) and refused past a tolerance; what cannot be mapped is refused before
any training, naming the layer, its class and what to do.

Example:
    >>> bridged = edgekit.optimize.keras3.bridge_in(keras3_model)
    >>> stripped, _ = edgekit.optimize.prune.prune(bridged.model, config, (x, y))
    >>> mine, report = bridged.back(stripped)      # a keras.Model, plain layers
    >>> mine.save("pruned.keras")                  # loads with plain keras
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekit import _compat, errors, io
from edgekit.optimize.keras3 import backward, equivalence, forward

Equivalence = equivalence.Equivalence
EquivalenceError = equivalence.EquivalenceError
TOLERANCE = equivalence.TOLERANCE
check_equivalence = equivalence.check_equivalence
make_sample = equivalence.make_sample

__all__ = [
    "TOLERANCE",
    "BridgeReport",
    "Bridged",
    "Equivalence",
    "EquivalenceError",
    "bridge_in",
    "check_bridgeable",
    "check_equivalence",
    "describe",
    "is_keras3",
    "make_sample",
    "to_keras3",
    "to_tf_keras",
]


@dataclasses.dataclass(frozen=True)
class BridgeReport:
    """What one translation did, and how closely the result matches its source."""

    direction: str  # "keras3->tf_keras" or "tf_keras->keras3"
    model: str
    model_kind: str  # "functional" or "sequential" (of the source model)
    keras_version: str
    layers: int  # layers translated (shared layers once, nested models' layers included)
    weights: int  # weight arrays copied
    ops: int  # keras.ops calls translated to TensorFlow op layers
    expanded: tuple[str, ...]  # "layer: activation" built from tf_keras layers and ops
    equivalence: Equivalence
    via_like: bool = False  # back to Keras 3 as a clone of the user's model

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["expanded"] = list(self.expanded)
        return out


def is_keras3(model: Any) -> bool:
    """True for a Keras 3 (`import keras`) model object; never imports Keras."""
    return io.is_keras3_model(model)


def _refuse_quantized(model: Any) -> None:
    keras = _compat.keras3()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        mode = getattr(getattr(layer, "dtype_policy", None), "quantization_mode", None)
        if mode and not isinstance(layer, keras.Model):
            raise errors.UserInputError(
                f"The Keras 3 model {model.name!r} was already quantized with Keras 3's "
                f"model.quantize({mode!r}): layer {layer.name!r} ({type(layer).__name__}) "
                "holds quantized weights, which neither TF-MOT nor a second quantization can "
                "train. Give edgekit the float model, and quantize at the end (QAT, or "
                "edgekit-convert --mode=int8). "
                + errors.received(layer=layer.name, quantization_mode=mode)
            )


def check_bridgeable(model: Any, *, what: str = "The bridge") -> None:
    """The cheap structural checks of `to_tf_keras`, before data is read or anything built.

    Raises:
      UserInputError: a subclassed Keras 3 model, or one quantized with
        `model.quantize(...)`.
    """
    if forward.model_kind(model) == "subclassed":
        raise errors.UserInputError(
            f"{what} needs a Functional or Sequential Keras 3 model; {model.name!r} is a "
            f"subclassed model ({type(model).__name__} with its own call()), whose graph is "
            "Python code the Keras 3 bridge cannot read. Build it as a Functional model "
            "(keras.Input(...) then layers) or a Sequential model, reusing your layers. "
            + errors.received(model=model.name, model_class=type(model).__name__)
        )
    _refuse_quantized(model)


def describe(figures: dict[str, Any] | None) -> str:
    """One sentence for a report's `bridge` entry (what the commands print); "" for None.

    Example:
        >>> print(describe(report.bridge))
        Keras 3 bridge: in max abs error 0 (cosine 1.000000, 32 samples); back ...
    """
    parts: list[str] = []

    def walk(entry: Any, label: str) -> None:
        if not isinstance(entry, dict):
            return
        if "equivalence" in entry:
            eq = entry["equivalence"]
            parts.append(
                f"{label} max abs error {eq['max_abs_error']:.3g} (cosine "
                f"{eq['cosine']:.6f}, {eq['samples']} samples)"
            )
            return
        for key, value in entry.items():
            walk(value, f"{label} {key}".strip())

    walk(figures, "")
    if not parts:
        return ""
    stays = isinstance(figures, dict) and figures.get("back", 0) is None
    return (
        "Keras 3 bridge: "
        + "; ".join(parts)
        + (
            " (the result stays tf_keras: TF-MOT's fake-quant wrappers exist only there)"
            if stays
            else ""
        )
        + "."
    )


def to_tf_keras(
    model: Any,
    *,
    sample: Any = None,
    tolerance: float = TOLERANCE,
    allow_lambda: bool = False,
) -> tuple[Any, BridgeReport]:
    """Translates a Keras 3 model into an equivalent tf_keras model with its weights.

    Args:
      model: a Keras 3 Functional or Sequential model (not changed).
      sample: inputs on which the two models are compared; None for 4 random
        samples (`make_sample`). Pass real data when you have it.
      tolerance: the largest max abs error accepted between the two.
      allow_lambda: translate `Lambda` layers (they run arbitrary Python); off
        unless the model was loaded with safe_mode=False or is your own code.

    Returns:
      (the tf_keras model, a `BridgeReport` with the equivalence figures).

    Raises:
      UserInputError: not a Keras 3 model, a subclassed model, a quantized model,
        or a layer / op / setting with no tf_keras equivalent (named).
      EquivalenceError: the translation computes something else.
    """
    if not is_keras3(model):
        raise errors.UserInputError(
            "to_tf_keras takes a Keras 3 model (built with `import keras`). "
            + errors.received(model=type(model).__name__)
        )
    kind = forward.model_kind(model)
    _refuse_quantized(model)
    bridge = forward.Forward(allow_lambda=allow_lambda)
    translated = bridge.model(model)
    weights = bridge.copy_weights()
    sample = make_sample(model) if sample is None else sample
    eq = check_equivalence(
        model, translated, sample, tolerance=tolerance, what="the Keras 3 -> tf_keras bridge"
    )
    report = BridgeReport(
        direction="keras3->tf_keras",
        model=model.name,
        model_kind=kind,
        keras_version=_compat.keras3().__version__,
        layers=len(bridge.layers),
        weights=weights,
        ops=bridge.num_ops,
        expanded=tuple(bridge.expanded),
        equivalence=eq,
    )
    return translated, report


def to_keras3(
    model: Any,
    *,
    like: Any = None,
    sample: Any = None,
    tolerance: float = TOLERANCE,
) -> tuple[Any, BridgeReport]:
    """Translates a plain tf_keras model back into a Keras 3 model.

    Args:
      model: a Functional or Sequential tf_keras model without TF-MOT wrappers
        (edgekit's techniques return stripped models).
      like: the Keras 3 model that was translated in. The result is then a clone
        of it (same classes, names, ops, nesting) holding `model`'s weights.
      sample: inputs on which the two are compared; None for 4 random samples.
      tolerance: the largest max abs error accepted.

    Returns:
      (a `keras.Model` that saves as `.keras` and loads with plain
      `keras.saving.load_model`, a `BridgeReport`).

    Raises:
      UserInputError: TF-MOT wrappers left in, a subclassed model, or a layer
        with no Keras 3 equivalent (named).
      EquivalenceError: the result computes something else than `model`.
    """
    if not io.is_tf_keras_model(model):
        raise errors.UserInputError(
            "to_keras3 takes a tf_keras model. " + errors.received(model=type(model).__name__)
        )
    wrapped = [
        layer.name
        for layer in backward.iter_layers(model, keras=_compat.tf_keras())
        if type(layer).__module__.startswith("tensorflow_model_optimization")
    ]
    if wrapped:
        raise errors.UserInputError(
            f"The tf_keras model still holds TF-MOT wrappers ({wrapped[:5]}); Keras 3 has no "
            "such layers. Strip them first (edgekit's prune and cluster return stripped "
            "models). A QAT model stays tf_keras: its deliverable is the int8 .tflite. "
            + errors.received(wrapped_layers=wrapped[:5])
        )
    bridge = backward.Backward()
    if like is not None:
        result = backward.from_like(model, like)
        layers = len(backward.iter_layers(result, keras=_compat.keras3()))
        weights = len(result.weights)
    else:
        result = bridge.model(model)
        bridge.copy_weights()
        layers, weights = len(bridge.layers), sum(len(s.weights) for s, _ in bridge.pairs)
    sample = make_sample(model) if sample is None else sample
    with backward.unfused_batch_norms(model):
        eq = check_equivalence(
            model, result, sample, tolerance=tolerance, what="the tf_keras -> Keras 3 bridge"
        )
    report = BridgeReport(
        direction="tf_keras->keras3",
        model=result.name,
        model_kind="sequential"
        if isinstance(result, _compat.keras3().Sequential)
        else "functional",
        keras_version=_compat.keras3().__version__,
        layers=layers,
        weights=weights,
        ops=0,
        expanded=(),
        equivalence=eq,
        via_like=like is not None,
    )
    return result, report


@dataclasses.dataclass(frozen=True)
class Bridged:
    """A model ready for TF-MOT, and the way back to the user's Keras."""

    model: Any  # the tf_keras model techniques take
    original: Any  # what the user gave (loaded)
    report: BridgeReport | None  # None when the model was tf_keras already

    @property
    def keras3(self) -> bool:
        return self.report is not None

    def back(self, trained: Any, *, sample: Any = None) -> tuple[Any, BridgeReport | None]:
        """The trained (stripped) tf_keras model as the user's Keras; tf_keras stays."""
        if not self.keras3:
            return trained, None
        return to_keras3(trained, like=self.original, sample=sample)


def bridge_in(
    source: Any,
    *,
    safe_mode: bool = True,
    custom_objects: dict[str, Any] | None = None,
    sample: Any = None,
    tolerance: float = TOLERANCE,
) -> Bridged:
    """Loads a model (path or object) and, if it is Keras 3, translates it to tf_keras.

    The one call an entry point makes before a TF-MOT technique. A Keras 3 file
    with a `Lambda` is refused unless `safe_mode=False`
    (`--allow_unsafe_deserialization`), by `edgekit.io.load_model`, before
    anything is built.

    Returns:
      A `Bridged`: `.model` for the technique, `.back(result)` for the user.
    """
    model = io.load_model(source, custom_objects=custom_objects, safe_mode=safe_mode)
    if not is_keras3(model):
        return Bridged(model=model, original=model, report=None)
    translated, report = to_tf_keras(
        model, sample=sample, tolerance=tolerance, allow_lambda=not safe_mode
    )
    return Bridged(model=translated, original=model, report=report)
