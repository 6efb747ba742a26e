"""The measuring side of `edgekit.benchmark`: one fresh process per measurement.

This file is self-contained on purpose. It imports only the standard library,
numpy and ai-edge-litert, and nothing from edgekit (the per-op profile lives beside
it in `_bench_profile.py`, same rules), so the same files are copied to a remote
device and run there with the device's Python (3.8 or newer). Run as:

    python _bench_child.py SPEC.json RESULT.json

SPEC.json says what to measure (see `edgekit.benchmark._child_spec`); paths in it
are relative to the folder of SPEC.json. RESULT.json gets `{"ok": true, ...}` or
`{"ok": false, "error": {"kind": ..., "message": ...}}`. If the runtime crashes or
hangs, no result is written: the parent sees the signal or the timeout. Progress
markers on stderr (`edgekit-bench-stage: ...`) tell the parent where it happened.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

_STAGE_PREFIX = "edgekit-bench-stage: "
_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")


class ChildError(Exception):
    """An error to report to the parent as a message, with a kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def stage(name: str) -> None:
    sys.stderr.write(_STAGE_PREFIX + name + "\n")
    sys.stderr.flush()


# -- environment and memory ---------------------------------------------------


def _proc_status() -> dict:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) / 1024.0  # kB -> MiB
    except OSError:
        pass
    return out


def rss_mb() -> float | None:
    return _proc_status().get("VmRSS")


