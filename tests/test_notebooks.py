"""The notebooks run as they are, and give what the Python API gives for the same recipe."""

import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

_ALL = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# The recipe notebooks (compared with the Python API below); quantize.ipynb has its own test.
NOTEBOOKS = [p for p in _ALL if p.name not in ("quantize.ipynb", "tune.ipynb")]
QUANTIZE = _ALL[0].parent / "quantize.ipynb"
QUICKSTART = _ALL[0].parent / "quickstart.ipynb"
TUNE = _ALL[0].parent / "tune.ipynb"

# Executes every code cell in order in one namespace, as a kernel would (no Jupyter needed).
# A line magic (`%pip install ...`) becomes the call IPython makes of it; outside IPython
# there is no `get_ipython`, so a magic that runs fails the test.
_RUNNER = """
import json, re, sys
nb = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
magic = re.compile(r"^([ \\t]*)%(\\w+)[ \\t]*(.*)$", re.M)
for i, cell in enumerate(nb["cells"]):
    if cell["cell_type"] == "code":
        src = magic.sub(
            lambda m: f"{m[1]}get_ipython().run_line_magic({m[2]!r}, {m[3]!r})",
            "".join(cell["source"]),
        )
        exec(compile(src, f"{sys.argv[1]}#cell{i}", "exec"), ns)
"""


def _execute(notebook: pathlib.Path, out: pathlib.Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGEKIT_NOTEBOOK_OUT=str(out))
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, str(notebook)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """notebook -> (CompletedProcess, output folder): each notebook runs once per module."""
    runs: dict[pathlib.Path, tuple[subprocess.CompletedProcess, pathlib.Path]] = {}

    def get(notebook: pathlib.Path):
        if notebook not in runs:
            out = tmp_path_factory.mktemp(notebook.stem)
            runs[notebook] = (_execute(notebook, out), out)
        return runs[notebook]

    return get


def _code_cells(notebook: pathlib.Path) -> list[str]:
    nb = json.loads(notebook.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_matches_the_python_api(notebook, tmp_path, executed):
    proc, out = executed(notebook)
    assert proc.returncode == 0, proc.stderr[-3000:]
    produced = out / "run" / "model.tflite"
    assert produced.exists()
    # The same recipe on the model the notebook trained (it saves it), from Python, gives
    # the same file, byte for byte.
    import edgekit
    from edgekit import datasets

    recipe_src = next(src for src in _code_cells(notebook) if "recipe = {" in src)
    ns: dict = {}
    exec(recipe_src.split("output_dir =")[0], ns)
    (saved,) = out.glob("*.keras")
    (x_train, y_train), (x_test, y_test) = datasets.load_digits()
    result = edgekit.run(
        ns["recipe"],
        model=saved,
        data=(x_train, y_train),
        eval_data=(x_test, y_test),
        output_dir=tmp_path / "py",
    )
    digest = hashlib.sha256
    assert (
        digest(produced.read_bytes()).hexdigest()
        == digest((tmp_path / "py" / "model.tflite").read_bytes()).hexdigest()
    )
    assert result.summary["result"]["accuracy"] >= 0.96


@pytest.mark.slow
def test_quickstart_is_keras3_end_to_end_and_installs_only_when_needed(executed):
    cells = _code_cells(QUICKSTART)
    # The first cell installs edgekit with a real pip command, only when the import fails
    # (the runner has no IPython: had the %pip line run, the notebook would have failed).
    assert re.search(r"except ImportError:[\s\S]*%pip install ", cells[0]), cells[0]
    assert "import keras\n" in "\n".join(cells) and "tf_keras" not in "\n".join(cells)
    proc, out = executed(QUICKSTART)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = out / "run"
    summary = json.loads((run / ".edgekit" / "summary.json").read_text())
    assert summary["keras"]["input"] == "keras3"
    assert summary["keras"]["optimized_keras"] == "keras3"
    # The pruned layers of the int8 file hold the 50% zeros asked for (the first layer is
    # left dense), under the names the user's Keras 3 layers have, not the export trace's
    # (`conv2d_1`, `conv2d_1_2`, `digit_1`).
    sparsity = {r["layer"]: r["sparsity"] for r in summary["sparsity_per_layer"]}
    half = pytest.approx(0.5, abs=0.01)
    assert sparsity == {"conv2d": 0.0, "conv2d_1": half, "digit": half}
    assert summary["result"]["parity"]["top1_agreement"] >= 0.99
    # What it prints carries units.
    for unit in ("KiB", "µs", "% zeros", " %"):
        assert unit in proc.stdout, unit


@pytest.mark.slow
def test_quantize_notebook_runs_every_scheme_and_the_selective_search(tmp_path, example):
    env = dict(os.environ, EDGEKIT_NOTEBOOK_OUT=str(tmp_path / "nb"))
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(QUANTIZE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "nb" / "quantize"
    for scheme in ("static_wi8_ai8", "weight_only_wi4_afp32", "dynamic_wi4_afp32"):
        assert (out / f"{scheme}.tflite").stat().st_size < (out / "float32.tflite").stat().st_size
    sel = json.loads((out / "selective.json").read_text())
    # The notebook asks for no accuracy loss, and the file it wrote meets that.
    assert sel["result"]["meets"] and sel["result"]["accuracy"] >= sel["float"]["accuracy"]
    assert len(sel["float_ops"]) <= sel["top_k_prefix"]
    assert "op(s) kept float" in proc.stdout


@pytest.mark.slow
def test_tune_notebook_chooses_for_latency_and_for_size(tmp_path, example):
    env = dict(os.environ, EDGEKIT_NOTEBOOK_OUT=str(tmp_path / "nb"))
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(TUNE)], capture_output=True, text=True, env=env,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "latency objective:" in proc.stdout and "size objective:" in proc.stdout
    summary = json.loads((tmp_path / "nb" / "tune" / "summary.json").read_text())
    assert summary["constraints_met"] and summary["objective"] == "size"
