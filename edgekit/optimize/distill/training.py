"""Training a student on the teacher's targets, composed with pruning and QAT.

`Distillation` is a technique (`edgekit.optimize.technique`) around another one: it
trains the inner technique's student (a plain copy, `prune.Pruning`, or
`qat.QuantizationAware`) under the distillation loss and gives it back to that
technique's `finish`. `train` runs distillation (while pruning, when asked), then
recalibrates batch norm, then distillation during QAT (when asked).

Example:
    >>> final, prune_report, qat_report, fit_report, qat_fit_report, float_student = train(
    ...     split, plan, 0.7, prune=None, qat=QATConfig(), packed=packed, val_packed=None,
    ...     fit=fit, qat_fit=qat_fit)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from edgekit import _compat
from edgekit import config as config_lib
from edgekit.optimize import fit as fit_lib
from edgekit.optimize import prune as prune_lib
from edgekit.optimize import qat as qat_lib
from edgekit.optimize import technique
from edgekit.optimize.distill import batch_norm as batch_norm_lib
from edgekit.optimize.distill import loss as loss_lib
from edgekit.optimize.distill import student as student_lib


@dataclasses.dataclass
class Plan:
    """Everything a training phase needs, checked before any training starts."""

    config: config_lib.DistillConfig
    logits_name: str
    student_source: str
    pairs: tuple[tuple[str, str], ...]
    teacher_shapes: list[tuple[int, ...]]
    num_classes: int
    has_labels: bool


def _train_model(student: Any, plan: Plan) -> Any:
    """Student input -> [logits, projected features] flattened and concatenated."""
    tf = _compat.tf()
    tf_keras = _compat.tf_keras()
    logits = student_lib.find_output(student, plan.logits_name)
    if plan.student_source == "log-probs":
        logits = tf_keras.layers.Lambda(
            lambda p: tf.math.log(tf.clip_by_value(p, 1e-7, 1.0)), name="distill_log_probs"
        )(logits)
    outs = [logits]
    for i, ((_, s_name), t_shape) in enumerate(zip(plan.pairs, plan.teacher_shapes, strict=True)):
        f = student_lib.find_output(student, s_name)
        if tuple(f.shape[1:]) != t_shape:
            kind = tf_keras.layers.Conv2D if len(t_shape) == 3 else tf_keras.layers.Dense
            args = (t_shape[-1], 1) if len(t_shape) == 3 else (t_shape[-1],)
            f = kind(*args, name=f"distill_projection_{i}")(f)
        outs.append(tf_keras.layers.Flatten(name=f"distill_flatten_{i}")(f))
    packed = tf_keras.layers.Concatenate(name="distill_packed")(outs) if len(outs) > 1 else outs[0]
    return tf_keras.Model(student.inputs, packed, name="distiller")


def _cosine_callback(base: float, total_steps: int) -> Any:
    tf_keras = _compat.tf_keras()

    class CosineDecay(tf_keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            frac = min(self.step, total_steps) / max(1, total_steps)
            self.model.optimizer.learning_rate.assign(0.5 * base * (1 + math.cos(math.pi * frac)))
            self.step += 1

    return CosineDecay()


class Distillation:
    """Distillation as a technique (`edgekit.optimize.technique`) around another one.

    `build()` builds the inner technique's student (a plain copy, a pruning-wrapped
    or a QAT copy) and puts it under the distiller's outputs (logits and projected
    features, packed); `callbacks()` adds the cosine learning-rate decay to the inner
    ones; `finish()` hands the trained student to the inner technique's `finish`.
    `loss()` and `metrics()` are what the driver compiles with; `fit_report` is the
    fine-tuning report once `finish` ran (the inner report is what `finish` returns).
    """

    def __init__(
        self,
        inner: technique.Technique,
        plan: Plan,
        *,
        alpha: float,
        fit: config_lib.FitConfig,
        num_samples: int,
    ) -> None:
        self.inner = inner
        self.plan = plan
        self.alpha = alpha
        self.learning_rate = fit.learning_rate
        self.total_steps = fit_lib.plan_steps(num_samples, fit)[1]
        self.student: Any = None
        self.fit_report: fit_lib.FitReport | None = None

    def build(self) -> Any:
        self.student = self.inner.build()
        return _train_model(self.student, self.plan)

    def callbacks(self) -> list[Any]:
        out = list(self.inner.callbacks())
        if self.plan.config.decay_learning_rate:
            out.append(_cosine_callback(self.learning_rate, self.total_steps))
        return out

    def finish(self, trained: Any, fit_report: fit_lib.FitReport | None) -> tuple[Any, Any]:
        del trained  # the distiller; the student inside it is what the inner technique takes
        self.fit_report = fit_report
        return self.inner.finish(self.student, fit_report)

    def loss(self) -> Any:
        plan, cfg = self.plan, self.plan.config
        has_feats = bool(plan.pairs)
        return loss_lib.make_loss(
            plan.num_classes,
            [math.prod(s) for s in plan.teacher_shapes] if has_feats else [],
            temperature=cfg.temperature,
            w_soft=self.alpha if plan.has_labels else 1.0,
            w_hard=(1.0 - self.alpha) if plan.has_labels else 0.0,
            w_feat=cfg.feature_weight if has_feats else 0.0,
        )

    def metrics(self) -> list[Any]:
        return loss_lib.make_metrics(self.plan.num_classes, self.plan.has_labels)


def _phase(
    inner: technique.Technique,
    plan: Plan,
    packed: tuple[np.ndarray, np.ndarray],
    val_packed: Any,
    *,
    alpha: float,
    fit: config_lib.FitConfig,
) -> tuple[Any, Any, fit_lib.FitReport | None]:
    """Trains `inner`'s student on packed targets; returns (model, inner report, fit report)."""
    distillation = Distillation(inner, plan, alpha=alpha, fit=fit, num_samples=len(packed[0]))
    model, report = technique.run(
        distillation,
        packed,
        fit=fit,
        val_data=val_packed,
        loss=distillation.loss(),
        metrics=distillation.metrics(),
    )
    return model, report, distillation.fit_report


