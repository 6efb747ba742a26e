"""The notebooks run as they are, and give what the Python API gives for the same recipe."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

_ALL = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# The recipe notebooks (compared with the Python API below); quantize.ipynb has its own test.
NOTEBOOKS = [p for p in _ALL if p.name not in ("quantize.ipynb", "tune.ipynb")]
QUANTIZE = _ALL[0].parent / "quantize.ipynb"
TUNE = _ALL[0].parent / "tune.ipynb"

# Executes every code cell in order in one namespace, as a kernel would (no Jupyter needed).
_RUNNER = """
import json, sys
nb = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
for i, cell in enumerate(nb["cells"]):
    if cell["cell_type"] == "code":
        src = "".join(cell["source"])
        exec(compile(src, f"{sys.argv[1]}#cell{i}", "exec"), ns)
"""


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_matches_the_python_api(notebook, tmp_path, example):
    env = dict(os.environ, EDGEKIT_NOTEBOOK_OUT=str(tmp_path / "nb"))
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(notebook)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    produced = tmp_path / "nb" / "run" / "model.tflite"
    assert produced.exists()
    # The same recipe from Python gives the same file, byte for byte.
    import edgekit

    nb = json.loads(notebook.read_text())
    recipe_src = next(
        "".join(c["source"]) for c in nb["cells"] if "recipe = {" in "".join(c["source"])
    )
    ns: dict = {}
    exec(recipe_src.split("output_dir =")[0], ns)
    model, _, (x_train, y_train), (x_test, y_test) = example
    result = edgekit.run(
        ns["recipe"],
        model=model,
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
