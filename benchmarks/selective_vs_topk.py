"""Selective quantization against the greedy "debugger top-k" baseline.

The model: the tests' tiny conv + dense classifier (seed 3, the source of
tests/data/tiny_float.tflite) on 200 random 8x8 inputs, labelled with the float
model's own classes, so "accuracy" is top-1 agreement with float32 and full int8
(LiteRT Quantizer, static_wi8_ai8) loses several points. Target: at most
--max_accuracy_drop points.

Baseline: rank ops by TensorFlow's QuantizationDebugger (per-layer error of the
converter's int8 file, `edgekit.evaluate.layer_quantization_error`, by
mean_squared_error / scale^2, i.e. in units of the quantization step), then keep the
top 1, 2, ... ops float (LiteRT Quantizer, same calibration) until the target holds.
edgekit's search: `edgekit.convert.selective.search`.

    python benchmarks/selective_vs_topk.py [--max_accuracy_drop=0.5]
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from conftest import make_tiny_model  # noqa: E402

from edgekit import convert, evaluate, runtime  # noqa: E402
from edgekit.config import ConvertConfig  # noqa: E402
from edgekit.convert import litert_quantizer, selective  # noqa: E402

_DROP = flags.DEFINE_float("max_accuracy_drop", 0.5, "Target, in points.")


def main(argv: list[str]) -> None:
    del argv
    model = make_tiny_model(3)
    blob = convert.convert(model).tflite_bytes
    rng = np.random.default_rng(1)
    x = rng.random((200, 8, 8, 1), dtype=np.float32)
    y = runtime.LiteModel(blob).predict(x).argmax(1)
    cfg = ConvertConfig(backend="litert_quantizer", scheme="static_wi8_ai8")

    r = selective.search(
        blob, cfg, calibration_data=x, eval_data=(x, y), max_accuracy_drop=_DROP.value
    )
    sel = r.converter_settings["selective"]
    print(f"full int8: accuracy {100 * sel['full']['accuracy']:.2f}% (float 100%)")
    print(
        f"edgekit search: {len(sel['float_ops'])} float op(s) "
        f"{[op['type'] for op in sel['float_ops']]}, accuracy {100 * sel['result']['accuracy']:.2f}%, "
        f"{sel['result']['size_bytes']:,} bytes (full {sel['full']['size_bytes']:,}, float "
        f"{sel['float']['size_bytes']:,}); its own ranking prefix needed {sel['top_k_prefix']}; "
        f"{sel['evaluations']} evaluations"
    )

    rows = evaluate.layer_quantization_error(model, x, debug_samples=64)
    ops = litert_quantizer.model_ops(blob)
    by_name = {op.name: op for op in ops}

    def score(row: dict) -> float:
        scale = row.get("scale") or 1.0
        return float(row.get("mean_squared_error") or 0.0) / float(scale) ** 2

    ranked = []
    for row in sorted(rows, key=score, reverse=True):
        op = by_name.get(str(row.get("tensor_name")))
        if op is not None and op not in ranked:
            ranked.append(op)
    print(
        f"debugger ranking ({len(ranked)} of {len(ops)} ops matched): {[op.type for op in ranked]}"
    )
    float_blob, calibration = litert_quantizer.prepare(blob, cfg, x)
    session = litert_quantizer.Session(float_blob, cfg, calibration)
    need = None
    for k in range(1, len(ranked) + 1):
        q = session.quantize(float_scopes=[op.scope for op in ranked[:k]])
        acc = float(np.mean(runtime.LiteModel(q).predict(x).argmax(1) == y))
        print(f"  debugger top-{k} float: accuracy {100 * acc:.2f}%, {len(q):,} bytes")
        if 100 * (1 - acc) <= _DROP.value:
            need = k
            break
    print(
        f"debugger top-k baseline needs {need} float op(s); edgekit's search {len(sel['float_ops'])}"
    )


if __name__ == "__main__":
    app.run(main)
