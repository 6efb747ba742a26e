"""Tests for edgekit.optimize.distill and edgekit-distill: loss, logits, cache, students."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import make_tiny_model, run_cli

from edgekit import _compat, config, errors
from edgekit.optimize import distill
from edgekit.optimize import layers as layers_lib
from edgekit.optimize.distill import loss as distill_loss
from edgekit.optimize.distill import student as distill_student

_FIT = config.FitConfig(epochs=1, batch_size=16, learning_rate=1e-3)


def _model(seed: int = 0, *, width: int = 16, classes: int = 4, head: str = "dense"):
    """conv -> BN -> relu -> pool -> dense: ends in Dense(softmax) or a Softmax layer."""
    tf_keras = _compat.tf_keras()
    tf_keras.utils.set_random_seed(seed)
    layers = tf_keras.layers
    inputs = layers.Input((8, 8, 1), name="image")
    x = layers.Conv2D(width, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if head == "dense":
        outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    else:
        x = layers.Dense(classes, name="logits")(x)
        outputs = layers.Softmax(name="predictions")(x)
    return tf_keras.Model(inputs, outputs)


def _data(n: int = 48, seed: int = 0, classes: int = 4):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, classes, n)


def _same(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


# ----------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"temperature": 0}, "temperature=0"),
        ({"temperature": -1.5}, "temperature=-1.5"),
        ({"alpha": -0.1}, "alpha=-0.1"),
        ({"alpha": 1.5}, "alpha=1.5"),
        ({"feature_layers": ("a:b:c",)}, "feature_layers="),
        ({"mixed_inputs": -1}, "mixed_inputs=-1"),
    ],
)
def test_config_rejects_bad_values(kwargs, text):
    with pytest.raises(errors.UserInputError, match="Received: " + text):
        config.DistillConfig(**kwargs)


def test_config_round_trips_through_json():
    cfg = config.DistillConfig(temperature=2.0, alpha=0.5, feature_layers=("a", "b:c"))
    assert cfg.feature_layers == (("a", "a"), ("b", "c"))
    assert config.DistillConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_different_output_shapes_are_refused():
    with pytest.raises(errors.UserInputError, match="same classes.*teacher_output=\\[4\\]"):
        distill.distill(_model(classes=4), _model(classes=5), None, _data(), fit=_FIT)


def test_unknown_feature_layer_is_refused_before_training():
    cfg = config.DistillConfig(feature_layers=("conv:no_such_layer",))
    with pytest.raises(errors.UserInputError, match="feature_layer='no_such_layer'"):
        distill.distill(_model(), _model(width=8), cfg, _data(), fit=_FIT)


def test_feature_layers_at_different_resolutions_are_refused():
    cfg = config.DistillConfig(feature_layers=("conv:pool",))
    with pytest.raises(errors.UserInputError, match="same spatial size"):
        distill.distill(_model(), _model(width=8), cfg, _data(), fit=_FIT)


def test_baseline_without_labels_is_refused():
    x, _ = _data()
    with pytest.raises(errors.UserInputError, match="baseline"):
        distill.distill(_model(), "width:0.5", None, x, fit=_FIT, baseline=True)


# ----------------------------------------------------------------------------
# The loss and the logits


def test_loss_is_t_squared_kl_plus_hard_label_ce():
    tf = _compat.tf()
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(5, 4)) * 3, rng.normal(size=(5, 4))
    labels = np.array([0, 1, 2, 3, -1], np.float32)  # the last one unlabelled
    y_true = np.concatenate([labels[:, None], t], axis=1).astype(np.float32)
    fn = distill_loss.make_loss(4, [], temperature=3.0, w_soft=0.7, w_hard=0.3, w_feat=0.0)
    got = fn(tf.constant(y_true), tf.constant(s, tf.float32)).numpy()

    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    pt, lt, ls = np.exp(log_softmax(t / 3)), log_softmax(t / 3), log_softmax(s / 3)
    kl = (pt * (lt - ls)).sum(-1)
    ce = -log_softmax(s)[np.arange(5), np.maximum(labels, 0).astype(int)]
    want = 0.7 * 9 * kl + 0.3 * np.where(labels >= 0, ce, 0)
    np.testing.assert_allclose(got, want, rtol=1e-5)  # float32 arithmetic


@pytest.mark.parametrize("head", ["dense", "softmax_layer"])
def test_teacher_logits_are_the_pre_softmax_values(head):
    tf_keras = _compat.tf_keras()
    model = _model(head=head)
    x, _ = _data(8)
    (logits,), source, _ = distill.teacher_targets(model, x, use_cache=False)
    layer = "pool" if head == "dense" else "logits"
    feats = tf_keras.Model(model.inputs, model.get_layer(layer).output).predict(x, verbose=0)
    if head == "dense":
        kernel, bias = model.get_layer("predictions").get_weights()
        want = feats @ kernel + bias
    else:
        want = feats
    assert source == "pre-softmax"
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)


def test_student_split_keeps_outputs_and_exposes_logits():
    model = _model()
    x, _ = _data(8)
    split, name, source = distill_student.split_softmax(model)
    assert (name, source) == ("predictions_logits", "pre-softmax")
    assert split.output_names == ["predictions"]
    np.testing.assert_allclose(split.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# ----------------------------------------------------------------------------
# Distillation


def test_distill_trains_a_copy_and_freezes_the_teacher():
    teacher, student = _model(), _model(1, width=4)
    t_before, s_before = layers_lib.weights_snapshot(teacher), layers_lib.weights_snapshot(student)
    x, y = _data()
    out, report = distill.distill(teacher, student, config.DistillConfig(), (x, y), fit=_FIT)
    assert _same(t_before, teacher.get_weights()), "the teacher changed"
    assert _same(s_before, student.get_weights()), "the caller's student changed"
    assert out is not student and not _same(s_before, out.get_weights()[: len(s_before)])
    assert out.output_shape == teacher.output_shape
    assert report.teacher_logits == report.student_logits == "pre-softmax"
    assert report.num_labelled == len(x) and report.accuracy_on == "data"
    assert report.student_params < report.teacher_params
    assert 0 <= report.distilled_accuracy <= 1 and report.fit.total_steps == 3
    assert np.isfinite(report.fit.history["loss"]).all()
    json.dumps(report.to_dict())


def test_unlabelled_data_trains_on_soft_targets_alone():
    x, _ = _data()
    out, report = distill.distill(_model(), "width:0.5", None, x, fit=_FIT)
    assert report.num_labelled == 0 and report.accuracy_on is None
    assert report.distilled_accuracy is None
    assert "accuracy" not in report.fit.history and "agreement" in report.fit.history


def test_feature_distillation_uses_a_projection_left_out_of_the_student():
    losses = {}
    for weight in (0.0, 50.0):
        cfg = config.DistillConfig(feature_layers=("relu",), feature_weight=weight)
        # Teacher relu has 16 channels, the student's 8: a 1x1 conv projects them.
        out, report = distill.distill(_model(), _model(1, width=8), cfg, _data(), fit=_FIT)
        assert not any(layer.name.startswith("distill_") for layer in out.layers)
        losses[weight] = report.fit.history["loss"][0]
    assert losses[50.0] > losses[0.0] + 1.0  # the feature term is in the loss


def test_mixed_inputs_add_teacher_labelled_samples_with_the_same_steps():
    x, y = _data()
    mixed = distill.mix_inputs(x, 2, seed=0)
    assert mixed.shape == (96, 8, 8, 1) and mixed.min() >= 0 and mixed.max() <= 1
    cfg = config.DistillConfig(mixed_inputs=2)
    _, report = distill.distill(_model(), "width:0.5", cfg, (x, y), fit=_FIT, baseline=True)
    assert report.num_samples == 3 * len(x) and report.num_labelled == len(x)
    assert report.fit.total_steps == 3  # the budget of the 48 given samples
    assert report.student_from_labels_accuracy is not None


def test_baseline_trains_the_same_student_on_labels(tmp_path):
    x, y = _data()
    vx, vy = _data(32, seed=1)
    _, report = distill.distill(
        _model(), "width:0.5", None, (x, y), fit=_FIT, val_data=(vx, vy), baseline=True
    )
    assert report.accuracy_on == "val_data"
    assert report.student_from_labels_accuracy is not None


def test_distill_while_pruning_then_qat_gives_an_int8_model():
    from edgekit import convert, runtime

    x, y = _data()
    prune_cfg = config.PruneConfig(target_sparsity=0.5, skip_first=False)
    fit = config.FitConfig(epochs=2, batch_size=16, learning_rate=1e-3)
    out, report = distill.distill(
        _model(), "width:0.5", None, (x, y), fit=fit, prune=prune_cfg, qat=config.QATConfig()
    )
    assert abs(report.prune.achieved_sparsity - 0.5) < 0.05
    assert report.qat.preserve == "sparsity"  # kept the zeros through QAT
    assert report.qat.sparsity_after >= 0.45
    assert report.float_accuracy is not None  # the float student before QAT, measured
    result = convert.convert(out, config.ConvertConfig(mode="int8"), calibration_data=x)
    scores = runtime.LiteModel(result.tflite_bytes).predict(x[:8])
    assert scores.shape == (8, 4)


def test_batch_norm_statistics_are_recalibrated_on_the_data():
    tf_keras = _compat.tf_keras()
    model = _model()
    x, _ = _data()
    assert distill.recalibrate_batch_norm(model, x) == 1
    z = tf_keras.Model(model.inputs, model.get_layer("conv").output).predict(x, verbose=0)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), z.mean(axis=(0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), z.var(axis=(0, 1, 2)), rtol=1e-4)


# ----------------------------------------------------------------------------
# The teacher cache


def test_memory_cache_is_reused_for_the_same_data_and_teacher():
    teacher = _model()
    x, _ = _data()
    first = distill.teacher_targets(teacher, x)
    second = distill.teacher_targets(teacher, x)
    assert second[2] == "memory" and np.array_equal(first[0][0], second[0][0])
    x2 = x.copy()
    x2[0, 0, 0, 0] += 0.5
    assert distill.teacher_targets(teacher, x2)[2] == "computed"
    other = _model(7)
    assert distill.teacher_targets(other, x)[2] == "computed"


def test_disk_cache_is_checked_against_its_data(tmp_path):
    teacher = _model()
    a, _ = _data(seed=0)
    b, _ = _data(seed=1)
    (out_a,), _, status = distill.teacher_targets(teacher, a, cache_dir=str(tmp_path))
    assert status == "computed"
    assert distill.teacher_targets(teacher, a, cache_dir=str(tmp_path))[2] == "disk"
    (fresh_b,), _, _ = distill.teacher_targets(teacher, b, use_cache=False)
    # A stale file under b's name (made from a): detected, not used, replaced.
    (path_a,) = list(tmp_path.iterdir())
    distill.teacher_targets(teacher, b, cache_dir=str(tmp_path))
    path_b = next(p for p in tmp_path.iterdir() if p != path_a)
    shutil.copy(path_a, path_b)
    with pytest.warns(UserWarning, match="other data"):
        (out_b,), _, status = distill.teacher_targets(teacher, b, cache_dir=str(tmp_path))
    assert status == "stale-recomputed"
    np.testing.assert_array_equal(out_b, fresh_b)
    assert not np.array_equal(out_b, out_a)
    assert distill.teacher_targets(teacher, b, cache_dir=str(tmp_path))[2] == "disk"


# ----------------------------------------------------------------------------
# Built students


def test_width_student_of_the_example_matches_the_example_builder():
    from edgekit import datasets

    teacher = datasets.build_example_model(width=1.0)
    student = distill.thinner_copy(teacher, 0.5)
    want = datasets.build_example_model(width=0.5)
    assert student.count_params() == want.count_params()
    assert student.get_layer("predictions").units == 10
    assert distill.thinner_copy(teacher, 0.45).count_params() <= teacher.count_params() / 4


def test_width_student_refuses_an_architecture_that_does_not_scale():
    tf_keras = _compat.tf_keras()
    inputs = tf_keras.Input((8, 8, 16))
    x = tf_keras.layers.Conv2D(16, 3, padding="same")(inputs)
    x = tf_keras.layers.Add()([inputs, x])  # residual from the unscaled input
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf_keras.layers.Dense(4, activation="softmax")(x)
    with pytest.raises(errors.UserInputError, match="does not allow width:0.5"):
        distill.thinner_copy(tf_keras.Model(inputs, outputs), 0.5)
    with pytest.raises(errors.UserInputError, match="width=1.5"):
        distill.thinner_copy(make_tiny_model(), 1.5)


# ----------------------------------------------------------------------------
# The command


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distill_cli")
    _model().save(folder / "teacher.keras")
    x, y = _data()
    np.savez(folder / "train.npz", x=x, y=y)
    vx, vy = _data(32, seed=1)
    np.savez(folder / "val.npz", x=vx, y=vy)
    return folder


def test_cli_writes_student_and_report(files):
    out = files / "student.keras"
    proc = run_cli(
        "distill",
        f"--teacher={files / 'teacher.keras'}",
        "--student=width:0.5",
        f"--data={files / 'train.npz'}",
        f"--val_data={files / 'val.npz'}",
        "--epochs=1",
        "--batch_size=16",
        "--baseline",
        f"--output={out}",
        f"--json={files / 'report.json'}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((files / "report.json").read_text())
    for key in (
        "teacher_accuracy",
        "student_from_labels_accuracy",
        "distilled_accuracy",
        "teacher_params",
        "student_params",
    ):
        assert report[key] is not None, key
    assert report["accuracy_on"] == "val_data" and out.exists()
    assert "student, distilled" in proc.stdout


def test_cli_bad_alpha_is_a_clean_error(files):
    proc = run_cli(
        "distill",
        f"--teacher={files / 'teacher.keras'}",
        f"--data={files / 'train.npz'}",
        "--alpha=1.5",
        f"--output={files / 'never.keras'}",
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith("error: alpha must be in [0, 1]") and "Traceback" not in proc.stderr
    )
    assert not (files / "never.keras").exists()
