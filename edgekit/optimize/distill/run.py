"""The entry point `distill()` and its report.

Example:
    >>> student, report = distill(teacher, "width:0.5", DistillConfig(), (x, y),
    ...                           fit=FitConfig(epochs=20, learning_rate=2e-3))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgekit import config as config_lib
from edgekit import errors
from edgekit.optimize import fit as fit_lib
from edgekit.optimize import keras3, reports, technique, validation
from edgekit.optimize import layers as layers_lib
from edgekit.optimize import strategy as strategy_lib
from edgekit.optimize.distill import inputs as inputs_lib
from edgekit.optimize.distill import student as student_lib
from edgekit.optimize.distill import teacher as teacher_lib
from edgekit.optimize.distill import training as training_lib


@dataclasses.dataclass(frozen=True)
class DistillReport(reports.Report):
    """What distillation did, and the accuracies it measured.

    Attributes:
      technique: "distill".
      config: the `DistillConfig` as a dict.
      teacher_params / student_params: parameter counts; param_ratio = student / teacher.
      teacher_logits / student_logits: how logits were read ("pre-softmax", "logits"
        or "log-probs").
      num_samples / num_labelled: training samples (mixed inputs included), and how
        many had labels (0: the soft-target term alone was used).
      teacher_cache: "computed", "memory", "disk", "off", or "stale-recomputed" (a
        cache file did not match its data or teacher and was not used).
      accuracy_on: "val_data", "data", or None (no labels to measure on).
      teacher_accuracy, distilled_accuracy: top-1 accuracy of the teacher and the
        distilled student (the Keras model returned).
      student_from_labels_accuracy: the same student trained on labels alone with
        the same budget (when `baseline=True`), else None.
      float_accuracy: with QAT, the distilled float student's accuracy before QAT.
      prune / qat: the pruning and QAT reports of the composed steps, or None.
      fit: the report of the distillation run; qat_fit of the QAT run.
      bridge: None when teacher and student are tf_keras; else the Keras 3 bridge's
        figures: {"teacher": {"in": ..., "back": None}, "student": {"in": ...,
        "back": ...} or None (a width:F student with QAT stays tf_keras)}.
      validation: the teacher's accuracy (before) and the returned student's (after)
        on held-out data: val_data, or a split of `data` kept out of training (see
        `FitConfig.val_split`); without labels, the student's top-1 agreement with
        the teacher. See `validation.Validation`.
    """

    technique: str
    config: dict[str, Any]
    teacher_params: int
    student_params: int
    param_ratio: float
    teacher_logits: str
    student_logits: str
    num_samples: int
    num_labelled: int
    teacher_cache: str
    accuracy_on: str | None
    teacher_accuracy: float | None
    distilled_accuracy: float | None
    student_from_labels_accuracy: float | None
    float_accuracy: float | None
    prune: Any
    qat: Any
    fit: fit_lib.FitReport
    qat_fit: fit_lib.FitReport | None = None
    bridge: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None


# A student below this share of the teacher's parameters is named as a cause of a
# drop; fewer epochs than SCRATCH_EPOCHS too (a student learns from scratch).
SMALL_STUDENT = 0.5
SCRATCH_EPOCHS = 20


def diagnose(
    fit: config_lib.FitConfig, *, param_ratio: float, prune: config_lib.PruneConfig | None
) -> list[validation.Cause]:
    """What in a distillation run explains the student's drop below the teacher."""
    out = []
    if param_ratio < SMALL_STUDENT:
        out.append(
            validation.Cause(
                f"the student has {100 * param_ratio:.0f}% of the teacher's parameters",
                "a wider student (--student=width:0.75)",
            )
        )
    if fit.steps_per_epoch is None and fit.epochs < SCRATCH_EPOCHS:
        out.append(
            validation.Cause(
                f"{fit.epochs} epoch(s) are few for a student to learn the teacher",
                f"--epochs={max(SCRATCH_EPOCHS, 2 * fit.epochs)}",
            )
        )
    if prune is not None and prune.target_sparsity > 0.75:
        out.append(
            validation.Cause(
                f"pruning the student to {100 * prune.target_sparsity:.0f}% sparsity as well",
                "a lower --prune target (e.g. 0.5)",
            )
        )
    return out


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    # Eager batches: predict() would trace a new graph for every model measured.
    probs = np.concatenate(
        [np.asarray(model(x[i : i + 256], training=False)) for i in range(0, len(x), 256)]
    )
    return round(float(np.mean(np.argmax(probs, -1) == y)), 6)


