"""The stages of `edgekit.pipeline.run`, one function each, and how to restore them.

Each runner does its work, writes its outputs atomically (checkpoints under
`DIR/.edgekit/`, final files at the top of `DIR`), and returns a JSON-ready dict
that the state file records; `restore` rebuilds the in-memory context of a
finished stage from those files, so a resumed run continues exactly where the
interrupted one stopped.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np

from edgekit import __version__, _compat, data, io
from edgekit import config as config_lib


@dataclasses.dataclass
class Context:
    recipe: config_lib.Recipe
    model: Any  # the original Keras model
    train: data.Dataset
    test: data.Dataset
    out: pathlib.Path
    state: Any
    progress: Any
    current: Any = None  # the Keras model after the last training stage
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


def _fit_for(recipe: config_lib.Recipe, stage: str) -> config_lib.FitConfig:
    return getattr(recipe, f"{stage}_fit", None) or recipe.fit


def _save_stage_model(ctx: Context, stage: str, model: Any, report: Any) -> dict[str, Any]:
    path = ctx.state.file(f"{stage}.keras")
    io.save_model(model, path, overwrite=True)
    info = report.to_dict() if hasattr(report, "to_dict") else dict(report or {})
    io.write_json(ctx.state.file(f"{stage}.json"), info, overwrite=True)
    ctx.current = model
    ctx.reports[stage] = info
    return {"model": path.name, "report": f"{stage}.json"}


# -- stages ----------------------------------------------------------------------


def run_baseline(ctx: Context) -> dict[str, Any]:
    """The original model as float32 .tflite: the reference for size, accuracy, latency."""
    from edgekit import convert, evaluate

    ctx.progress.stage("baseline", "converting the original model to float32 for comparison")
    result = convert.convert(ctx.model, config_lib.ConvertConfig())
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


def run_distill(ctx: Context) -> dict[str, Any]:
    from edgekit.optimize import distill

    cfg = ctx.recipe.distill
    spec = ctx.recipe.distill_student
    ctx.progress.stage("distill", f"distilling into the student {spec!r}")
    fit = _fit_for(ctx.recipe, "distill")
    student = distill.resolve_student(spec, ctx.current, seed=fit.seed or 0)
    student, report = distill.distill(
        ctx.current, student, cfg, (ctx.train.x, ctx.train.y), fit=fit, val_data=_val(ctx)
    )
    return _save_stage_model(ctx, "distill", student, report)


def _val(ctx: Context) -> Any:
    return (
        (ctx.test.x, ctx.test.y) if ctx.test.y is not None and ctx.test is not ctx.train else None
    )


def run_prune(ctx: Context) -> dict[str, Any]:
    from edgekit.optimize import prune

    cfg = ctx.recipe.prune
    what = (
        f"{cfg.m_by_n[0]}:{cfg.m_by_n[1]}"
        if cfg.m_by_n
        else f"{100 * cfg.target_sparsity:.0f}% sparsity"
    )
    ctx.progress.stage("prune", f"pruning to {what} while fine-tuning")
    model, report = prune.prune(
        ctx.current,
        cfg,
        (ctx.train.x, ctx.train.y),
        fit=_fit_for(ctx.recipe, "prune"),
        val_data=_val(ctx),
    )
    return _save_stage_model(ctx, "prune", model, report)


def run_cluster(ctx: Context) -> dict[str, Any]:
    from edgekit.optimize import cluster

    cfg = ctx.recipe.cluster
    ctx.progress.stage(
        "cluster", f"clustering weights into {cfg.num_clusters} values while fine-tuning"
    )
    model, report = cluster.cluster(
        ctx.current,
        cfg,
        (ctx.train.x, ctx.train.y),
        fit=_fit_for(ctx.recipe, "cluster"),
        val_data=_val(ctx),
    )
    return _save_stage_model(ctx, "cluster", model, report)


def run_qat(ctx: Context) -> dict[str, Any]:
    from edgekit.optimize import qat

    cfg = ctx.recipe.qat
    ctx.progress.stage("qat", f"quantization-aware training (preserve: {cfg.preserve.value})")
    model, report = qat.quantize_aware(
        ctx.current,
        cfg,
        (ctx.train.x, ctx.train.y),
        fit=_fit_for(ctx.recipe, "qat"),
        val_data=_val(ctx),
    )
    return _save_stage_model(ctx, "qat", model, report)


def run_convert(ctx: Context) -> dict[str, Any]:
    from edgekit import convert

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


def run_evaluate(ctx: Context) -> dict[str, Any]:
    from edgekit import evaluate
    from edgekit.optimize import _report

    ctx.progress.stage("evaluate", f"accuracy and parity on {len(ctx.test)} samples")
    ev = evaluate.evaluate(
        ctx.model_path, ctx.test, config=ctx.recipe.evaluate, reference=ctx.current
    )
    info: dict[str, Any] = ev.to_dict()
    info["sparsity_per_layer"] = _tflite_weight_sparsity(ctx.model_path) or [
        {"layer": s.name, "type": s.type, "sparsity": s.sparsity, "num_weights": s.num_weights}
        for s in _report.measure_layers(ctx.current, ())
    ]
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


_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}


def _tflite_weight_sparsity(path: pathlib.Path) -> list[dict[str, Any]]:
    """Share of exact zeros in each conv/dense weight tensor of the converted file.

    Read from the .tflite itself, so it is what ships, whatever the Keras model's
    wrappers (QAT, pruning) looked like.
    """
    from edgekit.lite import inspect as lite_inspect

    report = lite_inspect.inspect_model(path).to_dict()
    tensors = {(t["subgraph"], t["index"]): t for t in report["tensors"]}
    rows = []
    for op in report["ops"]:
        slot = _WEIGHT_OPS.get(op["type"])
        if slot is None or op["subgraph"] != 0 or len(op["inputs"]) <= slot:
            continue
        t = tensors.get((0, op["inputs"][slot]))
        if not t or not t["constant"] or t.get("zero_fraction") is None:
            continue
        name = t["name"].split(";")[0]
        parts = [p for p in name.split("/") if p]
        layer = parts[1] if len(parts) > 2 else name
        rows.append(
            {
                "layer": layer,
                "type": op["type"],
                "sparsity": float(t["zero_fraction"]),
                "num_weights": int(np.prod(t["shape"])) if t["shape"] else 0,
            }
        )
    return rows


def run_benchmark(ctx: Context) -> dict[str, Any]:
    from edgekit import benchmark

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
    from edgekit import bundle

    cfg = ctx.recipe.bundle
    ctx.progress.stage("bundle", "manifest with checksums, versions, I/O specs and metrics")
    metrics = _metrics(ctx)
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
    from edgekit import report

    ctx.progress.stage("report", "report.md and report.html with plots")
    summary_ = summary(ctx)
    shutil.rmtree(ctx.out / "plots", ignore_errors=True)
    result = report.render(summary_, ctx.out, overwrite=True)
    io.write_json(ctx.state.file("summary.json"), summary_, overwrite=True)
    return {"files": [str(p) for p in getattr(result, "files", [])]}


RUNNERS = {
    "baseline": run_baseline,
    "distill": run_distill,
    "prune": run_prune,
    "cluster": run_cluster,
    "qat": run_qat,
    "convert": run_convert,
    "evaluate": run_evaluate,
    "benchmark": run_benchmark,
    "bundle": run_bundle,
    "report": run_report,
}


def restore(ctx: Context, stage: str) -> None:
    """Rebuilds what a finished stage left in memory, from its checkpoint files."""
    if stage in ("distill", "prune", "cluster", "qat"):
        ctx.current = io.load_model(ctx.state.file(f"{stage}.keras"))
        ctx.reports[stage] = json.loads(ctx.state.file(f"{stage}.json").read_text())
    elif stage == "convert" and (ctx.out / "optimized.keras").exists():
        ctx.current = io.load_model(ctx.out / "optimized.keras")
    ctx.progress.stage(stage, "finished in an earlier run; restored from its checkpoint")


# -- the summary every output is made from ------------------------------------------


def _metrics(ctx: Context) -> dict[str, Any]:
    s = summary(ctx)
    return {"original": s["original"], "result": s["result"], "ratios": s["ratios"]}


def summary(ctx: Context) -> dict[str, Any]:
    """Every figure of the run, in the schema `edgekit.report.render` takes."""
    finished = ctx.state.finished
    base = finished.get("baseline", {})
    conv = finished.get("convert", {})
    ev = finished.get("evaluate", {})
    bench = finished.get("benchmark")
    original: dict[str, Any] = {
        "name": "original (float32 .tflite)",
        "size_bytes": base.get("size_bytes"),
        "gzip_size_bytes": base.get("gzip_size_bytes"),
        "accuracy": base.get("accuracy"),
        "keras_accuracy": base.get("keras_accuracy"),
        "params": base.get("params"),
    }
    result: dict[str, Any] = {
        "name": f"result ({ctx.recipe.convert.mode.value} .tflite)",
        "size_bytes": conv.get("size_bytes"),
        "gzip_size_bytes": conv.get("gzip_size_bytes"),
        "accuracy": ev.get("accuracy"),
        "keras_accuracy": ev.get("reference_accuracy"),
        "parity": ev.get("parity"),
    }
    latency_samples = {}
    how = None
    if bench:
        rows = bench.get("rows", [])
        for target, row in zip((original, result), rows, strict=False):
            target["latency_us"] = row.get("latency_us")
            target["peak_rss_mb"] = row.get("peak_rss_mb")
            target["init_ms"] = row.get("init_ms")
            target["memory"] = row.get("memory")
            if row.get("samples_us"):
                latency_samples[target is original and "original" or "result"] = row["samples_us"]
        cfg = bench.get("config", {})
        how = (
            f"{cfg.get('num_threads')} thread(s), XNNPack {'on' if cfg.get('use_xnnpack') else 'off'}, "
            f"models interleaved in one process, {rows[0].get('num_runs') if rows else '?'}+ runs each "
            f"after {cfg.get('warmup_runs')}+ warm-up runs ({cfg.get('warmup_min_secs')} s)"
        )
    ratios: dict[str, Any] = {}
    if original["size_bytes"] and result["size_bytes"]:
        ratios["size"] = result["size_bytes"] / original["size_bytes"]
        ratios["gzip_size"] = result["gzip_size_bytes"] / original["gzip_size_bytes"]
    if original["accuracy"] is not None and result["accuracy"] is not None:
        ratios["accuracy_drop_points"] = 100 * (original["accuracy"] - result["accuracy"])
    if bench and bench.get("ratios"):
        ratios["latency"] = (
            bench["ratios"][-1] if isinstance(bench["ratios"], list) else bench["ratios"]
        )
    sparsity = ev.get("sparsity_per_layer", [])
    return {
        "title": f"edgekit run: {ctx.recipe.name}",
        "model_name": getattr(ctx.model, "name", "model"),
        "recipe": ctx.recipe.to_dict(),
        "environment": {
            **(bench.get("environment", {}) if bench else {}),
            "versions": _compat.versions(),
            "edgekit": __version__,
        },
        "measured_how": {
            "accuracy": f"top-1 on {ev.get('num_samples', '?')} held-out samples",
            "latency": how,
            "size": "bytes of the .tflite file; gzip -9",
        },
        "original": original,
        "result": result,
        "ratios": ratios,
        "stages": {k: v for k, v in ctx.reports.items()},
        "sparsity_per_layer": sparsity,
        "quant_error_per_layer": ev.get("quant_error_per_layer", []),
        "latency_samples_us": latency_samples,
        "notes": [n for n in (ev.get("quant_error_note"),) if n],
    }
