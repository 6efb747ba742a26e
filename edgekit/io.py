"""Load and save Keras models in every format, safely; write files atomically.

Formats read: the `.keras` zip (tf_keras or Keras 3), legacy `.h5` (tf_keras or
Keras 3), a SavedModel directory (tf_keras with Keras metadata, or a plain
TensorFlow SavedModel such as `keras.Model.export()` writes), or a model object.

Safe mode is on by default: a model whose config holds a `Lambda` layer runs
arbitrary Python when loaded, so it is refused unless the caller passes
`safe_mode=False` (`--allow_unsafe_deserialization` on the command line).

Example:
    >>> model = edgekit.io.load_model("model.keras")
    >>> edgekit.io.atomic_write_bytes("out.tflite", data, overwrite=False)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Any

from edgekit import _compat, errors

TFLITE_IDENTIFIER = b"TFL3"

PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class SavedModelDir:
    """A TensorFlow SavedModel without Keras metadata (for example a Keras 3 export).

    It converts post-training through `TFLiteConverter.from_saved_model` and can be
    used as a parity reference; it cannot be fine-tuned.
    """

    path: str
    signature: str = "serving_default"

    def predict(self, x: Any) -> Any:
        tf = _compat.tf()
        fn = load_saved_model_signature(self.path, self.signature)
        ((arg_name, spec),) = fn.structured_input_signature[1].items()
        out = fn(**{arg_name: tf.constant(x, dtype=spec.dtype)})
        (value,) = out.values() if len(out) == 1 else (list(out.values())[0],)
        return value.numpy()


def load_saved_model_signature(path: str, signature: str) -> Any:
    """Loads a SavedModel and returns its `signature` function (convert and predict use it).

    Raises:
      UserInputError: the SavedModel has no such signature.
    """
    tf = _compat.tf()
    loaded = tf.saved_model.load(path)
    if signature not in loaded.signatures:
        raise errors.UserInputError(
            f"The SavedModel at {path} has no signature {signature!r}; it has "
            f"{sorted(loaded.signatures)}. " + errors.received(signature=signature)
        )
    fn = loaded.signatures[signature]
    fn._edgekit_owner = loaded  # keep the trackable alive while fn is used
    return fn


# ----------------------------------------------------------------------------
# Writing files


def check_output_path(
    path: PathLike, *, overwrite: bool = False, what: str = "output"
) -> pathlib.Path:
    """Checks, before any long work, that `path` may be written.

    Raises:
      UserInputError: the file exists and `overwrite` is False, or its folder is missing.
    """
    p = pathlib.Path(path)
    if p.exists() and not overwrite:
        raise errors.UserInputError(
            f"The {what} {str(p)!r} already exists and would be overwritten. Pass "
            "--overwrite (overwrite=True) to replace it, or choose another path. "
            + errors.received(**{what.replace(" ", "_"): str(p)})
        )
    if p.is_dir():
        raise errors.UserInputError(
            f"The {what} {str(p)!r} is a folder; expected a file path. "
            + errors.received(**{what.replace(" ", "_"): str(p)})
        )
    parent = p.parent if str(p.parent) else pathlib.Path(".")
    if not parent.is_dir():
        raise errors.UserInputError(
            f"The folder of the {what} does not exist: {str(parent)!r}. Create it first. "
            + errors.received(**{what.replace(" ", "_"): str(p)})
        )
    return p


@contextlib.contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = False) -> Iterator[pathlib.Path]:
    """Yields a temporary path beside `path`; on success moves it into place.

    The temporary name keeps the suffix (savers pick the format from it). On error
    the temporary file is removed and `path` is untouched.
    """
    final = check_output_path(path, overwrite=overwrite)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.stem}.", suffix=f".partial{final.suffix}", dir=final.parent or "."
    )
    os.close(fd)
    os.unlink(tmp)  # savers that refuse to overwrite need the name free
    tmp_path = pathlib.Path(tmp)
    try:
        yield tmp_path
        if not overwrite and final.exists():
            raise errors.UserInputError(
                f"{str(final)!r} appeared while it was being written; not replacing it. "
                + errors.received(output=str(final))
            )
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            if tmp_path.is_dir():
                import shutil

                shutil.rmtree(tmp_path, ignore_errors=True)
            else:
                tmp_path.unlink()


def atomic_write_bytes(path: PathLike, data: bytes, *, overwrite: bool = False) -> pathlib.Path:
    """Writes `data` to `path` atomically (temporary file, fsync, `os.replace`)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return pathlib.Path(path)


