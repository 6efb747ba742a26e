"""Tests of edgekit.benchmark: the figures, the controls, and clear errors for bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import flatbuffers
import numpy as np
import pytest
from absl.testing import flagsaver

from edgekit import benchmark, errors
from edgekit.benchmark import measure
from edgekit.benchmark.harness import inputs as harness_inputs

REPO = pathlib.Path(__file__).resolve().parents[1]

# Short runs: these tests check behaviour, not speed.
FAST = dict(num_runs=5, min_secs=0.0, warmup_runs=1, warmup_min_secs=0.0, max_secs=20.0)


def _convert(model, *, int8: bool) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(16):
                yield [rng.uniform(-1, 1, (1, 8)).astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    m = tf_keras.Sequential(
        [
            tf_keras.layers.Input((8,)),
            tf_keras.layers.Dense(16, activation="relu"),
            tf_keras.layers.Dense(4),
        ]
    )
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for name, int8 in (("float", False), ("int8", True)):
        out[name] = folder / f"{name}.tflite"
        out[name].write_bytes(_convert(m, int8=int8))
    return out


def cfg(**kwargs) -> benchmark.BenchmarkConfig:
    return benchmark.BenchmarkConfig(**{**FAST, **kwargs})


def recursive_call_once_model(model_bytes: bytes) -> bytes:
    """A model that passes the flatbuffer verifier and AllocateTensors, then crashes.

    A CALL_ONCE op in the main graph calls subgraph 1, whose CALL_ONCE calls subgraph
    2, which calls subgraph 1 again: LiteRT's per-op check only refuses a subgraph
    calling itself, so the first invoke recurses until the stack overflows (SIGSEGV).
    """
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    code = s.OperatorCodeT()
    code.builtinCode = s.BuiltinOperator.CALL_ONCE
    code.deprecatedBuiltinCode = s.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
    code.version = 1
    m.operatorCodes.append(code)

    def call_once(target: int) -> s.OperatorT:
        op = s.OperatorT()
        op.opcodeIndex = len(m.operatorCodes) - 1
        op.inputs = np.array([], np.int32)
        op.outputs = np.array([], np.int32)
        op.builtinOptionsType = s.BuiltinOptions.CallOnceOptions
        op.builtinOptions = s.CallOnceOptionsT()
        op.builtinOptions.initSubgraphIndex = target
        return op

    m.subgraphs[0].operators.insert(0, call_once(1))
    for target in (2, 1):
        sg = s.SubGraphT()
        sg.tensors, sg.operators = [], [call_once(target)]
        sg.inputs = sg.outputs = np.array([], np.int32)
        m.subgraphs.append(sg)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# -- the figures ---------------------------------------------------------------------


def test_reports_latency_memory_and_environment(models):
    result = benchmark.benchmark(models["float"], cfg(num_runs=7, num_threads=1))
    d = result.to_dict()
    lat = d["latency_us"]
    assert set(lat) >= {"mean", "std", "min", "max", "p50", "p90", "p95", "p99"}
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert d["num_runs"] >= 7 and d["num_threads"] == 1
    assert d["init_ms"] > 0 and d["first_inference_us"] > 0 and d["warmup_runs"] >= 1
    assert d["peak_rss_mb"] > 10  # a Python process with numpy and LiteRT loaded
    assert d["memory"]["init_added_mb"] >= 0 and d["memory"]["inference_added_mb"] >= 0
    assert d["model_size_bytes"] == models["float"].stat().st_size
    assert d["throughput_per_s"] == pytest.approx(1e6 / lat["mean"])
    env = d["environment"]
    assert env["cpu_model"] and env["logical_cores"] >= 1 and env["litert_version"]
    assert env["use_xnnpack"] is True and env["num_threads"] == 1
    assert "load_average_start" in env and "load_average_end" in env
    assert d["inputs"][0]["shape"] == [1, 8] and d["input_source"].startswith("random")
    text = result.format()
    assert "p99" in text and "peak RSS MiB" in text and env["cpu_model"] in text


def test_min_secs_extends_the_run(models):
    result = benchmark.benchmark(models["float"], cfg(num_runs=1, min_secs=0.3))
    assert result.rows[0].num_runs > 10  # a tiny model runs many times in 0.3 s


def test_threads_sweep_gives_one_row_per_thread_count(models):
    result = benchmark.benchmark(models["float"], cfg(threads_sweep=(1, 2)))
    assert [r.num_threads for r in result.rows] == [1, 2]
    assert [r["num_threads"] for r in result.to_dict()["rows"]] == [1, 2]


def test_compare_runs_models_interleaved_with_pairwise_ratios(models):
    result = benchmark.compare([models["float"], models["int8"]], cfg(num_runs=9))
    assert [r.model for r in result.rows] == [str(models["float"]), str(models["int8"])]
    (ratio,) = result.ratios
    assert ratio["pairs"] == result.rows[0].num_runs == result.rows[1].num_runs >= 9
    assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
    assert "Time ratio to the first model" in result.format()


def test_xnnpack_off_affinity_and_signature(models):
    result = benchmark.benchmark(
        models["float"], cfg(use_xnnpack=False, cpu_affinity=(0,), signature="serving_default")
    )
    assert result.environment["cpu_affinity"] == [0]
    assert result.environment["use_xnnpack"] is False
    assert result.rows[0].signature == "serving_default"


def test_per_op_profile_is_labelled_as_estimate(models):
    p = benchmark.benchmark(models["float"], cfg(profile=True)).rows[0].profile
    assert p["estimate"] is True and "truncated" in p["method"]
    assert p["num_ops"] == p["num_cuts"] >= 2
    types = {e["op_type"] for e in p["by_op_type"]}
    assert "FULLY_CONNECTED" in types
    assert len(p["slowest_ops"]) <= 10
    assert sum(e["count"] for e in p["by_op_type"]) == p["num_ops"]


def test_random_inputs_cover_the_quantized_range_and_are_seeded():
    specs = [
        {"name": "q", "shape": [4096], "dtype": "int8", "scale": 0.1, "zero_point": 0},
        {"name": "f", "shape": [4096], "dtype": "float32", "scale": None, "zero_point": None},
    ]
    q, f = harness_inputs.random_feeds(specs, seed=3)
    assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127
    assert f.dtype == np.float32 and -1 <= f.min() < -0.99 and 0.99 < f.max() <= 1
    np.testing.assert_array_equal(harness_inputs.random_feeds(specs, seed=3)[0], q)
    assert not np.array_equal(harness_inputs.random_feeds(specs, seed=4)[0], q)


def test_input_data_npy_and_npz(models, tmp_path):
    npy = tmp_path / "x.npy"
    np.save(npy, np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))
    row = benchmark.benchmark(models["float"], cfg(), input_data=npy).rows[0]
    assert row.input_source == "input_data" and row.num_input_samples == 3
    npz = tmp_path / "x.npz"
    np.savez(npz, **{row.inputs[0]["name"]: np.zeros((1, 8), np.float32)})
    # float data for an int8 input is quantized with the input's scale
    row = benchmark.benchmark(models["int8"], cfg(), input_data=npz).rows[0]
    assert row.num_input_samples == 1 and row.inputs[0]["dtype"] == "int8"


# -- bad input: clear errors ---------------------------------------------------------------


def test_wrong_input_data_shape_or_dtype(models, tmp_path):
    bad_shape = tmp_path / "shape.npy"
    np.save(bad_shape, np.zeros((1, 5), np.float32))
    with pytest.raises(errors.UserInputError, match=r"shape \[1, 5\].*takes shape \[1, 8\]"):
        benchmark.benchmark(models["float"], cfg(), input_data=bad_shape)
    bad_dtype = tmp_path / "dtype.npy"
    np.save(bad_dtype, np.zeros((1, 8), np.int64))
    with pytest.raises(errors.UserInputError, match="is int64; the input takes float32"):
        benchmark.benchmark(models["float"], cfg(), input_data=bad_dtype)
    with pytest.raises(errors.UserInputError, match=r"\.npy file.*\.npz"):
        benchmark.benchmark(models["float"], cfg(), input_data=models["float"])


def test_missing_non_tflite_and_truncated_files(models, tmp_path):
    with pytest.raises(errors.UserInputError, match="No .tflite file"):
        benchmark.benchmark(tmp_path / "missing.tflite", cfg())
    text = tmp_path / "notes.tflite"
    text.write_text("not a model at all")
    with pytest.raises(errors.UserInputError, match="not a TFLite flatbuffer"):
        benchmark.benchmark(text, cfg())
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(models["float"].read_bytes()[:600])
    with pytest.raises(errors.UserInputError, match="Received"):
        benchmark.benchmark(truncated, cfg())
    # and without edgekit's validator the runtime's own verifier refuses it in the child
    with pytest.raises(errors.UserInputError, match="not a valid Flatbuffer"):
        measure.measure_models([truncated], cfg(), input_data=None, validate=False)


@pytest.mark.parametrize("threads", [0, -2])
def test_num_threads_must_be_positive(threads):
    with pytest.raises(errors.UserInputError, match=f"num_threads must be.*num_threads={threads}"):
        benchmark.BenchmarkConfig(num_threads=threads)


def test_bad_options_are_refused_up_front(models):
    with pytest.raises(errors.UserInputError, match="threads_sweep"):
        benchmark.BenchmarkConfig(threads_sweep=(1, 0))
    with pytest.raises(errors.UserInputError, match="min_secs must not exceed max_secs"):
        benchmark.BenchmarkConfig(min_secs=5, max_secs=1)
    with pytest.raises(errors.UserInputError, match="ssh://user@host"):
        benchmark.BenchmarkConfig(target="pi@host")
    with pytest.raises(errors.UserInputError, match="Cores \\[4096\\] are not available"):
        benchmark.benchmark(models["float"], cfg(cpu_affinity=(4096,)))
    with pytest.raises(errors.UserInputError, match="no signature 'nope'.*serving_default"):
        benchmark.benchmark(models["float"], cfg(signature="nope"))
    with pytest.raises(errors.UserInputError, match="at least two models"):
        benchmark.compare([models["float"]], cfg())


def test_crashing_model_is_caught_by_validator_or_reported_as_a_crash(models, tmp_path):
    crash = tmp_path / "crash.tflite"
    crash.write_bytes(recursive_call_once_model(models["float"].read_bytes()))
    # edgekit's structural checks refuse it before any interpreter sees it...
    with pytest.raises(errors.UserInputError, match="cycle"):
        benchmark.benchmark(crash, cfg())
    # ...and if it gets past them, the runtime's crash stays in the child process.
    with pytest.raises(benchmark.BenchmarkFailed, match="crashed with SIGSEGV.*first inference"):
        measure.measure_models([crash], cfg(), input_data=None, validate=False)


def test_a_run_past_its_timeout_is_stopped(models):
    # A model that hangs the runtime looks like this from outside: no result in time.
    with pytest.raises(benchmark.BenchmarkFailed, match="did not finish within 2 s"):
        benchmark.benchmark(models["float"], cfg(min_secs=30, max_secs=60, timeout_secs=2))


# -- one source of defaults: BenchmarkConfig ----------------------------------------------

# Flags that say what to measure or where to write, not how: no BenchmarkConfig field.
FLAGS_WITHOUT_FIELD = {"model", "compare", "input_data", "json", "overwrite"}
# Flags named apart from their field: the repeatable --ssh_option fills ssh_options.
FIELD_OF_FLAG = {"ssh_option": "ssh_options"}


def _absl_defaults() -> dict:
    from absl import flags

    from edgekit.cli import benchmark as cli

    return {f.name: f.default for f in flags.FLAGS.get_flags_for_module(cli.__name__)}


def _device_defaults() -> dict:
    from edgekit.benchmark.harness import cli

    return vars(cli.parser().parse_args([]))


def _config_from_defaults(defaults: dict) -> benchmark.BenchmarkConfig:
    from edgekit.benchmark import command

    how = {k: v for k, v in defaults.items() if k not in FLAGS_WITHOUT_FIELD}
    cfg, models = command.config_from_flags(model="m.tflite", compare=None, **how)
    assert models == ["m.tflite"]
    return cfg


def test_both_commands_take_a_flag_for_every_config_field():
    fields = {f.name for f in dataclasses.fields(benchmark.BenchmarkConfig)}
    absl_flags, device_flags = set(_absl_defaults()), set(_device_defaults())
    assert absl_flags == device_flags
    assert {FIELD_OF_FLAG.get(n, n) for n in absl_flags - FLAGS_WITHOUT_FIELD} == fields


@pytest.mark.parametrize("command", ["edgekit-benchmark", "python -m edgekit.benchmark"])
def test_flag_defaults_are_the_config_defaults(command):
    defaults = _absl_defaults() if command == "edgekit-benchmark" else _device_defaults()
    got = _config_from_defaults(defaults)
    want = benchmark.BenchmarkConfig()
    differ = {
        f.name: (getattr(got, f.name), getattr(want, f.name))
        for f in dataclasses.fields(want)
        if getattr(got, f.name) != getattr(want, f.name)
    }
    assert not differ, f"{command}: flag default != BenchmarkConfig default: {differ}"
    if command == "edgekit-benchmark":  # absl holds typed defaults: compare them as written
        for name, value in defaults.items():
            if name not in FLAGS_WITHOUT_FIELD:
                field = FIELD_OF_FLAG.get(name, name)
                as_field = tuple(value) if isinstance(value, list) else value
                assert as_field == getattr(want, field), name


# -- the commands ------------------------------------------------------------------------


def test_cli_writes_json_and_prints_table(models, tmp_path, capsys):
    from absl import flags

    from edgekit.cli import benchmark as cli

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    out = tmp_path / "r.json"
    with flagsaver.flagsaver(
        model=str(models["float"]),
        num_runs=5,
        min_secs=0.0,
        warmup_min_secs=0.0,
        num_threads=2,
        json=str(out),
    ):
        cli.main(["edgekit-benchmark"])
    d = json.loads(out.read_text())
    assert {
        "latency_us",
        "init_ms",
        "first_inference_us",
        "peak_rss_mb",
        "num_threads",
        "num_runs",
    } <= set(d)
    assert d["num_threads"] == 2 and set(d["latency_us"]) >= {
        "mean",
        "std",
        "min",
        "max",
        "p50",
        "p90",
        "p99",
    }
    assert "mean" in capsys.readouterr().out


def _device_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "edgekit.benchmark", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_device_entry_point_errors_are_one_paragraph(models, tmp_path):
    p = _device_cli(f"--model={models['float']}", "--num_threads=0")
    assert p.returncode == 2
    assert p.stderr.startswith("error: num_threads must be") and "Traceback" not in p.stderr
    p = _device_cli(f"--model={tmp_path / 'nope.tflite'}")
    assert p.returncode == 2 and "No .tflite file" in p.stderr
    out = tmp_path / "cmp.json"
    p = _device_cli(
        f"--compare={models['float']},{models['int8']}",
        "--num_runs=3",
        "--min_secs=0",
        "--warmup_min_secs=0",
        f"--json={out}",
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(out.read_text())["ratios"][0]["pairs"] >= 3


@pytest.mark.slow
def test_runs_without_tensorflow(models, tmp_path_factory):
    """`python -m edgekit.benchmark` in a venv with only numpy and ai-edge-litert."""
    venv = tmp_path_factory.mktemp("notf") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "numpy", "ai-edge-litert"],
        check=True,
        timeout=600,
        capture_output=True,
    )
    probe = subprocess.run(
        [
            py,
            "-c",
            "import importlib.util as u; print([m for m in ('tensorflow', 'absl', "
            "'tf_keras', 'keras') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"
    out = tmp_path_factory.mktemp("notf_out") / "r.json"
    p = subprocess.run(
        [
            py,
            "-m",
            "edgekit.benchmark",
            f"--model={models['float']}",
            "--num_runs=5",
            "--min_secs=0",
            "--warmup_min_secs=0",
            "--profile",
            f"--json={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["num_runs"] >= 5 and d["profile"]["num_ops"] >= 2


# -- tables a user reads at a glance -----------------------------------------------


def test_tables_state_one_time_unit_per_column_and_print_plain_decimals():
    from edgekit.benchmark.harness.report import format_table

    table = format_table(
        [["slow", 71234.0, 70900.0, 14.04, 71234.5], ["fast", 9.8, 10.2, 102040.8, None]],
        ["model", "p50 us", "init ms", "inf/s", "max us"],
    )
    lines = table.splitlines()
    assert lines[0].split() == ["model", "p50", "ms", "init", "s", "inf/s", "max", "ms"]
    # Decimals per column, enough for its smallest value: 10 µs shows as 0.010 ms.
    assert lines[2].split() == ["slow", "71.234", "70.900", "14.04", "71.2"]
    assert lines[3].split() == ["fast", "0.010", "0.010", "102041", "-"]
    assert "e+" not in table and "e-" not in table
    small = format_table([["a", 9.8], ["b", 12.5]], ["model", "p50 us"])
    assert small.splitlines()[0].split() == ["model", "p50", "µs"]
    assert small.splitlines()[2].split() == ["a", "9.80"]
    # A column of durations given as text (the pipeline's "0.058" ms) is re-stated too.
    text = format_table([["int8", "0.058"], ["float", "0.014"]], ["model", "p50 ms"])
    assert text.splitlines()[0].split() == ["model", "p50", "µs"]
    assert text.splitlines()[2].split() == ["int8", "58.0"]
