"""`run()`: a recipe from a Keras model to a verified bundle, resumable, in one folder."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

from edgekit import __version__, convert, errors, io, recipes, subproc
from edgekit import config as config_lib
from edgekit import data as data_lib
from edgekit.pipeline import isolate as isolate_lib
from edgekit.pipeline import stages as stages_lib
from edgekit.pipeline import state as state_lib


@dataclasses.dataclass
class _Context(stages_lib.Context):
    """The stages' context, plus sentences the run adds to the report's notes."""

    notes: tuple[str, ...] = ()

    def summary(self) -> Any:
        s = super().summary()
        return dataclasses.replace(s, notes=(*s.notes, *self.notes)) if self.notes else s


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """Where the run wrote its files, and every figure it measured."""

    output_dir: str
    summary: dict[str, Any]
    resumed_stages: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_recipe_fits(recipe: config_lib.Recipe, model: Any, train: data_lib.Dataset) -> None:
    """Everything that can be checked before the first slow step."""
    shapes = convert.model_input_shapes(model)
    if len(shapes) == 1:
        data_lib.check_inputs(train.x, shapes[0], what="training data")
    needs_training = any(getattr(recipe, t.name) is not None for t in stages_lib.TECHNIQUES)
    if needs_training:
        stages_lib.check_trainable(model, train.x)  # Keras 3 too: bridged, checked
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
    val_data: Any = None,
    overwrite: bool = False,
    custom_objects: dict[str, Any] | None = None,
    safe_mode: bool = True,
    progress: Callable[[str], None] | None = None,
    isolate: bool = False,
) -> PipelineResult:
    """Runs a recipe end to end into `output_dir`; resumes an interrupted run.

    Args:
      recipe: a `config.Recipe`, a built-in recipe name, a path to a recipe JSON
        file, or a dict.
      model: the Keras model (object or path).
      data: training/calibration data (any source `edgekit.data.load` takes).
      output_dir: the run's folder.
      eval_data: held-out data for accuracy; defaults to `data`.
      val_data: labelled held-out data on which every training stage measures
        accuracy before and after (its `validation`, a drop past the recipe's
        `fit.max_accuracy_drop` in `warnings`); default: `eval_data` when given,
        else a split of `data` kept out of training (`fit.val_split`). With
        `fail_on_accuracy_drop` in a stage's fit, the run still finishes and writes
        everything; the stage's `validation.failed` is true (edgekit-optimize then
        exits with status 1).
      overwrite: replace a folder that holds another run (or other files).
      progress: where progress lines go (default: stdout).
      isolate: run the pipeline in a child process (model, data and eval_data as file
        paths; progress goes to stdout): a crash inside TensorFlow cannot take this
        process down, and is retried once with `TF_ENABLE_ONEDNN_OPTS=0`, resuming
        after the last finished stage (`edgekit-optimize` always runs this way).

    Without `isolate`, a crash inside TensorFlow (SIGSEGV or SIGABRT in a training step:
    oneDNN's custom ops on some AVX-512/AMX CPUs) ends the calling process; there is
    nothing to catch. Set `TF_ENABLE_ONEDNN_OPTS=0` in the environment before
    TensorFlow is first imported to avoid the known crash, or pass `isolate=True`.

    Returns:
      A `PipelineResult` with every figure in `summary` (also in manifest.json).

    Raises:
      UserInputError: bad input, before any long work.
      RuntimeError: with `isolate`, the retry crashed too (the message says how to
        avoid the known crash).

    Example:
        >>> result = edgekit.pipeline.run("prune50_int8", model="model.keras",
        ...                               data="train.npz", eval_data="test.npz",
        ...                               output_dir="out")
        >>> result.summary["result"]["accuracy"]
    """
    if isolate:
        if progress is not None or custom_objects is not None:
            raise errors.UserInputError(
                "isolate=True runs the pipeline in another process: it cannot call progress "
                "(its lines go to stdout) or take custom_objects (save the model with them "
                "registered). "
                + errors.received(progress=progress is not None, custom_objects=custom_objects)
            )
        result = isolate_lib.run(
            recipe,
            model=model,
            data=data,
            output_dir=output_dir,
            eval_data=eval_data,
            val_data=val_data,
            overwrite=overwrite,
            safe_mode=safe_mode,
        )
        return PipelineResult(**result)
    start = time.perf_counter()
    recipe = recipes.resolve_recipe(recipe)
    out = pathlib.Path(output_dir)
    keras_model = io.load_model(model, custom_objects=custom_objects, safe_mode=safe_mode)
    train = data_lib.load(data)
    test = data_lib.load(eval_data) if eval_data is not None else train
    val = data_lib.load(val_data, require_labels=True) if val_data is not None else None
    _check_recipe_fits(recipe, keras_model, train)
    source = model if isinstance(model, (str, os.PathLike)) else keras_model
    run_key = state_lib.run_key(recipe, source, train, test, val)
    state, resumed = state_lib.prepare_output_dir(out, run_key, overwrite=overwrite)
    if not resumed:  # a run that crashes in its first stage must still resume
        io.write_json(
            state.path,
            {"run_key": run_key, "edgekit": __version__, "finished": {}},
            overwrite=True,
        )
    todo = [s.name for s in stages_lib.TABLE if s.wanted(recipe)]
    prog = stages_lib.Progress(todo, progress)
    if resumed:
        prog.note(f"resuming in {out}: finished stages {list(state.finished)}")
    retry = subproc.crash_retry()
    if retry:
        prog.note(subproc.crash_note(retry, finished=False))
    ctx = _Context(
        notes=(subproc.crash_note(retry),) if retry else (),
        recipe=recipe,
        model=keras_model,
        train=train,
        test=test,
        val=val,
        out=out,
        state=state,
        progress=prog,
    )
    skipped = []
    for name in todo:
        if name in state.finished:
            skipped.append(name)
            stages_lib.restore(ctx, name)
            continue
        subproc.note_stage(name)  # an isolated run's parent names a crashed stage
        subproc.test_crash_point(name)
        info = stages_lib.BY_NAME[name].run(ctx)
        state.done(name, info or {})
    return PipelineResult(
        output_dir=str(out),
        summary=ctx.summary().to_dict(),
        resumed_stages=tuple(skipped),
        seconds=round(time.perf_counter() - start, 2),
    )
