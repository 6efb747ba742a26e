"""Tiny `.tflite` models for the inspect / validate / bundle tests, built once per session.

Each builder converts a small tf_keras model (or a tf.function) with the TFLite
converter directly, so these tests do not depend on `edgekit.convert`. The models stand
in for the production files edgekit did not make: several outputs (detection-like),
a transpose conv (segmentation-like), a custom op, a Flex op, float16 weights that
are dequantized on load, a sparse-encoded weight, and a WHILE loop (subgraph calls).
"""

from __future__ import annotations

import functools

import numpy as np

from edgekit import _compat

# Hand count of the multiply-accumulates of `small_cnn` (see test_inspect):
#   conv 3x3, 3->8, same padding, on 16x16:  16*16*8 * 3*3*3 = 55,296
#   depthwise 3x3, valid, 8 channels:        14*14*8 * 3*3   = 14,112
#   dense 392 -> 10 (after 2x2 max pool, 7*7*8 = 392):  392*10 =  3,920
SMALL_CNN_MACS = {"CONV_2D": 55_296, "DEPTHWISE_CONV_2D": 14_112, "FULLY_CONNECTED": 3_920}


def _keras():
    return _compat.tf_keras()


@functools.cache
def small_cnn_keras():
    k = _keras()
    k.utils.set_random_seed(0)
    inp = k.Input((16, 16, 3), batch_size=1, name="image")
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = k.layers.DepthwiseConv2D(3, activation="relu")(x)
    x = k.layers.MaxPooling2D(2)(x)
    x = k.layers.Flatten()(x)
    out = k.layers.Dense(10, activation="softmax", name="probs")(x)
    model = k.Model(inp, out)
    # Keras starts biases at zero; the converter shares identical constants and drops
    # an all-zero dense bias, which would make the parameter count differ for a reason
    # that has nothing to do with inspect. A trained model has distinct biases.
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
    return model


def _convert(converter) -> bytes:
    return bytes(converter.convert())


def _from_keras(model, **attrs):
    tf = _compat.tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    for name, value in attrs.items():
        setattr(conv, name, value)
    return conv


@functools.cache
def small_cnn_float() -> bytes:
    return _convert(_from_keras(small_cnn_keras()))


@functools.cache
def small_cnn_int8() -> bytes:
    tf = _compat.tf()
    rng = np.random.default_rng(0)
    calib = rng.random((16, 16, 16, 3), dtype=np.float32)
    conv = _from_keras(small_cnn_keras())
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return _convert(conv)


@functools.cache
def small_cnn_float16() -> bytes:
    tf = _compat.tf()
    conv = _from_keras(small_cnn_keras())
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    return _convert(conv)


@functools.cache
def detection_like() -> bytes:
    """Three outputs (boxes, scores, a mask) and a transpose conv."""
    k = _keras()
    k.utils.set_random_seed(1)
    inp = k.Input((32, 32, 3), batch_size=1, name="image")
    x = k.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = k.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    boxes = k.layers.Reshape((64, 4), name="boxes")(k.layers.Conv2D(4, 1)(x))
    scores = k.layers.Reshape((64, 3), name="scores")(
        k.layers.Conv2D(3, 1, activation="sigmoid")(x)
    )
    mask = k.layers.Conv2DTranspose(1, 4, strides=4, padding="same", name="mask")(x)
    return _convert(_from_keras(k.Model(inp, [boxes, scores, mask])))


@functools.cache
def sparse_dense() -> bytes:
    """A dense layer whose weights are 90 % zeros, sparse-encoded by the converter."""
    tf = _compat.tf()
    k = _keras()
    k.utils.set_random_seed(2)
    inp = k.Input((64,), batch_size=1)
    layer = k.layers.Dense(64)
    out = layer(inp)
    model = k.Model(inp, out)
    w, b = layer.get_weights()
    mask = np.zeros_like(w)
    mask[:, ::10] = 1.0  # whole columns survive: 90 % zeros
    layer.set_weights([w * mask, b])
    conv = _from_keras(model)
    conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return _convert(conv)


@functools.cache
def flex_model() -> bytes:
    """Uses tf.linalg.inv, which only the Select TF ops (Flex) runtime has."""
    tf = _compat.tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4], tf.float32)])
    def f(x):
        return tf.linalg.inv(x + tf.eye(4)) * 2.0

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    return _convert(conv)


