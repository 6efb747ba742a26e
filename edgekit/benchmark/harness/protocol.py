"""The contract between the parent (`edgekit.benchmark.measure`) and the measuring process.

The parent writes SPEC.json (see `edgekit.benchmark.measure.child_spec`); the child
writes RESULT.json with `{"ok": true, ...}` or `{"ok": false, "error": {"kind": ...,
"message": ...}}`. If the runtime crashes or hangs, no result is written: the parent
sees the signal or the timeout, and the last progress marker on stderr
(`STAGE_PREFIX` + stage name) tells it where it happened.
"""

from __future__ import annotations

import sys

STAGE_PREFIX = "edgekit-bench-stage: "


class ChildError(Exception):
    """An error to report to the parent as a message, with a kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def stage(name: str) -> None:
    sys.stderr.write(STAGE_PREFIX + name + "\n")
    sys.stderr.flush()
