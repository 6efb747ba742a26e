"""Issue 13.1: every training-time technique measures held-out accuracy before and after,
and a drop past the limit warns with the figures, the cause and the fix."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
from conftest import make_tiny_model, run_cli

from edgekit import _compat, config, errors
from edgekit.optimize import cluster, distill, prune, qat, validation

_KEYS = {"accuracy_before", "accuracy_after", "samples", "source", "warning"}
_FIT = config.FitConfig(epochs=1, batch_size=16)


def _data(n: int = 64, seed: int = 0, classes: int = 4):
    rng = np.random.default_rng(seed)  # balanced classes: the split's counts are exact
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.permutation(np.arange(n) % classes)


def _check_block(check, *, source, samples):
    assert _KEYS <= set(check), check
    assert check["source"] == source and check["samples"] == samples
    assert 0 <= check["accuracy_before"] <= 1 and 0 <= check["accuracy_after"] <= 1
    json.dumps(check)


# -- the held-out data ------------------------------------------------------------------


def test_the_split_is_stratified_seeded_and_kept_out_of_training(capsys):
    x, _ = _data(200)
    y = np.random.default_rng(0).permutation(np.repeat(np.arange(4), [40, 60, 50, 50]))
    model = make_tiny_model()
    fit = config.FitConfig(val_split=0.1, seed=3)
    (tx, ty), holdout = validation.hold_out(model, x, y, None, fit=fit, what="pruning")
    out = capsys.readouterr().out
    assert "holding out 20 of 200 training samples (10%, stratified by class, seed 3)" in out
    assert holdout.samples == 20 and len(tx) == 180 and holdout.source == "split"
    # Every class gives its share (at least one), and no held-out sample is trained on.
    assert np.bincount(holdout.y).tolist() == [4, 6, 5, 5]
    assert np.bincount(ty).tolist() == [36, 54, 45, 45]
    trained = {row.tobytes() for row in tx}
    assert not any(row.tobytes() in trained for row in holdout.x)
    # Seeded: the same split again, another with another seed.
    _, again = validation.hold_out(model, x, y, None, fit=fit, what="pruning")
    _, other = validation.hold_out(
        model, x, y, None, fit=dataclasses.replace(fit, seed=4), what="pruning"
    )
    assert np.array_equal(again.x, holdout.x) and not np.array_equal(other.x, holdout.x)


def test_small_data_is_not_split_by_default_and_says_so(capsys):
    x, y = _data(64)
    (tx, _), holdout = validation.hold_out(
        make_tiny_model(), x, y, None, fit=config.FitConfig(), what="pruning"
    )
    assert len(tx) == 64 and holdout.samples == 0
    assert "not measured: 64 training samples are too few" in capsys.readouterr().out


def test_targets_that_are_not_classes_measure_output_cosine():
    x, _ = _data(64)
    targets = np.random.default_rng(1).random((64, 3)).astype(np.float32)

    def regressor(seed):
        tf_keras = _compat.tf_keras()
        tf_keras.utils.set_random_seed(seed)
        inputs = tf_keras.Input((8, 8, 1))
        return tf_keras.Model(inputs, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(inputs)))

    fit = config.FitConfig(val_split=0.25)
    _, holdout = validation.hold_out(regressor(0), x, targets, None, fit=fit, what="pruning")
    assert holdout.metric == "output_cosine" and holdout.before == 1.0
    assert holdout.samples == 16  # not stratified: there are no classes
    assert validation.score(holdout, regressor(1)) < 0.99


def test_bad_held_out_data_is_refused_before_training():
    x, y = _data(64)
    lonely = y.copy()
    lonely[lonely == 3] = 2
    lonely[0] = 3  # class 3 has one sample: a split would leave it out of training
    fit = dataclasses.replace(_FIT, val_split=0.2)
    with pytest.raises(errors.UserInputError, match="leave class 3 with no training sample"):
        prune.prune(make_tiny_model(), config.PruneConfig(), (x, lonely), fit=fit)
    with pytest.raises(errors.UserInputError, match="val_data labels do not fit the model"):
        prune.prune(make_tiny_model(), config.PruneConfig(), (x, y), val_data=(x, y + 4))
    with pytest.raises(errors.UserInputError, match="val_data does not fit the model"):
        cluster.cluster(make_tiny_model(), config.ClusterConfig(), (x, y), val_data=(x[:, :4], y))
    with pytest.raises(errors.UserInputError, match="labelled like the training data"):
        qat.quantize_aware(
            make_tiny_model(), None, (x, y), val_data=(x, np.eye(4, dtype=np.float32)[y] * 0.5)
        )


# -- every technique records it -----------------------------------------------------------


def test_prune_measures_on_val_data_when_given():
    x, y = _data()
    vx, vy = _data(24, seed=1)
    _, report = prune.prune(
        make_tiny_model(), config.PruneConfig(), (x, y), fit=_FIT, val_data=(vx, vy)
    )
    d = report.to_dict()["validation"]
    _check_block(d, source="val_data", samples=24)
    assert d["train_samples"] == 64  # nothing held out of the training data
    assert report.fit.total_steps == 4  # 64 samples / 16


def test_cluster_and_qat_measure_on_a_split():
    x, y = _data()
    fit = dataclasses.replace(_FIT, val_split=0.25)
    _, report = cluster.cluster(make_tiny_model(), config.ClusterConfig(), (x, y), fit=fit)
    _check_block(report.validation, source="split", samples=16)
    assert report.validation["train_samples"] == 48 and report.fit.total_steps == 3
    _, report = qat.quantize_aware(make_tiny_model(), None, (x, y), fit=fit)
    _check_block(report.to_dict()["validation"], source="split", samples=16)


def test_distill_measures_the_student_against_the_teacher():
    x, y = _data()
    fit = dataclasses.replace(_FIT, val_split=0.25, max_accuracy_drop=100)
    _, report = distill.distill(make_tiny_model(), "width:0.5", None, (x, y), fit=fit)
    _check_block(report.validation, source="split", samples=16)
    assert report.validation["metric"] == "accuracy"
    # Without labels: top-1 agreement with the teacher (itself 100% before).
    _, report = distill.distill(make_tiny_model(), "width:0.5", None, x, fit=fit)
    _check_block(report.validation, source="split", samples=16)
    assert report.validation["metric"] == "agreement"
    assert report.validation["accuracy_before"] == 1.0


# -- the warning -------------------------------------------------------------------------


def test_a_drop_past_the_limit_warns_and_fail_on_raises_with_the_model():
    holdout = validation.Holdout(
        np.zeros((50, 1)), np.zeros(50, int), "split", "accuracy", 0.96, fraction=0.1
    )
    fit = config.FitConfig(epochs=3, learning_rate=1e-3, fail_on_accuracy_drop=True)
    cause = validation.Cause("a cause", "--fix=1")
    check = validation.judge(holdout, 0.955, fit=fit, causes=lambda: [cause])
    assert check.warning is None and not check.failed  # 0.5 points: within the default 1
    check = validation.judge(holdout, 0.9, fit=fit, causes=lambda: [cause])
    assert check.failed and check.drop_points == 6.0
    assert "fell from 96.00% to 90.00%, 6.00 points, more than the 1 allowed" in check.warning
    assert check.warning.endswith("Cause: a cause. Fix: --fix=1.")
    check = validation.judge(holdout, 0.9, fit=fit, causes=list)
    assert "Fix: --epochs=6 or --learning_rate=0.0005." in check.warning  # the fallback

    @dataclasses.dataclass(frozen=True)
    class Report:
        validation: dict | None = None

    with pytest.warns(validation.AccuracyDropWarning, match="fell from 96.00%"):
        report = validation.attach(Report(), check)
    with pytest.raises(validation.AccuracyDropError) as caught:
        validation.enforce(fit, "the model", report)
    assert caught.value.model == "the model" and caught.value.report is report
    no_fail = dataclasses.replace(fit, fail_on_accuracy_drop=False)
    assert validation.enforce(no_fail, "the model", report) == ("the model", report)


def test_a_well_behaved_run_with_the_defaults_gives_no_warning(example):
    model, _, (x, y), _ = example
    with warnings.catch_warnings():
        warnings.simplefilter("error", validation.AccuracyDropWarning)
        _, report = cluster.cluster(model, config.ClusterConfig(), (x, y))
    check = report.validation
    _check_block(check, source="split", samples=check["samples"])
    assert check["warning"] is None and check["samples"] >= 0.1 * len(x) - 10
    assert check["accuracy_after"] >= check["accuracy_before"] - 0.01


@pytest.mark.slow
def test_a_damaging_prune_warns_with_figures_cause_and_fix_and_fails_on_request(
    example_dir, tmp_path
):
    out, js = tmp_path / "p.keras", tmp_path / "p.json"
    args = [
        f"--model={example_dir / 'model.keras'}",
        f"--data={example_dir / 'train.npz'}",
        "--target_sparsity=0.95",
        "--epochs=1",
        "--steps_per_epoch=4",
        "--learning_rate=0.05",
        f"--output={out}",
        f"--json={js}",
        "--nocompare_sparse_tflite",
    ]
    proc = run_cli("prune", *args, "--fail_on_accuracy_drop")
    assert proc.returncode == 1, proc.stderr[-2000:]
    warning = [line for line in proc.stdout.splitlines() if line.startswith("WARNING: ")]
    assert len(warning) == 1, proc.stdout[-3000:]
    check = json.loads(js.read_text())["validation"]
    before, after = 100 * check["accuracy_before"], 100 * check["accuracy_after"]
    assert before - after > 1 and check["failed"] and check["source"] == "split"
    line = warning[0]
    assert f"fell from {before:.2f}% to {after:.2f}%" in line
    assert "too few steps for the schedule" in line and "--epochs=" in line
    assert "learning rate 0.05" in line and "--learning_rate=0.0003" in line
    assert "95% sparsity target is high" in line
    assert line[len("WARNING: ") :] == check["warning"]
    assert out.exists()  # written before exit 1, to look at
    assert "--fail_on_accuracy_drop" in proc.stderr
    assert f"Held-out accuracy: {before:.2f}% before, {after:.2f}% after" in proc.stdout


@pytest.mark.slow
def test_the_pipeline_records_each_stage_and_warns(example_dir, tmp_path):
    from edgekit import pipeline

    recipe = {
        "name": "damage",
        "prune": {"target_sparsity": 0.95},
        "prune_fit": {"epochs": 1, "steps_per_epoch": 3, "learning_rate": 0.05},
        "convert": {"mode": "float16"},
    }
    result = pipeline.run(
        recipe,
        model=str(example_dir / "model.keras"),
        data=str(example_dir / "train.npz"),
        eval_data=str(example_dir / "test.npz"),
        output_dir=tmp_path / "run",
    )
    check = result.summary["stages"]["prune"]["validation"]
    test_size = len(np.load(example_dir / "test.npz")["y"])
    _check_block(check, source="val_data", samples=test_size)
    assert check["warning"] and not check["failed"]
    assert f"prune stage: {check['warning']}" in result.summary["warnings"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert any(w.startswith("prune stage: ") for w in manifest["metrics"]["warnings"])
    assert "prune stage: " in (tmp_path / "run" / "report.md").read_text()
    state = json.loads((tmp_path / "run" / ".edgekit" / "state.json").read_text())
    assert state["finished"]["prune"]["validation"]["warning"] == check["warning"]
