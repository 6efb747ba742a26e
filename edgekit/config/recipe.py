"""The recipe: one reproducible run, an optional section per stage."""

from __future__ import annotations

import dataclasses

from edgekit.config import base, deployment, training

# The convert modes a QAT model can go to: QAT trains for integer kernels.
_QAT_MODES = (deployment.ConvertMode.INT8, deployment.ConvertMode.INT8_FLOAT_FALLBACK)


@dataclasses.dataclass(frozen=True)
class Recipe(base.Config):
    """One reproducible run: an optional section per stage, applied in this order.

    distill -> prune -> cluster -> qat (each fine-tunes) -> convert -> evaluate ->
    benchmark -> bundle. `fit` is the fine-tuning budget of every training stage;
    `<stage>_fit` overrides it for one stage. Sections left out are skipped
    (convert, evaluate and bundle always run, with their defaults).

    Attributes:
      name / description: shown by edgekit-recipes and in the report.
      format_version: the recipe file format (1).
      fit: the fine-tuning budget (epochs, batch size, learning rate, strategy) of
        every training stage.
      distill: distil the model into a smaller student first (see DistillConfig);
        the student is `distill_student`.
      distill_student: the student: "width:F" for a copy of the model with every
        conv/dense width scaled by F, or a path to a Keras model.
      prune: magnitude or structured pruning while fine-tuning (see PruneConfig).
      cluster: weight clustering while fine-tuning (see ClusterConfig); after prune,
        set its preserve_sparsity.
      qat: quantization-aware training (see QATConfig); needs an int8 convert mode.
      distill_fit / prune_fit / cluster_fit / qat_fit: override `fit` for one stage.
      convert: the post-training conversion (see ConvertConfig); int8 by default.
      evaluate: accuracy and parity settings (see EvaluateConfig).
      benchmark: latency and memory of the original (float32) and the result,
        interleaved in one process (see BenchmarkConfig); null skips it.
      bundle: what the deployment bundle carries (see BundleConfig).
    """

    name: str = "custom"
    description: str = ""
    format_version: int = 1
    fit: training.FitConfig = training.FitConfig()
    distill: training.DistillConfig | None = None
    distill_student: str = "width:0.5"
    distill_fit: training.FitConfig | None = None
    prune: training.PruneConfig | None = None
    prune_fit: training.FitConfig | None = None
    cluster: training.ClusterConfig | None = None
    cluster_fit: training.FitConfig | None = None
    qat: training.QATConfig | None = None
    qat_fit: training.FitConfig | None = None
    convert: deployment.ConvertConfig = deployment.ConvertConfig(mode=deployment.ConvertMode.INT8)
    evaluate: deployment.EvaluateConfig = deployment.EvaluateConfig()
    benchmark: deployment.BenchmarkConfig | None = None
    bundle: deployment.BundleConfig = deployment.BundleConfig()

    def __post_init__(self) -> None:
        self._coerce_enums()
        base.check(
            self.format_version == 1,
            "This edgekit reads recipe format_version 1; update edgekit for newer files.",
            format_version=self.format_version,
        )
        if self.qat is not None:
            base.check(
                self.convert.mode in _QAT_MODES,
                "Quantization-aware training prepares the model for integer kernels, so the "
                "convert mode must be 'int8' or 'int8_float_fallback'; drop the qat section "
                "for a float16 or dynamic-range file.",
                qat=True,
                convert_mode=self.convert.mode.value,
            )
            preserve = self.qat.preserve.value
            base.check(
                preserve not in ("sparsity", "both") or self.prune is not None,
                "qat.preserve keeps the zeros of pruning, but the recipe has no prune section.",
                qat_preserve=preserve,
            )
            base.check(
                preserve not in ("clusters", "both") or self.cluster is not None,
                "qat.preserve keeps clusters, but the recipe has no cluster section.",
                qat_preserve=preserve,
            )
        if self.prune is not None and self.cluster is not None:
            base.check(
                self.cluster.preserve_sparsity,
                "Clustering after pruning would fill the zeros again; set "
                "cluster.preserve_sparsity to true.",
                cluster_preserve_sparsity=self.cluster.preserve_sparsity,
            )
