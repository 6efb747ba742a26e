"""Keras 3 models through every training-time entry point (issue 12).

prune, cluster, QAT, distillation, their commands and the pipeline take Keras 3
models through the checked bridge (edgekit.optimize.keras3). Tolerances: the bridge
promises 1e-5 max abs error on outputs of order one (both sides run the same float32
TensorFlow kernels; see tests/test_keras3_bridge.py), and the tests hold it to that.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_cli

from edgekit import _compat, config
from edgekit.optimize import keras3 as bridge

TOL = 1e-5
FIT = config.FitConfig(epochs=2, batch_size=16)


@pytest.fixture(scope="module")
def keras():
    return _compat.keras3()


def _model(keras, *, activation="relu"):
    """A tiny Keras 3 classifier on 8x8x1 images (seeded, untrained)."""
    keras.utils.set_random_seed(0)
    x_in = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(8, 3, activation="relu", name="stem")(x_in)
    h = keras.layers.Conv2D(16, 3, activation=activation, name="conv")(h)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(32, activation="relu", name="hidden")(h)
    out = keras.layers.Dense(4, activation="softmax", name="head")(h)
    return keras.Model(x_in, out, name="mine")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((64, 8, 8, 1), dtype=np.float32), rng.integers(0, 4, 64)


def _equivalence_ok(entry):
    eq = entry["equivalence"]
    return eq["max_abs_error"] <= TOL and eq["cosine"] >= 1 - 1e-6 and eq["samples"] == 32


def _load_fresh(script, saved, x, tmp_path):
    """Runs `script` on tmp_path/saved in a fresh process without edgekit on its path.

    The script gets the model, 16 inputs (x.npy) and where to save its outputs (y.npy),
    and prints `module imported_edgekit details` last; returns those three words.
    """
    np.save(tmp_path / "x.npy", x[:16])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / saved)]
        + [str(tmp_path / "x.npy"), str(tmp_path / "y")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1].split(" ", 2)


# The child loads with plain Keras: no edgekit import, no custom objects.
_LOAD_FRESH = """
import sys, numpy as np, keras
m = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], np.asarray(m.predict(np.load(sys.argv[2]), verbose=0)))
zeros = {l.name: float(np.mean(l.kernel.numpy() == 0)) for l in m.layers if hasattr(l, "kernel")}
print(type(m).__module__, "edgekit" in sys.modules, zeros)
"""


@pytest.mark.slow
def test_cli_prunes_a_keras3_file_to_80_percent_and_gives_keras3_back(keras, data, tmp_path):
    x, y = data
    _model(keras, activation="hard_silu").save(tmp_path / "model.keras")
    np.savez(tmp_path / "train.npz", x=x, y=y)
    proc = run_cli(
        "prune",
        f"--model={tmp_path / 'model.keras'}",
        f"--data={tmp_path / 'train.npz'}",
        f"--output={tmp_path / 'pruned.keras'}",
        f"--json={tmp_path / 'report.json'}",
        "--target_sparsity=0.8",
        "--epochs=2",
        "--batch_size=16",
        "--compare_sparse_tflite=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["bridge"]["in"]["direction"] == "keras3->tf_keras"
    assert report["bridge"]["back"]["via_like"]
    # The Keras 3 model computes what the pruned (tf_keras) model computed, on 32 of
    # the user's training inputs.
    assert _equivalence_ok(report["bridge"]["in"]) and _equivalence_ok(report["bridge"]["back"])

    module, imported_edgekit, zeros = _load_fresh(_LOAD_FRESH, "pruned.keras", x, tmp_path)
    assert module.startswith("keras.") and imported_edgekit == "False"
    zeros = eval(zeros)  # noqa: S307 - a dict literal printed by the child above
    mine = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(
        np.load(tmp_path / "y.npy"), np.asarray(mine(x[:16])), atol=TOL, rtol=0
    )
    pruned = [s["name"] for s in report["layers"] if s["compressed"]]
    assert pruned
    sizes = {n: int(np.prod(mine.get_layer(n).kernel.shape)) for n in pruned}
    sparsity = sum(zeros[n] * sizes[n] for n in pruned) / sum(sizes.values())
    assert abs(sparsity - 0.8) <= 0.01


_LOAD_FRESH_CLUSTERS = """
import sys, numpy as np, keras
m = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], np.asarray(m.predict(np.load(sys.argv[2]), verbose=0)))
values = {l.name: len(np.unique(l.kernel.numpy())) for l in m.layers if hasattr(l, "kernel")}
print(type(m).__module__, "edgekit" in sys.modules, values)
"""


def test_cluster_returns_keras3_with_at_most_n_values_per_kernel(keras, data, tmp_path):
    from edgekit.optimize import cluster

    x, y = data
    model = _model(keras)
    before = [np.array(w) for w in model.get_weights()]
    mine, report = cluster.cluster(model, config.ClusterConfig(num_clusters=8), (x, y), fit=FIT)
    assert bridge.is_keras3(mine) and type(mine) is type(model)
    assert _equivalence_ok(report.bridge["in"]) and _equivalence_ok(report.bridge["back"])
    clustered = [s.name for s in report.layers if s.compressed]
    assert clustered
    for name in clustered:
        assert len(np.unique(np.asarray(mine.get_layer(name).kernel))) <= 8, name
    # The caller's model is untouched.
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))

    # Saved, it loads in a fresh process with plain Keras (no edgekit, no custom
    # objects), keeps its clusters and computes what the clustered model computes.
    mine.save(tmp_path / "clustered.keras")
    module, imported_edgekit, values = _load_fresh(
        _LOAD_FRESH_CLUSTERS, "clustered.keras", x, tmp_path
    )
    assert module.startswith("keras.") and imported_edgekit == "False"
    values = eval(values)  # noqa: S307 - a dict literal printed by the child above
    for name in clustered:
        assert values[name] <= 8, (name, values)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.asarray(mine(x[:16])), atol=TOL)


def test_qat_of_a_keras3_model_converts_to_int8_with_trained_ranges(keras, data):
    from edgekit import convert
    from edgekit.optimize import qat

    x, y = data
    qat_model, report = qat.quantize_aware(_model(keras), config.QATConfig(), (x, y), fit=FIT)
    # The QAT model is tf_keras: TF-MOT's fake-quant wrappers exist only there.
    assert not bridge.is_keras3(qat_model)
    assert _equivalence_ok(report.bridge["in"]) and report.bridge["back"] is None
    assert report.to_dict()["bridge"]["in"]["direction"] == "keras3->tf_keras"
    result = convert.convert(qat_model, config.ConvertConfig(mode="int8"))
    assert result.converter_settings["ranges"].startswith("from quantization-aware training")


def test_distill_a_keras3_teacher_into_a_half_width_student(keras, data):
    from edgekit.optimize import distill

    x, y = data
    teacher = _model(keras)
    student, report = distill.distill(teacher, "width:0.5", config.DistillConfig(), (x, y), fit=FIT)
    assert bridge.is_keras3(student)
    assert report.student_params < report.teacher_params
    assert _equivalence_ok(report.bridge["teacher"]["in"])
    assert _equivalence_ok(report.bridge["student"]["back"])
    assert report.to_dict()["bridge"]["teacher"]["back"] is None
    # The Keras 3 student is the trained one: same predictions as the distilled
    # accuracy measured (top-1 on the data).
    acc = float(np.mean(np.argmax(np.asarray(student(x)), -1) == y))
    assert abs(acc - report.distilled_accuracy) < 1e-6


def test_distill_keras3_student_with_qat_stays_tf_keras(keras, data):
    from edgekit.optimize import distill

    x, y = data
    student, report = distill.distill(
        _model(keras),
        _model(keras),
        config.DistillConfig(),
        (x, y),
        fit=FIT,
        qat=config.QATConfig(),
    )
    assert not bridge.is_keras3(student)
    assert _equivalence_ok(report.bridge["student"]["in"])
    assert report.bridge["student"]["back"] is None


def test_distill_a_keras3_teacher_into_a_half_width_student_with_qat_to_int8(keras, data):
    from edgekit import convert, runtime
    from edgekit.optimize import distill

    x, y = data
    student, report = distill.distill(
        _model(keras), "width:0.5", config.DistillConfig(), (x, y), fit=FIT, qat=config.QATConfig()
    )
    assert not bridge.is_keras3(student)  # the QAT student: its deliverable is the int8 file
    assert report.student_params < report.teacher_params
    assert _equivalence_ok(report.bridge["teacher"]["in"])
    result = convert.convert(student, config.ConvertConfig(mode="int8"), calibration_data=x)
    assert result.converter_settings["ranges"].startswith("from quantization-aware training")
    # The int8 file scores the data as the QAT student does (64 samples: within 3).
    lite = runtime.LiteModel(result.tflite_bytes)
    agree = np.mean(lite.predict(x).argmax(-1) == student.predict(x, verbose=0).argmax(-1))
    assert agree >= 61 / 64, agree


@pytest.mark.slow
def test_pipeline_prune50_int8_on_a_keras3_model(keras, data, tmp_path):
    import edgekit
    from edgekit import recipes

    x, y = data
    np.savez(tmp_path / "train.npz", x=x, y=y)
    # The recipe unchanged but for a shorter budget and no benchmark (time).
    recipe = dataclasses.replace(recipes.resolve_recipe("prune50_int8"), fit=FIT, benchmark=None)
    result = edgekit.run(
        recipe, model=_model(keras), data=tmp_path / "train.npz", output_dir=tmp_path / "out"
    )
    optimized = keras.saving.load_model(tmp_path / "out" / "optimized.keras")
    assert bridge.is_keras3(optimized)
    summary = result.summary
    assert summary["keras"]["input"] == "keras3"
    assert summary["keras"]["optimized_keras"] == "keras3"
    assert _equivalence_ok(summary["keras"]["bridge"]["prune"]["back"])
    assert summary["stages"]["prune"]["bridge"]["in"]["direction"] == "keras3->tf_keras"
    assert any("Keras 3" in n and "max abs error" in n for n in summary["notes"])
    assert "Keras 3" in (tmp_path / "out" / "report.md").read_text()
    sparsity = summary["stages"]["prune"]["achieved_sparsity"]
    assert abs(sparsity - 0.5) <= 0.01


# ----------------------------------------------------------------------------
# Refused by edgekit-prune before any training, exit 2, nothing written

_CLASSES = """
import keras

