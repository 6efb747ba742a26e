"""`python -m edgekit.benchmark --model=m.tflite`: the benchmark where absl is missing.

Takes the same flags as `edgekit-benchmark`, parsed with argparse, so it runs on a
device with only numpy and ai-edge-litert (and this source tree on the path).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from edgekit import errors
from edgekit.benchmark import command
from edgekit.benchmark.harness import cli, report


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m edgekit.benchmark --model=...`; returns the exit status."""
    flags = vars(cli.parser().parse_args(argv))
    json_path, overwrite, input_data = (flags.pop(k) for k in ("json", "overwrite", "input_data"))
    try:
        cfg, models = command.config_from_flags(**flags)
        command.run_and_report(
            cfg,
            models,
            input_data=input_data,
            json_path=json_path,
            overwrite=command.parse_bool(overwrite, "overwrite"),
        )
    except errors.UserInputError as e:
        report.print_error(str(e))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
