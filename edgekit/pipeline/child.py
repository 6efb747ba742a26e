"""The child side of `edgekit.pipeline.run(isolate=True)`: `python -m` entry point.

    python -m edgekit.pipeline.child SPEC.json RESULT.json

Runs `runner.run` with the arguments in SPEC.json and writes the `PipelineResult` (or
`{"error": message}` for bad input, exit 2) to RESULT.json. Started by
`edgekit.pipeline.isolate`, never by users.
"""

from __future__ import annotations

import json
import pathlib
import sys

from edgekit import errors, subproc
from edgekit.pipeline import runner


def main(spec_path: str, result_path: str) -> int:
    subproc.quiet_fault_dump()
    subproc.test_crash_point("command")
    spec = json.loads(pathlib.Path(spec_path).read_text())
    try:
        result = runner.run(spec.pop("recipe"), **spec).to_dict()
    except errors.UserInputError as e:
        result = {"error": str(e)}
    pathlib.Path(result_path).write_text(json.dumps(result))
    return 2 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
