"""TFLite converter vs LiteRT Quantizer, scheme by scheme, on the bundled example or MobileNetV2.

For every scheme each backend offers: file size, gzip size, test accuracy, mean cosine
of the outputs against the float32 file, and p50 latency measured interleaved against
the float32 file (`edgekit.benchmark.compare`, A B A B in one process, same inputs,
same threads). The ratio column is the median of per-pair time ratios (scheme /
float32): above 1 means slower than float32 on this CPU. The last row is the
accuracy-controlled selective search (--selective_max_drop points; none by default).

--model=example: the bundled example (8x8 digits). --model=mobilenet_v2:
`tf_keras.applications.MobileNetV2` (weights=None, 32x32x3, 10 classes) trained
briefly on the digits enlarged to 32x32 RGB (`benchmarks/_digits_nets.py`, cached).

    python benchmarks/quantize_backends.py [--model=example|mobilenet_v2] [--threads=1] \
        [--num_runs=200] [--noselective] [--selective_max_drop=0.0]
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
from absl import app, flags

from edgekit import benchmark, convert, datasets, evaluate
from edgekit.config import ConvertConfig
from edgekit.convert import litert_quantizer, selective

_THREADS = flags.DEFINE_integer("threads", 1, "Interpreter threads.", lower_bound=1)
_RUNS = flags.DEFINE_integer("num_runs", 200, "Interleaved pairs per file.", lower_bound=2)
_MODEL = flags.DEFINE_enum("model", "example", ["example", "mobilenet_v2"], "Model to quantize.")
_SELECTIVE = flags.DEFINE_bool("selective", True, "Add the selective search's row.")
_SELECTIVE_DROP = flags.DEFINE_float(
    "selective_max_drop", 0.0, "The selective row's max_accuracy_drop (points).", lower_bound=0.0
)

ROWS = [
    ("converter", "static_wi8_ai8", None),
    ("converter", "static_wi8_ai16", None),
    ("converter", "dynamic_wi8_afp32", None),
    ("litert_quantizer", "static_wi8_ai8", None),
    ("litert_quantizer", "static_wi8_ai16", None),
    ("litert_quantizer", "dynamic_wi8_afp32", None),
    ("litert_quantizer", "dynamic_wi4_afp32", None),
    ("litert_quantizer", "dynamic_wi4_afp32", 32),
    ("litert_quantizer", "dynamic_wi4_afp32", 128),
    ("litert_quantizer", "weight_only_wi8_afp32", None),
    ("litert_quantizer", "weight_only_wi4_afp32", None),
]


def _model_and_data(work: str):
    """(Keras model, float32 .tflite path, train x, test x, test y, description)."""
    if _MODEL.value == "example":
        model, _ = datasets.example_model()
        (x_train, _), (x_test, y_test) = datasets.load_digits()
        float_path = os.path.join(work, "float32.tflite")
        convert.convert(model).save(float_path)
        return model, float_path, x_train, x_test, y_test, "example model"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _digits_nets  # noqa: PLC0415 - benchmarks/ is not a package

    paths = _digits_nets.trained("MobileNetV2")
    (x_train, _), (x_test, y_test) = _digits_nets.digits32()
    model = _digits_nets.load_keras(paths["keras"])
    desc = "MobileNetV2 (32x32x3, digits-trained, " + paths["keras"].name + ")"
    return model, str(paths["float"]), x_train, x_test, y_test, desc


def _measure(name, blob, float_path, x_test, y_test, cfg):
    ev = evaluate.evaluate(blob, (x_test, y_test), reference=float_path)
    got = benchmark.compare([float_path, blob], cfg)
    ratio = got.ratios[0]["median"]
    return (
        name,
        len(blob),
        convert.gzip_size(blob),
        100 * ev.accuracy,
        ev.parity.cosine,
        got.rows[0].latency_us["p50"],
        got.rows[1].latency_us["p50"],
        ratio,
    )


def _row(model, backend, scheme, block, float_path, x_train, x_test, y_test, cfg):
    if backend == "converter":
        r = convert.convert(model, ConvertConfig(scheme=scheme), calibration_data=x_train)
        extra = r.converter_settings.get("granularity_choice")
        label = f"converter {scheme}" + (f" ({extra['chosen']})" if isinstance(extra, dict) else "")
    else:
        qc = ConvertConfig(backend=backend, scheme=scheme, block_size=block)
        r = litert_quantizer.quantize(float_path, qc, calibration_data=x_train)
        label = f"litert {scheme}" + (f" b{block}" if block else "")
    return _measure(label, r.tflite_bytes, float_path, x_test, y_test, cfg)


def main(argv: list[str]) -> None:
    del argv
    print(f"load average at start: {os.getloadavg()}")
    work = tempfile.mkdtemp(prefix="edgekit-qbackends-")
    model, float_path, x_train, x_test, y_test, desc = _model_and_data(work)
    ev = evaluate.evaluate(float_path, (x_test, y_test))
    print(f"{desc}: float32 accuracy {100 * ev.accuracy:.2f}%", flush=True)
    cfg = benchmark.BenchmarkConfig(
        num_threads=_THREADS.value, num_runs=_RUNS.value, min_secs=0.0, warmup_runs=10
    )
    rows = []
    for backend, scheme, block in ROWS:
        try:
            rows.append(
                _row(model, backend, scheme, block, float_path, x_train, x_test, y_test, cfg)
            )
        except Exception as e:  # noqa: BLE001 - a benchmark reports every failure and goes on
            print(f"{backend} {scheme} block {block}: {type(e).__name__}: {e}"[:400], flush=True)
            continue
        print(rows[-1], flush=True)
    info = None
    if _SELECTIVE.value:
        info = _selective_row(float_path, x_train, x_test, y_test, cfg, rows)
    float_size = os.path.getsize(float_path)
    print(
        f"\n{desc}, float32 file {float_size:,} bytes; {len(x_test)} test images; "
        f"latency: {_THREADS.value} thread(s), {_RUNS.value} interleaved pairs; "
        f"load average at end: {os.getloadavg()}\n"
    )
    print(
        f"| {'file':<52} | size | of f32 | gzip | accuracy | cosine | p50 f32 µs | p50 µs "
        "| ratio vs f32 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, size, gz, acc, cos, p_f, p_q, ratio in rows:
        slower = " (slower)" if ratio > 1.0 else ""
        print(
            f"| {name:<52} | {size:,} | {size / float_size:.3f} | {gz:,} | {acc:.2f}% | "
            f"{cos:.4f} | {p_f:.1f} | {p_q:.1f} | {ratio:.2f}{slower} |"
        )
    if info is not None:
        print(
            f"\nselective search: {np.round(info['search_seconds'], 1)} s, "
            f"{info['evaluations']} evaluations"
        )


def _selective_row(float_path, x_train, x_test, y_test, cfg, rows) -> dict:
    sel = selective.search(
        float_path,
        ConvertConfig(backend="litert_quantizer", scheme="static_wi8_ai8"),
        calibration_data=x_train,
        eval_data=(x_test, y_test),
        max_accuracy_drop=_SELECTIVE_DROP.value,
    )
    info = sel.converter_settings["selective"]
    rows.append(
        _measure(
            f"litert selective ({len(info['float_ops'])} float ops, prefix {info['top_k_prefix']})",
            sel.tflite_bytes,
            float_path,
            x_test,
            y_test,
            cfg,
        )
    )
    return info


if __name__ == "__main__":
    app.run(main)
