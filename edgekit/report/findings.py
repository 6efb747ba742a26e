"""Warnings for a result worse than its original: slower, larger or less accurate.

Each warning is one plain paragraph: what is worse and by how much, what the
`.tflite` file shows about the cause (ops XNNPack does not take, delegate
partitions, (de)quantize ops, a free batch dimension, int16 activations), and the
alternatives worth trying. The pipeline's output, summary and report and
`edgekit-check` all use them.

"Slower" means beyond the measured noise: the models were timed interleaved
(A B A B ...), so each round gives one paired ratio result / original; the result
is called slower when its median paired ratio is at least `MIN_SLOWDOWN` and at
least three quarters of the pairs were slower (the lower quartile of the ratios
is above 1), so a difference inside the run-to-run spread is not reported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgekit.lite import inspect as lite_inspect

MIN_SLOWDOWN = 1.05  # median paired ratio; below it a slowdown is not worth a warning
MIN_SLOWDOWN_WITHOUT_SAMPLES = 1.10  # when only min/median/max of the pairs are known
MAX_ACCURACY_DROP_POINTS = 1.0


def paired_ratios(original_us: Sequence[float], result_us: Sequence[float]) -> dict[str, float]:
    """Quartiles of result / original over the rounds of an interleaved benchmark."""
    n = min(len(original_us), len(result_us))
    if n == 0:
        return {}
    r = np.asarray(result_us[:n], float) / np.maximum(np.asarray(original_us[:n], float), 1e-9)
    q25, q50, q75 = np.percentile(r, [25, 50, 75])
    return {"pairs": n, "q25": float(q25), "median": float(q50), "q75": float(q75)}


def is_slower(latency_ratio: Mapping[str, Any] | None, quartiles: Mapping[str, float]) -> bool:
    """Whether the result is slower beyond the noise of the interleaved pairs."""
    if quartiles:
        return quartiles["median"] >= MIN_SLOWDOWN and quartiles["q25"] > 1.0
    median = (latency_ratio or {}).get("median")
    # Without the per-run samples, only a clear slowdown counts.
    return median is not None and median >= MIN_SLOWDOWN_WITHOUT_SAMPLES


def cause(model: str | os.PathLike | bytes | None) -> tuple[str, list[str]]:
    """What the file shows that can make it slow, and the alternatives worth trying."""
    if model is None:
        return "", []
    fit = lite_inspect.delegate_fit(model)
    seen = []
    if fit.not_taken:
        seen.append(f"ops not taken by XNNPack: {', '.join(fit.not_taken)}")
    seen.append(
        f"{fit.partitions} XNNPack partition{'s' if fit.partitions != 1 else ''} (estimated)"
    )
    if fit.quantize_ops or fit.dequantize_ops:
        seen.append(f"{fit.quantize_ops} QUANTIZE and {fit.dequantize_ops} DEQUANTIZE op(s)")
    if fit.free_batch:
        seen.append("a free batch dimension")
    runtime_shapes = any(
        n.startswith(("SHAPE ", "PACK ")) or "computed at run time" in n for n in fit.not_taken
    )
    tries = []
    if fit.free_batch and runtime_shapes:
        tries.append(
            "fix the batch dimension at conversion (--batch_size=1, ConvertConfig(batch_size=1))"
        )
    if fit.int16_activations:
        tries += [
            "int8 or float16 instead of int16x8 (XNNPack has no int16 kernels, so every op "
            "runs on the reference kernels)",
            "keep float32 on this CPU",
        ]
    elif fit.quantize_ops or fit.dequantize_ops:
        tries += [
            "keep float32 on this CPU (on a model this small the (de)quantize steps and "
            "partition hand-offs can cost more than int8 saves)",
            "dynamic range quantization (mode 'dynamic')",
            "per-tensor weights (--noper_channel)",
            "a CPU with int8 dot-product instructions (AVX-512 VNNI, Arm dotprod) for int8",
        ]
    return "; ".join(seen), tries


def warnings_for(
    *,
    original: Mapping[str, Any],
    result: Mapping[str, Any],
    ratios: Mapping[str, Any],
    samples_us: Mapping[str, Sequence[float]] | None = None,
    model: str | os.PathLike | bytes | None = None,
    max_accuracy_drop: float = MAX_ACCURACY_DROP_POINTS,
) -> list[str]:
    """The warnings for a result compared with its original (empty when none is worse).

    Args:
      original, result: figures with `size_bytes`, `gzip_size_bytes`, `accuracy`,
        `latency_us` (any may be missing).
      ratios: `latency` (the benchmark's min/median/max of paired ratios), `size`,
        `accuracy_drop_points`.
      samples_us: per-run latencies of "original" and "result", measured interleaved.
      model: the result's `.tflite` (path or bytes), read for the cause.
      max_accuracy_drop: a larger drop, in points, gets a warning.
    """
    out = []
    seen, tries = cause(model)
    shows = f" What the file shows: {seen}." if seen else ""
    lat = ratios.get("latency") if isinstance(ratios.get("latency"), Mapping) else None
    q = (
        paired_ratios(samples_us.get("original", ()), samples_us.get("result", ()))
        if samples_us
        else {}
    )
    if lat is not None and is_slower(lat, q):
        p50 = [
            d.get("latency_us", {}).get("p50") if d.get("latency_us") else None
            for d in (original, result)
        ]
        figures = f" (p50 {p50[1]:.0f} us against {p50[0]:.0f} us)" if None not in p50 else ""
        spread = (
            f", {q['pairs']} interleaved pairs, middle half of the ratios {q['q25']:.2f}-{q['q75']:.2f}"
            if q
            else ""
        )
        median = q.get("median", lat.get("median"))
        out.append(
            f"The result is SLOWER than the original: latency ratio {median:.2f}{figures}"
            f"{spread}.{shows}" + (f" Worth trying: {'; '.join(tries)}." if tries else "")
        )
    size = ratios.get("size")
    if size is not None and size > 1.0:
        out.append(
            f"The result is LARGER than the original: size ratio {size:.3f} "
            f"({result.get('size_bytes')} bytes against {original.get('size_bytes')}). "
            "Worth trying: per-tensor weights (--noper_channel or --choose_granularity), "
            "int8 weights (mode 'dynamic' or 'int8'), or no sparse encoding on a model "
            "that is not sparse."
        )
    drop = ratios.get("accuracy_drop_points")
    if drop is not None and drop > max_accuracy_drop:
        both = result.get("accuracy") is not None and original.get("accuracy") is not None
        figures = (
            f" ({100 * result['accuracy']:.2f}% against {100 * original['accuracy']:.2f}%)"
            if both
            else ""
        )
        out.append(
            f"The result is LESS ACCURATE than the original: {drop:.2f} points lower{figures}. "
            "Worth trying: more calibration samples, mode 'int8_float_fallback' or "
            "selective quantization (keep the most sensitive layers float), "
            "quantization-aware training, a lower sparsity or more fine-tuning epochs."
        )
    return out
