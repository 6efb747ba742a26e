"""The deployment bundle: one folder a device team can take as it is.

`export` writes:

    DIR/model.tflite      the model, validated first
    DIR/manifest.json     format version; edgekit, TensorFlow and LiteRT versions; sha256
                          and size of every file; inputs and outputs (dtype, shape,
                          quantization) and the normalization to apply; labels; metrics
                          and recipe when known; ops; the arena estimate
    DIR/labels.txt        when labels are given
    DIR/model_data.h/.cc  with `c_array=True`: the model as an aligned C array for
                          TensorFlow Lite Micro

The folder is built next to DIR and moved into place at the end, so a failed export
leaves nothing half-written. `verify` checks every checksum (and the manifest's own),
validates the model, loads it in a child process and runs one inference on zeros.

Example:
    >>> result = export("model.tflite", "bundle", labels=["cat", "dog"],
    ...                 normalization=(127.5, 127.5), c_array=True)
    >>> verify("bundle").ok
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from edgekit import _compat, errors, io, runtime
from edgekit.lite import c_array as c_array_lib
from edgekit.lite import inspect as inspect_lib
from edgekit.lite import validate

MANIFEST_FORMAT_VERSION = 1
MODEL_FILE = "model.tflite"
MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"
C_HEADER_FILE = "model_data.h"
C_SOURCE_FILE = "model_data.cc"
_SELF_HASH = "manifest_sha256"


@dataclasses.dataclass(frozen=True)
class BundleResult(io.SavesJson):
    """Where the bundle went and what its manifest says.

    `save(path)` writes this record as JSON; `export` has already written the bundle.
    """

    output_dir: str
    files: dict[str, dict[str, Any]]
    manifest: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class VerifyResult(io.SavesJson):
    """The outcome of `verify`: `ok` only when every check passed.

    `checks` lists (name, passed, detail) in the order they ran; `problems` holds the
    details of the failed ones.
    """

    bundle_dir: str
    ok: bool
    checks: list[tuple[str, bool, str]]
    problems: list[str]
    load: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------
# Options


def parse_normalization(text: str) -> tuple[float, float]:
    """Parses the `--normalization=mean,std` flag, e.g. "127.5,127.5"."""
    parts = [p.strip() for p in text.split(",")]
    try:
        mean, std = (float(p) for p in parts)
    except ValueError:
        raise errors.UserInputError(
            "normalization must be two numbers 'mean,std' (the model input is "
            "(x - mean) / std), e.g. '127.5,127.5' or '0,1'. " + errors.received(normalization=text)
        ) from None
    return mean, std


def _normalization(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        mean, std = value.get("mean"), value.get("std")
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        mean, std = value
    else:
        mean = std = None
    try:
        mean_l = [float(v) for v in (mean if isinstance(mean, Sequence) else [mean])]
        std_l = [float(v) for v in (std if isinstance(std, Sequence) else [std])]
    except (TypeError, ValueError):
        mean_l = std_l = []
    ok = (
        mean_l
        and std_l
        and all(math.isfinite(v) for v in mean_l)
        and all(math.isfinite(v) and v > 0 for v in std_l)
    )
    if not ok:
        raise errors.UserInputError(
            "normalization must be (mean, std) or {'mean': ..., 'std': ...}: finite numbers "
            "(or one per channel), std > 0. The model input is (x - mean) / std. "
            + errors.received(normalization=value)
        )
    return {
        "mean": mean_l[0] if len(mean_l) == 1 else mean_l,
        "std": std_l[0] if len(std_l) == 1 else std_l,
        "formula": "input = (x - mean) / std, on float x before any input quantization",
    }


def _labels(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        p = pathlib.Path(value)
        if not p.is_file():
            raise errors.UserInputError(
                f"No labels file at {str(p)!r}. Pass a text file with one label per line. "
                + errors.received(labels=str(p))
            )
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise errors.UserInputError(
                "The labels file is not UTF-8 text. Save it as UTF-8, one label per line. "
                + errors.received(labels=str(p))
            ) from None
        while lines and not lines[-1].strip():
            lines.pop()
        labels = [line.rstrip("\r") for line in lines]
    elif isinstance(value, Sequence):
        labels = [str(v) for v in value]
    else:
        labels = []
    if not labels or any("\n" in v or "\r" in v for v in labels):
        raise errors.UserInputError(
            "labels must be a non-empty list of strings without line breaks, or the path "
            "of a text file with one label per line. " + errors.received(labels=value)
        )
    return labels


def _json_ready(name: str, value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise errors.UserInputError(
            f"{name} must be JSON-serializable (dicts, lists, strings, finite numbers), or "
            f"have a to_dict() method: {e}. " + errors.received(**{name: value})
        ) from None


def _check_output_dir(output_dir: str | os.PathLike, overwrite: bool) -> pathlib.Path:
    out = pathlib.Path(output_dir)
    if out.exists() and not out.is_dir():
        raise errors.UserInputError(
            f"The output folder {str(out)!r} is a file. Choose a folder path. "
            + errors.received(output_dir=str(out))
        )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise errors.UserInputError(
            f"The output folder {str(out)!r} already exists and is not empty. Pass "
            "--overwrite (overwrite=True) to replace it, or choose another folder. "
            + errors.received(output_dir=str(out))
        )
    parent = out.absolute().parent
    if not parent.is_dir():
        raise errors.UserInputError(
            f"The parent folder {str(parent)!r} does not exist. Create it first. "
            + errors.received(output_dir=str(out))
        )
    return out


# ---------------------------------------------------------------------------
# Export


def _file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _canonical_hash(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != _SELF_HASH}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def render_manifest(manifest: Mapping[str, Any]) -> str:
    """The exact text of manifest.json (verify re-renders it to catch any edited byte)."""
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def _io_entry(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": d["name"],
        "dtype": d["dtype"],
        "shape": d["shape"],
        "shape_signature": d["shape_signature"],
        "quantization": d["quantization"],
    }


def export(
    model: str | os.PathLike | bytes,
    output_dir: str | os.PathLike,
    *,
    labels: str | os.PathLike | Sequence[str] | None = None,
    normalization: Any = None,
    c_array: bool = False,
    metrics: Mapping[str, Any] | None = None,
    recipe: Any = None,
    overwrite: bool = False,
) -> BundleResult:
    """Writes a deployment bundle for a `.tflite` model.

    Args:
      model: path to a `.tflite` file, or its bytes. It is validated first.
      output_dir: the bundle folder; it must not exist (or be empty) unless `overwrite`.
      labels: a list of class names, or the path of a text file with one per line.
      normalization: (mean, std) or {"mean": ..., "std": ...}, scalars or one per
        channel; recorded so the device applies input = (x - mean) / std.
      c_array: also write `model_data.h` / `model_data.cc` for TensorFlow Lite Micro.
      metrics: measured figures to record (JSON-serializable).
      recipe: the recipe that made the model (a dict, or an object with `to_dict()`).
      overwrite: replace an existing, non-empty `output_dir`.

    Returns:
      A `BundleResult`.

    Raises:
      UserInputError: bad options, a missing or malformed model, or an output folder
        that exists; nothing is written then.

    Example:
        >>> export("model.tflite", "bundle", labels="labels.txt", c_array=True)
    """
    out = _check_output_dir(output_dir, overwrite)
    label_list = _labels(labels)
    norm = _normalization(normalization)
    metrics_j = _json_ready("metrics", metrics)
    recipe_j = _json_ready("recipe", recipe)
    data = runtime.read_model_bytes(model)
    report = inspect_lib.inspect_model(data)

    files: dict[str, bytes] = {MODEL_FILE: data}
    if label_list is not None:
        files[LABELS_FILE] = ("\n".join(label_list) + "\n").encode("utf-8")
    if c_array:
        header, source = c_array_lib.to_c_source(
            data,
            header_name=C_HEADER_FILE,
            op_names=report.op_names,
            arena_bytes=report.memory["arena_bytes"],
            source_name=MODEL_FILE,
        )
        files[C_HEADER_FILE] = header.encode("utf-8")
        files[C_SOURCE_FILE] = source.encode("utf-8")
    versions = _compat.versions()
    manifest: dict[str, Any] = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "created_by": f"edgekit {versions.get('edgekit')}",
        "versions": {
            "edgekit": versions.get("edgekit"),
            "tensorflow": versions.get("tensorflow") or versions.get("tensorflow-cpu"),
            "ai_edge_litert": versions.get("ai-edge-litert"),
        },
        "files": {name: _file_entry(b) for name, b in sorted(files.items())},
        "model": {
            "file": MODEL_FILE,
            "inputs": [_io_entry(d) for d in report.inputs],
            "outputs": [_io_entry(d) for d in report.outputs],
            "ops": report.op_names,
            "custom_ops": report.custom_ops,
            "params": report.params,
            "macs": report.total_macs,
            "arena_estimate_bytes": report.memory["arena_bytes"],
        },
        "normalization": norm,
        "labels": label_list,
        "metrics": metrics_j,
        "recipe": recipe_j,
    }
    manifest[_SELF_HASH] = _canonical_hash(manifest)
    files[MANIFEST_FILE] = render_manifest(manifest).encode("ascii")

    parent = out.absolute().parent
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        for name, content in files.items():
            io.atomic_write_bytes(tmp / name, content)
        _move_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return BundleResult(
        output_dir=str(out),
        files={name: _file_entry(b) for name, b in sorted(files.items())},
        manifest=manifest,
    )


def _move_into_place(tmp: pathlib.Path, out: pathlib.Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.absolute().parent))
    os.rmdir(old)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)  # put the previous bundle back
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------
# Verify


def verify(bundle_dir: str | os.PathLike, *, timeout: float = 60.0) -> VerifyResult:
    """Checks a bundle: checksums, manifest integrity, validation, a load and one run.

    Args:
      bundle_dir: the folder `export` wrote.
      timeout: seconds the child process may take to load and run the model.

    Returns:
      A `VerifyResult`; `ok` is False when any check fails (a changed byte in any
      listed file or in the manifest, a model that fails validation or does not load
      and run, or inputs/outputs that differ from the manifest).

    Raises:
      UserInputError: `bundle_dir` is not a folder.

    Example:
        >>> verify("bundle").problems
        []
    """
    d = pathlib.Path(bundle_dir)
    if not d.is_dir():
        raise errors.UserInputError(
            f"No bundle folder at {str(d)!r}. Pass the folder edgekit-export wrote. "
            + errors.received(bundle_dir=str(d))
        )
    checks: list[tuple[str, bool, str]] = []

    def check(name: str, passed: bool, detail: str) -> bool:
        checks.append((name, bool(passed), detail))
        return passed

    def result(load: dict[str, Any] | None = None) -> VerifyResult:
        problems = [f"{n}: {detail}" for n, passed, detail in checks if not passed]
        return VerifyResult(str(d), not problems, checks, problems, load)

    mpath = d / MANIFEST_FILE
    if not check("manifest_present", mpath.is_file(), f"{MANIFEST_FILE} in {d}"):
        return result()
    text = mpath.read_bytes()
    try:
        manifest = json.loads(text.decode("utf-8"))
        parsed = isinstance(manifest, dict)
    except (UnicodeDecodeError, ValueError) as e:
        parsed, manifest = False, None
        check("manifest_json", False, f"{MANIFEST_FILE} is not valid JSON: {e}")
        return result()
    if not check("manifest_json", parsed, "the manifest is a JSON object"):
        return result()
    check(
        "manifest_sha256",
        manifest.get(_SELF_HASH) == _canonical_hash(manifest),
        "the manifest's own checksum matches its content",
    )
    check(
        "manifest_bytes",
        text == render_manifest(manifest).encode("ascii", errors="replace"),
        "manifest.json is byte-for-byte as edgekit wrote it",
    )
    check(
        "format_version",
        manifest.get("format_version") == MANIFEST_FORMAT_VERSION,
        f"format_version {manifest.get('format_version')!r}, expected {MANIFEST_FORMAT_VERSION}",
    )
    files = manifest.get("files")
    if not check(
        "files_listed", isinstance(files, dict) and MODEL_FILE in files, "files lists model.tflite"
    ):
        return result()
    contents: dict[str, bytes] = {}
    for name, entry in sorted(files.items()):
        p = d / name
        if pathlib.PurePosixPath(name).name != name or not p.is_file():
            check(f"file:{name}", False, "listed in the manifest but missing")
            continue
        contents[name] = p.read_bytes()
        got = _file_entry(contents[name])
        want = entry if isinstance(entry, dict) else {}
        check(
            f"file:{name}",
            got == {"sha256": want.get("sha256"), "size": want.get("size")},
            f"size {got['size']} sha256 {got['sha256'][:16]}... "
            f"(manifest: size {want.get('size')} sha256 {str(want.get('sha256'))[:16]}...)",
        )
    data = contents.get(MODEL_FILE)
    if data is None:
        return result()
    report = validate.validate_model_bytes(data)
    if not check(
        "validate",
        report.accepted,
        "structural checks passed"
        if report.accepted
        else f"{report.check} failed at {report.where}: {report.message}",
    ):
        return result()
    load = validate.run_in_subprocess(data, timeout=timeout, validate=False)
    if not check(
        "load_and_run",
        load.ok,
        f"{load.status}: {load.message}"
        if not load.ok
        else f"one inference on zeros in a child process, outputs {list(load.output_shapes)}",
    ):
        return result(load.to_dict())
    model = manifest.get("model") or {}
    for kind in ("inputs", "outputs"):
        want = [_io_compare(x) for x in model.get(kind, [])]
        got = [_io_compare(x) for x in getattr(load, kind)]
        check(f"{kind}_match", want == got, f"{kind} of the loaded model match the manifest")
    return result(load.to_dict())


def _io_compare(d: Mapping[str, Any]) -> tuple:
    """The parts of an input/output that a loaded model and the manifest both state."""
    q = d.get("quantization")
    if isinstance(q, Mapping):  # manifest entry
        scale = q.get("scale") if q.get("kind") == "per-tensor" else None
        zp = q.get("zero_point") if q.get("kind") == "per-tensor" else None
    else:  # runtime.TensorSpec.to_dict()
        scale, zp = d.get("scale"), d.get("zero_point")
        if d.get("scales") and len(d.get("scales")) > 1:
            scale = zp = None
    return (
        d.get("name"),
        d.get("dtype"),
        list(d.get("shape_signature") or d.get("shape") or []),
        None if scale is None else round(float(scale), 12),
        zp,
    )
