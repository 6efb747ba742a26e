"""The stages of `edgekit.pipeline.run`, as one table, and how to restore a finished one.

Each stage does its work, writes its outputs atomically (checkpoints under
`DIR/.edgekit/`, final files at the top of `DIR`), and returns a JSON-ready dict that
the state file records; its `restore` rebuilds the in-memory context of a finished
stage from those files, so a resumed run continues exactly where the interrupted one
stopped. The training-time techniques share one runner, driven by `TECHNIQUES`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

from edgekit import _compat, benchmark, bundle, convert, evaluate, io, report
from edgekit import config as config_lib
from edgekit import data as data_lib
from edgekit.optimize import cluster, distill, keras3, prune, qat, technique, validation
from edgekit.pipeline import sparsity as sparsity_lib
from edgekit.pipeline import summary as summary_lib
from edgekit.pipeline.state import State


class Progress:
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


@dataclasses.dataclass
class Context:
    recipe: config_lib.Recipe
    model: Any  # the original Keras model
    train: data_lib.Dataset
    test: data_lib.Dataset
    out: pathlib.Path
    state: State
    progress: Progress
    current: Any = None  # the Keras model after the last training stage
    val: data_lib.Dataset | None = None  # the user's held-out data for the training stages
    reports: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.current is None:
            self.current = self.model

    @property
    def model_path(self) -> pathlib.Path:
        return self.out / "model.tflite"

    @property
    def baseline_path(self) -> pathlib.Path:
        return self.state.file("baseline_float32.tflite")

    def summary(self) -> report.Summary:
        path = self.model_path if self.model_path.exists() else None
        summary = summary_lib.build(
            self.recipe, self.model, self.state.finished, self.reports, result_file=path
        )
        keras = keras_summary(self.model, self.reports)
        if keras is None:
            return summary
        return dataclasses.replace(summary, keras=keras, notes=(*summary.notes, keras["note"]))


def keras_summary(model: Any, reports: dict[str, Any]) -> dict[str, Any] | None:
    """The summary's `keras` entry for a Keras 3 input model; None for tf_keras.

    Which Keras `optimized.keras` is (Keras 3 after prune, cluster or distill; the
    tf_keras QAT model after QAT: TF-MOT's fake-quant wrappers exist only in
    tf_keras, and the deliverable is the int8 .tflite), and each training stage's
    Keras 3 bridge figures (max abs error and cosine on the training inputs).
    """
    if not keras3.is_keras3(model):
        return None
    trained = [t.name for t in TECHNIQUES if t.name in reports]
    flavour = "tf_keras" if trained and trained[-1] == "qat" else "keras3"
    bridges = {name: reports[name].get("bridge") for name in trained}
    figures = "; ".join(
        f"{name} {way} max abs error {eq['max_abs_error']:.3g}, cosine {eq['cosine']:.6f}"
        for name, bridge in bridges.items()
        for way, eq in _bridge_equivalences(bridge)
    )
    note = (
        f"The input model was Keras 3 (keras {_compat.keras3().__version__}); "
        + (
            f"its training stages ran on a tf_keras twin made by edgekit's checked Keras 3 "
            f"bridge ({figures}). "
            if trained
            else ""
        )
        + (
            "optimized.keras is the tf_keras QAT model (TF-MOT's fake-quant wrappers exist "
            "only in tf_keras; the int8 .tflite is the deliverable)."
            if flavour == "tf_keras"
            else "optimized.keras is a Keras 3 model (loads with plain keras.saving.load_model)."
        )
    )
    return {
        "input": "keras3",
        "keras_version": _compat.keras3().__version__,
        "optimized_keras": flavour,
        "bridge": bridges,
        "note": note,
    }


def _bridge_equivalences(bridge: Any) -> list[tuple[str, dict[str, Any]]]:
    """(label, equivalence) of every translation a stage's `bridge` entry records."""
    if not isinstance(bridge, dict):
        return []
    if "in" not in bridge:  # distillation: a teacher and a student entry
        return [
            (f"{who} {way}", eq)
            for who in ("teacher", "student")
            for way, eq in _bridge_equivalences(bridge.get(who))
        ]
    return [(way, bridge[way]["equivalence"]) for way in ("in", "back") if bridge.get(way)]


