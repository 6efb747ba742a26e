"""The summary every output of a run is made from: the report, manifest.json, the result.

Built from what the finished stages recorded in the state file, so a resumed run
summarizes exactly as an uninterrupted one.
"""

from __future__ import annotations

import os
from typing import Any

from edgekit import __version__, _compat, report
from edgekit import config as config_lib
from edgekit.benchmark.harness import report as harness_report
from edgekit.report import findings


def build(
    recipe: config_lib.Recipe,
    model: Any,
    finished: dict[str, dict[str, Any]],
    reports: dict[str, Any],
    *,
    result_file: str | os.PathLike | None = None,
) -> report.Summary:
    """Every figure of the run, as `edgekit.report.render` takes it.

    Args:
      recipe: the recipe as run.
      model: the original Keras model (for its name).
      finished: each finished stage's record (`State.finished`).
      reports: each training stage's report, by stage name.
      result_file: the result's `.tflite`, read for the cause of a warning.
    """
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
        "name": f"result ({recipe.convert.mode.value} .tflite)",
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
        for key, target, row in zip(("original", "result"), (original, result), rows, strict=False):
            for field in ("latency_us", "peak_rss_mb", "init_ms", "memory"):
                target[field] = row.get(field)
            if row.get("samples_us"):
                latency_samples[key] = row["samples_us"]
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
    warnings = findings.warnings_for(
        original=original,
        result=result,
        ratios=ratios,
        samples_us=latency_samples,
        model=result_file if conv else None,
    )
    warnings = [*validation_warnings(reports), *warnings]
    return report.Summary(
        title=f"edgekit run: {recipe.name}",
        model_name=getattr(model, "name", "model"),
        recipe=recipe.to_dict(),
        environment={
            **(bench.get("environment", {}) if bench else {}),
            "versions": _compat.versions(),
            "edgekit": __version__,
        },
        measured_how=report.MeasuredHow(
            accuracy=f"top-1 on {ev.get('num_samples', '?')} held-out samples",
            latency=how,
            size="bytes of the .tflite file; gzip -9",
        ),
        original=report.ModelFigures(**original),
        result=report.ModelFigures(**result),
        ratios=report.Ratios(**ratios),
        stages=dict(reports),
        sparsity_per_layer=tuple(
            report.LayerSparsity.from_dict(row) for row in ev.get("sparsity_per_layer", [])
        ),
        quant_error_per_layer=tuple(
            report.LayerQuantError.from_dict(row) for row in ev.get("quant_error_per_layer", [])
        ),
        latency_samples_us=latency_samples,
        notes=tuple(n for n in (ev.get("quant_error_note"),) if n),
        warnings=tuple(warnings),
    )


def validation_warnings(reports: dict[str, Any]) -> list[str]:
    """Each training stage's held-out accuracy drop past its limit, as a warning."""
    out = []
    for name, info in reports.items():
        check = info.get("validation") if isinstance(info, dict) else None
        if check and check.get("warning"):
            out.append(f"{name} stage: {check['warning']}")
    return out


def failed_stages(summary: dict[str, Any]) -> list[str]:
    """The training stages whose accuracy drop failed them (fail_on_accuracy_drop)."""
    return [
        name
        for name, info in (summary.get("stages") or {}).items()
        if isinstance(info, dict) and (info.get("validation") or {}).get("failed")
    ]


def metrics(summary: report.Summary) -> dict[str, Any]:
    """The figures manifest.json records: original, result, their ratios, the warnings."""
    s = summary.to_dict()
    keys = ("original", "result", "ratios", "warnings")
    return {k: s[k] for k in keys}


def format_summary(result: Any) -> str:
    """What `edgekit-optimize` prints at the end of a run: the table, ratios, warnings."""
    s = result.summary
    o, r, ratios = s["original"], s["result"], s["ratios"]
    rows = []

    def pct(v: Any) -> str | None:
        return None if v is None else f"{100 * v:.2f}%"

    def lat(d: dict[str, Any], k: str) -> str | None:
        return None if not d or not d.get("latency_us") else f"{d['latency_us'][k] / 1000:.3f}"

    for name, d in (("original", o), ("result", r)):
        rows.append(
            [
                name,
                None if d.get("size_bytes") is None else f"{d['size_bytes'] / 1024:.1f}",
                None if d.get("gzip_size_bytes") is None else f"{d['gzip_size_bytes'] / 1024:.1f}",
                pct(d.get("accuracy")),
                lat(d, "p50"),
                lat(d, "p99"),
            ]
        )
    headers = ("model", "size KB", "gzip KB", "accuracy", "p50 ms", "p99 ms")
    out = ["", harness_report.format_table(rows, headers)]
    line = ""
    if ratios.get("size") is not None:
        line += f"size ratio {ratios['size']:.3f} (gzip {ratios['gzip_size']:.3f})"
    if ratios.get("accuracy_drop_points") is not None:
        line += f", accuracy drop {ratios['accuracy_drop_points']:+.2f} points"
    lr = ratios.get("latency")
    if isinstance(lr, dict) and lr.get("median") is not None:
        line += f", latency ratio (median of interleaved pairs) {lr['median']:.3f}"
    out += ["", line]
    for w in s.get("warnings") or ():
        out += ["", f"WARNING: {w}"]
    out += [
        "",
        f"Wrote {result.output_dir}/: model.tflite, manifest.json, report.md, report.html "
        f"in {result.seconds:.0f} s"
        + (f" (resumed after {', '.join(result.resumed_stages)})" if result.resumed_stages else ""),
    ]
    return "\n".join(out)
