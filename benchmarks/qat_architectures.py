"""QAT (and prune-then-QAT) on real architectures: does int8 conversion run and agree?

For each `tf_keras.applications` model (32x32 inputs, 72x72 for Xception; 10 logits,
no download): start from weights trained for a few epochs on the bundled digits (8x8
scans enlarged to 32x32 or 72x72 RGB; `--weights=digits`, the default) or from random weights with batch norm
settled on random data (`--weights=random`, the issue's literal setting); run
`edgekit.optimize.qat.quantize_aware` for a few steps on random data; convert to full
int8 with `edgekit.convert` (which keeps the ranges QAT learned); compare the int8
file with the QAT Keras model on 32 random inputs. With prune_qat, the model is
first pruned to 50% (`edgekit.optimize.prune.prune`) and QAT keeps the zeros
(preserve=sparsity); with prune, the pruned model goes to post-training int8
(calibrated on the random data) and is compared with the pruned float model.

The "one-step floor" column is the cosine between the QAT model's outputs and its
own outputs after moving ONE input value of each image by one input quantization
step. Random-weight networks amplify such a change through every layer (a single
pixel moves MobileNetV2's outputs to a cosine of about 0.87), and any int8 file
that is not bit-exact with the float simulation differs from it by more than that;
there the int8 agreement can only be read against this floor. Trained weights do
not amplify so: there the floor is above 0.99 and the issue's 0.98 bar applies.

Usage:
    python benchmarks/qat_architectures.py --models=MobileNetV3Small,EfficientNetB0 \\
        [--variants=qat,prune_qat] [--weights=digits|random] [--json=OUT.json]
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
    "Xception",
)
SIZE = 32  # the smallest input every one of these accepts
# Xception takes 71x71 at least; 72 is the digits' 8x8 enlarged 9 times.
SIZES = {"Xception": 72}
# keras.applications' Xception keeps batch norm's default momentum; with 0.99 its
# moving statistics lag a short training run so far that inference outputs one
# class. 0.9 follows the run (set before training, kept after).
BN_MOMENTUM = {"Xception": 0.9}


def size_of(name: str) -> int:
    """The input size the benchmark uses for architecture `name`."""
    return SIZES.get(name, SIZE)


def _define_flags() -> None:
    # Defined only when run as a script: the tests import this module next to the
    # edgekit commands, and absl's flags are global (a second --json would clash).
    flags.DEFINE_list("models", list(ALL), "Architectures to run.")
    flags.DEFINE_list(
        "variants",
        ["qat"],
        "qat (QAT alone), prune (prune to 50%, then post-training int8) and/or prune_qat "
        "(prune to 50%, then sparsity-preserving QAT).",
    )
    flags.DEFINE_integer("steps", 2, "QAT (and pruning) training steps.", lower_bound=1)
    flags.DEFINE_enum(
        "weights", "digits", ["digits", "random"], "Start from digits-trained or random weights."
    )
    flags.DEFINE_integer(
        "epochs", 3, "Epochs on the digits before QAT (--weights=digits).", lower_bound=1
    )
    flags.DEFINE_string("json", None, "Write the rows as JSON here.")


def build(name: str, *, seed: int = 0, weights: str = "digits", epochs: int = 3) -> Any:
    """The architecture, digits-trained or random, with batch norm settled on its data."""
    from edgekit import _compat

    k = _compat.tf_keras()
    k.utils.set_random_seed(seed)
    size = size_of(name)
    model = getattr(k.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None
    )
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    momentum = BN_MOMENTUM.get(name, 0.99)  # after settling (training keeps the model's own)
    if name in BN_MOMENTUM:
        for layer in bns:
            layer.momentum = momentum
    if weights == "digits":
        (x, y), _ = digit_images(size)
        model.compile(
            k.optimizers.Adam(1e-3),
            k.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        settle = x[:: max(1, len(x) // 256)]
    else:
        settle = random_images(64, seed=seed + 1, size=size)
    # One pass in training mode with momentum 0 gives every batch norm the statistics
    # of the data (a random model's activations otherwise vanish, std ~1e-11).
    for layer in bns:
        layer.momentum = 0.0
    model(settle, training=True)
    for layer in bns:
        layer.momentum = momentum
    return model


def digit_images(
    size: int = SIZE,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The bundled digits as size x size RGB images in [0, 255] (train, test)."""
    from edgekit.datasets import digits

    def enlarge(x: np.ndarray) -> np.ndarray:
        x = np.kron(x, np.ones((1, size // 8, size // 8, 1), np.float32)) * 255.0
        return np.repeat(x, 3, axis=-1).astype("float32")

    (x_train, y_train), (x_test, y_test) = digits.load_digits()
    return (enlarge(x_train), y_train), (enlarge(x_test), y_test)


def random_images(n: int, *, seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.RandomState(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def cosines(want: np.ndarray, got: np.ndarray) -> tuple[float, float, float]:
    """(cosine over the whole output batch, mean and min of per-sample cosines)."""
    flat = float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got))
    per = (want * got).sum(1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    return flat, float(per.mean()), float(per.min())


def one_step_floor(model: Any, x: np.ndarray, *, seed: int = 0) -> float:
    """Cosine of `model`'s outputs before and after moving one value per image by one step."""
    base = np.round(x)
    moved = base.copy().reshape(len(x), -1)
    rs = np.random.RandomState(seed)
    for row in moved:
        j = rs.randint(row.size)
        row[j] = row[j] + 1 if row[j] < 255 else row[j] - 1
    want = model.predict(base, verbose=0)
    return cosines(want, model.predict(moved.reshape(x.shape), verbose=0))[0]


VARIANTS = ("qat", "prune", "prune_qat")


def run_one(
    name: str,
    *,
    variant: str = "qat",
    steps: int = 2,
    weights: str = "digits",
    epochs: int = 3,
    model: Any = None,
) -> dict[str, Any]:
    """Prune and/or QAT one architecture, convert to full int8, compare with Keras.

    variant "qat": QAT; "prune": prune to 50%, then post-training int8 (calibrated;
    compared with the pruned float model); "prune_qat": prune, then QAT that keeps
    the zeros. `model`, if given, is the result of `build(name, weights=weights)`
    (the tests reuse one); it is not changed.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    prune_first = variant != "qat"
    from edgekit import config, convert, runtime
    from edgekit.optimize import qat

    start = time.perf_counter()
    if model is None:
        model = build(name, weights=weights, epochs=epochs)
    size = size_of(name)
    x = random_images(64, seed=2, size=size)
    y = np.random.RandomState(3).randint(0, 10, len(x))
    fit = config.FitConfig(epochs=1, steps_per_epoch=steps, batch_size=16, learning_rate=1e-4)
    row: dict[str, Any] = {"model": name, "variant": variant, "weights": weights}
    if weights == "digits":
        _, (x_test, y_test) = digit_images(size)
        row["float_digits_accuracy"] = round(
            float(np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test)), 4
        )
    qat_config = config.QATConfig()
    if prune_first:
        from edgekit.optimize import prune

        model, pruned = prune.prune(
            model, config.PruneConfig(target_sparsity=0.5, schedule="constant"), (x, y), fit=fit
        )
        row["pruned_sparsity"] = pruned.achieved_sparsity
        qat_config = config.QATConfig(preserve="sparsity")
    if variant == "prune":
        keras_model = model
        row["sparsity_before"] = row["sparsity_after"] = row["pruned_sparsity"]
    else:
        keras_model, report = qat.quantize_aware(model, qat_config, (x, y), fit=fit)
        row["quantized"] = report.num_quantized
        row["float"] = report.num_float
        row["float_layers"] = sorted({f"{d.type}: {d.reason}" for d in report.float_layers()})
        row["rewrites"] = len(report.rewrites)
        if prune_first:
            row["sparsity_before"] = report.sparsity_before
            row["sparsity_after"] = report.sparsity_after
    row["train_seconds"] = round(time.perf_counter() - start, 1)
    result = convert.convert(keras_model, config.ConvertConfig(mode="int8"), calibration_data=x)
    row["ranges"] = result.converter_settings.get("ranges")
    lite = runtime.LiteModel(result.tflite_bytes)
    xt = random_images(32, seed=4, size=size)
    want = keras_model.predict(xt, verbose=0)
    got = lite.predict(xt)
    row["int8_kb"] = round(result.size_bytes / 1024)
    row["cos"], row["cos_mean"], row["cos_min"] = (round(c, 4) for c in cosines(want, got))
    row["one_step_floor"] = round(one_step_floor(keras_model, xt), 4)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    rows = []
    for name in flags.FLAGS.models:
        start = time.perf_counter()
        model = build(name, weights=flags.FLAGS.weights, epochs=flags.FLAGS.epochs)
        build_seconds = round(time.perf_counter() - start, 1)
        for variant in flags.FLAGS.variants:
            try:
                row = run_one(
                    name,
                    variant=variant,
                    steps=flags.FLAGS.steps,
                    weights=flags.FLAGS.weights,
                    epochs=flags.FLAGS.epochs,
                    model=model,
                )
                row["build_seconds"] = build_seconds
            except Exception as e:  # noqa: BLE001 - a benchmark reports every failure and goes on
                row = {
                    "model": name,
                    "variant": variant,
                    "error": f"{type(e).__name__}: {e}"[:500],
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
    header = (
        "| model | weights | variant | quantized/float layers | int8 KB | cosine int8 vs Keras "
        "(batch) | per-sample mean/min | one-step floor | sparsity before→after | s |"
    )
    print(header)
    print("|" + "---|" * 10)
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | | {r['variant']} | ERROR {r['error'][:80]} | | | | | | |")
            continue
        sp = (
            f"{r['sparsity_before']:.3f}→{r['sparsity_after']:.3f}"
            if "sparsity_after" in r
            else "-"
        )
        layers = f"{r['quantized']}/{r['float']}" if "quantized" in r else "PTQ"
        print(
            f"| {r['model']} | {r['weights']} | {r['variant']} | {layers} | "
            f"{r['int8_kb']} | {r['cos']} | {r['cos_mean']}/{r['cos_min']} | "
            f"{r['one_step_floor']} | {sp} | "
            f"{r['seconds']} |"
        )
    if flags.FLAGS.json:
        with open(flags.FLAGS.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
