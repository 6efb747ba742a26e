"""Report objects of the training-time techniques, measured on stripped weights.

Every report is frozen, has `to_dict()` (JSON-ready) and `save(path, overwrite=False)`.

Example:
    >>> stripped, report = edgekit.optimize.prune.prune(model, PruneConfig(), (x, y))
    >>> report.save("prune_report.json")
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from edgekit import io
from edgekit.optimize import _qat_rewrite
from edgekit.optimize import fit as fit_lib
from edgekit.optimize import layers as layers_lib


@dataclasses.dataclass(frozen=True)
class LayerStats:
    """One layer's kernel, measured after stripping.

    Attributes:
      name: layer name.
      type: layer class name.
      compressed: whether the technique was applied to this layer.
      num_weights: number of kernel weights.
      zeros: how many of them are exactly zero.
      sparsity: zeros / num_weights.
      unique_values: distinct kernel values.
      max_unique_per_channel: the most distinct values in any output channel.
    """

    name: str
    type: str
    compressed: bool
    num_weights: int
    zeros: int
    sparsity: float
    unique_values: int
    max_unique_per_channel: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure_layers(model: Any, compressed: Iterable[str]) -> list[LayerStats]:
    """Measures every kernel-owning layer of `model` (nested models included)."""
    chosen = set(compressed)
    out = []
    seen: set[int] = set()
    for layer in layers_lib.iter_layers(model):
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        kernel = layers_lib.kernel_of(layer)
        if kernel is None or kernel.size == 0:
            continue
        zeros = int(np.count_nonzero(kernel == 0))
        if kernel.ndim == 4 and type(layer).__name__ == "DepthwiseConv2D":
            # (kh, kw, channels, multiplier): the channels are axes 2 and 3 together.
            per_channel = kernel.reshape(kernel.shape[0] * kernel.shape[1], -1)
        elif kernel.ndim > 1:
            per_channel = kernel.reshape(-1, kernel.shape[-1])
        else:
            per_channel = kernel[:, None]
        max_unique = max(len(np.unique(per_channel[:, c])) for c in range(per_channel.shape[1]))
        out.append(
            LayerStats(
                name=layer.name,
                type=type(layer).__name__,
                compressed=layer.name in chosen,
                num_weights=int(kernel.size),
                zeros=zeros,
                sparsity=round(zeros / kernel.size, 6),
                unique_values=int(len(np.unique(kernel))),
                max_unique_per_channel=int(max_unique),
            )
        )
    return out


def overall_sparsity(layers: Iterable[LayerStats], *, compressed_only: bool = True) -> float:
    """Zeros over weights, summed over the (compressed) layers."""
    chosen = [s for s in layers if s.compressed or not compressed_only]
    total = sum(s.num_weights for s in chosen)
    return round(sum(s.zeros for s in chosen) / total, 6) if total else 0.0


class Report:
    """Mixin: to_dict and save for the frozen report dataclasses of every technique."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            out[field.name] = _jsonable(getattr(self, field.name))
        return out

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> pathlib.Path:
        """Writes the report as JSON, atomically; a folder gets `<technique>_report.json`."""
        p = pathlib.Path(path)
        if p.is_dir():
            p = p / f"{getattr(self, 'technique', 'optimize')}_report.json"
        return io.write_json(p, self.to_dict(), overwrite=overwrite)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclasses.dataclass(frozen=True)
