"""What a search leaves in its folder, all rebuilt from the study's storage.

trials.jsonl (every trial and its measurements), pareto.json (the front and the noise
band), best_recipe.json and best.tflite (the chosen candidate), summary.json (its
figures and the constraints it met, or the closest candidates per constraint) and
report.html (the front as a table and a plot). Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import json
import pathlib
from typing import Any

from edgekit import io
from edgekit.report import plots
from edgekit.tuning import front as front_lib
from edgekit.tuning import space as space_lib
from edgekit.tuning import study as study_lib
from edgekit.tuning import trial as trial_lib


def row(t: Any, limits: front_lib.Limits) -> dict[str, Any]:
    """A finished (COMPLETE) trial as the front and the files use it.

    The constraints are checked again with today's `limits`: the measurements do not
    depend on them, so the same study answers a new set of limits or a new objective.
    """
    constraints = limits.check(t.user_attrs["measurements"])
    return {
        "number": t.number,
        "candidate": t.params.get(study_lib.PARAM),
        "tier": t.user_attrs.get("tier"),
        "measurements": t.user_attrs["measurements"],
        "constraints": constraints,
        "meets": all(c["met"] for c in constraints.values()),
        "float_scopes": float_scopes(t),
    }


def float_scopes(t: Any) -> list[str] | None:
    """The op scopes the selective candidate's trial kept float (None for the others)."""
    found = (t.user_attrs.get("measurements") or {}).get("selective")
    return None if found is None else found["float_scopes"]


def recorded(r: dict[str, Any], by_id: dict[str, space_lib.Candidate]) -> space_lib.Candidate:
    """The candidate a measured row (`row`) was built from, with the recipe that replays it:
    the selective candidate's float op scopes are known only from its trial."""
    cand = by_id[r["candidate"]]
    if r.get("float_scopes") is not None:
        return space_lib.with_float_scopes(cand, r["float_scopes"])
    return cand


def one_line(m: dict[str, Any], constraints: dict[str, Any]) -> str:
    """A trial's figures as one progress line."""
    acc = m.get("accuracy")
    drop = m.get("accuracy_drop_points")
    text = (
        (
            f"accuracy {100 * acc:.2f}% ({0.0 - drop + 0.0:+.2f} pt), "
            if acc is not None and drop is not None
            else ""
        )
        + f"{m['size_bytes'] / 1024:.1f} KB (gzip {m['gzip_size_bytes'] / 1024:.1f}), "
        + f"p50 {plots.latency_text(m['latency_us']['p50'])} "
        + f"(float32 {plots.latency_text(m['float_latency_us']['p50'])} interleaved)"
    )
    missed = [n for n, c in constraints.items() if not c["met"]]
    if constraints:
        text += "; meets every constraint" if not missed else f"; misses {', '.join(missed)}"
    return text


def _trial_record(t: Any) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "candidate": t.params.get(study_lib.PARAM)
        or t.system_attrs.get("fixed_params", {}).get(study_lib.PARAM),
        "tier": t.user_attrs.get("tier"),
        "values": list(t.values) if t.values else None,
        "measurements": t.user_attrs.get("measurements"),
        "constraints": t.user_attrs.get("constraints"),
        "note": t.user_attrs.get("note"),
        "float_scopes": float_scopes(t),
        "error": t.user_attrs.get("error"),
        "retry_of": t.system_attrs.get("failed_trial"),
        "worker": t.user_attrs.get("worker"),
        "started": t.datetime_start.isoformat() if t.datetime_start else None,
        "finished": t.datetime_complete.isoformat() if t.datetime_complete else None,
    }


def _front_entry(r: dict[str, Any], by_id: dict[str, space_lib.Candidate]) -> dict[str, Any]:
    m = r["measurements"]
    return {
        "number": r["number"],
        "candidate": r["candidate"],
        "tier": r["tier"],
        "description": by_id[r["candidate"]].description if r["candidate"] in by_id else None,
        "accuracy": m["accuracy"],
        "accuracy_drop_points": m["accuracy_drop_points"],
        "size_bytes": m["size_bytes"],
        "gzip_size_bytes": m["gzip_size_bytes"],
        "latency_us": m["latency_us"],
        "float_latency_us": m["float_latency_us"],
        "latency_us_corrected": r.get("latency_us_corrected"),
        "peak_memory_mb": m["peak_memory_mb"],
        "meets_constraints": r["meets"],
        "float_scopes": r.get("float_scopes"),
    }


