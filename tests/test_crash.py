"""A crash inside TensorFlow: the commands run it in a child, say so, retry once with oneDNN off.

The child is made to crash by a test hook (`edgekit.subproc.TEST_CRASH_ONCE_ENV`,
`TEST_CRASH_ALWAYS_ENV`): it kills itself with the named signal, as TensorFlow's
native code does when it crashes.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import make_tiny_model, run_cli

from edgekit import errors, subproc

RETRIED_WITH = "TF_ENABLE_ONEDNN_OPTS=0"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny model and tiny labelled data, as files."""
    folder = tmp_path_factory.mktemp("inputs")
    model = make_tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(folder / "model.keras")
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    np.savez(folder / "data.npz", x=x, y=rng.integers(0, 4, 64))
    return folder


def _run(module, *args, env, cwd):
    old = dict(os.environ)
    os.environ.update(env)
    try:
        return run_cli(module, *args, cwd=cwd)
    finally:
        os.environ.clear()
        os.environ.update(old)


def _no_fault_dump(out: str) -> None:
    assert "Fatal Python error" not in out
    assert "Traceback" not in out
    assert "Current thread" not in out


def test_a_crashed_command_is_retried_with_onednn_off_and_finishes(inputs, tmp_path):
    r = _run(
        "prune",
        f"--model={inputs / 'model.keras'}",
        f"--data={inputs / 'data.npz'}",
        "--epochs=1",
        "--nocompare_sparse_tflite",
        f"--output={tmp_path / 'pruned.keras'}",
        f"--json={tmp_path / 'pruned.json'}",
        env={subproc.TEST_CRASH_ONCE_ENV: "SIGSEGV"},
        cwd=tmp_path,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    # One clear paragraph: which command, which signal, the retry and how.
    assert "edgekit-prune crashed" in r.stderr and "SIGSEGV" in r.stderr
    assert "Retrying once in a fresh process" in r.stderr and RETRIED_WITH in r.stderr
    _no_fault_dump(out)
    # A finished result, and every output says it was retried.
    assert "Sparsity 50.0%" in r.stdout
    assert "retried once" in r.stdout and RETRIED_WITH in r.stdout
    report = json.loads((tmp_path / "pruned.json").read_text())
    assert report["crash_retry"] == {
        "signal": "SIGSEGV",
        "stage": None,
        "retried_with": RETRIED_WITH,
    }
    assert report["achieved_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned.json", "pruned.keras"]


def test_a_retry_that_crashes_too_ends_with_a_clear_error_and_writes_nothing(inputs, tmp_path):
    before = set(pathlib.Path(os.environ.get("TMPDIR", "/tmp")).glob("edgekit-stage-*"))
    r = _run(
        "qat",
        f"--model={inputs / 'model.keras'}",
        f"--data={inputs / 'data.npz'}",
        "--epochs=1",
        f"--output={tmp_path / 'qat.keras'}",
        f"--json={tmp_path / 'qat.json'}",
        env={subproc.TEST_CRASH_ALWAYS_ENV: "SIGABRT"},
        cwd=tmp_path,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "edgekit-qat crashed: TensorFlow's process died with SIGABRT" in r.stderr
    assert f"crashed again, with SIGABRT, even with {RETRIED_WITH}" in r.stderr
    _no_fault_dump(out)
    assert list(tmp_path.iterdir()) == []  # no output, no temp file
    after = set(pathlib.Path(os.environ.get("TMPDIR", "/tmp")).glob("edgekit-stage-*"))
    assert after <= before


TINY_RECIPE = {
    "name": "tiny_prune_float32",
    "fit": {"epochs": 1},
    "prune": {"target_sparsity": 0.5},
    "convert": {"mode": "float32"},
}


def test_a_pipeline_stage_that_crashes_is_retried_and_the_report_says_so(inputs, tmp_path):
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps(TINY_RECIPE))
    out_dir = tmp_path / "run"
    r = _run(
        "optimize",
        f"--model={inputs / 'model.keras'}",
        f"--recipe={recipe}",
        f"--data={inputs / 'data.npz'}",
        f"--output_dir={out_dir}",
        env={subproc.TEST_CRASH_ONCE_ENV: "SIGSEGV@prune"},
        cwd=tmp_path,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    # The crash came after TensorFlow had converted the baseline: still no fault dump.
    assert "edgekit-optimize crashed in its stage 'prune'" in r.stderr and "SIGSEGV" in r.stderr
    assert "resumes after its last finished stage" in r.stderr
    _no_fault_dump(out)
    assert "baseline: finished in an earlier run" in r.stdout
    assert "crashed in stage 'prune' (SIGSEGV)" in r.stdout
    for name in ("model.tflite", "manifest.json", "report.md", "report.html"):
        assert (out_dir / name).exists()
    note = "TensorFlow crashed in stage 'prune' (SIGSEGV); the work was retried once"
    assert note in (out_dir / "report.md").read_text()
    summary = json.loads((out_dir / ".edgekit" / "summary.json").read_text())
    assert any(RETRIED_WITH in n for n in summary["notes"])


def test_help_and_flag_errors_never_start_the_child(tmp_path):
    env = {subproc.TEST_CRASH_ALWAYS_ENV: "SIGSEGV"}  # a child would crash at once
    r = _run("prune", "--help", env=env, cwd=tmp_path)
    assert r.returncode == 1 and "--target_sparsity" in r.stdout  # absl: --help exits 1
    assert "crashed" not in r.stdout + r.stderr
    r = _run("convert", "--mode=int3", env=env, cwd=tmp_path)
    assert r.returncode == 1 and "--mode" in r.stderr
    assert "crashed" not in r.stdout + r.stderr
    r = _run("optimize", env=env, cwd=tmp_path)
    assert r.returncode == 2 and "--output_dir is required" in r.stderr
    assert "crashed" not in r.stderr


def _children(pid: int) -> list[int]:
    path = pathlib.Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    "sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)]
)
def test_signals_to_the_parent_stop_the_child(inputs, tmp_path, sig, status):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgekit.cli.prune",
            f"--model={inputs / 'model.keras'}",
            f"--data={inputs / 'data.npz'}",
            f"--output={tmp_path / 'p.keras'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while not _children(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    (child,) = _children(proc.pid)
    time.sleep(2.0)  # into the child's work (importing TensorFlow)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err[-2000:]
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)
    assert "Traceback" not in err and "crashed" not in err
    assert not (tmp_path / "p.keras").exists()


