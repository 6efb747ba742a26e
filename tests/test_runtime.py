"""The interpreter wrapper: any batch size, (de)quantization, threads, XNNPack on/off."""

import numpy as np
import pytest

from edgekit import convert, errors, runtime
from edgekit.config import ConvertConfig


@pytest.fixture(scope="module")
def converted():
    from conftest import make_tiny_model

    model = make_tiny_model()
    x = np.random.default_rng(1).random((40, 8, 8, 1), dtype=np.float32)
    out = {"model": model, "x": x}
    for name, cfg in {
        "float32": ConvertConfig(),
        "int8_float_io": ConvertConfig(mode="int8"),
        "int8_int8_io": ConvertConfig(mode="int8", io_type="int8"),
        "int8_uint8_io": ConvertConfig(mode="int8", io_type="uint8"),
    }.items():
        out[name] = convert.convert(model, cfg, calibration_data=x).tflite_bytes
    return out


def test_float_model_matches_keras_for_any_batch_size(converted):
    lm = runtime.LiteModel(converted["float32"])
    want = converted["model"].predict(converted["x"], verbose=0)
    for batch in (1, 7, 64):
        got = lm.predict(converted["x"], batch_size=batch)
        # float32 kernels differ from TF's only by summation order: ~1e-7 relative.
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert lm.predict(converted["x"][:1]).shape == (1, 4)


def test_integer_io_is_quantized_and_dequantized_for_the_caller(converted):
    x = converted["x"]
    ref = runtime.LiteModel(converted["int8_float_io"]).predict(x)
    for name, dtype in (("int8_int8_io", "int8"), ("int8_uint8_io", "uint8")):
        lm = runtime.LiteModel(converted[name])
        assert lm.inputs[0].dtype == dtype and lm.inputs[0].quantized
        got = lm.predict(x)
        assert got.dtype == np.float32
        # Float I/O quantizes inside the graph with the same scale; the only difference is
        # the rounding of one extra quantize step: at most one output quantum.
        np.testing.assert_allclose(got, ref, atol=1.01 * lm.outputs[0].scale)
        raw = lm.predict(x, dequantize=False)
        assert raw.dtype == np.dtype(dtype)


def test_xnnpack_off_and_threads_give_the_same_answers(converted):
    x = converted["x"]
    a = runtime.LiteModel(converted["float32"], num_threads=1).predict(x)
    b = runtime.LiteModel(converted["float32"], num_threads=2, use_xnnpack=False).predict(x)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_io_spec_carries_quantization(converted):
    spec = runtime.LiteModel(converted["int8_int8_io"]).io_spec()
    (inp,) = spec["inputs"]
    assert inp["dtype"] == "int8" and inp["scale"] > 0 and inp["shape_signature"][1:] == [8, 8, 1]


def test_wrong_input_shape_is_refused(converted):
    lm = runtime.LiteModel(converted["float32"])
    with pytest.raises(errors.UserInputError, match=r"\[None, 8, 8, 1\]"):
        lm.predict(np.zeros((2, 8, 8), np.float32))


@pytest.mark.parametrize("threads", [0, -1])
def test_bad_thread_count(converted, threads):
    with pytest.raises(errors.UserInputError, match="num_threads"):
        runtime.LiteModel(converted["float32"], num_threads=threads)


def test_non_tflite_bytes_and_missing_file(tmp_path):
    with pytest.raises(errors.UserInputError, match="TFL3"):
        runtime.LiteModel(b"PK\x03\x04 not a flatbuffer")
    with pytest.raises(errors.UserInputError, match="No .tflite file"):
        runtime.LiteModel(tmp_path / "missing.tflite")
