"""edgekit.bundle, edgekit-export and edgekit-verify-bundle."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import _lite_fixtures as fx
import pytest

from edgekit import bundle, errors


@pytest.fixture(scope="module")
def int8_path(tmp_path_factory) -> pathlib.Path:
    p = tmp_path_factory.mktemp("models") / "m.tflite"
    p.write_bytes(fx.small_cnn_int8())
    return p


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory, int8_path) -> pathlib.Path:
    out = tmp_path_factory.mktemp("bundles") / "b"
    bundle.export(
        int8_path,
        out,
        labels=[f"class {i}" for i in range(10)],
        normalization=(0.0, 255.0),
        c_array=True,
        metrics={"accuracy": 0.91},
        recipe={"convert": {"mode": "int8"}},
    )
    return out


def _copy(src: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_manifest_contents(good_bundle):
    names = sorted(p.name for p in good_bundle.iterdir())
    assert names == ["labels.txt", "manifest.json", "model.tflite", "model_data.cc", "model_data.h"]
    m = json.loads((good_bundle / "manifest.json").read_text())
    assert m["format_version"] == bundle.MANIFEST_FORMAT_VERSION
    assert set(m["versions"]) == {"edgekit", "tensorflow", "ai_edge_litert"}
    assert m["versions"]["ai_edge_litert"] and m["versions"]["tensorflow"]
    for name in ("labels.txt", "model.tflite", "model_data.cc", "model_data.h"):
        assert m["files"][name]["size"] == (good_bundle / name).stat().st_size
    (inp,) = m["model"]["inputs"]
    assert inp["dtype"] == "int8" and inp["shape"] == [1, 16, 16, 3]
    assert inp["quantization"]["kind"] == "per-tensor" and inp["quantization"]["zero_point"] == -128
    assert m["normalization"]["mean"] == 0.0 and m["normalization"]["std"] == 255.0
    assert m["labels"][3] == "class 3"
    assert (good_bundle / "labels.txt").read_text().splitlines()[3] == "class 3"
    assert m["metrics"] == {"accuracy": 0.91} and m["recipe"]["convert"]["mode"] == "int8"
    assert m["model"]["ops"] == sorted(m["model"]["ops"]) and "CONV_2D" in m["model"]["ops"]


def test_untouched_bundle_verifies(good_bundle):
    result = bundle.verify(good_bundle)
    assert result.ok, result.problems
    assert {c[0] for c in result.checks} >= {
        "manifest_sha256",
        "file:model.tflite",
        "validate",
        "load_and_run",
    }


@pytest.mark.parametrize("target", ["model.tflite", "manifest.json", "labels.txt", "model_data.cc"])
@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_one_flipped_byte_fails(good_bundle, tmp_path, target, where):
    d = _copy(good_bundle, tmp_path)
    p = d / target
    data = bytearray(p.read_bytes())
    data[int(len(data) * where)] ^= 0x20
    p.write_bytes(bytes(data))
    result = bundle.verify(d)
    assert not result.ok
    assert result.problems


def test_missing_or_extra_edits_fail(good_bundle, tmp_path):
    d = _copy(good_bundle, tmp_path)
    (d / "labels.txt").unlink()
    assert any("labels.txt" in p for p in bundle.verify(d).problems)
    (d / "manifest.json").unlink()
    assert not bundle.verify(d).ok
    with pytest.raises(errors.UserInputError, match="No bundle folder"):
        bundle.verify(tmp_path / "nope")


def test_c_array_compiles_with_gcc(good_bundle, tmp_path):
    header = (good_bundle / "model_data.h").read_text()
    assert "CONV_2D" in header and "G_MODEL_DATA_ARENA_ESTIMATE_BYTES" in header
    source = (good_bundle / "model_data.cc").read_text()
    size = (good_bundle / "model.tflite").stat().st_size
    assert f"g_model_data_len = {size};" in source and "alignas(16)" in source
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed; the C array is only checked textually")
    shutil.copy(good_bundle / "model_data.h", tmp_path)
    shutil.copy(good_bundle / "model_data.cc", tmp_path)
    # A second file reads the array through the header, as firmware would.
    (tmp_path / "use.cc").write_text(
        '#include "model_data.h"\n'
        "unsigned int first_word() { return g_model_data[4] + g_model_data_len; }\n"
        'static_assert(G_MODEL_DATA_NUM_OPS > 0, "ops listed");\n'
    )
    for src in ("model_data.cc", "use.cc"):
        p = subprocess.run(
            [gcc, "-c", "-std=c++11", "-Wall", "-Werror", src],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stderr
    p = subprocess.run(["nm", "model_data.o"], cwd=tmp_path, capture_output=True, text=True)
    if p.returncode == 0:
        assert "g_model_data" in p.stdout


def test_export_refuses_to_overwrite_and_writes_nothing_on_bad_input(int8_path, tmp_path):
    out = tmp_path / "b"
    bundle.export(int8_path, out)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(errors.UserInputError, match="already exists"):
        bundle.export(int8_path, out, labels=["a"])
    assert (out / "manifest.json").read_bytes() == before
    bundle.export(int8_path, out, labels=["a"], overwrite=True)
    assert (out / "labels.txt").read_text() == "a\n" and bundle.verify(out).ok
    for bad in (fx.small_cnn_int8()[:1000], b"nope"):
        with pytest.raises(errors.UserInputError):
            bundle.export(bad, tmp_path / "never")
    with pytest.raises(errors.UserInputError, match="normalization"):
        bundle.export(int8_path, tmp_path / "never", normalization=(0.0, 0.0))
    with pytest.raises(errors.UserInputError, match="labels"):
        bundle.export(int8_path, tmp_path / "never", labels=tmp_path / "missing.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def _cli(module, *args):
    return subprocess.run(
        [sys.executable, "-m", f"edgekit.cli.{module}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_export_and_verify(int8_path, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    out = tmp_path / "bundle"
    p = _cli("export", f"--model={int8_path}", f"--output_dir={out}", f"--labels={labels}",
             "--normalization=127.5,127.5", "--c_array")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "model_data.cc" in p.stdout
    assert json.loads((out / "manifest.json").read_text())["labels"][9] == "c9"
    p = _cli("verify_bundle", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "all" in p.stdout and "checks passed" in p.stdout
    model = out / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    p = _cli("verify_bundle", f"--bundle_dir={out}")
    assert p.returncode == 1 and "FAILED" in p.stdout
    p = _cli("verify_bundle", str(tmp_path / "missing"))
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr


def test_cli_export_bad_input_exit_2(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    for args in (
        [f"--model={tmp_path / 'missing.tflite'}", f"--output_dir={tmp_path / 'o'}"],
        [f"--model={junk}", f"--output_dir={tmp_path / 'o'}"],
        [f"--model={junk}", f"--output_dir={tmp_path / 'o'}", "--normalization=abc"],
    ):
        p = _cli("export", *args)
        assert p.returncode == 2, p.stderr
        assert p.stderr.startswith("error: ") and "Traceback" not in p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["junk.tflite"]


def test_export_and_verify_results_save_their_json_to_a_file(int8_path, tmp_path):
    made = bundle.export(int8_path, tmp_path / "b")
    checked = bundle.verify(tmp_path / "b")
    before = sorted(p.name for p in (tmp_path / "b").iterdir())
    for result, name in ((made, "export.json"), (checked, "verify.json")):
        path = result.save(tmp_path / name)
        assert json.loads(path.read_text()) == json.loads(json.dumps(result.to_dict()))
        with pytest.raises(errors.UserInputError, match="already exists"):
            result.save(path)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == before  # bundle untouched
