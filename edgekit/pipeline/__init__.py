"""Runs a recipe: load -> optimize -> convert -> evaluate -> benchmark -> bundle -> report.

One output folder holds everything: `model.tflite`, `manifest.json`, `report.md`,
`report.html` (+ `plots/`), `optimized.keras` (the Keras model that was
converted), and `.edgekit/` with one checkpoint per finished stage. Re-running the
same command on the same folder resumes after the last finished stage; a folder
made by a different run (other recipe, model or data) is refused, never mixed.

Inside: `state` (the folder and its checkpoint record), `stages` (the stages as one
table), `summary` (the figures every output is made from), `runner` (`run()`).

Example:
    >>> result = edgekit.pipeline.run("prune50_int8", model="model.keras",
    ...                               data="train.npz", eval_data="test.npz",
    ...                               output_dir="out")
    >>> result.summary["result"]["accuracy"]
"""

from __future__ import annotations

from edgekit.pipeline.runner import PipelineResult, run
from edgekit.pipeline.stages import TABLE as _TABLE
from edgekit.pipeline.stages import TECHNIQUES as _TECHNIQUES
from edgekit.pipeline.state import OUTPUTS, STATE_DIR

# Every stage in the order it runs, and the training-time ones among them.
STAGES = tuple(s.name for s in _TABLE)
TRAINING_STAGES = tuple(t.name for t in _TECHNIQUES)

__all__ = ["OUTPUTS", "STAGES", "STATE_DIR", "TRAINING_STAGES", "PipelineResult", "run"]
