"""Fidelity of edgekit-benchmark: against benchmark_litert_model.py and a bare invoke loop.

For each model and thread count, three measurements alternate for --rounds rounds
(A B C A B C ..., each in a fresh process, so drift hits all alike):

  A. edgekit.benchmark.benchmark (the harness, in its child process);
  B. ai_edge_litert/tools/benchmark_litert_model.py, the LiteRT peer, run unmodified
     on the same file with the same threads, runs and warm-up; its raw per-run times
     are captured (its printed figures are rounded to 10 us) by wrapping its
     `statistics.mean`;
  C. the harness's overhead: in one process, the harness's own timed loop
     (`harness.timing.Measured.step`, as used by A) and a bare loop (`invoke()` N times,
     total time / N, no per-run timing) alternate in blocks of --block_runs runs on the same
     interpreter; the overhead is the median over blocks of (harness mean - bare mean).
     Also the floor of the harness's timer: the median time it reports for a no-op.

  D. why A and B can differ on tiny models: in one process, blocks of the peer's call
     (`CompiledModel.run_by_name`) and of `Interpreter.invoke()` alternate on the same
     file; the median per-call times show the two APIs' own costs.

Printed: the medians over rounds of A's and B's means, of A/B per round (with its
range), and of C (with its range); also the load average, because on a busy machine
the ranges say more than the medians. Targets: A within 5% of B, C at most 20 us.

    python benchmarks/fidelity.py --models=small_cnn,mobilenet_v2 --threads=1,2
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(__file__))
import _models  # noqa: E402

from edgekit import benchmark  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["small_cnn", "mobilenet_v2"], "Models to measure.")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "Thread counts.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Rounds of A B C.", lower_bound=1)
_RUNS = flags.DEFINE_integer("num_runs", 200, "Timed runs per measurement.", lower_bound=2)
_BLOCKS = flags.DEFINE_integer("blocks", 100, "Blocks of the overhead measurement.", lower_bound=2)
_BLOCK_RUNS = flags.DEFINE_integer("block_runs", 20, "Runs per overhead block.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup_runs", 20, "Warm-up runs per measurement.", lower_bound=0)

_PEER = """
import json, statistics, sys, types
sys.path.insert(0, {tools!r})
import benchmark_litert_model as peer
captured = []
def mean(xs):
    captured.append(list(xs))
    return statistics.mean(xs)
peer.statistics = types.SimpleNamespace(mean=mean, stdev=statistics.stdev, median=statistics.median)
sys.argv = ["benchmark_litert_model.py", "--model={model}", "--num_threads={threads}",
            "--num_runs={runs}", "--warmup_runs={warmup}"]
peer.main()
json.dump([t * 1000.0 for t in captured[0]], open(OUT_PATH, "w"))
"""

_API = """
import json, time
import numpy as np
from ai_edge_litert.compiled_model import CompiledModel
from ai_edge_litert.environment import Environment, EnvironmentOptions
from ai_edge_litert.hardware_accelerator import HardwareAccelerator
from ai_edge_litert.options import CpuOptions, Options
from ai_edge_litert import interpreter as I
env = Environment.create(options=EnvironmentOptions())
cm = CompiledModel.from_file({model!r}, environment=env, options=Options(
    hardware_accelerators=HardwareAccelerator(HardwareAccelerator.CPU),
    cpu_options=CpuOptions(num_threads={threads})))
sig = list(cm.get_signature_list().keys())[0]
ins = {{n: cm.create_input_buffer_by_name(sig, n) for n in cm.get_input_tensor_details(sig)}}
outs = {{n: cm.create_output_buffer_by_name(sig, n) for n in cm.get_output_tensor_details(sig)}}
it = I.Interpreter(model_path={model!r}, num_threads={threads})
it.allocate_tensors()
for d in it.get_input_details():
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
def block(f):
    ts = []
    for _ in range({block_runs}):
        t0 = time.perf_counter_ns()
        f()
        ts.append(time.perf_counter_ns() - t0)
    return float(np.median(ts)) / 1000
run = lambda: cm.run_by_name(sig, ins, outs)
for _ in range({warmup}):
    run(); it.invoke()
a, b = [], []
for _ in range({blocks}):
    a.append(block(run)); b.append(block(it.invoke))
