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
    for module in ("convert", "evaluate", "example", "serve"):
        loaded = _modules_after(f"import sys; sys.argv=['x']\nimport edgekit.cli.{module}")
        assert "tensorflow" not in loaded, module
    out = subprocess.run(
        [sys.executable, "-m", "edgekit.cli.convert", "--help"], capture_output=True, text=True
    )
    # absl exits with 1 after --help; what matters is the text and no traceback.
    assert "--calibration_data" in out.stdout and "Traceback" not in out.stderr
