"""int8 versus float32 on the same model and threads, measured interleaved.

`edgekit.benchmark.compare` runs the float32 and the full-int8 conversion of the same
Keras model in one process, alternating A B A B, over the same random inputs; each
int8 run is divided by the float32 run beside it. Repeated --repeats times (fresh
process each) so the spread across processes shows too.

    python benchmarks/int8_vs_float.py --models=mobilenet_v2,small_cnn --threads=1,2
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(__file__))
import _models  # noqa: E402

from edgekit import benchmark  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["mobilenet_v2", "small_cnn"], "Models to measure.")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "Thread counts.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Fresh processes per setting.", lower_bound=1)
_RUNS = flags.DEFINE_integer("num_runs", 100, "Interleaved pairs per process.", lower_bound=2)


def main(argv: list[str]) -> None:
    del argv
    print(f"load average at start: {os.getloadavg()}")
    print(
        "model          thr  float32 p50 us  int8 p50 us   speed-up float/int8 per pair: "
        "median [min, max] of each process; median of medians"
    )
    for name in _MODELS.value:
        fn = getattr(_models, name)
        f32, i8 = str(fn(int8=False)), str(fn(int8=True))
        for t in (int(x) for x in _THREADS.value):
            cfg = benchmark.BenchmarkConfig(
                num_threads=t,
                num_runs=_RUNS.value,
                min_secs=0.0,
                warmup_runs=10,
                warmup_min_secs=0.0,
            )
            meds, parts, p50s = [], [], []
            for _ in range(_REPEATS.value):
                r = benchmark.compare([f32, i8], cfg)
                q = r.ratios[0]  # int8 time / float32 time, pair by pair
                meds.append(1 / q["median"])
                parts.append(f"{1 / q['median']:.2f} [{1 / q['max']:.2f}, {1 / q['min']:.2f}]")
                p50s.append((r.rows[0].latency_us["p50"], r.rows[1].latency_us["p50"]))
            p = np.median(np.asarray(p50s), axis=0)
            print(
                f"{name:<14} {t:>3}  {p[0]:>14.1f}  {p[1]:>11.1f}   {'; '.join(parts)};  "
                f"{np.median(meds):.2f}",
                flush=True,
            )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
