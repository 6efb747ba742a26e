"""Builds the models the benchmark scripts measure, cached as `.tflite` files.

The models are converted by edgekit (`edgekit.convert`: float32, and full int8 with
float I/O calibrated on random data). Weights are random: latency does not depend on
them. The files are cached (EDGEKIT_BENCH_CACHE, default /tmp/edgekit-bench-models).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

CACHE = pathlib.Path(os.environ.get("EDGEKIT_BENCH_CACHE", "/tmp/edgekit-bench-models-v2"))


def _convert(model, *, int8: bool, shape: tuple[int, ...]) -> bytes:
    """Converts with `edgekit.convert` (full int8 with float I/O, calibrated on random data)."""
    from edgekit import config, convert

    rng = np.random.default_rng(0)
    calib = rng.uniform(-1, 1, (32, *shape)).astype(np.float32) if int8 else None
    cfg = config.ConvertConfig(mode="int8" if int8 else "float32")
    return convert.convert(model, cfg, calibration_data=calib).tflite_bytes


def small_cnn(*, int8: bool = False) -> pathlib.Path:
    """A small 32x32 CNN (the size of the bundled example): well under 1 ms per inference."""
    path = CACHE / f"small_cnn_{'int8' if int8 else 'float32'}.tflite"
    if not path.exists():
        from edgekit import _compat

        k = _compat.tf_keras()
        k.utils.set_random_seed(0)
        m = k.Sequential(
            [
                k.layers.Input((32, 32, 3)),
                k.layers.Conv2D(16, 3, activation="relu"),
                k.layers.MaxPooling2D(),
                k.layers.Conv2D(32, 3, activation="relu"),
                k.layers.GlobalAveragePooling2D(),
                k.layers.Dense(10, activation="softmax"),
            ]
        )
        CACHE.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_convert(m, int8=int8, shape=(32, 32, 3)))
    return path


def mobilenet_v2(*, int8: bool = False) -> pathlib.Path:
    """MobileNetV2 at 224x224 with random weights (several ms per inference here)."""
    path = CACHE / f"mobilenet_v2_{'int8' if int8 else 'float32'}.tflite"
    if not path.exists():
        from edgekit import _compat

        k = _compat.tf_keras()
        k.utils.set_random_seed(0)
        m = k.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
        CACHE.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_convert(m, int8=int8, shape=(224, 224, 3)))
    return path


if __name__ == "__main__":
    for fn in (small_cnn, mobilenet_v2):
        for q in (False, True):
            p = fn(int8=q)
            print(p, p.stat().st_size)
