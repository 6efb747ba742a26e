"""Tests for edgekit.optimize.qat and edgekit-qat: tiny models built in code."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgekit import _compat, errors, runtime
from edgekit import config as config_lib
from edgekit import convert as convert_lib
from edgekit.optimize import qat

FIT = config_lib.FitConfig(epochs=1, steps_per_epoch=4, batch_size=16, learning_rate=1e-3)


def _trap_model(seed: int = 0):
    """A model with every layer kind plain `quantize_model` refuses."""
    k = _compat.tf_keras()
    k.utils.set_random_seed(seed)
    inp = k.Input((8, 8, 3))
    x = k.layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    x = k.layers.Conv2D(8, 3, padding="same")(x)
    x = k.layers.BatchNormalization()(x)
    hs = k.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard sigmoid
    x = k.layers.Multiply()([x, hs])
    y = k.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = k.layers.BatchNormalization()(y)
    y = k.layers.Conv2D(8, 1)(y)
    x = k.layers.Add()([x, y])
    x = k.layers.BatchNormalization()(x)  # not after a convolution
    x = k.layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = k.layers.Flatten()(x)
    out = k.layers.Dense(4)(x)
    return _settle_batch_norm(k.Model(inp, out), _data(64, seed=seed)[0])


def _settle_batch_norm(model, x):
    """Gives batch norm the statistics of the data, as a trained model has."""
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    for layer in bns:
        layer.momentum = 0.0
    model(x, training=True)
    for layer in bns:
        layer.momentum = 0.99
    return model


def _conv_dense_model():
    """A small conv + dense model with kernels to prune and cluster (seed set by the caller)."""
    k = _compat.tf_keras()
    inp = k.Input((8, 8, 3))
    h = k.layers.Rescaling(1 / 255)(inp)
    h = k.layers.Conv2D(16, 3, activation="relu")(h)
    h = k.layers.Flatten()(h)
    out = k.layers.Dense(4)(k.layers.Dense(32, activation="relu")(h))
    return k.Model(inp, out)


def _data(n: int = 64, seed: int = 0):
    rs = np.random.RandomState(seed)
    x = rs.uniform(0, 255, (n, 8, 8, 3)).astype("float32")
    return x, rs.randint(0, 4, n)


@pytest.fixture(scope="module")
def trained():
    model = _trap_model()
    x, y = _data()
    before = [w.copy() for w in model.get_weights()]
    q, report = qat.quantize_aware(model, config_lib.QATConfig(), (x, y), fit=FIT)
    return model, before, q, report, x


def test_plain_tfmot_refuses_the_trap_model():
    tfmot = _compat.tfmot()
    with pytest.raises((RuntimeError, AttributeError, ValueError)):
        tfmot.quantization.keras.quantize_model(_trap_model())


def test_callers_model_is_not_changed(trained):
    model, before, q, _, _ = trained
    assert q is not model
    after = model.get_weights()
    assert len(after) == len(before)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert not any("quantize" in type(layer).__name__.lower() for layer in model.layers)


def test_report_lists_every_layer_with_reason(trained):
    model, _, q, report, _ = trained
    names = {d.name for d in report.layers}
    # Every non-input layer is listed exactly once, and so are the two scale layers
    # that splitting adds (see below).
    assert {layer.name for layer in model.layers[1:]} <= names
    assert len(names) == len(report.layers) == len(model.layers) - 1 + 2
    assert report.num_float == 0 and report.num_quantized == len(report.layers)
    assert all(d.reason for d in report.layers)
    by_type = {d.type: d.reason for d in report.layers}
    assert "output-only" in by_type["Rescaling"]
    assert "output-only" in by_type["Multiply"]
    # x + 3 and x * (1/6) become Rescaling; the input Rescaling (scale and offset) and
    # the batch norm after Add (not folded into a conv) are split into scale + shift.
    ops = sorted(r.op for r in report.rewrites)
    assert ops == [
        "BatchNormalization (standalone; frozen)",
        "Rescaling",
        "tf.__operators__.add",
        "tf.math.multiply",
    ], ops
    assert report.to_dict()["layers"][0]["status"] in ("quantized", "float")


def test_split_layers_compute_what_the_originals_did():
    model = _trap_model()
    split, rewrites = qat._qat_rewrite.split_affine(model)
    assert len(rewrites) == 2 and split is not model
    names = {layer.name for layer in split.layers}
    assert all(f"{r.name}_scale" in names for r in rewrites)
    x = _data(16, seed=3)[0]
    np.testing.assert_allclose(
        split.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-4
    )


def test_int8_tflite_agrees_with_qat_model(trained):
    _, _, q, _, x = trained
    result = convert_lib.convert(q, config_lib.ConvertConfig(mode="int8"), calibration_data=x)
    # The ranges QAT learned are kept: calibrating would replace them.
    assert result.num_calibration_samples == 0
    assert result.converter_settings["ranges"].startswith("from quantization-aware training")
    assert convert_lib.float_ops(result.tflite_bytes) == []
    lite = runtime.LiteModel(result.tflite_bytes)
    assert lite.inputs[0].dtype == "float32"  # float I/O, int8 inside
    xt = _data(32, seed=1)[0]
    want = q.predict(xt, verbose=0)
    got = lite.predict(xt)
    # The QAT model simulates every int8 op, so the file differs from it only where
    # integer rounding lands on the other side of a step: at most a couple of output
    # quantization steps anywhere.
    step = (want.max() - want.min()) / 255  # about the output tensor's int8 step
    assert np.abs(got - want).max() <= 3 * step, (np.abs(got - want).max(), step)
    cos = float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got))
    assert cos >= 0.999, cos


def test_int8_of_partly_float_qat_model_needs_calibration():
    x, y = _data(32)
    cfg = config_lib.QATConfig(skip_types=("Multiply",))
    q, _ = qat.quantize_aware(_trap_model(), cfg, (x, y), fit=FIT)
    with pytest.raises(errors.UserInputError, match="calibration data.*int8_float_fallback"):
        convert_lib.convert(q, config_lib.ConvertConfig(mode="int8"))
    result = convert_lib.convert(q, config_lib.ConvertConfig(mode="int8"), calibration_data=x)
    assert result.num_calibration_samples > 0
    assert result.converter_settings["ranges"].startswith("calibrated")
    assert convert_lib.float_ops(result.tflite_bytes) == []


def test_saved_model_loads_with_plain_tf_keras_in_fresh_process(trained, tmp_path):
    _, _, q, _, x = trained
    _loads_in_fresh_process(q, x, tmp_path)


def _loads_in_fresh_process(q, x, tmp_path):
    from edgekit import io

    path = tmp_path / "qat.keras"
    io.save_model(q, path)
    np.save(tmp_path / "x.npy", x[:4])
    np.save(tmp_path / "want.npy", q.predict(x[:4], verbose=0))
    code = (
        "import numpy as np, tf_keras\n"
        f"m = tf_keras.models.load_model({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r}); want = np.load({str(tmp_path / 'want.npy')!r})\n"
        "np.testing.assert_allclose(m.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)\n"
        "print('OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK" in out.stdout


def test_exclude_layers_leaves_them_float():
    x, y = _data(32)
    cfg = config_lib.QATConfig(exclude_layers="^dense", skip_types=("Multiply",))
    _, decisions, _ = qat.prepare(_trap_model(), cfg)
    floats = {d.type: d.reason for d in decisions if d.status == "float"}
    assert set(floats) == {"Dense", "Multiply"}
    assert "exclude_layers" in floats["Dense"] and "skip_types" in floats["Multiply"]


def test_without_rewrite_op_layers_stay_float():
    _, decisions, rewrites = qat.prepare(_trap_model(), config_lib.QATConfig(rewrite_ops=False))
    assert rewrites == []
    floats = [d for d in decisions if d.status == "float"]
    assert {d.type for d in floats} == {"TFOpLambda"}
    assert all("converter calibrates" in d.reason for d in floats)


def test_subclassed_model_is_refused():
    k = _compat.tf_keras()

    class Net(k.Model):
        def __init__(self):
            super().__init__()
            self.d = k.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(errors.UserInputError, match="subclassed"):
        qat.quantize_aware(net, None, (np.zeros((4, 3), "float32"), np.zeros(4)), fit=FIT)


def test_already_wrapped_model_is_refused():
    tfmot = _compat.tfmot()
    k = _compat.tf_keras()
    inp = k.Input((4,))
    wrapped = tfmot.quantization.keras.quantize_model(k.Model(inp, k.layers.Dense(2)(inp)))
    with pytest.raises(errors.UserInputError, match="already wrapped"):
        qat.quantize_aware(wrapped, None, (np.zeros((4, 4), "float32"), np.zeros(4)), fit=FIT)


def test_data_shape_mismatch_is_refused_before_training():
    with pytest.raises(errors.UserInputError, match="does not fit the model"):
        qat.quantize_aware(
            _trap_model(), None, (np.zeros((4, 9, 9, 3), "float32"), np.zeros(4)), fit=FIT
        )


def test_bad_config_values():
    with pytest.raises(errors.UserInputError, match="preserve"):
        config_lib.QATConfig(preserve="zeros")
    with pytest.raises(errors.UserInputError, match="regular expression"):
        config_lib.QATConfig(exclude_layers="(")
    cfg = config_lib.QATConfig(preserve="both", skip_types=["Dense"])
    assert config_lib.QATConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.slow
def test_sparsity_preserving_qat_keeps_sparsity():
    k = _compat.tf_keras()
    x, y = _data(128)
    k.utils.set_random_seed(0)
    base = _conv_dense_model()
    from edgekit.optimize import prune

    prune_cfg = config_lib.PruneConfig(
        target_sparsity=0.75, schedule="constant", skip_first=False, skip_types=()
    )
    stripped, pruned = prune.prune(base, prune_cfg, (x, y), fit=config_lib.FitConfig(epochs=1))
    fit = config_lib.FitConfig(epochs=2, batch_size=32, learning_rate=1e-3)
    _, plain = qat.quantize_aware(stripped, config_lib.QATConfig(), (x, y), fit=fit)
    q, kept = qat.quantize_aware(
        stripped, config_lib.QATConfig(preserve="sparsity"), (x, y), fit=fit
    )
    assert pruned.achieved_sparsity == pytest.approx(0.75, abs=0.01)
    assert kept.sparsity_before == pytest.approx(0.75, abs=0.01)
    assert abs(kept.sparsity_after - kept.sparsity_before) <= 0.01
    assert plain.sparsity_after < kept.sparsity_after - 0.1  # plain QAT loses the zeros
    result = convert_lib.convert(q, config_lib.ConvertConfig(mode="int8"), calibration_data=x)
    assert runtime.LiteModel(result.tflite_bytes).predict(x[:4]).shape == (4, 4)


def test_cli_writes_model_and_report(tmp_path):
    from edgekit import io

    x, y = _data(32)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    io.save_model(_trap_model(), tmp_path / "model.keras")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit.cli.qat",
            f"--model={tmp_path / 'model.keras'}",
            f"--data={tmp_path / 'train.npz'}",
            "--epochs=1",
            "--batch_size=16",
            f"--output={tmp_path / 'qat.keras'}",
            f"--json={tmp_path / 'qat.json'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "layers quantized" in out.stdout
    assert (tmp_path / "qat.keras").exists() and (tmp_path / "qat.json").exists()
    conv = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit.cli.convert",
            f"--model={tmp_path / 'qat.keras'}",
            "--mode=int8",
            f"--calibration_data={tmp_path / 'train.npz'}",
            f"--output={tmp_path / 'qat.tflite'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert conv.returncode == 0, conv.stderr[-3000:]
    lite = runtime.LiteModel(str(tmp_path / "qat.tflite"))
    assert lite.predict(x[:2]).shape == (2, 4)


def test_cli_refuses_h5_output(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit.cli.qat",
            "--model=m.keras",
            "--data=d.npz",
            f"--output={tmp_path / 'q.h5'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert ".keras files only" in out.stderr


@pytest.mark.slow
def test_example_model_qat_int8_accuracy_within_0_3_points_of_float():
    from edgekit import datasets

    (xtr, ytr), (xte, yte) = datasets.load_digits()
    model, _ = datasets.example_model()
    float_acc = float((model.predict(xte, verbose=0).argmax(1) == yte).mean())
    fit = config_lib.FitConfig(epochs=2, batch_size=32, learning_rate=1e-4)
    q, report = qat.quantize_aware(model, config_lib.QATConfig(), (xtr, ytr), fit=fit)
    assert report.num_float == 0
    result = convert_lib.convert(q, config_lib.ConvertConfig(mode="int8"), calibration_data=xtr)
    int8_acc = float((runtime.LiteModel(result.tflite_bytes).predict(xte).argmax(1) == yte).mean())
    # 359 test digits: one sample is 0.28 points, so "within 0.3" allows one more error.
    assert int8_acc >= float_acc - 0.003, (float_acc, int8_acc)


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    # Logical devices must be set before TensorFlow starts, so this runs in a child.
    code = f"""
