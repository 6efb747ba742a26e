"""Configs: validation up front, JSON round-trip, unknown fields refused."""

import ast
import json
import pathlib

import pytest

from edgekit import config, errors
from edgekit.config import ConvertConfig, ConvertMode, EvaluateConfig, IOType


@pytest.mark.parametrize(
    "cfg",
    [
        ConvertConfig(),
        ConvertConfig(mode="int8", io_type="uint8", num_calibration_samples=50),
        ConvertConfig(mode="int16x8", io_type="int16", per_channel=False),
        ConvertConfig(mode="float16", allow_select_tf_ops=True, sparse_weights=True),
    ],
)
def test_convert_config_round_trips_through_json(cfg):
    again = ConvertConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert isinstance(again.mode, ConvertMode) and isinstance(again.io_type, IOType)


def test_evaluate_config_round_trips_and_keeps_tuples():
    cfg = EvaluateConfig(top_k=[1, 3], max_samples=10)
    assert cfg.top_k == (1, 3)
    assert EvaluateConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_unknown_field_is_refused_with_the_known_ones():
    with pytest.raises(errors.UserInputError) as e:
        ConvertConfig.from_dict({"mode": "int8", "calibration_sampels": 10})
    assert "calibration_sampels" in str(e.value) and "num_calibration_samples" in str(e.value)


def test_missing_fields_take_defaults_so_old_files_keep_loading():
    assert ConvertConfig.from_dict({"mode": "dynamic"}) == ConvertConfig(mode="dynamic")


def test_unknown_mode_lists_the_modes():
    with pytest.raises(errors.UserInputError) as e:
        ConvertConfig(mode="int4")
    message = str(e.value)
    assert (
        "int4" in message
        and "int8_float_fallback" in message
        and "Received: mode='int4'" in message
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "float16", "io_type": "int8"},
        {"mode": "dynamic", "io_type": "uint8"},
        {"mode": "int8", "io_type": "int16"},
        {"mode": "int16x8", "io_type": "int8"},
        {"mode": "int8", "num_calibration_samples": 0},
    ],
)
def test_impossible_combinations_are_refused(kwargs):
    with pytest.raises(errors.UserInputError, match="Received"):
        ConvertConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"top_k": []}, {"top_k": [0]}, {"batch_size": 0}, {"num_threads": 0}]
)
def test_evaluate_config_rejects_bad_values(kwargs):
    with pytest.raises(errors.UserInputError):
        EvaluateConfig(**kwargs)


@pytest.mark.parametrize(
    "target, expected",
    [
        ("ssh://pi@raspberrypi", ("pi", "raspberrypi", 22)),
        ("ssh://root@10.0.0.7:2222", ("root", "10.0.0.7", 2222)),
        ("ssh://me@board/", ("me", "board", 22)),
    ],
)
def test_parse_target_splits_user_host_and_port(target, expected):
    assert config.parse_target(target) == expected
    assert config.BenchmarkConfig(target=target).target == target


@pytest.mark.parametrize(
    "target",
    ["pi@raspberrypi", "ssh://raspberrypi", "http://pi@host", "ssh://pi@host:99999", "ssh://a@b/x"],
)
def test_a_bad_target_is_refused_before_any_ssh(target):
    with pytest.raises(errors.UserInputError, match=r"ssh://user@host") as e:
        config.BenchmarkConfig(target=target)
    assert f"Received: target={target!r}" in str(e.value)


def test_the_config_layer_imports_nothing_of_edgekit_but_errors():
    # config sits just above errors in the layers (DESIGN.md), imports inside functions
    # included: a BenchmarkConfig that imported the SSH transport made a cycle.
    folder = pathlib.Path(config.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("edgekit"):
                    assert name == "edgekit.errors" or name.startswith("edgekit.config."), (
                        path.name,
                        name,
                    )
