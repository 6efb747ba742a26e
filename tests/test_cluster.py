"""Tests for edgekit.optimize.cluster: initialisations, per-channel, sparsity, bad inputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgekit import _compat, config, errors
from edgekit.optimize import cluster, prune
from edgekit.optimize import layers as layers_lib


def _tiny(seed: int = 0):
    tf_keras = _compat.tf_keras()
    tf_keras.utils.set_random_seed(seed)
    layers = tf_keras.layers
    inputs = layers.Input((8, 8, 1), name="image")
    x = layers.Conv2D(8, 3, name="stem")(inputs)
    x = layers.DepthwiseConv2D(3, name="dw")(x)
    x = layers.Conv2D(16, 1, use_bias=False, name="pw")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = layers.Dense(10, activation="softmax", name="head")(x)
    return tf_keras.Model(inputs, outputs)


def _data(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, n)


_FIT = config.FitConfig(epochs=1, batch_size=16)


def _stats(report):
    return {s.name: s for s in report.layers}


@pytest.mark.parametrize("init", ["kmeans++", "linear", "random", "density"])
def test_every_init_clusters_and_leaves_caller_model_alone(init):
    model = _tiny()
    before = layers_lib.weights_snapshot(model)
    stripped, report = cluster.cluster(
        model, config.ClusterConfig(num_clusters=4, init=init), _data(), fit=_FIT
    )
    # TF-MOT's cluster_weights has changed the model it was given; edgekit's never is.
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    stats = _stats(report)
    for name in ("pw", "hidden", "head"):
        assert stats[name].compressed and stats[name].unique_values <= 4, stats[name]
    assert stats["stem"].unique_values > 4  # left alone by default (first layer)
    assert len(np.unique(stripped.get_layer("hidden").kernel.numpy())) <= 4
    assert not any("cluster" in type(layer).__name__.lower() for layer in stripped.layers)


def test_per_channel_clusters_each_channel_even_without_bias():
    # TF-MOT's own size check misreads Conv2D layers without a bias and silently
    # skips them; edgekit wraps them itself.
    _, report = cluster.cluster(
        _tiny(),
        config.ClusterConfig(num_clusters=3, per_channel=True, layers="pw"),
        _data(),
        fit=_FIT,
    )
    pw = _stats(report)["pw"]
    assert pw.compressed
    assert pw.max_unique_per_channel <= 3
    assert pw.unique_values > 3  # different centroids per channel


def test_preserve_sparsity_keeps_pruned_zeros():
    pruned, prune_report = prune.prune(
        _tiny(), config.PruneConfig(target_sparsity=0.5), _data(), fit=config.FitConfig(epochs=2)
    )
    _, report = cluster.cluster(
        pruned, config.ClusterConfig(num_clusters=4, preserve_sparsity=True), _data(), fit=_FIT
    )
    before, after = _stats(prune_report), _stats(report)
    for name in ("pw", "hidden", "head"):
        assert after[name].sparsity >= before[name].sparsity - 1e-6, name
        assert after[name].unique_values <= 4


def test_stripped_model_saves_and_loads_with_plain_tf_keras(tmp_path):
    tf_keras = _compat.tf_keras()
    stripped, report = cluster.cluster(
        _tiny(), config.ClusterConfig(num_clusters=4), _data(), fit=_FIT
    )
    stripped.save(tmp_path / "c.keras")
    loaded = tf_keras.models.load_model(tmp_path / "c.keras")
    assert len(np.unique(loaded.get_layer("head").kernel.numpy())) <= 4
    d = report.to_dict()
    assert d["technique"] == "cluster" and d["num_clusters"] == 4


def test_layers_with_too_few_weights_are_left_out_with_reason():
    _, report = cluster.cluster(
        _tiny(), config.ClusterConfig(num_clusters=100, skip_first=False), _data(), fit=_FIT
    )
    reasons = {s.name: s.reason for s in report.skipped}
    assert "num_clusters=100" in reasons["stem"]  # 72 weights
    assert _stats(report)["pw"].compressed  # 128 weights


# -- bad inputs ----------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, -3])
def test_zero_clusters(value):
    with pytest.raises(errors.UserInputError, match=r"num_clusters.*Received: num_clusters"):
        config.ClusterConfig(num_clusters=value)


def test_more_clusters_than_weights():
    with pytest.raises(errors.UserInputError, match="not smaller than the weights"):
        cluster.cluster(_tiny(), config.ClusterConfig(num_clusters=10_000), _data(), fit=_FIT)


def test_preserve_sparsity_needs_three_clusters():
    with pytest.raises(errors.UserInputError, match=">= 3"):
        config.ClusterConfig(num_clusters=2, preserve_sparsity=True)


def test_unknown_init():
    with pytest.raises(errors.UserInputError, match="kmeans"):
        config.ClusterConfig(init="kmeans")


def test_data_shape_mismatch():
    x = np.zeros((8, 8, 8, 3), np.float32)
    with pytest.raises(errors.UserInputError, match="does not fit the model"):
        cluster.cluster(_tiny(), config.ClusterConfig(), (x, np.zeros(8, int)), fit=_FIT)


def test_already_wrapped_model():
    tfmot = _compat.tfmot()
    wrapped = tfmot.clustering.keras.cluster_weights(
        layers_lib.clone(_tiny()), number_of_clusters=4
    )
    with pytest.raises(errors.UserInputError, match="already wrapped by TF-MOT"):
        cluster.cluster(wrapped, config.ClusterConfig(), _data(), fit=_FIT)


def test_subclassed_model():
    tf_keras = _compat.tf_keras()

    class Net(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf_keras.layers.Dense(10)

        def call(self, x):
            return self.dense(tf_keras.layers.Flatten()(x))

    net = Net()
    net(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(errors.UserInputError, match="build a Functional model|Build a Functional"):
        cluster.cluster(net, config.ClusterConfig(), _data(), fit=_FIT)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    x, y = _data(64)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    _tiny().save(tmp_path / "m.keras")
    cmd = [
        sys.executable,
        "-m",
        "edgekit.cli.cluster",
        f"--model={tmp_path / 'm.keras'}",
        f"--data={tmp_path / 'train.npz'}",
        "--num_clusters=4",
        "--epochs=1",
        f"--output={tmp_path / 'c.keras'}",
        f"--json={tmp_path / 'c.json'}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "c.keras").exists() and (tmp_path / "c.json").exists()
    assert "clustered to at most 4 values" in out.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already exists" in again.stderr
