"""The report: files, the comparison table's numbers, plots that a browser can show."""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_tiny_model, tree_snapshot

from edgekit import errors, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _stats(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples)
    out = {"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}
    for q in (50, 90, 95, 99):
        out[f"p{q}"] = float(np.percentile(a, q))
    return out


def realistic_summary() -> dict:
    """Figures shaped like a pruned int8 run of a small CNN (no training needed)."""
    rng = np.random.default_rng(0)
    original = rng.lognormal(np.log(812.0), 0.08, 200).tolist()
    result = rng.lognormal(np.log(301.0), 0.12, 200).tolist()
    layers = ["conv2d", "conv2d_1", "depthwise_conv2d", "conv2d_2", "dense", "dense_1"]
    return {
        "title": "digits_cnn: prune50_int8",
        "model_name": "digits_cnn.keras",
        "created": "2026-11-27T20:00:00Z",
        "recipe": {
            "name": "prune50_int8",
            "prune": {"target_sparsity": 0.5, "epochs": 2},
            "convert": {"mode": "int8", "io_type": "int8"},
        },
        "environment": {"cpu_model": "Intel Xeon", "logical_cores": 2, "python": "3.11"},
        "measured_how": {
            "latency": {
                "num_threads": 1,
                "num_runs": 200,
                "warmup_runs": 5,
                "use_xnnpack": True,
                "input_source": "random",
            },
            "accuracy": {"num_samples": 1797, "data": "test.npz"},
        },
        "original": {
            "size_bytes": 412_344,
            "gzip_size_bytes": 380_122,
            "accuracy": 0.9816,
            "latency_us": _stats(original),
            "peak_rss_mb": 61.2,
        },
        "result": {
            "size_bytes": 108_920,
            "gzip_size_bytes": 61_310,
            "accuracy": 0.9761,
            "latency_us": _stats(result),
            "peak_rss_mb": 48.7,
            "parity": {
                "max_abs_error": 0.0412,
                "mse": 2.1e-5,
                "cosine": 0.99987,
                "top1_agreement": 0.9911,
            },
        },
        "sparsity_per_layer": [
            {"layer": n, "sparsity": s}
            for n, s in zip(layers, [0.0, 0.49, 0.5, 0.51, 0.5, 0.0], strict=True)
        ],
        "quant_error_per_layer": [
            {
                "op": "CONV_2D",
                "tensor": f"model/{n}/BiasAdd;model/{n}/Conv2D;model/{n}/bias",
                "mean_squared_error": m,
            }
            for n, m in zip(layers, [3e-6, 1.2e-5, 4e-5, 2e-4, 8e-4, 0.0], strict=True)
        ],
        "latency_samples_us": {"original": original, "result": result},
        "notes": ["Accuracy on the held-out test split."],
    }


def _table(markdown: str) -> dict[str, list[str]]:
    """The comparison table as metric -> cells after the metric."""
    section = markdown.split("## Original and result", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| Metric"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


def _png_size(blob: bytes) -> tuple[int, int]:
    assert blob[:8] == PNG_MAGIC
    return struct.unpack(">II", blob[16:24])


def test_render_writes_pages_and_plots(tmp_path):
    r = report.render(realistic_summary(), tmp_path / "out")
    assert r.markdown_path.is_file() and r.html_path.is_file()
    assert set(r.plot_paths) == {"overview", "sparsity", "quant_error", "latency"}
    assert r.omitted == ()
    for path in r.plot_paths.values():
        assert path.parent == tmp_path / "out" / "plots"
        width, height = _png_size(path.read_bytes())
        # ~100 dpi figures several inches wide: big enough to read, small enough to embed.
        assert 500 <= width <= 1400 and 200 <= height <= 1400, (path.name, width, height)
    md = r.markdown_path.read_text()
    for name in r.plot_paths:
        assert f"](plots/{name}.png)" in md


def test_markdown_table_has_the_numbers(tmp_path):
    summary = realistic_summary()
    md = report.render(summary, tmp_path).markdown_path.read_text()
    rows = _table(md)
    assert rows["Size"][:3] == [
        "402.7 KiB (412,344 B)",
        "106.4 KiB (108,920 B)",
        "0.26× (3.8× smaller)",
    ]
    assert rows["Size after gzip -9"][:2] == ["371.2 KiB", "59.9 KiB"]
    assert rows["Accuracy"][:3] == ["98.16%", "97.61%", "-0.55 points"]
    assert rows["Accuracy"][3] == "top-1 on 1,797 samples of test.npz"
    assert rows["Parity: top-1 agreement"][:2] == ["–", "99.11%"]
    assert rows["Parity: max abs error"][1] == "0.0412"
    p50_o = summary["original"]["latency_us"]["p50"]
    p50_r = summary["result"]["latency_us"]["p50"]
    assert rows["Latency p50"][0] == f"{p50_o:,.1f} µs"
    assert rows["Latency p50"][1] == f"{p50_r:,.1f} µs"
    assert rows["Latency p50"][2].startswith(f"{p50_r / p50_o:.2f}×")
    assert "faster" in rows["Latency p50"][2]
    # Every latency figure says how it was measured.
    for q in ("p50", "p90", "p99"):
        how = rows[f"Latency {q}"][3]
        assert how == "1 thread, 200 runs, 5 warm-up, XNNPack, random inputs"
    assert rows["Peak memory (RSS)"][:2] == ["61.2 MB", "48.7 MB"]


def test_html_is_self_contained(tmp_path):
    r = report.render(realistic_summary(), tmp_path)
    page = r.html_path.read_text()
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
    assert len(sources) == 4
    for src, name in zip(sources, ["overview", "sparsity", "quant_error", "latency"], strict=True):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == r.plot_paths[name].read_bytes()
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", page)


def test_missing_sections_are_said_not_crashed(tmp_path):
    minimal = {"original": {"size_bytes": 20_000}, "result": {"size_bytes": 5_000}}
    r = report.render(minimal, tmp_path)
    md = r.markdown_path.read_text()
    assert _table(md)["Size"][2] == "0.25× (4.0× smaller)"
    assert "Accuracy" not in _table(md)  # no empty rows
    assert set(r.plot_paths) == {"overview"}
    assert "Sparsity per layer: not given in the summary" in md
    assert "Quantization error per layer: not given in the summary" in md
    assert "Latency distribution: no latency figures in the summary" in md
    assert "Environment: not given" in md and "Recipe: not given" in md
    assert len(r.omitted) == 5


def test_latency_percentiles_plotted_without_samples(tmp_path):
    summary = realistic_summary()
    del summary["latency_samples_us"]
    r = report.render(summary, tmp_path)
    assert "latency" in r.plot_paths
    assert "per-run samples were not given" in r.markdown_path.read_text()


def test_variants_get_columns(tmp_path):
    summary = realistic_summary()
    summary["variants"] = [{"name": "float16", "size_bytes": 206_172, "accuracy": 0.9816}]
    md = report.render(summary, tmp_path).markdown_path.read_text()
    assert "| Metric | original | result | float16 |" in md
    assert _table(md)["Size"][2] == "201.3 KiB (206,172 B)"


BAD_SUMMARIES = {
    "not a dict": ([1, 2], "must be a dict"),
    "no result": ({"original": {"size_bytes": 10}}, "summary['result']['size_bytes']"),
    "size as text": (
        {"original": {"size_bytes": "10"}, "result": {"size_bytes": 5}},
        "summary['original']['size_bytes']",
    ),
    "accuracy in percent": (
        {"original": {"size_bytes": 10, "accuracy": 98.1}, "result": {"size_bytes": 5}},
        "fraction in [0, 1]",
    ),
    "latency not a dict": (
        {"original": {"size_bytes": 10, "latency_us": 812.0}, "result": {"size_bytes": 5}},
        "latency_us of 'original' must be a dict",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SUMMARIES))
def test_bad_summary_is_a_user_error_and_writes_nothing(tmp_path, case):
    summary, needle = BAD_SUMMARIES[case]
    with pytest.raises(errors.UserInputError, match=re.escape(needle)) as e:
        report.render(summary, tmp_path / "out")
    assert "Received:" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_existing_report_is_not_overwritten_unless_asked(tmp_path):
    summary = realistic_summary()
    report.render(summary, tmp_path)
    before = tree_snapshot(tmp_path)
    with pytest.raises(errors.UserInputError, match="already exists.*overwrite=True"):
        report.render(summary, tmp_path)
    assert tree_snapshot(tmp_path) == before
    # With overwrite, a plot that no longer has data is removed with its section.
    del summary["sparsity_per_layer"]
    r = report.render(summary, tmp_path, overwrite=True)
    assert not (tmp_path / "plots" / "sparsity.png").exists()
    assert "sparsity" not in r.plot_paths


def test_render_takes_real_stage_results(tmp_path):
    """The summary filled from real convert / evaluate / benchmark results renders."""
    from edgekit import benchmark, convert, evaluate
    from edgekit.config import ConvertConfig

    model = make_tiny_model()
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 1), dtype=np.float32)
    y = np.argmax(model(x, training=False), axis=-1)
    entries = {}
    blobs = []
    for key, mode in (("original", "float32"), ("result", "dynamic")):
        conv = convert.convert(model, ConvertConfig(mode=mode))
        ev = evaluate.evaluate(conv.tflite_bytes, (x, y), reference=model)
        entries[key] = {
            "size_bytes": conv.size_bytes,
            "gzip_size_bytes": conv.gzip_size_bytes,
            "accuracy": ev.accuracy,
            "parity": ev.parity.to_dict(),
        }
        blobs.append(conv.tflite_bytes)
    cfg = benchmark.BenchmarkConfig(num_runs=20, min_secs=0.0, warmup_min_secs=0.0)
    bench = benchmark.compare(blobs, cfg)
    for key, row in zip(("original", "result"), bench.rows, strict=True):
        entries[key]["latency_us"] = row.latency_us
        entries[key]["peak_rss_mb"] = row.peak_rss_mb
    summary = {
        **entries,
        "environment": bench.environment,
        "measured_how": {"latency": cfg.to_dict()},
    }
    r = report.render(summary, tmp_path)
    rows = _table(r.markdown_path.read_text())
    assert rows["Size"][0].endswith(f"({entries['original']['size_bytes']:,} B)")
    assert rows["Accuracy"][:2] == ["100.00%", "100.00%"]
    assert "1 thread, 20 runs" in rows["Latency p50"][3]
    assert "latency" in r.plot_paths


