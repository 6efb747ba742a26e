"""Tests for the shared fine-tune loop: checks, cloning, selection, loss, strategies."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgekit import _compat, config, errors
from edgekit.optimize import fit as fit_lib
from edgekit.optimize import layers as layers_lib
from edgekit.optimize import strategy as strategy_lib


def _tiny(activation: str | None = "softmax"):
    tf_keras = _compat.tf_keras()
    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    inputs = layers.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, name="stem")(inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(8, name="hidden")(x)
    outputs = layers.Dense(10, activation=activation, name="head")(x)
    return tf_keras.Model(inputs, outputs)


def _data(n: int = 64):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, n)


def test_fit_config_validation():
    with pytest.raises(errors.UserInputError, match="epochs.*Received: epochs=0"):
        config.FitConfig(epochs=0)
    with pytest.raises(errors.UserInputError, match="learning_rate"):
        config.FitConfig(learning_rate=0)
    with pytest.raises(errors.UserInputError, match="Unknown strategy"):
        config.FitConfig(strategy="tpu")
    cfg = config.FitConfig(strategy="mirrored", steps_per_epoch=3)
    assert config.FitConfig.from_dict(cfg.to_dict()) == cfg


def test_fine_tune_counts_steps_and_picks_the_loss():
    model, report = fit_lib.fine_tune(
        lambda: layers_lib.clone(_tiny()), _data(), fit=config.FitConfig(epochs=2, batch_size=16)
    )
    assert report.total_steps == 8 and report.steps_per_epoch == 4
    assert report.loss == "sparse_categorical_crossentropy" and report.from_logits is False
    assert len(report.history["loss"]) == 2 and report.num_replicas == 1
    _, report = fit_lib.fine_tune(
        lambda: layers_lib.clone(_tiny(None)),
        _data(),
        fit=config.FitConfig(epochs=1, steps_per_epoch=3),
    )
    assert report.from_logits is True and report.total_steps == 3


def test_regression_labels_get_mse():
    x, _ = _data()
    _, report = fit_lib.fine_tune(
        lambda: layers_lib.clone(_tiny(None)),
        (x, np.random.default_rng(0).random((64, 10)).astype(np.float32)),
        fit=config.FitConfig(epochs=1),
    )
    assert report.loss == "mean_squared_error"


def test_labels_outside_the_classes():
    x, y = _data()
    with pytest.raises(errors.UserInputError, match=r"\[0, 10\)"):
        fit_lib.fine_tune(lambda: layers_lib.clone(_tiny()), (x, y + 10), fit=config.FitConfig())


def test_data_without_labels():
    with pytest.raises(errors.UserInputError, match="labels"):
        fit_lib.as_arrays((np.zeros((4, 8, 8, 1)), None))


def test_check_data_fits():
    fit_lib.check_data_fits(_tiny(), np.zeros((2, 8, 8, 1)))
    with pytest.raises(errors.UserInputError, match=r"sample has shape \[8, 8\]"):
        fit_lib.check_data_fits(_tiny(), np.zeros((2, 8, 8)))


def test_clone_is_independent_with_nested_model_and_shared_layer():
    tf_keras = _compat.tf_keras()
    layers = tf_keras.layers
    inner_in = layers.Input((4,))
    inner = tf_keras.Model(inner_in, layers.Dense(4, name="inner_dense")(inner_in))
    shared = layers.Dense(4, name="shared")
    inputs = layers.Input((4,))
    outputs = shared(inner(shared(inputs)))
    model = tf_keras.Model(inputs, outputs)
    copy = layers_lib.clone(model)
    x = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    before = layers_lib.weights_snapshot(model)
    copy.set_weights([w + 1 for w in copy.get_weights()])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert len(copy.get_weights()) == len(model.get_weights())  # still shared, not duplicated


def test_select_layers_reports_reasons():
    selected, skipped = layers_lib.select_layers(
        _tiny(), skip_first=True, exclude_layers="^head$", layer_types=("Dense", "Conv2D")
    )
    assert selected == ["hidden"]
    reasons = {s.name: s.reason for s in skipped}
    assert "skip_first" in reasons["stem"] and "exclude_layers" in reasons["head"]


def test_multi_worker_without_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(errors.UserInputError, match="TF_CONFIG"):
        strategy_lib.make_strategy("multi_worker")


# -- strategies, each in fresh processes (device setup must precede TF init) -----

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    mode = sys.argv[1]
    if mode == "mirrored":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from edgekit import config
    from edgekit.optimize import cluster, prune
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    fit = config.FitConfig(epochs=2, batch_size=16, strategy=mode)
    _, p = prune.prune(sys.argv[2], config.PruneConfig(target_sparsity=0.5), (x, y), fit=fit)
    _, c = cluster.cluster(sys.argv[2], config.ClusterConfig(num_clusters=4), (x, y), fit=fit)
    print("RESULT " + json.dumps({
        "prune_replicas": p.fit.num_replicas, "sparsity": p.achieved_sparsity,
        "cluster_replicas": c.fit.num_replicas,
        "unique": max(s.unique_values for s in c.layers if s.compressed)}))
    """
)


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout[-2000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture
def saved_model(tmp_path):
    path = tmp_path / "tiny.keras"
    _tiny().save(path)
    return str(path)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus(saved_model):
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "mirrored", saved_model],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = _result(out.stdout)
    assert r["prune_replicas"] == 2 and r["cluster_replicas"] == 2
    assert abs(r["sparsity"] - 0.5) < 0.02 and r["unique"] <= 4


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_two_processes(saved_model):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _SCRIPT, "multi_worker", saved_model],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=300))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
        r = _result(stdout)
        assert r["prune_replicas"] == 2 and r["cluster_replicas"] == 2
        assert abs(r["sparsity"] - 0.5) < 0.02 and r["unique"] <= 4


