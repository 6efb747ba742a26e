"""Conversion in every mode, and every bad calibration input refused before the slow part."""

import json

import numpy as np
import pytest

from edgekit import convert, errors, io, runtime
from edgekit.config import ConvertConfig


def test_every_mode_converts_and_runs(tiny_model, tiny_data):
    x, _ = tiny_data
    keras_out = tiny_model.predict(x, verbose=0)
    sizes = {}
    for mode in ("float32", "dynamic", "float16", "int8", "int8_float_fallback", "int16x8"):
        result = convert.convert(tiny_model, ConvertConfig(mode=mode), calibration_data=x)
        sizes[mode] = result.size_bytes
        assert result.size_bytes == len(result.tflite_bytes)
        assert 0 < result.gzip_size_bytes <= result.size_bytes + 64
        out = runtime.LiteModel(result.tflite_bytes).predict(x)
        # Softmax outputs of an untrained model: int8 quantum is 1/256, so 0.05 bounds
        # accumulated error comfortably while still catching a broken conversion.
        np.testing.assert_allclose(out, keras_out, atol=0.05)
        assert result.to_dict()["mode"] == mode
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    assert sizes["dynamic"] < sizes["float32"]


def test_int8_uses_integer_kernels_and_requested_io(tiny_model, tiny_data):
    r = convert.convert(
        tiny_model, ConvertConfig(mode="int8", io_type="uint8"), calibration_data=tiny_data[0]
    )
    lm = runtime.LiteModel(r.tflite_bytes)
    assert lm.inputs[0].dtype == "uint8" and lm.outputs[0].dtype == "uint8"
    assert r.num_calibration_samples == 64
    assert r.converter_settings["target_spec.supported_ops"] == ["TFLITE_BUILTINS_INT8"]


def test_calibration_samples_are_spread_over_the_data(tiny_model):
    # First half all zeros, second half ones: calibrating on the first N only would see
    # a zero input range and saturate everything else.
    x = np.concatenate([np.zeros((100, 8, 8, 1)), np.ones((100, 8, 8, 1))]).astype(np.float32)
    r = convert.convert(
        tiny_model, ConvertConfig(mode="int8", num_calibration_samples=10), calibration_data=x
    )
    lm = runtime.LiteModel(r.tflite_bytes)
    want = tiny_model.predict(np.ones((1, 8, 8, 1), np.float32), verbose=0)
    np.testing.assert_allclose(lm.predict(np.ones((1, 8, 8, 1), np.float32)), want, atol=0.05)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((10, 4, 4, 1), np.float32), r"does not fit the model"),
        (np.zeros((10, 8, 8, 1), np.int64), "must be float"),
        (np.full((10, 8, 8, 1), np.nan, np.float32), "NaN or Inf"),
        (np.full((10, 8, 8, 1), np.inf, np.float32), "NaN or Inf"),
        (np.zeros((0, 8, 8, 1), np.float32), "empty"),
        (None, "needs calibration data"),
    ],
)
def test_bad_calibration_data_is_refused(tiny_model, bad, match):
    with pytest.raises(errors.UserInputError, match=match):
        convert.convert(tiny_model, ConvertConfig(mode="int8"), calibration_data=bad)


def _inverse_saved_model(path):
    import tensorflow as tf

    class Inverse(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 3, 3], tf.float32)])
        def __call__(self, x):
            return tf.linalg.inv(x)

    module = Inverse()
    tf.saved_model.save(module, str(path), signatures=module.__call__.get_concrete_function())
    return path


def test_missing_builtin_op_is_named_with_the_flag(tmp_path):
    path = _inverse_saved_model(tmp_path / "inv")
    with pytest.raises(errors.UserInputError) as e:
        convert.convert(str(path), ConvertConfig())
    assert "MatrixInverse" in str(e.value) and "--allow_select_tf_ops" in str(e.value)
    r = convert.convert(str(path), ConvertConfig(allow_select_tf_ops=True))
    assert "SELECT_TF_OPS" in r.converter_settings["target_spec.supported_ops"]


