"""edgekit-tune: a measured search over recipes, its outputs, resume, budget, bad inputs.

Cheap on purpose: a tiny model, post-training candidates only, short benchmarks. One
search (`searched`) is shared by every test that reads its outputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import make_tiny_model, run_cli, tree_snapshot

import edgekit
from edgekit import config, errors

# Enough runs for a p50 on a 2 µs model, short enough for a CI machine.
FAST = config.BenchmarkConfig(num_runs=20, min_secs=0.05, max_secs=2.0, warmup_min_secs=0.02)
THREE = ["int8_per_tensor", "dynamic", "float16"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """model.keras, train.npz and test.npz of a tiny classifier, on disk."""
    from edgekit import io

    d = tmp_path_factory.mktemp("tune_inputs")
    io.save_model(make_tiny_model(), d / "model.keras")
    rng = np.random.default_rng(0)
    for name, n in (("train", 64), ("test", 48)):
        x = rng.random((n, 8, 8, 1), dtype=np.float32)
        np.savez(d / f"{name}.npz", x=x, y=rng.integers(0, 4, n))
    return {
        k: str(d / f"{k}.{'keras' if k == 'model' else 'npz'}") for k in ("model", "train", "test")
    }


def _tune(inputs, out, **kw):
    args = dict(
        data=inputs["train"], eval_data=inputs["test"], output_dir=out, max_accuracy_drop=1.0,
        benchmark=FAST, heartbeat_seconds=1, progress=lambda s: None, candidates=THREE,
    )  # fmt: skip
    args.update(kw)
    return edgekit.tune(inputs["model"], **args)


@pytest.fixture(scope="module")
def searched(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "out"
    return _tune(inputs, out), out


def _records(out: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def _complete(out: pathlib.Path) -> list[str]:
    return sorted(r["candidate"] for r in _records(out) if r["state"] == "complete")


def test_search_writes_every_output(searched):
    result, out = searched
    for name in ("trials.jsonl", "pareto.json", "best_recipe.json", "best.tflite", "summary.json",
                 "report.html"):  # fmt: skip
        assert (out / name).is_file(), name
    assert _complete(out) == sorted(THREE)
    for r in _records(out):
        m = r["measurements"]
        assert m["latency_us"]["p50"] > 0 and m["float_latency_us"]["p50"] > 0
        assert m["size_bytes"] > m["gzip_size_bytes"] > 0 and m["accuracy"] is not None
    summary = json.loads((out / "summary.json").read_text())
    assert summary == result.summary and result.met
    assert summary["latency_us"]["p50"] > 0 and summary["size_bytes"] == len(
        (out / "best.tflite").read_bytes()
    )
    assert summary["constraints"]["max_accuracy_drop"]["met"]
    front = json.loads((out / "pareto.json").read_text())
    assert front["front"] and 0.02 <= front["noise_band"] <= 0.25
    assert summary["candidate"] in {f["candidate"] for f in front["front"]}
    page = (out / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page and "noise band" in page.lower()


def test_another_objective_chooses_from_the_same_trials(searched, inputs):
    _, out = searched
    before = _records(out)
    result = _tune(inputs, out, objective="size", max_accuracy_drop=0.5)
    assert _records(out) == before  # no new trial: the measurements answer it
    sizes = {r["candidate"]: r["measurements"]["size_bytes"] for r in before if r["measurements"]}
    assert result.summary["candidate"] == min(sizes, key=sizes.get)
    assert result.summary["constraints"]["max_accuracy_drop"]["limit"] == 0.5
    _tune(inputs, out)  # back to the fixture's own choice, for the tests that read it


def test_best_recipe_replays_to_the_same_bytes(searched, inputs, tmp_path):
    _, out = searched
    replay = edgekit.run(
        str(out / "best_recipe.json"), model=inputs["model"], data=inputs["train"],
        eval_data=inputs["test"], output_dir=tmp_path / "replay", progress=lambda s: None,
    )  # fmt: skip
    got = (pathlib.Path(replay.output_dir) / "model.tflite").read_bytes()
    assert got == (out / "best.tflite").read_bytes()


def test_output_folder_of_a_different_study_is_refused(searched, inputs):
    _, out = searched
    before = tree_snapshot(out)
    with pytest.raises(errors.UserInputError, match="different study") as e:
        _tune(inputs, out, eval_data=inputs["train"])
    assert "--output_dir" in str(e.value) and "Received:" in str(e.value)
    assert tree_snapshot(out) == before


@pytest.mark.parametrize(
    "url, what",
    [
        ("not a url", "is not a database URL"),
        ("mysql://user@host/db", "does not use"),
        ("sqlite://", "names no SQLite file"),
        ("postgresql://edgekit:x@127.0.0.1:1/nodb", "Cannot open the study storage"),
    ],
)
def test_bad_storage_url_is_a_clear_error(inputs, tmp_path, url, what):
    out = tmp_path / "out"
    with pytest.raises(errors.UserInputError, match=what) as e:
        _tune(inputs, out, storage=url)
    assert "Expected" in str(e.value) and "Received: storage=" in str(e.value)
    assert ":x@" not in str(e.value)  # the password is never printed
    assert not out.exists()  # nothing written


def test_impossible_constraints_exit_1_with_the_closest(inputs, tmp_path):
    # Through the real command, in its own process: absl flags of the other commands
    # imported by other tests would clash inside this one.
    out = tmp_path / "out"
    proc = run_cli(
        "tune", f"--model={inputs['model']}", f"--data={inputs['train']}",
        f"--eval_data={inputs['test']}", f"--output_dir={out}", "--max_size_kb=0.5",
        "--max_trials=1",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    text = proc.stdout
    assert "No candidate meets every constraint" in text and "max_size_kb:" in text
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["constraints_met"] and summary["closest"]["max_size_kb"]["value"] > 0.5
    assert not (out / "best.tflite").exists() and len(_complete(out)) == 1


def test_ssh_target_failing_mid_search_fails_that_trial_only(inputs, tmp_path, monkeypatch):
    from edgekit.benchmark import measure, remote

    calls = []

    def flaky(files, spec, cfg, *, timeout, harness):
        calls.append((cfg.target, cfg.ssh_key))
        if len(calls) == 2:  # the device drops off the network during the second trial
            raise errors.UserInputError(f"Cannot reach {cfg.target}: Connection refused.")
        return measure.run_local(files, spec, timeout=timeout)

    monkeypatch.setattr(remote, "run", flaky)
    out = tmp_path / "out"
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key: the device is monkeypatched\n")
    key = str(key)
    bench = dataclasses.replace(FAST, ssh_key=key)
    result = _tune(inputs, out, target="ssh://edge@192.0.2.1:2222", benchmark=bench)
    states = {r["candidate"]: r for r in _records(out)}
    failed = states[THREE[1]]
    assert failed["state"] == "fail" and "Connection refused" in failed["error"]
    assert states[THREE[2]]["state"] == "complete"  # the search went on
    assert result.met and result.summary["candidate"] != THREE[1]
    assert all(c == ("ssh://edge@192.0.2.1:2222", key) for c in calls)


def test_ssh_settings_without_a_target_are_refused_by_the_command(inputs, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(
        "tune", f"--model={inputs['model']}", f"--data={inputs['train']}",
        f"--output_dir={out}", "--ssh_key=/keys/id_ed25519",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    text = " ".join(proc.stderr.split())  # the message is wrapped for the terminal
    assert "need --target=ssh://" in text and "/keys/id_ed25519" in text
    assert not out.exists()  # nothing written


def test_budget_is_kept_and_a_slow_training_tier_is_skipped(inputs, tmp_path, monkeypatch):
    from edgekit.tuning import worker

    # A slow training tier: an epoch measured at 10 minutes. (On the tiny model a real
    # epoch takes about a second, so whether it fits 18 s would depend on the machine.)
    monkeypatch.setattr(worker.Worker, "_epoch_seconds", lambda self: 600.0)
    out = tmp_path / "out"
    start = time.monotonic()
    result = _tune(inputs, out, budget_minutes=0.3, candidates=["dynamic", "prune50_int8"])
    took = time.monotonic() - start
    trial_seconds = max(r["measurements"]["seconds"] for r in _records(out) if r["measurements"])
    assert took <= 0.3 * 60 + trial_seconds
    notes = " ".join(result.summary["notes"])
    assert "prune50_int8: skipped: the prune tier needs about" in notes, notes
    skipped = [r for r in _records(out) if r["candidate"] == "prune50_int8"]
    assert skipped[0]["state"] == "pruned"


@pytest.mark.slow
def test_training_tier_entered_when_post_training_misses_a_limit(tmp_path):
    """No post-training file fits --max_size_kb, the distilled student does: the search
    measures the training tier, records it, chooses it, and its recipe replays."""
    from edgekit import io

    # 16x16 inputs: the dense layer dominates the file, so the half-width student is
    # ~3 KB smaller than the int8 teacher, far more than any converter's metadata drift.
    io.save_model(make_tiny_model(input_shape=(16, 16, 1)), tmp_path / "model.keras")
    rng = np.random.default_rng(0)
    for name, n in (("train", 64), ("test", 48)):
        x = rng.random((n, 16, 16, 1), dtype=np.float32)
        np.savez(tmp_path / f"{name}.npz", x=x, y=rng.integers(0, 4, n))
    inputs = {k: str(tmp_path / f"{k}.{'keras' if k == 'model' else 'npz'}")
              for k in ("model", "train", "test")}  # fmt: skip
    out = tmp_path / "out"
    result = _tune(inputs, out, max_accuracy_drop=None, max_size_kb=7.0, train_epochs=1,
                   candidates=["int8_per_tensor", "distill_width0.5_int8"])  # fmt: skip
    records = {r["candidate"]: r for r in _records(out)}
    ptq, student = records["int8_per_tensor"], records["distill_width0.5_int8"]
    assert ptq["state"] == "complete" and ptq["tier"] == "ptq_converter"
    assert not ptq["constraints"]["max_size_kb"]["met"]  # the cheap tier cannot meet it
    assert student["state"] == "complete" and student["tier"] == "distill"
    assert student["number"] > ptq["number"]  # entered after the cheaper tier
    m = student["measurements"]
    assert m["latency_us"]["p50"] > 0 and m["accuracy"] is not None
    assert m["size_bytes"] <= 7.0 * 1024 and student["constraints"]["max_size_kb"]["met"]
    assert result.met and result.summary["candidate"] == "distill_width0.5_int8"
    best = (out / "best.tflite").read_bytes()
    assert len(best) == m["size_bytes"] == result.summary["size_bytes"]
    recipe = json.loads((out / "best_recipe.json").read_text())
    assert recipe["distill"] is not None and recipe["fit"]["epochs"] == 1
    # Training is seeded: `edgekit-optimize --recipe=DIR/best_recipe.json` rebuilds the bytes.
    replay = edgekit.run(
        str(out / "best_recipe.json"), model=inputs["model"], data=inputs["train"],
        eval_data=inputs["test"], output_dir=tmp_path / "replay", progress=lambda s: None,
    )  # fmt: skip
    assert (pathlib.Path(replay.output_dir) / "model.tflite").read_bytes() == best


_KILLED_RUN = """
import os, signal, sys
import edgekit
from edgekit import config
from edgekit.tuning import trial
real = trial.measure
def measure(ctx, cand, blob):
    if cand.id == sys.argv[2] and os.environ.get("KILL") == "1":
        os.kill(os.getpid(), signal.SIGKILL)  # mid-trial, after the file was built
    return real(ctx, cand, blob)
