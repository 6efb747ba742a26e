"""The benchmark's printed report, and `python -m edgekit.benchmark` for devices.

Kept apart from `edgekit.cli` on purpose: the command-line tools use absl, but the
harness must run on a device with only numpy and ai-edge-litert, so this module
parses the same flags (`--name=value`) with argparse and formats tables itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from edgekit import errors


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned table (the same layout as `edgekit.cli._common.format_table`)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


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
    lines.append("Steady-state latency (us):")
    lines.append(
        format_table(
            lat_rows,
            [
                "model",
                "threads",
                "runs",
                "mean",
                "std",
                "min",
                "p50",
                "p90",
                "p95",
                "p99",
                "max",
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


# -- flags shared in meaning with edgekit-benchmark ---------------------------------


def parse_bool(text: str | bool, name: str) -> bool:
    if isinstance(text, bool):
        return text
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise errors.UserInputError(f"--{name} takes true or false. " + errors.received(**{name: text}))


def parse_int_list(text: str | None, name: str) -> tuple[int, ...]:
    """Parses `1,2,4` into integers, with a clear error for anything else."""
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise errors.UserInputError(
            f"--{name} takes comma-separated whole numbers such as 1,2,4. "
            + errors.received(**{name: text})
        ) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edgekit.benchmark",
        description="Latency and memory of a .tflite model (numpy + ai-edge-litert only).",
    )
    add = p.add_argument
    add("--model", help="the .tflite file to measure")
    add(
        "--compare",
        help="comma-separated .tflite files, run interleaved; the first is the baseline",
    )
    add("--num_threads", type=int, default=1)
    add("--threads_sweep", help="comma-separated thread counts, one row (one process) each")
    add("--warmup_runs", type=int, default=1)
    add("--warmup_min_secs", type=float, default=0.5)
    add("--num_runs", type=int, default=50)
    add("--min_secs", type=float, default=1.0)
    add("--max_secs", type=float, default=150.0)
    add("--use_xnnpack", default="true")
    add("--signature", default=None)
    add("--input_data", default=None, help=".npy (one input) or .npz (arrays named after inputs)")
    add("--cpu_affinity", help="comma-separated core ids to pin the measuring process to")
    add("--seed", type=int, default=0)
    add("--profile", nargs="?", const="true", default="false")
    add("--profile_max_cuts", type=int, default=64)
    add("--timeout_secs", type=float, default=None)
    add("--target", default=None, help="ssh://user@host[:port]")
    add("--ssh_key", default=None)
    add("--ssh_option", action="append", default=[], help="extra ssh -o option (repeatable)")
    add("--remote_python", default="python3")
    add("--json", default=None, help="also write the figures as JSON to this path")
    add("--overwrite", nargs="?", const="true", default="false")
    return p


def config_from_args(args: argparse.Namespace) -> tuple[Any, list[str], str | None]:
    """Builds (config, models, input_data) from parsed device-side flags."""
    from edgekit import benchmark

    models = [m for m in (args.compare or "").split(",") if m.strip()]
    if args.model and models:
        raise errors.UserInputError(
            "Pass either --model or --compare, not both. "
            + errors.received(model=args.model, compare=args.compare)
        )
    if args.model:
        models = [args.model]
    if not models:
        raise errors.UserInputError(
            "No model given. Pass --model=model.tflite (or --compare=a.tflite,b.tflite). "
            + errors.received(model=args.model)
        )
    cfg = benchmark.BenchmarkConfig(
        num_threads=args.num_threads,
        threads_sweep=parse_int_list(args.threads_sweep, "threads_sweep"),
        warmup_runs=args.warmup_runs,
        warmup_min_secs=args.warmup_min_secs,
        num_runs=args.num_runs,
        min_secs=args.min_secs,
        max_secs=args.max_secs,
        use_xnnpack=parse_bool(args.use_xnnpack, "use_xnnpack"),
        signature=args.signature or None,
        cpu_affinity=parse_int_list(args.cpu_affinity, "cpu_affinity"),
        seed=args.seed,
        profile=parse_bool(args.profile, "profile"),
        profile_max_cuts=args.profile_max_cuts,
        timeout_secs=args.timeout_secs,
        target=args.target or None,
        ssh_key=os.path.expanduser(args.ssh_key) if args.ssh_key else None,
        ssh_options=tuple(args.ssh_option),
        remote_python=args.remote_python,
    )
    return cfg, models, args.input_data


def run_and_report(
    cfg: Any, models: list[str], *, input_data: str | None, json_path: str | None, overwrite: bool
) -> Any:
    """Measures (one model or a comparison), prints the report, writes the JSON."""
    from edgekit import benchmark, io

    if json_path:
        io.check_output_path(json_path, overwrite=overwrite, what="json output")
    if len(models) > 1:
        result = benchmark.compare(models, cfg, input_data=input_data)
    else:
        result = benchmark.benchmark(models[0], cfg, input_data=input_data)
    print(result.format())
    if json_path:
        result.save(json_path, overwrite=overwrite)
        print(f"\nWrote {json_path}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m edgekit.benchmark --model=...`; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        cfg, models, input_data = config_from_args(args)
        run_and_report(
            cfg,
            models,
            input_data=input_data,
            json_path=args.json,
            overwrite=parse_bool(args.overwrite, "overwrite"),
        )
    except errors.UserInputError as e:
        print_error(str(e))
        return 2
    return 0