import sys
sys.path.insert(0, {str(__file__.rsplit("/", 1)[0])!r})
from edgekit import _compat
tf = _compat.tf()
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from test_qat import _trap_model, _data
from edgekit import config, io
from edgekit.optimize import qat
x, y = _data()
fit = config.FitConfig(epochs=1, steps_per_epoch=2, batch_size=16, strategy="mirrored")
q, report = qat.quantize_aware(_trap_model(), config.QATConfig(), (x, y), fit=fit)
assert report.fit.num_replicas == 2, report.fit
io.save_model(q, {str(tmp_path / "m.keras")!r})
print("OK", q.predict(x[:2], verbose=0).shape)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK (2, 4)" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("preserve", ["clusters", "both"])
def test_cluster_preserving_qat_keeps_centroids(preserve):
    from edgekit.optimize import cluster, prune

    k = _compat.tf_keras()
    x, y = _data(128)
    k.utils.set_random_seed(0)
    model = _conv_dense_model()
    fit = config_lib.FitConfig(epochs=1, batch_size=32, learning_rate=1e-3)
    if preserve == "both":
        model, _ = prune.prune(
            model,
            config_lib.PruneConfig(target_sparsity=0.5, schedule="constant", skip_first=False),
            (x, y),
            fit=fit,
        )
    cfg = config_lib.ClusterConfig(
        num_clusters=8, skip_first=False, preserve_sparsity=preserve == "both"
    )
    clustered, _ = cluster.cluster(model, cfg, (x, y), fit=fit)
    q, report = qat.quantize_aware(
        clustered, config_lib.QATConfig(preserve=preserve), (x, y), fit=fit
    )
    # Per channel, the int8 weights hold at most the 8 centroids (plus zero for "both").
    limit = 9 if preserve == "both" else 8
    kernels = [w for w in report.weights if w["type"] in ("Conv2D", "Dense")]
    assert kernels and all(w["max_unique_per_channel"] <= limit for w in kernels), kernels
    if preserve == "both":
        assert abs(report.sparsity_after - report.sparsity_before) <= 0.01
    result = convert_lib.convert(q, config_lib.ConvertConfig(mode="int8"), calibration_data=x)
    assert runtime.LiteModel(result.tflite_bytes).predict(x[:4]).shape == (4, 4)


