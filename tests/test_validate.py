"""edgekit.lite.validate: structural checks of untrusted .tflite files, and the child loader."""

from __future__ import annotations

import time

import _lite_fixtures as fx
import numpy as np
import pytest

from edgekit import errors, runtime
from edgekit.lite import validate


def _valid_models() -> dict[str, bytes]:
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


def test_accepts_every_real_model():
    for name, data in _valid_models().items():
        report = validate.validate_model_bytes(data)
        assert report.accepted, (name, report)
        validate.check_model_bytes(data)  # does not raise


def test_check_is_fast_on_a_one_megabyte_model():
    k = fx._keras()
    model = k.Sequential([k.Input((512,), batch_size=1), k.layers.Dense(512), k.layers.Dense(10)])
    data = fx._convert(fx._from_keras(model))
    assert len(data) > 1_000_000
    best = min(_timed(validate.check_model_bytes, data) for _ in range(5))
    # Budget from the issue: it runs on every load, so well under 50 ms for 1 MB.
    assert best < 0.05, best


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def _mutated(data: bytes, change) -> bytes:
    m = fx.unpack(data)
    change(m)
    return fx.pack(m)


def _set(obj, **attrs):
    for k, v in attrs.items():
        setattr(obj, k, v)


def _zero_point(m):
    t = m.subgraphs[0].tensors[0]
    t.quantization.zeroPoint = [500]  # int8 input, zero point must be in [-128, 127]


def _nan_scale(m):
    t = m.subgraphs[0].tensors[0]
    t.quantization.scale = [float("nan")]


def _output_is_weight(m):
    sg = m.subgraphs[0]
    const = next(i for i, t in enumerate(sg.tensors) if m.buffers[t.buffer].data is not None)
    sg.operators[-1].outputs = [const]


def _cycle(m):
    for op in m.subgraphs[0].operators:
        if op.builtinOptionsType == 93:  # WHILE: make the body the main graph itself
            op.builtinOptions.bodySubgraphIndex = 0


def _write_twice(m):
    ops = m.subgraphs[0].operators
    ops[2].outputs = [int(ops[0].outputs[0])]


def _variant_output(m):
    sg = m.subgraphs[0]
    sg.tensors[int(sg.outputs[0])].type = 14


def _op_named(m, name):
    code = getattr(fx._compat.litert_schema().BuiltinOperator, name)
    sg = m.subgraphs[0]
    return next(op for op in sg.operators if m.operatorCodes[op.opcodeIndex].builtinCode == code)


def _reshape_to_int8(m):
    # A float input reshaped into an int8 output: the kernel copied 4x too many bytes.
    op = _op_named(m, "RESHAPE")
    m.subgraphs[0].tensors[int(op.outputs[0])].type = 9


def _grow_dequantize(m):
    op = _op_named(m, "DEQUANTIZE")
    m.subgraphs[0].tensors[int(op.outputs[0])].shape[-1] = 4456456


CASES = [
    ("file_identifier", lambda: b"\x10\x00\x00\x00XXXX" + bytes(40), "file header"),
    ("flatbuffer_structure", lambda: fx.small_cnn_float()[:3000], "model"),
    (
        "tensor_index",
        lambda: _mutated(
            fx.small_cnn_float(), lambda m: _set(m.subgraphs[0].operators[2], inputs=[0, 999])
        ),
        "subgraph 0, operator 2, input 1",
    ),
    (
        "tensor_index",
        lambda: _mutated(fx.small_cnn_float(), lambda m: _set(m.subgraphs[0], outputs=[77])),
        "subgraph 0, output 0",
    ),
    (
        "buffer_index",
        lambda: _mutated(
            fx.small_cnn_float(), lambda m: _set(m.subgraphs[0].tensors[3], buffer=9999)
        ),
        "subgraph 0, tensor 3",
    ),
    (
        "buffer_size",
        lambda: _mutated(
            fx.small_cnn_float(), lambda m: _set(m.buffers[1], data=np.zeros(3, np.uint8))
        ),
        "subgraph 0, tensor",
    ),
    (
        "op_in_place",
        lambda: _mutated(
            fx.small_cnn_float(),
            lambda m: _set(
                m.subgraphs[0].operators[0], outputs=[int(m.subgraphs[0].operators[0].inputs[0])]
            ),
        ),
        "subgraph 0, operator 0",
    ),
    ("constant_output", lambda: _mutated(fx.small_cnn_float(), _output_is_weight), "output 0"),
    ("subgraph_cycle", lambda: _mutated(fx.while_model(), _cycle), "subgraph"),
    (
        "subgraph_index",
        lambda: _mutated(
            fx.while_model(),
            lambda m: [
                _set(op.builtinOptions, condSubgraphIndex=42)
                for op in m.subgraphs[0].operators
                if op.builtinOptionsType == 93
            ],
        ),
        "subgraph 0, operator",
    ),
    (
        "shape",
        lambda: _mutated(
            fx.small_cnn_float(), lambda m: _set(m.subgraphs[0].tensors[0], shape=[1, -16, 16, 3])
        ),
        "subgraph 0, tensor 0",
    ),
    (
        "shape",
        lambda: _mutated(
            fx.while_model(), lambda m: _set(m.subgraphs[0].tensors[0], shape=[1] * 11)
        ),
        "subgraph 0, tensor 0",
    ),
    (
        "optional_input",
        lambda: _mutated(
            fx.small_cnn_float(), lambda m: _set(m.subgraphs[0].operators[0], inputs=[0, -1, 1])
        ),
        "subgraph 0, operator 0, input 1",
    ),
    (
        "tensor_writers",
        lambda: _mutated(fx.small_cnn_float(), _write_twice),
        "subgraph 0, operator 2, output 0",
    ),
    ("io_type", lambda: _mutated(fx.small_cnn_float(), _variant_output), "subgraph 0, output 0"),
    ("op_type", lambda: _mutated(fx.small_cnn_float(), _reshape_to_int8), "subgraph 0, operator"),
    (
        "op_shape",
        lambda: _mutated(fx.small_cnn_float16(), _grow_dequantize),
        "subgraph 0, operator",
    ),
    ("quantization", lambda: _mutated(fx.small_cnn_int8(), _zero_point), "subgraph 0, tensor 0"),
    ("quantization", lambda: _mutated(fx.small_cnn_int8(), _nan_scale), "subgraph 0, tensor 0"),
    (
        "size_cap",
        lambda: _mutated(
            fx.small_cnn_float(),
            lambda m: _set(m.subgraphs[0].tensors[0], shape=[1, 2**20, 2**20, 3]),
        ),
        "subgraph 0, tensor 0",
    ),
    (
        "schema_version",
        lambda: _mutated(fx.small_cnn_float(), lambda m: _set(m, version=2)),
        "model",
    ),
    (
        "opcode_index",
        lambda: _mutated(
            fx.small_cnn_float(), lambda m: _set(m.subgraphs[0].operators[1], opcodeIndex=50)
        ),
        "subgraph 0, operator 1",
    ),
]


