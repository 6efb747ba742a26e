"""The plots of `edgekit.report`: matplotlib PNGs a person can read.

Each `draw_*` function takes the run's `Summary` and returns `(png_bytes, caption)`,
or a sentence saying why there is no plot. Figures are drawn on their own Agg canvas, never through pyplot, so nothing
global changes in the caller's process (a notebook keeps its backend). matplotlib is
imported inside the drawing helpers only: it is heavy, and `edgekit.report` (which
`edgekit.check` and its command import) must stay light.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from edgekit.report.schema import Summary, is_number

# Plots are drawn at this resolution: sharp on a laptop screen, small in the HTML.
_DPI = 100
# Longest tensor or layer name shown on a plot axis before it is shortened.
_MAX_LABEL = 38
# At most this many tensors on the quantization error plot (the worst ones).
_MAX_QUANT_ROWS = 30
_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def time_unit(values_us: Sequence[float]) -> tuple[str, float]:
    """Milliseconds when the typical value is a millisecond or more, else microseconds."""
    typical = sorted(values_us)[len(values_us) // 2] if values_us else 0
    return ("ms", 1000.0) if typical >= 1000 else ("µs", 1.0)


def latency_text(us: float) -> str:
    if us >= 1000:
        return f"{us / 1000:,.3f} ms"
    return f"{us:,.1f} µs" if us >= 10 else f"{us:.2f} µs"


def _as_list(values: Any) -> list:
    """A list from a list, a tuple or a numpy array (whose truth value is ambiguous)."""
    if values is None or isinstance(values, (str, bytes, dict)):
        return []
    try:
        return list(values)
    except TypeError:
        return []


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # lazily: `import edgekit` stays light

    # A Figure with its own Agg canvas, never pyplot: no global backend switch in the
    # caller's notebook, no GUI, works on a headless server.
    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _rc() -> Any:
    import matplotlib

    return matplotlib.rc_context(
        {
            "font.size": 11,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "xtick.labelsize": 10,
            "ytick.labelsize": 10,
            "legend.fontsize": 10,
            "figure.titlesize": 13,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )


def _horizontal() -> dict[str, Any]:
    import matplotlib

    # `vert` is deprecated from matplotlib 3.10, which added `orientation`.
    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _short(name: Any) -> str:
    text = str(name)
    return text if len(text) <= _MAX_LABEL else "…" + text[-(_MAX_LABEL - 1) :]


def draw_overview(summary: Summary) -> tuple[bytes, str]:
    models = summary.columns
    labels = [str(m.name) for m in models]
    colors = [_COLORS[i % len(_COLORS)] for i in range(len(models))]
    lat = [(m.latency_us or {}).get("p50") for m in models]
    unit, div = time_unit([v for v in lat if is_number(v)])
    panels = [
        ("Model size", "size (KiB)", [m.size_bytes / 1024 for m in models], "{:,.1f}"),
        (
            "Accuracy",
            "top-1 accuracy (%)",
            [100 * m.accuracy if is_number(m.accuracy) else None for m in models],
            "{:.2f}",
        ),
        (
            "Latency (median)",
            f"p50 latency ({unit})",
            [v / div if is_number(v) else None for v in lat],
            "{:,.1f}" if unit == "µs" else "{:,.2f}",
        ),
    ]
    with _rc():
        fig = _figure(max(9.0, 1.2 * 3 * len(models) + 3), 3.6)
        axes = fig.subplots(1, 3)
        for ax, (title, ylabel, values, fmt) in zip(axes, panels, strict=True):
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            xs = range(len(values))
            if all(v is None for v in values):
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            heights = [v if v is not None else 0 for v in values]
            bars = ax.bar(xs, heights, color=colors, width=0.6)
            ax.set_xticks(list(xs), labels, rotation=20 if len(models) > 2 else 0)
            top = max(heights) or 1.0
            ax.set_ylim(0, top * 1.18)
            for bar, v in zip(bars, values, strict=True):
                text = "n/a" if v is None else fmt.format(v)
                ax.annotate(
                    text,
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=10,
                )
        png = _png(fig)
    how = summary.measured_how.text("latency")
    caption = "Size of the .tflite file, top-1 accuracy and median latency" + (
        f" ({how})." if how else "."
    )
    return png, caption


def draw_sparsity(summary: Summary) -> tuple[bytes, str] | str:
    rows = [r for r in summary.sparsity_per_layer if is_number(r.sparsity)]
    if not rows:
        return "Sparsity per layer: not given in the summary, so no plot."
    names = [_short(r.layer or f"layer {i}") for i, r in enumerate(rows)]
    values = [100 * r.sparsity for r in rows]
    with _rc():
        fig = _figure(8.0, 1.2 + 0.32 * len(rows))
        ax = fig.subplots()
        ys = range(len(rows))
        bars = ax.barh(ys, values, color=_COLORS[1], height=0.6)
        ax.set_yticks(list(ys), names)
        ax.invert_yaxis()  # first layer on top, as in the model
        ax.set_xlim(0, 110)
        ax.set_xticks([0, 20, 40, 60, 80, 100])
        ax.set_xlabel("zero weights (% of the layer's weights)")
        ax.set_title("Sparsity per layer")
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(
                f"{v:.1f}%",
                (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
            )
        png = _png(fig)
    return png, "Share of exactly-zero weights in each layer of the result."


def draw_quant_error(summary: Summary) -> tuple[bytes, str] | str:
    rows = []
    for i, r in enumerate(summary.quant_error_per_layer):
        mse = r.mean_squared_error
        if is_number(mse) and mse >= 0:
            name = r.tensor or r.op or f"tensor {i}"
            # The converter fuses ops and joins their names with ';' -- the first one
            # names the layer.
            rows.append((str(name).split(";")[0], float(mse)))
    if not rows:
        return "Quantization error per layer: not given in the summary, so no plot."
    caption = "Mean squared error between each quantized op's output and the float op's output."
    if len(rows) > _MAX_QUANT_ROWS:
        caption += f" The {_MAX_QUANT_ROWS} largest of {len(rows)} tensors, in model order."
        keep = sorted(range(len(rows)), key=lambda i: -rows[i][1])[:_MAX_QUANT_ROWS]
        rows = [rows[i] for i in sorted(keep)]
    positive = [m for _, m in rows if m > 0]
    # A zero error has no place on a log axis; draw it at the floor and say so.
    floor = min(positive) / 10 if positive else 1e-12
    with _rc():
        fig = _figure(8.0, 1.3 + 0.32 * len(rows))
        ax = fig.subplots()
        ys = range(len(rows))
        bars = ax.barh(
            ys,
            [max(m, floor) for _, m in rows],
            color=[_COLORS[3] if m > 0 else "#bbbbbb" for _, m in rows],
            height=0.6,
            left=floor / 10,
        )
        for bar, (_, m) in zip(bars, rows, strict=True):
            ax.annotate(
                f"{m:.1e}" if m > 0 else "0 (exact)",
                (bar.get_x() + bar.get_width(), bar.get_y() + bar.get_height() / 2),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
            )
        ax.set_xscale("log")
        # Room on the right for the value labels (a log axis: multiply, not add).
        ax.set_xlim(floor / 10, max(m for _, m in rows) * 12 if positive else 1.0)
        ax.set_yticks(list(ys), [_short(n) for n, _ in rows])
        ax.invert_yaxis()
        ax.set_xlabel("mean squared error (output units², log scale)")
        ax.set_title("Quantization error per layer")
        ax.grid(axis="x", which="major", alpha=0.3)
        png = _png(fig)
    if len(positive) < len(rows):
        caption += " Tensors with zero error are drawn as short grey bars."
    return png, caption


def draw_latency(summary: Summary) -> tuple[bytes, str] | str:
    models = summary.columns
    samples = summary.latency_samples_us
    series = []
    for key, values in samples.items():
        vals = [float(v) for v in _as_list(values) if is_number(v) and v >= 0]
        if vals:
            # Keys are "original" / "result" (the summary's own keys) or a column label.
            label = {"original": models[0].name, "result": models[1].name}.get(key, key)
            series.append((str(label), vals))
    how = summary.measured_how.text("latency")
    if series:
        unit, div = time_unit([v for _, vals in series for v in vals])
        with _rc():
            fig = _figure(8.0, 1.4 + 0.9 * len(series))
            ax = fig.subplots()
            data = [[v / div for v in vals] for _, vals in series]
            parts = ax.boxplot(
                data,
                **_horizontal(),
                widths=0.5,
                patch_artist=True,
                showfliers=True,
                flierprops={"markersize": 3, "alpha": 0.5},
                medianprops={"color": "black", "linewidth": 1.5},
            )
            for i, box in enumerate(parts["boxes"]):
                box.set_facecolor(_COLORS[i % len(_COLORS)])
                box.set_alpha(0.8)
            ax.set_yticks(
                range(1, len(series) + 1),
                [f"{name}\n({len(v)} runs)" for name, v in series],
            )
            ax.invert_yaxis()
            ax.set_xlabel(f"latency per run ({unit})")
            # One stalled run on a busy machine can be 10x the rest; cut the axis at the
            # slowest 99th percentile so the boxes stay readable, and say what was cut.
            cut = 1.15 * max(_percentile(d, 99) for d in data)
            hidden = sum(v > cut for d in data for v in d)
            ax.set_xlim(0, cut)
            ax.set_title("Latency distribution")
            ax.grid(axis="x", alpha=0.3)
            png = _png(fig)
        caption = (
            "Per-run latency: the box spans the 25th to 75th percentile, the line is the median, "
            "whiskers reach 1.5 × IQR, dots are slower or faster runs"
        )
        caption += f" ({how})." if how else "."
        if hidden:
            caption += f" {hidden} run(s) slower than {cut:,.1f} {unit} lie beyond the axis."
        return png, caption
    # No per-run samples: show the percentiles the benchmark reported.
    # Not the max: one stalled run would flatten every other bar.
    quantiles = ("min", "p50", "p90", "p95", "p99")
    rows = [(str(m.name), [(m.latency_us or {}).get(q) for q in quantiles]) for m in models]
    rows = [(n, v) for n, v in rows if any(is_number(x) for x in v)]
    if not rows:
        return "Latency distribution: no latency figures in the summary, so no plot."
    unit, div = time_unit([x for _, v in rows for x in v if is_number(x)])
    with _rc():
        fig = _figure(8.0, 3.6)
        ax = fig.subplots()
        width = 0.8 / len(rows)
        top = 0.0
        for i, (name, values) in enumerate(rows):
            xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(quantiles))]
            heights = [v / div if is_number(v) else 0 for v in values]
            top = max(top, *heights)
            bars = ax.bar(xs, heights, width=width, label=name, color=_COLORS[i % len(_COLORS)])
            for bar, v in zip(bars, values, strict=True):
                if is_number(v):
                    ax.annotate(
                        f"{v / div:,.3g}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=8,
                    )
        ax.set_ylim(0, top * 1.15 or 1.0)
        ax.set_xticks(range(len(quantiles)), quantiles)
        ax.set_xlabel("percentile of the timed runs")
        ax.set_ylabel(f"latency ({unit})")
        ax.set_title("Latency distribution (percentiles)")
        ax.legend(frameon=False)
        ax.grid(axis="y", alpha=0.3)
        png = _png(fig)
    caption = "Latency percentiles of the timed runs (per-run samples were not given)"
    caption += f" ({how})." if how else "."
    maxes = [
        f"{m.name} {latency_text(m.latency_us['max'])}"
        for m in models
        if is_number((m.latency_us or {}).get("max"))
    ]
    if maxes:
        caption += " Slowest single run, not drawn: " + ", ".join(maxes) + "."
    return png, caption


def draw_front(
    points: Sequence[Mapping[str, Any]], *, noise: float = 0.0, title: str = "Candidates"
) -> bytes:
    """A scatter of candidates: size (x) against p50 latency (y), coloured by accuracy.

    Each point is a mapping with `name`, `size_bytes`, `latency_us` (p50), `accuracy`
    (fraction or None), `front` (on the Pareto front) and `chosen`. The latency error
    bars show the noise band (a relative spread): latencies inside it are a tie.
    """
    unit, div = time_unit([p["latency_us"] for p in points])
    with _rc():
        fig = _figure(7.5, 4.8)
        ax = fig.add_subplot()
        acc = [p.get("accuracy") for p in points]
        known = [a for a in acc if is_number(a)]
        lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
        for p in points:
            x, y = p["size_bytes"] / 1024, p["latency_us"] / div
            a = p.get("accuracy")
            shade = 0.5 if not is_number(a) or hi == lo else (a - lo) / (hi - lo)
            ax.errorbar(
                x,
                y,
                yerr=noise * y,
                fmt="*" if p.get("chosen") else ("o" if p.get("front") else "x"),
                markersize=14 if p.get("chosen") else 7,
                color=_COLORS[3]
                if p.get("chosen")
                else (0.2, 0.3 + 0.5 * shade, 0.7 - 0.5 * shade),
                capsize=3,
                alpha=1.0 if p.get("front") or p.get("chosen") else 0.5,
            )
            if p.get("front") or p.get("chosen"):
                ax.annotate(
                    _short(p["name"]), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8
                )
        ax.set_xlabel("file size (KB)")
        ax.set_ylabel(f"p50 latency ({unit})")
        ax.set_title(f"{title}: o on the Pareto front, * chosen, x dominated")
        ax.grid(alpha=0.3)
        return _png(fig)