def peak_rss_mb() -> float | None:
    peak = _proc_status().get("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return ru / (1024.0 * 1024.0) if sys.platform == "darwin" else ru / 1024.0
    except (ImportError, OSError):
        return None


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so peaks can be attributed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_model() -> tuple:
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key and key not in fields:
                    fields[key] = value.strip()
    except OSError:
        pass
    for key in ("model name", "hardware", "processor", "cpu model"):
        value = fields.get(key, "")
        if value and not value.isdigit():
            name = value
            break
    else:
        name = platform.processor() or ""
    try:
        with open("/proc/device-tree/model", "rb") as f:
            board = f.read().rstrip(b"\0").decode("utf-8", "replace")
        name = f"{name} ({board})" if name else board
    except OSError:
        pass
    if not name and fields.get("cpu part"):
        name = f"ARM CPU part {fields['cpu part']}"
    flags = (fields.get("flags") or fields.get("features") or "").split()
    return name or platform.machine(), [f for f in _ISA_FLAGS if f in flags]


def _load_average():
    """The 1-minute load average (runnable processes), or None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def environment(num_threads: int | None, use_xnnpack: bool) -> dict:
    name, isa = cpu_model()
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        from importlib import metadata

        litert = metadata.version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - a missing distribution record must not stop a run
        litert = None
    import numpy as np

    return {
        "cpu_model": name,
        "isa_features": isa,
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "cpu_affinity": affinity,
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "litert_version": litert,
        "num_threads": num_threads,
        "use_xnnpack": use_xnnpack,
        "load_average_start": _load_average(),
    }


# -- models and inputs ----------------------------------------------------------


def _interpreter_module():
    try:
        from ai_edge_litert import interpreter
    except ImportError as e:
        raise ChildError(
            "missing_runtime",
            f"ai-edge-litert cannot be imported with {sys.executable} ({e}). Install it on "
            "this machine with `pip install ai-edge-litert` (and numpy).",
        ) from None
    return interpreter


def make_interpreter(content: bytes, num_threads: int | None, use_xnnpack: bool):
    mod = _interpreter_module()
    kwargs = {"model_content": content}
    if num_threads is not None:
        kwargs["num_threads"] = num_threads
    if not use_xnnpack:
        kwargs["experimental_op_resolver_type"] = (
            mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
    try:
        interp = mod.Interpreter(**kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ChildError("user", f"The interpreter could not load the model: {e}") from None
    return interp


class Runner:
    """One loaded model: its input tensors, and an `invoke` to time."""

    def __init__(self, interp, signature: str | None) -> None:
        self.interp = interp
        self.subgraph = 0
        if signature:
            sigs = interp.get_signature_list()
            if signature not in sigs:
                raise ChildError(
                    "user",
                    f"The model has no signature {signature!r}; its signatures are "
                    f"{sorted(sigs)}. Pass one of them, or leave the signature unset.",
                )
            runner = interp.get_signature_runner(signature)
            self.subgraph = runner._subgraph_index
            details = list(runner.get_input_details().values())
            wrapper = interp._interpreter
            sub = self.subgraph
            self._set = lambda index, value: wrapper.SetTensor(index, value, sub)
            self.invoke = lambda: wrapper.Invoke(sub)
        else:
            details = interp.get_input_details()
            self._set = interp.set_tensor
            self.invoke = interp.invoke
        self.inputs = [_spec(d) for d in details]

    def set_inputs(self, feeds: list) -> None:
        for spec, value in zip(self.inputs, feeds):  # noqa: B905 (Python 3.8+)
            self._set(spec["index"], value)


def _spec(d: dict) -> dict:
    import numpy as np

    qp = d.get("quantization_parameters") or {}
    scales = list(qp.get("scales", []))
    scale, zp = d.get("quantization", (0.0, 0))
    quantized = bool(len(scales)) and float(scale) != 0.0
    return {
        "name": str(d["name"]),
        "index": int(d["index"]),
        "shape": [int(x) for x in d["shape"]],
        "shape_signature": [int(x) for x in d.get("shape_signature", d["shape"])],
        "dtype": np.dtype(d["dtype"]).name,
        "scale": float(scale) if quantized else None,
        "zero_point": int(zp) if quantized else None,
    }


def random_feeds(specs: list, seed: int) -> list:
    """Random inputs spread over each input's range, the same stream for equal shapes."""
    import numpy as np

    feeds = []
    for i, spec in enumerate(specs):
        rng = np.random.default_rng([seed, i])
        u = rng.random(spec["shape"])
        dtype = spec["dtype"]
        if dtype in ("float32", "float16", "float64"):
            a = (2.0 * u - 1.0).astype(dtype)
        elif dtype in _INT_RANGES and spec["scale"] is not None:
            lo, hi = _INT_RANGES[dtype]
            a = np.floor(lo + u * (hi - lo + 1)).clip(lo, hi).astype(dtype)
        elif dtype == "bool":
            a = u < 0.5
        else:  # ids, counts: small non-negative values are valid for any embedding
            a = np.floor(u * 10).astype(dtype)
        feeds.append(a)
    return feeds


def load_input_data(path: str, specs: list) -> list:
    """Reads `.npy`/`.npz` input data and checks it against the inputs; returns feed sets."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ChildError(
            "user", f"Could not read the input data {path!r} as .npy/.npz: {e}"
        ) from None
    names = [s["name"] for s in specs]
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise ChildError(
                "user",
                f"The model has {len(specs)} inputs {names}; a .npy file holds one array. Pass "
                "an .npz file with one array per input name.",
            )
        arrays = [loaded]
    else:
        keys = list(loaded.files)
        if all(n in keys for n in names):
            arrays = [loaded[n] for n in names]
        elif len(keys) == len(specs):
            arrays = [loaded[k] for k in keys]
        else:
            raise ChildError(
                "user",
                f"The .npz file has arrays {keys}; the model's inputs are {names}. Name the "
                "arrays after the inputs (or give exactly one array per input, in order).",
            )
    per_input = [_samples(a, s) for a, s in zip(arrays, specs)]  # noqa: B905 (Python 3.8+)
    n = min(len(p) for p in per_input)
    return [[p[i] for p in per_input] for i in range(n)]


def _samples(a, spec: dict) -> list:
    import numpy as np

    shape = list(spec["shape"])
    dtype = np.dtype(spec["dtype"])
    got = list(a.shape)
    if got == shape:
        samples = [a]
    elif len(got) == len(shape) + 1 and got[1:] == shape and got[0] >= 1:
        samples = [a[i] for i in range(got[0])]
    elif len(got) == len(shape) and got[1:] == shape[1:] and shape[0] == 1 and got[0] >= 1:
        samples = [a[i : i + 1] for i in range(got[0])]
    else:
        raise ChildError(
            "user",
            f"Input data for {spec['name']!r} has shape {got}; the input takes shape {shape} "
            f"(or a stack of them, {['N'] + shape}). Reshape the data or check that it belongs "
            f"to this model. Received: shape={got}, dtype={a.dtype.name!r}",
        )
    if a.dtype == dtype:
        return [np.ascontiguousarray(s) for s in samples]
    if spec["scale"] is not None and a.dtype.kind == "f" and dtype.name in _INT_RANGES:
        lo, hi = _INT_RANGES[dtype.name]
        return [
            np.clip(np.round(s / spec["scale"] + spec["zero_point"]), lo, hi).astype(dtype)
            for s in samples
        ]
    if a.dtype.kind == dtype.kind and np.can_cast(a.dtype, dtype, "same_kind"):
        return [np.ascontiguousarray(s, dtype=dtype) for s in samples]
    raise ChildError(
        "user",
        f"Input data for {spec['name']!r} is {a.dtype.name}; the input takes {dtype.name}"
        + (" (float data is quantized with the input's scale)" if spec["scale"] is not None else "")
        + ". Convert the data the way the model was trained (for example scale images to "
        f"float32). Received: shape={got}, dtype={a.dtype.name!r}",
    )


# -- timing --------------------------------------------------------------------


def _timed(invoke) -> float:
    pc = time.perf_counter_ns
    t0 = pc()
    invoke()
    return (pc() - t0) / 1000.0


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


def _loop(steps, *, runs: int, min_secs: float, max_secs: float) -> int:
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
        reset_peak_rss()
        rss0 = rss_mb()
        stage(f"init (load + allocate) of {self.name}")
        t0 = time.perf_counter()  # init = read the file + build the interpreter + allocate
        with open(path, "rb") as f:
            content = f.read()
        self.size = len(content)
        interp = make_interpreter(content, spec["num_threads"], spec["use_xnnpack"])
        self.runner = Runner(interp, spec.get("signature"))
        self.init_ms = (time.perf_counter() - t0) * 1000.0
        self.rss_after_init = rss_mb()
        self.init_peak = peak_rss_mb()
        self.rss_before = rss0
        if spec.get("input_data"):
            self.feed_sets = load_input_data(
                os.path.join(base, spec["input_data"]), self.runner.inputs
            )
            self.input_source = "input_data"
        else:
            self.feed_sets = [random_feeds(self.runner.inputs, spec["seed"])]
            self.input_source = f"random (seed {spec['seed']})"
        self.runner.set_inputs(self.feed_sets[0])
        reset_peak_rss()
        stage(f"the first inference of {self.name}")
        self.first_us = _timed(self.runner.invoke)
        self.warm: list = []
        self.times: list = []

    def step(self, i: int, out: list) -> None:
        if len(self.feed_sets) > 1:  # real data: a new sample each run, set outside the timing
            self.runner.set_inputs(self.feed_sets[i % len(self.feed_sets)])
        out.append(_timed(self.runner.invoke))

    def result(self, spec: dict) -> dict:
        import numpy as np

        peak = peak_rss_mb()
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
            "samples_us": _subsample(self.times, 2000),
        }


def _subsample(times: list, limit: int) -> list:
    if len(times) <= limit:
        return [round(float(t), 3) for t in times]
    step = len(times) / float(limit)
    return [round(float(times[int(i * step)]), 3) for i in range(limit)]


def _sub(a, b):
    return None if a is None or b is None else max(0.0, a - b)


def measure(spec: dict, base: str) -> dict:
    import numpy as np

    models = [Measured(e, spec, base) for e in spec["models"]]
    # Warm-up and the steady state interleave the models (A B A B ...), so drift in
    # clock speed or background load hits every model alike.
    stage("warm-up")
    if spec["warmup_runs"] > 0 or spec["warmup_min_secs"] > 0:
        _loop(
            lambda i: [m.step(i, m.warm) for m in models],
            runs=spec["warmup_runs"],
            min_secs=spec["warmup_min_secs"],
            max_secs=max(spec["warmup_min_secs"], spec["max_secs"]),
        )
    stage("steady state")
    _loop(
        lambda i: [m.step(i, m.times) for m in models],
        runs=spec["num_runs"],
        min_secs=spec["min_secs"],
        max_secs=spec["max_secs"],
    )
    results = [m.result(spec) for m in models]
    ratios = []
    base_t = np.asarray(models[0].times)
    for m in models[1:]:
        r = np.asarray(m.times) / base_t
        ratios.append(
            {
                "model": m.name,
                "baseline": models[0].name,
                "pairs": len(r),
                "min": float(r.min()),
                "median": float(np.median(r)),
                "max": float(r.max()),
                "mean_ratio": float(np.mean(m.times) / np.mean(models[0].times)),
            }
        )
    if spec.get("profile"):
        stage("profile")
        results[0]["profile"] = _profile_module().profile(models[0], spec, sys.modules[__name__])
    return {"models": results, "ratios": ratios}


def _profile_module():
    # Beside this file both in the package and in the folder shipped to a device.
    try:
        from edgekit import _bench_profile
    except ImportError:
        import _bench_profile
    return _bench_profile


# -- entry point -----------------------------------------------------------------


def run(spec_path: str) -> dict:
    with open(spec_path) as f:
        spec = json.load(f)
    base = os.path.dirname(os.path.abspath(spec_path))
    spec["_base"] = base
    if spec.get("cpu_affinity"):
        cores = [int(c) for c in spec["cpu_affinity"]]
        try:
            os.sched_setaffinity(0, cores)
        except AttributeError:
            raise ChildError("user", "CPU affinity is not supported on this platform.") from None
        except OSError as e:
            have = sorted(os.sched_getaffinity(0))
            raise ChildError(
                "user",
                f"Cannot pin to cores {cores} ({e}); this machine lets the process use cores "
                f"{have}. Pass a subset of them. Received: cpu_affinity={cores}",
            ) from None
    _interpreter_module()  # a missing runtime is reported as such, not as a crash
    env = environment(spec["num_threads"], spec["use_xnnpack"])
    out = measure(spec, base)
    env["load_average_end"] = _load_average()
    out["environment"] = env
    out["ok"] = True
    return out


def main(argv: list) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: _bench_child.py SPEC.json RESULT.json\n")
        return 64
    try:
        result = run(argv[1])
    except ChildError as e:
        result = {"ok": False, "error": {"kind": e.kind, "message": str(e)}}
    except MemoryError:
        result = {"ok": False, "error": {"kind": "runtime", "message": "out of memory"}}
    except Exception as e:  # noqa: BLE001 - reported to the parent with its type
        result = {"ok": False, "error": {"kind": "runtime", "message": f"{type(e).__name__}: {e}"}}
    tmp = argv[2] + ".partial"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
