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

from edgekit import config
from edgekit.benchmark.measure import benchmark, compare
from edgekit.benchmark.results import BenchmarkFailed, BenchmarkResult, LatencyStats

# The config lives with the others in edgekit.config; kept here under its old name.
BenchmarkConfig = config.BenchmarkConfig

__all__ = [
    "BenchmarkConfig",
    "BenchmarkFailed",
    "BenchmarkResult",
    "LatencyStats",
    "benchmark",
    "compare",
]
