r"""edgekit-check: a gate for CI -- does a .tflite model meet its limits?

    edgekit-check --model=model_int8.tflite --data=test.npz [--reference=model.keras] \
        [--min_accuracy=0.95] [--max_accuracy_drop=1.0] [--max_size_kb=256] \
        [--max_latency_ms=5 --num_threads=2] [--json=check.json]

Prints each check as PASS, FAIL or SKIP with the measured value, the limit and how it
was measured. Exit status: 0 when every check passed, 1 when one failed, 2 for bad
input (a missing file, no limit given, ...).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from edgekit.cli import _common

_MODEL = flags.DEFINE_string("model", None, "The .tflite model to check.")
_DATA = flags.DEFINE_string(
    "data",
    None,
    "Labelled evaluation data: .npz (x, y) or an image folder; needed by the accuracy checks.",
)
_REFERENCE = flags.DEFINE_string(
    "reference", None, "The Keras model the .tflite file came from; needed by --max_accuracy_drop."
)
_MIN_ACCURACY = flags.DEFINE_float(
    "min_accuracy",
    None,
    "Lowest top-1 accuracy, a fraction (0.9 for 90%).",
    lower_bound=0.0,
    upper_bound=1.0,
)
_MAX_ACCURACY_DROP = flags.DEFINE_float(
    "max_accuracy_drop",
    None,
    "Largest drop of top-1 accuracy from --reference, in percentage points (1.5 allows "
    "98.0% -> 96.5%).",
    lower_bound=0.0,
    upper_bound=100.0,
)
_MAX_SIZE_KB = flags.DEFINE_float(
    "max_size_kb", None, "Largest file size in KiB (1 KiB = 1024 bytes).", lower_bound=0.0
)
_MAX_LATENCY_MS = flags.DEFINE_float(
    "max_latency_ms",
    None,
    "Largest median (p50) latency per inference in ms, measured by the benchmark harness.",
    lower_bound=0.0,
)
_NUM_THREADS = flags.DEFINE_integer(
    "num_threads", 1, "Interpreter threads for the latency check.", lower_bound=1
)
_NUM_RUNS = flags.DEFINE_integer(
    "num_runs", 50, "Minimum timed runs for the latency check.", lower_bound=1
)
_JSON = flags.DEFINE_string("json", None, "Also write every check as JSON to this path.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --json file.")

# Exit status when a check failed (bad input exits with _common.EXIT_USER_ERROR).
EXIT_CHECK_FAILED = 1
_check_failed = False
_HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def main(argv: Sequence[str]) -> None:
    del argv  # stray arguments are rejected by _common.run
    from edgekit import check, io

    if _JSON.value:
        io.check_output_path(_JSON.value, overwrite=_OVERWRITE.value, what="JSON report")
    report = check.run_checks(
        _MODEL.value,
        _DATA.value,
        reference=_REFERENCE.value,
        min_accuracy=_MIN_ACCURACY.value,
        max_accuracy_drop=_MAX_ACCURACY_DROP.value,
        max_size_kb=_MAX_SIZE_KB.value,
        max_latency_ms=_MAX_LATENCY_MS.value,
        num_threads=_NUM_THREADS.value,
        num_runs=_NUM_RUNS.value,
    )
    print(f"edgekit-check {_MODEL.value}:")
    print(report.format())
    if _JSON.value:
        report.save(_JSON.value, overwrite=_OVERWRITE.value)
    if not report.passed:
        global _check_failed
        _check_failed = True
        sys.exit(EXIT_CHECK_FAILED)


def run() -> None:
    global _check_failed
    _check_failed = False
    try:
        _common.run(main, required=("model",))
    except SystemExit as e:
        # absl exits with 1 for a flag it cannot parse or a stray argument (a missing
        # required flag is _common.run's, already exit 2); in a CI gate 1 must mean
        # "a check failed", so bad input of every kind exits with 2.
        asked_help = any(a.split("=")[0] in _HELP_FLAGS for a in sys.argv[1:])
        if e.code == 1 and not _check_failed and not asked_help:
            raise SystemExit(_common.EXIT_USER_ERROR) from None
        raise


if __name__ == "__main__":
    run()
