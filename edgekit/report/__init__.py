"""The run report: a Markdown page and a self-contained HTML page, with matplotlib plots.

`render(summary, output_dir)` writes `report.md`, `report.html` (every plot embedded as
a base64 `data:` URI, no external CSS or JavaScript) and the PNG plots under
`output_dir/plots/`. It reads only the summary, so the pipeline, a notebook or a script
can fill it from whatever they measured.

The summary is a `Summary` (frozen dataclasses, in `edgekit/report/schema.py`) or a dict
with the same keys. Only `original.size_bytes` and `result.size_bytes` are required; a
missing section is left out with a sentence saying so:

    {
      "title": str,                       # page title; default "edgekit report"
      "model_name": str,                  # the Keras model the run started from
      "created": str,                     # when the run happened (ISO 8601)
      "recipe": {...},                    # the recipe as run (any JSON-ready dict)
      "environment": {...},               # where it was measured: cpu_model, os, versions...
      "measured_how": {                   # how the numbers were measured (shown beside them)
        "latency": {"num_threads": int, "num_runs": int, "warmup_runs": int,
                    "use_xnnpack": bool, "input_source": str} | str,
        "accuracy": {"num_samples": int, "data": str} | str,
        "memory": str,                    # e.g. "peak RSS of the benchmark process"
        "size": str,
      },
      "original": {                       # the float32 model as converted without changes
        "name": str,                      # column header; default "original"
        "size_bytes": int,                # the .tflite file size (required)
        "gzip_size_bytes": int,           # size after gzip -9
        "accuracy": float,                # top-1 accuracy as a fraction in [0, 1]
        "latency_us": {"p50": float, "p90": float, "p99": float, "mean": float, ...},
        "peak_rss_mb": float,             # peak resident memory of the measuring process
      },
      "result": {                         # the optimized model; same keys as "original", plus
        "name": str,                      # default "result"
        "parity": {"max_abs_error": float, "mse": float, "cosine": float,
                   "top1_agreement": float},   # against the Keras model it came from
      },
      "variants": [{"name": str, <same keys as "result">}, ...],   # extra columns
      "sparsity_per_layer": [{"layer": str, "sparsity": float}, ...],  # fraction of zeros
      "quant_error_per_layer": [{"tensor": str, "op": str, "mean_squared_error": float}, ...],
      "latency_samples_us": {"original": [float, ...], "result": [float, ...]},  # per run
      "notes": [str, ...],
    }

Other keys (`ratios`, `stages`) are carried, not drawn. `latency_us` takes
`LatencyStats.latency_us` as it is; the rows of `edgekit.evaluate.layer_quantization_error`
are read too. The older spellings `measurement`, `label`, `tensor_name` and `op_name`
still work, with a `DeprecationWarning`.

Example:
    >>> r = edgekit.report.render({"original": {"size_bytes": 81234},
    ...                            "result": {"size_bytes": 21000}}, "out/")
    >>> r.html_path
"""

from __future__ import annotations

from edgekit.report.pages import ReportResult, render
from edgekit.report.schema import (
    LayerQuantError,
    LayerSparsity,
    MeasuredHow,
    ModelFigures,
    Ratios,
    Summary,
)

__all__ = [
    "LayerQuantError",
    "LayerSparsity",
    "MeasuredHow",
    "ModelFigures",
    "Ratios",
    "ReportResult",
    "Summary",
    "render",
]
