"""String enums and frozen, validated dataclasses for every stage.

Every config round-trips through JSON: `Config.from_dict(c.to_dict()) == c`.
`from_dict` rejects unknown fields (naming the known ones), so a typo in a recipe
never silently falls back to a default; fields added later get defaults, so older
files keep loading.

The package, lowest first: `base` (the round-trip machinery and the field checks),
`training` (fine-tuning, prune, cluster, QAT, distill), `deployment` (convert,
evaluate, benchmark, bundle) and `recipe` (one section per stage). It imports
nothing of edgekit but `errors`.

Example:
    >>> cfg = ConvertConfig(mode="int8", io_type="uint8")
    >>> cfg.to_dict()["mode"]
    'int8'
"""

from edgekit.config.deployment import (
    BLOCK_SIZES,
    SCHEMES,
    Backend,
    BenchmarkConfig,
    BundleConfig,
    ConvertConfig,
    ConvertMode,
    EvaluateConfig,
    IOType,
    parse_target,
)
from edgekit.config.recipe import Recipe
from edgekit.config.training import (
    ClusterConfig,
    ClusterInit,
    DistillConfig,
    FitConfig,
    PruneConfig,
    PruneSchedule,
    QATConfig,
    QATPreserve,
    Strategy,
)

__all__ = [
    "BLOCK_SIZES",
    "SCHEMES",
    "Backend",
    "BenchmarkConfig",
    "BundleConfig",
    "ClusterConfig",
    "ClusterInit",
    "ConvertConfig",
    "ConvertMode",
    "DistillConfig",
    "EvaluateConfig",
    "FitConfig",
    "IOType",
    "PruneConfig",
    "PruneSchedule",
    "QATConfig",
    "QATPreserve",
    "Recipe",
    "Strategy",
    "parse_target",
]
