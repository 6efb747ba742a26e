"""Runs a recipe: load -> optimize -> convert -> evaluate -> benchmark -> bundle -> report.

One output folder holds everything: `model.tflite`, `manifest.json`, `report.md`,
`report.html` (+ `plots/`), `optimized.keras` (the Keras model that was
converted), and `.edgekit/` with one checkpoint per finished stage. Re-running the
same command on the same folder resumes after the last finished stage; a folder
made by a different run (other recipe, model or data) is refused, never mixed.

Example:
    >>> result = edgekit.pipeline.run("prune50_int8", model="model.keras",
    ...                               data="train.npz", eval_data="test.npz",
    ...                               output_dir="out")
    >>> result.summary["result"]["accuracy"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgekit import __version__, errors, io
from edgekit import config as config_lib
from edgekit import data as data_lib

STATE_DIR = ".edgekit"
STAGES = (
    "baseline",
    "distill",
    "prune",
    "cluster",
    "qat",
    "convert",
    "evaluate",
    "benchmark",
    "bundle",
    "report",
)
TRAINING_STAGES = ("distill", "prune", "cluster", "qat")
# Files of a finished run, at the top of the output folder.
OUTPUTS = ("model.tflite", "manifest.json", "report.md", "report.html", "optimized.keras")


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """Where the run wrote its files, and every figure it measured."""

    output_dir: str
    summary: dict[str, Any]
    resumed_stages: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Progress:
    """Prints the current stage and its elapsed time; training shows Keras' own bar."""

    def __init__(self, stages: list[str], out: Callable[[str], None] | None) -> None:
        self.stages = stages
        self.out = out or (lambda s: print(s, flush=True))
        self.start = time.perf_counter()

    def stage(self, name: str, message: str) -> None:
        i = self.stages.index(name) + 1
        elapsed = time.perf_counter() - self.start
        self.out(f"[{i}/{len(self.stages)}] {name}: {message}  (elapsed {elapsed:.0f} s)")

    def note(self, message: str) -> None:
        self.out(f"      {message}")


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _fingerprint_model(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        p = pathlib.Path(source)
        if p.is_file():
            return _sha256(p.read_bytes())
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


def _fingerprint_data(ds: data_lib.Dataset | None) -> str | None:
    if ds is None:
        return None
    h = hashlib.sha256(np.ascontiguousarray(ds.x).tobytes())
    h.update(str(ds.x.shape).encode())
    if ds.y is not None:
        h.update(np.ascontiguousarray(ds.y).tobytes())
    return h.hexdigest()


class _State:
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


def _prepare_output_dir(out: pathlib.Path, run_key: str, *, overwrite: bool) -> tuple[_State, bool]:
    state_dir = out / STATE_DIR
    state = _State(state_dir, run_key)
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
        for name in (*OUTPUTS, "labels.txt", "model_data.h", "model_data.cc"):
            if (out / name).exists():
                (out / name).unlink()
        for name in (STATE_DIR, "plots"):
            shutil.rmtree(out / name, ignore_errors=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    return state, False


def _check_recipe_fits(recipe: config_lib.Recipe, model: Any, train: data_lib.Dataset) -> None:
    """Everything that can be checked before the first slow step."""
    from edgekit import convert as convert_lib

    shapes = convert_lib.model_input_shapes(model)
    if len(shapes) == 1:
        data_lib.check_inputs(train.x, shapes[0], what="training data")
    needs_training = any(getattr(recipe, s) is not None for s in TRAINING_STAGES)
    if needs_training:
        io.require_tf_keras(model, what="The recipe's training-time stages")
        if train.y is None and recipe.distill is None:
            raise errors.UserInputError(
                "The recipe fine-tunes the model (pruning, clustering or QAT), which needs "
                "labelled data: pass --data with arrays x and y. "
                + errors.received(data=train.source, labels=None)
            )


def run(
    recipe: Any,
    *,
    model: Any,
    data: Any,
    output_dir: str | os.PathLike,
    eval_data: Any = None,
    overwrite: bool = False,
    custom_objects: dict[str, Any] | None = None,
    safe_mode: bool = True,
    progress: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Runs a recipe end to end into `output_dir`; resumes an interrupted run.

    Args:
      recipe: a `config.Recipe`, a built-in recipe name, a path to a recipe JSON
        file, or a dict.
      model: the Keras model (object or path).
      data: training/calibration data (any source `edgekit.data.load` takes).
      output_dir: the run's folder.
      eval_data: held-out data for accuracy; defaults to `data`.
      overwrite: replace a folder that holds another run (or other files).
      progress: where progress lines go (default: stdout).

    Returns:
      A `PipelineResult` with every figure in `summary` (also in manifest.json).
    """
    from edgekit import recipes

    start = time.perf_counter()
    recipe = recipes.resolve_recipe(recipe)
    out = pathlib.Path(output_dir)
    keras_model = io.load_model(model, custom_objects=custom_objects, safe_mode=safe_mode)
    train = data_lib.load(data)
    test = data_lib.load(eval_data) if eval_data is not None else train
    _check_recipe_fits(recipe, keras_model, train)
    run_key = _sha256(
        json.dumps(
            {
                "recipe": recipe.to_dict(),
                "model": _fingerprint_model(
                    model if isinstance(model, (str, os.PathLike)) else keras_model
                ),
                "data": _fingerprint_data(train),
                "eval_data": _fingerprint_data(test),
                "edgekit": __version__,
            },
            sort_keys=True,
        ).encode()
    )
    state, resumed = _prepare_output_dir(out, run_key, overwrite=overwrite)
    stages = [s for s in STAGES if s not in TRAINING_STAGES or getattr(recipe, s) is not None]
    if recipe.benchmark is None:
        stages.remove("benchmark")
    prog = _Progress(stages, progress)
    if resumed:
        prog.note(f"resuming in {out}: finished stages {list(state.finished)}")
    from edgekit import _pipeline_stages as st

    ctx = st.Context(
        recipe=recipe,
        model=keras_model,
        train=train,
        test=test,
        out=out,
        state=state,
        progress=prog,
    )
    skipped = []
    for stage in stages:
        if stage in state.finished:
            skipped.append(stage)
            st.restore(ctx, stage)
            continue
        info = st.RUNNERS[stage](ctx)
        state.done(stage, info or {})
    summary = st.summary(ctx)
    return PipelineResult(
        output_dir=str(out),
        summary=summary,
        resumed_stages=tuple(skipped),
        seconds=round(time.perf_counter() - start, 2),
    )
