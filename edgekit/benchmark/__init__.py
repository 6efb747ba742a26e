"""Latency and memory of `.tflite` models, on this CPU or on a device over SSH.

    >>> result = edgekit.benchmark.benchmark("model.tflite", BenchmarkConfig(num_threads=2))
    >>> result.rows[0].latency_us["p50"]

The package, from the top down:
    measure     `benchmark` and `compare`: one fresh measuring process per thread count,
                its outcome checked and turned into results or a clear error
    remote      the SSH transport to a device (`BenchmarkConfig.target`)
    results     `LatencyStats`, `BenchmarkResult`, `BenchmarkFailed`
    command     what `edgekit-benchmark` and `python -m edgekit.benchmark` share
    __main__    `python -m edgekit.benchmark`: the command where absl is missing
    harness/    what runs where the model runs: standard library, numpy and LiteRT only
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> (module, attribute). Loaded on first use, so the harness and its tables
# (`edgekit.benchmark.harness`, which every command prints with) import without
# numpy, the runtime or the configs.
_LAZY = {
    "benchmark": ("edgekit.benchmark.measure", "benchmark"),
    "compare": ("edgekit.benchmark.measure", "compare"),
    "BenchmarkResult": ("edgekit.benchmark.results", "BenchmarkResult"),
    "LatencyStats": ("edgekit.benchmark.results", "LatencyStats"),
    "BenchmarkFailed": ("edgekit.benchmark.results", "BenchmarkFailed"),
    # The config lives with the others in edgekit.config; kept here under its old name.
    "BenchmarkConfig": ("edgekit.config", "BenchmarkConfig"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'edgekit.benchmark' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
