"""Weight clustering with TF-MOT, on a copy of the model, with a per-layer report.

`cluster` clones the model (TF-MOT's `cluster_weights` has been seen to change
the model it was handed, so it only ever sees edgekit's copy), wraps the
selected layers, fine-tunes the centroids, strips the wrappers and counts the
unique values of every kernel on the stripped weights.

Layers with no more weights than clusters (per channel with `per_channel`) are
left out with the reason in the report; TF-MOT would skip them with only a
warning. When no layer is left, the error says so.

Example:
    >>> stripped, report = edgekit.optimize.cluster.cluster(
    ...     model, ClusterConfig(num_clusters=16), (x_train, y_train),
    ...     fit=FitConfig(epochs=3, learning_rate=1e-4))
    >>> max(s.unique_values for s in report.layers if s.compressed)
    16
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from edgekit import _compat, errors
from edgekit import config as config_lib
from edgekit.optimize import fit as fit_lib
from edgekit.optimize import layers as layers_lib
from edgekit.optimize import reports, technique, validation

# Fine-tuning measured on the bundled example: 16 clusters with 2 epochs at 1e-4
# kept 99.2% test accuracy (the float model has 98.9%).
DEFAULT_FIT = config_lib.FitConfig(epochs=2, learning_rate=1e-4)

# Fewer clusters than this is named as a cause when accuracy drops.
FEW_CLUSTERS = 8

_INIT_NAMES = {
    config_lib.ClusterInit.KMEANS_PLUS_PLUS: "KMEANS_PLUS_PLUS",
    config_lib.ClusterInit.LINEAR: "LINEAR",
    config_lib.ClusterInit.RANDOM: "RANDOM",
    config_lib.ClusterInit.DENSITY: "DENSITY_BASED",
}


def _registry() -> Any:
    _compat.tfmot()
    return importlib.import_module(
        "tensorflow_model_optimization.python.core.clustering.keras.clustering_registry"
    )


def _weights_per_cluster_group(layer: Any, per_channel: bool) -> int:
    tf_keras = _compat.tf_keras()
    kernel = layers_lib.kernel_of(layer)
    if kernel is None:
        return 0
    if per_channel and isinstance(layer, tf_keras.layers.Conv2D):
        return int(kernel.size // kernel.shape[-1])
    return int(kernel.size)


def supports(config: config_lib.ClusterConfig) -> Callable[[Any], str | None]:
    """The per-layer check for `layers.select_layers`: None, or why a layer is left out."""
    registry = _registry().ClusteringRegistry
    clusterable = _compat.tfmot().clustering.keras.ClusterableLayer

    def check(layer: Any) -> str | None:
        if not (isinstance(layer, clusterable) or registry.supports(layer)):
            return f"TF-MOT cannot cluster {type(layer).__name__} layers"
        count = _weights_per_cluster_group(layer, config.per_channel)
        if count <= config.num_clusters:
            where = " per channel" if config.per_channel else ""
            return (
                f"only {count} kernel weights{where}, not more than num_clusters="
                f"{config.num_clusters}"
            )
        return None

    return check


class Clustering:
    """Weight clustering as a technique (`edgekit.optimize.technique`).

    Set up on a model (it is not changed): selects the layers with more weights than
    clusters. `build()` wraps a fresh copy, `callbacks()` adds TF-MOT's summaries when
    there is a log_dir, and `finish()` strips the wrappers and counts every kernel's
    unique values.

    Raises:
      UserInputError: no layer with more weights than clusters is left.
    """

    def __init__(
        self, model: Any, config: config_lib.ClusterConfig, *, log_dir: str | None = None
    ) -> None:
        self.model = model
        self.config = config
        self.log_dir = log_dir
        self.selected, self.skipped = technique.select_or_raise(
            model,
            config,
            supports(config),
            verb="cluster",
            hint=self._hint,
            received=errors.received(
                num_clusters=config.num_clusters, per_channel=config.per_channel
            ),
        )

    def _hint(self, skipped: list[layers_lib.Skipped]) -> str:
        too_small = [s.name for s in skipped if "num_clusters" in s.reason]
        if not too_small:
            return ""
        return (
            f"num_clusters={self.config.num_clusters} is not smaller than the weights of "
            f"{too_small[:6]}: lower num_clusters"
            + (" or turn per_channel off" if self.config.per_channel else "")
            + ". "
        )

    def _wrap(self, layer: Any) -> Any:
        config = self.config
        tfmot = _compat.tfmot()
        centroids = tfmot.clustering.keras.CentroidInitialization[
            _INIT_NAMES[config_lib.ClusterInit(config.init)]
        ]
        if isinstance(layer, _compat.tf_keras().layers.Conv2D):
            # TF-MOT's own check counts channels from the last trainable weight, which
            # is the kernel when the conv has no bias, and then silently leaves the
            # layer unclustered. The size check of `supports` is the right one; wrap
            # directly.
            wrapper = importlib.import_module(
                "tensorflow_model_optimization.python.core.clustering.keras.cluster_wrapper"
            )
            return wrapper.ClusterWeights(
                layer,
                config.num_clusters,
                centroids,
                config.preserve_sparsity,
                config.per_channel,
            )
        # preserve_sparsity and cluster_per_channel are only reachable through the
        # experimental entry point, which the public API package does not re-export.
        experimental = importlib.import_module(
            "tensorflow_model_optimization.python.core.clustering.keras.experimental.cluster"
        )
        return experimental.cluster_weights(
            layer,
            number_of_clusters=config.num_clusters,
            cluster_centroids_init=centroids,
            preserve_sparsity=config.preserve_sparsity,
            cluster_per_channel=config.per_channel,
        )

    def build(self) -> Any:
        return layers_lib.wrap_layers(layers_lib.clone(self.model), self.selected, self._wrap)

    def callbacks(self) -> list[Any]:
        if not self.log_dir:
            return []
        return [_compat.tfmot().clustering.keras.ClusteringSummaries(log_dir=self.log_dir)]

    def diagnose(
        self, fit: config_lib.FitConfig, fit_report: fit_lib.FitReport | None
    ) -> list[validation.Cause]:
        """What in this run explains an accuracy drop: epochs, clusters, learning rate."""
        del fit_report
        out = validation.epochs_cause(fit, DEFAULT_FIT, technique="clustering")
        if self.config.num_clusters < FEW_CLUSTERS:
            out.append(
                validation.Cause(
                    f"{self.config.num_clusters} values per weight tensor are few for this model",
                    f"--num_clusters={FEW_CLUSTERS * 2}",
                )
            )
        return out + validation.learning_rate_cause(fit, DEFAULT_FIT, technique="clustering")

    def finish(
        self, trained: Any, fit_report: fit_lib.FitReport | None
    ) -> tuple[Any, reports.ClusterReport]:
        strip = _compat.tfmot().clustering.keras.strip_clustering
        stripped = layers_lib.unshare(strip(trained))
        report = reports.ClusterReport(
            technique="cluster",
            config=self.config.to_dict(),
            num_clusters=self.config.num_clusters,
            layers=tuple(reports.measure_layers(stripped, self.selected)),
            skipped=tuple(self.skipped),
            fit=fit_report,
        )
        return stripped, report


def cluster(
    model: Any,
    config: config_lib.ClusterConfig,
    data: Any,
    *,
    fit: config_lib.FitConfig | None = None,
    val_data: Any = None,
) -> tuple[Any, reports.ClusterReport]:
    """Clusters and fine-tunes a copy of `model`; returns it stripped, with a report.

    A Keras 3 model goes through the checked Keras 3 bridge
    (`edgekit.optimize.keras3`) and comes back as your own Keras 3 model holding
    the clustered weights (saves as `.keras`, loads with plain Keras).

    Args:
      model: a Functional or Sequential model, tf_keras or Keras 3 (or a path to
        one); it is not changed. For sparsity-preserving clustering, pass a pruned
        model.
      config: clusters, centroid initialisation, per-channel, sparsity
        preservation, and which layers to cluster.
      data: labelled training data: an `edgekit.data.Dataset`, a tuple (x, y), or
        a path that `edgekit.data.load` reads.
      fit: epochs, steps, batch size, optimizer, learning rate, strategy, log_dir;
        None for `DEFAULT_FIT`.
      val_data: optional labelled held-out data: accuracy is measured on it before
        and after (else on a split of `data`, see `FitConfig.val_split`), in the
        report's `validation`.

    Returns:
      (the clustered model without clustering wrappers, in the Keras it was
      given, a `ClusterReport`; its `bridge` holds the Keras 3 bridge's figures).

    Raises:
      UserInputError: bad model (subclassed, already wrapped, a Keras 3 layer the
        bridge cannot map or a mismatch past its tolerance), data that does not
        fit it, val_data that does not fit, or no layer with more weights than
        clusters.
      validation.AccuracyDropError: `fit.fail_on_accuracy_drop` and a drop past
        `fit.max_accuracy_drop` (it holds the model and the report).

    Example:
        >>> stripped, report = cluster(model, ClusterConfig(num_clusters=16), (x, y))
    """
    fit = fit or DEFAULT_FIT
    bridged, (x, y) = technique.bridge_inputs(model, data, val_data, fit=fit, what="Clustering")
    clustering = Clustering(bridged.model, config, log_dir=fit.log_dir)
    (x, y), holdout = validation.hold_out(bridged.model, x, y, val_data, fit=fit, what="clustering")
    stripped, report = technique.run(
        clustering, (x, y), fit=fit, val_data=val_data, holdout=holdout
    )
    return validation.enforce(fit, *technique.bridge_back(bridged, stripped, report, x))
