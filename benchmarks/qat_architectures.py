"""QAT (and prune-then-QAT) on real architectures: does int8 conversion run and agree?

For each `tf_keras.applications` model (random weights, 32x32 inputs, 10 logits):
settle batch norm on random data (a random model's activations otherwise vanish,
std ~1e-11, and every cosine is noise), run `edgekit.optimize.qat.quantize_aware`
for a few steps, convert to full int8 with `edgekit.convert`, and compare the int8
file with the QAT Keras model on 32 random inputs. With prune_qat, the model is first
pruned to 50% (`edgekit.optimize.prune.prune`) and QAT keeps the zeros
(preserve=sparsity). The "noise floor" column is the cosine between the QAT model's
outputs and its own outputs after jittering every input pixel by at most half an
input quantization step: random-weight networks amplify tiny changes, and no int8
file can agree with the QAT model better than that.

Usage:
    python benchmarks/qat_architectures.py --models=MobileNetV3Small,EfficientNetB0 \\
        [--variants=qat,prune_qat] [--json=OUT.json]
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags

ALL = (
    "MobileNet",
    "MobileNetV2",
    "MobileNetV3Small",
    "MobileNetV3Large",
    "ResNet50",
    "EfficientNetB0",
    "DenseNet121",
)
SIZE = 32  # the smallest input every one of these accepts


def _define_flags() -> None:
    # Defined only when run as a script: the tests import this module next to the
    # edgekit commands, and absl's flags are global (a second --json would clash).
    flags.DEFINE_list("models", list(ALL), "Architectures to run.")
    flags.DEFINE_list(
        "variants",
        ["qat"],
        "qat (QAT alone) and/or prune_qat (prune to 50%, then sparsity-preserving QAT).",
    )
    flags.DEFINE_integer("steps", 2, "QAT (and pruning) training steps.", lower_bound=1)
    flags.DEFINE_string("json", None, "Write the rows as JSON here.")


def build(name: str, *, seed: int = 0) -> Any:
    """The architecture with random weights and batch norm settled on random data."""
    from edgekit import _compat

    k = _compat.tf_keras()
    k.utils.set_random_seed(seed)
    model = getattr(k.applications, name)(
        weights=None, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None
    )
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    for layer in bns:
        layer.momentum = 0.0
    model(random_images(64, seed=seed + 1), training=True)
    for layer in bns:
        layer.momentum = 0.99
    return model


def random_images(n: int, *, seed: int) -> np.ndarray:
    return np.random.RandomState(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")


def cosines(want: np.ndarray, got: np.ndarray) -> tuple[float, float, float]:
    """(cosine over the whole output batch, mean and min of per-sample cosines)."""
    flat = float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got))
    per = (want * got).sum(1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    return flat, float(per.mean()), float(per.min())


def run_one(name: str, *, prune_first: bool = False, steps: int = 2) -> dict[str, Any]:
    """QAT (optionally after pruning) one architecture, convert to int8, compare."""
    from edgekit import config, convert, runtime
    from edgekit.optimize import qat

    start = time.perf_counter()
    model = build(name)
    x = random_images(64, seed=2)
    y = np.random.RandomState(3).randint(0, 10, len(x))
    fit = config.FitConfig(epochs=1, steps_per_epoch=steps, batch_size=16, learning_rate=1e-4)
    row: dict[str, Any] = {"model": name, "pruned": prune_first}
    qat_config = config.QATConfig()
    if prune_first:
        from edgekit.optimize import prune

        model, pruned = prune.prune(
            model, config.PruneConfig(target_sparsity=0.5, schedule="constant"), (x, y), fit=fit
        )
        row["pruned_sparsity"] = pruned.achieved_sparsity
        qat_config = config.QATConfig(preserve="sparsity")
    qat_model, report = qat.quantize_aware(model, qat_config, (x, y), fit=fit)
    row["qat_seconds"] = round(time.perf_counter() - start, 1)
    row["quantized"] = report.num_quantized
    row["float"] = report.num_float
    row["float_layers"] = sorted({f"{d.type}: {d.reason}" for d in report.float_layers()})
    row["rewrites"] = len(report.rewrites)
    if prune_first:
        row["sparsity_before"] = report.sparsity_before
        row["sparsity_after"] = report.sparsity_after
    result = convert.convert(qat_model, config.ConvertConfig(mode="int8"), calibration_data=x)
    lite = runtime.LiteModel(result.tflite_bytes)
    xt = random_images(32, seed=4)
    want = qat_model.predict(xt, verbose=0)
    got = lite.predict(xt)
    row["int8_kb"] = round(result.size_bytes / 1024)
    row["cos"], row["cos_mean"], row["cos_min"] = (round(c, 4) for c in cosines(want, got))
    # How far the QAT model itself moves when each input pixel moves by at most half
    # an input quantization step: a random-weight network amplifies tiny changes, and
    # int8 rounding cannot be expected to agree better than this.
    noise = np.random.RandomState(5).uniform(-0.5, 0.5, xt.shape).astype("float32")
    jittered = qat_model.predict(np.clip(xt + noise, 0, 255), verbose=0)
    row["noise_floor"] = round(cosines(want, jittered)[0], 4)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    rows = []
    for name in flags.FLAGS.models:
        for prune_first in [v == "prune_qat" for v in flags.FLAGS.variants]:
            try:
                row = run_one(name, prune_first=prune_first, steps=flags.FLAGS.steps)
            except Exception as e:  # noqa: BLE001 - a benchmark reports every failure and goes on
                row = {
                    "model": name,
                    "pruned": prune_first,
                    "error": f"{type(e).__name__}: {e}"[:500],
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
    header = (
        "| model | pruned | quantized/float layers | int8 KB | cosine int8 vs QAT (batch) | "
        "per-sample mean/min | QAT vs itself, input ±0.5 | sparsity before→after | s |"
    )
    print(header)
    print("|" + "---|" * 9)
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['pruned']} | ERROR {r['error'][:80]} | | | | | | |")
            continue
        sp = f"{r['sparsity_before']:.3f}→{r['sparsity_after']:.3f}" if r["pruned"] else "-"
        print(
            f"| {r['model']} | {r['pruned']} | {r['quantized']}/{r['float']} | {r['int8_kb']} | "
            f"{r['cos']} | {r['cos_mean']}/{r['cos_min']} | {r['noise_floor']} | {sp} | "
            f"{r['seconds']} |"
        )
    if flags.FLAGS.json:
        with open(flags.FLAGS.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