def test_keras3_model_converts_through_saved_model(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    path = tmp_path / "k3.keras"
    model.save(path)
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    for mode in ("float32", "int8"):
        r = convert.convert(path, ConvertConfig(mode=mode), calibration_data=x)
        out = runtime.LiteModel(r.tflite_bytes).predict(x)
        tol = 1e-5 if mode == "float32" else 0.1 * float(np.abs(model(x)).max())
        np.testing.assert_allclose(out, np.asarray(model(x)), atol=tol)


def test_result_save_refuses_to_overwrite(tmp_path, tiny_model):
    r = convert.convert(tiny_model)
    path = r.save(tmp_path / "m.tflite")
    with pytest.raises(errors.UserInputError, match="--overwrite"):
        r.save(path)
    assert io.detect_format(path) == "tflite"


def _weight_scale_counts(blob: bytes) -> list[int]:
    from edgekit.lite import schema

    m = schema.parse(blob)
    sg = m.subgraphs[0]
    return [
        len(t.quantization.scales)
        for t in sg.tensors
        if t.dtype == "int8" and m.buffers[t.buffer].size and t.quantization
    ]


def test_choose_granularity_keeps_the_smaller_file_only_when_it_agrees(tiny_model, tiny_data):
    x, _ = tiny_data
    r = convert.convert(
        tiny_model, ConvertConfig(mode="int8", choose_granularity=True), calibration_data=x
    )
    choice = r.converter_settings["granularity_choice"]
    pc, pt = choice["per_channel"], choice["per_tensor"]
    as_good = (
        pt["agreement"] >= pc["agreement"] - 0.005 and pt["gzip_size_bytes"] < pc["gzip_size_bytes"]
    )
    assert choice["chosen"] == ("per_tensor" if as_good else "per_channel")
    assert r.gzip_size_bytes == (pt if as_good else pc)["gzip_size_bytes"]
    # The file holds what was chosen: one weight scale per tensor, or one per channel.
    counts = _weight_scale_counts(r.tflite_bytes)
    assert (max(counts) == 1) == (choice["chosen"] == "per_tensor"), counts
    # Both candidates were measured on the calibration samples against the float model.
    assert choice["samples"] == r.num_calibration_samples == len(x)
    for key in ("per_channel", "per_tensor"):
        assert 0.0 <= choice[key]["agreement"] <= 1.0
    forced = ConvertConfig(mode="int8", choose_granularity=False)
    plain = convert.convert(tiny_model, forced, calibration_data=x)
    assert max(_weight_scale_counts(plain.tflite_bytes)) > 1
    assert "granularity_choice" not in plain.converter_settings


def test_int8_with_calibration_measures_both_granularities_by_default(tiny_model, tiny_data):
    # Issue 13, item 8: with calibration data the choice is made by measuring, unless forced.
    x, _ = tiny_data
    r = convert.convert(tiny_model, ConvertConfig(mode="int8"), calibration_data=x)
    choice = r.converter_settings["granularity_choice"]
    assert choice["chosen"] in ("per_channel", "per_tensor")
    assert r.converter_settings["per_channel"] == (choice["chosen"] == "per_channel")
    per_tensor = ConvertConfig(mode="int8", per_channel=False)
    forced = convert.convert(tiny_model, per_tensor, calibration_data=x)
    assert "granularity_choice" not in forced.converter_settings
    assert max(_weight_scale_counts(forced.tflite_bytes)) == 1


def test_convert_command_says_which_granularity_it_kept(tiny_model, tiny_data, tmp_path):
    from conftest import run_cli

    x, _ = tiny_data
    tiny_model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    common = [
        f"--model={tmp_path / 'm.keras'}",
        "--mode=int8",
        f"--calibration_data={tmp_path}/x.npy",
    ]
    proc = run_cli("convert", *common, f"--output={tmp_path}/a.tflite", f"--json={tmp_path}/a.json")
    assert proc.returncode == 0, proc.stderr
    assert "weights: per-" in proc.stdout and "kept" in proc.stdout, proc.stdout
    report = json.loads((tmp_path / "a.json").read_text())
    choice = report["converter_settings"]["granularity_choice"]
    assert {"per_channel", "per_tensor", "chosen"} <= set(choice)
    proc = run_cli("convert", *common, "--per_channel", f"--output={tmp_path}/b.tflite")
    assert proc.returncode == 0 and "weights:" not in proc.stdout, proc.stdout
    assert max(_weight_scale_counts((tmp_path / "b.tflite").read_bytes())) > 1


def test_choose_granularity_needs_an_int8_mode():
    with pytest.raises(errors.UserInputError, match="choose_granularity.*int8"):
        ConvertConfig(mode="float16", choose_granularity=True)


def _reshape_model():
    """The TF-MOT pruning tutorial's shape: Reshape -> Conv2D -> MaxPool -> Flatten -> Dense."""
    import tf_keras as k

    k.utils.set_random_seed(0)
    return k.Sequential(
        [
            k.layers.InputLayer(input_shape=(12, 12)),
            k.layers.Reshape((12, 12, 1)),
            k.layers.Conv2D(4, 3, activation="relu"),
            k.layers.MaxPooling2D(2),
            k.layers.Flatten(),
            k.layers.Dense(3),
        ]
    )


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_fixed_batch_removes_run_time_shape_ops_and_keeps_the_outputs(mode):
    from edgekit.lite import inspect

    model = _reshape_model()
    x = np.random.default_rng(0).random((37, 12, 12), dtype=np.float32)
    cal = x if mode == "int8" else None
    free = convert.convert(model, ConvertConfig(mode=mode), calibration_data=cal)
    fixed = convert.convert(model, ConvertConfig(mode=mode, batch_size=1), calibration_data=cal)
    free_fit, fixed_fit = (
        inspect.delegate_fit(free.tflite_bytes),
        inspect.delegate_fit(fixed.tflite_bytes),
    )
    # The free batch is the default (what the Keras model has), and it costs run-time ops.
    assert free_fit.free_batch and {"SHAPE", "PACK"} <= {n.split()[0] for n in free_fit.not_taken}
    assert "STRIDED_SLICE (computes on int32 shapes)" in free_fit.not_taken
    # int8: QUANTIZE, then the shape ops, then the rest: the delegate is split in two.
    assert free_fit.partitions == (2 if mode == "int8" else 1)
    ops = inspect.inspect_model(fixed.tflite_bytes).op_counts
    assert not {"SHAPE", "PACK", "STRIDED_SLICE"} & set(ops), ops
    assert fixed_fit.not_taken == () and fixed_fit.partitions == 1 and not fixed_fit.free_batch
    lm = runtime.LiteModel(fixed.tflite_bytes)
    assert lm.inputs[0].shape_signature[0] == 1
    # All 37 samples run on the batch-1 file, and agree with the free-batch file.
    np.testing.assert_allclose(
        lm.predict(x), runtime.LiteModel(free.tflite_bytes).predict(x), rtol=1e-5, atol=1e-5
    )
    assert fixed.converter_settings["batch_size"] == 1


def test_batch_size_is_checked():
    with pytest.raises(errors.UserInputError, match="batch_size"):
        ConvertConfig(batch_size=0)
    assert ConvertConfig().batch_size is None