trial.measure = measure
m, tr, te = sys.argv[3:6]
edgekit.tune(m, data=tr, eval_data=te, output_dir=sys.argv[1], max_accuracy_drop=1.0,
             benchmark=config.BenchmarkConfig(num_runs=20, min_secs=0.05, max_secs=2.0,
                                              warmup_min_secs=0.02),
             heartbeat_seconds=1, candidates=%r, max_trials=3)
"""


@pytest.mark.slow
def test_search_killed_mid_trial_resumes_to_the_same_front(searched, inputs, tmp_path):
    _, reference = searched
    out = tmp_path / "out"
    # A fourth candidate after the others: max_trials=3 must still measure the same three
    # as the uninterrupted search, though Optuna enqueues the killed trial's retry last.
    script = _KILLED_RUN % [*THREE, "lq_static_wi8_ai8"]
    args = [
        sys.executable,
        "-c",
        script,
        str(out),
        THREE[1],
        inputs["model"],
        inputs["train"],
        inputs["test"],
    ]
    env = dict(os.environ)
    killed = subprocess.run(
        args, env={**env, "KILL": "1"}, capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL
    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records = _records(out)
    done = [r["candidate"] for r in records if r["state"] == "complete"]
    assert sorted(done) == sorted(THREE)  # none lost, none measured twice
    stale = [r for r in records if r["state"] == "fail"]
    assert [r["candidate"] for r in stale] == [THREE[1]] and stale[0]["error"] is None
    retry = [r for r in records if r["retry_of"] is not None]
    assert [r["candidate"] for r in retry] == [THREE[1]] and retry[0]["state"] == "complete"

    def front(folder):
        return sorted(
            f["candidate"] for f in json.loads((folder / "pareto.json").read_text())["front"]
        )

    assert front(out) == front(reference)
    for name in ("size_bytes", "accuracy"):
        assert (
            json.loads((out / "summary.json").read_text())[name]
            == json.loads((reference / "summary.json").read_text())[name]
        )


def test_selective_candidate_comes_last_of_post_training_and_not_in_integer_only():
    from edgekit.tuning import space

    ids = [c.id for c in space.build(space.SpaceOptions())]
    ptq = [
        c.id for c in space.build(space.SpaceOptions()) if c.tier in ("ptq_converter", "ptq_litert")
    ]
    assert ptq[-1] == "lq_static_selective" and ids.index("lq_static_selective") == len(ptq) - 1
    chosen = space.by_id(space.build(space.SpaceOptions(max_accuracy_drop=0.5)))
    assert chosen["lq_static_selective"].float_ops_target == 0.5
    default = space.by_id(space.build(space.SpaceOptions()))["lq_static_selective"]
    assert default.float_ops_target == space.SELECTIVE_DEFAULT_DROP
    # The target is not part of the recipe: a rerun with other limits is the same study.
    assert chosen["lq_static_selective"].recipe == default.recipe
    integer = [c.id for c in space.build(space.SpaceOptions(integer_only=True))]
    assert "lq_static_selective" not in integer


@pytest.fixture(scope="module")
def outlier_inputs(inputs, tmp_path_factory):
    """Training data with one sample 1000x the others (calibration then gives the input
    a coarse int8 scale, and full int8 loses accuracy), and test labels that are the
    float model's own classes (any flipped prediction is a drop)."""
    d = tmp_path_factory.mktemp("tune_outlier")
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    x[0] *= 1000
    np.savez(d / "train.npz", x=x, y=rng.integers(0, 4, 64))
    xt = rng.random((48, 8, 8, 1), dtype=np.float32)
    np.savez(d / "test.npz", x=xt, y=np.asarray(make_tiny_model()(xt)).argmax(1))
    return {**inputs, "train": str(d / "train.npz"), "test": str(d / "test.npz")}


