"""Quantization-aware training (TF-MOT's default 8-bit scheme), where TF-MOT alone refuses.

`tfmot.quantization.keras.quantize_model` stops at the first layer it has no config
for: MobileNetV3's op layers (`x + 3.0`, `x * (1/6)`), EfficientNet's `Rescaling`
and `Normalization`, `Multiply`, or a BatchNormalization that does not follow a
convolution. `quantize_aware` instead (1) rewrites scalar op layers into built-in
`Rescaling`/`ReLU` layers, (2) gives the layers TF-MOT has no config for an
output-only 8-bit config, (3) splits layers that become two TFLite ops (a multiply
and an add; a separable convolution's depthwise and pointwise steps) so each op has
a trained range, (4) leaves anything else float (the int8
converter then calibrates it from data), and (5) reports each layer's fate with the
reason. A model with no float layer converts to int8 with the ranges it learned and
no calibration data, so the int8 file computes what the QAT model computed.
Collaborative optimization uses TF-MOT's own schemes: keep a pruned model's zeros,
a clustered model's centroids, or both.

Example:
    >>> qat_model, report = quantize_aware(model, QATConfig(), (x, y))
    >>> tflite = edgekit.convert.convert(qat_model, ConvertConfig(mode="int8"),
    ...                                  calibration_data=x)
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgekit import _compat, errors
from edgekit import config as config_lib
from edgekit.optimize import _qat_rewrite, losses, reports, technique, validation
from edgekit.optimize import fit as fit_lib
from edgekit.optimize import layers as layers_lib

_WHAT = "Quantization-aware training"

# Layers TF-MOT's default 8-bit registry has no config for, whose output edgekit
# quantizes (no weights to quantize; the int8 kernels take a quantized output).
_OUTPUT_ONLY_TYPES = (
    "Rescaling",
    "Normalization",
    "BatchNormalization",
    "Multiply",
    "Subtract",
    "Average",
    "Maximum",
    "Minimum",
)
# TFLite's int8 AVERAGE_POOL_2D needs the same scale in and out; TF-MOT gives the
# output its own range and conversion then fails ("violate the same scale constraint").
_SAME_SCALE_TYPES = ("AveragePooling1D", "AveragePooling2D")

# The report classes live with the other techniques' reports; these names stay here.
QUANTIZED = reports.QUANTIZED
FLOAT = reports.FLOAT
LayerDecision = reports.LayerDecision
QATReport = reports.QATReport


# ----------------------------------------------------------------------------
# Planning


def _scheme(preserve: config_lib.QATPreserve) -> Any:
    tfmot = _compat.tfmot()
    q = tfmot.quantization.keras
    if preserve is config_lib.QATPreserve.SPARSITY:
        return tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    if preserve is config_lib.QATPreserve.CLUSTERS:
        return tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme()
    if preserve is config_lib.QATPreserve.BOTH:
        return tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=True
        )
    return q.default_8bit.Default8BitQuantizeScheme()


def _feeds_only_relu(layer: Any) -> bool:
    """True when the layer's output goes to exactly one ReLU layer (quantized there)."""
    nodes = getattr(layer, "_outbound_nodes", [])
    if len(nodes) != 1 or len(getattr(layer, "_inbound_nodes", [])) != 1:
        return False
    consumer = nodes[0].outbound_layer
    return type(consumer).__name__ == "ReLU" and getattr(consumer, "negative_slope", 0) == 0


