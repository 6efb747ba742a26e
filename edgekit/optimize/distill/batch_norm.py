"""Batch-norm recalibration of a student trained from scratch.

Example:
    >>> recalibrate_batch_norm(student, x_train)  # returns how many layers it set
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit import _compat


def recalibrate_batch_norm(model: Any, x: np.ndarray, *, max_samples: int = 2048) -> int:
    """Sets every BatchNormalization's moving statistics to their exact values on `x`.

    A student trained from scratch for a few hundred steps keeps moving averages
    that are still mostly their initial guess (momentum 0.99), so inference-mode
    accuracy can sit at chance while training accuracy is high. Layer by layer, in
    order, each one's input is computed in inference mode (earlier layers already
    fixed) and its mean and variance are stored.

    Returns:
      How many layers were recalibrated.
    """
    tf_keras = _compat.tf_keras()
    idx = np.linspace(0, len(x) - 1, num=min(len(x), max_samples)).astype(int)
    sample = x[idx]
    done = 0
    for layer in model.layers:
        if not isinstance(layer, tf_keras.layers.BatchNormalization):
            continue
        if len(layer._inbound_nodes) != 1:
            continue
        upto = tf_keras.Model(model.inputs, layer.input)
        total = total_sq = None
        count = 0
        for start in range(0, len(sample), 256):
            # Eager calls: one graph per layer would retrace predict for each one.
            z = np.asarray(upto(sample[start : start + 256], training=False), np.float64)
            axes = tuple(i for i in range(z.ndim) if i not in [a % z.ndim for a in layer.axis])
            part, part_sq = z.sum(axis=axes), np.square(z).sum(axis=axes)
            total = part if total is None else total + part
            total_sq = part_sq if total_sq is None else total_sq + part_sq
            count += z.size // part.size
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(total_sq / count - mean**2, 0).astype(np.float32))
        done += 1
    return done
