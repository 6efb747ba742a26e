"""Tests for edgekit.optimize.technique: the hook techniques share, and its driver."""

from __future__ import annotations

import numpy as np

from edgekit import _compat, config
from edgekit.optimize import layers as layers_lib
from edgekit.optimize import prune, qat, technique


def _tiny():
    tf_keras = _compat.tf_keras()
    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    inputs = layers.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, name="stem")(inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = layers.Dense(10, activation="softmax", name="head")(x)
    return tf_keras.Model(inputs, outputs)


def _data(n: int = 64):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, n)


_FIT = config.FitConfig(epochs=2, batch_size=16)


class _Recording:
    """A user's own technique: trains a plain copy and records what the driver did."""

    def __init__(self, model):
        self.model = model
        self.calls: list[str] = []

    def build(self):
        self.calls.append("build")
        return layers_lib.clone(self.model)

    def callbacks(self):
        self.calls.append("callbacks")
        return []

    def finish(self, trained, fit_report):
        self.calls.append("finish")
        return layers_lib.unshare(trained), {"steps": fit_report.total_steps}


def test_the_driver_builds_once_trains_then_finishes_any_technique():
    model = _tiny()
    before = layers_lib.weights_snapshot(model)
    own = _Recording(model)
    trained, report = technique.run(own, _data(), fit=_FIT)
    assert sorted(own.calls[:2]) == ["build", "callbacks"] and own.calls[2:] == ["finish"]
    assert report == {"steps": 8}  # 64 samples / 16 per batch x 2 epochs
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert not all(
        np.array_equal(a, b) for a, b in zip(before, trained.get_weights(), strict=True)
    ), "the copy did not train"


def test_pruning_then_qat_compose_through_the_hook():
    x, y = _data()
    total_steps = 8
    pruning = prune.Pruning(
        _tiny(), config.PruneConfig(target_sparsity=0.5, skip_first=False), total_steps=total_steps
    )
    pruned, prune_report = technique.run(pruning, (x, y), fit=_FIT)
    assert prune_report.fit.total_steps == total_steps
    assert abs(prune_report.achieved_sparsity - 0.5) < 0.02
    quantization = qat.QuantizationAware(pruned, config.QATConfig(preserve="sparsity"), x)
    final, qat_report = technique.run(quantization, (x, y), fit=config.FitConfig(epochs=1))
    assert qat_report.num_float == 0
    # Sparsity-preserving QAT keeps the zeros the pruning made (within a point).
    assert abs(qat_report.sparsity_after - qat_report.sparsity_before) <= 0.01
    assert final.predict(x[:4], verbose=0).shape == (4, 10)
