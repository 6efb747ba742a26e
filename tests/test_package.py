"""Import cost and the edge-device promise: no TensorFlow where it is not needed."""

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_import_edgekit_loads_no_heavy_package():
    loaded = _modules_after("import edgekit, edgekit.config, edgekit.errors")
    assert not {"tensorflow", "tf_keras", "keras", "tensorflow_model_optimization"} & loaded


def test_runtime_needs_only_numpy_and_litert():
    loaded = _modules_after("import edgekit.runtime, edgekit.data, edgekit.io")
    assert "tensorflow" not in loaded and "tf_keras" not in loaded


def test_help_does_not_import_tensorflow():
    for module in ("convert", "evaluate", "example", "benchmark", "serve"):
        loaded = _modules_after(f"import sys; sys.argv=['x']\nimport edgekit.cli.{module}")
        assert "tensorflow" not in loaded, module
    out = subprocess.run(
        [sys.executable, "-m", "edgekit.cli.convert", "--help"], capture_output=True, text=True
    )
    # absl exits with 1 after --help; what matters is the text and no traceback.
    assert "--calibration_data" in out.stdout and "Traceback" not in out.stderr


# Imports the measuring harness may not make: it runs on devices that have only the
# standard library, numpy and ai-edge-litert (flatbuffers comes with the latter).
_BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ("tensorflow", "tf_keras", "keras", "absl", "tensorflow_model_optimization"):
            raise ImportError("blocked: " + name)
        if top == "edgekit" and name not in EXACT and not name.startswith(UNDER):
            raise ImportError("blocked: " + name)
        return None
sys.meta_path.insert(0, _Block())
"""


def test_benchmark_harness_imports_only_stdlib_numpy_and_litert():
    from edgekit.benchmark import measure

    names = sorted(p.stem for p in measure.HARNESS_DIR.glob("[!_]*.py"))
    blocker = _BLOCKER.replace("EXACT", "('edgekit', 'edgekit.benchmark')")
    code = blocker.replace("UNDER", "'edgekit.benchmark.harness'") + "".join(
        f"import edgekit.benchmark.harness.{n}\n" for n in names
    )
    loaded = _modules_after(code)
    assert {f"edgekit.benchmark.harness.{n}" for n in names} <= loaded
    outside = {m for m in loaded if m.startswith("edgekit.")} - {"edgekit.benchmark"}
    assert all(m.startswith("edgekit.benchmark.harness") for m in outside), outside


def test_benchmark_harness_measures_when_shipped_alone(tmp_path):
    """The folder as sent to a device runs a real measurement with edgekit unimportable."""
    import json
    import pathlib

    from edgekit import config
    from edgekit.benchmark import measure

    for name, text in measure.harness_files().items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    model = pathlib.Path(__file__).resolve().parents[1] / "tflite_models" / "int8.tflite"
    (tmp_path / "m.tflite").write_bytes(model.read_bytes())
    entries = [{"path": "m.tflite", "name": "int8"}]
    cfg = config.BenchmarkConfig(
        num_runs=3, min_secs=0.0, warmup_min_secs=0.0, max_secs=20.0, profile=True
    )
    spec = measure.child_spec(cfg, entries, None, 1)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    folder, result = tmp_path / "harness", tmp_path / "result.json"
    blocker = _BLOCKER.replace("EXACT", "()").replace("UNDER", "'-'")  # no edgekit at all
    code = blocker + (
        "import runpy\n"
        f"sys.argv = [{str(folder)!r}, {str(tmp_path / 'spec.json')!r}, {str(result)!r}]\n"
        f"runpy.run_path({str(folder)!r}, run_name='__main__')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(result.read_text())
    assert out["ok"], out
    row = out["models"][0]
    assert row["num_runs"] >= 3 and row["profile"]["num_ops"] >= 2, row