def plan(model: Any, config: config_lib.QATConfig) -> tuple[dict[str, Any], list[LayerDecision]]:
    """Decides, for each layer, its quantize config (None for TF-MOT's) or float.

    Returns:
      ({layer name: quantize config or None for the registry's}, the decisions).
    """
    from edgekit.optimize import _qat_configs  # lazy: it imports tf_keras (see `finish`)

    tf_keras = _compat.tf_keras()
    tfmot = _compat.tfmot()
    # Support is decided by the default 8-bit registry: the preserve schemes'
    # registries claim every weightless layer (Rescaling too) and then fail on it.
    registry = tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry()
    scheme_registry = _scheme(config.preserve).get_quantize_registry()
    preserving = config.preserve is not config_lib.QATPreserve.NONE
    exclude = re.compile(config.exclude_layers) if config.exclude_layers else None
    chosen: dict[str, Any] = {}
    decisions: list[LayerDecision] = []

    def quantize(layer: Any, quantize_config: Any, reason: str) -> None:
        # quantize_config None: the registry's (TF-MOT's) own config.
        chosen[layer.name] = quantize_config
        decisions.append(LayerDecision(layer.name, type(layer).__name__, QUANTIZED, reason))

    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, tf_keras.layers.InputLayer):
            continue
        reason = None
        if kind in config.skip_types:
            reason = f"{kind} is in skip_types"
        elif exclude is not None and exclude.search(layer.name):
            reason = f"name matches exclude_layers={config.exclude_layers!r}"
        if reason:
            decisions.append(LayerDecision(layer.name, kind, FLOAT, reason))
            continue
        if kind == "Activation" and getattr(layer.activation, "__name__", "") == "sigmoid":
            quantize(
                layer,
                _qat_configs.sigmoid_output_config(),
                "sigmoid output quantized to TFLite's fixed int8 range (steps of 1/256), "
                "which TF-MOT leaves float",
            )
            continue
        if kind in _SAME_SCALE_TYPES:
            quantize(
                layer,
                _qat_configs.no_op_config(),
                "TFLite's int8 average pool keeps its input's scale, so its output "
                "takes the input's range (TF-MOT's own range breaks int8 conversion)",
            )
            continue
        if registry.supports(layer):
            if preserving and not scheme_registry.supports(layer):
                quantize(
                    layer,
                    registry.get_quantize_config(layer),
                    f"TF-MOT 8-bit config; the {config.preserve.value}-preserving scheme "
                    f"does not cover {kind}, so its weights are not preserved",
                )
            else:
                quantize(layer, None, "TF-MOT 8-bit config")
            continue
        source = _qat_rewrite.folded_into(layer) if kind == "BatchNormalization" else None
        if source is not None and source.name in chosen:
            quantize(
                layer,
                None,
                f"follows {type(source).__name__} {source.name!r}; TF-MOT folds it in",
            )
            continue
        if kind in _OUTPUT_ONLY_TYPES and _feeds_only_relu(layer):
            quantize(
                layer,
                _qat_configs.no_op_config(),
                "quantized after the ReLU that follows it (TFLite fuses the activation "
                "into the op, so no range is kept in between)",
            )
            continue
        if kind in _OUTPUT_ONLY_TYPES:
            quantize(
                layer,
                _qat_configs.output_config(),
                f"edgekit output-only 8-bit config (TF-MOT has none for {kind})",
            )
            continue
        if isinstance(layer, tf_keras.Model):
            raise errors.UserInputError(
                f"{_WHAT} does not support nested models yet: {layer.name!r} is a model "
                "inside the model, and TF-MOT's quantize_apply cannot wrap it. Rebuild the "
                "model flat (call the inner model's layers directly on the outer tensors). "
                + errors.received(nested_model=layer.name)
            )
        decisions.append(
            LayerDecision(
                layer.name,
                kind,
                FLOAT,
                f"TF-MOT has no 8-bit config for {kind}; trained in float, and the int8 "
                "converter calibrates its range from the representative data (which then "
                "re-measures every range, not only this one)",
            )
        )
    if not chosen:
        raise errors.UserInputError(
            f"{_WHAT} found no layer to quantize: every layer is excluded or unsupported. "
            "Loosen exclude_layers/skip_types. "
            + errors.received(exclude_layers=config.exclude_layers, skip_types=config.skip_types)
        )
    return chosen, decisions


