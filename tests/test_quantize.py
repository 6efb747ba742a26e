"""LiteRT Quantizer as a second backend: any float .tflite, every scheme, selective search.

The float model here is `tests/data/tiny_float.tflite`, a small conv + dense classifier
kept as a fixture file: there is no Keras model behind it in these tests, as for a
.tflite a vendor or another framework produced.
"""

import json
import pathlib

import numpy as np
import pytest
from conftest import run_cli, tree_snapshot

from edgekit import convert, errors, evaluate, runtime
from edgekit.config import SCHEMES, ConvertConfig
from edgekit.convert import litert_quantizer, selective

FLOAT = pathlib.Path(__file__).parent / "data" / "tiny_float.tflite"
CONVERTER_KEYS = {
    "mode",
    "io_type",
    "size_bytes",
    "gzip_size_bytes",
    "conversion_seconds",
    "num_calibration_samples",
    "converter_settings",
    "converter_warnings",
}


@pytest.fixture(scope="module")
def digits_like():
    """Inputs for the 8x8x1 fixture, and labels: the float model's own classes."""
    rng = np.random.default_rng(1)
    x = rng.random((200, 8, 8, 1), dtype=np.float32)
    y = runtime.LiteModel(FLOAT.read_bytes()).predict(x).argmax(1)
    return x, y


def _config(scheme, **kw):
    return ConvertConfig(backend="litert_quantizer", scheme=scheme, **kw)


def test_float_tflite_without_keras_source_quantizes_to_int8_and_matches_its_original(
    digits_like, tmp_path
):
    x, y = digits_like
    r = litert_quantizer.quantize(FLOAT, _config("static_wi8_ai8"), calibration_data=x)
    assert r.mode.value == "int8" and r.num_calibration_samples == len(x)
    assert convert.float_ops(r.tflite_bytes) == []  # every op computes in int8
    path = r.save(tmp_path / "int8.tflite")
    ev = evaluate.evaluate(path, (x, y), reference=FLOAT)
    # Softmax of an untrained net: int8 keeps the top class on nearly every sample.
    assert ev.parity.top1_agreement >= 0.9 and ev.parity.cosine >= 0.99
    assert ev.reference_accuracy == 1.0  # labels are the float model's own classes
    # Weights shrink 4x; the graph and metadata of a 7 KB file do not.
    assert r.size_bytes < 0.6 * FLOAT.stat().st_size


def test_every_scheme_makes_a_smaller_file_with_the_converters_json_keys(digits_like):
    x, _ = digits_like
    want = runtime.LiteModel(FLOAT.read_bytes()).predict(x)
    for scheme in SCHEMES:
        r = litert_quantizer.quantize(FLOAT, _config(scheme), calibration_data=x)
        assert set(r.to_dict()) == CONVERTER_KEYS, scheme
        assert r.converter_settings["scheme"] == scheme
        assert r.size_bytes < FLOAT.stat().st_size, scheme
        got = runtime.LiteModel(r.tflite_bytes).predict(x)
        # int4 weights on an untrained net move softmax outputs by a few hundredths.
        np.testing.assert_allclose(got, want, atol=0.1, err_msg=scheme)


def test_keras_model_through_the_litert_backend_gives_a_conversion_result(tiny_model, tiny_data):
    x, _ = tiny_data
    cfg = _config("static_wi8_ai8")
    r = convert.convert(tiny_model, cfg, calibration_data=x)
    ref = convert.convert(tiny_model, ConvertConfig(mode="int8"), calibration_data=x)
    assert set(r.to_dict()) == set(ref.to_dict())
    assert r.converter_settings["float_conversion"]["size_bytes"] > r.size_bytes
    # LiteRT Quantizer's min-max ranges on 64 random samples land within 0.1 of the
    # softmax outputs here (the converter's within 0.05); a broken file would not.
    np.testing.assert_allclose(
        runtime.LiteModel(r.tflite_bytes).predict(x), tiny_model.predict(x, verbose=0), atol=0.1
    )


def test_a_scheme_the_backend_lacks_names_the_backend_that_has_it():
    with pytest.raises(errors.UserInputError, match="LiteRT Quantizer has it.*litert_quantizer"):
        ConvertConfig(scheme="weight_only_wi4_afp32")
    with pytest.raises(errors.UserInputError, match="needs a scheme"):
        ConvertConfig(backend="litert_quantizer", mode="float16")
    with pytest.raises(errors.UserInputError, match="TFLite converter's"):
        _config("static_wi8_ai8", io_type="uint8")
    with pytest.raises(errors.UserInputError, match="block_size"):
        _config("static_wi8_ai8", block_size=32)
    with pytest.raises(errors.UserInputError, match="makes a 'int8' file"):
        ConvertConfig(scheme="static_wi8_ai8", mode="float16")
    cfg = ConvertConfig(scheme="static_wi8_ai8")  # the converter makes this one itself
    assert cfg.mode.value == "int8" and ConvertConfig.from_dict(cfg.to_dict()) == cfg


