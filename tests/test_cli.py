"""The commands: bad input gets one clear paragraph, a non-zero exit, no traceback, no file touched."""

import json

import numpy as np
import pytest
from conftest import make_tiny_model, run_cli, tree_snapshot


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    make_tiny_model().save(str(d / "model.keras"))
    rng = np.random.default_rng(0)
    np.savez(
        d / "calib.npz", x=rng.random((32, 8, 8, 1), dtype=np.float32), y=rng.integers(0, 4, 32)
    )
    np.savez(d / "wrong_shape.npz", x=rng.random((32, 4, 4, 1), dtype=np.float32))
    np.savez(d / "wrong_dtype.npz", x=np.zeros((32, 8, 8, 1), np.int64))
    nan = rng.random((32, 8, 8, 1), dtype=np.float32)
    nan[3, 1, 1, 0] = np.nan
    np.savez(d / "nan.npz", x=nan)
    inf = rng.random((32, 8, 8, 1), dtype=np.float32)
    inf[5, 2, 2, 0] = -np.inf
    np.savez(d / "inf.npz", x=inf)
    np.savez(d / "empty.npz", x=np.zeros((0, 8, 8, 1), np.float32))
    (d / "corrupt.keras").write_bytes((d / "model.keras").read_bytes()[:300])
    (d / "existing.tflite").write_bytes(b"keep me")

    import tf_keras

    inputs = tf_keras.Input((8, 8, 1))
    outputs = tf_keras.layers.Lambda(lambda t: t + 1.0, name="plus_one")(inputs)
    tf_keras.Model(inputs, outputs).save(str(d / "lambda.keras"))
    return d


def _assert_user_error(proc, *needles):
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


CASES = {
    "missing model": (["--model=nope.keras", "--output=o.tflite"], ["does not exist"]),
    "corrupt keras": (["--model=corrupt.keras", "--output=o.tflite"], ["corrupt"]),
    "tflite as keras": (["--model=existing.tflite", "--output=o.tflite"], ["not a Keras model"]),
    "calibration shape": (
        [
            "--model=model.keras",
            "--mode=int8",
            "--calibration_data=wrong_shape.npz",
            "--output=o.tflite",
        ],
        ["does not fit the model", "[32, 4, 4, 1]"],
    ),
    "calibration dtype": (
        [
            "--model=model.keras",
            "--mode=int8",
            "--calibration_data=wrong_dtype.npz",
            "--output=o.tflite",
        ],
        ["must be float", "int64"],
    ),
    "calibration nan": (
        ["--model=model.keras", "--mode=int8", "--calibration_data=nan.npz", "--output=o.tflite"],
        ["NaN or Inf"],
    ),
    "calibration inf": (
        [
            "--model=model.keras",
            "--mode=int16x8",
            "--calibration_data=inf.npz",
            "--output=o.tflite",
        ],
        ["NaN or Inf"],
    ),
    "calibration empty": (
        ["--model=model.keras", "--mode=int8", "--calibration_data=empty.npz", "--output=o.tflite"],
        ["calibration set is empty"],
    ),
    "unknown mode": (
        ["--model=model.keras", "--mode=int4", "--output=o.tflite"],
        ["int4", "int8_float_fallback"],
    ),
    "output exists": (
        ["--model=model.keras", "--output=existing.tflite"],
        ["already exists", "--overwrite"],
    ),
    "lambda layer": (
        ["--model=lambda.keras", "--output=o.tflite"],
        ["plus_one", "--allow_unsafe_deserialization"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_convert_bad_input(workdir, case):
    args, needles = CASES[case]
    before = tree_snapshot(workdir)
    proc = run_cli("convert", *args, cwd=workdir)
    _assert_user_error(proc, *needles)
    if case != "unknown mode":  # absl reports flag errors itself, with exit 1
        assert proc.returncode == 2
        assert proc.stderr.strip().startswith("error:") and "Received:" in proc.stderr
    assert tree_snapshot(workdir) == before


def test_convert_writes_the_file_and_the_json_report(workdir, tmp_path):
    out = tmp_path / "m.tflite"
    report = tmp_path / "r.json"
    proc = run_cli(
        "convert",
        f"--model={workdir / 'model.keras'}",
        "--mode=int8",
        "--io_type=int8",
        f"--calibration_data={workdir / 'calib.npz'}",
        f"--output={out}",
        f"--json={report}",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["mode"] == "int8" and data["output"] == str(out)
    assert data["size_bytes"] == out.stat().st_size and 0 < data["gzip_size_bytes"]
    # Unsafe models load when the user says so.
    proc = run_cli(
        "convert",
        f"--model={workdir / 'lambda.keras'}",
        "--allow_unsafe_deserialization",
        f"--output={tmp_path / 'lambda.tflite'}",
    )
    assert proc.returncode == 0, proc.stderr


def test_evaluate_reports_accuracy_and_parity(workdir, tmp_path):
    tfl = tmp_path / "m.tflite"
    assert (
        run_cli("convert", f"--model={workdir / 'model.keras'}", f"--output={tfl}").returncode == 0
    )
    report = tmp_path / "e.json"
    csv_path = tmp_path / "layers.csv"
    proc = run_cli(
        "evaluate",
        f"--model={tfl}",
        f"--data={workdir / 'calib.npz'}",
        f"--reference={workdir / 'model.keras'}",
        f"--json={report}",
        f"--quant_debug_csv={csv_path}",
        f"--calibration_data={workdir / 'calib.npz'}",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert 0.0 <= data["accuracy"] <= 1.0
    assert data["parity"]["top1_agreement"] == 1.0 and data["parity"]["max_abs_error"] < 1e-4
    assert {"mse", "cosine"} <= set(data["parity"])
    assert "mean_squared_error" in csv_path.read_text().splitlines()[0]


def test_evaluate_bad_inputs(workdir, tmp_path):
    proc = run_cli("evaluate", "--model=missing.tflite", "--data=calib.npz", cwd=workdir)
    _assert_user_error(proc, "No .tflite file")
    proc = run_cli("evaluate", "--model=model.keras", "--data=calib.npz", cwd=workdir)
    _assert_user_error(proc, "not a TFLite flatbuffer")