# -- the page in a real browser ---------------------------------------------------

# Runs after the page has loaded; writes how many <img> decoded into the DOM, which
# --dump-dom prints.
_PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter((i) => i.complete && i.naturalWidth > 0);
  const p = document.createElement("p");
  p.id = "edgekit-probe";
  p.textContent = `loaded=${ok.length} total=${imgs.length}`;
  document.body.appendChild(p);
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = (
        "Headless Chromium is needed to check that report.html renders, and none is on the "
        "PATH. Install it with `bash .ci/chromium_setup.sh` (Debian package `chromium`)."
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _chromium_args(tmp_path, *extra: str) -> list[str]:
    return [
        _chromium(),
        "--headless",
        "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *extra,
    ]


def test_every_image_loads_in_headless_chromium(tmp_path):
    r = report.render(realistic_summary(), tmp_path / "out")
    page = r.html_path.read_text()
    probe = tmp_path / "probe.html"  # a copy: the report itself carries no script
    probe.write_text(page.replace("</body>", _PROBE + "\n</body>"))
    proc = subprocess.run(
        _chromium_args(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"loaded=(\d+) total=(\d+)", proc.stdout)
    assert match, (
        f"Chromium printed no probe result (exit {proc.returncode}): {proc.stderr[-2000:]}"
    )
    loaded, total = int(match.group(1)), int(match.group(2))
    assert total == 4 and loaded == total, match.group(0)


def test_broken_image_is_caught_by_the_probe(tmp_path):
    """The probe is not vacuous: a corrupt data URI counts as not loaded."""
    r = report.render(
        {"original": {"size_bytes": 10}, "result": {"size_bytes": 5}}, tmp_path / "out"
    )
    page = copy.copy(r.html_path.read_text())
    page = page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "\n</body>"))
    proc = subprocess.run(
        _chromium_args(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "loaded=0 total=1" in proc.stdout, proc.stderr[-2000:]


def test_screenshot_of_the_report_is_not_blank(tmp_path):
    r = report.render(realistic_summary(), tmp_path / "out")
    shot = tmp_path / "shot.png"
    subprocess.run(
        _chromium_args(
            tmp_path, "--window-size=1100,2400", f"--screenshot={shot}", r.html_path.as_uri()
        ),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert shot.is_file(), "Chromium wrote no screenshot"
    assert _png_size(shot.read_bytes()) == (1100, 2400)


def test_numpy_values_are_accepted(tmp_path):
    summary = realistic_summary()
    summary["result"]["accuracy"] = np.float32(0.9761)
    summary["result"]["size_bytes"] = np.int64(108_920)
    summary["latency_samples_us"] = {
        k: np.asarray(v, np.float32) for k, v in summary["latency_samples_us"].items()
    }
    summary["sparsity_per_layer"][1]["sparsity"] = np.float32(0.49)
    r = report.render(summary, tmp_path)
    rows = _table(r.markdown_path.read_text())
    assert rows["Accuracy"][1] == "97.61%" and rows["Size"][1] == "106.4 KiB (108,920 B)"
    assert {"latency", "sparsity"} <= set(r.plot_paths)


def test_importing_the_report_module_stays_light():
    code = (
        "import sys, edgekit.report, edgekit.check, edgekit.cli.check; "
        "print(sorted(m for m in ('matplotlib', 'tensorflow', 'tf_keras') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_names_and_measured_how_as_the_pipeline_writes_them(tmp_path):
    summary = {
        "original": {"name": "original (float32 .tflite)", "size_bytes": 8000, "accuracy": None},
        "result": {"name": "result (int8 .tflite)", "size_bytes": 2000, "latency_us": None},
        "measured_how": {"size": "bytes of the .tflite file; gzip -9"},
        "ratios": {"size": 0.25},  # extra keys are ignored
    }
    r = report.render(summary, tmp_path)
    md = r.markdown_path.read_text()
    assert "| Metric | original (float32 .tflite) | result (int8 .tflite) |" in md
    assert _table(md)["Size"][3] == "bytes of the .tflite file; gzip -9"
    assert r.files == [r.markdown_path, r.html_path, r.plot_paths["overview"]]


def test_older_key_spellings_still_render_the_same_page_with_a_warning(tmp_path):
    summary = realistic_summary()
    old = copy.deepcopy(summary)
    old["measurement"] = old.pop("measured_how")
    old["variants"] = [{"label": "float16", "size_bytes": 206_172}]
    summary["variants"] = [{"name": "float16", "size_bytes": 206_172}]
    for row in old["quant_error_per_layer"]:
        row["tensor_name"], row["op_name"] = row.pop("tensor"), row.pop("op")
    new_md = report.render(summary, tmp_path / "new").markdown_path.read_text()
    with pytest.warns(DeprecationWarning, match="'measurement' is deprecated; use 'measured_how'"):
        old_md = report.render(old, tmp_path / "old").markdown_path.read_text()
    assert old_md == new_md
    assert (tmp_path / "old" / "plots" / "quant_error.png").read_bytes() == (
        tmp_path / "new" / "plots" / "quant_error.png"
    ).read_bytes()


def test_a_typed_summary_renders_like_its_dict(tmp_path):
    summary = report.Summary.from_dict(realistic_summary())
    assert summary.result.parity["top1_agreement"] == 0.9911
    typed = report.render(summary, tmp_path / "typed").markdown_path.read_text()
    plain = report.render(summary.to_dict(), tmp_path / "dict").markdown_path.read_text()
    assert typed == plain
    assert "| Metric | original | result | Result / original | How measured |" in typed


def test_a_typed_summary_checks_its_figures():
    with pytest.raises(errors.UserInputError, match=re.escape("summary['variants'][0]")):
        report.Summary(
            original=report.ModelFigures(size_bytes=10),
            result=report.ModelFigures(size_bytes=5),
            variants=(report.ModelFigures(name="float16"),),
        )
    with pytest.raises(errors.UserInputError, match="Accuracy of 'result'"):
        report.Summary(
            original=report.ModelFigures(size_bytes=10),
            result=report.ModelFigures(size_bytes=5, accuracy=97.6),
        )


def test_findings_warn_only_beyond_the_noise_of_interleaved_pairs():
    from edgekit.report import findings

    rng = np.random.default_rng(0)
    base = rng.lognormal(np.log(10.0), 0.2, 500)
    same = base * rng.lognormal(0.0, 0.2, 500)  # the same speed, paired noise
    slow = base * 3.5 * rng.lognormal(0.0, 0.2, 500)
    fig = {"size_bytes": 100, "latency_us": {"p50": 10.0}}
    ratio = {"median": 1.0}
    none = findings.warnings_for(
        original=fig,
        result=fig,
        ratios={"latency": ratio, "size": 1.0},
        samples_us={"original": base.tolist(), "result": same.tolist()},
    )
    assert none == []
    warned = findings.warnings_for(
        original=fig,
        result={"size_bytes": 120, "latency_us": {"p50": 35.0}},
        ratios={"latency": ratio, "size": 1.2, "accuracy_drop_points": 3.0},
        samples_us={"original": base.tolist(), "result": slow.tolist()},
    )
    assert [w.split(":")[0] for w in warned] == [
        "The result is SLOWER than the original",
        "The result is LARGER than the original",
        "The result is LESS ACCURATE than the original",
    ]
    assert "500 interleaved pairs" in warned[0]


def test_warnings_are_a_section_of_both_pages(tmp_path):
    raw = realistic_summary()
    raw["warnings"] = ["The result is SLOWER than the original: latency ratio 4.10."]
    summary = report.Summary.from_dict(raw)
    assert summary.to_dict()["warnings"] == raw["warnings"]
    report.render(summary, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "## Warnings" in md and "**WARNING:** The result is SLOWER" in md
    assert md.index("## Warnings") < md.index("## Original and result")
    assert (
        "<strong>WARNING:</strong> The result is SLOWER" in (tmp_path / "report.html").read_text()
    )
    plain = report.Summary.from_dict(realistic_summary())
    assert plain.to_dict()["warnings"] == []
    report.render(plain, tmp_path / "plain")
    assert "Warnings" not in (tmp_path / "plain" / "report.md").read_text()
