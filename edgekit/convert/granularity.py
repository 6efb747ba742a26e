"""Per-channel or per-tensor int8 weights: measure both, keep the smaller one if it is as good.

Each output channel of a per-channel weight costs a float32 scale and an int64 zero
point (and again for its bias), which on small or pruned models is a large part of
the file and does not compress; per-tensor files are markedly smaller, and often
just as accurate. Which one holds is an empirical question, so both are measured
against the float model on the calibration samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit import runtime
from edgekit.convert import result

# Per-tensor must agree with the float model within this much of per-channel.
TOLERANCE = 0.005
RULE = (
    "per-tensor if its agreement with the float model is within 0.5 points "
    "and it is smaller after gzip"
)


def agreement(reference: np.ndarray, got: np.ndarray) -> float:
    """Top-1 agreement for class scores, else the mean per-sample cosine."""
    reference = reference.reshape(len(reference), -1)
    got = got.reshape(len(got), -1)
    if reference.shape[1] > 1 and reference.ndim == 2:
        return float(np.mean(reference.argmax(1) == got.argmax(1)))
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(got, axis=1)
    return float(np.mean((reference * got).sum(1) / np.maximum(norms, 1e-30)))


def choose(reference: np.ndarray, calibration: np.ndarray, *candidates: tuple) -> tuple:
    """Of two (blob, settings, log, seconds) conversions, the per-tensor one if it is as good.

    "As good": agreement with the float model's outputs (`reference`, on the
    calibration samples) within 0.5 points of the per-channel file's, and smaller
    after gzip. The kept settings record both measurements under "granularity_choice".
    """
    measured = []
    for blob, settings, log, seconds in candidates:
        per_channel = settings.get("per_channel", True)
        score = agreement(reference, runtime.LiteModel(blob).predict(calibration))
        measured.append(
            (per_channel, score, result.gzip_size(blob), (blob, settings, log, seconds))
        )
    by_kind = {m[0]: m for m in measured}
    pc, pt = by_kind[True], by_kind[False]
    keep = pt if pt[1] >= pc[1] - TOLERANCE and pt[2] < pc[2] else pc
    blob, settings, log, seconds = keep[3]
    settings: dict[str, Any] = dict(settings)
    settings["granularity_choice"] = {
        "chosen": "per_channel" if keep[0] else "per_tensor",
        "samples": len(calibration),
        "per_channel": {"agreement": pc[1], "gzip_size_bytes": pc[2]},
        "per_tensor": {"agreement": pt[1], "gzip_size_bytes": pt[2]},
        "rule": RULE,
    }
    settings["per_channel"] = keep[0]
    return blob, settings, log, sum(m[3][3] for m in measured)
