"""Runs a command's TensorFlow work in a child process that a crash cannot take down.

On some CPUs (AVX-512/AMX) TensorFlow's oneDNN kernels have crashed the process
(SIGSEGV, SIGABRT) in the first training step of real Keras 2 models; with
`TF_ENABLE_ONEDNN_OPTS=0` set before TensorFlow starts, the same work runs. So the
training and conversion commands re-execute themselves in a child (same argv, same
stdout/stderr, the environment inherited) and the parent, which never imports
TensorFlow, watches it: when the child dies by a crash signal, the parent says which
command (and pipeline stage) crashed with which signal, and retries once in a fresh
process with oneDNN's custom ops off. Ctrl-C and SIGTERM to the parent reach the child.

Standard library only: the lowest layer, usable by `cli` and `pipeline` alike.

Example (what `edgekit.cli._common.run(main, isolate=True)` does):
    >>> outcome = subproc.run_isolated(subproc.child_command("edgekit.cli.prune"),
    ...                                what="edgekit-prune")
    >>> outcome.returncode, outcome.crash_retry
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

# Set in the child: "1" on the first attempt, "2" on the retry.
CHILD_ENV = "EDGEKIT_ISOLATED_CHILD"
# Set in the retry child: "SIGNAL" or "SIGNAL@stage", what the first attempt died of.
RETRY_ENV = "EDGEKIT_CRASH_RETRY"
# The child writes the pipeline stage it is in here, so the parent can name it.
STAGE_FILE_ENV = "EDGEKIT_STAGE_FILE"
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
RETRIED_WITH = f"{ONEDNN_ENV}=0"
# Test hooks, not for users: the child kills itself with the named signal ("SIGSEGV",
# or "SIGSEGV@prune" for one pipeline stage only) on the first attempt only / always.
TEST_CRASH_ONCE_ENV = "EDGEKIT_TEST_CRASH_ONCE"
TEST_CRASH_ALWAYS_ENV = "EDGEKIT_TEST_CRASH_ALWAYS"

# Signals that mean the process crashed (as opposed to being stopped or killed).
CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}
)
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

WORKAROUND = (
    f"Setting {RETRIED_WITH} in the environment before TensorFlow is imported avoids "
    "the known crash of oneDNN's custom ops on some CPUs (in Python: "
    f"os.environ['{ONEDNN_ENV}'] = '0' before the first import of tensorflow, tf_keras "
    "or edgekit's training functions)."
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How an isolated run ended.

    Attributes:
      returncode: the exit status the parent should end with (0 = success).
      crash_retry: set when the first attempt crashed: `{"signal", "stage",
        "retried_with"}` (`stage` is None outside the pipeline).
    """

    returncode: int
    crash_retry: dict[str, Any] | None = None


def in_child() -> bool:
    """Whether this process is the isolated child of a command."""
    return bool(os.environ.get(CHILD_ENV))


def crash_retry() -> dict[str, Any] | None:
    """In a retry child, what the first attempt died of; else None."""
    raw = os.environ.get(RETRY_ENV)
    if not raw:
        return None
    sig, _, stage = raw.partition("@")
    return {"signal": sig, "stage": stage or None, "retried_with": RETRIED_WITH}


def crash_note(info: dict[str, Any], *, finished: bool = True) -> str:
    """One sentence for outputs and reports: what crashed and how it was retried."""
    where = f" in stage {info['stage']!r}" if info.get("stage") else ""
    return (
        f"TensorFlow crashed{where} ({info['signal']}); the work was retried once in a "
        f"fresh process with oneDNN's custom ops off ({info['retried_with']})"
        + (" and finished." if finished else ".")
    )


def note_stage(stage: str) -> None:
    """In an isolated child, tells the parent which pipeline stage is running."""
    path = os.environ.get(STAGE_FILE_ENV)
    if path:
        try:
            pathlib.Path(path).write_text(stage)
        except OSError:
            pass


def test_crash_point(where: str) -> None:
    """Test hook: kills this child with the signal the test environment names.

    `EDGEKIT_TEST_CRASH_ONCE` fires on the first attempt only,
    `EDGEKIT_TEST_CRASH_ALWAYS` on every attempt. A value `SIGNAL@where` fires only
    at that point (`command`, or a pipeline stage name). Nothing happens outside an
    isolated child.
    """
    if not in_child():
        return
    for name, first_only in ((TEST_CRASH_ONCE_ENV, True), (TEST_CRASH_ALWAYS_ENV, False)):
        raw = os.environ.get(name)
        if not raw or (first_only and os.environ.get(CHILD_ENV) != "1"):
            continue
        sig, _, at = raw.partition("@")
        if at and at != where:
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.Signals[sig], signal.SIG_DFL)
        os.kill(os.getpid(), signal.Signals[sig])


def quiet_fault_dump() -> None:
    """In the child: no "Fatal Python error" stack dump on a crash (absl enables one)."""
    import faulthandler

    faulthandler.disable()


def command_module(module: str | None) -> str | None:
    """The importable name of a command's module, also when it runs as `__main__`."""
    if not module or module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        return spec.name if spec is not None else None
    return module