def prepare(
    model: Any, config: config_lib.QATConfig | None = None
) -> tuple[Any, list[LayerDecision], list[_qat_rewrite.Rewrite]]:
    """Returns (annotated copy of `model`, decisions, rewrites), without training.

    The annotated model goes to `tfmot.quantization.keras.quantize_apply` with the
    scheme for `config.preserve`; `quantize_aware` does that inside the strategy.
    """
    config = config or config_lib.QATConfig()
    tfmot = _compat.tfmot()
    layers_lib.check_functional(model, what=_WHAT)
    owned = layers_lib.clone(model)
    rewrites: list[_qat_rewrite.Rewrite] = []
    separable: list[_qat_rewrite.Rewrite] = []
    if config.rewrite_ops:
        owned, rewrites = _qat_rewrite.rewrite_ops(owned)
        owned, separable = _qat_rewrite.split_separable(owned)
        owned, split = _qat_rewrite.split_affine(owned)
        owned, moved = _qat_rewrite.split_activations(owned)
        rewrites += separable + split + moved
    chosen, decisions = plan(owned, config)
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def wrap(layer: Any) -> Any:
        qc = chosen[layer.name]
        return annotate(layer) if qc is None else annotate(layer, quantize_config=qc)

    with tfmot.quantization.keras.quantize_scope():
        annotated = layers_lib.wrap_layers(owned, list(chosen), wrap)
    by_name = {r.name: r for r in rewrites}
    # Every layer a split separable convolution became carries the same note.
    by_name.update({name: r for r in separable for name in _qat_rewrite.added_layers(r)})
    decisions = [
        dataclasses.replace(d, reason=f"{d.reason}; rewritten from {by_name[d.name].op}")
        if d.name in by_name
        else d
        for d in decisions
    ]
    return annotated, decisions, rewrites


def apply(annotated: Any, preserve: config_lib.QATPreserve | str) -> Any:
    """Runs TF-MOT's `quantize_apply` with the scheme for `preserve`."""
    from edgekit.optimize import _qat_configs  # lazy: it imports tf_keras (see `finish`)

    tfmot = _compat.tfmot()
    scheme = _qat_configs.Scheme(_scheme(config_lib.QATPreserve(preserve)))
    with tfmot.quantization.keras.quantize_scope(_qat_configs.OBJECTS):
        return tfmot.quantization.keras.quantize_apply(annotated, scheme)


@contextlib.contextmanager
def _ranges_from_batch() -> Iterator[None]:
    """While active, TF-MOT's moving-average range quantizers take the batch's range.

    TF-MOT starts every activation range at [-6, 6] and moves it by 0.1% per step
    (`ema_decay=0.999`, fixed in the quantizer), so a short fine-tune converts with
    ranges that are still mostly the initial guess: tiny activations round to zero
    and large ones clip. One forward pass under this context sets each range to what
    the data produces, as post-training calibration would; training then refines it.
    """
    tf = _compat.tf()
    train = tf.__internal__.train
    original = train.assign_moving_average

    def assign_now(
        variable: Any, value: Any, decay: Any, zero_debias: bool = True, name: Any = None
    ) -> Any:
        del decay, zero_debias, name
        return variable.assign(value)

    train.assign_moving_average = assign_now
    try:
        yield
    finally:
        train.assign_moving_average = original


def init_ranges(model: Any, x: np.ndarray, *, max_samples: int = 256) -> None:
    """Sets the activation ranges of a fresh QAT model from one pass over `x`.

    Runs the model in training mode eagerly (so batch normalization also moves its
    statistics one step toward this batch, as one training step would).
    """
    idx = np.linspace(0, len(x) - 1, num=min(len(x), max_samples)).astype(int)
    with _ranges_from_batch():
        model(x[idx], training=True)


# ----------------------------------------------------------------------------
# Measuring


def quantized_weights(model: Any) -> list[dict[str, Any]]:
    """Zeros and unique values of each wrapped layer's fake-quantized kernel.

    These are the weights the int8 file will hold (the quantizers of the
    preserve schemes apply their sparsity masks and centroids here).
    """
    out = []
    for layer in model.layers:
        for weight, quantizer, qvars in getattr(layer, "_weight_vars", []):
            name = weight.name.split("/")[-1].split(":")[0]
            if "kernel" not in name:
                continue
            q = np.asarray(quantizer(weight, False, weights=qvars))
            # Per output channel (TFLite's scales are per channel, so clusters are too).
            channels = q.reshape(-1, q.shape[-1]) if q.ndim > 1 else q[:, None]
            if type(layer.layer).__name__ == "DepthwiseConv2D":
                channels = q.reshape(q.shape[0] * q.shape[1], -1)
            per_channel = max(len(np.unique(channels[:, c])) for c in range(channels.shape[1]))
            out.append(
                {
                    "name": layer.layer.name,
                    "type": type(layer.layer).__name__,
                    "num_weights": int(q.size),
                    "zeros": int(np.count_nonzero(q == 0)),
                    "unique_values": int(len(np.unique(q))),
                    "max_unique_per_channel": int(per_channel),
                }
            )
    return out


