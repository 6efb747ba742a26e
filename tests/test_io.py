"""Loading models in every format, safe mode, and atomic, non-clobbering writes."""

import os
import zipfile

import numpy as np
import pytest

from edgekit import errors, io


def _lambda_model():
    import tf_keras

    inputs = tf_keras.Input((4,))
    outputs = tf_keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    return tf_keras.Model(inputs, outputs)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_tf_keras_files_load_with_the_same_weights(tmp_path, tiny_model, suffix):
    path = tmp_path / f"m{suffix}"
    io.save_model(tiny_model, path)
    loaded = io.load_model(path)
    assert io.is_tf_keras_model(loaded)
    for a, b in zip(tiny_model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_tf_keras_saved_model_directory_loads(tmp_path, tiny_model, tiny_data):
    path = tmp_path / "sm"
    tiny_model.save(str(path), save_format="tf")
    loaded = io.load_model(path)
    np.testing.assert_allclose(loaded(tiny_data[0][:4]), tiny_model(tiny_data[0][:4]), atol=1e-6)


def test_in_memory_model_is_returned_as_is(tiny_model):
    assert io.load_model(tiny_model) is tiny_model


def test_keras3_file_is_recognised_as_keras3(tmp_path):
    import keras

    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    path = tmp_path / "k3.keras"
    model.save(path)
    loaded = io.load_model(path)
    assert io.is_keras3_model(loaded) and not io.is_tf_keras_model(loaded)
    with pytest.raises(errors.UserInputError, match="Keras 3"):
        io.require_tf_keras(loaded, what="Pruning")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layer_is_refused_in_safe_mode_and_loads_when_allowed(tmp_path, suffix):
    path = tmp_path / f"lambda{suffix}"
    _lambda_model().save(str(path))
    with pytest.raises(errors.UserInputError) as e:
        io.load_model(path)
    assert "double" in str(e.value) and "--allow_unsafe_deserialization" in str(e.value)
    model = io.load_model(path, safe_mode=False)
    np.testing.assert_allclose(model(np.ones((1, 4), np.float32)), 2.0)


def test_missing_path_says_so(tmp_path):
    with pytest.raises(errors.UserInputError, match="does not exist"):
        io.load_model(tmp_path / "nope.keras")


def test_corrupt_keras_file_is_a_clear_error(tmp_path, tiny_model):
    path = tmp_path / "m.keras"
    io.save_model(tiny_model, path)
    path.write_bytes(path.read_bytes()[:200])  # truncated zip
    with pytest.raises(errors.UserInputError, match="corrupt|not a readable"):
        io.load_model(path)


def test_tflite_given_as_keras_model_is_named(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(40))
    with pytest.raises(errors.UserInputError, match="tflite"):
        io.load_model(path)


def test_atomic_write_never_overwrites_without_permission(tmp_path):
    path = tmp_path / "out.bin"
    io.atomic_write_bytes(path, b"first")
    with pytest.raises(errors.UserInputError, match="--overwrite"):
        io.atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"first"
    io.atomic_write_bytes(path, b"second", overwrite=True)
    assert path.read_bytes() == b"second"


def test_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.keras"

    class Boom:
        def save(self, p):
            with open(p, "wb") as f:
                f.write(b"half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.save_model(Boom(), path)
    assert os.listdir(tmp_path) == []


def test_saved_keras_file_is_a_zip_with_config(tmp_path, tiny_model):
    path = io.save_model(tiny_model, tmp_path / "m.keras")
    assert "config.json" in zipfile.ZipFile(path).namelist()
