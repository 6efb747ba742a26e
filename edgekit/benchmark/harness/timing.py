"""One model's load, first inference, warm-up and steady state, and its latency figures."""

from __future__ import annotations

import os
import time

from . import inputs, machine, protocol, runner


def latency_stats(times_us: list) -> dict:
    import numpy as np

    a = np.asarray(times_us, dtype=np.float64)
    p = np.percentile(a, [50, 90, 95, 99])
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "p50": float(p[0]),
        "p90": float(p[1]),
        "p95": float(p[2]),
        "p99": float(p[3]),
    }


def loop(steps, *, runs: int, min_secs: float, max_secs: float) -> int:
    """Calls `steps(i)` until `runs` calls and `min_secs` passed, or `max_secs` passed."""
    start = time.perf_counter()
    i = 0
    while True:
        steps(i)
        i += 1
        elapsed = time.perf_counter() - start
        if elapsed >= max_secs or (i >= runs and elapsed >= min_secs):
            return i


class Measured:
    """Load, first inference and warm-up of one model, then its steady-state times."""

    def __init__(self, entry: dict, spec: dict, base: str) -> None:
        path = os.path.join(base, entry["path"])
        self.name = entry.get("name") or os.path.basename(path)
        machine.reset_peak_rss()
        rss0 = machine.rss_mb()
        protocol.stage(f"init (load + allocate) of {self.name}")
        t0 = time.perf_counter()  # init = read the file + build the interpreter + allocate
        with open(path, "rb") as f:
            content = f.read()
        self.size = len(content)
        interp = runner.make_interpreter(content, spec["num_threads"], spec["use_xnnpack"])
        self.runner = runner.Runner(interp, spec.get("signature"))
        self.init_ms = (time.perf_counter() - t0) * 1000.0
        self.rss_after_init = machine.rss_mb()
        self.init_peak = machine.peak_rss_mb()
        self.rss_before = rss0
        if spec.get("input_data"):
            self.feed_sets = inputs.load_input_data(
                os.path.join(base, spec["input_data"]), self.runner.inputs
            )
            self.input_source = "input_data"
        else:
            self.feed_sets = [inputs.random_feeds(self.runner.inputs, spec["seed"])]
            self.input_source = f"random (seed {spec['seed']})"
        self.runner.set_inputs(self.feed_sets[0])
        machine.reset_peak_rss()
        protocol.stage(f"the first inference of {self.name}")
        self.first_us = runner.timed(self.runner.invoke)
        self.warm: list = []
        self.times: list = []

    def step(self, i: int, out: list) -> None:
        if len(self.feed_sets) > 1:  # real data: a new sample each run, set outside the timing
            self.runner.set_inputs(self.feed_sets[i % len(self.feed_sets)])
        out.append(runner.timed(self.runner.invoke))

    def result(self, spec: dict) -> dict:
        import numpy as np

        peak = machine.peak_rss_mb()
        lat = latency_stats(self.times)
        mem = {
            "rss_before_init_mb": self.rss_before,
            "init_added_mb": _sub(self.init_peak, self.rss_before),
            "inference_added_mb": _sub(peak, self.rss_after_init),
            "peak_rss_mb": max(x for x in (peak, self.init_peak) if x is not None)
            if peak
            else None,
        }
        return {
            "model": self.name,
            "model_size_bytes": self.size,
            "num_threads": spec["num_threads"],
            "use_xnnpack": spec["use_xnnpack"],
            "signature": spec.get("signature"),
            "inputs": [
                {"name": s["name"], "shape": s["shape"], "dtype": s["dtype"]}
                for s in self.runner.inputs
            ],
            "input_source": self.input_source,
            "num_input_samples": len(self.feed_sets),
            "init_ms": self.init_ms,
            "first_inference_us": self.first_us,
            "warmup_runs": len(self.warm),
            "warmup_mean_us": float(np.mean(self.warm)) if self.warm else None,
            "num_runs": len(self.times),
            "latency_us": lat,
            "throughput_per_s": 1e6 / lat["mean"] if lat["mean"] > 0 else None,
            "peak_rss_mb": mem["peak_rss_mb"],
            "memory": mem,
            # Every steady-state run, for distribution plots; capped so a long run's
            # JSON stays small (an even subsample keeps the shape).
            "samples_us": subsample(self.times, 2000),
        }


def subsample(times: list, limit: int) -> list:
    if len(times) <= limit:
        return [round(float(t), 3) for t in times]
    step = len(times) / float(limit)
    return [round(float(times[int(i * step)]), 3) for i in range(limit)]


def _sub(a, b):
    return None if a is None or b is None else max(0.0, a - b)