def check_trainable(model: Any, x: Any) -> None:
    """Refuses, before anything is written, a model no training-time stage can take.

    A Keras 3 model is translated once by the Keras 3 bridge on the first training
    inputs (what each stage does again), so an unmappable layer or a mismatch stops
    the run here; a tf_keras model must be Functional or Sequential, unwrapped.
    """
    what = "The recipe's training-time stages"
    if not keras3.is_keras3(model):
        io.require_tf_keras(model, what=what)
    technique.bridge_model(technique.check_model(model, what=what), x, what=what)


# -- the training-time techniques: one runner, one row each --------------------------


@dataclasses.dataclass(frozen=True)
class Technique:
    """A training-time stage: its recipe section, the library call, the progress line.

    `train(model, recipe, (x, y), fit=..., val_data=...)` returns `(model, report)`;
    the stage's name is also its recipe section, its `<name>_fit` override and the
    stem of its checkpoint files (`<name>.keras`, `<name>.json`).
    """

    name: str
    train: Callable[..., tuple[Any, Any]]
    message: Callable[[config_lib.Recipe], str]


def _distill(
    model: Any, recipe: config_lib.Recipe, data: Any, *, fit: config_lib.FitConfig, val_data: Any
) -> tuple[Any, Any]:
    # distill() builds or loads the student itself (after bridging a Keras 3 teacher).
    student = recipe.distill_student
    return distill.distill(model, student, recipe.distill, data, fit=fit, val_data=val_data)


def _prune_message(recipe: config_lib.Recipe) -> str:
    cfg = recipe.prune
    what = (
        f"{cfg.m_by_n[0]}:{cfg.m_by_n[1]}"
        if cfg.m_by_n
        else f"{100 * cfg.target_sparsity:.0f}% sparsity"
    )
    return f"pruning to {what} while fine-tuning"


# In the order they run: distill first (a new, smaller model), QAT last (its ranges
# must see the final weights).
TECHNIQUES = (
    Technique("distill", _distill, lambda r: f"distilling into the student {r.distill_student!r}"),
    Technique("prune", lambda m, r, d, **kw: prune.prune(m, r.prune, d, **kw), _prune_message),
    Technique(
        "cluster",
        lambda m, r, d, **kw: cluster.cluster(m, r.cluster, d, **kw),
        lambda r: f"clustering weights into {r.cluster.num_clusters} values while fine-tuning",
    ),
    Technique(
        "qat",
        lambda m, r, d, **kw: qat.quantize_aware(m, r.qat, d, **kw),
        lambda r: f"quantization-aware training (preserve: {r.qat.preserve.value})",
    ),
)


def _val(ctx: Context) -> Any:
    """The training stages' held-out data: val_data, else eval data apart from the training data."""
    if ctx.val is not None:
        return (ctx.val.x, ctx.val.y)
    return (
        (ctx.test.x, ctx.test.y) if ctx.test.y is not None and ctx.test is not ctx.train else None
    )


