"""The sandboxed loader: runs untrusted `.tflite` bytes once, in a child process.

A file that passes the structural checks (`edgekit.lite.validate`) can still trip a
bug in a kernel (the fuzz test finds such files by rewiring ops to tensors of the
wrong shape or type). `load_and_run` hands each model to a loader server started with
`python -m edgekit.lite.sandbox`, which forks one process per model; that process
loads the model into the LiteRT interpreter and runs one inference on zeros, under a
timeout and a memory cap. A crash or a hang ends that process, never the caller.

This is the only module under `lite/` that lets an interpreter see the bytes, and it
does so only in the child: it imports the interpreter through `edgekit._compat`, not
`edgekit.runtime`, so `lite/` stays below the runtime layer. The loader needs
`os.fork` (Linux, macOS). Most callers want `edgekit.lite.validate.run_in_subprocess`,
which validates first.

Example:
    >>> (result,) = load_and_run([pathlib.Path("model.tflite").read_bytes()], timeout=30)
    >>> result.status           # "ok", "error", "crash" or "timeout"
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import queue
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekit import _compat, errors
from edgekit.lite import tensor_spec


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """What happened when a separate process loaded a model and ran it once on zeros.

    `status` is "ok" (loaded and ran), "rejected" (failed a structural check, never
    loaded), "error" (the interpreter refused it with an error), "crash" (the loading
    process died, e.g. a segfault) or "timeout" (it hung and was killed). `inputs` and
    `outputs` are `TensorSpec.to_dict()` of the loaded model when "ok".
    """

    status: str
    message: str = ""
    check: str | None = None
    inputs: tuple[dict[str, Any], ...] = ()
    outputs: tuple[dict[str, Any], ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    outputs_finite: bool | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_and_run(
    models: Sequence[bytes],
    *,
    timeout: float = 60.0,
    memory_limit_mb: int | None = 4096,
) -> list[LoadResult]:
    """Loads and runs each model once on zeros, each in its own child process.

    One loader server starts and forks a fresh process per model, so each verdict
    belongs to its own model: a crash or hang is recorded as "crash" or "timeout"
    for that model only. No structural checks run here (see `edgekit.lite.validate`).

    Args:
      models: the bytes of each `.tflite` file.
      timeout: seconds each model's process may take before it is killed ("timeout").
      memory_limit_mb: address-space cap of each child, so a model that asks for huge
        buffers fails there instead of exhausting the machine; None for no cap.

    Returns:
      One `LoadResult` per model, in order. Never raises for a bad model.
    """
    results: list[LoadResult | None] = [None] * len(models)
    if not models:
        return []
    todo = list(range(len(models)))
    with tempfile.TemporaryDirectory(prefix="edgekit-child-") as tmp:
        case_file = pathlib.Path(tmp) / "cases.bin"
        with open(case_file, "wb") as f:
            for i in todo:
                f.write(struct.pack("<IQ", i, len(models[i])))
                f.write(models[i])
        pos = 0
        while pos < len(todo):
            pos = _run_child(case_file, todo, pos, results, timeout, memory_limit_mb)
    return results  # type: ignore[return-value]


def _run_child(
    case_file: pathlib.Path,
    todo: list[int],
    pos: int,
    results: list[LoadResult | None],
    timeout: float,
    memory_limit_mb: int | None,
) -> int:
    """Runs one loader server from case `todo[pos]` on; returns where the next one starts.

    The server (`python -m edgekit.lite.sandbox`) imports the interpreter once and forks
    a fresh process per case, so a case that corrupts memory without crashing cannot
    take the blame onto a later one, and the server itself never loads a model. If
    the server dies anyway, the current case is marked "crash" and a new server
    continues with the next.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "edgekit.lite.sandbox", str(case_file), str(todo[pos]),
        str(timeout), str(memory_limit_mb or 0),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    lines: queue.Queue[bytes | None] = queue.Queue()
    stderr_tail: list[bytes] = []

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def drain() -> None:
        for line in proc.stderr:
            stderr_tail.append(line)
            del stderr_tail[:-5]

    threading.Thread(target=pump, daemon=True).start()
    threading.Thread(target=drain, daemon=True).start()
    # The server enforces `timeout` per case; this outer limit only guards the server.
    patience = timeout + 60.0
    try:
        while pos < len(todo):
            case = todo[pos]
            try:
                line = lines.get(timeout=patience)
            except queue.Empty:
                results[case] = LoadResult("timeout", f"no result within {patience:.0f} s")
                return pos + 1
            if line is None:
                proc.wait()
                tail = b"".join(stderr_tail).decode(errors="replace").strip()[-300:]
                results[case] = LoadResult(
                    "crash", f"loader exited with status {proc.returncode}: {tail}"
                )
                return pos + 1
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # not ours
            if not isinstance(msg, dict) or msg.get("case") != case or "status" not in msg:
                continue
            results[case] = LoadResult(
                status=msg["status"],
                message=msg.get("message", ""),
                inputs=tuple(msg.get("inputs", ())),
                outputs=tuple(msg.get("outputs", ())),
                output_shapes=tuple(tuple(s) for s in msg.get("output_shapes", ())),
                outputs_finite=msg.get("outputs_finite"),
            )
            pos += 1
        return pos
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@dataclasses.dataclass(frozen=True)
class ChildOutcome:
    """How a child started by `run_python` ended.

    `status` is "ok" (exit status 0), "exit" (another exit status), "crash" (killed by
    a signal; `signal` names it, e.g. "SIGSEGV") or "timeout" (killed after `timeout`).
    `stderr_tail` is the end of what the child printed on stderr.
    """

    status: str
    returncode: int | None = None
    signal: str | None = None
    stderr_tail: str = ""