def test_block_size_applies_to_fully_connected_weights_of_dynamic_schemes(digits_like):
    r = litert_quantizer.quantize(FLOAT, _config("dynamic_wi4_afp32", block_size=32))
    assert r.converter_settings["blockwise_ops"] == ["FULLY_CONNECTED"]
    with pytest.raises(errors.UserInputError, match="would change nothing"):
        litert_quantizer.quantize(FLOAT, _config("weight_only_wi4_afp32", block_size=32))


def _space_to_depth_float(path):
    """A float .tflite with SPACE_TO_DEPTH, which has no int16 kernel (made without Keras)."""
    import tensorflow as tf

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
        def __call__(self, x):
            return tf.reduce_mean(tf.nn.space_to_depth(tf.nn.relu(x), 2), axis=[1, 2])

    net = Net()
    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [net.__call__.get_concrete_function()], net
    )
    path.write_bytes(conv.convert())
    return path


def _bad_input_cases(tmp, x):
    quantized = tmp / "in" / "int8.tflite"
    quantized.write_bytes(
        litert_quantizer.quantize(FLOAT, _config("static_wi8_ai8"), calibration_data=x).tflite_bytes
    )
    np.save(tmp / "in" / "x.npy", x)
    np.save(tmp / "in" / "wrong.npy", np.zeros((10, 4, 4, 1), np.float32))
    s2d = _space_to_depth_float(tmp / "in" / "s2d.tflite")
    cal = f"--calibration_data={tmp}/in/x.npy"
    return [
        ("quantize", [f"--model={quantized}", "--scheme=static_wi8_ai8", cal], "already quantized"),
        (
            "quantize",
            [
                f"--model={FLOAT}",
                "--scheme=static_wi8_ai8",
                f"--calibration_data={tmp}/in/wrong.npy",
            ],
            "does not fit the model",
        ),
        (
            "quantize",
            [f"--model={FLOAT}", "--scheme=static_wi8_ai8", cal, "--float_scope=^nothing_here"],
            "matches no op",
        ),
        (
            "quantize",
            [f"--model={s2d}", "--scheme=static_wi8_ai16", f"--calibration_data={tmp}/in/s2d.npy"],
            "no int16 kernel for SPACE_TO_DEPTH",
        ),
        (
            "convert",
            [f"--model={tmp}/in/none.keras", "--scheme=weight_only_wi4_afp32"],
            "has no scheme 'weight_only_wi4_afp32'; LiteRT Quantizer has it",
        ),
    ]


@pytest.mark.slow
def test_bad_inputs_are_clear_errors_with_nothing_written(digits_like, tmp_path):
    x, _ = digits_like
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    cases = _bad_input_cases(tmp_path, x)
    np.save(tmp_path / "in" / "s2d.npy", np.random.default_rng(0).random((20, 8, 8, 1), np.float32))
    before = tree_snapshot(tmp_path)
    for command, args, message in cases:
        out = tmp_path / "out" / "q.tflite"
        proc = run_cli(command, *args, f"--output={out}", f"--json={tmp_path}/out/q.json")
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        text = " ".join(proc.stderr.split())
        assert message in text and "Traceback" not in proc.stderr, (args, text)
        assert tree_snapshot(tmp_path) == before, args


