"""The run report: a Markdown page and a self-contained HTML page, with matplotlib plots.

`render(summary, output_dir)` writes `report.md`, `report.html` (every plot embedded as
a base64 `data:` URI, no external CSS or JavaScript) and the PNG plots under
`output_dir/plots/`. It reads only the `summary` dict, so the pipeline, a notebook or a
script can fill it from whatever they measured.

The summary schema (every field is optional except `original.size_bytes` and
`result.size_bytes`; a missing section is left out with a sentence saying so):

    {
      "title": str,                       # page title; default "edgekit report"
      "model_name": str,                  # the Keras model the run started from
      "created": str,                     # when the run happened (ISO 8601)
      "recipe": {...},                    # the recipe as run (any JSON-ready dict)
      "environment": {...},               # where it was measured: cpu_model, os, versions...
      "measurement": {                    # how the numbers were measured (shown beside them;
                                          # "measured_how" is accepted as another name)
        "latency": {"num_threads": int, "num_runs": int, "warmup_runs": int,
                    "use_xnnpack": bool, "input_source": str} | str,
        "accuracy": {"num_samples": int, "data": str} | str,
        "memory": str,                    # e.g. "peak RSS of the benchmark process"
        "size": str,
      },
      "original": {                       # the float32 model as converted without changes
        "label": str,                     # column header ("name" works too); default "original"
        "size_bytes": int,                # the .tflite file size (required)
        "gzip_size_bytes": int,           # size after gzip -9
        "accuracy": float,                # top-1 accuracy as a fraction in [0, 1]
        "latency_us": {"p50": float, "p90": float, "p99": float, "mean": float, ...},
        "peak_rss_mb": float,             # peak resident memory of the measuring process
      },
      "result": {                         # the optimized model; same keys as "original", plus
        "label": str,                     # default "result"
        "parity": {"max_abs_error": float, "mse": float, "cosine": float,
                   "top1_agreement": float},   # against the Keras model it came from
      },
      "variants": [{"label": str, <same keys as "result">}, ...],   # extra columns
      "sparsity_per_layer": [{"layer": str, "sparsity": float}, ...],  # fraction of zeros
      "quant_error_per_layer": [{"tensor": str, "mean_squared_error": float, ...}, ...],
      "latency_samples_us": {"original": [float, ...], "result": [float, ...]},  # per run
      "notes": [str, ...],
    }

`quant_error_per_layer` takes the rows of `edgekit.evaluate.layer_quantization_error`
as they are (`tensor_name` is accepted for `tensor`); `latency_us` takes
`LatencyStats.latency_us` as it is.

Example:
    >>> r = edgekit.report.render({"original": {"size_bytes": 81234},
    ...                            "result": {"size_bytes": 21000}}, "out/")
    >>> r.html_path
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from edgekit import _report_plots as _plots
from edgekit import errors, io


@dataclasses.dataclass(frozen=True)
class ReportResult:
    """Where the report was written, and which sections had no data.

    Attributes:
      markdown_path / html_path: the two pages.
      plot_paths: plot name -> PNG file under `plots/`.
      omitted: the sections left out for lack of data, each with the reason.
    """

    markdown_path: pathlib.Path
    html_path: pathlib.Path
    plot_paths: dict[str, pathlib.Path]
    omitted: tuple[str, ...]

    @property
    def files(self) -> list[pathlib.Path]:
        """Every file written: the two pages, then the plots."""
        return [self.markdown_path, self.html_path, *self.plot_paths.values()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "markdown_path": str(self.markdown_path),
            "html_path": str(self.html_path),
            "plot_paths": {k: str(v) for k, v in self.plot_paths.items()},
            "omitted": list(self.omitted),
        }


@dataclasses.dataclass
class _Section:
    title: str
    markdown: str
    html: str


def render(
    summary: dict[str, Any], output_dir: str | os.PathLike, *, overwrite: bool = False
) -> ReportResult:
    """Writes `report.md`, `report.html` and `plots/*.png` into `output_dir`.

    Args:
      summary: the figures of the run, in the schema at the top of this module.
      output_dir: the folder to write into; created if missing.
      overwrite: replace report files that already exist.

    Returns:
      A `ReportResult`.

    Raises:
      UserInputError: the summary lacks the basics or holds values of the wrong kind,
        or a report file exists and `overwrite` is False (checked before drawing).

    Example:
        >>> render(summary, "runs/int8", overwrite=True).markdown_path
        PosixPath('runs/int8/report.md')
    """
    models = _validate(summary)
    out = pathlib.Path(output_dir)
    if out.exists() and not out.is_dir():
        raise errors.UserInputError(
            f"The report folder {str(out)!r} is a file; expected a folder (it is created if "
            "missing). Choose another output_dir. " + errors.received(output_dir=str(out))
        )
    plots_dir = out / "plots"
    names = ("overview", "sparsity", "quant_error", "latency")
    targets = [out / "report.md", out / "report.html"] + [plots_dir / f"{n}.png" for n in names]
    if not overwrite:
        for t in targets:
            if t.exists():
                raise errors.UserInputError(
                    f"The report file {str(t)!r} already exists. Pass overwrite=True "
                    "(--overwrite) to replace the report, or choose another output_dir. "
                    + errors.received(output_dir=str(out), existing=t.name)
                )
    plots_dir.mkdir(parents=True, exist_ok=True)

    omitted: list[str] = []
    pngs: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    for name, draw in (
        ("overview", _plots.draw_overview),
        ("sparsity", _plots.draw_sparsity),
        ("quant_error", _plots.draw_quant_error),
        ("latency", _plots.draw_latency),
    ):
        drawn = draw(summary, models)
        if isinstance(drawn, str):
            omitted.append(drawn)
            captions[name] = drawn
        else:
            pngs[name], captions[name] = drawn

    plot_paths = {}
    for name, png in pngs.items():
        plot_paths[name] = io.atomic_write_bytes(
            plots_dir / f"{name}.png", png, overwrite=overwrite
        )
    # A plot left from an earlier report would be linked by nothing; drop it so the
    # folder matches the pages.
    for name in names:
        stale = plots_dir / f"{name}.png"
        if name not in pngs and overwrite and stale.exists():
            stale.unlink()

    sections = _sections(summary, models, pngs, captions, omitted)
    title = str(summary.get("title") or "edgekit report")
    md_path = io.atomic_write_text(
        out / "report.md", _markdown_page(title, summary, sections), overwrite=overwrite
    )
    html_path = io.atomic_write_text(
        out / "report.html", _html_page(title, summary, sections), overwrite=overwrite
    )
    return ReportResult(
        markdown_path=md_path,
        html_path=html_path,
        plot_paths=plot_paths,
        omitted=tuple(omitted),
    )


# -- validation -------------------------------------------------------------------


def _validate(summary: Any) -> list[dict[str, Any]]:
    """Checks the summary up front; returns the model columns (original, result, variants)."""
    if not isinstance(summary, dict):
        raise errors.UserInputError(
            "The report summary must be a dict (see the schema in edgekit/report.py). "
            + errors.received(summary=type(summary).__name__)
        )
    models = []
    for key in ("original", "result"):
        entry = summary.get(key)
        if not isinstance(entry, dict) or not _plots.is_number(entry.get("size_bytes")):
            raise errors.UserInputError(
                f"The report needs summary[{key!r}]['size_bytes'], the .tflite file size in "
                "bytes, to compare the original and the result. Fill it from "
                "ConversionResult.size_bytes. " + errors.received(**{key: entry})
            )
        models.append({**entry, "label": entry.get("label") or entry.get("name") or key})
    variants = summary.get("variants") or []
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise errors.UserInputError(
            "summary['variants'] must be a list of dicts with the keys of summary['result']. "
            + errors.received(variants=variants)
        )
    for i, v in enumerate(variants):
        models.append({**v, "label": v.get("label") or v.get("name") or f"variant {i + 1}"})
    for m in models:
        acc = m.get("accuracy")
        if acc is not None and (not _plots.is_number(acc) or not 0.0 <= acc <= 1.0):
            raise errors.UserInputError(
                f"Accuracy of {m['label']!r} must be a fraction in [0, 1] (0.91 for 91%). "
                + errors.received(accuracy=acc)
            )
        lat = m.get("latency_us")
        if lat is not None and not isinstance(lat, dict):
            raise errors.UserInputError(
                f"latency_us of {m['label']!r} must be a dict such as {{'p50': 812.0, "
                "'p90': 840.0, 'p99': 901.0}} (LatencyStats.latency_us). "
                + errors.received(latency_us=lat)
            )
    for key in ("sparsity_per_layer", "quant_error_per_layer", "notes"):
        value = summary.get(key)
        if value is not None and not isinstance(value, list):
            raise errors.UserInputError(
                f"summary[{key!r}] must be a list (see the schema in edgekit/report.py). "
                + errors.received(**{key: value})
            )
    samples = summary.get("latency_samples_us")
    if samples is not None and not isinstance(samples, dict):
        raise errors.UserInputError(
            "summary['latency_samples_us'] must map a model ('original', 'result') to its "
            "per-run latencies in microseconds. " + errors.received(latency_samples_us=samples)
        )
    return models


# -- numbers as text --------------------------------------------------------------


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _ratio(new: Any, old: Any, better: str = "smaller") -> str:
    """`new / old`, and when below 1 how many times smaller (or faster) that is."""
    if not (_plots.is_number(new) and _plots.is_number(old)) or old == 0:
        return "–"
    r = new / old
    if 0 < r < 1:
        return f"{r:.2f}× ({1 / r:.1f}× {better})"
    return f"{r:.2f}×"


def _comparison_rows(summary: dict[str, Any], models: list[dict[str, Any]]) -> list[list[str]]:
    """Rows of [metric, value per model..., ratio result/original, how measured]."""
    orig, res = models[0], models[1]
    rows: list[list[str]] = []

    def add(metric, values, ratio, how):
        if all(v == "–" for v in values):
            return
        rows.append([metric, *values, ratio, how])

    add(
        "Size",
        [f"{_kib(m['size_bytes'])} ({int(m['size_bytes']):,} B)" for m in models],
        _ratio(res["size_bytes"], orig["size_bytes"]),
        _plots.how_measured(summary, "size") or ".tflite file size; 1 KiB = 1024 bytes",
    )
    add(
        "Size after gzip -9",
        [
            _kib(m["gzip_size_bytes"]) if _plots.is_number(m.get("gzip_size_bytes")) else "–"
            for m in models
        ],
        _ratio(res.get("gzip_size_bytes"), orig.get("gzip_size_bytes")),
        "what a download or an over-the-air update costs",
    )
    acc_change = "–"
    if _plots.is_number(res.get("accuracy")) and _plots.is_number(orig.get("accuracy")):
        acc_change = f"{100 * (res['accuracy'] - orig['accuracy']):+.2f} points"
    add(
        "Accuracy",
        [_pct(m["accuracy"]) if _plots.is_number(m.get("accuracy")) else "–" for m in models],
        acc_change,
        _plots.how_measured(summary, "accuracy") or "top-1 on the evaluation data",
    )
    parity_fields = (
        ("top1_agreement", "Parity: top-1 agreement", _pct),
        ("cosine", "Parity: mean cosine similarity", lambda x: f"{x:.6f}"),
        ("max_abs_error", "Parity: max abs error", lambda x: f"{x:.3g}"),
        ("mse", "Parity: MSE", lambda x: f"{x:.3g}"),
    )
    for key, metric, fmt in parity_fields:
        values = []
        for m in models:
            p = m.get("parity") or {}
            values.append(fmt(p[key]) if _plots.is_number(p.get(key)) else "–")
        add(metric, values, "–", "outputs against the Keras model on the same inputs")
    lat_how = _plots.how_measured(summary, "latency")
    for q in ("p50", "p90", "p99"):
        values = []
        for m in models:
            v = (m.get("latency_us") or {}).get(q)
            values.append(_plots.latency_text(v) if _plots.is_number(v) else "–")
        o = (orig.get("latency_us") or {}).get(q)
        r = (res.get("latency_us") or {}).get(q)
        add(f"Latency {q}", values, _ratio(r, o, "faster"), lat_how)
    add(
        "Peak memory (RSS)",
        [
            f"{m['peak_rss_mb']:,.1f} MB" if _plots.is_number(m.get("peak_rss_mb")) else "–"
            for m in models
        ],
        _ratio(res.get("peak_rss_mb"), orig.get("peak_rss_mb")),
        _plots.how_measured(summary, "memory") or "peak resident memory of the measuring process",
    )
    return rows


# -- pages ------------------------------------------------------------------------


_PLOT_TITLES = {
    "overview": "Size, accuracy and latency",
    "sparsity": "Sparsity per layer",
    "quant_error": "Quantization error per layer",
    "latency": "Latency distribution",
}


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flat(v, f"{prefix}{k}.")
        else:
            text = json.dumps(v) if isinstance(v, (list, bool)) or v is None else str(v)
            out.append((f"{prefix}{k}", text))
    return out


def _sections(
    summary: dict[str, Any],
    models: list[dict[str, Any]],
    pngs: dict[str, bytes],
    captions: dict[str, str],
    omitted: list[str],
) -> list[_Section]:
    sections = []
    headers = ["Metric", *[str(m["label"]) for m in models], "Result / original", "How measured"]
    rows = _comparison_rows(summary, models)
    sections.append(
        _Section(
            "Original and result",
            _md_table(headers, rows),
            _html_table(headers, rows),
        )
    )
    for name, title in _PLOT_TITLES.items():
        if name in pngs:
            b64 = base64.b64encode(pngs[name]).decode("ascii")
            alt = html.escape(f"{title} plot")
            cap = captions[name]
            sections.append(
                _Section(
                    title,
                    f"![{title}](plots/{name}.png)\n\n{cap}",
                    f'<figure><img src="data:image/png;base64,{b64}" alt="{alt}">'
                    f"<figcaption>{html.escape(cap)}</figcaption></figure>",
                )
            )
        else:
            text = captions[name]
            sections.append(_Section(title, text, f'<p class="missing">{html.escape(text)}</p>'))
    env = summary.get("environment")
    if isinstance(env, dict) and env:
        rows_env = _flat(env)
        sections.append(
            _Section(
                "Environment",
                _md_table(["", "value"], rows_env),
                _html_table(["", "value"], rows_env),
            )
        )
    else:
        text = "Environment: not given in the summary."
        omitted.append(text)
        sections.append(_Section("Environment", text, f'<p class="missing">{text}</p>'))
    recipe = summary.get("recipe")
    if recipe:
        text = json.dumps(recipe, indent=2, default=str)
        sections.append(
            _Section(
                "Recipe",
                f"```json\n{text}\n```",
                f"<pre><code>{html.escape(text)}</code></pre>",
            )
        )
    else:
        text = "Recipe: not given in the summary."
        omitted.append(text)
        sections.append(_Section("Recipe", text, f'<p class="missing">{text}</p>'))
    notes = [str(n) for n in summary.get("notes") or []]
    if notes:
        sections.append(
            _Section(
                "Notes",
                "\n".join(f"- {_md_cell(n)}" for n in notes),
                "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
            )
        )
    return sections


def _subtitle(summary: dict[str, Any]) -> str:
    parts = []
    if summary.get("model_name"):
        parts.append(f"Model: {summary['model_name']}")
    recipe = summary.get("recipe")
    if isinstance(recipe, dict) and recipe.get("name"):
        parts.append(f"recipe: {recipe['name']}")
    if summary.get("created"):
        parts.append(f"run: {summary['created']}")
    return " · ".join(parts)


def _markdown_page(title: str, summary: dict[str, Any], sections: list[_Section]) -> str:
    out = [f"# {_md_cell(title)}", ""]
    sub = _subtitle(summary)
    if sub:
        out += [_md_cell(sub), ""]
    for s in sections:
        out += [f"## {s.title}", "", s.markdown, ""]
    return "\n".join(out)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.subtitle { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.95em; }
td:not(:last-child) { white-space: nowrap; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.7em; text-align: left; vertical-align: top; }
th { background: #f3f5f8; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 0.8em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; margin-top: 0.3em; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.9em; }
.missing { color: #666; font-style: italic; }
"""


def _html_page(title: str, summary: dict[str, Any], sections: list[_Section]) -> str:
    t = html.escape(title)
    body = [f"<h1>{t}</h1>"]
    sub = _subtitle(summary)
    if sub:
        body.append(f'<p class="subtitle">{html.escape(sub)}</p>')
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>\n{s.html}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{t}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
