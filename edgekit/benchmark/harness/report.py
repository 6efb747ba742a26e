"""The benchmark's printed report, and the plain tables every edgekit command prints.

Part of the harness, so it imports only the standard library: `python -m
edgekit.benchmark` prints this report on a device without absl, and the absl
commands (`edgekit.cli._common`) print their tables with the same `format_table`.
"""

from __future__ import annotations

import math
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

# Headers whose last word is one of these name columns of durations in that unit;
# `format_table` re-states each such column in the unit that suits its values.
_TIME_UNITS = {"us": 1.0, "µs": 1.0, "ms": 1e3, "s": 1e6}  # in microseconds


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned table: left-aligned first column, the others right-aligned.

    Numbers print as plain decimals, never `7.1e+04`. A column whose header ends in a
    unit of time (`p50 us`, `init ms`, `total s`) holds durations in that unit: it is
    shown in one unit -- µs, ms or s, chosen from the column's largest value -- with
    the same decimals on every row, and the header states the unit chosen.

    Example:
        >>> print(format_table([["a", 71234.0], ["b", 9.8]], ["model", "p50 us"]))
        model  p50 ms
        -----  ------
        a      71.235
        b       0.010
    """
    headers = [str(h) for h in headers]
    body = [[_fmt(c) for c in r] for r in rows]
    for i, h in enumerate(headers):
        parts = h.rsplit(" ", 1)
        if len(parts) == 2 and parts[1] in _TIME_UNITS:
            column = _time_column([r[i] for r in rows], _TIME_UNITS[parts[1]])
            if column is not None:
                unit, cells = column
                headers[i] = f"{parts[0]} {unit}"
                for r, cell in zip(body, cells, strict=True):
                    r[i] = cell
    cells = [headers, *body]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _time_column(values: Sequence[Any], scale_us: float) -> tuple[str, list[str]] | None:
    """One unit and one number of decimals for a column of durations; None if not numeric."""
    us = [_as_float(v) for v in values]
    if any(u is None and v not in (None, "-", "") for u, v in zip(us, values, strict=True)):
        return None  # text in the column: leave it as it is
    known = [abs(u) * scale_us for u in us if u is not None]
    if not known:
        return None
    largest = max(known)
    unit, div = ("µs", 1.0) if largest < 1e3 else ("ms", 1e3) if largest < 1e6 else ("s", 1e6)
    smallest = min((k for k in known if k > 0), default=largest) / div
    decimals = 0 if smallest >= 100 else 1 if smallest >= 10 else 2 if smallest >= 1 else 3
    cells = ["-" if u is None else f"{u * scale_us / div:.{decimals}f}" for u in us]
    return unit, cells


def _plain(x: float) -> str:
    """About four significant digits as a plain decimal: 71234, 12.35, 0.001234."""
    if x == 0 or not math.isfinite(x):
        return str(x) if not math.isfinite(x) else "0"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    decimals = min(8, max(0, 3 - math.floor(math.log10(abs(x)))))
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return _plain(value)
    return str(value)


def _num(x: float | None) -> str:
    return "-" if x is None else _plain(x)


def _short(name: str) -> str:
    if len(name) <= 40:
        return name
    base = os.path.basename(name)
    return base if len(base) <= 40 else "..." + name[-37:]


def format_result(result: Any) -> str:
    """The report of a `BenchmarkResult`: environment, table, ratios, profile."""
    env = result.environment
    cfg = result.config
    affinity = f", pinned to {env.get('cpu_affinity')}" if cfg.cpu_affinity else ""
    lines = [
        f"CPU: {env.get('cpu_model')} ({env.get('machine')}, {env.get('logical_cores')} logical "
        f"cores{affinity}; ISA: {', '.join(env.get('isa_features') or []) or '-'})"
        + (f" on {cfg.target}" if cfg.target else ""),
        f"LiteRT {env.get('litert_version')}, Python {env.get('python')}, XNNPack "
        f"{'on' if cfg.use_xnnpack else 'off'}; warm-up >= {cfg.warmup_runs} runs and "
        f"{cfg.warmup_min_secs:g} s; steady state >= {cfg.num_runs} runs and {cfg.min_secs:g} s "
        f"(<= {cfg.max_secs:g} s); inputs: {result.rows[0].input_source}",
        *_load_line(env),
        "",
    ]
    lat_rows, load_rows = [], []
    for r in result.rows:
        lat = r.latency_us
        name = _short(r.model)
        lat_rows.append(
            [
                name,
                r.num_threads,
                r.num_runs,
                lat["mean"],
                lat["std"],
                lat["min"],
                lat["p50"],
                lat["p90"],
                lat["p95"],
                lat["p99"],
                lat["max"],
                r.throughput_per_s,
            ]
        )
        load_rows.append(
            [
                name,
                r.num_threads,
                r.model_size_bytes / 1024,
                r.init_ms,
                r.first_inference_us,
                r.warmup_runs,
                r.warmup_mean_us,
                r.peak_rss_mb,
                r.memory.get("init_added_mb"),
                r.memory.get("inference_added_mb"),
            ]
        )
    lines.append("Steady-state latency per inference:")
    lines.append(
        format_table(
            lat_rows,
            [
                "model",
                "threads",
                "runs",
                "mean us",
                "std us",
                "min us",
                "p50 us",
                "p90 us",
                "p95 us",
                "p99 us",
                "max us",
                "inf/s",
            ],
        )
    )
    lines += ["", "Load, first run, warm-up and memory:"]
    rows = load_rows
    headers = [
        "model",
        "threads",
        "size KiB",
        "init ms",
        "first us",
        "warm-ups",
        "warm-up mean us",
        "peak RSS MiB",
        "+init MiB",
        "+inference MiB",
    ]
    lines.append(format_table(rows, headers))
    if result.ratios:
        lines += ["", "Time ratio to the first model, per interleaved pair (below 1 is faster):"]
        lines.append(
            format_table(
                [
                    [
                        _short(q["model"]),
                        _short(q["baseline"]),
                        q["pairs"],
                        q["min"],
                        q["median"],
                        q["max"],
                    ]
                    for q in result.ratios
                ],
                ["model", "baseline", "pairs", "min", "median", "max"],
            )
        )
        lines.append(
            "(memory figures in a comparison belong to the one process holding all models)"
        )
    for r in result.rows:
        if r.profile:
            lines += ["", *_format_profile(r)]
    return "\n".join(lines)


def _load_line(env: dict) -> list[str]:
    start, end, cores = (
        env.get("load_average_start"),
        env.get("load_average_end"),
        env.get("logical_cores"),
    )
    if start is None or end is None or not cores:
        return []
    line = f"Machine load (1-min average): {start:g} at start, {end:g} at end, on {cores} cores"
    if max(start, end) > 0.75 * cores:
        line += (
            ". The machine is busy: other processes take CPU time, so means and tails are "
            "inflated; trust p50 and --compare ratios more, or measure when it is quiet"
        )
    return [line + "."]


def _format_profile(r: Any) -> list[str]:
    p = r.profile or {}
    if "error" in p:
        return [f"Per-op profile of {_short(r.model)}: not available ({p['error']})."]
    return [
        f"Per-op profile of {_short(r.model)} at {r.num_threads} thread(s): ESTIMATES from "
        f"timing {p['num_cuts']} truncated prefixes of the {p['num_ops']}-op graph (fastest of "
        f"{p['runs_per_cut']} runs x {p['passes']} passes; the estimates add up to "
        f"{p['sum_of_estimates_us']:.1f} us over an empty graph of {_num(p['empty_graph_us'])} "
        f"us; the full graph's fastest run: {_num(p.get('full_model_us'))} us; "
        f"{p['monotone_violations']} out-of-order prefix times pooled). Method: profile.method "
        "in the JSON.",
        format_table(
            [
                [e["op_type"], e["count"], e["total_us"], f"{100 * e['share']:.1f}%"]
                for e in p["by_op_type"]
            ],
            ["op type", "count", "est. us", "share"],
        ),
        "",
        "10 slowest ops (estimates):",
        format_table(
            [[e["index"], e["op_type"], e["us"], e["output"][-48:]] for e in p["slowest_ops"]],
            ["op #", "op type", "est. us", "output tensor"],
        ),
    ]


def print_error(message: str) -> None:
    text = textwrap.fill(message, width=100, break_long_words=False, break_on_hyphens=False)
    print(f"error: {text}", file=sys.stderr)
