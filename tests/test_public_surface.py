"""The public surface (commands, flags and defaults, names, config fields, JSON keys) holds.

Users' scripts depend on every piece of it. The snapshot was recorded before the wave-2
restructuring (`python tests/_surface.py --write`); a change to it must be deliberate:
re-record it and say why in the commit.
"""

from __future__ import annotations

import json

import _surface
import pytest


@pytest.fixture(scope="module")
def snapshot():
    return json.loads(_surface.SNAPSHOT.read_text())


def test_console_scripts_flags_and_defaults_are_unchanged(snapshot):
    now = _surface.static_surface()
    assert now["console_scripts"].keys() >= snapshot["console_scripts"].keys()
    for script, flags in snapshot["flags"].items():
        got = now["flags"][script]
        missing = {k: v for k, v in flags.items() if got.get(k, "<gone>") != v}
        assert not missing, f"{script}: flags removed or defaults changed: {missing}"


def test_public_names_and_config_fields_are_unchanged(snapshot):
    now = _surface.static_surface()
    for module, names in snapshot["public_names"].items():
        gone = sorted(set(names) - set(now["public_names"][module]))
        assert not gone, f"{module} lost public names: {gone}"
    for cls, fields in snapshot["config_fields"].items():
        assert now["config_fields"].get(cls) == fields, cls


@pytest.mark.slow
def test_json_key_sets_of_every_result_are_unchanged(snapshot, example, tmp_path):
    now = _surface.run_surface(example, tmp_path)
    for kind, keys in snapshot["runs"].items():
        gone = sorted(set(keys) - set(now[kind]))
        assert not gone, f"{kind} lost keys: {gone}"


def test_qat_model_saved_before_the_restructuring_still_loads_and_converts(tmp_path):
    # Made at the start of wave 2 (tests/data/qat_before_restructure.keras): its config
    # names edgekit.optimize._qat_configs classes, which must keep their module path.
    import numpy as np

    from edgekit import convert, io
    from edgekit.config import ConvertConfig

    data = _surface.ROOT / "tests" / "data"
    model = io.load_model(data / "qat_before_restructure.keras")
    io_pair = np.load(data / "qat_before_restructure_io.npz")
    np.testing.assert_allclose(
        model.predict(io_pair["x"], verbose=0), io_pair["want"], rtol=1e-5, atol=1e-5
    )
    result = convert.convert(model, ConvertConfig(mode="int8"))
    assert result.converter_settings["ranges"].startswith("from quantization-aware training")
    assert convert.float_ops(result.tflite_bytes) == []
