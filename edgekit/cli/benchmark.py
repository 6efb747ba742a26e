"""edgekit-benchmark: latency and memory of .tflite models, here or on a device over SSH.

Examples:
  edgekit-benchmark --model=model.tflite --num_threads=2 --json=latency.json
  edgekit-benchmark --model=model.tflite --threads_sweep=1,2,4 --profile
  edgekit-benchmark --compare=float32.tflite,int8.tflite --num_runs=200
  edgekit-benchmark --model=model.tflite --target=ssh://pi@raspberrypi.local --ssh_key=~/.ssh/id_ed25519

On a device with only numpy and ai-edge-litert, `python -m edgekit.benchmark` takes
the same flags.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import flags

from edgekit import benchmark, errors
from edgekit.benchmark import command
from edgekit.cli import _common

_MODEL = flags.DEFINE_string("model", None, "The .tflite file to measure.")
_COMPARE = flags.DEFINE_list(
    "compare",
    [],
    "Two or more .tflite files, run interleaved (A B A B ...) over the same "
    "inputs; the first is the baseline of the ratios.",
)
_NUM_THREADS = flags.DEFINE_integer("num_threads", 1, "Interpreter threads.", lower_bound=1)
_THREADS_SWEEP = flags.DEFINE_list(
    "threads_sweep", [], "Thread counts such as 1,2,4: one row (one fresh process) each."
)
_WARMUP_RUNS = flags.DEFINE_integer("warmup_runs", 1, "Minimum warm-up runs.", lower_bound=0)
_WARMUP_MIN_SECS = flags.DEFINE_float(
    "warmup_min_secs", 0.5, "Minimum warm-up seconds.", lower_bound=0.0
)
_NUM_RUNS = flags.DEFINE_integer("num_runs", 50, "Minimum timed runs.", lower_bound=1)
_MIN_SECS = flags.DEFINE_float("min_secs", 1.0, "Minimum timed seconds.", lower_bound=0.0)
_MAX_SECS = flags.DEFINE_float(
    "max_secs", 150.0, "Stop the timed runs after this many seconds.", lower_bound=0.001
)
_USE_XNNPACK = flags.DEFINE_bool("use_xnnpack", True, "Apply the XNNPack delegate.")
_SIGNATURE = flags.DEFINE_string("signature", None, "Signature key to run (default: main graph).")
_INPUT_DATA = flags.DEFINE_string(
    "input_data",
    None,
    "Real inputs: .npy (one input) or .npz (arrays named after the inputs). "
    "Default: seeded random values over each input's range.",
)
_CPU_AFFINITY = flags.DEFINE_list(
    "cpu_affinity", [], "Core ids to pin the measurement to, e.g. 0,1."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random inputs.", lower_bound=0)
_PROFILE = flags.DEFINE_bool(
    "profile", False, "Estimate time per op (by timing truncated prefixes of the graph)."
)
_PROFILE_MAX_CUTS = flags.DEFINE_integer(
    "profile_max_cuts", 64, "Time at most this many graph prefixes.", lower_bound=2
)
_TIMEOUT_SECS = flags.DEFINE_float(
    "timeout_secs",
    None,
    "Stop a measurement after this long (default: from max_secs).",
    lower_bound=1.0,
)
_TARGET = flags.DEFINE_string("target", None, "Run on a device: ssh://user@host[:port].")
_SSH_KEY = flags.DEFINE_string("ssh_key", None, "SSH private key (default: agent/default keys).")
_SSH_OPTION = flags.DEFINE_multi_string("ssh_option", [], "Extra `ssh -o` option (repeatable).")
_REMOTE_PYTHON = flags.DEFINE_string("remote_python", "python3", "The Python on the device.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures as JSON to this path.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --json file.")


def main(argv: Sequence[str]) -> None:
    del argv  # stray arguments are rejected by _common.run
    models = list(_COMPARE.value)
    if _MODEL.value and models:
        raise errors.UserInputError(
            "Pass either --model or --compare, not both. "
            + errors.received(model=_MODEL.value, compare=models)
        )
    if _MODEL.value:
        models = [_MODEL.value]
    if not models:
        raise errors.UserInputError(
            "No model given. Pass --model=model.tflite (or --compare=a.tflite,b.tflite). "
            + errors.received(model=_MODEL.value)
        )
    cfg = benchmark.BenchmarkConfig(
        num_threads=_NUM_THREADS.value,
        threads_sweep=command.parse_int_list(",".join(_THREADS_SWEEP.value), "threads_sweep"),
        warmup_runs=_WARMUP_RUNS.value,
        warmup_min_secs=_WARMUP_MIN_SECS.value,
        num_runs=_NUM_RUNS.value,
        min_secs=_MIN_SECS.value,
        max_secs=_MAX_SECS.value,
        use_xnnpack=_USE_XNNPACK.value,
        signature=_SIGNATURE.value,
        cpu_affinity=command.parse_int_list(",".join(_CPU_AFFINITY.value), "cpu_affinity"),
        seed=_SEED.value,
        profile=_PROFILE.value,
        profile_max_cuts=_PROFILE_MAX_CUTS.value,
        timeout_secs=_TIMEOUT_SECS.value,
        target=_TARGET.value,
        ssh_key=os.path.expanduser(_SSH_KEY.value) if _SSH_KEY.value else None,
        ssh_options=tuple(_SSH_OPTION.value),
        remote_python=_REMOTE_PYTHON.value,
    )
    command.run_and_report(
        cfg,
        models,
        input_data=_INPUT_DATA.value,
        json_path=_JSON.value,
        overwrite=_OVERWRITE.value,
    )


def run() -> None:
    _common.run(main)


if __name__ == "__main__":
    run()
