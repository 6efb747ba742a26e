"""What both benchmark commands share: flag values -> a config, and measure-print-save.

`edgekit-benchmark` (absl, `edgekit.cli.benchmark`) and `python -m edgekit.benchmark`
(argparse, for devices without absl) parse the same flags and call these.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from edgekit import config, errors, io
from edgekit.benchmark import measure, results


def parse_bool(text: str | bool, name: str) -> bool:
    """Reads a boolean flag given as a bool or as true/false, yes/no, on/off, 1/0."""
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


def config_from_flags(
    *,
    model: str | None,
    compare: str | Sequence[str] | None,
    num_threads: int,
    threads_sweep: str | Sequence[str] | None,
    warmup_runs: int,
    warmup_min_secs: float,
    num_runs: int,
    min_secs: float,
    max_secs: float,
    use_xnnpack: str | bool,
    signature: str | None,
    cpu_affinity: str | Sequence[str] | None,
    seed: int,
    profile: str | bool,
    profile_max_cuts: int,
    timeout_secs: float | None,
    target: str | None,
    ssh_key: str | None,
    ssh_option: Sequence[str],
    remote_python: str,
) -> tuple[config.BenchmarkConfig, list[str]]:
    """Builds (config, models) from the flags of either command, one name per flag.

    Lists come as absl gives them (a list of strings) or as argparse does (one
    comma-separated string); booleans as bools or as `true`/`false`; an empty string
    means unset. Every other value goes to `BenchmarkConfig`, which checks it.
    """
    if isinstance(compare, str):
        models = [m for m in compare.split(",") if m.strip()]
    else:
        models = list(compare or [])
    if model and models:
        raise errors.UserInputError(
            "Pass either --model or --compare, not both. "
            + errors.received(model=model, compare=compare)
        )
    if model:
        models = [model]
    if not models:
        raise errors.UserInputError(
            "No model given. Pass --model=model.tflite (or --compare=a.tflite,b.tflite). "
            + errors.received(model=model)
        )
    cfg = config.BenchmarkConfig(
        num_threads=num_threads,
        threads_sweep=parse_int_list(_joined(threads_sweep), "threads_sweep"),
        warmup_runs=warmup_runs,
        warmup_min_secs=warmup_min_secs,
        num_runs=num_runs,
        min_secs=min_secs,
        max_secs=max_secs,
        use_xnnpack=parse_bool(use_xnnpack, "use_xnnpack"),
        signature=signature or None,
        cpu_affinity=parse_int_list(_joined(cpu_affinity), "cpu_affinity"),
        seed=seed,
        profile=parse_bool(profile, "profile"),
        profile_max_cuts=profile_max_cuts,
        timeout_secs=timeout_secs,
        target=target or None,
        ssh_key=os.path.expanduser(ssh_key) if ssh_key else None,
        ssh_options=tuple(ssh_option),
        remote_python=remote_python,
    )
    return cfg, models


def _joined(value: str | Sequence[str] | None) -> str | None:
    return value if value is None or isinstance(value, str) else ",".join(value)


def run_and_report(
    cfg: config.BenchmarkConfig,
    models: list[str],
    *,
    input_data: str | None,
    json_path: str | None,
    overwrite: bool,
) -> results.BenchmarkResult:
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
