"""Equivalence of the Keras 3 <-> tf_keras bridge on Keras 3 `keras.applications`.

Each model is built by Keras 3 with random weights (`weights=None`, no download) at
a small input size, translated to tf_keras (`to_tf_keras`) and back to Keras 3 as
a clone of the user's model (`to_keras3(..., like=model)`) and by the generic
translation (`to_keras3(...)`). Every column compares outputs on the same random
images: max abs error over all outputs and samples, and cosine of the flattened
outputs. The bridge's tolerance is 1e-5 max abs error.

Freshly initialised batch norms (mean 0, variance 1) let the signal shrink or grow
with depth, and a 1000-class softmax of random weights is nearly uniform, so tiny
errors there prove little. With --calibrate_bn (the default) each batch norm's
moving statistics are first set to the batch statistics of the sample (one
training-mode call at momentum 0), so every layer sees values of order one, as in
a trained model. "rel" is the max abs error over the largest output magnitude.

    python benchmarks/keras3_bridge.py                       # the 7 models, softmax head
    python benchmarks/keras3_bridge.py --head=logits         # compare pre-softmax logits
    python benchmarks/keras3_bridge.py --models=MobileNetV3Small --size=32
"""

from __future__ import annotations

import time

import numpy as np
from absl import app, flags

from edgekit import _compat
from edgekit.optimize import keras3 as bridge

MODELS = (
    "MobileNet",
    "MobileNetV2",
    "MobileNetV3Small",
    "MobileNetV3Large",
    "ResNet50",
    "EfficientNetB0",
    "DenseNet121",
)
# These include their own preprocessing (Rescaling) and take pixels in [0, 255];
# the others take inputs already scaled to [-1, 1].
_PIXEL_INPUTS = ("MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0")

_MODELS = flags.DEFINE_list("models", list(MODELS), "keras.applications model names.")
_SIZE = flags.DEFINE_integer("size", 32, "Input height and width.", lower_bound=32)
_SAMPLES = flags.DEFINE_integer("samples", 8, "Random images compared.", lower_bound=1)
_CALIBRATE = flags.DEFINE_bool(
    "calibrate_bn", True, "Set batch-norm statistics from the sample before comparing."
)
_HEAD = flags.DEFINE_enum(
    "head", "softmax", ["softmax", "logits"], "Compare the softmax outputs or the logits."
)


def _sample(name: str, size: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.random((n, size, size, 3), dtype=np.float32)
    return x * 255.0 if name in _PIXEL_INPUTS else x * 2.0 - 1.0


def _calibrate_bn(model: object, x: np.ndarray) -> None:
    keras = _compat.keras3()
    norms = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become this batch's statistics
    model(x, training=True)


def _measure(name: str) -> dict[str, object]:
    keras = _compat.keras3()
    keras.utils.set_random_seed(0)
    kwargs = {"classifier_activation": None} if _HEAD.value == "logits" else {}
    model = getattr(keras.applications, name)(
        input_shape=(_SIZE.value, _SIZE.value, 3), weights=None, **kwargs
    )
    x = _sample(name, _SIZE.value, _SAMPLES.value)
    if _CALIBRATE.value:
        _calibrate_bn(model, x)
    start = time.perf_counter()
    # The checks raise past the tolerance; measure with an open one to see the figure.
    tfk, there = bridge.to_tf_keras(model, sample=x, tolerance=np.inf)
    mine, _ = bridge.to_keras3(tfk, like=model, sample=x, tolerance=np.inf)
    generic, _ = bridge.to_keras3(tfk, sample=x, tolerance=np.inf)
    seconds = time.perf_counter() - start
    back = bridge.check_equivalence(model, mine, x, tolerance=np.inf)
    back_generic = bridge.check_equivalence(model, generic, x, tolerance=np.inf)
    return {
        "model": name,
        "layers": there.layers,
        "ops": there.ops,
        "k3_tfk": there.equivalence,
        "back": back,
        "generic": back_generic,
        "seconds": seconds,
        "ok": max(e.max_abs_error for e in (there.equivalence, back, back_generic))
        <= bridge.TOLERANCE,
        "scale": float(np.max(np.abs(np.asarray(model(x, training=False))))),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print(
        f"Keras {_compat.keras3().__version__} -> tf_keras {_compat.tf_keras().__version__} "
        f"-> Keras 3; random weights, {_SAMPLES.value} random inputs of "
        f"{_SIZE.value}x{_SIZE.value}x3, {_HEAD.value} outputs compared; tolerance "
        f"{bridge.TOLERANCE:g}"
    )
    print(
        "| model | layers | ops | max abs out | K3->tf_keras max abs | rel | cosine "
        "| ->K3 (like) max abs | cosine | ->K3 (generic) max abs | cosine | <= 1e-5 | s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|")
    for name in _MODELS.value:
        r = _measure(name)
        cells = []
        for key in ("k3_tfk", "back", "generic"):
            eq = r[key]
            cells += [f"{eq.max_abs_error:.2e}", f"{eq.cosine:.9f}"]
            if key == "k3_tfk":
                cells.insert(1, f"{eq.max_abs_error / max(r['scale'], 1e-30):.1e}")
        print(
            f"| {name} | {r['layers']} | {r['ops']} | {r['scale']:.3g} | "
            + " | ".join(cells)
            + f" | {'yes' if r['ok'] else 'NO'} | {r['seconds']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
