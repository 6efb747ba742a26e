"""Every data source becomes the same arrays; bad data is refused before work starts."""

import numpy as np
import pytest

from edgekit import data, errors


def test_npz_npy_arrays_and_tuples(tmp_path, tiny_data):
    x, y = tiny_data
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    for source in (tmp_path / "d.npz", (x, y)):
        ds = data.load(source)
        np.testing.assert_array_equal(ds.x, x)
        np.testing.assert_array_equal(ds.y, y)
    assert data.load(tmp_path / "x.npy").y is None
    assert data.load(x).y is None


def test_tf_data_and_generators_yield_batches(tiny_data):
    import tensorflow as tf

    x, y = tiny_data
    ds = data.load(tf.data.Dataset.from_tensor_slices((x, y)).batch(10))
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, y)
    gen = (x[i : i + 16] for i in range(0, 64, 16))
    np.testing.assert_array_equal(data.load(gen).x, x)
    capped = data.load((b for b in [x[:16], x[16:32], x[32:]]), max_samples=20)
    assert len(capped) == 20


def test_image_folder_follows_the_keras_convention(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)).save(
                tmp_path / cls / f"{i}.png"
            )
    ds = data.load(tmp_path)
    assert ds.x.shape == (6, 6, 5, 3) and list(ds.y) == [0, 0, 0, 1, 1, 1]
    assert ds.class_names == ("cat", "dog")
    assert data.load(tmp_path, image_size=(4, 4)).x.shape == (6, 4, 4, 3)


def test_npz_without_x_names_its_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 3)))
    with pytest.raises(errors.UserInputError, match="images"):
        data.load(tmp_path / "d.npz")


def test_empty_and_missing_sources(tmp_path):
    with pytest.raises(errors.UserInputError, match="empty"):
        data.load(np.zeros((0, 8, 8, 1), np.float32))
    with pytest.raises(errors.UserInputError, match="does not exist"):
        data.load(tmp_path / "missing.npz")


def test_spread_indices_cover_the_whole_range():
    idx = data.spread_indices(1000, 10)
    assert len(idx) == 10 and idx[0] == 0 and idx[-1] == 999
    assert np.all(np.diff(idx) > 90)
    assert list(data.spread_indices(3, 10)) == [0, 1, 2]


def test_check_inputs_refuses_wrong_shape_dtype_and_non_finite():
    ok = np.zeros((2, 8, 8, 1), np.float32)
    data.check_inputs(ok, (None, 8, 8, 1))
    with pytest.raises(errors.UserInputError, match=r"\[None, 8, 8, 1\]"):
        data.check_inputs(np.zeros((2, 8, 8), np.float32), (None, 8, 8, 1))
    with pytest.raises(errors.UserInputError, match="numeric"):
        data.check_inputs(
            np.array([["a"]]).reshape(1, 1, 1, 1).repeat(8, 1).repeat(8, 2), (None, 8, 8, 1)
        )
    bad = ok.copy()
    bad[0, 0, 0, 0] = np.nan
    bad[1, 0, 0, 0] = np.inf
    with pytest.raises(errors.UserInputError, match="2 NaN or Inf"):
        data.check_inputs(bad, (None, 8, 8, 1))
