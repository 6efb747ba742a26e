r"""edgekit-distill: train a small student on a frozen teacher's soft predictions.

    edgekit-distill --teacher=teacher.keras --student=width:0.5 --data=train.npz \
        --val_data=test.npz --temperature=4 --alpha=0.9 --epochs=30 \
        --output=student.keras [--json=report.json] [--baseline] \
        [--prune_sparsity=0.5] [--qat]

`--student` is a model file or width:F (a thinner untrained copy of the teacher:
every conv/dense width times F, output width kept). `--data` may be unlabelled
(the soft-target term alone trains the student). With `--qat` the output is a QAT
model: convert it with `edgekit-convert --mode=int8`. Teacher and student may be
Keras 3 (checked Keras 3 bridge); a Keras 3 student, or a width:F student of a
Keras 3 teacher, is saved as Keras 3 (without --qat; the QAT model is tf_keras).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from absl import flags

from edgekit import errors
from edgekit.cli import _common
from edgekit.cli import _train_flags as train

# A student built with width:F starts untrained and needs more than the 1e-4
# fine-tuning rate the shared --learning_rate defaults to.
_SCRATCH_LEARNING_RATE = 2e-3

_TEACHER = flags.DEFINE_string(
    "teacher", None, "The trained teacher model (.keras, .h5, SavedModel)."
)
_STUDENT = flags.DEFINE_string(
    "student", "width:0.5", "Student model file, or width:F for a thinner copy of the teacher."
)
_TEMPERATURE = flags.DEFINE_float("temperature", 4.0, "Softmax temperature T (> 0).")
_ALPHA = flags.DEFINE_float(
    "alpha", 0.9, "Weight of the soft targets in [0, 1]; 1 - alpha weighs the hard labels."
)
_FEATURES = flags.DEFINE_list(
    "feature_layers", [], "Intermediate layers to match: teacher_layer:student_layer (or one name)."
)
_FEATURE_WEIGHT = flags.DEFINE_float("feature_weight", 1.0, "Weight of the feature term (>= 0).")
_MIXED = flags.DEFINE_integer(
    "mixed_inputs",
    0,
    "Mixed inputs per training input (convex pairs, labelled by the teacher alone); helps "
    "with a few hundred samples. The number of steps stays that of --data.",
    lower_bound=0,
)
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None, "Keep the teacher's outputs here (reused when data and teacher match)."
)
_PRUNE = flags.DEFINE_float(
    "prune_sparsity", None, "Also prune the student to this sparsity in [0, 1) while it learns."
)
_QAT = flags.DEFINE_bool(
    "qat",
    False,
    "Then quantization-aware training at a twentieth of the learning rate, still distilling.",
)
_QAT_EPOCHS = flags.DEFINE_integer(
    "qat_epochs", None, "Epochs of the QAT run (default: a quarter of --epochs).", lower_bound=1
)
_BASELINE = flags.DEFINE_bool(
    "baseline", False, "Also train the same student on labels alone (same budget) to compare."
)


def main(argv: Sequence[str]) -> None:
    del argv
    import dataclasses

    from edgekit import data as data_lib
    from edgekit import io
    from edgekit.config import DistillConfig, PruneConfig, QATConfig
    from edgekit.optimize import distill, keras3

    if flags.FLAGS["model"].present:
        raise errors.UserInputError(
            "edgekit-distill takes --teacher (and --student), not --model. "
            + errors.received(model=flags.FLAGS["model"].value)
        )
    _common.require("teacher", "data", "output")
    teacher_path = _TEACHER.value
    config = DistillConfig(
        temperature=_TEMPERATURE.value,
        alpha=_ALPHA.value,
        feature_layers=tuple(_FEATURES.value),
        feature_weight=_FEATURE_WEIGHT.value,
        cache_dir=_CACHE_DIR.value,
        mixed_inputs=_MIXED.value,
    )
    fit = train.fit_config()
    if not flags.FLAGS["learning_rate"].present:
        fit = dataclasses.replace(fit, learning_rate=_SCRATCH_LEARNING_RATE)
    prune = PruneConfig(target_sparsity=_PRUNE.value) if _PRUNE.value is not None else None
    qat = QATConfig() if _QAT.value else None
    qat_fit = None
    if _QAT_EPOCHS.value:
        qat_fit = dataclasses.replace(
            fit, epochs=_QAT_EPOCHS.value, learning_rate=fit.learning_rate / 20
        )
    if qat is not None and pathlib.Path(train.output_path()).suffix != ".keras":
        raise errors.UserInputError(
            "With --qat the student is a QAT model, saved as .keras only. Use "
            "--output=NAME.keras. " + errors.received(output=train.output_path())
        )
    train.check_outputs()
    train.start_strategy(fit)
    data_path = train.data_path()
    if not pathlib.Path(data_path).exists():
        raise errors.UserInputError(
            f"No data at {data_path!r}: the path does not exist. " + errors.received(data=data_path)
        )
    data = data_lib.load(data_path)
    val_path = train.val_data_path()
    val = train.load_data(val_path, what="val_data") if val_path else None
    safe = not train.allow_unsafe()
    teacher = io.load_model(teacher_path, safe_mode=safe)
    student = _STUDENT.value
    if not student.startswith("width:"):
        student = io.load_model(student, safe_mode=safe)
    model, report = distill.distill(
        teacher,
        student,
        config,
        data,
        fit=fit,
        val_data=val,
        prune=prune,
        qat=qat,
        qat_fit=qat_fit,
        baseline=_BASELINE.value,
    )
    wrote = train.write_outputs(model, report)
    if report.bridge:
        print(keras3.describe(report.bridge))
    where = f"on {report.accuracy_on}" if report.accuracy_on else "(no labels to measure on)"
    rows = [
        ["teacher", report.teacher_params, report.teacher_accuracy],
        ["student, labels only", report.student_params, report.student_from_labels_accuracy],
        ["student, distilled", report.student_params, report.distilled_accuracy],
    ]
    _common.print_table(rows, ["model", "params", f"accuracy {where}"])
    print(
        f"student/teacher params {report.param_ratio:.3f}; {report.num_samples} samples "
        f"({report.num_labelled} labelled); teacher logits {report.teacher_logits}, cache "
        f"{report.teacher_cache}; {report.fit.total_steps} steps in {report.fit.seconds:.1f} s."
    )
    if report.prune is not None:
        print(f"pruned: {100 * report.prune.achieved_sparsity:.1f}% of the pruned weights zero.")
    if report.qat is not None:
        print(
            f"QAT: {report.qat.num_quantized} layers quantized, {report.qat.num_float} float; "
            f"{report.qat_fit.total_steps} steps. Convert with edgekit-convert --mode=int8."
        )
    if wrote:
        print(
            f"wrote {train.output_path()}"
            + (f" and {train.json_path()}" if train.json_path() else "")
        )


def run() -> None:
    """Console-script entry point."""
    _common.run(main, isolate=True)


if __name__ == "__main__":
    run()
