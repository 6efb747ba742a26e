"""The layers of DESIGN.md hold: import-linter's contracts pass, and they do bite.

`.importlinter` states the layers; grimp reads every import statement, including those
written inside functions, so a lazy upward import is caught like any other.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT = pathlib.Path(sys.executable).with_name("lint-imports")


def _lint(tree: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_layers_and_no_cycle_contracts_pass():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken" in proc.stdout


def test_an_upward_import_inside_a_function_breaks_the_layers_contract(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / ".importlinter", tree)
    shutil.copytree(ROOT / "edgekit", tree / "edgekit", ignore=shutil.ignore_patterns("*.pyc"))
    errors_py = tree / "edgekit" / "errors.py"
    # The lowest layer reaching up to the pipeline, hidden in a function.
    errors_py.write_text(
        errors_py.read_text() + "\n\ndef _sneaky():\n    from edgekit import pipeline  # noqa\n"
    )
    proc = _lint(tree)
    assert proc.returncode != 0
    assert "edgekit.errors is not allowed to import edgekit.pipeline" in proc.stdout