def _train(ctx: Context, t: Technique, fit: config_lib.FitConfig) -> tuple[Any, Any]:
    """Runs a training stage; a drop past the limit is recorded, the run goes on.

    The library's warning is silenced: the summary's `warnings` carries it into the
    output, the report and the manifest.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", validation.AccuracyDropWarning)
        try:
            return t.train(
                ctx.current, ctx.recipe, (ctx.train.x, ctx.train.y), fit=fit, val_data=_val(ctx)
            )
        except validation.AccuracyDropError as e:  # fail_on_accuracy_drop: the run finishes
            return e.model, e.report


def _note_validation(ctx: Context, check: dict[str, Any] | None) -> None:
    if not check or not check.get("samples"):
        return
    ctx.progress.note(
        f"held-out {check['metric']}: {100 * check['accuracy_before']:.2f}% before, "
        f"{100 * check['accuracy_after']:.2f}% after on {check['samples']} samples "
        f"({check['source']})" + ("; WARNING below" if check.get("warning") else "")
    )


def _run_technique(ctx: Context, t: Technique) -> dict[str, Any]:
    ctx.progress.stage(t.name, t.message(ctx.recipe))
    fit = getattr(ctx.recipe, f"{t.name}_fit", None) or ctx.recipe.fit
    model, stage_report = _train(ctx, t, fit)
    path = ctx.state.file(f"{t.name}.keras")
    io.save_model(model, path, overwrite=True)
    if hasattr(stage_report, "to_dict"):
        info = stage_report.to_dict()
    else:
        info = dict(stage_report or {})
    io.write_json(ctx.state.file(f"{t.name}.json"), info, overwrite=True)
    ctx.current = model
    ctx.reports[t.name] = info
    _note_validation(ctx, info.get("validation"))
    return {"model": path.name, "report": f"{t.name}.json", "validation": info.get("validation")}


def _restore_technique(ctx: Context, t: Technique) -> None:
    ctx.current = io.load_model(ctx.state.file(f"{t.name}.keras"))
    ctx.reports[t.name] = json.loads(ctx.state.file(f"{t.name}.json").read_text())


# -- the other stages ----------------------------------------------------------------


def run_baseline(ctx: Context) -> dict[str, Any]:
    """The original model as float32 .tflite: the reference for size, accuracy, latency."""
    ctx.progress.stage("baseline", "converting the original model to float32 for comparison")
    # With the recipe's batch setting, so the comparison measures the optimization only.
    batch = ctx.recipe.convert.batch_size
    result = convert.convert(ctx.model, config_lib.ConvertConfig(batch_size=batch))
    io.atomic_write_bytes(ctx.baseline_path, result.tflite_bytes, overwrite=True)
    ev = evaluate.evaluate(
        result.tflite_bytes, ctx.test, config=ctx.recipe.evaluate, reference=ctx.model
    )
    info = {
        "size_bytes": result.size_bytes,
        "gzip_size_bytes": result.gzip_size_bytes,
        "accuracy": ev.accuracy,
        "keras_accuracy": ev.reference_accuracy,
        "num_eval_samples": ev.num_samples,
        "params": int(ctx.model.count_params()) if hasattr(ctx.model, "count_params") else None,
    }
    if ev.accuracy is not None:
        ctx.progress.note(
            f"original: {result.size_bytes / 1024:.1f} KB as float32, accuracy "
            f"{100 * ev.accuracy:.2f}% on {ev.num_samples} samples"
        )
    return info


def run_convert(ctx: Context) -> dict[str, Any]:
    cfg = ctx.recipe.convert
    n = min(cfg.num_calibration_samples, len(ctx.train)) if cfg.mode.needs_calibration else 0
    ctx.progress.stage("convert", f"mode {cfg.mode.value}")
    result = convert.convert(ctx.current, cfg, calibration_data=ctx.train.x if n else None)
    io.atomic_write_bytes(ctx.model_path, result.tflite_bytes, overwrite=True)
    io.save_model(ctx.current, ctx.out / "optimized.keras", overwrite=True)
    info = result.to_dict()
    io.write_json(ctx.state.file("convert.json"), info, overwrite=True)
    how = result.converter_settings.get("ranges") or (
        f"calibrated on {result.num_calibration_samples} samples"
        if result.num_calibration_samples
        else ""
    )
    choice = result.converter_settings.get("granularity_choice")
    if isinstance(choice, dict):
        how += (
            "; per-tensor weights (as accurate as per-channel, smaller gzipped)"
            if choice["chosen"] == "per_tensor"
            else "; per-channel weights (per-tensor was less accurate or not smaller)"
        )
    ctx.progress.note(
        f"{result.size_bytes / 1024:.1f} KB ({result.gzip_size_bytes / 1024:.1f} KB gzipped) "
        f"in {result.conversion_seconds:.1f} s" + (f"; ranges {how}" if how else "")
    )
    return info


def _restore_convert(ctx: Context) -> None:
    if (ctx.out / "optimized.keras").exists():
        ctx.current = io.load_model(ctx.out / "optimized.keras")


def run_evaluate(ctx: Context) -> dict[str, Any]:
    ctx.progress.stage("evaluate", f"accuracy and parity on {len(ctx.test)} samples")
    ev = evaluate.evaluate(
        ctx.model_path, ctx.test, config=ctx.recipe.evaluate, reference=ctx.current
    )
    info: dict[str, Any] = ev.to_dict()
    info["sparsity_per_layer"] = sparsity_lib.tflite_weight_sparsity(
        ctx.model_path, ctx.current
    ) or sparsity_lib.keras_sparsity(ctx.current)
    if ctx.recipe.convert.mode.needs_calibration and io.is_tf_keras_model(ctx.current):
        ctx.progress.note("per-layer quantization error (TensorFlow's quantization debugger)")
        try:
            rows = evaluate.layer_quantization_error(
                ctx.current, ctx.train.x, config=ctx.recipe.convert, debug_samples=32
            )
        except Exception as e:  # noqa: BLE001 - the debugger fails on some QAT graphs
            info["quant_error_note"] = (
                f"quantization debugger unavailable: {type(e).__name__}: {e}"[:300]
            )
            rows = []
        evaluate.save_layer_errors_csv(rows, ctx.state.file("quant_error.csv"), overwrite=True)
        info["quant_error_per_layer"] = [
            {
                "tensor": r.get("tensor_name"),
                "op": r.get("op_name"),
                "mean_squared_error": r.get("mean_squared_error"),
            }
            for r in rows
        ]
    io.write_json(ctx.state.file("evaluate.json"), info, overwrite=True)
    if ev.accuracy is not None:
        ctx.progress.note(
            f"accuracy {100 * ev.accuracy:.2f}% (Keras model {100 * (ev.reference_accuracy or 0):.2f}%), "
            f"top-1 agreement {100 * ev.parity.top1_agreement:.2f}%"
        )
    return info


def run_benchmark(ctx: Context) -> dict[str, Any]:
    cfg = ctx.recipe.benchmark
    ctx.progress.stage(
        "benchmark",
        f"original float32 vs result, interleaved, {cfg.num_threads} thread(s), at least "
        f"{cfg.num_runs} runs each (up to about {2 * cfg.max_secs:.0f} s)",
    )
    result = benchmark.compare([ctx.baseline_path, ctx.model_path], cfg)
    info = result.to_dict()
    io.write_json(ctx.state.file("benchmark.json"), info, overwrite=True)
    for row in result.rows:
        lat = row.latency_us
        ctx.progress.note(
            f"{pathlib.Path(row.model).name}: p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us"
        )
    return info


def run_bundle(ctx: Context) -> dict[str, Any]:
    cfg = ctx.recipe.bundle
    ctx.progress.stage("bundle", "manifest with checksums, versions, I/O specs and metrics")
    metrics = summary_lib.metrics(ctx.summary())
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=ctx.state.folder) as tmp:
        target = pathlib.Path(tmp) / "bundle"
        result = bundle.export(
            ctx.model_path,
            target,
            labels=list(cfg.labels) if isinstance(cfg.labels, tuple) else cfg.labels,
            normalization=cfg.normalization,
            c_array=cfg.c_array,
            metrics=metrics,
            recipe=ctx.recipe.to_dict(),
        )
        for f in sorted(target.iterdir()):
            if f.name == "model.tflite":
                continue  # identical to the file already in place
            io.atomic_write_bytes(ctx.out / f.name, f.read_bytes(), overwrite=True)
    return {"files": sorted(result.files)}


def run_report(ctx: Context) -> dict[str, Any]:
    ctx.progress.stage("report", "report.md and report.html with plots")
    summary = ctx.summary()
    shutil.rmtree(ctx.out / "plots", ignore_errors=True)
    result = report.render(summary, ctx.out, overwrite=True)
    io.write_json(ctx.state.file("summary.json"), summary.to_dict(), overwrite=True)
    for w in summary.warnings:
        ctx.progress.note(f"WARNING: {w}")
    return {"files": [str(p) for p in result.files]}


# -- the table -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage:
    """One row of the pipeline: run it, or restore it from an earlier run's checkpoint.

    `wanted(recipe)` says whether the recipe asks for the stage at all.
    """

    name: str
    run: Callable[[Context], dict[str, Any]]
    restore: Callable[[Context], None] = lambda ctx: None
    wanted: Callable[[config_lib.Recipe], bool] = lambda recipe: True


def _technique_stage(t: Technique) -> Stage:
    return Stage(
        t.name,
        run=lambda ctx: _run_technique(ctx, t),
        restore=lambda ctx: _restore_technique(ctx, t),
        wanted=lambda recipe: getattr(recipe, t.name) is not None,
    )


TABLE = (
    Stage("baseline", run_baseline),
    *(_technique_stage(t) for t in TECHNIQUES),
    Stage("convert", run_convert, restore=_restore_convert),
    Stage("evaluate", run_evaluate),
    Stage("benchmark", run_benchmark, wanted=lambda recipe: recipe.benchmark is not None),
    Stage("bundle", run_bundle),
    Stage("report", run_report),
)
BY_NAME = {s.name: s for s in TABLE}


def restore(ctx: Context, stage: str) -> None:
    """Rebuilds what a finished stage left in memory, from its checkpoint files."""
    BY_NAME[stage].restore(ctx)
    ctx.progress.stage(stage, "finished in an earlier run; restored from its checkpoint")
