"""Stability: the same model measured again and again, each time in a fresh process.

Prints each run's p50 and mean, then the spread of the medians (max/min - 1) and
the coefficient of variation within runs, with the load average of the machine, so
a user can tell a quiet machine (medians within 10% of each other) from a busy one.

    python benchmarks/stability.py --model=mobilenet_v2 --repeats=8
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(__file__))
import _models  # noqa: E402

from edgekit import benchmark  # noqa: E402

_MODEL = flags.DEFINE_string("model", "mobilenet_v2", "small_cnn or mobilenet_v2.")
_THREADS = flags.DEFINE_integer("threads", 1, "Threads.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 8, "Fresh processes.", lower_bound=2)
_RUNS = flags.DEFINE_integer("num_runs", 100, "Timed runs per process.", lower_bound=2)


def main(argv: list[str]) -> None:
    del argv
    path = str(getattr(_models, _MODEL.value)())
    cfg = benchmark.BenchmarkConfig(
        num_threads=_THREADS.value,
        num_runs=_RUNS.value,
        min_secs=0.0,
        warmup_runs=10,
        warmup_min_secs=0.0,
    )
    print(
        f"{_MODEL.value}, {_THREADS.value} thread(s), {_RUNS.value} runs per process; "
        f"load average at start {os.getloadavg()}"
    )
    p50s = []
    for i in range(_REPEATS.value):
        lat = benchmark.benchmark(path, cfg).rows[0].latency_us
        p50s.append(lat["p50"])
        print(
            f"  run {i + 1}: p50 {lat['p50']:.1f} us, mean {lat['mean']:.1f} us, "
            f"std/mean {lat['std'] / lat['mean']:.1%}, p99 {lat['p99']:.1f} us",
            flush=True,
        )
    p = np.asarray(p50s)
    print(
        f"medians: min {p.min():.1f}, median {np.median(p):.1f}, max {p.max():.1f} us; "
        f"spread max/min - 1 = {p.max() / p.min() - 1:.1%}; load average at end "
        f"{os.getloadavg()}"
    )


if __name__ == "__main__":
    app.run(main)
