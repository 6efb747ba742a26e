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

from collections.abc import Sequence

from absl import flags

from edgekit import config
from edgekit.benchmark import command
from edgekit.cli import _common

# Every default is BenchmarkConfig's, so this command, the library and
# `python -m edgekit.benchmark` cannot drift apart (tests/test_benchmark.py checks).
_DEFAULT = config.BenchmarkConfig

_MODEL = flags.DEFINE_string("model", None, "The .tflite file to measure.")
_COMPARE = flags.DEFINE_list(
    "compare",
    [],
    "Two or more .tflite files, run interleaved (A B A B ...) over the same "
    "inputs; the first is the baseline of the ratios.",
)
_NUM_THREADS = flags.DEFINE_integer(
    "num_threads", _DEFAULT.num_threads, "Interpreter threads.", lower_bound=1
)
_THREADS_SWEEP = flags.DEFINE_list(
    "threads_sweep",
    list(_DEFAULT.threads_sweep),
    "Thread counts such as 1,2,4: one row (one fresh process) each.",
)
_WARMUP_RUNS = flags.DEFINE_integer(
    "warmup_runs", _DEFAULT.warmup_runs, "Minimum warm-up runs.", lower_bound=0
)
_WARMUP_MIN_SECS = flags.DEFINE_float(
    "warmup_min_secs", _DEFAULT.warmup_min_secs, "Minimum warm-up seconds.", lower_bound=0.0
)
_NUM_RUNS = flags.DEFINE_integer(
    "num_runs", _DEFAULT.num_runs, "Minimum timed runs.", lower_bound=1
)
_MIN_SECS = flags.DEFINE_float(
    "min_secs", _DEFAULT.min_secs, "Minimum timed seconds.", lower_bound=0.0
)
_MAX_SECS = flags.DEFINE_float(
    "max_secs", _DEFAULT.max_secs, "Stop the timed runs after this many seconds.", lower_bound=0.001
)
_USE_XNNPACK = flags.DEFINE_bool("use_xnnpack", _DEFAULT.use_xnnpack, "Apply the XNNPack delegate.")
_SIGNATURE = flags.DEFINE_string(
    "signature", _DEFAULT.signature, "Signature key to run (default: main graph)."
)
_INPUT_DATA = flags.DEFINE_string(
    "input_data",
    None,
    "Real inputs: .npy (one input) or .npz (arrays named after the inputs). "
    "Default: seeded random values over each input's range.",
)
_CPU_AFFINITY = flags.DEFINE_list(
    "cpu_affinity", list(_DEFAULT.cpu_affinity), "Core ids to pin the measurement to, e.g. 0,1."
)
_SEED = flags.DEFINE_integer("seed", _DEFAULT.seed, "Seed of the random inputs.", lower_bound=0)
_PROFILE = flags.DEFINE_bool(
    "profile", _DEFAULT.profile, "Estimate time per op (by timing truncated prefixes of the graph)."
)
_PROFILE_MAX_CUTS = flags.DEFINE_integer(
    "profile_max_cuts",
    _DEFAULT.profile_max_cuts,
    "Time at most this many graph prefixes.",
    lower_bound=2,
)
_TIMEOUT_SECS = flags.DEFINE_float(
    "timeout_secs",
    _DEFAULT.timeout_secs,
    "Stop a measurement after this long (default: from max_secs).",
    lower_bound=1.0,
)
_TARGET = flags.DEFINE_string("target", _DEFAULT.target, "Run on a device: ssh://user@host[:port].")
_SSH_KEY = flags.DEFINE_string(
    "ssh_key", _DEFAULT.ssh_key, "SSH private key (default: agent/default keys)."
)
_SSH_OPTION = flags.DEFINE_multi_string(
    "ssh_option", list(_DEFAULT.ssh_options), "Extra `ssh -o` option (repeatable)."
)
_REMOTE_PYTHON = flags.DEFINE_string(
    "remote_python", _DEFAULT.remote_python, "The Python on the device."
)
_JSON = flags.DEFINE_string("json", None, "Also write the figures as JSON to this path.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --json file.")


def main(argv: Sequence[str]) -> None:
    del argv  # stray arguments are rejected by _common.run
    if not _MODEL.value and not _COMPARE.value:
        _common.require("model", hint=" (or pass --compare=a.tflite,b.tflite)")
    cfg, models = command.config_from_flags(
        model=_MODEL.value,
        compare=_COMPARE.value,
        num_threads=_NUM_THREADS.value,
        threads_sweep=_THREADS_SWEEP.value,
        warmup_runs=_WARMUP_RUNS.value,
        warmup_min_secs=_WARMUP_MIN_SECS.value,
        num_runs=_NUM_RUNS.value,
        min_secs=_MIN_SECS.value,
        max_secs=_MAX_SECS.value,
        use_xnnpack=_USE_XNNPACK.value,
        signature=_SIGNATURE.value,
        cpu_affinity=_CPU_AFFINITY.value,
        seed=_SEED.value,
        profile=_PROFILE.value,
        profile_max_cuts=_PROFILE_MAX_CUTS.value,
        timeout_secs=_TIMEOUT_SECS.value,
        target=_TARGET.value,
        ssh_key=_SSH_KEY.value,
        ssh_option=_SSH_OPTION.value,
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
