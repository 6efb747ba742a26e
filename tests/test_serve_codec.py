"""edgekit-serve's request codec without a server: several inputs and outputs, and errors.

Also the message a user gets where TensorFlow is missing (the `serve` extra has none).
"""

from __future__ import annotations

import numpy as np
import pytest


def _spec(name, shape, dtype="float32"):
    from edgekit.runtime import TensorSpec

    return TensorSpec(name, 0, tuple(shape), tuple(shape), dtype, None, None)


def _two_by_two():
    from edgekit.serve.signature import Signature

    return Signature(
        inputs=(
            _spec("serving_default_image:0", [-1, 2]),
            _spec("serving_default_meta:0", [-1, 3]),
        ),
        outputs=(
            _spec("StatefulPartitionedCall:0", [-1, 1]),
            _spec("StatefulPartitionedCall:1", [-1, 2]),
        ),
        max_batch_size=4,
    )


def test_codec_rows_and_columns_with_several_inputs_and_outputs():
    sig = _two_by_two()
    rows = {
        "instances": [{"image": [1, 2], "meta": [1, 2, 3]}, {"meta": [4, 5, 6], "image": [3, 4]}]
    }
    (image, meta), fmt = sig.decode_v1(rows)
    assert fmt == "row" and image.dtype == np.float32
    np.testing.assert_array_equal(image, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(meta, [[1, 2, 3], [4, 5, 6]])
    # Full tensor names work too, in column format.
    cols = {"inputs": {"serving_default_image:0": [[1, 2]], "meta": [[0, 0, 0]]}}
    (image, meta), fmt = sig.decode_v1(cols)
    assert fmt == "column" and image.shape == (1, 2) and meta.shape == (1, 3)
    outs = [np.array([[0.5], [1.5]], np.float32), np.array([[1, 2], [3, 4]], np.float32)]
    a, b = sig.output_names()
    assert a != b  # distinct names, or one output would hide the other
    assert sig.encode_v1(outs, "row") == {
        "predictions": [{a: [0.5], b: [1.0, 2.0]}, {a: [1.5], b: [3.0, 4.0]}]
    }
    assert set(sig.encode_v1(outs, "column")["outputs"]) == set(sig.output_names())


@pytest.mark.parametrize(
    "body, words",
    [
        ({"instances": [[1, 2]]}, "several inputs"),
        ({"instances": [{"image": [1, 2]}]}, "Missing input"),
        ({"instances": [{"image": [1, 2], "meta": [1, 2, 3], "x": [1]}]}, "Unknown input"),
        ({"inputs": [[1, 2]]}, "several inputs"),
        ({"inputs": {"image": [[1, 2]], "meta": [[1, 2, 3], [1, 2, 3]]}}, "same number"),
        ({"instances": [{"image": [1, 2], "meta": [1, 2, 3]}] * 5}, "max_batch_size"),
        ({"instances": [{"image": [True, False], "meta": [1, 2, 3]}]}, "numbers"),
    ],
)
def test_codec_rejects_with_a_message(body, words):
    from edgekit import errors

    with pytest.raises(errors.UserInputError, match=words):
        _two_by_two().decode_v1(body)


def test_missing_tensorflow_is_a_user_error_that_says_how_to_install(monkeypatch):
    import importlib.util

    from edgekit import _compat, errors

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorflow" else real(name, *a),
    )
    with pytest.raises(errors.UserInputError, match=r"pip install 'edgekit\[tensorflow\]'"):
        _compat.tf.__wrapped__()
