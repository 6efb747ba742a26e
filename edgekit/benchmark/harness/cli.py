"""The flags of `python -m edgekit.benchmark`, parsed with argparse (no absl on a device).

The same names as `edgekit-benchmark`'s flags, `--name=value`. The defaults are those
of `edgekit.config.BenchmarkConfig`, written here again because this module may not
import edgekit.config; tests/test_benchmark.py checks that they agree, name by name.
"""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    """The device-side flags; values stay strings where the shared builder reads them."""
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
