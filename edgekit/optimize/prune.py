"""Magnitude pruning with TF-MOT, with the defaults and checks it lacks.

`prune` clones the model (the caller's is never touched), wraps the selected
layers with `prune_low_magnitude`, fine-tunes with the callbacks TF-MOT needs
(`UpdatePruningStep`, and `PruningSummaries` with a log_dir), strips the wrappers
and measures the sparsity of every layer on the stripped weights.

What edgekit adds around TF-MOT:
- the schedule is laid out on the real number of training steps: pruning ends
  at `end_fraction` of them and the frequency divides that span, so the target
  is reached exactly (TF-MOT's default frequency of 100 prunes nothing in a run
  of fewer steps);
- the first layer and depthwise convolutions are left alone by default: they
  hold few weights and much of the accuracy;
- the stripped model is a plain model (loads without custom objects), in the
  Keras it was given: Keras 3 models go through the checked bridge
  (`edgekit.optimize.keras3`) and come back as Keras 3.

Example:
    >>> stripped, report = edgekit.optimize.prune.prune(
    ...     model, PruneConfig(target_sparsity=0.8), (x_train, y_train),
    ...     fit=FitConfig(epochs=10, learning_rate=1e-4))
    >>> report.achieved_sparsity
    0.8
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgekit import _compat, errors, runtime
from edgekit import config as config_lib
from edgekit.optimize import fit as fit_lib
from edgekit.optimize import layers as layers_lib
from edgekit.optimize import reports, technique, validation

# Fine-tuning that keeps accuracy, measured on the bundled example (see
# benchmarks/prune_cluster_accuracy.py): 80% sparsity kept 99.4% test accuracy with
# 12 epochs at 3e-4, while 2 epochs at 1e-4 fell to 33% and 4 at 3e-4 to 91%.
# Pruning needs steps after the last pruning step to recover.
DEFAULT_FIT = config_lib.FitConfig(epochs=12, learning_rate=3e-4)

# Epochs at the final sparsity that let the model recover: what DEFAULT_FIT leaves
# after the default schedule's end (12 x (1 - 0.7) = 3.6). Targets above HIGH_SPARSITY
# are where the example started to lose accuracy with short runs.
RECOVERY_EPOCHS = DEFAULT_FIT.epochs * (1 - config_lib.PruneConfig().end_fraction)
HIGH_SPARSITY = 0.75

# Prune steps per schedule span when the frequency is chosen for the user: often
# enough for a smooth ramp, rare enough that the model recovers between steps.
_PRUNE_UPDATES = 16


def _registry() -> Any:
    _compat.tfmot()
    return importlib.import_module(
        "tensorflow_model_optimization.python.core.sparsity.keras.prune_registry"
    )


def plan_schedule(config: config_lib.PruneConfig, total_steps: int) -> dict[str, Any]:
    """Lays the pruning schedule out on `total_steps` training steps.

    Returns:
      A dict with kind, target_sparsity, initial_sparsity, begin_step, end_step
      and frequency, such that the target is reached within the run.

    Raises:
      UserInputError: too few steps, or a frequency larger than the pruning span.
    """
    if total_steps < 2:
        raise errors.UserInputError(
            "Pruning needs at least 2 training steps (it prunes, then trains at the new "
            "sparsity). Raise epochs or steps_per_epoch. "
            + errors.received(total_steps=total_steps)
        )
    last = total_steps - 1  # the pruning step counter runs 0 .. total_steps - 1
    begin = min(int(config.begin_fraction * total_steps), last - 1)
    end = min(max(begin + 1, round(config.end_fraction * total_steps)), last)
    span = end - begin
    frequency = config.frequency or max(1, span // _PRUNE_UPDATES)
    if frequency > span and config.schedule is config_lib.PruneSchedule.POLYNOMIAL:
        raise errors.UserInputError(
            f"frequency={frequency} is larger than the pruning span of {span} steps (steps "
            f"{begin} to {end} of {total_steps}), so the polynomial schedule would never "
            "reach the target. Leave frequency unset (edgekit picks one), lower it, or train "
            "for more steps. " + errors.received(frequency=frequency, total_steps=total_steps)
        )
    if config.m_by_n is not None:
        m, n = config.m_by_n
        kind, target = "m_by_n", m / n
    else:
        kind, target = (
            config_lib.PruneSchedule(config.schedule).value,
            float(config.target_sparsity),
        )
    if kind == "polynomial":
        end = begin + (span // frequency) * frequency  # land exactly on a pruning step
    else:
        end = -1  # a constant schedule keeps re-pruning at its frequency until the end
    return {
        "kind": kind,
        "target_sparsity": target,
        "initial_sparsity": float(config.initial_sparsity) if kind == "polynomial" else target,
        "begin_step": begin,
        "end_step": end,
        "frequency": frequency,
        "total_steps": total_steps,
    }


def make_schedule(plan: dict[str, Any]) -> Any:
    """The TF-MOT pruning schedule for a `plan_schedule` plan."""
    sparsity = _compat.tfmot().sparsity.keras
    if plan["kind"] == "polynomial":
        return sparsity.PolynomialDecay(
            initial_sparsity=plan["initial_sparsity"],
            final_sparsity=plan["target_sparsity"],
            begin_step=plan["begin_step"],
            end_step=plan["end_step"],
            frequency=plan["frequency"],
        )
    return sparsity.ConstantSparsity(
        plan["target_sparsity"],
        begin_step=plan["begin_step"],
        end_step=-1,
        frequency=plan["frequency"],
    )


def supports(config: config_lib.PruneConfig) -> Callable[[Any], str | None]:
    """The per-layer check for `layers.select_layers`: None, or why a layer cannot be pruned."""
    tf_keras = _compat.tf_keras()
    registry = _registry().PruneRegistry
    policy = (
        _compat.tfmot().sparsity.keras.PruneForLatencyOnXNNPack() if config.xnnpack_policy else None
    )

    def check(layer: Any) -> str | None:
        if not (registry.supports(layer) or hasattr(layer, "get_prunable_weights")):
            return f"TF-MOT cannot prune {type(layer).__name__} layers"
        if policy is not None and not policy.allow_pruning(layer):
            return "not a 1x1 Conv2D (xnnpack_policy prunes only those)"
        if tuple(config.block_size) != (1, 1):
            kernel = layers_lib.kernel_of(layer)
            if kernel is None or kernel.ndim != 2:
                return "block_size applies to 2-D kernels only (Dense), as TF-MOT implements it"
        if config.m_by_n is not None:
            m_by_n_ok = isinstance(layer, (tf_keras.layers.Dense, tf_keras.layers.Conv2D)) and not (
                isinstance(layer, tf_keras.layers.DepthwiseConv2D)
            )
            if not m_by_n_ok:
                return "m_by_n sparsity applies to Dense and Conv2D kernels only"
        return None

    return check


class Pruning:
    """Magnitude pruning as a technique (`edgekit.optimize.technique`).

    Set up on a model (it is not changed): selects the layers and lays the schedule
    out on `total_steps`. `build()` wraps a fresh copy with `prune_low_magnitude`,
    `callbacks()` holds the ones TF-MOT needs, and `finish()` strips the wrappers and
    measures the sparsity of every layer.

    Raises:
      UserInputError: no layer is left to prune, or a schedule that cannot reach its
        target in `total_steps`.
    """

    def __init__(
        self,
        model: Any,
        config: config_lib.PruneConfig,
        *,
        total_steps: int,
        log_dir: str | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.log_dir = log_dir
        self.selected, self.skipped = technique.select_or_raise(
            model, config, supports(config), verb="prune"
        )
        self.schedule = plan_schedule(config, total_steps)
        self._params: dict[str, Any] = {"pruning_schedule": make_schedule(self.schedule)}
        if config.m_by_n is not None:
            self._params["sparsity_m_by_n"] = tuple(config.m_by_n)
        if tuple(config.block_size) != (1, 1):
            self._params["block_size"] = tuple(config.block_size)

    def build(self) -> Any:
        prune_low_magnitude = _compat.tfmot().sparsity.keras.prune_low_magnitude
        return layers_lib.wrap_layers(
            layers_lib.clone(self.model),
            self.selected,
            lambda layer: prune_low_magnitude(layer, **self._params),
        )

    def callbacks(self) -> list[Any]:
        sparsity = _compat.tfmot().sparsity.keras
        out: list[Any] = [sparsity.UpdatePruningStep()]
        if self.log_dir:
            out.append(sparsity.PruningSummaries(log_dir=self.log_dir))
        return out

    def diagnose(
        self, fit: config_lib.FitConfig, fit_report: fit_lib.FitReport | None
    ) -> list[validation.Cause]:
        """What in this run explains an accuracy drop: recovery steps, target, learning rate."""
        s = self.schedule
        total = s["total_steps"]
        per_epoch = fit_report.steps_per_epoch if fit_report else max(1, total // fit.epochs)
        final_at = s["end_step"] if s["kind"] == "polynomial" else s["begin_step"]
        after = max(0, total - 1 - final_at)
        out = []
        target = f"{100 * s['target_sparsity']:.0f}%"
        if after / per_epoch < RECOVERY_EPOCHS:
            share = (
                1 - self.config.end_fraction
                if s["kind"] == "polynomial"
                else 1 - self.config.begin_fraction
            )
            epochs = validation.suggested_epochs(RECOVERY_EPOCHS, share, fit.epochs)
            out.append(
                validation.Cause(
                    f"too few steps for the schedule: pruning reached its final {target} "
                    f"sparsity at step {final_at} of {total} and trained only {after} steps "
                    f"({after / per_epoch:.1f} epochs) at it to recover, where the default "
                    f"{DEFAULT_FIT.epochs} epochs leave {RECOVERY_EPOCHS:.1f}",
                    f"--epochs={epochs}",
                )
            )
        if s["target_sparsity"] > HIGH_SPARSITY:
            lower = max(0.5, round(s["target_sparsity"] - 0.2, 1))
            out.append(
                validation.Cause(
                    f"the {target} sparsity target is high for this model",
                    f"a lower --target_sparsity (e.g. {lower:g}) or more epochs",
                )
            )
        return out + validation.learning_rate_cause(fit, DEFAULT_FIT, technique="pruning")

    def finish(
        self, trained: Any, fit_report: fit_lib.FitReport | None
    ) -> tuple[Any, reports.PruneReport]:
        stripped = layers_lib.unshare(_compat.tfmot().sparsity.keras.strip_pruning(trained))
        layers = reports.measure_layers(stripped, self.selected)
        report = reports.PruneReport(
            technique="prune",
            config=self.config.to_dict(),
            schedule=self.schedule,
            target_sparsity=self.schedule["target_sparsity"],
            achieved_sparsity=reports.overall_sparsity(layers),
            model_sparsity=reports.overall_sparsity(layers, compressed_only=False),
            layers=tuple(layers),
            skipped=tuple(self.skipped),
            fit=fit_report,
        )
        return stripped, report


def prune(
    model: Any,
    config: config_lib.PruneConfig,
    data: Any,
    *,
    fit: config_lib.FitConfig | None = None,
    val_data: Any = None,
) -> tuple[Any, reports.PruneReport]:
    """Prunes and fine-tunes a copy of `model`; returns it stripped, with a report.

    A Keras 3 model (`import keras`: a `.keras` file it saved, an in-memory model,
    a `keras.applications` model) is translated to tf_keras by the checked Keras 3
    bridge (`edgekit.optimize.keras3`) and the pruned result comes back as your own
    Keras 3 model: plain layers holding the sparse weights, which saves as `.keras`
    and loads with plain `keras.saving.load_model`.

    Args:
      model: a Functional or Sequential model, tf_keras or Keras 3 (or a path to
        one); it is not changed.
      config: target sparsity, schedule, structure and which layers to prune.
      data: labelled training data: an `edgekit.data.Dataset`, a tuple (x, y), or
        a path that `edgekit.data.load` reads.
      fit: epochs, steps, batch size, optimizer, learning rate, strategy, log_dir;
        None for `DEFAULT_FIT`.
      val_data: optional labelled held-out data: accuracy is measured on it before
        and after (else on a split of `data`, see `FitConfig.val_split`), in the
        report's `validation`.

    Returns:
      (the pruned model without pruning wrappers, in the Keras it was given, a
      `PruneReport`; its `bridge` holds the Keras 3 bridge's figures, its
      `validation` the held-out accuracy before and after).

    Raises:
      UserInputError: bad model (subclassed, already wrapped, a Keras 3 layer the
        bridge cannot map or a mismatch past its tolerance), data that does not
        fit it, no layer left to prune, a schedule that cannot reach its
        target in the number of steps, or val_data that does not fit.
      validation.AccuracyDropError: `fit.fail_on_accuracy_drop` and a drop past
        `fit.max_accuracy_drop` (it holds the model and the report).

    Example:
        >>> stripped, report = prune(model, PruneConfig(target_sparsity=0.5), (x, y))
        >>> stripped.save("pruned.keras")
    """
    fit = fit or DEFAULT_FIT
    bridged, (x, y) = technique.bridge_inputs(model, data, val_data, fit=fit, what="Pruning")
    model = bridged.model
    if config.xnnpack_policy:
        tfmot = _compat.tfmot()
        try:
            tfmot.sparsity.keras.PruneForLatencyOnXNNPack().ensure_model_supports_pruning(model)
        except ValueError as e:
            raise errors.UserInputError(
                f"TF-MOT's XNNPack latency policy does not apply to this model: {e}. The "
                "policy needs a MobileNet-like stem (ZeroPadding2D, 3x3 stride-2 Conv2D on 3 "
                "channels) and a GlobalAveragePooling2D head; prune without xnnpack_policy. "
                + errors.received(xnnpack_policy=True)
            ) from None
    (x, y), holdout = validation.hold_out(model, x, y, val_data, fit=fit, what="pruning")
    _, total_steps = fit_lib.plan_steps(len(x), fit)
    pruning = Pruning(model, config, total_steps=total_steps, log_dir=fit.log_dir)
    stripped, report = technique.run(pruning, (x, y), fit=fit, val_data=val_data, holdout=holdout)
    return validation.enforce(fit, *technique.bridge_back(bridged, stripped, report, x))


def _time_invoke(data: bytes, *, runs: int, num_threads: int, use_xnnpack: bool) -> float:
    lite = runtime.LiteModel(data, num_threads=num_threads, use_xnnpack=use_xnnpack)
    rng = np.random.default_rng(0)
    shapes = [[1 if d == -1 else d for d in spec.shape_signature] for spec in lite.inputs]
    samples = [rng.random(shape, dtype=np.float32) for shape in shapes]
    # One predict call sets a dynamic batch to 1 (its first warm-up call, too).
    lite.predict(samples[0] if len(samples) == 1 else samples)
    feeds = [lite.quantize(x, spec) for x, spec in zip(samples, lite.inputs, strict=True)]
    for _ in range(5):
        lite.invoke(feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        lite.invoke(feeds)
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 4)


def compare_sparse_encoding(
    model: Any,
    *,
    convert_config: config_lib.ConvertConfig | None = None,
    calibration_data: Any = None,
    runs: int = 50,
    num_threads: int = 1,
) -> dict[str, Any]:
    """Converts `model` with and without TFLite's sparse encoding and compares them.

    Size is the `.tflite` byte count (and gzip -9); latency is the median of `runs`
    timed `invoke` calls on one random sample after 5 warm-up calls, on
    `num_threads` threads, both files on the same CPU path: XNNPack when it takes
    both files, else the builtin kernels (the reason is recorded).

    Returns:
      A JSON-ready dict: for "dense" and "sparse" the size, gzip size and median
      latency in ms, plus "size_changed", "size_ratio" and "latency_ratio"
      (sparse / dense).
    """
    # convert is a sibling stage (same layer as optimize), so it is imported here and
    # only here: this comparison is a measurement for `edgekit-prune --compare_sparse_tflite`
    # and the benchmarks, kept under its public name; pruning itself never converts.
    from edgekit import convert as convert_lib

    base = convert_config or config_lib.ConvertConfig()
    blobs = {}
    for key, sparse in (("dense", False), ("sparse", True)):
        cfg = dataclasses.replace(base, sparse_weights=sparse)
        blobs[key] = bytes(
            convert_lib.convert(model, cfg, calibration_data=calibration_data).tflite_bytes
        )
    path = "xnnpack"
    try:
        latency = {
            k: _time_invoke(b, runs=runs, num_threads=num_threads, use_xnnpack=True)
            for k, b in blobs.items()
        }
    except errors.UserInputError as e:
        # Seen: int8 sparse FULLY_CONNECTED fails XNNPack's prepare step.
        path = f"builtin kernels (XNNPack refused a file: {str(e)[:160]})"
        latency = {
            k: _time_invoke(b, runs=runs, num_threads=num_threads, use_xnnpack=False)
            for k, b in blobs.items()
        }
    out: dict[str, Any] = {
        "mode": config_lib.ConvertMode(base.mode).value,
        "timing": {
            "runs": runs,
            "warmup": 5,
            "num_threads": num_threads,
            "batch": 1,
            "cpu_path": path,
        },
    }
    for key, data in blobs.items():
        out[key] = {
            "size_bytes": len(data),
            "gzip_size_bytes": len(gzip.compress(data, 9)),
            "median_latency_ms": latency[key],
        }
    out["size_changed"] = out["sparse"]["size_bytes"] != out["dense"]["size_bytes"]
    out["size_ratio"] = round(out["sparse"]["size_bytes"] / out["dense"]["size_bytes"], 4)
    out["latency_ratio"] = round(latency["sparse"] / max(latency["dense"], 1e-9), 4)
    return out
