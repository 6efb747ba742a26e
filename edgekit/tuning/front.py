"""Constraints, the Pareto front with a latency noise band, and the choice of one candidate.

Objectives: accuracy (higher), size in bytes (smaller), p50 latency (smaller). Two
latencies within the measured noise band of each other are a tie: neither is better,
and the next objective decides. The noise band is the run-to-run spread of the float32
baseline, which every trial measures again interleaved with its candidate: latencies
are compared after removing the machine's drift between trials (`corrected_latency`).
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

# The noise band is never taken below 2% (two measurements are not enough to
# trust a narrower one) nor above 25%.
MIN_NOISE, MAX_NOISE = 0.02, 0.25
# Which objective decides after a tie on the previous one.
ORDER = {
    "latency": ("latency", "accuracy", "size"),
    "size": ("size", "accuracy", "latency"),
    "accuracy": ("accuracy", "latency", "size"),
}


@dataclasses.dataclass(frozen=True)
class Limits:
    """The user's constraints; None for a constraint not asked for."""

    max_accuracy_drop: float | None = None  # points
    max_size_kb: float | None = None
    max_latency_ms: float | None = None
    max_peak_memory_mb: float | None = None
    integer_only: bool = False

    def check_any(self) -> bool:
        """True when at least one constraint is asked for."""
        return self.integer_only or any(
            v is not None
            for v in (self.max_accuracy_drop, self.max_size_kb, self.max_latency_ms,
                      self.max_peak_memory_mb)
        )  # fmt: skip

    def check(self, m: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """name -> {limit, value, met} for every constraint asked for."""
        out: dict[str, dict[str, Any]] = {}

        def put(name: str, limit: Any, value: Any) -> None:
            met = value is not None and value <= limit
            out[name] = {"limit": limit, "value": value, "met": bool(met)}

        if self.max_accuracy_drop is not None:
            put("max_accuracy_drop", self.max_accuracy_drop, m.get("accuracy_drop_points"))
        if self.max_size_kb is not None:
            put("max_size_kb", self.max_size_kb, m["size_bytes"] / 1024)
        if self.max_latency_ms is not None:
            put("max_latency_ms", self.max_latency_ms, m["latency_us"]["p50"] / 1000)
        if self.max_peak_memory_mb is not None:
            put("max_peak_memory_mb", self.max_peak_memory_mb, m.get("peak_memory_mb"))
        if self.integer_only:
            ops = m.get("float_ops") or []
            out["integer_only"] = {"limit": 0, "value": len(ops), "met": not ops, "float_ops": ops}
        return out

    def violations(self, m: dict[str, Any]) -> list[float]:
        """Optuna's constraint values: <= 0 where a constraint is met."""
        rows = self.check(m)
        out = []
        for r in rows.values():
            v = r["value"]
            out.append(float("inf") if v is None else float(v) - float(r["limit"]))
        return out


def _group(m: dict[str, Any]) -> tuple:
    return (m.get("num_threads"), m.get("use_xnnpack"), m.get("target"))


def corrected_latency(rows: list[dict[str, Any]]) -> None:
    """Sets each row's `latency_us_corrected`: its p50 freed of the machine's drift.

    A trial's candidate and the float32 baseline run interleaved in one process, so
    their ratio (the median of per-run pairs) holds even when the machine gets busier
    between trials; times the median float32 p50 over the trials of the same runtime
    setting (threads, XNNPack, target), it is a latency every trial can be compared on.
    """
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        m = r["measurements"]
        groups.setdefault(_group(m), []).append(m["float_latency_us"]["p50"])
    for r in rows:
        m = r["measurements"]
        ratio = m.get("latency_ratio_median")
        base = statistics.median(groups[_group(m)])
        r["latency_us_corrected"] = ratio * base if ratio else m["latency_us"]["p50"]


def noise_band(rows: list[dict[str, Any]]) -> float:
    """Relative uncertainty of the corrected latencies, clipped to [2%, 25%].

    Measured three ways, the widest wins: the same computation measured in two trials
    (two candidates whose files have the same `graph_sha256`: the same kernels on the
    same weights, say a built-in recipe's file and the search's own with the batch fixed
    at 1) differs by this much; the float32 candidate's ratio to the float32 baseline
    (the same file) is this far from 1; and within one run, the two ratio estimates
    (median of per-run pairs, ratio of p50s) differ by this much (median over the
    trials). Call `corrected_latency` first.
    """
    spreads = [MIN_NOISE]
    gaps = []
    same_file: dict[tuple, list[float]] = {}
    for r in rows:
        m = r["measurements"]
        ratio = m.get("latency_ratio_median")
        if ratio:
            p50_ratio = m["latency_us"]["p50"] / m["float_latency_us"]["p50"]
            gaps.append(abs(p50_ratio - ratio) / ratio)
            if r.get("candidate") == "float32":
                spreads.append(abs(ratio - 1.0))
        same = m.get("graph_sha256") or m.get("sha256")
        if same and r.get("latency_us_corrected"):
            same_file.setdefault((same, *_group(m)), []).append(r["latency_us_corrected"])
    for values in same_file.values():
        if len(values) >= 2:
            spreads.append((max(values) - min(values)) / min(values))
    if gaps:
        spreads.append(statistics.median(gaps))
    return min(MAX_NOISE, max(spreads))


def compare(a: dict[str, Any], b: dict[str, Any], objective: str, noise: float) -> int:
    """-1 if a is better than b on this objective, 1 if worse, 0 for a tie."""
    ma, mb = a["measurements"], b["measurements"]
    if objective == "accuracy":
        x, y = -(ma["accuracy"] or 0.0), -(mb["accuracy"] or 0.0)
        return (x > y) - (x < y)
    if objective == "size":
        x, y = ma["size_bytes"], mb["size_bytes"]
        return (x > y) - (x < y)
    x = a.get("latency_us_corrected") or ma["latency_us"]["p50"]
    y = b.get("latency_us_corrected") or mb["latency_us"]["p50"]
    if abs(x - y) <= noise * min(x, y):
        return 0
    return 1 if x > y else -1


def dominates(a: dict[str, Any], b: dict[str, Any], noise: float) -> bool:
    signs = [compare(a, b, o, noise) for o in ("accuracy", "size", "latency")]
    return all(s <= 0 for s in signs) and any(s < 0 for s in signs)


def pareto(rows: list[dict[str, Any]], noise: float) -> list[dict[str, Any]]:
    """The rows no other row dominates (latency ties within the noise band)."""
    return [r for r in rows if not any(dominates(o, r, noise) for o in rows if o is not r)]


def no_worse(a: dict[str, Any], b: dict[str, Any], noise: float) -> bool:
    """True when a loses to b on no objective (latency ties within the noise band)."""
    return all(compare(a, b, o, noise) <= 0 for o in ("accuracy", "size", "latency"))


def choose(
    rows: list[dict[str, Any]],
    objective: str,
    noise: float,
    reference: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """The best row for the objective, ties decided by the next objectives in `ORDER`.

    A latency tie is against the fastest remaining row: every row within the noise
    band of it stays in, and the next objective picks among them.

    `reference` rows (the built-in recipes' own files, measured in the same search) set
    a floor inside the tie: the best of them for the objective is found the same way,
    and when rows tied on the objective lose to it on nothing (accuracy, size, latency
    within the band), only those go on to the next objectives. So a tie is never
    settled by trading away something the best built-in recipe already gives, while a
    row better on the objective itself, beyond the noise, still wins.
    """
    floor = choose(reference, objective, noise) if reference else None
    pool = list(rows)
    for step, obj in enumerate(ORDER[objective]):
        if len(pool) <= 1:
            break
        best = pool[0]
        for r in pool[1:]:
            if compare(r, best, obj, 0.0) < 0:
                best = r
        pool = [r for r in pool if compare(r, best, obj, noise) == 0]
        if step == 0 and floor is not None:
            pool = [r for r in pool if no_worse(r, floor, noise)] or pool
    return min(pool, key=lambda r: r["number"]) if pool else None


def closest(rows: list[dict[str, Any]], limits: Limits) -> dict[str, dict[str, Any]]:
    """Per constraint, the candidate that comes nearest to meeting it, and by how much."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        for name, c in r["constraints"].items():
            if c["value"] is None:
                continue
            gap = float(c["value"]) - float(c["limit"])
            if name not in out or gap < out[name]["gap"]:
                out[name] = {
                    "candidate": r["candidate"],
                    "value": c["value"],
                    "limit": c["limit"],
                    "gap": gap,
                    "met": c["met"],
                }
    return out