def atomic_write_text(path: PathLike, text: str, *, overwrite: bool = False) -> pathlib.Path:
    """Writes `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def write_json(path: PathLike, obj: Any, *, overwrite: bool = False) -> pathlib.Path:
    """Writes `obj` as indented JSON, atomically."""
    return atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False) + "\n", overwrite=overwrite
    )


class SavesJson:
    """Base of the results that are one JSON document: `save(path)` writes `to_dict()`.

    What `save` means, per result type: a JSON document (`CheckReport`, the bundle's
    `BundleResult` and `VerifyResult`, `lite.inspect.ModelReport`) is written to the
    file `path`; `ConversionResult.save(path)` writes the `.tflite` file; and
    `EvaluationResult.save(folder)` writes `evaluation.json` into a run's folder.
    Every `save` refuses to replace a file unless `overwrite=True`, and writes
    atomically.
    """

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, path: PathLike, *, overwrite: bool = False) -> pathlib.Path:
        """Writes the JSON of `to_dict()` to the file `path`, atomically; returns `path`.

        Raises:
          UserInputError: the file exists and `overwrite` is False, or its folder is
            missing; nothing is written then.
        """
        return write_json(path, self.to_dict(), overwrite=overwrite)


# ----------------------------------------------------------------------------
# Reading models


def detect_format(path: PathLike) -> str:
    """Returns 'keras', 'h5', 'saved_model', 'tflite' or 'unknown' from the file contents."""
    p = pathlib.Path(path)
    if p.is_dir():
        return "saved_model" if (p / "saved_model.pb").exists() else "unknown"
    with open(p, "rb") as f:
        head = f.read(8)
    if head[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    if head.startswith(b"PK"):
        return "keras"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "h5"
    return "unknown"


def _find_lambda_layers(config: Any) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                cfg = node.get("config") or {}
                found.append(str(cfg.get("name", "<unnamed>")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def _read_config(path: pathlib.Path, fmt: str) -> tuple[Any, str | None]:
    """Returns (model config, keras_version) without building the model."""
    if fmt == "keras":
        try:
            with zipfile.ZipFile(path) as z:
                config = json.loads(z.read("config.json"))
                try:
                    version = json.loads(z.read("metadata.json")).get("keras_version")
                except KeyError:
                    version = None
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as e:
            raise errors.UserInputError(
                f"{str(path)!r} is not a readable .keras file ({type(e).__name__}: {e}). The "
                "file may be truncated or corrupt: save the model again with model.save(...). "
                + errors.received(model=str(path))
            ) from None
        return config, version
    if fmt == "h5":
        import h5py  # lazy: comes with TensorFlow and is needed for .h5 files only

        try:
            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
                version = f.attrs.get("keras_version")
        except OSError as e:
            raise errors.UserInputError(
                f"{str(path)!r} is not a readable HDF5 model ({e}). "
                + errors.received(model=str(path))
            ) from None
        if raw is None:
            raise errors.UserInputError(
                f"{str(path)!r} is an HDF5 file without a model config (weights only?). "
                "Save the whole model with model.save(...). " + errors.received(model=str(path))
            )
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        if isinstance(version, bytes):
            version = version.decode("utf-8")
        return json.loads(raw), version
    if fmt == "saved_model":
        meta = path / "keras_metadata.pb"
        if not meta.exists():
            return None, None
        # keras_metadata.pb holds JSON strings inside a proto; a byte scan for the
        # Lambda class is enough to decide safety without parsing it.
        raw = meta.read_bytes()
        config = (
            [{"class_name": "Lambda", "config": {"name": "<in SavedModel>"}}]
            if (b'"class_name": "Lambda"' in raw)
            else None
        )
        return config, "2"
    return None, None


def load_model(
    source: Any,
    *,
    custom_objects: dict[str, Any] | None = None,
    safe_mode: bool = True,
    compile: bool = False,
) -> Any:
    """Loads a Keras model from a path, or checks an in-memory model.

    Args:
      source: a path to a `.keras`/`.h5` file or a SavedModel directory, or a
        tf_keras / Keras 3 model object (returned as is).
      custom_objects: custom layers and functions the model needs.
      safe_mode: refuse models with `Lambda` layers (they run arbitrary code).
      compile: restore the training config (loss, optimizer) too.

    Returns:
      A `tf_keras.Model`, a Keras 3 `keras.Model`, or a `SavedModelDir` for a plain
      TensorFlow SavedModel.

    Raises:
      UserInputError: missing path, corrupt or unsupported file, `.tflite` given,
        or a Lambda layer in safe mode.
    """
    if not isinstance(source, (str, os.PathLike)):
        if (
            is_tf_keras_model(source)
            or is_keras3_model(source)
            or isinstance(source, SavedModelDir)
        ):
            return source
        raise errors.UserInputError(
            "Expected a Keras model (tf_keras or Keras 3) or a path to one. "
            + errors.received(model=type(source).__name__)
        )
    path = pathlib.Path(source)
    if not path.exists():
        raise errors.UserInputError(
            f"No model at {str(path)!r}: the path does not exist. Check the path, or create a "
            "model with `edgekit-example --output_dir=DIR`. " + errors.received(model=str(path))
        )
    fmt = detect_format(path)
    if fmt == "tflite":
        raise errors.UserInputError(
            f"{str(path)!r} is a .tflite flatbuffer, but a Keras model (.keras, .h5 or a "
            "SavedModel directory) is expected here. Commands that take .tflite files are "
            "edgekit-evaluate and edgekit-benchmark. " + errors.received(model=str(path))
        )
    if fmt == "unknown":
        raise errors.UserInputError(
            f"{str(path)!r} is not a Keras model: expected a .keras zip file, an .h5 file or a "
            "SavedModel directory (with saved_model.pb). " + errors.received(model=str(path))
        )
    config, version = _read_config(path, fmt)
    lambdas = _find_lambda_layers(config)
    if lambdas and safe_mode:
        raise errors.UserInputError(
            f"The model {str(path)!r} holds Lambda layer(s) {lambdas}; loading them runs "
            "arbitrary Python code from the file. Load it only if you trust its source, with "
            "--allow_unsafe_deserialization (safe_mode=False). "
            + errors.received(model=str(path), safe_mode=True)
        )
    is_keras3 = bool(version) and str(version).startswith("3")
    try:
        if fmt == "saved_model" and config is None and version is None:
            return SavedModelDir(str(path))
        if is_keras3:
            keras = _compat.keras3()
            if lambdas:
                keras.config.enable_unsafe_deserialization()
            return keras.saving.load_model(
                str(path), custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
            )
        tf_keras = _compat.tf_keras()
        kwargs: dict[str, Any] = {"custom_objects": custom_objects, "compile": compile}
        if fmt == "keras":
            kwargs["safe_mode"] = safe_mode
        return tf_keras.models.load_model(str(path), **kwargs)
    except errors.UserInputError:
        raise
    except (ValueError, TypeError, KeyError, OSError) as e:
        raise errors.UserInputError(
            f"Could not load the model at {str(path)!r} ({type(e).__name__}: {_first_line(e)}). "
            "If it uses custom layers, pass them with custom_objects; if the file is "
            "damaged, save it again. " + errors.received(model=str(path))
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def is_tf_keras_model(obj: Any) -> bool:
    """True for a tf_keras (Keras 2) model; never imports tf_keras if it is not loaded."""
    mod = sys.modules.get("tf_keras")
    return mod is not None and isinstance(obj, mod.Model)


def is_keras3_model(obj: Any) -> bool:
    """True for a Keras 3 model; never imports keras if it is not loaded."""
    mod = sys.modules.get("keras")
    return (
        mod is not None
        and hasattr(mod, "Model")
        and isinstance(obj, mod.Model)
        and not is_tf_keras_model(obj)
    )


def require_tf_keras(model: Any, *, what: str) -> Any:
    """Raises a clear error unless `model` is a tf_keras model (what TF-MOT accepts)."""
    if is_tf_keras_model(model):
        return model
    if is_keras3_model(model):
        raise errors.UserInputError(
            f"{what} needs a tf_keras (Keras 2) model, and this is a Keras 3 model. Keras 3 "
            "models convert post-training (edgekit-convert) already; training-time "
            "techniques on Keras 3 are not supported yet. Rebuild the model with "
            "`import tf_keras` to use them. " + errors.received(model=type(model).__name__)
        )
    raise errors.UserInputError(
        f"{what} needs a tf_keras model. " + errors.received(model=type(model).__name__)
    )


def save_model(model: Any, path: PathLike, *, overwrite: bool = False) -> pathlib.Path:
    """Saves a Keras model atomically; the format follows the suffix (.keras or .h5)."""
    p = pathlib.Path(path)
    if p.suffix not in (".keras", ".h5"):
        raise errors.UserInputError(
            "Keras models are saved as .keras (recommended) or .h5. "
            + errors.received(output=str(p))
        )
    with atomic_path(p, overwrite=overwrite) as tmp:
        model.save(str(tmp))
    return p