def test_swish_inside_a_layer_is_moved_out_so_int8_needs_no_calibration(tmp_path):
    # EfficientNet's squeeze-excite convs carry activation="swish"; TF-MOT quantizes
    # only the swish output, and TFLite's LOGISTIC + MUL then lack the conv's range.
    k = _compat.tf_keras()
    k.utils.set_random_seed(0)
    inp = k.Input((8, 8, 3))
    x = k.layers.Rescaling(1 / 255.0)(inp)
    x = k.layers.Conv2D(8, 3, padding="same", activation="swish")(x)
    se = k.layers.GlobalAveragePooling2D(keepdims=True)(x)
    se = k.layers.Conv2D(4, 1, activation="swish")(se)
    se = k.layers.Conv2D(8, 1, activation="sigmoid")(se)
    x = k.layers.Multiply()([x, se])
    out = k.layers.Dense(4)(k.layers.Flatten()(x))
    model = k.Model(inp, out)
    x_data, y = _data(64)
    q, report = qat.quantize_aware(model, config_lib.QATConfig(), (x_data, y), fit=FIT)
    moved = [r for r in report.rewrites if r.replacement.startswith("Activation(sigmoid)")]
    assert sorted(r.op.split(" ")[0] for r in moved) == ["sigmoid", "swish", "swish"], moved
    assert all(" inside " in r.op for r in moved)
    result = convert_lib.convert(q, config_lib.ConvertConfig(mode="int8"))
    assert result.converter_settings["ranges"].startswith("from quantization-aware training")
    assert convert_lib.float_ops(result.tflite_bytes) == []
    xt = _data(32, seed=1)[0]
    want, got = q.predict(xt, verbose=0), runtime.LiteModel(result.tflite_bytes).predict(xt)
    cos = float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got))
    assert cos >= 0.99, cos
    _loads_in_fresh_process(q, xt, tmp_path)  # the sigmoid's quantize config too


