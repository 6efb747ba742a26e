"""Knowledge distillation: train a small student on a frozen teacher's soft predictions.

`distill` computes the teacher's logits (and chosen intermediate features) once per
dataset, in inference mode, and trains a copy of the student on them with a loss
that mixes Hinton's soft targets (KL divergence of the temperature-softened
distributions, scaled by T^2) with the hard-label loss, plus an optional feature
term through a learned projection. The teacher never trains: its outputs are
precomputed, so it is frozen by construction and costs one forward pass.

What edgekit adds around a plain distillation loop:
- logits, not probabilities: when a model ends in softmax (a Softmax layer or a
  Dense/Conv with softmax activation) the pre-softmax tensor is used (the student's
  final layer is split into a linear layer `<name>_logits` and a Softmax layer
  `<name>`, same weights); other outputs fall back to log-probabilities;
- composition: the student can be pruning-wrapped (distillation while pruning) and
  then QAT-wrapped (distillation during QAT) in one call, so distill + prune + QAT
  ends in a model ready for int8 conversion;
- the teacher's outputs are cached per (data, teacher weights) in memory or on
  disk; a cache file is used only if the data and teacher it records match;
- `--student=width:0.5`: `thinner_copy` scales every conv/dense width of a
  Functional teacher, keeping the output width.

Example:
    >>> student, report = distill(teacher, "width:0.5", DistillConfig(temperature=4),
    ...                           (x, y), fit=FitConfig(epochs=30, learning_rate=2e-3))
    >>> report.distilled_accuracy

The package, one idea per module: `student` (resolve_student, width:F students,
the logits split), `teacher` (teacher targets and their cache), `loss` (the loss
and metrics), `inputs` (reading, checking, mixing and packing inputs),
`batch_norm` (recalibration), `training` (the `Distillation` technique and its
composition with pruning and QAT) and `run` (`distill` and `DistillReport`).
"""

from __future__ import annotations

from edgekit.optimize.distill.batch_norm import recalibrate_batch_norm
from edgekit.optimize.distill.inputs import mix_inputs
from edgekit.optimize.distill.run import DistillReport, distill
from edgekit.optimize.distill.student import resolve_student, thinner_copy
from edgekit.optimize.distill.teacher import fingerprint_model, teacher_targets

__all__ = [
    "DistillReport",
    "distill",
    "fingerprint_model",
    "mix_inputs",
    "recalibrate_batch_norm",
    "resolve_student",
    "teacher_targets",
    "thinner_copy",
]