class PruneReport(Report):
    """What pruning did, measured on the stripped weights.

    Attributes:
      technique: "prune".
      config: the `PruneConfig` as a dict.
      schedule: the schedule actually used (kind, begin/end step, frequency).
      target_sparsity: the sparsity asked for (m/n for m-by-n).
      achieved_sparsity: zeros over weights in the pruned layers' kernels.
      model_sparsity: zeros over weights in every kernel of the model.
      layers: per-layer kernel statistics (pruned or not).
      skipped: candidate layers left alone, with the reason.
      fit: the fine-tuning report.
      tflite: dense vs sparse-encoded `.tflite` size and latency, when measured.
      bridge: None for a tf_keras model; for a Keras 3 model, the Keras 3 bridge's
        figures: {"in": ..., "back": ...} (`keras3.BridgeReport.to_dict()`: max abs
        error and cosine of outputs on the user's own training inputs).
      validation: held-out accuracy before and after, and the warning of a drop
        (`validation.Validation.to_dict()`); None when the driver was not asked to
        measure.
    """

    technique: str
    config: dict[str, Any]
    schedule: dict[str, Any]
    target_sparsity: float
    achieved_sparsity: float
    model_sparsity: float
    layers: tuple[LayerStats, ...]
    skipped: tuple[layers_lib.Skipped, ...]
    fit: fit_lib.FitReport
    tflite: dict[str, Any] | None = None
    bridge: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class ClusterReport(Report):
    """What clustering did, measured on the stripped weights.

    Attributes:
      technique: "cluster".
      config: the `ClusterConfig` as a dict.
      num_clusters: clusters asked for per tensor (per channel with per_channel).
      layers: per-layer kernel statistics, unique values included.
      skipped: candidate layers left alone, with the reason.
      fit: the fine-tuning report.
      bridge: None for a tf_keras model; for a Keras 3 model, the Keras 3 bridge's
        figures: {"in": ..., "back": ...} (`keras3.BridgeReport.to_dict()`: max abs
        error and cosine of outputs on the user's own training inputs).
      validation: held-out accuracy before and after, and the warning of a drop
        (`validation.Validation.to_dict()`); None when the driver was not asked to
        measure.
    """

    technique: str
    config: dict[str, Any]
    num_clusters: int
    layers: tuple[LayerStats, ...]
    skipped: tuple[layers_lib.Skipped, ...]
    fit: fit_lib.FitReport
    bridge: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None


# ----------------------------------------------------------------------------
# Quantization-aware training

QUANTIZED = "quantized"
FLOAT = "float"


@dataclasses.dataclass(frozen=True)
class LayerDecision:
    """What QAT did with one layer, and why.

    Attributes:
      name: layer name (after any rewrite).
      type: layer class name.
      status: "quantized" (fake-quantized in training, int8 after conversion) or
        "float" (trained in float; the int8 converter calibrates its range).
      reason: why.
    """

    name: str
    type: str
    status: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class QATReport(Report):
    """What quantization-aware training did.

    Attributes:
      technique: "qat".
      config: the `QATConfig` as a dict.
      preserve: what the scheme kept ("none", "sparsity", "clusters", "both").
      layers: every layer, quantized or float, with the reason.
      num_quantized: layers with a quantize config.
      num_float: layers left float.
      rewrites: op layers rewritten into built-in layers.
      sparsity_before: zeros over kernel weights of the input model's kernels.
      sparsity_after: zeros over the fake-quantized kernel weights after training
        (what the int8 file holds).
      weights: per-layer zeros and unique values of the fake-quantized kernels.
      fit: the fine-tuning report.
      bridge: None for a tf_keras model; for a Keras 3 model {"in": the Keras 3
        bridge's figures, "back": None}: the QAT model stays tf_keras (TF-MOT's
        fake-quant wrappers exist only there), its deliverable is the int8 .tflite.
      validation: held-out accuracy before and after, and the warning of a drop
        (`validation.Validation.to_dict()`); None when the driver was not asked to
        measure.
    """

    technique: str
    config: dict[str, Any]
    preserve: str
    layers: tuple[LayerDecision, ...]
    num_quantized: int
    num_float: int
    rewrites: tuple[_qat_rewrite.Rewrite, ...]
    sparsity_before: float
    sparsity_after: float
    weights: tuple[dict[str, Any], ...]
    fit: fit_lib.FitReport | None
    bridge: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None

    def float_layers(self) -> list[LayerDecision]:
        """The layers left float."""
        return [d for d in self.layers if d.status == FLOAT]
