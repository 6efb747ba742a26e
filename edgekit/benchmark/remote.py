"""Runs the benchmark harness on a Linux device over SSH (`ssh://user@host[:port]`).

One `ssh` call does it all: a small bootstrap (passed on the command line, base64)
reads the harness, the model(s), the input data and the spec from standard input,
writes them to a fresh temporary folder on the device, runs the harness there in
its own process with the device's Python (so a crash or hang is seen and reported
from the device too), prints the outcome as one JSON line and removes the folder.
Only the OpenSSH client is needed here, and only Python 3.8+ with numpy and
ai-edge-litert there (no scp/sftp, no edgekit install on the device).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
from typing import Any

from edgekit import config, errors
from edgekit.benchmark import results

_RESULT_MARK = "EDGEKIT-BENCH-RESULT "

_BOOTSTRAP = r"""
import base64, json, os, shutil, subprocess, sys, tempfile
payload = json.loads(sys.stdin.buffer.read().decode("utf-8"))
d = tempfile.mkdtemp(prefix="edgekit-bench-")
out = {"returncode": None, "stderr": "", "result": None, "timed_out": False}
try:
    for name, data in payload["files"].items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(base64.b64decode(data))
    for name, text in payload["harness"].items():
        path = os.path.join(d, *name.split("/"))
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write(text)
    with open(os.path.join(d, "spec.json"), "w") as f:
        json.dump(payload["spec"], f)
    res = os.path.join(d, "result.json")
    errf = open(os.path.join(d, "stderr.txt"), "wb")
    p = subprocess.Popen([sys.executable, os.path.join(d, "harness"),
                          os.path.join(d, "spec.json"), res],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
    try:
        p.wait(timeout=payload["timeout"])
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        out["timed_out"] = True
    errf.close()
    out["returncode"] = p.returncode
    with open(os.path.join(d, "stderr.txt"), "rb") as f:
        out["stderr"] = f.read()[-20000:].decode("utf-8", "replace")
    if os.path.exists(res):
        with open(res) as f:
            out["result"] = json.load(f)
finally:
    shutil.rmtree(d, ignore_errors=True)
sys.stdout.write("@MARK@" + json.dumps(out) + "\n")
""".replace("@MARK@", _RESULT_MARK)


def ssh_command(cfg: Any) -> list[str]:
    """The `ssh` command line for the target, up to (not including) the remote command."""
    user, host, port = config.parse_target(cfg.target)
    cmd = ["ssh", "-p", str(port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
    options = list(cfg.ssh_options)
    if not any(o.lower().startswith("stricthostkeychecking") for o in options):
        options.append("StrictHostKeyChecking=accept-new")
    for o in options:
        cmd += ["-o", o]
    if cfg.ssh_key:
        cmd += ["-i", str(cfg.ssh_key), "-o", "IdentitiesOnly=yes"]
    return [*cmd, f"{user}@{host}"]


def run(
    files: dict[str, bytes], spec: dict, cfg: Any, *, timeout: float, harness: dict[str, str]
) -> dict:
    """Runs the harness on the target; returns the same outcome dict as a local run.

    `harness` maps paths relative to the run folder (`harness/child.py`, ...) to the
    text of the harness's modules; the folder `harness` is what runs.
    """
    payload = json.dumps(
        {
            "files": {n: base64.b64encode(b).decode("ascii") for n, b in files.items()},
            "harness": harness,
            "spec": spec,
            "timeout": timeout,
        }
    ).encode("utf-8")
    code = base64.b64encode(_BOOTSTRAP.encode("utf-8")).decode("ascii")
    remote = f"{shlex.quote(cfg.remote_python)} -c " + shlex.quote(
        f"import base64;exec(base64.b64decode('{code}'))"
    )
    cmd = [*ssh_command(cfg), remote]
    try:
        proc = subprocess.run(cmd, input=payload, capture_output=True, timeout=timeout + 60)
    except FileNotFoundError:
        raise errors.UserInputError(
            "The OpenSSH client (`ssh`) is not installed here; install it (Debian: apt-get "
            "install openssh-client) to benchmark on a remote device. "
            + errors.received(target=cfg.target)
        ) from None
    except subprocess.TimeoutExpired:
        return {"timed_out": True, "timeout": timeout, "stderr": "", "where": cfg.target}
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    for line in stdout.splitlines():
        if line.startswith(_RESULT_MARK):
            out = json.loads(line[len(_RESULT_MARK) :])
            out["where"] = cfg.target
            out["timeout"] = timeout
            return out
    raise _connection_error(cfg, proc.returncode, stderr)


def _connection_error(cfg: Any, rc: int, stderr: str) -> errors.UserInputError:
    text = " ".join(ln.strip() for ln in stderr.splitlines() if ln.strip() and "Warning:" not in ln)
    text = text[-400:] or "(no message)"
    got = errors.received(target=cfg.target, ssh_exit_status=rc)
    low = text.lower()
    if rc == 255 and re.search(
        r"refused|no route|unreachable|could not resolve|timed out|"
        r"name or service not known|connection closed|reset",
        low,
    ):
        return errors.UserInputError(
            f"Could not reach the device: {text}. Check the host and port, that the device is "
            "on and that its SSH server runs. " + got
        )
    if rc == 255 and ("permission denied" in low or "authentication" in low):
        return errors.UserInputError(
            f"SSH login failed: {text}. Check the user name, and pass --ssh_key with a key the "
            "device accepts (or add the key to the SSH agent). " + got
        )
    if rc == 127 or "not found" in low or "no such file" in low:
        return results.BenchmarkFailed(
            f"The device has no {cfg.remote_python!r}: {text}. Install Python 3 with numpy "
            "and ai-edge-litert there, or pass --remote_python with its path. " + got
        )
    return results.BenchmarkFailed(f"The remote run failed over SSH: {text}. " + got)
