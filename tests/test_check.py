"""The CI gate: each check passes and fails when it should; exit codes 0 / 1 / 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_tiny_model, run_cli, tree_snapshot

from edgekit import check, errors
from edgekit.config import ConvertConfig


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """model.keras; good.tflite converted from it; other.tflite from another model; data.

    The labels are the Keras model's own predictions, so the Keras accuracy is 100%,
    good.tflite (float32, same weights) matches it and other.tflite (different
    weights) does not: a real accuracy drop without training anything.
    """
    from edgekit import convert

    d = tmp_path_factory.mktemp("check")
    model = make_tiny_model(0)
    model.save(str(d / "model.keras"))
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    y = np.argmax(model(x, training=False), axis=-1)
    np.savez(d / "test.npz", x=x, y=y)
    np.savez(d / "unlabelled.npz", x=x)
    convert.convert(model, ConvertConfig()).save(d / "good.tflite")
    convert.convert(make_tiny_model(1), ConvertConfig()).save(d / "other.tflite")
    return d


def _by_name(report: check.CheckReport) -> dict[str, check.CheckResult]:
    return {r.name: r for r in report.results}


def test_size_check(workdir):
    size_kib = (workdir / "good.tflite").stat().st_size / 1024
    ok = _by_name(check.run_checks(workdir / "good.tflite", max_size_kb=size_kib + 0.01))
    bad = _by_name(check.run_checks(workdir / "good.tflite", max_size_kb=size_kib - 0.01))
    assert ok["size"].passed is True and bad["size"].passed is False
    assert bad["size"].measured == pytest.approx(size_kib)
    assert bad["size"].limit == pytest.approx(size_kib - 0.01)
    # Checks without a limit are skipped, not passed.
    assert {n: r.status for n, r in ok.items()} == {
        "size": "PASS",
        "accuracy": "SKIP",
        "accuracy_drop": "SKIP",
        "latency": "SKIP",
    }


def test_accuracy_check(workdir):
    good = check.run_checks(workdir / "good.tflite", workdir / "test.npz", min_accuracy=0.99)
    other = check.run_checks(workdir / "other.tflite", workdir / "test.npz", min_accuracy=0.99)
    assert good.passed and _by_name(good)["accuracy"].measured == 1.0
    assert not other.passed
    acc = _by_name(other)["accuracy"]
    assert acc.passed is False and acc.measured < 0.99 and acc.limit == 0.99
    assert "top-1 on 64 samples" in acc.how


def test_accuracy_drop_check(workdir):
    kwargs = {"reference": workdir / "model.keras", "max_accuracy_drop": 1.0}
    good = _by_name(check.run_checks(workdir / "good.tflite", workdir / "test.npz", **kwargs))
    other = _by_name(check.run_checks(workdir / "other.tflite", workdir / "test.npz", **kwargs))
    # float32 conversion of the same weights: the same top-1 answers.
    assert good["accuracy_drop"].passed is True and good["accuracy_drop"].measured == 0.0
    drop = other["accuracy_drop"]
    assert drop.passed is False and drop.measured > 1.0 and drop.unit == "points"
    assert "Keras 100.00%" in drop.how


def test_latency_check_uses_the_median_of_the_harness(workdir):
    report = check.run_checks(
        workdir / "good.tflite", max_latency_ms=1000.0, max_size_kb=0.001, num_runs=5
    )
    lat = _by_name(report)["latency"]
    assert lat.passed is True and 0 < lat.measured < 1000.0
    assert "median (p50)" in lat.how and "1 thread" in lat.how
    # A limit no CPU can meet fails.
    assert not report.passed and [r.name for r in report.failures] == ["size"]
    tight = _by_name(check.run_checks(workdir / "good.tflite", max_latency_ms=1e-6, num_runs=5))
    assert tight["latency"].passed is False


def test_report_format_and_json(workdir, tmp_path):
    report = check.run_checks(workdir / "good.tflite", max_size_kb=0.5)
    text = report.format()
    assert text.splitlines()[0].startswith("FAIL  size: ")
    assert "(limit <= 0.50 KiB)" in text and "SKIP  latency: no limit given" in text
    assert text.endswith("1 of 1 checks failed: size.")
    saved = json.loads(report.save(tmp_path / "c.json").read_text())
    assert saved["passed"] is False and saved["checks"][0]["status"] == "FAIL"


BAD_OPTIONS = {
    "no limit": ({}, "No limit given"),
    "accuracy as percent": ({"min_accuracy": 90}, "pass 0.9 for 90%"),
    "negative size": ({"max_size_kb": -1}, "max_size_kb must be a number >= 0"),
    "drop without reference": ({"max_accuracy_drop": 1.0}, "needs that model"),
    "accuracy without data": ({"min_accuracy": 0.5, "data": None}, "need labelled data"),
    "missing data": ({"min_accuracy": 0.5, "data": "nope.npz"}, "No data at 'nope.npz'"),
    "zero threads": ({"max_latency_ms": 5.0, "num_threads": 0}, "num_threads must be"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_options_fail_before_measuring(workdir, case):
    kwargs, needle = BAD_OPTIONS[case]
    kwargs = {"data": workdir / "test.npz", **kwargs}
    with pytest.raises(errors.UserInputError, match=needle) as e:
        check.run_checks(workdir / "good.tflite", **kwargs)
    assert "Received:" in str(e.value)


def test_unlabelled_data_is_a_user_error(workdir):
    with pytest.raises(errors.UserInputError, match="need labels"):
        check.run_checks(workdir / "good.tflite", workdir / "unlabelled.npz", min_accuracy=0.5)


# -- the command ------------------------------------------------------------------


def test_cli_all_pass_exits_0_and_writes_json(workdir, tmp_path):
    out = tmp_path / "check.json"
    proc = run_cli(
        "check",
        f"--model={workdir / 'good.tflite'}",
        f"--data={workdir / 'test.npz'}",
        # No --reference here: loading the Keras model means importing TensorFlow in the
        # child, which is slow on a busy CI machine; test_accuracy_drop_check covers it.
        "--min_accuracy=0.9",
        "--max_size_kb=1000",
        "--max_latency_ms=1000",
        "--num_runs=5",
        f"--json={out}",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in ("size", "accuracy", "latency"):
        assert any(line.startswith(f"PASS  {name}: ") for line in lines), proc.stdout
    assert "SKIP  accuracy_drop: no limit given" in lines
    assert "median (p50)" in proc.stdout and lines[-1] == "All 3 checks passed."
    assert json.loads(out.read_text())["passed"] is True


def test_cli_failure_exits_1(workdir):
    proc = run_cli(
        "check",
        f"--model={workdir / 'other.tflite'}",
        f"--data={workdir / 'test.npz'}",
        "--min_accuracy=0.99",
        "--max_size_kb=1000",
    )
    assert proc.returncode == 1, proc.stderr
    assert "FAIL  accuracy: " in proc.stdout and "PASS  size: " in proc.stdout
    assert "Traceback" not in proc.stderr


BAD_CLI = {
    "no limit": (["--model={d}/good.tflite"], "No limit given"),
    "missing model": (["--model={d}/missing.tflite", "--max_size_kb=5"], "No .tflite file"),
    "not a tflite": (["--model={d}/test.npz", "--max_size_kb=5"], "not a TFLite flatbuffer"),
    "no model flag": (["--max_size_kb=5"], "--model is required"),
    "accuracy out of range": (
        ["--model={d}/good.tflite", "--min_accuracy=90"],
        "not a number in the range",
    ),
    "drop without reference": (
        ["--model={d}/good.tflite", "--data={d}/test.npz", "--max_accuracy_drop=1"],
        "--reference=model.keras",
    ),
    "stray argument": (["--model={d}/good.tflite", "--max_size_kb=5", "extra"], "extra"),
    "json exists": (
        ["--model={d}/good.tflite", "--max_size_kb=5", "--json={d}/test.npz"],
        "already exists",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CLI))
def test_cli_bad_input_exits_2_without_traceback(workdir, case):
    args, needle = BAD_CLI[case]
    before = tree_snapshot(workdir)
    proc = run_cli("check", *[a.format(d=workdir) for a in args])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert tree_snapshot(workdir) == before


def test_cli_help_lists_the_limits():
    proc = run_cli("check", "--help")
    assert "--max_latency_ms" in proc.stdout and "median (p50)" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_file_that_crashes_the_interpreter_is_a_clear_error_and_the_caller_lives(
    tmp_path, monkeypatch
):
    from _crash import checker_gap, crash_files, run_command_with_checker_gap

    model, data = crash_files(tmp_path)
    argv = ["edgekit-check", f"--model={model}", f"--data={data}", "--min_accuracy=0.1"]
    proc = run_command_with_checker_gap("edgekit.cli.check", argv)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    said = " ".join(proc.stderr.split())
    assert said.startswith(f"error: The file {model} crashed the interpreter"), said
    assert "SIGSEGV" in said and "separate process" in said
    checker_gap(monkeypatch)
    for given in (model, model.read_bytes()):
        with pytest.raises(errors.UserInputError, match="crashed the interpreter.*SIGSEGV"):
            check.run_checks(given, data, min_accuracy=0.1)
    # The caller lives on: the size check (no run) still works here.
    assert check.run_checks(model, max_size_kb=100).passed


def test_a_result_slower_or_less_accurate_than_the_original_is_said(workdir, tmp_path):
    from edgekit import convert

    # int16x8 runs on the reference kernels (XNNPack has no int16 kernels): at 32x32 the
    # tiny model takes ~15x its float32 time on this machine, far outside the noise.
    model = make_tiny_model(0, input_shape=(32, 32, 1))
    x = np.random.default_rng(0).random((64, 32, 32, 1), dtype=np.float32)
    slow = convert.convert(model, ConvertConfig(mode="int16x8"), calibration_data=x)
    report = check.run_checks(slow.tflite_bytes, reference=model, max_latency_ms=1000)
    assert report.passed and report.warnings
    assert report.warnings[0].startswith("The result is SLOWER than the original")
    assert "int16 tensors" in report.warnings[0] and "Worth trying" in report.warnings[0]
    lines = report.format().splitlines()
    assert lines[-2].startswith("WARNING: The result is SLOWER")
    assert lines[-1] == "All 1 checks passed (1 warning(s) above)."
    assert report.to_dict()["warnings"] == list(report.warnings)
    # A real accuracy drop gets its warning too, next to the failed check.
    drop = check.run_checks(
        workdir / "other.tflite",
        workdir / "test.npz",
        reference=workdir / "model.keras",
        max_accuracy_drop=1.0,
    )
    assert any(w.startswith("The result is LESS ACCURATE") for w in drop.warnings)
    # The same model as float32: nothing is worse, nothing is said.
    same = check.run_checks(
        workdir / "good.tflite", reference=workdir / "model.keras", max_latency_ms=1000
    )
    assert same.warnings == () and "WARNING" not in same.format()
    assert same.to_dict()["warnings"] == []
