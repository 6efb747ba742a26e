"""`edgekit.tune`: search recipes for the best `.tflite` for a target, measuring every candidate.

    >>> result = edgekit.tune("model.keras", data="train.npz", eval_data="test.npz",
    ...                       output_dir="search", max_accuracy_drop=1.0)

The package, from the top down:
    search    `tune()`: validation, the study, the loop over trials, the outputs
    outputs   trials.jsonl, pareto.json, best_recipe.json, best.tflite, summary.json,
              report.html, rebuilt from the study's storage
    worker    one worker: run, skip or stop before each trial; wait for the others
    trial     one candidate built (convert or the pipeline) and measured
    front     constraints, the Pareto front with a latency noise band, the choice
    space     the candidates, each a recipe, cheapest first
    study     the Optuna storage (SQLite by default, PostgreSQL for many workers)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "tune": ("edgekit.tuning.search", "tune"),
    "TuneResult": ("edgekit.tuning.search", "TuneResult"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'edgekit.tuning' has no attribute {name!r}")
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
