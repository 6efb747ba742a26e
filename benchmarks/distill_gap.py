r"""How much of the teacher-student gap distillation recovers on the bundled example.

Teacher: the trained example model (edgekit.datasets.example_model, 139k params).
Student: `width:W` of it (every conv/dense width times W; W=0.45 gives 22% of the
teacher's parameters), trained from scratch. Budget: `--labels` labelled training
images (a seeded, class-stratified draw) and a fixed number of optimizer steps
(`--epochs` x ceil(labels / batch)), learning rate 2e-3 cosine-decayed. Accuracy is
measured on the 359-image test split (one image = 0.28 points).

For each seed, four students with the same initial weights and the same steps:
- labels: trained on the labelled images alone (hard labels);
- distilled: the same images, the teacher's soft targets mixed with the labels;
- distilled+mixed: as distilled, plus `--mixed_inputs` convex combinations of two of
  those images per image, labelled by the teacher alone (no new images, no labels);
- distilled+transfer: as distilled, plus the rest of the training images without
  labels (the teacher's soft targets alone train on those: Hinton's transfer set).
Recovered = (distilled - labels) / (teacher - labels).

Then one distill + QAT run (seed 0, the mixed setting) is converted to a full int8
`.tflite` and compared with its float student before QAT.

With `--keras=3` the teacher is the same trained example as a Keras 3 model (translated
by the checked bridge, `edgekit.optimize.keras3.to_keras3`), so every run goes through
distill's Keras 3 entry: the `width:W` student is built from the Keras 3 teacher and the
distilled student comes back as Keras 3 (the QAT student stays tf_keras; its
deliverable is the int8 file). Measured (2 shared cores, load ~10, about 5 min a seed):

    python benchmarks/distill_gap.py --keras=3 --width=0.5 --seeds=0,1,2

labels 86.35 ± 2.79%, distilled 88.86 ± 3.49%, distilled+mixed 92.66 ± 1.85% (0.50 ±
0.08 of the gap recovered), distilled+transfer 97.86 ± 0.58%; student 0.276 of the
teacher's params; distill + QAT -> int8 93.59% vs float student 93.59% (+0.00). The
per-seed table is in docs/commands.md.

    python benchmarks/distill_gap.py [--seeds=0,1,2] [--labels=200] [--epochs=60] \
        [--width=0.45] [--keras=tf_keras|3] [--json=out.json]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from edgekit import config, datasets
from edgekit.cli import _common
from edgekit.convert import convert as convert_model
from edgekit.optimize import distill
from edgekit.runtime import LiteModel

_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (label draw, student init, shuffling).")
_LABELS = flags.DEFINE_integer("labels", 200, "Labelled training images per run.")
_EPOCHS = flags.DEFINE_integer("epochs", 60, "Epochs over the labelled images (sets the steps).")
_WIDTH = flags.DEFINE_float("width", 0.45, "Student width multiplier.")
_TEMPERATURE = flags.DEFINE_float("temperature", 4.0, "Distillation temperature.")
_ALPHA = flags.DEFINE_float("alpha", 0.9, "Weight of the soft targets.")
_MIXED = flags.DEFINE_integer("mixed_inputs", 5, "Mixed inputs per image (distilled+mixed).")
_GAP = flags.DEFINE_bool("gap", True, "Run the labels / distilled / transfer comparison.")
_QAT = flags.DEFINE_bool("qat", True, "Also run distill + QAT -> int8 .tflite (seed 0).")
_QAT_LR = flags.DEFINE_float("qat_learning_rate", 1e-4, "Learning rate of the QAT run.")
_JSON = flags.DEFINE_string("json", None, "Write the results as JSON here.")
_KERAS = flags.DEFINE_enum(
    "keras", "tf_keras", ["tf_keras", "3"], "The teacher's Keras: tf_keras, or Keras 3."
)


def _draw(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n indices, as even over the classes as n allows, seeded."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    take = [p[: n // len(classes) + (i < n % len(classes))] for i, p in enumerate(per)]
    return rng.permutation(np.concatenate(take))


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, float)
    return {
        "mean": round(float(a.mean()), 4),
        "std": round(float(a.std(ddof=1)), 4) if len(a) > 1 else 0.0,
        "min": round(float(a.min()), 4),
        "max": round(float(a.max()), 4),
    }


def main(argv: Sequence[str]) -> None:
    del argv
    (x_train, y_train), (x_test, y_test) = datasets.load_digits()
    teacher, info = datasets.example_model()
    if _KERAS.value == "3":
        from edgekit.optimize import keras3

        teacher, back = keras3.to_keras3(teacher, sample=x_train[:32])
        print(f"Keras 3 teacher: {keras3.describe({'teacher': back.to_dict()})}", flush=True)
    cfg = config.DistillConfig(temperature=_TEMPERATURE.value, alpha=_ALPHA.value)
    mixed_cfg = config.DistillConfig(
        temperature=_TEMPERATURE.value, alpha=_ALPHA.value, mixed_inputs=_MIXED.value
    )
    batch = 32
    steps = math.ceil(_LABELS.value / batch)
    student_spec = f"width:{_WIDTH.value:g}"
    rows, runs = [], []
    results: dict = {"labels": _LABELS.value, "config": cfg.to_dict(), "keras": _KERAS.value}
    for seed in (int(s) for s in _SEEDS.value) if _GAP.value else ():
        idx = _draw(y_train, _LABELS.value, seed)
        fit = config.FitConfig(
            epochs=_EPOCHS.value,
            steps_per_epoch=steps,
            batch_size=batch,
            learning_rate=2e-3,
            seed=seed,
        )
        start = time.perf_counter()
        _, same = distill.distill(
            teacher,
            student_spec,
            cfg,
            (x_train[idx], y_train[idx]),
            fit=fit,
            val_data=(x_test, y_test),
            baseline=True,
        )
        _, mixed = distill.distill(
            teacher,
            student_spec,
            mixed_cfg,
            (x_train[idx], y_train[idx]),
            fit=fit,
            val_data=(x_test, y_test),
        )
        partial = np.full(len(y_train), -1)
        partial[idx] = y_train[idx]
        _, transfer = distill.distill(
            teacher, student_spec, cfg, (x_train, partial), fit=fit, val_data=(x_test, y_test)
        )
        run = {
            "seed": seed,
            "teacher": same.teacher_accuracy,
            "labels": same.student_from_labels_accuracy,
            "distilled": same.distilled_accuracy,
            "distilled_mixed": mixed.distilled_accuracy,
            "distilled_transfer": transfer.distilled_accuracy,
            "steps": same.fit.total_steps,
            "seconds": round(time.perf_counter() - start, 1),
        }
        gap = run["teacher"] - run["labels"]
        run["recovered"] = round((run["distilled"] - run["labels"]) / gap, 4)
        run["recovered_mixed"] = round((run["distilled_mixed"] - run["labels"]) / gap, 4)
        run["recovered_transfer"] = round((run["distilled_transfer"] - run["labels"]) / gap, 4)
        runs.append(run)
        rows.append(
            [
                seed,
                run["teacher"],
                run["labels"],
                run["distilled"],
                run["recovered"],
                run["distilled_mixed"],
                run["recovered_mixed"],
                run["distilled_transfer"],
                run["recovered_transfer"],
            ]
        )
        print(json.dumps(run), flush=True)
    keys = (
        "labels",
        "distilled",
        "recovered",
        "distilled_mixed",
        "recovered_mixed",
        "distilled_transfer",
        "recovered_transfer",
    )
    if runs:
        results.update(
            teacher_params=same.teacher_params,
            student_params=same.student_params,
            param_ratio=same.param_ratio,
            steps=runs[0]["steps"],
            runs=runs,
        )
        for key in keys:
            results[key + "_summary"] = _stats([r[key] for r in runs])
    if _QAT.value:
        idx = _draw(y_train, _LABELS.value, 0)
        fit = config.FitConfig(
            epochs=_EPOCHS.value,
            steps_per_epoch=steps,
            batch_size=batch,
            learning_rate=2e-3,
            seed=0,
        )
        qat_fit = config.FitConfig(
            epochs=max(1, _EPOCHS.value // 4),
            steps_per_epoch=steps,
            batch_size=batch,
            learning_rate=_QAT_LR.value,
            seed=0,
        )
        qat_model, rep = distill.distill(
            teacher,
            student_spec,
            mixed_cfg,
            (x_train[idx], y_train[idx]),
            fit=fit,
            val_data=(x_test, y_test),
            qat=config.QATConfig(),
            qat_fit=qat_fit,
        )
        blob = convert_model(
            qat_model, config.ConvertConfig(mode="int8"), calibration_data=x_train[idx]
        ).tflite_bytes
        scores = LiteModel(blob).predict(x_test, batch_size=128)
        int8 = round(float(np.mean(np.argmax(scores, -1) == y_test)), 6)
        results["qat"] = {
            "float_student_accuracy": rep.float_accuracy,
            "qat_keras_accuracy": rep.distilled_accuracy,
            "int8_tflite_accuracy": int8,
            "int8_minus_float_points": round(100 * (int8 - rep.float_accuracy), 2),
            "int8_tflite_bytes": len(blob),
            "qat_steps": rep.qat_fit.total_steps,
        }
        print(json.dumps(results["qat"]), flush=True)
    if runs:
        _common.print_table(
            rows,
            [
                "seed",
                "teacher",
                "labels",
                "distilled",
                "recov.",
                "+mixed",
                "recov.",
                "+transfer",
                "recov.",
            ],
        )
        for key in keys:
            s = results[key + "_summary"]
            print(
                f"{key}: mean {s['mean']:.4f}, std {s['std']:.4f}, range [{s['min']}, {s['max']}]"
            )
        print(
            f"student {results['student_params']} params = {results['param_ratio']:.3f} of the "
            f"teacher's {results['teacher_params']}; {_LABELS.value} labels, "
            f"{results['steps']} steps; test split {len(y_test)} images."
        )
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