def _against(
    chosen: dict[str, Any], built_in: list[dict[str, Any]], objective: str, noise: float
) -> dict[str, Any]:
    """The chosen row against the best built-in recipe's: per objective, better, tie or worse."""
    ref = front_lib.choose(built_in, objective, noise)
    words = {-1: "better", 0: "tie", 1: "worse"}
    verdicts = {
        o: words[front_lib.compare(chosen, ref, o, noise)] for o in ("latency", "size", "accuracy")
    }
    m = ref["measurements"]
    return {
        "candidate": ref["candidate"],
        "accuracy": m["accuracy"],
        "size_bytes": m["size_bytes"],
        "latency_us_corrected": ref.get("latency_us_corrected"),
        "chosen_is": verdicts,
    }


def _best_bytes(ctx: trial_lib.Context, cand: space_lib.Candidate) -> bytes:
    path = ctx.folder(cand.id) / "model.tflite"
    if path.exists():
        return path.read_bytes()
    return trial_lib.build(ctx, cand)  # measured by another worker: rebuild it here


def write_all(
    out: pathlib.Path,
    *,
    study: Any,
    by_id: dict[str, space_lib.Candidate],
    limits: front_lib.Limits,
    objective: str,
    baseline: dict[str, Any],
    notes: list[str],
    ctx: trial_lib.Context,
    storage: str,
    elapsed: float,
) -> dict[str, Any]:
    """Writes every output file; returns summary.json's content."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    lines = "".join(json.dumps(_trial_record(t), sort_keys=True) + "\n" for t in trials)
    io.atomic_write_text(out / "trials.jsonl", lines, overwrite=True)
    rows = [
        row(t, limits)
        for t in trials
        if t.state.name == "COMPLETE" and "measurements" in t.user_attrs
    ]
    front_lib.corrected_latency(rows)
    noise = front_lib.noise_band(rows) if rows else front_lib.MIN_NOISE
    front = front_lib.pareto(rows, noise)
    feasible = [r for r in rows if r["meets"]]
    built_in = [r for r in feasible if r["candidate"] in space_lib.BUILT_IN_PTQ]
    chosen = front_lib.choose(feasible, objective, noise, reference=built_in)
    skipped = [
        f"{_trial_record(t)['candidate']}: {t.user_attrs['note']}"
        for t in trials
        if t.state.name == "PRUNED"
        and t.user_attrs.get("note")
        and not t.user_attrs.get("requeued")
    ]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    io.write_json(
        out / "pareto.json",
        {
            "objectives": {
                "accuracy": "maximize",
                "size_bytes": "minimize",
                "latency_us.p50": "minimize",
            },
            "noise_band": noise,
            "noise_band_how": "latencies are compared as latency_us_corrected: the candidate/float32 "
            "ratio of its interleaved run times the median float32 p50 over the trials; the band "
            "is the widest of: the spread of one file measured in several trials, the float32 "
            "candidate's distance from ratio 1, the median gap between a run's two ratio "
            "estimates; corrected latencies within it tie",
            "front": [_front_entry(r, by_id) for r in front],
        },
        overwrite=True,
    )
    summary: dict[str, Any] = {
        "objective": objective,
        "constraints_met": chosen is not None,
        "noise_band": noise,
        "float32": baseline,
        "trials": counts,
        "study": study.study_name,
        "storage": storage,
        "seconds": elapsed,
        "notes": [*notes, *skipped],
    }
    if chosen is not None:
        cand = recorded(chosen, by_id)
        m = chosen["measurements"]
        summary.update(
            candidate=cand.id,
            trial=chosen["number"],
            accuracy=m["accuracy"],
            accuracy_drop_points=m["accuracy_drop_points"],
            size_bytes=m["size_bytes"],
            gzip_size_bytes=m["gzip_size_bytes"],
            latency_us=m["latency_us"],
            float_latency_us=m["float_latency_us"],
            latency_us_corrected=chosen.get("latency_us_corrected"),
            peak_memory_mb=m["peak_memory_mb"],
            num_threads=m["num_threads"],
            use_xnnpack=m["use_xnnpack"],
            constraints=chosen["constraints"],
        )
        if built_in:
            summary["built_in_reference"] = _against(chosen, built_in, objective, noise)
        io.write_json(out / "best_recipe.json", cand.recipe.to_dict(), overwrite=True)
        io.atomic_write_bytes(out / "best.tflite", _best_bytes(ctx, cand), overwrite=True)
    else:
        summary["closest"] = front_lib.closest(rows, limits)
        for stale in ("best_recipe.json", "best.tflite"):
            (out / stale).unlink(missing_ok=True)
    io.write_json(out / "summary.json", summary, overwrite=True)
    io.atomic_write_text(
        out / "report.html", _html(rows, front, chosen, noise, summary, by_id), overwrite=True
    )
    return summary


def _html(rows: list, front: list, chosen: Any, noise: float, summary: dict, by_id: dict) -> str:
    on_front = {r["number"] for r in front}
    points = [
        {
            "name": r["candidate"],
            "size_bytes": r["measurements"]["size_bytes"],
            "latency_us": r.get("latency_us_corrected") or r["measurements"]["latency_us"]["p50"],
            "accuracy": r["measurements"]["accuracy"],
            "front": r["number"] in on_front,
            "chosen": chosen is not None and r["number"] == chosen["number"],
        }
        for r in rows
    ]
    img = ""
    if points:
        png = plots.draw_front(points, noise=noise, title="edgekit-tune")
        img = f'<img alt="the front" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    head = ("trial", "candidate", "tier", "accuracy", "drop (pt)", "size KB", "gzip KB",
            "p50", "p90", "float32 p50", "p50 corrected", "memory MB", "front", "meets limits")  # fmt: skip

    def cells(r: dict[str, Any]) -> list[str]:
        m = r["measurements"]
        acc = m["accuracy"]
        drop = m["accuracy_drop_points"]
        mem = m["peak_memory_mb"]
        return [
            str(r["number"]),
            r["candidate"]
            + (" (chosen)" if chosen is not None and r["number"] == chosen["number"] else ""),
            r["tier"] or "",
            "" if acc is None else f"{100 * acc:.2f}%",
            "" if drop is None else f"{drop:+.2f}",
            f"{m['size_bytes'] / 1024:.1f}",
            f"{m['gzip_size_bytes'] / 1024:.1f}",
            plots.latency_text(m["latency_us"]["p50"]),
            plots.latency_text(m["latency_us"]["p90"]),
            plots.latency_text(m["float_latency_us"]["p50"]),
            plots.latency_text(r.get("latency_us_corrected") or m["latency_us"]["p50"]),
            "" if mem is None else f"{mem:.2f}",
            "yes" if r["number"] in on_front else "",
            "yes" if r["meets"] else "no",
        ]

    def table(rs: list[dict[str, Any]]) -> str:
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells(r)) + "</tr>" for r in rs
        )
        return f"<table><tr>{th}</tr>{body}</table>"

    verdict = (
        f"Chosen: <b>{html.escape(summary['candidate'])}</b> ({html.escape(by_id[summary['candidate']].description)})"
        if chosen is not None
        else "<b>No candidate meets every constraint</b>; the closest per constraint: "
        + html.escape(json.dumps(summary.get("closest", {})))
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary["notes"])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgekit-tune</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}</style>
</head><body>
<h1>edgekit-tune: {html.escape(summary["objective"])} objective</h1>
<p>{verdict}</p>
<p>Latencies are compared corrected for the machine's drift between trials: each
candidate's ratio to the float32 baseline, measured interleaved in one process, times the
median float32 p50 (column "p50 corrected"). Noise band: ±{100 * noise:.1f}% (the widest
of: one file measured in several trials, the float32 candidate against the float32
baseline, the two ratio estimates of one run); corrected latencies within it are a tie,
decided by the next objective.</p>
<h2>The Pareto front</h2>
{img}
{table(front)}
<h2>Every measured trial</h2>
{table(rows)}
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""
