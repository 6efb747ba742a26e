"""edgekit.lite.inspect and edgekit-inspect: what is inside a .tflite, without running it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import _lite_fixtures as fx
import numpy as np
import pytest

from edgekit import errors, runtime
from edgekit.lite import inspect as inspect_lib


@pytest.mark.parametrize("make", [fx.small_cnn_float, fx.small_cnn_int8, fx.small_cnn_float16])
def test_params_match_keras(make):
    # Conv + depthwise + dense with distinct biases and no batch norm: nothing is folded,
    # so every Keras weight is one constant tensor (see the module docstring).
    report = inspect_lib.inspect_model(make())
    assert report.params == fx.small_cnn_keras().count_params() == 4234


@pytest.mark.parametrize("make", [fx.small_cnn_float, fx.small_cnn_int8, fx.small_cnn_float16])
def test_macs_match_a_hand_count(make):
    report = inspect_lib.inspect_model(make())
    assert report.macs_by_op_type == fx.SMALL_CNN_MACS
    assert report.total_macs == sum(fx.SMALL_CNN_MACS.values()) == 73_328


def test_transpose_conv_macs_and_several_outputs():
    report = inspect_lib.inspect_model(fx.detection_like())
    # Transpose conv 4x4, 16 -> 1 channels, on an 8x8 input: 8*8*16 * 4*4*1.
    assert report.macs_by_op_type["TRANSPOSE_CONV"] == 8 * 8 * 16 * 16
    # Convs: 3x3 3->8 s2 (16x16 out), 3x3 8->16 s2 (8x8), 1x1 16->4 and 16->3 (8x8).
    assert report.macs_by_op_type["CONV_2D"] == (
        16 * 16 * 8 * 27 + 8 * 8 * 16 * 72 + 8 * 8 * 4 * 16 + 8 * 8 * 3 * 16
    )
    assert sorted(tuple(o["shape"]) for o in report.outputs) == [
        (1, 32, 32, 1),
        (1, 64, 3),
        (1, 64, 4),
    ]
    assert [o["name"] for o in report.signatures[0]["outputs"]] == ["boxes", "mask", "scores"]


def _all_models():
    return {
        "float": fx.small_cnn_float(),
        "int8": fx.small_cnn_int8(),
        "float16": fx.small_cnn_float16(),
        "detection": fx.detection_like(),
        "sparse": fx.sparse_dense(),
        "flex": fx.flex_model(),
        "while": fx.while_model(),
        "custom": fx.with_custom_op(fx.small_cnn_float()),
    }


def test_arena_between_largest_and_sum_of_activations():
    for name, data in _all_models().items():
        mem = inspect_lib.inspect_model(data).memory
        assert mem["largest_activation_bytes"] > 0, name
        assert (
            mem["largest_activation_bytes"] <= mem["arena_bytes"] <= mem["sum_activation_bytes"]
        ), (
            name,
            mem,
        )
    # A chain reuses memory: the small CNN needs less than all its activations at once.
    mem = inspect_lib.inspect_model(fx.small_cnn_float()).memory
    assert mem["arena_bytes"] < mem["sum_activation_bytes"]


def test_io_agrees_with_the_interpreter():
    for name in ("float", "int8", "float16", "detection", "sparse", "while"):
        data = _all_models()[name]
        report = inspect_lib.inspect_model(data)
        lm = runtime.LiteModel(data)
        for mine, theirs in ((report.inputs, lm.inputs), (report.outputs, lm.outputs)):
            assert [(d["name"], d["dtype"], tuple(d["shape"])) for d in mine] == [
                (s.name, s.dtype, s.shape) for s in theirs
            ], name
            for d, s in zip(mine, theirs, strict=True):
                assert d["scale"] == pytest.approx(s.scale) if s.scale else d["scale"] is None


def test_quantization_kinds_in_an_int8_model():
    report = inspect_lib.inspect_model(fx.small_cnn_int8())
    assert report.inputs[0]["quantization"]["kind"] == "per-tensor"
    kinds = {t["name"]: t["quantization"] for t in report.tensors if t["constant"]}
    # Keras numbers layer names per process (conv2d, conv2d_1, ...): match any.
    conv = next(k for k in kinds if re.search(r"conv2d(_\d+)?/Conv2D", k))
    assert kinds[conv] == "per-channel"
    assert (
        report.size["weights_bytes"]
        < inspect_lib.inspect_model(fx.small_cnn_float()).size["weights_bytes"] / 3
    )


def test_custom_flex_float16_sparse_and_while_are_reported():
    custom = inspect_lib.inspect_model(fx.with_custom_op(fx.small_cnn_float()))
    assert custom.custom_ops == [
        {"name": "MyCustomOp", "runtime": inspect_lib.runtime_needed("MyCustomOp")}
    ]
    assert "MyCustomOp" in custom.xnnpack_unsupported
    flex = inspect_lib.inspect_model(fx.flex_model())
    assert [c["name"] for c in flex.custom_ops] == ["FlexMatrixInverse"]
    assert "Flex" in flex.custom_ops[0]["runtime"]
    assert any(op["flex"] for op in flex.ops)
    f16 = inspect_lib.inspect_model(fx.small_cnn_float16())
    assert f16.op_counts["DEQUANTIZE"] >= 3
    assert {t["dtype"] for t in f16.tensors if t["constant"] and len(t["shape"]) > 1} == {"float16"}
    sparse = inspect_lib.inspect_model(fx.sparse_dense())
    encoded = [t for t in sparse.tensors if t["sparse_encoded"]]
    assert len(encoded) == 1 and encoded[0]["bytes"] < 64 * 64 * 4 / 2
    loop = inspect_lib.inspect_model(fx.while_model())
    assert loop.num_subgraphs == 3 and "WHILE" in loop.op_counts


def test_sizes_add_up_and_budgets():
    data = fx.small_cnn_float()
    r = inspect_lib.inspect_model(data, ram_kb=8, flash_kb=64)
    s = r.size
    assert s["weights_bytes"] + s["metadata_bytes"] + s["other_buffer_bytes"] + s[
        "structure_bytes"
    ] == len(data)
    assert sum(t["bytes"] for t in s["by_weight_tensor"]) == s["weights_bytes"]
    assert s["weights_share"] == pytest.approx(s["weights_bytes"] / len(data))
    assert r.memory["fits_ram"] is False and r.memory["fits_flash"] is True
    assert inspect_lib.inspect_model(data, ram_kb=1024).memory["fits_ram"] is True
    json.dumps(r.to_dict())  # JSON-ready


def test_zero_fraction_of_constants():
    r = inspect_lib.inspect_model(fx.sparse_dense())
    k = fx._keras()
    model = k.Sequential([k.Input((8,), batch_size=1), k.layers.Dense(4)])
    w, b = model.layers[0].get_weights()
    w[:, :3] = 0.0  # 24 of 32 weights are zero
    model.layers[0].set_weights([w, b + 1.0])
    r = inspect_lib.inspect_model(fx._convert(fx._from_keras(model)))
    (weights,) = [t for t in r.tensors if t["constant"] and t["shape"] == [4, 8]]
    assert weights["zero_fraction"] == pytest.approx(0.75)


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(errors.UserInputError, match="No .tflite file"):
        inspect_lib.inspect_model(tmp_path / "missing.tflite")
    with pytest.raises(errors.UserInputError, match="TFL3"):
        inspect_lib.inspect_model(b"not a model at all")
    with pytest.raises(errors.UserInputError, match="flatbuffer_structure"):
        inspect_lib.inspect_model(fx.small_cnn_float()[:2000])
    with pytest.raises(errors.UserInputError, match="ram_kb"):
        inspect_lib.inspect_model(fx.small_cnn_float(), ram_kb=-1)


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "edgekit.cli.inspect", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_cli_prints_and_writes_json(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(fx.small_cnn_int8())
    out = tmp_path / "r.json"
    p = _cli(f"--model={model}", f"--json={out}", "--ram_kb=2", "--flash_kb=16")
    assert p.returncode == 0, p.stderr
    assert "73328 MACs" in p.stdout and "CONV_2D" in p.stdout and "does NOT fit" in p.stdout
    assert json.loads(out.read_text())["params"] == 4234
    before = out.read_bytes()
    p = _cli(f"--model={model}", f"--json={out}")
    assert p.returncode == 2 and "already exists" in " ".join(p.stderr.split())
    assert out.read_bytes() == before


def test_cli_bad_input_exit_2_without_traceback(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    trunc = tmp_path / "trunc.tflite"
    trunc.write_bytes(fx.small_cnn_float()[:5000])
    for path in (tmp_path / "missing.tflite", junk, trunc):
        p = _cli(f"--model={path}", f"--json={tmp_path / 'x.json'}")
        assert p.returncode == 2, p.stderr
        assert p.stderr.startswith("error: ") and "Traceback" not in p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["junk.tflite", "trunc.tflite"]


def test_report_saves_its_json_to_a_file_and_refuses_to_overwrite(tmp_path):
    report = inspect_lib.inspect_model(fx.small_cnn_int8())
    path = report.save(tmp_path / "inspect.json")
    assert path == tmp_path / "inspect.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(report.to_dict()))
    with pytest.raises(errors.UserInputError, match="already exists"):
        report.save(path)
    report.save(path, overwrite=True)