# -- separable convolutions ----------------------------------------------------


def _xception_block_model(seed: int = 0, size: int = 16):
    """Xception's pattern in small: separable convs with BN and ReLU, a strided residual Add."""
    k = _compat.tf_keras()
    k.utils.set_random_seed(seed)
    inp = k.Input((size, size, 3))
    x = k.layers.Rescaling(1 / 255.0)(inp)
    x = k.layers.Conv2D(8, 3, strides=2, use_bias=False)(x)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.ReLU()(x)
    residual = k.layers.Conv2D(16, 1, strides=2, padding="same", use_bias=False)(x)
    residual = k.layers.BatchNormalization()(residual)
    y = k.layers.SeparableConv2D(16, 3, padding="same", use_bias=False)(x)
    y = k.layers.BatchNormalization()(y)
    y = k.layers.ReLU()(y)
    y = k.layers.SeparableConv2D(16, 3, padding="same", use_bias=False, depth_multiplier=2)(y)
    y = k.layers.BatchNormalization()(y)
    y = k.layers.MaxPooling2D(3, strides=2, padding="same")(y)
    x = k.layers.Add()([y, residual])
    x = k.layers.ReLU()(x)
    x = k.layers.SeparableConv2D(12, 3, strides=2, activation="relu")(x)  # bias, fused ReLU
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inp, k.layers.Dense(10)(x))


