"""What C++ code prints while converting or quantizing: captured, filtered to warnings."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# Lines the converter prints on every run; they tell the user nothing.
_NOISE = (
    "Ignored output_format",
    "Ignored drop_control_dependency",
    "absl::InitializeLog",
    "cuInit",
    "cuda",
    "TF-TRT",
    "oneDNN",
    "Statistics for quantized inputs were expected",  # every int8 run; harmless
    "warnings.warn(",
)


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Captures what C++ code writes to file descriptor 2 (the converter's log)."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


def warnings_from(lines: list[str]) -> tuple[str, ...]:
    """The warning lines of a captured log, without glog prefixes, noise or repeats."""
    out: list[str] = []
    for line in lines:
        text = line.strip()
        if not text or any(n in text for n in _NOISE):
            continue
        if text[:1] in "WE" and re.match(r"^[WE]\d{4} ", text) or "warning" in text.lower():
            # Drop the glog prefix: "W0000 00:00:17.. 123 file.cc:45] message".
            text = re.sub(r"^[WE]\d{4} [\d:.]+\s+\d+ [^\]]+\] ", "", text)
            if text not in out:
                out.append(text)
    return tuple(out)