def test_selective_candidate_records_its_float_ops_and_its_recipe_replays(outlier_inputs, tmp_path):
    out = tmp_path / "out"
    result = _tune(
        outlier_inputs, out, max_accuracy_drop=0.0,
        candidates=["lq_static_selective", "lq_static_wi8_ai8"],
    )  # fmt: skip
    records = {r["candidate"]: r for r in _records(out)}
    full, sel = records["lq_static_wi8_ai8"], records["lq_static_selective"]
    assert full["number"] < sel["number"]  # the costly search goes after the plain schemes
    assert full["measurements"]["accuracy_drop_points"] > 0 and full["float_scopes"] is None
    assert sel["state"] == "complete" and sel["float_scopes"]  # some ops kept float...
    assert sel["measurements"]["accuracy_drop_points"] <= 0  # ...to meet the target
    assert sel["measurements"]["selective"]["float_scopes"] == sel["float_scopes"]
    assert "kept float" in sel["note"]
    assert result.met and result.summary["candidate"] == "lq_static_selective"
    recipe = json.loads((out / "best_recipe.json").read_text())
    assert recipe["convert"]["float_scopes"] == sel["float_scopes"]
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert [f["float_scopes"] for f in front if f["candidate"] == "lq_static_selective"] == [
        sel["float_scopes"]
    ]
    replay = edgekit.run(
        str(out / "best_recipe.json"), model=outlier_inputs["model"],
        data=outlier_inputs["train"], eval_data=outlier_inputs["test"],
        output_dir=tmp_path / "replay", progress=lambda s: None,
    )  # fmt: skip
    got = (pathlib.Path(replay.output_dir) / "model.tflite").read_bytes()
    assert got == (out / "best.tflite").read_bytes()


def test_help_and_import_load_neither_optuna_nor_tensorflow():
    code = (
        "import sys; sys.argv=['x']\nimport edgekit, edgekit.cli.tune\nprint(' '.join(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not {"optuna", "tensorflow", "sqlalchemy"} & set(out.stdout.split())
    shown = subprocess.run(
        [sys.executable, "-m", "edgekit.cli.tune", "--help"], capture_output=True, text=True
    )
    names = "max_accuracy_drop max_size_kb max_latency_ms max_peak_memory_mb integer_only objective"
    for name in (*names.split(), "target", "num_threads", "budget_minutes", "max_trials", "storage",
                 "seed"):  # fmt: skip
        assert f"{name}:" in shown.stdout, name
    assert "Traceback" not in shown.stderr