def run_python(
    args: Sequence[str],
    *,
    timeout: float | None = 600.0,
    memory_limit_mb: int | None = 4096,
) -> ChildOutcome:
    """Runs `python <args>` in a fresh child process with a timeout and a memory cap.

    For work that lets an interpreter run untrusted bytes beyond one inference on zeros
    (an evaluation's whole data set, say): a crash or a hang ends the child, never the
    caller. The child gets the caller's `edgekit` on its path, one BLAS thread, and a
    quiet TensorFlow log level; its stdout is discarded, so it reports through files.

    Args:
      args: the arguments after the interpreter, e.g. ["-c", code, folder].
      timeout: seconds before the child is killed ("timeout"); None for no limit.
      memory_limit_mb: address-space cap of the child; None for no cap.

    Returns:
      A `ChildOutcome`. Never raises for what the child does.
    """
    root = str(pathlib.Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def cap() -> None:  # runs in the child, before Python starts
        if memory_limit_mb:
            import resource

            limit = memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            preexec_fn=cap,  # noqa: PLW1509 - only setrlimit, no locks taken
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace").strip()
    if rc is None:
        return ChildOutcome("timeout", None, None, tail)
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return ChildOutcome("crash", rc, name, tail)
    return ChildOutcome("ok" if rc == 0 else "exit", rc, None, tail)


def _load_and_run(data: bytes) -> dict[str, Any]:
    """Loads a model and runs it once on zeros (in the forked case process)."""
    try:
        try:
            interp = _compat.litert_interpreter().Interpreter(model_content=data, num_threads=1)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            # The words of `runtime.LiteModel`, so a verdict reads the same either way.
            raise RuntimeError(
                f"The interpreter could not load this model: {e}. If the model needs Select "
                "TF ops (Flex) or custom ops, the runtime must be built with them. "
                + errors.received(model_size_bytes=len(data))
            ) from None
        spec = tensor_spec.TensorSpec.from_details
        inputs = [spec(d) for d in interp.get_input_details()]
        outputs = [spec(d) for d in interp.get_output_details()]
        for s in inputs:
            interp.set_tensor(s.index, np.zeros(s.shape, dtype=s.dtype))
        interp.invoke()
        ys = [interp.get_tensor(s.index) for s in outputs]
        return {
            "status": "ok",
            "inputs": [s.to_dict() for s in inputs],
            "outputs": [s.to_dict() for s in outputs],
            "output_shapes": [list(y.shape) for y in ys],
            "outputs_finite": bool(all(np.isfinite(y).all() for y in ys if y.dtype.kind == "f")),
        }
    # This process exists to absorb failures: any exception is this case's verdict.
    except Exception as e:  # noqa: BLE001
        text = str(e).splitlines()[0][:500] if str(e) else type(e).__name__
        return {"status": "error", "message": text}


def _run_case_forked(data: bytes, timeout: float, memory_limit_mb: int) -> dict[str, Any]:
    """Forks, runs one case in the child, and turns its death or silence into a verdict."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the case process: never returns
        try:
            os.close(r)
            if memory_limit_mb:
                import resource

                limit = memory_limit_mb * 1024 * 1024
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            payload = json.dumps(_load_and_run(data)).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(w, view) :]
        finally:
            os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([r], [], [], remaining)
            if ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"status": "timeout", "message": f"no result within {timeout:g} s; killed"}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {
            "status": "crash",
            "message": f"the loader died with signal {sig} ({signal.Signals(sig).name})",
        }
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {
            "status": "crash",
            "message": f"the loader exited with status {os.WEXITSTATUS(status)} without a result",
        }


def _server_main(case_file: str, first_case: int, timeout: float, memory_limit_mb: int) -> None:
    """The loader server: one JSON line per case, each case in its own forked process."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the interpreter's own prints go to stderr, never into our protocol
    _compat.litert_interpreter()  # imported once, before forking
    started = False
    with open(case_file, "rb") as f:
        while True:
            head = f.read(12)
            if len(head) < 12:
                break
            case, size = struct.unpack("<IQ", head)
            data = f.read(size)
            started = started or case == first_case
            if not started:
                continue
            msg = {"case": case, **_run_case_forked(data, timeout, memory_limit_mb)}
            out.write(json.dumps(msg) + "\n")
            out.flush()


if __name__ == "__main__":
    _server_main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