@functools.cache
def while_model() -> bytes:
    """A WHILE loop: the main subgraph calls a cond and a body subgraph."""
    tf = _compat.tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def f(x):
        i = tf.constant(0)
        _, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2.0 + 1.0), (i, x))
        return y

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    return _convert(conv)


def with_custom_op(data: bytes, *, op_index: int = -1, name: str = "MyCustomOp") -> bytes:
    """Turns one op of a model into a custom op (as a vendor's file would carry)."""
    schema = _compat.litert_schema()
    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    op = m.subgraphs[0].operators[op_index]
    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.CUSTOM
    code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = name
    code.version = 1
    m.operatorCodes.append(code)
    op.opcodeIndex = len(m.operatorCodes) - 1
    op.builtinOptionsType = 0
    op.builtinOptions = None
    op.customOptions = [1, 2, 3]
    return pack(m)


def unpack(data: bytes):
    return _compat.litert_schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(model_t) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(model_t.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# ---------------------------------------------------------------------------
# Fuzzing: byte flips, truncations and field mutations of real models


def _structure_positions(data: bytes) -> np.ndarray:
    """Byte positions outside the buffers' data: the flatbuffer's tables and vectors."""
    from edgekit.lite import schema

    mask = np.ones(len(data), dtype=bool)
    for b in schema.parse(data).buffers:
        mask[b.start : b.start + b.size] = False
    return np.flatnonzero(mask)


def _field_mutation(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One semantic change made through the schema's object API (a valid flatbuffer)."""
    m = unpack(data)
    sg = m.subgraphs[0]
    n_t = len(sg.tensors)
    op = sg.operators[int(rng.integers(len(sg.operators)))]
    t = sg.tensors[int(rng.integers(n_t))]
    kind = str(
        rng.choice(
            [
                "shape_negative", "shape_huge", "shape_change", "rank_huge", "op_input_range",
                "op_output_range", "op_in_place", "buffer_range", "scale_bad", "zero_point_bad",
                "opcode_range", "opcode_swap", "io_range", "output_constant", "subgraph_ref",
                "per_channel_dim", "version", "rewire_input", "rewire_output", "type_change",
                "quantized_dimension", "intermediate", "custom_options",
            ]
        )
    )  # fmt: skip
    if kind == "shape_negative" and t.shape is not None and len(t.shape):
        t.shape[int(rng.integers(len(t.shape)))] = -int(rng.integers(1, 10))
    elif kind == "shape_huge" and t.shape is not None and len(t.shape):
        t.shape[int(rng.integers(len(t.shape)))] = int(rng.integers(2**20, 2**31 - 1))
    elif kind == "shape_change" and t.shape is not None and len(t.shape):
        t.shape[int(rng.integers(len(t.shape)))] = int(rng.integers(0, 9))
    elif kind == "rank_huge":
        t.shape = [1] * int(rng.integers(7, 40))
    elif kind == "op_input_range" and op.inputs is not None and len(op.inputs):
        op.inputs[int(rng.integers(len(op.inputs)))] = int(rng.choice([n_t, n_t + 7, -2, -100]))
    elif kind == "op_output_range" and len(op.outputs):
        op.outputs[0] = int(rng.choice([n_t, -1, 2**31 - 1]))
    elif kind == "op_in_place" and op.inputs is not None and len(op.inputs):
        op.outputs[0] = int(op.inputs[0])
    elif kind == "buffer_range":
        t.buffer = int(rng.choice([len(m.buffers), len(m.buffers) + 100, 2**31]))
    elif kind == "scale_bad":
        t.quantization = t.quantization or _compat.litert_schema().QuantizationParametersT()
        t.quantization.scale = [float(rng.choice([np.nan, np.inf, -1.0, 0.0]))]
        t.quantization.zeroPoint = [0]
    elif kind == "zero_point_bad":
        t.quantization = t.quantization or _compat.litert_schema().QuantizationParametersT()
        t.quantization.scale = [0.5]
        t.quantization.zeroPoint = [int(rng.choice([300, -300, 70000, 2**40]))]
    elif kind == "opcode_range":
        op.opcodeIndex = len(m.operatorCodes) + int(rng.integers(0, 5))
    elif kind == "opcode_swap":
        op.opcodeIndex = int(rng.integers(len(m.operatorCodes)))
    elif kind == "io_range":
        sg.inputs = [n_t + int(rng.integers(0, 3))]
    elif kind == "output_constant":
        consts = [i for i, x in enumerate(sg.tensors) if m.buffers[x.buffer].data is not None]
        if consts:
            op.outputs[0] = int(rng.choice(consts))
    elif kind == "subgraph_ref":
        for sub in m.subgraphs:
            for o in sub.operators:
                if o.builtinOptionsType in (92, 93):  # IF, WHILE: point at itself or nowhere
                    o.builtinOptions.bodySubgraphIndex = int(rng.choice([1, 0, 57]))
                    o.builtinOptions.condSubgraphIndex = int(rng.choice([0, 2, 99]))
    elif kind == "per_channel_dim":
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) > 1:
            q.quantizedDimension = int(rng.integers(0, 6))
    elif (
        kind == "rewire_input"
        and len(m.subgraphs) == 1
        and op.inputs is not None
        and len(op.inputs)
    ):
        # Any valid index (or absent). Not on WHILE models: rewiring the loop counter
        # makes a real infinite loop, which only the loader's timeout can stop (tested
        # on its own in test_validate).
        op.inputs[int(rng.integers(len(op.inputs)))] = int(rng.integers(-1, n_t))
    elif kind == "rewire_output" and len(m.subgraphs) == 1 and len(op.outputs):
        op.outputs[0] = int(rng.integers(0, n_t))
    elif kind == "type_change":
        t.type = int(rng.integers(0, 23))
    elif kind == "quantized_dimension" and t.quantization is not None:
        t.quantization.quantizedDimension = int(rng.integers(-3, 8))
    elif kind == "intermediate":
        op.intermediates = [int(rng.integers(-1, n_t))]
    elif kind == "custom_options":
        op.customOptions = [int(v) for v in rng.integers(0, 256, int(rng.integers(1, 64)))]
    elif kind == "version":
        m.version = int(rng.choice([0, 2, 4]))
    out = pack(m)
    if out == pack(unpack(data)):  # the picked tensor/op had nothing to change
        kind += "(no-op)"
    return "field:" + kind, out


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One fuzz case from a valid model: (kind, mutated bytes)."""
    r = rng.random()
    if r < 0.2:
        return "truncate", data[: int(rng.integers(0, len(data)))]
    if r < 0.6:
        b = bytearray(data)
        structure = _structure_positions(data)
        for _ in range(int(rng.integers(1, 5))):
            pos = int(rng.choice(structure)) if rng.random() < 0.8 else int(rng.integers(len(b)))
            b[pos] = int(rng.integers(256))
        return "byte_flip", bytes(b)
    return _field_mutation(data, rng)


def fuzz(models: dict[str, bytes], *, cases: int, seed: int = 0, timeout: float = 20.0) -> dict:
    """Runs `cases` mutated models through validate and, if accepted, a child process.

    Returns counts by outcome ("rejected:<check>", "ok", "error", "crash", "timeout"),
    by mutation kind, and the failing cases (crash/timeout) for the report. A timeout
    is contained (the loader kills the case) but still listed: a byte flip can turn
    a WHILE loop's bound of 3 into 2**31, which no static check can rule out.
    """
    import collections

    from edgekit.lite import validate

    rng = np.random.default_rng(seed)
    names = sorted(models)
    kinds, blobs = [], []
    for i in range(cases):
        kind, blob = mutate(models[names[i % len(names)]], rng)
        kinds.append(kind)
        blobs.append(blob)
    # A tighter size cap than the default 2 GiB: a mutated shape that declares a 1 GB
    # input is legal but takes seconds to allocate and zero on a loaded CI machine.
    results = validate.run_many_in_subprocess(blobs, timeout=timeout, max_total_bytes=256 << 20)
    outcomes: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures = []
    for i, (kind, res) in enumerate(zip(kinds, results, strict=True)):
        label = f"rejected:{res.check}" if res.status == "rejected" else res.status
        outcomes[label] += 1
        by_kind[kind][label] += 1
        if res.status in ("crash", "timeout"):
            failures.append((i, names[i % len(names)], kind, res.status, res.message[:200]))
    return {
        "cases": cases,
        "outcomes": dict(sorted(outcomes.items())),
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "failures": failures,
    }
