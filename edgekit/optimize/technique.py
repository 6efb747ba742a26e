"""The hook every training-time technique exposes, and the driver that runs it.

A technique is set up on a model it was handed (checks, layer selection, schedule),
then offers three steps:

- `build()`: a fresh trainable copy of that model, wrapped for the technique
  (pruning wrappers, clustering wrappers, fake quantization). The driver calls it
  inside the `tf.distribute` strategy scope, so the variables belong to it.
- `callbacks()`: the Keras callbacks the technique needs while training.
- `finish(trained, fit_report)`: strips what training needed and returns the
  model ready for `edgekit.convert`, with the technique's report.

`run` is the driver: set-up is done, so it fine-tunes `build()` with `callbacks()`
and hands the result to `finish`. Techniques compose through the same three steps:
distillation trains `Pruning(...).build()` inside its own loss and gives the
trained student back to the pruning's `finish`; `Plain` is the technique that
changes nothing (a plain clone), for runs that only distill.

Example:
    >>> pruning = prune.Pruning(model, PruneConfig(target_sparsity=0.5), total_steps=100)
    >>> stripped, report = technique.run(pruning, (x, y), fit=FitConfig(epochs=2))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from edgekit import config as config_lib
from edgekit import errors, io
from edgekit.optimize import fit as fit_lib
from edgekit.optimize import keras3, validation
from edgekit.optimize import layers as layers_lib
from edgekit.optimize import strategy as strategy_lib


class Technique(Protocol):
    """What prune, cluster, QAT and distillation expose to the shared driver."""

    def build(self) -> Any:
        """A fresh trainable (wrapped) copy of the model; called in the strategy scope."""

    def callbacks(self) -> list[Any]:
        """The Keras callbacks the technique needs during training."""

    def finish(self, trained: Any, fit_report: fit_lib.FitReport | None) -> tuple[Any, Any]:
        """(the model without training-only wrappers, the technique's report)."""

    # Optional: `diagnose(fit, fit_report) -> list[validation.Cause]`, the causes of an
    # accuracy drop the technique can see in its own settings (see `run`).


class Plain:
    """The technique that changes nothing: trains a plain copy of the model.

    `finish` copies the trained model out of any strategy's variables and reports None.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def build(self) -> Any:
        return layers_lib.clone(self.model)

    def callbacks(self) -> list[Any]:
        return []

    def finish(self, trained: Any, fit_report: fit_lib.FitReport | None) -> tuple[Any, None]:
        del fit_report
        return layers_lib.unshare(trained), None


def run(
    technique: Technique,
    data: Any,
    *,
    fit: config_lib.FitConfig,
    val_data: Any = None,
    loss: Any = None,
    metrics: Sequence[Any] | None = None,
    holdout: validation.Holdout | None = None,
) -> tuple[Any, Any]:
    """Fine-tunes `technique.build()` with its callbacks, then returns `technique.finish(...)`.

    Args:
      technique: a technique already set up on its model.
      data: labelled training data (see `fit.fine_tune`).
      fit: epochs, steps, batch size, optimizer, learning rate, strategy, log_dir;
        max_accuracy_drop for the held-out check.
      val_data: optional labelled validation data.
      loss, metrics: passed to `fit.fine_tune` (None chooses from the labels).
      holdout: the held-out data and the input model's score on it
        (`validation.hold_out`, which also takes it out of `data`): the result is
        measured on it and the report gains `validation`; a drop past
        `fit.max_accuracy_drop` warns (`validation.AccuracyDropWarning`) with the
        causes from the technique's `diagnose(fit, fit_report)`, when it has one.

    Returns:
      What the technique's `finish` returns: (model, report).
    """
    trained, fit_report = fit_lib.fine_tune(
        technique.build,
        data,
        fit=fit,
        val_data=val_data,
        callbacks=technique.callbacks(),
        loss=loss,
        metrics=metrics,
    )
    model, report = technique.finish(trained, fit_report)
    if holdout is None:
        return model, report
    diagnose = getattr(technique, "diagnose", None)
    check = validation.judge(
        holdout,
        validation.score(holdout, model),
        fit=fit,
        causes=lambda: diagnose(fit, fit_report) if diagnose is not None else [],
    )
    return model, validation.attach(report, check)


# Samples of the user's own training data on which every bridge translation is
# checked (`keras3.check_equivalence`): real inputs exercise the ranges the model
# sees, which random ones may not.
BRIDGE_SAMPLES = 32


def check_model(source: Any, *, what: str) -> Any:
    """Loads a model (path or object) and refuses, cheaply, what no technique can take.

    Returns:
      The loaded model: tf_keras (Functional or Sequential, without TF-MOT
      wrappers) or Keras 3 (Functional or Sequential, not `model.quantize`d).
    """
    model = io.load_model(source)
    if keras3.is_keras3(model):
        keras3.check_bridgeable(model, what=what)
    else:
        layers_lib.check_functional(model, what=what)
    return model


def bridge_model(model: Any, x: Any, *, what: str) -> keras3.Bridged:
    """Translates a loaded Keras 3 model to tf_keras, checked on the first samples of `x`.

    A tf_keras model passes through (`Bridged.report` None). A model loaded from a
    path went through safe mode (`io.load_model` refuses `Lambda` files), so the
    bridge translates the `Lambda` layers an in-memory model may hold: they are the
    caller's own code, or a file they chose to load with safe_mode=False.
    """
    bridged = keras3.bridge_in(model, safe_mode=False, sample=x[:BRIDGE_SAMPLES])
    if bridged.keras3:
        layers_lib.check_functional(bridged.model, what=what)
    return bridged


def bridge_inputs(
    model: Any, data: Any, val_data: Any, *, fit: config_lib.FitConfig, what: str
) -> tuple[keras3.Bridged, tuple[Any, Any]]:
    """The set-up every technique shares, before any long work; takes Keras 3 too.

    Starts the strategy first (a multi-worker strategy must exist before TensorFlow
    runs any op), loads and checks the model, reads the data and checks that it and
    `val_data` fit the model. A Keras 3 model is then translated into tf_keras by
    the bridge (`bridge_model`), checked on the first `BRIDGE_SAMPLES` training
    inputs.

    Returns:
      (a `keras3.Bridged`: `.model` is the tf_keras model the technique takes,
      `.back(result)` the way back to the user's Keras; (x, y)).

    Raises:
      UserInputError: a model the technique cannot take (subclassed, wrapped, a
        Keras 3 layer or op the bridge cannot map, a Keras 3 quantized model), data
        that does not fit, or a bridge mismatch past `keras3.TOLERANCE`
        (`keras3.EquivalenceError`).
    """
    strategy_lib.get_strategy(fit.strategy)
    model = check_model(model, what=what)
    x, y = fit_lib.as_arrays(data)
    fit_lib.check_data_fits(model, x)
    if val_data is not None:
        val_x = fit_lib.as_arrays(val_data, what="val_data")[0]
        fit_lib.check_data_fits(model, val_x, what="val_data")
    return bridge_model(model, x, what=what), (x, y)


def load_inputs(
    model: Any, data: Any, val_data: Any, *, fit: config_lib.FitConfig, what: str
) -> tuple[Any, tuple[Any, Any]]:
    """`bridge_inputs`, returning the (tf_keras) model alone.

    Returns:
      (the loaded model, translated to tf_keras if it was Keras 3, (x, y)).
    """
    bridged, xy = bridge_inputs(model, data, val_data, fit=fit, what=what)
    return bridged.model, xy


def bridge_figures(
    bridged: keras3.Bridged, back: keras3.BridgeReport | None = None
) -> dict[str, Any] | None:
    """The `bridge` entry of a technique's report: None for a tf_keras model.

    Returns:
      {"in": the way in's `BridgeReport.to_dict()`, "back": the way back's, or None
      when the result stays tf_keras (QAT)}.
    """
    if not bridged.keras3:
        return None
    return {"in": bridged.report.to_dict(), "back": None if back is None else back.to_dict()}


def bridge_back(bridged: keras3.Bridged, result: Any, report: Any, x: Any) -> tuple[Any, Any]:
    """Gives a technique's stripped result back in the user's Keras, with the figures.

    A Keras 3 input comes back as a Keras 3 clone of the user's model holding the
    trained weights (checked on the first `BRIDGE_SAMPLES` of `x`); a tf_keras input
    is returned as is. The report gains `bridge` (see `bridge_figures`).
    """
    mine, back = bridged.back(result, sample=x[:BRIDGE_SAMPLES])
    return mine, dataclasses.replace(report, bridge=bridge_figures(bridged, back))


def select_or_raise(
    model: Any,
    config: Any,
    supports: Any,
    *,
    verb: str,
    hint: Callable[[list[layers_lib.Skipped]], str] | None = None,
    received: str = "",
) -> tuple[list[str], list[layers_lib.Skipped]]:
    """`layers.select_layers` with a technique config's selection fields; refuses empty.

    Args:
      model: the model.
      config: a config with layers, exclude_layers, layer_types, skip_types,
        skip_first and skip_last (PruneConfig, ClusterConfig).
      supports: the technique's own per-layer check.
      verb: how the error names the technique ("prune", "cluster").
      hint: None, or a function of the left-out layers that returns the technique's
        own advice, put before "Otherwise loosen the selection".
      received: the `errors.received(...)` text of the error.

    Raises:
      UserInputError: no layer is left.
    """
    selected, skipped = layers_lib.select_layers(
        model,
        layers=config.layers,
        exclude_layers=config.exclude_layers,
        layer_types=config.layer_types,
        skip_types=config.skip_types,
        skip_first=config.skip_first,
        skip_last=config.skip_last,
        supports=supports,
    )
    if not selected:
        advice = "Loosen" if hint is None else f"{hint(skipped)}Otherwise loosen"
        raise errors.UserInputError(
            f"No layer is left to {verb}: every candidate was left out "
            f"({[f'{s.name}: {s.reason}' for s in skipped][:8]}). {advice} the "
            "selection (layers, exclude_layers, layer_types, skip_types, skip_first, "
            "skip_last). " + (received or errors.received(num_candidates=len(skipped)))
        )
    return selected, skipped