@pytest.mark.slow
def test_selective_search_keeps_few_ops_float_and_reports_why_and_the_cost(digits_like, tmp_path):
    x, y = digits_like
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    np.save(tmp_path / "cal.npy", x)
    # A cosine floor full int8 misses on this net (about 0.9995), so ops must stay float.
    proc = run_cli(
        "quantize",
        f"--model={FLOAT}",
        "--scheme=static_wi8_ai8",
        f"--calibration_data={tmp_path}/cal.npy",
        f"--eval_data={tmp_path}/eval.npz",
        "--min_cosine=0.99995",
        "--latency_secs=0.3",
        f"--output={tmp_path}/sel.tflite",
        f"--json={tmp_path}/sel.json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "sel.json").read_text())
    sel = report["converter_settings"]["selective"]
    assert CONVERTER_KEYS <= set(report)
    assert not sel["full"]["meets"] and sel["result"]["meets"]
    assert sel["result"]["cosine"] >= 0.99995
    assert 1 <= len(report["float_ops"]) <= sel["top_k_prefix"]
    assert all(op["why"] for op in sel["float_ops"])
    # The recipe field that keeps the same ops float (convert.float_scopes).
    assert report["float_scopes"] == [litert_quantizer.scope(n) for n in report["float_ops"]]
    # The cost is reported against both ends (on a 7 KB net the float FC and its
    # (de)quantize ops even outweigh the float file; the report says so in bytes).
    assert sel["full"]["size_bytes"] < sel["result"]["size_bytes"]
    assert sel["float"]["size_bytes"] == FLOAT.stat().st_size
    assert {"float_p50_us", "full_p50_us", "result_p50_us"} <= set(sel["latency"])
    assert "kept float" in proc.stdout
    # The file holds what the report says: exactly those ops compute in float.
    kinds = {op["type"] for op in sel["float_ops"]}
    assert kinds <= set(convert.float_ops((tmp_path / "sel.tflite").read_bytes()))


@pytest.mark.slow
def test_integer_only_search_leaves_no_float_op_or_says_it_cannot(digits_like, tmp_path):
    x, y = digits_like
    cfg = _config("static_wi8_ai8")
    # Full int8 gives cosine 0.9991 on this net, int16 activations everywhere 0.9994.
    r = selective.search(
        FLOAT, cfg, calibration_data=x, eval_data=(x, y), min_cosine=0.9993, integer_only=True
    )
    assert convert.float_ops(r.tflite_bytes) == []
    assert all(
        op["kept_as"] == "int16 activations"
        for op in r.converter_settings["selective"]["float_ops"]
    )
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    np.save(tmp_path / "cal.npy", x)
    before = tree_snapshot(tmp_path)
    proc = run_cli(
        "quantize",
        f"--model={FLOAT}",
        "--scheme=static_wi8_ai8",
        f"--calibration_data={tmp_path}/cal.npy",
        f"--eval_data={tmp_path}/eval.npz",
        "--min_cosine=1.0",
        "--integer_only",
        f"--output={tmp_path}/never.tflite",
    )
    assert proc.returncode == 1, proc.stderr
    assert "cannot be met" in proc.stderr and "Traceback" not in proc.stderr
    assert tree_snapshot(tmp_path) == before


def test_quantize_help_and_the_convert_package_import_neither_tensorflow_nor_the_quantizer():
    import subprocess
    import sys

    code = (
        "import sys; sys.argv = ['x']\nimport edgekit.cli.quantize, edgekit.convert\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert not {"tensorflow", "litert_quantizer", "tf_keras"} & loaded
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit.cli.quantize", "--help"], capture_output=True, text=True
    )
    assert "--max_accuracy_drop" in proc.stdout and "Traceback" not in proc.stderr


def test_quantize_then_evaluate_commands_work_from_the_float_file_alone(digits_like, tmp_path):
    x, y = digits_like
    np.save(tmp_path / "cal.npy", x)
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    proc = run_cli(
        "quantize",
        f"--model={FLOAT}",
        "--scheme=static_wi8_ai8",
        f"--calibration_data={tmp_path}/cal.npy",
        f"--output={tmp_path}/q.tflite",
        f"--json={tmp_path}/q.json",
    )
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads((tmp_path / "q.json").read_text())) == CONVERTER_KEYS | {"output"}
    proc = run_cli(
        "evaluate",
        f"--model={tmp_path}/q.tflite",
        f"--data={tmp_path}/eval.npz",
        f"--reference={FLOAT}",
        f"--json={tmp_path}/ev.json",
    )
    assert proc.returncode == 0, proc.stderr
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["parity"]["top1_agreement"] >= 0.9 and ev["reference_accuracy"] == 1.0
    assert "float .tflite reference accuracy: 100.00%" in proc.stdout


def test_selective_search_keeps_exactly_the_one_op_that_sees_a_huge_input_range_float():
    import tf_keras

    # A planted sensitive op: feature 15 spans 0..1e4 (raw, unscaled) while the other
    # 15 span -1..1, and the first layer all but ignores it (weights x 1e-4). One int8
    # scale for the whole input rounds the informative features to zero; kept float,
    # that layer alone restores the outputs (its own outputs have a normal range).
    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((16,))
    h = tf_keras.layers.Dense(32, activation="relu", name="sees_raw_input")(inputs)
    h = tf_keras.layers.Dense(32, activation="relu")(h)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(10)(h))
    w, b = model.layers[1].get_weights()
    w[15] *= 1e-4
    model.layers[1].set_weights([w, b])
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (300, 16)).astype(np.float32)
    x[:, 15] = rng.uniform(0, 1e4, 300)
    blob = convert.convert(model).tflite_bytes
    y = runtime.LiteModel(blob).predict(x).argmax(1)

    r = selective.search(
        blob, _config("static_wi8_ai8"), calibration_data=x, eval_data=(x, y), min_cosine=0.99
    )
    sel = r.converter_settings["selective"]
    assert sel["full"]["cosine"] < 0.5  # full int8 is useless on this input
    assert [op["op"] for op in sel["float_ops"]] == [
        op.name for op in litert_quantizer.model_ops(blob) if "sees_raw_input" in op.name
    ]
    assert sel["result"]["cosine"] >= 0.99 and sel["found_by"] == "single"
    assert convert.float_ops(r.tflite_bytes) == ["FULLY_CONNECTED"]
    # The plain ranking's top-k answer is reported beside it, and is never shorter.
    assert sel["top_k_prefix"] >= len(sel["float_ops"])