def distill(
    teacher: Any,
    student: Any,
    config: config_lib.DistillConfig | None = None,
    data: Any = None,
    *,
    fit: config_lib.FitConfig = config_lib.FitConfig(),
    val_data: Any = None,
    prune: config_lib.PruneConfig | None = None,
    qat: config_lib.QATConfig | None = None,
    qat_fit: config_lib.FitConfig | None = None,
    baseline: bool = False,
) -> tuple[Any, DistillReport]:
    """Trains a copy of `student` on the frozen `teacher`'s soft targets.

    Args:
      teacher: a tf_keras model (or path); never trained or changed.
      student: a Functional/Sequential tf_keras model (or path), or "width:F" for a
        thinner untrained copy of the teacher (`thinner_copy`); never changed.
      config: temperature, alpha, feature layers, cache; None for the defaults.
      data: training inputs: (x, y) arrays, x alone or (x, None) (unlabelled: the
        soft-target term alone), an `edgekit.data.Dataset` or a path. A label of -1
        marks one unlabelled sample among labelled ones.
      fit: epochs, batch size, learning rate, strategy, seed. A student trained from
        scratch needs a larger learning rate than the 1e-4 fine-tuning default.
      val_data: labelled data the accuracies are measured on (else `data`'s labels),
        and the held-out data of `validation` (else a split of `data`, see
        `FitConfig.val_split`, kept out of training).
      prune: also prune the student while it learns (TF-MOT wrappers, stripped after).
      qat: then run quantization-aware training, still on the teacher's targets; the
        result converts to int8 (`preserve` becomes "sparsity" after pruning).
      qat_fit: the QAT run's budget; None uses `fit` with a quarter of its epochs and
        a twentieth of its learning rate (QAT fine-tunes the distilled float student;
        on the example, 1/10 lost 0.56 points in int8, 1/20 and 1/40 gained).
      baseline: also train the same student on the labels alone, same budget and
        steps, and report its accuracy as `student_from_labels_accuracy`.

    Returns:
      (the distilled student: plain tf_keras model, or a QAT model with `qat`,
      a `DistillReport`).

    Raises:
      UserInputError: different output shapes, bad temperature/alpha (in
        `DistillConfig`), unknown or mismatched feature layers, data that does not
        fit, `baseline` or `val_data` without labels.
      validation.AccuracyDropError: `fit.fail_on_accuracy_drop` and a drop past
        `fit.max_accuracy_drop` (it holds the model and the report).

    Example:
        >>> student, report = distill(teacher, "width:0.5", DistillConfig(), (x, y),
        ...                           fit=FitConfig(epochs=20, learning_rate=2e-3))
    """
    config = config or config_lib.DistillConfig()
    if not isinstance(config, config_lib.DistillConfig):
        raise errors.UserInputError(
            "config must be an edgekit.config.DistillConfig. "
            + errors.received(config=type(config).__name__)
        )
    if data is None:
        raise errors.UserInputError(
            f"{inputs_lib.WHAT} needs training inputs: (x, y), x alone, a Dataset or a path. "
            + errors.received(data=None)
        )
    strategy_lib.get_strategy(fit.strategy)  # before any TensorFlow op (multi_worker needs it)
    what = inputs_lib.WHAT
    teacher = technique.check_model(teacher, what=what)
    built = isinstance(student, str) and student.startswith("width:")
    if not built:
        student = technique.check_model(student, what=what)
    x, y = inputs_lib.read_inputs(data, what="data")
    # Keras 3 teacher or student: each goes through the checked bridge, on the first
    # samples of the user's data (the teacher's targets come from its tf_keras twin,
    # the same function to 1e-5; `teacher_targets` needs a tf_keras graph to read
    # features and logits from).
    fit_lib.check_data_fits(teacher, x)
    teacher_bridge = technique.bridge_model(teacher, x, what=what)
    teacher = teacher_bridge.model
    student_bridge = None
    if built:
        student = student_lib.resolve_student(student, teacher, seed=fit.seed or 0)
        if teacher_bridge.keras3 and qat is None:
            # The user's Keras back: a Keras 3 twin of the untrained student, made now
            # so that a student the bridge cannot carry back is refused before training.
            twin, _ = keras3.to_keras3(student, sample=x[: technique.BRIDGE_SAMPLES])
            student_bridge = keras3.bridge_in(twin, sample=x[: technique.BRIDGE_SAMPLES])
            student = student_bridge.model
    else:
        fit_lib.check_data_fits(student, x)
        student_bridge = technique.bridge_model(student, x, what=what)
        student = student_bridge.model
    layers_lib.check_functional(student, what=what)
    inputs_lib.check_models(teacher, student, config)
    num_classes = int(teacher.output_shape[-1])
    fit_lib.check_data_fits(student, x)
    y = None if y is None else inputs_lib.class_ids(y, num_classes, what="data")
    if y is not None and not np.any(y >= 0):
        y = None
    val = None
    if val_data is not None:
        vx, vy = inputs_lib.read_inputs(val_data, what="val_data")
        if vy is None:
            raise errors.UserInputError(
                "val_data measures accuracy and needs labels. "
                + errors.received(val_data=type(val_data).__name__)
            )
        fit_lib.check_data_fits(student, vx, what="val_data")
        val = (vx, inputs_lib.class_ids(vy, num_classes, what="val_data"))
    (x, y), holdout = validation.hold_out(
        teacher, x, y, None, fit=fit, what="distillation", labelled_val=val, class_ids=True
    )
    if baseline and y is None:
        raise errors.UserInputError(
            "baseline trains the student on labels alone, and the data has none. Pass "
            "labelled data or leave baseline off. " + errors.received(baseline=True)
        )
    if qat is not None and prune is not None and qat.preserve is config_lib.QATPreserve.NONE:
        qat = dataclasses.replace(qat, preserve=config_lib.QATPreserve.SPARSITY)
    qat_fit = qat_fit or dataclasses.replace(
        fit, epochs=max(1, fit.epochs // 4), learning_rate=fit.learning_rate / 20
    )

    # Every run takes its steps from the data it was given (before mixing), so the
    # labels-only baseline and the distilled student get the same budget.
    steps = fit_lib.plan_steps(len(x), fit)[0]
    asked = fit  # what the user set, for the causes of a drop
    fit = dataclasses.replace(fit, steps_per_epoch=steps)
    qat_fit = dataclasses.replace(qat_fit, steps_per_epoch=fit_lib.plan_steps(len(x), qat_fit)[0])
    x_all, y_all = x, y
    if config.mixed_inputs:
        x_all = np.concatenate(
            [x, inputs_lib.mix_inputs(x, config.mixed_inputs, seed=fit.seed or 0)]
        )
        if y is not None:
            y_all = np.concatenate([y, np.full(len(x_all) - len(x), -1, np.float32)])

    split, logits_name, student_source = student_lib.split_softmax(student)
    t_names = [t for t, _ in config.feature_layers]
    outs, teacher_source, cache = teacher_lib.teacher_targets(
        teacher,
        x_all,
        feature_names=t_names,
        use_cache=config.cache_teacher,
        cache_dir=config.cache_dir,
    )
    packed = (x_all, inputs_lib.pack_targets(y_all, outs))
    val_packed = None
    if val is not None:
        v_outs, _, _ = teacher_lib.teacher_targets(
            teacher,
            val[0],
            feature_names=t_names,
            use_cache=config.cache_teacher,
            cache_dir=config.cache_dir,
        )
        val_packed = (val[0], inputs_lib.pack_targets(val[1], v_outs))
    plan = training_lib.Plan(
        config=config,
        logits_name=logits_name,
        student_source=student_source,
        pairs=config.feature_layers,
        teacher_shapes=[tuple(o.shape[1:]) for o in outs[1:]],
        num_classes=num_classes,
        has_labels=y is not None,
    )
    kw = {"packed": packed, "val_packed": val_packed, "fit": fit, "qat_fit": qat_fit}
    distilled, prune_report, qat_report, fit_report, qat_fit_report, float_student = (
        training_lib.train(split, plan, config.alpha, prune=prune, qat=qat, **kw)
    )
    if val is not None:
        acc_x, acc_y, acc_on = val[0], val[1], "val_data"
    else:
        mask = np.ones(len(x), bool) if y is None else y >= 0
        acc_x, acc_y, acc_on = x[mask], None if y is None else y[mask], "data"
    labels_acc = None
    if baseline:
        # The labelled samples alone (no mixed or unlabelled ones), same steps.
        labelled = packed[1][:, 0] >= 0
        base_plan = dataclasses.replace(plan, pairs=(), teacher_shapes=[])
        base_kw = {**kw, "packed": (packed[0][labelled], packed[1][labelled])}
        labels_only = training_lib.train(split, base_plan, 0.0, prune=prune, qat=qat, **base_kw)[0]
        labels_acc = _accuracy(labels_only, acc_x, acc_y)
    has_acc = acc_y is not None
    report = DistillReport(
        technique="distill",
        config=config.to_dict(),
        teacher_params=int(teacher.count_params()),
        student_params=int(student.count_params()),
        param_ratio=round(student.count_params() / teacher.count_params(), 4),
        teacher_logits=teacher_source,
        student_logits=student_source,
        num_samples=len(x_all),
        num_labelled=0 if y is None else int(np.sum(y >= 0)),
        teacher_cache=cache,
        accuracy_on=acc_on if has_acc else None,
        teacher_accuracy=_accuracy(teacher, acc_x, acc_y) if has_acc else None,
        distilled_accuracy=_accuracy(distilled, acc_x, acc_y) if has_acc else None,
        student_from_labels_accuracy=labels_acc,
        float_accuracy=_accuracy(float_student, acc_x, acc_y) if has_acc and qat else None,
        prune=prune_report,
        qat=qat_report,
        fit=fit_report,
        qat_fit=qat_fit_report,
    )
    check = validation.judge(
        holdout,
        validation.score(holdout, distilled),
        fit=fit,
        causes=lambda: diagnose(asked, param_ratio=report.param_ratio, prune=prune),
    )
    report = validation.attach(report, check)
    back = None
    if student_bridge is not None and student_bridge.keras3 and qat is None:
        distilled, back = student_bridge.back(
            unsplit(distilled, student), sample=x[: technique.BRIDGE_SAMPLES]
        )
    return validation.enforce(
        fit,
        distilled,
        dataclasses.replace(report, bridge=_bridge_figures(teacher_bridge, student_bridge, back)),
    )


def unsplit(trained: Any, student: Any) -> Any:
    """A copy of `student` (as given) holding the weights of its trained split copy.

    `student.split_softmax` trains a softmax head as a linear `<name>_logits` layer
    and a `Softmax` named `<name>`; the way back to Keras 3 needs the student's own
    layers, so the head takes the `_logits` layer's weights.
    """
    by_name = {layer.name: layer for layer in layers_lib.iter_layers(trained)}
    copy = layers_lib.clone(student)
    for layer in layers_lib.iter_layers(copy):
        if not layer.weights:
            continue
        source = by_name.get(layer.name)
        if source is None or not source.weights:
            source = by_name[f"{layer.name}_logits"]
        layer.set_weights(source.get_weights())
    return copy


def _bridge_figures(
    teacher: keras3.Bridged, student: keras3.Bridged | None, back: keras3.BridgeReport | None
) -> dict[str, Any] | None:
    if not teacher.keras3 and not (student is not None and student.keras3):
        return None
    return {
        "teacher": technique.bridge_figures(teacher),
        "student": None if student is None else technique.bridge_figures(student, back),
    }
