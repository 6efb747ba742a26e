"""The commands: bad input gets one clear paragraph, a non-zero exit, no traceback, no file touched."""

import json
import os
import pathlib
import subprocess
import sys

import _surface
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


# What each command says when run with no flags at all: the same sentence shape for
# every command ("--x is required" / "--x and --y are required", then what may replace
# them), exit 2. edgekit-recipes needs no flag.
REQUIRED = {
    "edgekit-example": "--output_dir is required.",
    "edgekit-serve": "--bundle is required.",
    "edgekit-quantize": "--model, --scheme and --output are required.",
    "edgekit-convert": "--model and --output are required (or pass --example --output_dir=DIR).",
    "edgekit-evaluate": "--model and --data are required.",
    "edgekit-benchmark": "--model is required (or pass --compare=a.tflite,b.tflite).",
    "edgekit-inspect": "--model is required.",
    "edgekit-export": "--model and --output_dir are required.",
    "edgekit-verify-bundle": "--bundle_dir is required (or pass the folder:",
    "edgekit-prune": "--model, --data and --output are required.",
    "edgekit-cluster": "--model, --data and --output are required.",
    "edgekit-qat": "--model, --data and --output are required.",
    "edgekit-distill": "--teacher, --data and --output are required.",
    "edgekit-optimize": "--output_dir is required.",
    "edgekit-check": "--model is required.",
    "edgekit-tune": "--model, --data and --output_dir are required.",
}
SCRIPTS = _surface.console_scripts()


def test_every_command_is_listed_with_its_required_flags():
    assert set(REQUIRED) | {"edgekit-recipes"} == set(SCRIPTS)


def _run_entry_point(script: str, *args: str) -> subprocess.CompletedProcess:
    """Runs the console-script function as the installed `edgekit-<verb>` would."""
    module, func = SCRIPTS[script].split(":")
    code = f"import sys; sys.argv = [{script!r}, *{list(args)!r}]; from {module} import {func}; {func}()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("how", ["python -m", "console script"])
@pytest.mark.parametrize("script", sorted(REQUIRED))
def test_a_missing_required_flag_is_one_paragraph_and_exit_2(script, how, tmp_path):
    if how == "python -m":
        module = SCRIPTS[script].split(":")[0].rsplit(".", 1)[1]
        proc = run_cli(module, cwd=tmp_path)
    else:
        proc = _run_entry_point(script)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    text = " ".join(proc.stderr.split())  # the paragraph is wrapped at 100 columns
    assert text.startswith(f"error: {REQUIRED[script]}"), proc.stderr
    assert "Run with --helpfull for every flag. Received: " in text
    assert "\n\n" not in proc.stderr.strip(), proc.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_is_not_blocked_by_the_required_flags(script):
    # Required flags are checked after parsing, so --help alone still prints the usage.
    # It exits 1, as absl's --help always has (unchanged: exit statuses are public).
    module = SCRIPTS[script].split(":")[0].rsplit(".", 1)[1]
    proc = run_cli(module, "--help")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith(f"{script}"), proc.stdout[:300]
    assert "Try --helpfull" in proc.stdout and "error:" not in proc.stderr
    assert "Traceback" not in proc.stderr


# -- no runtime noise in a command's output ----------------------------------------


def test_no_litert_delegate_info_line_in_the_output_of_commands_that_run_a_model(tmp_path):
    # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to stderr
    # when an interpreter is created, whatever TF_CPP_MIN_LOG_LEVEL says; a user runs
    # commands without that variable set.
    model = pathlib.Path(__file__).parent / "data" / "tiny_float.tflite"
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.random((16, 8, 8, 1), dtype=np.float32), y=np.arange(16) % 4)
    fast = ["--min_secs=0.1", "--max_secs=0.5", "--warmup_runs=1", "--warmup_min_secs=0"]
    commands = [
        ("evaluate", f"--model={model}", f"--data={data}", f"--reference={model}"),
        ("check", f"--model={model}", f"--data={data}", "--min_accuracy=0",
         "--max_latency_ms=1000", "--num_runs=5"),
        ("benchmark", f"--model={model}", "--num_runs=5", *fast),
        ("inspect", f"--model={model}"),
        ("export", f"--model={model}", f"--output_dir={tmp_path / 'bundle'}"),
        ("verify_bundle", str(tmp_path / "bundle")),
        ("quantize", f"--model={model}", "--scheme=dynamic_wi8_afp32",
         f"--output={tmp_path / 'q.tflite'}"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    for module, *args in commands:
        proc = subprocess.run(
            [sys.executable, "-m", f"edgekit.cli.{module}", *args],
            capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, (module, proc.stderr)
        said = proc.stdout + proc.stderr
        assert "XNNPACK delegate" not in said and "INFO:" not in said, (module, said)


def test_litert_info_lines_show_when_asked_for():
    code = (
        "from edgekit import runtime; import sys; runtime.LiteModel(sys.argv[1]); print('loaded')"
    )
    model = str(pathlib.Path(__file__).parent / "data" / "tiny_float.tflite")
    for level, shown in (("0", True), ("3", False)):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=level)
        proc = subprocess.run(
            [sys.executable, "-c", code, model], capture_output=True, text=True, env=env
        )
        assert proc.stdout.strip() == "loaded", proc.stderr
        assert ("XNNPACK delegate" in proc.stderr) is shown, proc.stderr