def train(
    split: Any,
    plan: Plan,
    alpha: float,
    *,
    prune: config_lib.PruneConfig | None,
    qat: config_lib.QATConfig | None,
    packed: tuple[np.ndarray, np.ndarray],
    val_packed: Any,
    fit: config_lib.FitConfig,
    qat_fit: config_lib.FitConfig,
) -> tuple[Any, Any, Any, fit_lib.FitReport, fit_lib.FitReport | None, Any]:
    """Distills (while pruning, when asked), then distills during QAT (when asked).

    Batch-norm statistics are recalibrated on the inputs the student trained on,
    mixed ones included: its weights adapted to those batch statistics (measured:
    calibrating on the given inputs alone cost 1-2 points with mixed_inputs=5).
    """
    student: technique.Technique = technique.Plain(split)
    if prune is not None:
        total_steps = fit_lib.plan_steps(len(packed[0]), fit)[1]
        student = prune_lib.Pruning(split, prune, total_steps=total_steps)
    # Until recalibration, the moving batch-norm statistics of a student trained from
    # scratch are mostly their initial guess: per-epoch validation would show chance.
    float_val = None if plan.config.recalibrate_batch_norm else val_packed
    trained, prune_report, fit_report = _phase(
        student, plan, packed, float_val, alpha=alpha, fit=fit
    )
    if plan.config.recalibrate_batch_norm:
        batch_norm_lib.recalibrate_batch_norm(trained, packed[0])
    if qat is None:
        return trained, prune_report, None, fit_report, None, trained
    quantization = qat_lib.QuantizationAware(trained, qat, packed[0], strategy=qat_fit.strategy)
    final, qat_report, qat_fit_report = _phase(
        quantization, plan, packed, val_packed, alpha=alpha, fit=qat_fit
    )
    return final, prune_report, qat_report, fit_report, qat_fit_report, trained
