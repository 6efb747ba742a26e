"""What both benchmark commands share: flag values -> a config, and measure-print-save.

`edgekit-benchmark` (absl, `edgekit.cli.benchmark`) and `python -m edgekit.benchmark`
(argparse, for devices without absl) parse the same flags and call these.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from edgekit import config, errors, io
from edgekit.benchmark import measure


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


def config_from_args(args: argparse.Namespace) -> tuple[Any, list[str], str | None]:
    """Builds (config, models, input_data) from parsed device-side flags."""
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
    cfg = config.BenchmarkConfig(
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
    if json_path:
        io.check_output_path(json_path, overwrite=overwrite, what="json output")
    if len(models) > 1:
        result = measure.compare(models, cfg, input_data=input_data)
    else:
        result = measure.benchmark(models[0], cfg, input_data=input_data)
    print(result.format())
    if json_path:
        result.save(json_path, overwrite=overwrite)
        print(f"\nWrote {json_path}")
    return result
