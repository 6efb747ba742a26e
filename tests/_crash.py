"""A `.tflite` file that crashes the interpreter after passing edgekit's checks.

`recursive_call_once_model` (test_benchmark) crashes LiteRT with SIGSEGV on the first
invoke; edgekit's `subgraph_cycle` check refuses it. To stand for the next crash the
checks do not know yet, `checker_gap` switches that one check off, in this process
(`monkeypatch`) or in a command's process (`run_command_with_checker_gap`).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
from test_benchmark import recursive_call_once_model

DATA = pathlib.Path(__file__).parent / "data"
_GAP = "from edgekit.lite import checks; checks._check_no_cycle = lambda model: None"


def crash_files(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes crash.tflite (input (-1, 8, 8, 1)) and labelled data.npz that fits it."""
    model = folder / "crash.tflite"
    model.write_bytes(recursive_call_once_model((DATA / "tiny_float.tflite").read_bytes()))
    data = folder / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((16, 8, 8, 1), dtype=np.float32), y=np.arange(16) % 4)
    return model, data


def checker_gap(monkeypatch) -> None:
    from edgekit.lite import checks

    monkeypatch.setattr(checks, "_check_no_cycle", lambda model: None)


def run_command_with_checker_gap(script_module: str, argv: list[str]):
    """Runs `<script_module>.run()` (a console script) with the cycle check switched off."""
    code = f"{_GAP}; import sys; sys.argv = {argv!r}; from {script_module} import run; run()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