def test_selective_search_is_never_longer_than_the_top_k_prefix_of_a_seed_ranking(digits_like):
    x, y = digits_like
    cfg = _config("static_wi8_ai8")
    ops = litert_quantizer.model_ops(FLOAT.read_bytes())
    seed = [op.name for op in reversed(ops)]  # any outside ranking, e.g. the debugger's
    # The baseline a user would run: keep the seed's top 1, 2, ... ops float.
    blob, calibration = litert_quantizer.prepare(FLOAT, cfg, x)
    session = litert_quantizer.Session(blob, cfg, calibration)
    ref = runtime.LiteModel(blob).predict(x)

    def cosine(q):
        got = runtime.LiteModel(q).predict(x)
        norms = np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)
        return np.mean((got * ref).sum(1) / norms)

    floor = 0.99995  # full int8 misses it on this net (about 0.9995)
    by_name = {op.name: op for op in ops}
    top_k = next(
        k
        for k in range(1, len(seed) + 1)
        if cosine(session.quantize(float_scopes=[by_name[n].scope for n in seed[:k]])) >= floor
    )
    r = selective.search(
        FLOAT, cfg, calibration_data=x, eval_data=(x, y), min_cosine=floor, seed_ranking=seed
    )
    sel = r.converter_settings["selective"]
    assert sel["result"]["meets"] and 1 <= len(sel["float_ops"]) <= top_k
    assert "seed" in sel["rankings"] and all(op["seed_rank"] for op in sel["float_ops"])


# -- the recipe field `convert.float_scopes`: selective quantization, replayed ---------


def test_a_recipe_with_float_scopes_replays_the_quantizers_file(tiny_model, tiny_data, tmp_path):
    import edgekit
    from edgekit.config import Recipe

    x, y = tiny_data
    f32 = convert.convert(tiny_model, ConvertConfig(batch_size=1)).tflite_bytes
    conv = litert_quantizer.model_ops(f32)[0]
    want = litert_quantizer.quantize(
        f32, _config("static_wi8_ai8"), calibration_data=x, float_scopes=[conv.scope]
    ).tflite_bytes
    assert convert.float_ops(want) == ["CONV_2D"]  # the one op kept float, the rest int8
    recipe = Recipe(convert=_config("static_wi8_ai8", batch_size=1, float_scopes=[conv.scope]))
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe.to_dict()))
    assert json.loads(path.read_text())["convert"]["float_scopes"] == [conv.scope]
    assert Recipe.from_dict(json.loads(path.read_text())) == recipe
    run = edgekit.run(
        str(path), model=tiny_model, data=(x, y), output_dir=tmp_path / "run",
        progress=lambda s: None,
    )  # fmt: skip
    assert (pathlib.Path(run.output_dir) / "model.tflite").read_bytes() == want


@pytest.mark.parametrize(
    "kw, what",
    [
        (dict(mode="int8"), "needs backend 'litert_quantizer' and a static scheme"),
        (dict(backend="litert_quantizer", scheme="dynamic_wi8_afp32"), "a static scheme"),
        (
            dict(backend="litert_quantizer", scheme="static_wi8_ai8", float_scopes=["(x"]),
            "not a valid regular expression",
        ),  # fmt: skip
        (
            dict(backend="litert_quantizer", scheme="static_wi8_ai8", float_scopes="^conv;"),
            "list of regular expressions",
        ),  # fmt: skip
    ],
)
def test_float_scopes_outside_a_static_litert_scheme_are_refused(kw, what):
    from edgekit.config import Recipe

    kw = {"float_scopes": ["^conv;"], **kw}
    with pytest.raises(errors.UserInputError, match=what) as e:
        Recipe.from_dict({"convert": kw})
    assert "Received:" in str(e.value) and "float_scopes=" in str(e.value)


def test_a_float_scope_that_matches_no_op_is_refused_before_quantizing(tiny_model, tiny_data):
    cfg = _config("static_wi8_ai8", float_scopes=["^nothing_here;"])
    with pytest.raises(errors.UserInputError, match="matches no op"):
        convert.convert(tiny_model, cfg, calibration_data=tiny_data[0])
