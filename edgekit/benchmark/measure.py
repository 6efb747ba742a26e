"""Latency and memory of a `.tflite` model on this CPU or on a device over SSH.

The controls follow TFLite's `benchmark_model` (threads, warm-up, runs, minimum and
maximum seconds, XNNPack on or off, CPU affinity), measured from Python. Every
measurement runs in a fresh child process (`edgekit/benchmark/harness/`, which
needs only numpy and ai-edge-litert), so memory figures belong to that model alone and a
model that crashes the runtime or hangs becomes a `BenchmarkFailed` error here
instead of taking the caller down.

Timing: inputs are set once (or once per run, outside the timed region, when real
data has several samples) and only `invoke()` is timed, with `perf_counter_ns`.

Example:
    >>> cfg = BenchmarkConfig(num_threads=2, num_runs=100)
    >>> result = edgekit.benchmark.benchmark("model.tflite", cfg)
    >>> result.rows[0].latency_us["p50"]

On a device with only numpy and ai-edge-litert: `python -m edgekit.benchmark --model=m.tflite`.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from edgekit import config, errors, runtime
from edgekit.benchmark import harness, remote, results
from edgekit.benchmark.harness import protocol
from edgekit.lite import validate as lite_validate

PathOrBytes = str | os.PathLike | bytes

# The folder run as the measuring process, here and (copied) on a device.
HARNESS_DIR = pathlib.Path(harness.__file__).parent


# -- public entry points ----------------------------------------------------------


def benchmark(
    model: PathOrBytes,
    cfg: config.BenchmarkConfig | None = None,
    *,
    input_data: str | os.PathLike | None = None,
) -> results.BenchmarkResult:
    """Measures one model: one fresh process per thread count.

    Args:
      model: a `.tflite` path or its bytes.
      cfg: how to measure; defaults to `BenchmarkConfig()`.
      input_data: a `.npy` (one input) or `.npz` (arrays named after the inputs) file
        of real inputs; either exactly one input's shape or a stack of them. Default:
        seeded random values over each input's range.

    Returns:
      A `BenchmarkResult` with one `LatencyStats` row per thread count.

    Raises:
      UserInputError: bad file, bad options or input data that does not fit.
      BenchmarkFailed: the runtime crashed, hung, or is missing on the target.
    """
    cfg = cfg or config.BenchmarkConfig()
    return measure_models([model], cfg, input_data=input_data, validate=True)


def compare(
    models: Sequence[PathOrBytes],
    cfg: config.BenchmarkConfig | None = None,
    *,
    input_data: str | os.PathLike | None = None,
) -> results.BenchmarkResult:
    """Measures models interleaved (A B A B ...) in one process over the same inputs.

    Each later model's per-run time is divided by the first model's time in the same
    round; `ratios` gives min / median / max of those pairs. Memory figures in a
    comparison belong to the process holding all the models.

    Raises:
      UserInputError, BenchmarkFailed: as `benchmark`.
    """
    cfg = cfg or config.BenchmarkConfig()
    if isinstance(models, (str, bytes, os.PathLike)) or len(models) < 2:
        raise errors.UserInputError(
            "compare needs at least two models (the first is the baseline). "
            + errors.received(models=models if isinstance(models, str) else len(models))
        )
    if cfg.threads_sweep or cfg.profile:
        raise errors.UserInputError(
            "compare runs the models at one thread count without a profile; drop "
            "threads_sweep/profile or measure the models one at a time. "
            + errors.received(threads_sweep=list(cfg.threads_sweep), profile=cfg.profile)
        )
    return measure_models(list(models), cfg, input_data=input_data, validate=True)


# -- running a child ------------------------------------------------------------


def measure_models(
    models: list[PathOrBytes],
    cfg: config.BenchmarkConfig,
    *,
    input_data: str | os.PathLike | None,
    validate: bool,
) -> results.BenchmarkResult:
    files: dict[str, bytes] = {}
    entries = []
    for i, m in enumerate(models):
        data = runtime.read_model_bytes(m)
        if validate:
            lite_validate.check_model_bytes(data)
        name = "<bytes>" if isinstance(m, (bytes, bytearray, memoryview)) else str(m)
        files[f"model{i}.tflite"] = data
        entries.append({"path": f"model{i}.tflite", "name": name})
    data_name = None
    if input_data is not None:
        files["input" + _input_suffix(input_data)] = pathlib.Path(input_data).read_bytes()
        data_name = "input" + _input_suffix(input_data)
    if cfg.cpu_affinity and cfg.target is None:
        _check_affinity(cfg.cpu_affinity)
    rows: list[results.LatencyStats] = []
    env: dict = {}
    ratios: tuple[dict, ...] = ()
    for threads in cfg.threads_sweep or (cfg.num_threads,):
        spec = child_spec(cfg, entries, data_name, threads)
        timeout = cfg.timeout_for(len(entries))
        if cfg.target is None:
            out = run_local(files, spec, timeout=timeout)
        else:
            out = remote.run(files, spec, cfg, timeout=timeout, harness=harness_files())
        out = check_result(out, entries)
        env = out["environment"]
        rows.extend(results.LatencyStats.from_dict(r) for r in out["models"])
        ratios = tuple(out.get("ratios") or ())
    if cfg.target is not None:
        env = {**env, "target": cfg.target}
    return results.BenchmarkResult(rows=tuple(rows), environment=env, config=cfg, ratios=ratios)


def _input_suffix(path: str | os.PathLike) -> str:
    p = pathlib.Path(path)
    if not p.is_file():
        raise errors.UserInputError(
            f"No input data file at {str(p)!r}. Pass a .npy or .npz file. "
            + errors.received(input_data=str(p))
        )
    if p.suffix.lower() not in (".npy", ".npz"):
        raise errors.UserInputError(
            "Input data must be a .npy file (one input) or an .npz file (arrays named after "
            "the inputs). Save it with numpy.save / numpy.savez. "
            + errors.received(input_data=str(p))
        )
    return p.suffix.lower()


def _check_affinity(cores: tuple[int, ...]) -> None:
    have = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    missing = [c for c in cores if have and c not in have]
    if missing:
        raise errors.UserInputError(
            f"Cores {missing} are not available here; this process may use cores {have}. "
            "Pass a subset of them. " + errors.received(cpu_affinity=list(cores))
        )


def child_spec(
    cfg: config.BenchmarkConfig, entries: list[dict], input_data: str | None, threads: int
) -> dict:
    """The SPEC.json of one measuring process (see `harness.protocol`)."""
    return {
        "models": entries,
        "num_threads": threads,
        "use_xnnpack": cfg.use_xnnpack,
        "signature": cfg.signature,
        "warmup_runs": cfg.warmup_runs,
        "warmup_min_secs": cfg.warmup_min_secs,
        "num_runs": cfg.num_runs,
        "min_secs": cfg.min_secs,
        "max_secs": cfg.max_secs,
        "cpu_affinity": list(cfg.cpu_affinity),
        "seed": cfg.seed,
        "input_data": input_data,
        "profile": cfg.profile,
        "profile_max_cuts": cfg.profile_max_cuts,
    }


def harness_files() -> dict[str, str]:
    """The harness as shipped to a device: every module of its folder, by relative path."""
    return {
        f"harness/{p.name}": p.read_text(encoding="utf-8") for p in sorted(HARNESS_DIR.glob("*.py"))
    }


def run_local(files: dict[str, bytes], spec: dict, *, timeout: float) -> dict:
    """Runs the harness folder in a fresh process here; the same outcome dict as `remote.run`."""
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as d:
        folder = pathlib.Path(d)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        (folder / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        result_path = folder / "result.json"
        cmd = [sys.executable, str(HARNESS_DIR), str(folder / "spec.json"), str(result_path)]
        with open(folder / "stderr.txt", "wb") as err:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        stderr = (folder / "stderr.txt").read_text(encoding="utf-8", errors="replace")
        result = json.loads(result_path.read_text()) if result_path.exists() else None
    return {
        "returncode": proc.returncode,
        "stderr": stderr,
        "result": result,
        "timed_out": timed_out,
        "timeout": timeout,
        "where": "this machine",
    }


def check_result(out: dict, entries: list[dict]) -> dict:
    """Turns a child's outcome into its result, or a clear error."""
    names = [e["name"] for e in entries]
    model = names[0] if len(names) == 1 else names
    stderr = out.get("stderr") or ""
    stage = _last_stage(stderr)
    tail = _tail(stderr)
    where = out.get("where", "this machine")
    if out.get("timed_out"):
        raise results.BenchmarkFailed(
            f"The measurement on {where} did not finish within {out['timeout']:.0f} s (last "
            f"stage: {stage}) and was stopped. The model may hang the runtime or be far slower "
            "than expected: lower max_secs/num_runs, or raise timeout_secs. "
            + errors.received(model=model, timeout_secs=out["timeout"])
        )
    rc = out.get("returncode")
    result = out.get("result")
    if rc is not None and rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
        raise results.BenchmarkFailed(
            f"The LiteRT runtime crashed with {sig} on {where} during {stage}. The file is "
            "malformed or hits a runtime bug; it ran in a separate process, so only that "
            "process died. Check the model with edgekit-inspect, or re-convert it."
            + (f" Last runtime output: {tail}." if tail else "")
            + " "
            + errors.received(model=model, signal=sig)
        )
    if result is None:
        raise results.BenchmarkFailed(
            f"The measuring process on {where} exited with status {rc} during {stage} without "
            f"a result. Last output: {tail or '(none)'}. " + errors.received(model=model)
        )
    if not result.get("ok"):
        err = result.get("error") or {}
        kind, msg = err.get("kind"), err.get("message", "unknown error")
        cls = errors.UserInputError if kind == "user" else results.BenchmarkFailed
        if kind == "missing_runtime":
            msg = f"The Python on {where} cannot run the benchmark: {msg}"
        got = errors.received(model=model)
        if "Received: " in msg:  # the child named the values already; add the model
            raise cls(msg.rstrip(".") + ", " + got[len("Received: ") :])
        raise cls(msg.rstrip(".") + ". " + got)
    return result


def _last_stage(stderr: str) -> str:
    stages = [
        ln[len(protocol.STAGE_PREFIX) :]
        for ln in stderr.splitlines()
        if ln.startswith(protocol.STAGE_PREFIX)
    ]
    return stages[-1] if stages else "start-up"


def _tail(stderr: str, lines: int = 3) -> str:
    kept = [
        ln.strip()
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith(protocol.STAGE_PREFIX)
    ]
    return " | ".join(kept[-lines:])[-400:].rstrip(".")
