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
    args = cli.parser().parse_args(argv)
    try:
        cfg, models, input_data = command.config_from_args(args)
        command.run_and_report(
            cfg,
            models,
            input_data=input_data,
            json_path=args.json,
            overwrite=command.parse_bool(args.overwrite, "overwrite"),
        )
    except errors.UserInputError as e:
        report.print_error(str(e))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