def _scalars(folder) -> dict[str, list[float]]:
    """{tag: values} of every scalar summary in the event files under `folder`."""
    tf = _compat.tf()
    out: dict[str, list[float]] = {}
    for path in sorted(pathlib.Path(folder).rglob("events.out.tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    number = tf.make_ndarray(value.tensor)
                    if number.dtype.kind not in "fiu" or number.size != 1:
                        continue  # the model graph, histograms
                else:
                    number = value.simple_value
                out.setdefault(value.tag, []).append(float(number))
    return out


def test_log_dir_writes_summaries_tensorboard_reads(tmp_path):
    # tensorboard is in the `tensorflow` extra, so --log_dir works on a default install.
    assert importlib.util.find_spec("tensorboard") is not None
    from tensorboard.backend.event_processing import event_accumulator

    from edgekit.optimize import prune

    log_dir = tmp_path / "logs"
    fit = config.FitConfig(epochs=2, batch_size=16, log_dir=str(log_dir))
    cfg = config.PruneConfig(target_sparsity=0.5, schedule="constant")
    _, report = prune.prune(_tiny(), cfg, _data(), fit=fit)
    # Keras' TensorBoard callback: the loss of each epoch, as TensorBoard reads it.
    train = event_accumulator.EventAccumulator(str(log_dir / "train"))
    train.Reload()
    assert "epoch_loss" in train.Tags()["tensors"]
    losses_logged = _scalars(log_dir / "train")["epoch_loss"]
    assert len(losses_logged) == 2
    np.testing.assert_allclose(losses_logged, report.fit.history["loss"], rtol=1e-5)
    # TF-MOT's PruningSummaries: each pruned kernel's sparsity (and threshold).
    metrics = _scalars(log_dir / "metrics")
    sparsity = {tag: v for tag, v in metrics.items() if tag.endswith("/sparsity")}
    assert sparsity and any(tag.endswith("/threshold") for tag in metrics)
    assert max(max(v) for v in sparsity.values()) == pytest.approx(0.5, abs=0.05)


def test_log_dir_without_tensorboard_is_a_clear_error(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    fit = config.FitConfig(epochs=1, log_dir=str(tmp_path / "logs"))
    with pytest.raises(errors.UserInputError, match=r"tensorboard.*edgekit\[tensorflow\]"):
        fit_lib.fine_tune(lambda: layers_lib.clone(_tiny()), _data(), fit=fit)
    assert not (tmp_path / "logs").exists()
