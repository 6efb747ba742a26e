"""Loader for the bundled UCI handwritten digits (8x8, 10 classes, 1,797 images)."""

from __future__ import annotations

import functools
import pathlib

import numpy as np

_PATH = pathlib.Path(__file__).with_name("digits.npz")
NUM_CLASSES = 10
CLASS_NAMES = tuple(str(d) for d in range(NUM_CLASSES))


@functools.cache
def _raw() -> dict[str, np.ndarray]:
    with np.load(_PATH) as z:
        return {k: z[k] for k in z.files}


def load_digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Returns `(x_train, y_train), (x_test, y_test)` with the fixed split.

    `x` is float32 of shape (N, 8, 8, 1) scaled to [0, 1] (raw pixels are 0-16);
    `y` is int64 class ids 0-9. Train: 1,438 images; test: 359 (stratified).
    """
    raw = _raw()

    def prep(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) / 16.0)[..., None]

    return (
        (prep(raw["x_train"]), raw["y_train"].astype(np.int64)),
        (prep(raw["x_test"]), raw["y_test"].astype(np.int64)),
    )
