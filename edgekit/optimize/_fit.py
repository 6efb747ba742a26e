"""Old path of the fine-tune helpers, split by idea into `fit` (the loop and its data
checks), `layers` (model checks, cloning, layer selection), `losses` and `strategy`.

Kept so scripts that followed older messages (`edgekit.optimize._fit.get_strategy`)
still run; new code imports the modules above.
"""

from __future__ import annotations

from edgekit.optimize.fit import (
    FitReport,
    as_arrays,
    check_data_fits,
    check_log_dir,
    fine_tune,
    plan_steps,
)
from edgekit.optimize.layers import (
    Skipped,
    check_functional,
    clone,
    has_kernel,
    iter_layers,
    select_layers,
    unshare,
    weights_snapshot,
    wrap_layers,
)
from edgekit.optimize.losses import choose_loss
from edgekit.optimize.strategy import get_strategy, make_strategy

__all__ = [
    "FitReport",
    "Skipped",
    "as_arrays",
    "check_data_fits",
    "check_functional",
    "check_log_dir",
    "choose_loss",
    "clone",
    "fine_tune",
    "get_strategy",
    "has_kernel",
    "iter_layers",
    "make_strategy",
    "plan_steps",
    "select_layers",
    "unshare",
    "weights_snapshot",
    "wrap_layers",
]
