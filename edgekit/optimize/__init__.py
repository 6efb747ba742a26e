"""Training-time compression around TF-MOT: one module per technique.

    stripped, report = edgekit.optimize.prune.prune(model, PruneConfig(...), (x, y))
    clustered, report = edgekit.optimize.cluster.cluster(model, ClusterConfig(...), (x, y))
    qat_model, report = edgekit.optimize.qat.quantize_aware(model, QATConfig(), (x, y))
    student, report = edgekit.optimize.distill.distill(teacher, student, DistillConfig(), (x, y))

Each takes a tf_keras model, fine-tunes a copy (the caller's model is never changed)
and returns a model ready for `edgekit.convert` with a report. The modules load
lazily, so importing this package imports neither TensorFlow nor TF-MOT.

How the techniques compose: each one is also a class with the same three steps
(`technique.Technique`: `build`, `callbacks`, `finish`) — `prune.Pruning`,
`cluster.Clustering`, `qat.QuantizationAware`, `distill.training.Distillation` —
and `technique.run` fine-tunes any of them. The modules they share:

    technique.py   the hook and its driver; the set-up prune and cluster share
    fit.py         the fine-tune loop and its data checks
    layers.py      model checks, cloning, layer selection, kernel weights
    losses.py      the loss and optimizer chosen from labels and model
    strategy.py    tf.distribute strategies (default, mirrored, multi-worker)
    reports.py     the techniques' report objects, measured on stripped weights
    distill/       student, teacher targets and cache, loss, inputs, batch norm,
                   training, and the entry point
    _qat_rewrite.py, _qat_configs.py   QAT's graph rewrites and quantize configs
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["cluster", "distill", "prune", "qat", "quantize_aware", "technique"]


def __getattr__(name: str) -> Any:
    # `prune`, `cluster` and `distill` are also the submodules' names; importing the
    # submodule replaces the attribute, so the functions live under the modules and
    # only `quantize_aware` is offered here as a function.
    if name == "quantize_aware":
        return importlib.import_module("edgekit.optimize.qat").quantize_aware
    if name in ("prune", "cluster", "distill", "qat", "technique"):
        return importlib.import_module(f"edgekit.optimize.{name}")
    raise AttributeError(f"module 'edgekit.optimize' has no attribute {name!r}")
