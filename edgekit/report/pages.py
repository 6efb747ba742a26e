"""The report's pages: `report.md` and a self-contained `report.html`, with the plots.

`render(summary, output_dir)` writes both pages and the PNG plots under
`output_dir/plots/`; the HTML page embeds every plot as a base64 `data:` URI and
loads no external CSS or JavaScript.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from edgekit import errors, io
from edgekit.report import plots as _plots
from edgekit.report.schema import Summary, is_number


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
    summary: Summary | dict[str, Any], output_dir: str | os.PathLike, *, overwrite: bool = False
) -> ReportResult:
    """Writes `report.md`, `report.html` and `plots/*.png` into `output_dir`.

    Args:
      summary: the figures of the run: a `Summary`, or a dict of the same keys
        (see `edgekit.report.Summary`).
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
    if not isinstance(summary, Summary):
        summary = Summary.from_dict(summary)
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
        drawn = draw(summary)
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

    sections = _sections(summary, pngs, captions, omitted)
    title = str(summary.title or "edgekit report")
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


# -- numbers as text --------------------------------------------------------------


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _ratio(new: Any, old: Any, better: str = "smaller") -> str:
    """`new / old`, and when below 1 how many times smaller (or faster) that is."""
    if not (is_number(new) and is_number(old)) or old == 0:
        return "–"
    r = new / old
    if 0 < r < 1:
        return f"{r:.2f}× ({1 / r:.1f}× {better})"
    return f"{r:.2f}×"


def _comparison_rows(summary: Summary) -> list[list[str]]:
    """Rows of [metric, value per model..., ratio result/original, how measured]."""
    models = summary.columns
    orig, res = summary.original, summary.result
    how = summary.measured_how.text
    rows: list[list[str]] = []

    def add(metric, values, ratio, how):
        if all(v == "–" for v in values):
            return
        rows.append([metric, *values, ratio, how])

    add(
        "Size",
        [f"{_kib(m.size_bytes)} ({int(m.size_bytes):,} B)" for m in models],
        _ratio(res.size_bytes, orig.size_bytes),
        how("size") or ".tflite file size; 1 KiB = 1024 bytes",
    )
    add(
        "Size after gzip -9",
        [_kib(m.gzip_size_bytes) if is_number(m.gzip_size_bytes) else "–" for m in models],
        _ratio(res.gzip_size_bytes, orig.gzip_size_bytes),
        "what a download or an over-the-air update costs",
    )
    acc_change = "–"
    if is_number(res.accuracy) and is_number(orig.accuracy):
        acc_change = f"{100 * (res.accuracy - orig.accuracy):+.2f} points"
    add(
        "Accuracy",
        [_pct(m.accuracy) if is_number(m.accuracy) else "–" for m in models],
        acc_change,
        how("accuracy") or "top-1 on the evaluation data",
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
            p = m.parity or {}
            values.append(fmt(p[key]) if is_number(p.get(key)) else "–")
        add(metric, values, "–", "outputs against the Keras model on the same inputs")
    lat_how = how("latency")
    for q in ("p50", "p90", "p99"):
        values = []
        for m in models:
            v = (m.latency_us or {}).get(q)
            values.append(_plots.latency_text(v) if is_number(v) else "–")
        o = (orig.latency_us or {}).get(q)
        r = (res.latency_us or {}).get(q)
        add(f"Latency {q}", values, _ratio(r, o, "faster"), lat_how)
    add(
        "Peak memory (RSS)",
        [f"{m.peak_rss_mb:,.1f} MB" if is_number(m.peak_rss_mb) else "–" for m in models],
        _ratio(res.peak_rss_mb, orig.peak_rss_mb),
        how("memory") or "peak resident memory of the measuring process",
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
    summary: Summary,
    pngs: dict[str, bytes],
    captions: dict[str, str],
    omitted: list[str],
) -> list[_Section]:
    sections = []
    if summary.warnings:
        sections.append(
            _Section(
                "Warnings",
                "\n".join(f"- **WARNING:** {_md_cell(w)}" for w in summary.warnings),
                '<ul class="warnings">'
                + "".join(
                    f"<li><strong>WARNING:</strong> {html.escape(w)}</li>" for w in summary.warnings
                )
                + "</ul>",
            )
        )
    headers = ["Metric", *[str(m.name) for m in summary.columns], "Result / original"]
    headers.append("How measured")
    rows = _comparison_rows(summary)
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
    env = summary.environment
    if isinstance(env, Mapping) and env:
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
    recipe = summary.recipe
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
    notes = list(summary.notes)
    if notes:
        sections.append(
            _Section(
                "Notes",
                "\n".join(f"- {_md_cell(n)}" for n in notes),
                "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
            )
        )
    return sections


def _subtitle(summary: Summary) -> str:
    parts = []
    if summary.model_name:
        parts.append(f"Model: {summary.model_name}")
    recipe = summary.recipe
    if isinstance(recipe, Mapping) and recipe.get("name"):
        parts.append(f"recipe: {recipe['name']}")
    if summary.created:
        parts.append(f"run: {summary.created}")
    return " · ".join(parts)


def _markdown_page(title: str, summary: Summary, sections: list[_Section]) -> str:
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
.warnings li { color: #8a1f11; }
"""


def _html_page(title: str, summary: Summary, sections: list[_Section]) -> str:
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
