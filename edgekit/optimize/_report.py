"""Old path of the technique reports; they live in `edgekit.optimize.reports` now."""

from __future__ import annotations

from edgekit.optimize.layers import kernel_of
from edgekit.optimize.reports import (
    ClusterReport,
    LayerStats,
    PruneReport,
    Report,
    measure_layers,
    overall_sparsity,
)

__all__ = [
    "ClusterReport",
    "LayerStats",
    "PruneReport",
    "Report",
    "kernel_of",
    "measure_layers",
    "overall_sparsity",
]
