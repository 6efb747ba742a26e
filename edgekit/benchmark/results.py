"""What a benchmark returns: one `LatencyStats` row per model and thread count, and errors.

Low in the package on purpose: the host-side measuring (`measure`) and the SSH
transport (`remote`) both raise `BenchmarkFailed` and build these results.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

from edgekit import config, errors, io
from edgekit.benchmark.harness import report


class BenchmarkFailed(errors.UserInputError):
    """The model could not be measured: the runtime crashed, hung or refused it."""


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """The figures of one model at one thread count, as measured in one process.

    `latency_us` holds mean, std, min, max, p50, p90, p95, p99 of the steady-state
    runs; `memory` the process's RSS before init, the peak added by init and by
    inference, and the peak; `profile` the per-op estimates when asked for;
    `samples_us` every steady-state run's time (evenly subsampled to 2,000 at most).
    """

    model: str
    model_size_bytes: int
    num_threads: int
    use_xnnpack: bool
    signature: str | None
    inputs: list
    input_source: str
    num_input_samples: int
    init_ms: float
    first_inference_us: float
    warmup_runs: int
    warmup_mean_us: float | None
    num_runs: int
    latency_us: dict
    throughput_per_s: float | None
    peak_rss_mb: float | None
    memory: dict
    profile: dict | None = None
    samples_us: list | None = None

    @classmethod
    def from_dict(cls, d: dict) -> LatencyStats:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """One row per thread count (one fresh process each), and where it ran."""

    rows: tuple[LatencyStats, ...]
    environment: dict
    config: config.BenchmarkConfig
    ratios: tuple[dict, ...] = ()

    @property
    def is_comparison(self) -> bool:
        return bool(self.ratios)

    def to_dict(self) -> dict[str, Any]:
        """The first row's figures at the top level, then every row, the environment, the config."""
        out = dict(self.rows[0].to_dict())
        out["rows"] = [r.to_dict() for r in self.rows]
        if self.ratios:
            out["ratios"] = list(self.ratios)
        out["environment"] = self.environment
        out["config"] = self.config.to_dict()
        return out

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> pathlib.Path:
        """Writes `to_dict()` as JSON, atomically."""
        return io.write_json(path, self.to_dict(), overwrite=overwrite)

    def format(self) -> str:
        """A readable report: environment, a table of rows, ratios, profile."""
        return report.format_result(self)