def test_the_python_api_runs_isolated_on_request(inputs, tmp_path, monkeypatch):
    from edgekit import pipeline

    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps(TINY_RECIPE))
    kwargs = dict(
        model=str(inputs / "model.keras"),
        data=str(inputs / "data.npz"),
        output_dir=tmp_path / "run",
    )
    # The retry crashes too: a clear error naming the workaround, this process survives.
    monkeypatch.setenv(subproc.TEST_CRASH_ALWAYS_ENV, "SIGSEGV")
    with pytest.raises(RuntimeError, match="TF_ENABLE_ONEDNN_OPTS=0 in the environment"):
        pipeline.run(str(recipe), isolate=True, **kwargs)
    monkeypatch.delenv(subproc.TEST_CRASH_ALWAYS_ENV)
    # Bad input comes back as the usual UserInputError.
    with pytest.raises(errors.UserInputError, match="file path"):
        pipeline.run(str(recipe), isolate=True, **{**kwargs, "data": (np.zeros(3), None)})
    # A crash in a training stage is retried and the result says so.
    monkeypatch.setenv(subproc.TEST_CRASH_ONCE_ENV, "SIGSEGV@prune")
    result = pipeline.run(str(recipe), isolate=True, **kwargs)
    assert result.resumed_stages == ("baseline",)
    assert any("crashed in stage 'prune' (SIGSEGV)" in n for n in result.summary["notes"])
    assert result.summary["result"]["size_bytes"] > 0