json.dump([float(np.median(a)), float(np.median(b))], open(OUT_PATH, "w"))
"""

_OVERHEAD = """
import json, os, time
import numpy as np
from edgekit.benchmark.harness import runner, timing
spec = dict(num_threads={threads}, use_xnnpack=True, seed=0)
m = timing.Measured({{"path": os.path.basename({model!r})}}, spec, os.path.dirname({model!r}))
for _ in range({warmup}):
    m.runner.invoke()
diffs = []
for _ in range({blocks}):
    m.times = []
    for i in range({block_runs}):
        m.step(i, m.times)
    t0 = time.perf_counter()
    for _ in range({block_runs}):
        m.runner.invoke()
    bare = (time.perf_counter() - t0) / {block_runs} * 1e6
    diffs.append(float(np.mean(m.times)) - bare)
noop = float(np.median([runner.timed(lambda: None) for _ in range(20000)]))
json.dump({{"diffs": diffs, "noop": noop}}, open(OUT_PATH, "w"))
"""


def _child(code: str) -> object:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.json")
        subprocess.run(
            [sys.executable, "-c", code.replace("OUT_PATH", repr(out))],
            check=True,
            capture_output=True,
            timeout=900,
        )
        with open(out) as f:
            return json.load(f)


def measure(model: str, threads: int) -> dict:
    tools = os.path.join(os.path.dirname(__import__("ai_edge_litert").__file__), "tools")
    fmt = dict(
        model=model,
        threads=threads,
        runs=_RUNS.value,
        warmup=_WARMUP.value,
        tools=tools,
        blocks=_BLOCKS.value,
        block_runs=_BLOCK_RUNS.value,
    )
    cfg = benchmark.BenchmarkConfig(
        num_threads=threads,
        num_runs=_RUNS.value,
        min_secs=0.0,
        warmup_runs=_WARMUP.value,
        warmup_min_secs=0.0,
    )
    ours, peer, ours50, peer50 = [], [], [], []
    for _ in range(_ROUNDS.value):
        lat = benchmark.benchmark(model, cfg).rows[0].latency_us
        ours.append(lat["mean"])
        ours50.append(lat["p50"])
        times = _child(_PEER.format(**fmt))
        peer.append(float(np.mean(times)))
        peer50.append(float(np.median(times)))
    oh = _child(_OVERHEAD.format(**fmt))
    overhead, noop = np.asarray(oh["diffs"]), oh["noop"]
    api_peer, api_invoke = _child(_API.format(**fmt))
    ours, peer = np.asarray(ours), np.asarray(peer)
    return {
        "ours": ours,
        "peer": peer,
        "ratio": ours / peer,
        "overhead": overhead,
        "noop": noop,
        "api": (api_peer, api_invoke),
        "ratio50": np.asarray(ours50) / np.asarray(peer50),
    }


def main(argv: list[str]) -> None:
    del argv
    print(
        f"runs {_RUNS.value}, warm-up {_WARMUP.value}, rounds {_ROUNDS.value}; means in us; "
        f"load average at start {os.getloadavg()}"
    )
    print(
        "model          thr  edgekit mean  peer mean   edgekit/peer (median [min, max])"
        "   same for p50   overhead vs bare invoke loop, us (median [min, max])"
    )
    for name in _MODELS.value:
        path = str(getattr(_models, name)())
        for t in (int(x) for x in _THREADS.value):
            r = measure(path, t)
            print(
                f"{name:<14} {t:>3}  {np.median(r['ours']):>12.1f}  {np.median(r['peer']):>9.1f}   "
                f"{np.median(r['ratio']):.3f} "
                f"[{r['ratio'].min():.3f}, {r['ratio'].max():.3f}]   "
                f"{np.median(r['ratio50']):.3f} [{r['ratio50'].min():.3f}, {r['ratio50'].max():.3f}]"
                f"   {np.median(r['overhead']):+.2f} "
                f"[{np.percentile(r['overhead'], 10):+.2f}, {np.percentile(r['overhead'], 90):+.2f}] (10th-90th pct); timer on a no-op {r['noop']:.2f}; "
                f"per call, run_by_name {r['api'][0]:.1f} vs invoke {r['api'][1]:.1f}",
                flush=True,
            )
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
