"""A run's folder and its checkpoint record, `DIR/.edgekit/state.json`.

The record names the run (a hash of the recipe, the model, the data and edgekit's
version) and each finished stage with what it returned. Its format is part of the
public surface: a run started by an older edgekit resumes with a newer one.

    {"run_key": "<sha256>", "edgekit": "0.1.0", "finished": {"baseline": {...}, ...}}
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
from typing import Any

import numpy as np

from edgekit import __version__, errors, io
from edgekit import config as config_lib
from edgekit import data as data_lib

STATE_DIR = ".edgekit"
# Files of a finished run, at the top of the output folder.
OUTPUTS = ("model.tflite", "manifest.json", "report.md", "report.html", "optimized.keras")
# Files the bundle stage may add beside them.
_BUNDLE_EXTRAS = ("labels.txt", "model_data.h", "model_data.cc")


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def fingerprint_model(source: Any) -> str:
    """The bytes of a model file or folder, or a model object's config and weights."""
    if isinstance(source, (str, os.PathLike)):
        p = pathlib.Path(source)
        if p.is_file():
            return sha256(p.read_bytes())
        if p.is_dir():
            h = hashlib.sha256()
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    h.update(str(f.relative_to(p)).encode())
                    h.update(f.read_bytes())
            return h.hexdigest()
        return "missing:" + str(p)
    h = hashlib.sha256(json.dumps(source.get_config(), sort_keys=True, default=str).encode())
    for w in source.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def fingerprint_data(ds: data_lib.Dataset | None) -> str | None:
    if ds is None:
        return None
    h = hashlib.sha256(np.ascontiguousarray(ds.x).tobytes())
    h.update(str(ds.x.shape).encode())
    if ds.y is not None:
        h.update(np.ascontiguousarray(ds.y).tobytes())
    return h.hexdigest()


def run_key(
    recipe: config_lib.Recipe,
    model_source: Any,
    train: data_lib.Dataset,
    test: data_lib.Dataset,
    val: data_lib.Dataset | None = None,
) -> str:
    """What makes two runs the same run: a folder is resumed only under the same key."""
    key = {
        "recipe": recipe.to_dict(),
        "model": fingerprint_model(model_source),
        "data": fingerprint_data(train),
        "eval_data": fingerprint_data(test),
        "edgekit": __version__,
    }
    if val is not None:  # absent otherwise, so runs from before val_data keep their key
        key["val_data"] = fingerprint_data(val)
    return sha256(json.dumps(key, sort_keys=True).encode())


class State:
    """The checkpoint record in `DIR/.edgekit/state.json`, written atomically."""

    def __init__(self, folder: pathlib.Path, run_key: str) -> None:
        self.folder = folder
        self.path = folder / "state.json"
        self.run_key = run_key
        self.finished: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        saved = json.loads(self.path.read_text())
        self.finished = saved.get("finished", {})

    def done(self, stage: str, info: dict[str, Any]) -> None:
        self.finished[stage] = info
        io.write_json(
            self.path,
            {"run_key": self.run_key, "edgekit": __version__, "finished": self.finished},
            overwrite=True,
        )

    def file(self, name: str) -> pathlib.Path:
        return self.folder / name


def prepare_output_dir(out: pathlib.Path, run_key: str, *, overwrite: bool) -> tuple[State, bool]:
    """The run's `State`, and whether it resumes a run this folder already holds.

    Raises:
      UserInputError: the folder is a file, or holds another run or other files and
        `overwrite` is False (nothing in it is touched).
    """
    state_dir = out / STATE_DIR
    state = State(state_dir, run_key)
    if out.exists() and not out.is_dir():
        raise errors.UserInputError(
            f"The output folder {str(out)!r} is a file. Choose a folder. "
            + errors.received(output_dir=str(out))
        )
    if out.is_dir() and any(out.iterdir()):
        saved_key = None
        if state.path.exists():
            try:
                saved_key = json.loads(state.path.read_text()).get("run_key")
            except (json.JSONDecodeError, OSError):
                saved_key = None
        if saved_key == run_key:
            state.load()
            return state, True
        if not overwrite:
            why = (
                "belongs to a different run (another recipe, model or data)"
                if saved_key
                else "is not empty and holds no edgekit run"
            )
            raise errors.UserInputError(
                f"The output folder {str(out)!r} {why}; edgekit will not mix two runs in one "
                "folder. Choose another --output_dir, or pass --overwrite to replace it. "
                + errors.received(output_dir=str(out))
            )
        for name in (*OUTPUTS, *_BUNDLE_EXTRAS):
            if (out / name).exists():
                (out / name).unlink()
        for name in (STATE_DIR, "plots"):
            shutil.rmtree(out / name, ignore_errors=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    return state, False
