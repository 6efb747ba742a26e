"""Load test of edgekit-serve on loopback: latency, throughput, overhead, memory.

Starts `edgekit-serve` on 127.0.0.1 (only) on a bundle, then sends V1 predict requests
(one sample each, TensorFlow Serving's `{"instances": [...]}`) from 1, 4 and 16
concurrent clients, each on its own keep-alive connection. Bounded: `--requests` in
total (split 20/40/40 % over the three levels) and `--max_seconds` of wall time; it
stops by itself. Prints, per level: requests, errors, p50/p99 latency as the client
sees it (client time included: the load generator shares the machine), throughput,
and the server's overhead per request over an in-process `LiteModel.predict` of the
same sample (p50 at 1 client minus the in-process p50). Then the server's resident
memory (VmRSS) after the first 1,000 requests and at the end.

    python benchmarks/serve_load.py                      # small_cnn int8 bundle, 10,000 requests
    python benchmarks/serve_load.py --bundle=DIR --workers=2 --num_threads=1
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(__file__))

_BUNDLE = flags.DEFINE_string(
    "bundle", None, "Bundle to serve; default: small_cnn int8 (benchmarks/_models.py)."
)
_REQUESTS = flags.DEFINE_integer("requests", 10_000, "Requests in total.", lower_bound=100)
_MAX_SECONDS = flags.DEFINE_float("max_seconds", 900.0, "Wall-time bound for all levels.")
_LEVELS = flags.DEFINE_list("clients", ["1", "4", "16"], "Concurrent clients per level.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Server --workers.", lower_bound=1)
_THREADS = flags.DEFINE_integer("num_threads", 1, "Server --num_threads.", lower_bound=1)

HOST = "127.0.0.1"  # loopback only: this script never talks to another machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _rss_kb(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def _default_bundle(root: pathlib.Path) -> str:
    import _models

    from edgekit import bundle

    out = root / "small_cnn_int8"
    bundle.export(_models.small_cnn(int8=True), out)
    return str(out)


class Load:
    """Shared counters of one run: how many requests went out, errors, RSS marks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.lock = threading.Lock()
        self.sent = 0
        self.rss_at_1000: int | None = None

    def take(self, budget_end: int, deadline: float) -> bool:
        with self.lock:
            if self.sent >= budget_end or time.monotonic() > deadline:
                return False
            self.sent += 1
            if self.sent == 1000:
                self.rss_at_1000 = _rss_kb(self.pid)
            return True


def _client(port, path, body, load, budget_end, deadline, lat, errs):
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    headers = {"Content-Type": "application/json"}
    while load.take(budget_end, deadline):
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body, headers)
            r = conn.getresponse()
            r.read()
            ok = r.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
        dt = time.perf_counter() - t0
        if ok:
            lat.append(dt)
        else:
            errs.append(dt)
    conn.close()


def main(argv: list[str]) -> None:
    del argv
    from edgekit.runtime import LiteModel

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="serve-load-"))
    bundle_dir = _BUNDLE.value or _default_bundle(tmp)
    model_path = pathlib.Path(bundle_dir) / "model.tflite"
    lm = LiteModel(str(model_path), num_threads=_THREADS.value)
    spec = lm.inputs[0]
    x = np.random.default_rng(0).random((1, *spec.shape_signature[1:]), dtype=np.float32)
    want = lm.predict(x)
    for _ in range(50):
        lm.predict(x)
    inproc = []
    for _ in range(1000):
        t0 = time.perf_counter()
        lm.predict(x)
        inproc.append(time.perf_counter() - t0)
    inproc_p50 = float(np.median(inproc)) * 1e3

    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "edgekit.cli.serve",
        f"--bundle={bundle_dir}",
        "--model_name=m",
        f"--host={HOST}",
        f"--http_port={port}",
        "--nogrpc",
        f"--workers={_WORKERS.value}",
        f"--num_threads={_THREADS.value}",
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        path, body = "/v1/models/m:predict", json.dumps({"instances": x.tolist()}).encode()
        deadline0 = time.monotonic() + 180
        while True:
            try:
                c = http.client.HTTPConnection(HOST, port, timeout=5)
                c.request("POST", path, body, {"Content-Type": "application/json"})
                r = c.getresponse()
                first = json.loads(r.read())
                c.close()
                if r.status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline0:
                raise SystemExit(f"server did not start: {server.stderr.read()[-2000:]}")
            time.sleep(0.3)
        got = np.asarray(first["predictions"], np.float32)
        print(
            f"bundle {bundle_dir}: input {list(spec.shape_signature)} {spec.dtype}; served output "
            f"bit-equal to in-process LiteModel.predict: {bool(np.array_equal(got, want))}"
        )
        print(
            f"server: --workers={_WORKERS.value} --num_threads={_THREADS.value}, loopback; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; request body "
            f"{len(body)} bytes (one sample, V1 instances)"
        )
        print(f"in-process LiteModel.predict, 1 sample, p50 {inproc_p50:.3f} ms (1,000 calls)\n")

        load = Load(server.pid)
        levels = [int(c) for c in _LEVELS.value]
        shares = [0.2, 0.4, 0.4] if len(levels) == 3 else [1 / len(levels)] * len(levels)
        start_all = time.monotonic()
        deadline = start_all + _MAX_SECONDS.value
        rows, budget_end = [], 0
        for clients, share in zip(levels, shares, strict=True):
            budget_end += int(round(_REQUESTS.value * share))
            lat: list[float] = []
            errs: list[float] = []
            threads = [
                threading.Thread(
                    target=_client, args=(port, path, body, load, budget_end, deadline, lat, errs)
                )
                for _ in range(clients)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            a = np.asarray(lat) * 1e3
            rows.append(
                (
                    clients,
                    len(lat) + len(errs),
                    len(errs),
                    float(np.percentile(a, 50)) if len(a) else float("nan"),
                    float(np.percentile(a, 99)) if len(a) else float("nan"),
                    len(lat) / wall if wall else 0.0,
                )
            )
        rss_end = _rss_kb(server.pid)
        overhead = rows[0][3] - inproc_p50
        print("| clients | requests | errors | p50 ms | p99 ms | throughput req/s |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.0f} |")
        print(
            f"\nserver overhead per request (p50 at 1 client - in-process p50): {overhead:.2f} ms"
        )
        total = load.sent
        if load.rss_at_1000 is not None:
            change = rss_end / load.rss_at_1000 - 1
            print(
                f"server RSS after the first 1,000 requests {load.rss_at_1000 / 1024:.1f} MiB, "
                f"after {total:,} requests {rss_end / 1024:.1f} MiB ({change:+.1%}; "
                f"{'within' if abs(change) <= 0.05 else 'NOT within'} 5%)"
            )
        print(f"wall time {time.monotonic() - start_all:.1f} s; load average {os.getloadavg()}")
    finally:
        server.terminate()
        try:
            code = server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
        print(f"server exit status after SIGTERM: {code}")


if __name__ == "__main__":
    app.run(main)