def child_command(module: str | None) -> list[str]:
    """The command line that re-executes this command (`python -m module argv...`)."""
    module = command_module(module)
    if module:
        return [sys.executable, "-m", module, *sys.argv[1:]]
    return [sys.executable, *sys.argv]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` so the child dies too when the parent is killed (Linux only).

    A parent killed with SIGKILL cannot forward anything; without this its child would
    run on, orphaned, and race a re-run of the same command (e.g. a resumed pipeline).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class _Forked:
    """A forked child that runs a function, with the small part of `Popen` used here."""

    def __init__(self, child: Callable[[], int], env: dict[str, str]) -> None:
        preexec = _die_with_parent()
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            code = 1
            try:
                os.environ.clear()
                os.environ.update(env)
                if preexec is not None:
                    preexec()
                signal.signal(signal.SIGINT, signal.default_int_handler)
                for s in (signal.SIGTERM, signal.SIGHUP):
                    signal.signal(s, signal.SIG_DFL)
                code = child()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # a bug: show it, as an unisolated command would
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _start_and_wait(
    cmd: Sequence[str] | Callable[[], int], env: dict[str, str]
) -> tuple[int, bool]:
    """Runs `cmd`, forwarding SIGINT/SIGTERM/SIGHUP; returns (returncode, stopped)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if callable(cmd):
        proc: Any = _Forked(cmd, env)
    else:
        proc = subprocess.Popen(list(cmd), env=env, preexec_fn=_die_with_parent())
    stopped = []

    def forward(signum: int, frame: Any) -> None:
        del frame
        stopped.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {}
    try:
        for s in _FORWARDED:
            try:
                previous[s] = signal.signal(s, forward)
            except ValueError:  # not the main thread: nothing to forward
                break
        return proc.wait(), bool(stopped)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _say(message: str, *, prefix: str) -> None:
    text = textwrap.fill(message, width=100, break_long_words=False, break_on_hyphens=False)
    print(f"{prefix}{text}", file=sys.stderr, flush=True)


def run_isolated(
    cmd: Sequence[str] | Callable[[], int],
    *,
    what: str,
    say: Callable[[str, str], None] | None = None,
) -> Outcome:
    """Runs `cmd` in a child; retries once with oneDNN off if it crashes.

    Args:
      cmd: the child's command line (see `child_command`), or a function that a forked
        child runs and whose return value is its exit status. A forked child keeps
        what the caller's process holds (its imports, registered Keras classes, parsed
        flags); the parent must not have imported TensorFlow.
      what: the command's name for messages, e.g. "edgekit-prune".
      say: `say(message, prefix)` prints a paragraph (default: wrapped, on stderr).

    Returns:
      The `Outcome`: the child's exit status (128 + the signal when Ctrl-C or SIGTERM
      stopped it; 1 when the retry crashed too), and the first crash if there was one.
    """
    say = say or (lambda message, prefix: _say(message, prefix=prefix))
    fd, stage_file = tempfile.mkstemp(prefix="edgekit-stage-", suffix=".txt")
    os.close(fd)
    env = {**os.environ, CHILD_ENV: "1", STAGE_FILE_ENV: stage_file}
    try:
        code, stopped = _start_and_wait(cmd, env)
        if stopped or code >= 0 or -code not in CRASH_SIGNALS:
            return Outcome(_exit_status(code, stopped, what, say))
        sig = _signal_name(code)
        stage = pathlib.Path(stage_file).read_text().strip() or None
        where = f"{what} crashed in its stage {stage!r}" if stage else f"{what} crashed"
        onednn = os.environ.get(ONEDNN_ENV)
        say(
            f"{where}: TensorFlow's process died with {sig}, a crash inside TensorFlow "
            "(a fault in its native code, not a Python error). On some CPUs (AVX-512/AMX) oneDNN's "
            "custom ops crash this way. Retrying once in a fresh process with them off "
            f"({RETRIED_WITH}"
            + (f"; it was already {onednn!r}" if onednn is not None else "")
            + ")"
            + ("; the pipeline resumes after its last finished stage." if stage else "."),
            "warning: ",
        )
        info = {"signal": sig, "stage": stage, "retried_with": RETRIED_WITH}
        retry_env = {
            **env,
            CHILD_ENV: "2",
            ONEDNN_ENV: "0",
            RETRY_ENV: sig + (f"@{stage}" if stage else ""),
        }
        pathlib.Path(stage_file).write_text("")
        code, stopped = _start_and_wait(cmd, retry_env)
        if stopped or code >= 0 or -code not in CRASH_SIGNALS:
            return Outcome(_exit_status(code, stopped, what, say), info if code == 0 else None)
        stage = pathlib.Path(stage_file).read_text().strip() or None
        say(
            f"{what} crashed again"
            + (f" in its stage {stage!r}" if stage else "")
            + f", with {_signal_name(code)}, even with {RETRIED_WITH}: a crash inside "
            "TensorFlow that edgekit cannot work around. Nothing was written for the "
            "crashed step (files are written only when complete"
            + ("; the pipeline's finished stages stay checkpointed" if stage else "")
            + "). Try another TensorFlow version or machine, and report it with the model "
            "if you can share it.",
            "error: ",
        )
        return Outcome(1)
    finally:
        pathlib.Path(stage_file).unlink(missing_ok=True)


def _exit_status(code: int, stopped: bool, what: str, say: Callable[[str, str], None]) -> int:
    if code >= 0:
        return code
    sig = _signal_name(code)
    if stopped or -code in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        return 128 - code
    say(
        f"{what} was killed with {sig} (SIGKILL usually means the machine ran out of "
        "memory). Nothing was written for the unfinished step.",
        "error: ",
    )
    return 1


def add_to_json(path: str | os.PathLike, key: str, value: Any) -> None:
    """Adds `key: value` to the JSON object in `path`, atomically (if the file exists)."""
    p = pathlib.Path(path)
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(obj, dict):
        return
    obj[key] = value
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
        os.replace(tmp, p)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