def _sparsity(rows: list[dict[str, Any]]) -> float:
    total = sum(r["num_weights"] for r in rows)
    return round(sum(r["zeros"] for r in rows) / total, 6) if total else 0.0


# ----------------------------------------------------------------------------
# The entry point


def quantize_aware(
    model: Any,
    config: config_lib.QATConfig | None = None,
    data: Any = None,
    *,
    fit: config_lib.FitConfig | None = None,
    val_data: Any = None,
) -> tuple[Any, QATReport]:
    """Fine-tunes a copy of `model` with fake quantization; returns it ready for int8 convert.

    A Keras 3 model (`import keras`) is translated to tf_keras by the checked Keras 3
    bridge (`edgekit.optimize.keras3`) first, and the QAT model returned is a
    tf_keras model either way: TF-MOT's fake-quantization wrappers exist only in
    tf_keras (Keras 2), and the deliverable of QAT is the int8 `.tflite` that
    `edgekit.convert` makes from it with the ranges it trained.

    Args:
      model: a Functional or Sequential model, tf_keras or Keras 3, or a path to
        one (never changed). For
        `preserve="sparsity"`/`"both"` pass the stripped pruned model; for
        `"clusters"`/`"both"` the stripped clustered one.
      config: the QAT options; None for the defaults.
      data: labelled training data: an `edgekit.data.Dataset`, `(x, y)` arrays, or a
        path `edgekit.data.load` reads.
      fit: epochs, batch size, learning rate, strategy, log_dir; None for defaults.
      val_data: optional labelled held-out data for the accuracy check before and
        after (else a split of `data`, see `FitConfig.val_split`; `validation`).

    Returns:
      (the QAT model, a tf_keras model (also for Keras 3 input), which
      `edgekit.convert` turns into a full-int8 `.tflite` and which saves to a
      `.keras` file that plain `tf_keras.models.load_model` reads, a `QATReport`;
      its `bridge` holds the Keras 3 bridge's figures, None for tf_keras input).

    Raises:
      UserInputError: a subclassed or already-wrapped model, a nested model, a
        Keras 3 layer the bridge cannot map or a mismatch past its tolerance, data
        without labels or of the wrong shape, or a config that excludes everything.
      validation.AccuracyDropError: `fit.fail_on_accuracy_drop` and a drop past
        `fit.max_accuracy_drop` (it holds the model and the report).

    Example:
        >>> qat, report = quantize_aware(model, QATConfig(preserve="sparsity"), (x, y),
        ...                              fit=FitConfig(epochs=1))
        >>> [d.name for d in report.float_layers()]
    """
    config = _check_config(config)
    fit = fit or config_lib.FitConfig()
    if not isinstance(fit, config_lib.FitConfig):
        raise errors.UserInputError(
            "fit must be an edgekit.config.FitConfig. " + errors.received(fit=type(fit).__name__)
        )
    if data is None:
        raise errors.UserInputError(
            f"{_WHAT} fine-tunes the model and needs labelled data: (x, y) arrays, an "
            "edgekit.data.Dataset or an .npz path. " + errors.received(data=None)
        )
    bridged, (x, y) = technique.bridge_inputs(model, data, val_data, fit=fit, what=_WHAT)
    model = bridged.model
    if val_data is not None:
        val_data = fit_lib.as_arrays(val_data, what="val_data")
    (x, y), holdout = validation.hold_out(model, x, y, val_data, fit=fit, what="QAT")
    qat = QuantizationAware(model, config, x, strategy=fit.strategy)
    # The loss is chosen from the caller's model: inside a QAT wrapper the output
    # activation is hidden, and a softmax output would be read as logits.
    loss, _, _, metrics = losses.choose_loss(model, y)
    qat_model, report = technique.run(
        qat, (x, y), fit=fit, val_data=val_data, loss=loss, metrics=metrics, holdout=holdout
    )
    # No way back: TF-MOT's fake-quant wrappers exist only in tf_keras (see `Returns`).
    report = dataclasses.replace(report, bridge=technique.bridge_figures(bridged))
    return validation.enforce(fit, qat_model, report)


