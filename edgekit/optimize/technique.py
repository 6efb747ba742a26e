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

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from edgekit import config as config_lib
from edgekit import errors, io
from edgekit.optimize import fit as fit_lib
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
) -> tuple[Any, Any]:
    """Fine-tunes `technique.build()` with its callbacks, then returns `technique.finish(...)`.

    Args:
      technique: a technique already set up on its model.
      data: labelled training data (see `fit.fine_tune`).
      fit: epochs, steps, batch size, optimizer, learning rate, strategy, log_dir.
      val_data: optional labelled validation data.
      loss, metrics: passed to `fit.fine_tune` (None chooses from the labels).

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
    return technique.finish(trained, fit_report)


def load_inputs(
    model: Any, data: Any, val_data: Any, *, fit: config_lib.FitConfig, what: str
) -> tuple[Any, tuple[Any, Any]]:
    """The set-up prune and cluster share, before any long work.

    Starts the strategy first (a multi-worker strategy must exist before TensorFlow
    runs any op), loads and checks the model, reads the data and checks that it and
    `val_data` fit the model.

    Returns:
      (the loaded model, (x, y)).

    Raises:
      UserInputError: a model the technique cannot take, data that does not fit.
    """
    strategy_lib.get_strategy(fit.strategy)
    model = io.load_model(model)
    layers_lib.check_functional(model, what=what)
    x, y = fit_lib.as_arrays(data)
    fit_lib.check_data_fits(model, x)
    if val_data is not None:
        val_x = fit_lib.as_arrays(val_data, what="val_data")[0]
        fit_lib.check_data_fits(model, val_x, what="val_data")
    return model, (x, y)


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