@keras.saving.register_keras_serializable(package="mine")
class Scale(keras.layers.Layer):
    def call(self, x):
        return x * 2.0

@keras.saving.register_keras_serializable(package="mine")
class Net(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)
"""


def _bad_model(keras, kind, tmp_path):
    sys.path.insert(0, str(tmp_path))
    try:
        import mine_classes
    finally:
        sys.path.remove(str(tmp_path))
    x = keras.Input((4,))
    if kind == "custom_layer":
        return keras.Model(x, keras.layers.Dense(2)(mine_classes.Scale(name="my_scale")(x)))
    if kind == "subclassed":
        net = mine_classes.Net(name="net")
        net(np.zeros((1, 4), np.float32))
        return net
    if kind == "quantized":
        model = keras.Model(x, keras.layers.Dense(2, name="dense_q")(x))
        with pytest.warns(UserWarning):
            model.quantize("int8")
        return model
    h = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    return keras.Model(x, keras.layers.Dense(2)(h))


REFUSALS = {
    "custom_layer": ["my_scale", "Scale", "custom layer"],
    "subclassed": ["subclassed", "Functional"],
    "quantized": ["dense_q", "quantize", "float model"],
    "lambda": ["double", "--allow_unsafe_deserialization"],
}


@pytest.mark.slow
def test_cli_refuses_keras3_models_the_bridge_cannot_take(keras, tmp_path):
    (tmp_path / "mine_classes.py").write_text(_CLASSES)
    rng = np.random.default_rng(0)
    procs, before = {}, {}
    for kind in REFUSALS:  # one process each, all at once (each imports TensorFlow)
        work = tmp_path / kind
        work.mkdir()
        _bad_model(keras, kind, tmp_path).save(work / "model.keras")
        x, y = rng.random((32, 4), dtype=np.float32), rng.integers(0, 2, 32)
        np.savez(work / "train.npz", x=x, y=y)
        before[kind] = sorted(p.name for p in work.iterdir())
        args = [
            "edgekit-prune",
            f"--model={work / 'model.keras'}",
            f"--data={work / 'train.npz'}",
            f"--output={work / 'pruned.keras'}",
            f"--json={work / 'report.json'}",
            "--epochs=1",
        ]
        # The user's classes are registered before the command runs (as a package would).
        code = (
            f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import mine_classes; "
            f"sys.argv = {args!r}; from edgekit.cli.prune import run; run()"
        )
        procs[kind] = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=work,
        )
    for kind, says in REFUSALS.items():
        _, stderr = procs[kind].communicate(timeout=600)
        assert procs[kind].returncode == 2, (kind, stderr[-3000:])
        assert "Traceback" not in stderr, stderr[-3000:]
        # TensorFlow's C++ start-up lines may come first; the error is one paragraph.
        paragraph = stderr[stderr.index("error: ") :].strip()
        assert "\n\n" not in paragraph and "Received:" in paragraph, paragraph
        text = " ".join(paragraph.split())
        for word in says:
            assert word in text, (kind, word, text)
        assert sorted(p.name for p in (tmp_path / kind).iterdir()) == before[kind], kind