def _digits(size: int):
    """The bundled digits as size x size RGB images in [0, 255] (train, test)."""
    from edgekit.datasets import digits

    def enlarge(x):
        x = np.kron(x, np.ones((1, size // 8, size // 8, 1), np.float32)) * 255.0
        return np.repeat(x, 3, axis=-1).astype("float32")

    (x_train, y_train), (x_test, y_test) = digits.load_digits()
    return (enlarge(x_train), y_train), (enlarge(x_test), y_test)


def test_separable_conv_split_computes_what_it_did():
    model = _settle_batch_norm(_xception_block_model(), _digits(16)[0][0][:64])
    # Non-trivial weights everywhere, a bias included.
    rs = np.random.RandomState(1)
    model.set_weights([w + rs.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    split, rewrites = qat._qat_rewrite.split_separable(model)
    separable = [layer.name for layer in model.layers if type(layer).__name__ == "SeparableConv2D"]
    assert sorted(r.name for r in rewrites) == sorted(separable) and len(separable) == 3
    kinds = {layer.name: type(layer).__name__ for layer in split.layers}
    for name in separable:
        assert kinds[name] == "Conv2D" and kinds[f"{name}_depthwise"] == "DepthwiseConv2D"
    assert "SeparableConv2D" not in kinds.values()
    x = _digits(16)[1][0][:32]
    assert np.abs(split.predict(x, verbose=0) - model.predict(x, verbose=0)).max() <= 1e-5


@pytest.mark.slow
def test_separable_convs_are_quantized_and_convert_with_trained_ranges():
    k = _compat.tf_keras()
    (x, y), (x_test, y_test) = _digits(16)
    model = _xception_block_model()
    model.compile(k.optimizers.Adam(1e-2), k.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test) > 0.5  # it learned
    q, report = qat.quantize_aware(model, config_lib.QATConfig(), (x, y), fit=FIT)
    assert report.num_float == 0 and not report.float_layers()
    split = [d for d in report.layers if "SeparableConv2D (split" in d.reason]
    assert sorted(d.type for d in split) == ["Conv2D"] * 3 + ["DepthwiseConv2D"] * 3
    assert all(d.status == qat.QUANTIZED for d in split)
    result = convert_lib.convert(q, config_lib.ConvertConfig(mode="int8"))
    assert result.num_calibration_samples == 0
    assert result.converter_settings["ranges"].startswith("from quantization-aware training")
    assert convert_lib.float_ops(result.tflite_bytes) == []
    want = q.predict(x_test, verbose=0)
    got = runtime.LiteModel(result.tflite_bytes).predict(x_test)
    cos = float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got))
    assert cos >= 0.98, cos


def test_separable_conv1d_is_split_and_quantized():
    k = _compat.tf_keras()
    k.utils.set_random_seed(0)
    inp = k.Input((20, 3))
    x = k.layers.SeparableConv1D(8, 3, padding="same", activation="relu")(inp)
    x = k.layers.SeparableConv1D(8, 3, strides=2, depth_multiplier=2)(x)
    x = k.layers.ReLU()(x)
    model = k.Model(inp, k.layers.Dense(4)(k.layers.Flatten()(x)))
    rs = np.random.RandomState(0)
    model.set_weights([w + rs.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    x_data = rs.normal(0, 1, (64, 20, 3)).astype("float32")
    split, rewrites = qat._qat_rewrite.split_separable(model)
    assert len(rewrites) == 2
    assert np.abs(split.predict(x_data, verbose=0) - model.predict(x_data, verbose=0)).max() <= 1e-5
    q, report = qat.quantize_aware(
        model, config_lib.QATConfig(), (x_data, rs.randint(0, 4, 64)), fit=FIT
    )
    assert report.num_float == 0
    noted = {d.type for d in report.layers if "SeparableConv1D (split" in d.reason}
    assert noted == {"Reshape", "DepthwiseConv2D", "Conv2D"}
    result = convert_lib.convert(q, config_lib.ConvertConfig(mode="int8"))
    assert result.converter_settings["ranges"].startswith("from quantization-aware training")
    assert convert_lib.float_ops(result.tflite_bytes) == []
    want, got = q.predict(x_data, verbose=0), runtime.LiteModel(result.tflite_bytes).predict(x_data)
    assert float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got)) >= 0.99