@pytest.mark.parametrize(
    "check,make,where", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_each_rejection_names_the_check_and_where(check, make, where):
    data = make()
    report = validate.validate_model_bytes(data)
    assert not report.accepted
    assert report.check == check, report
    assert where in report.where, report
    with pytest.raises(errors.UserInputError, match=check) as e:
        validate.check_model_bytes(data)
    assert "Received:" in str(e.value) and report.where in str(e.value)


def test_sparse_dense_size_that_crashed_the_densifier_is_rejected():
    def grow(m):
        for t in m.subgraphs[0].tensors:
            if t.sparsity is not None:
                t.shape[0] = 84  # dim_metadata still says 64: the densifier wrote out of bounds

    report = validate.validate_model_bytes(_mutated(fx.sparse_dense(), grow))
    assert (report.accepted, report.check) == (False, "sparsity"), report


def test_runtime_refuses_a_crafted_file_before_the_interpreter():
    bad = _mutated(
        fx.small_cnn_float(), lambda m: _set(m.subgraphs[0].operators[2], inputs=[0, 999])
    )
    with pytest.raises(errors.UserInputError, match="tensor_index"):
        runtime.LiteModel(bad)


def test_child_loader_outcomes():
    bad = _mutated(fx.small_cnn_float(), lambda m: _set(m, version=2))
    # A rank-11 input to WHILE segfaults the LiteRT 2.21 interpreter (found by the fuzz
    # test); without validation it must end the child, not this process.
    crasher = _mutated(fx.while_model(), lambda m: _set(m.subgraphs[0].tensors[0], shape=[1] * 11))
    ok, flex, rejected = validate.run_many_in_subprocess(
        [fx.small_cnn_int8(), fx.flex_model(), bad], timeout=30
    )
    assert ok.status == "ok" and ok.output_shapes == ((1, 10),) and ok.outputs_finite
    assert ok.inputs[0]["dtype"] == "int8"
    assert flex.status == "error" and "Flex" in flex.message
    assert rejected.status == "rejected" and rejected.check == "schema_version"
    (crash,) = validate.run_many_in_subprocess([crasher], timeout=30, validate=False)
    assert crash.status == "crash" and "SIGSEGV" in crash.message, crash
    assert validate.run_in_subprocess(crasher).check == "shape"


def _endless_loop(m):
    # The loop counter's increment becomes 0: `i < 3` never turns false.
    (body,) = {
        op.builtinOptions.bodySubgraphIndex
        for op in m.subgraphs[0].operators
        if op.builtinOptionsType == 93
    }
    for sg in [m.subgraphs[body]]:
        for t in sg.tensors:
            if t.type == 2 and m.buffers[t.buffer].data is not None:
                m.buffers[t.buffer].data = np.zeros(4, np.uint8)


def test_a_hanging_model_times_out_in_the_loader():
    endless = _mutated(fx.while_model(), _endless_loop)
    assert validate.validate_model_bytes(endless).accepted  # no static check can see this
    start = time.perf_counter()
    result = validate.run_in_subprocess(endless, timeout=2)
    assert result.status == "timeout", result
    assert time.perf_counter() - start < 30


@pytest.mark.slow
def test_fuzz_every_case_accepted_and_runs_or_rejected_cleanly():
    models = {k: v for k, v in _valid_models().items() if k not in ("flex", "custom")}
    result = fx.fuzz(models, cases=1200, seed=0)
    print("\nfuzz outcomes:", result["outcomes"])
    print("fuzz by mutation kind:", result["by_kind"])
    assert sum(result["outcomes"].values()) == 1200
    assert result["failures"] == [], result["failures"]
    rejected = sum(v for k, v in result["outcomes"].items() if k.startswith("rejected:"))
    assert rejected > 600 and result["outcomes"].get("ok", 0) > 50
