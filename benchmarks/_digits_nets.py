"""`tf_keras.applications` nets trained briefly on the bundled digits, cached on disk.

The digits (8x8 scans) are enlarged to 32x32 RGB in [0, 255] (`qat_architectures.
digit_images`). Batch norm momentum is lowered from the applications' 0.999 to 0.9
before training: with 0.999 a briefly trained net keeps near-initial moving
statistics and predicts one class at inference. The cache (EDGEKIT_BENCH_CACHE,
default /tmp/edgekit-bench-models-v2) holds the Keras model, its float32 .tflite and
the digits as .npz files for `edgekit-quantize` (train: calibration; test: eval).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

CACHE = pathlib.Path(os.environ.get("EDGEKIT_BENCH_CACHE", "/tmp/edgekit-bench-models-v2"))


def digits32() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The digits as 32x32 RGB images in [0, 255] (train, test)."""
    from qat_architectures import digit_images

    return digit_images()


def trained(name: str = "MobileNetV2", *, epochs: int = 5, seed: int = 0) -> dict[str, Any]:
    """Paths of the digits-trained `name`: keras, float32 tflite, train/test .npz."""
    stem = CACHE / f"digits_{name}_e{epochs}_s{seed}"
    paths = {
        "keras": pathlib.Path(f"{stem}.h5"),
        "float": pathlib.Path(f"{stem}_float32.tflite"),
        "train": CACHE / "digits32_train.npz",
        "test": CACHE / "digits32_test.npz",
    }
    (x_train, y_train), (x_test, y_test) = digits32()
    CACHE.mkdir(parents=True, exist_ok=True)
    for key, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if not paths[key].exists():
            np.savez(paths[key], x=x, y=y)
    if not paths["keras"].exists() or not paths["float"].exists():
        from edgekit import _compat, convert

        k = _compat.tf_keras()
        k.utils.set_random_seed(seed)
        model = getattr(k.applications, name)(
            weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
        )
        for layer in model.layers:
            if type(layer).__name__ == "BatchNormalization":
                layer.momentum = 0.9
        model.compile(
            k.optimizers.Adam(1e-3),
            k.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=2)
        model.save(paths["keras"])
        paths["float"].write_bytes(convert.convert(model).tflite_bytes)
    return paths


def load_keras(path: pathlib.Path) -> Any:
    from edgekit import _compat

    return _compat.tf_keras().models.load_model(path, compile=False)