class QuantizationAware:
    """Quantization-aware training as a technique (`edgekit.optimize.technique`).

    Set up on a model (it is not changed): measures its kernels, rewrites and
    annotates a copy (`prepare`). `build()` applies TF-MOT's scheme to the annotated
    copy and, with `init_ranges`, sets the activation ranges from `x`; `finish()`
    copies the trained model out of a strategy's variables and reports every layer.

    Raises:
      UserInputError: a subclassed, wrapped or nested model, or a config that
        leaves no layer to quantize.
    """

    def __init__(
        self,
        model: Any,
        config: config_lib.QATConfig,
        x: np.ndarray,
        *,
        strategy: config_lib.Strategy | str = config_lib.Strategy.DEFAULT,
    ) -> None:
        self.config = config
        self.x = x
        self.strategy = config_lib.Strategy(strategy)
        self.before = {s.name: s for s in reports.measure_layers(model, ())}
        self.annotated, self.decisions, self.rewrites = prepare(model, config)

    def build(self) -> Any:
        qat_model = apply(self.annotated, self.config.preserve)
        if self.config.init_ranges:
            init_ranges(qat_model, self.x)
        return qat_model

    def callbacks(self) -> list[Any]:
        return []

    def diagnose(self, fit: config_lib.FitConfig, fit_report: Any) -> list[validation.Cause]:
        """What in this run explains an accuracy drop: epochs and learning rate."""
        del fit_report
        default = config_lib.FitConfig()
        return validation.epochs_cause(
            fit, default, technique="QAT"
        ) + validation.learning_rate_cause(fit, default, technique="QAT")

    def finish(self, trained: Any, fit_report: fit_lib.FitReport | None) -> tuple[Any, QATReport]:
        # Imported here on purpose: _qat_configs imports tf_keras and TF-MOT at module
        # level (saved QAT models name its classes), and `import edgekit` must not.
        from edgekit.optimize import _qat_configs

        if self.strategy is not config_lib.Strategy.DEFAULT:
            # Distributed variables do not save or convert; copy into plain ones.
            tfmot = _compat.tfmot()
            with tfmot.quantization.keras.quantize_scope(_qat_configs.OBJECTS):
                copy = _compat.tf_keras().models.clone_model(trained)
                copy.set_weights(trained.get_weights())
            trained = copy
        final = _qat_configs.adopt(trained)
        weights = quantized_weights(final)
        # Compare like with like: the input model's zeros in the kernels QAT quantized.
        same = [self.before[r["name"]] for r in weights if r["name"] in self.before]
        sparsity_before = reports.overall_sparsity(same, compressed_only=False)
        decisions = self.decisions
        report = QATReport(
            technique="qat",
            config=self.config.to_dict(),
            preserve=self.config.preserve.value,
            layers=tuple(decisions),
            num_quantized=sum(d.status == QUANTIZED for d in decisions),
            num_float=sum(d.status == FLOAT for d in decisions),
            rewrites=tuple(self.rewrites),
            sparsity_before=sparsity_before,
            sparsity_after=_sparsity(weights),
            weights=tuple(weights),
            fit=fit_report,
        )
        return final, report


def _check_config(config: Any) -> config_lib.QATConfig:
    if config is None:
        return config_lib.QATConfig()
    if isinstance(config, dict):
        return config_lib.QATConfig.from_dict(config)
    if not isinstance(config, config_lib.QATConfig):
        raise errors.UserInputError(
            "config must be an edgekit.config.QATConfig (or a dict of its fields). "
            + errors.received(config=type(config).__name__)
        )
    return config
