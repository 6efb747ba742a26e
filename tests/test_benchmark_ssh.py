"""Benchmarks through a real OpenSSH server on 127.0.0.1 (`--target=ssh://...`).

Each test session starts its own `sshd` (Debian's openssh-server, installed by
`.ci/ssh_setup.sh`) with a throw-away host key, a throw-away user key and its own
config, on a free port, and stops it at the end. Without sshd the tests skip
locally and fail in CI (CI=true), so a missing install step cannot hide.
"""

from __future__ import annotations

import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from edgekit import benchmark, errors
from edgekit.benchmark import measure

SSHD = "/usr/sbin/sshd"
FAST = dict(num_runs=5, min_secs=0.0, warmup_runs=1, warmup_min_secs=0.0, max_secs=20.0)
NO_HOST_CHECK = ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: pathlib.Path) -> pathlib.Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30
    )
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    missing = [
        p
        for p in (SSHD, shutil.which("ssh"), shutil.which("ssh-keygen"))
        if not p or not os.path.exists(p)
    ]
    if missing or not os.path.exists(SSHD):
        message = f"OpenSSH server/client not installed (run .ci/ssh_setup.sh); missing {missing or [SSHD]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if os.geteuid() != 0:
        pytest.skip("the test sshd logs in as the current user and needs root to do so")
    d = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(d / "host_key")
    user_key = _keygen(d / "user_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n"
        "UsePAM no\nStrictModes no\nLogLevel ERROR\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)  # privilege-separation folder sshd insists on
    log = open(d / "sshd.log", "wb")
    proc = subprocess.Popen(
        [SSHD, "-f", str(d / "sshd_config"), "-D", "-e"], stdout=log, stderr=log
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()}")
            time.sleep(0.1)
    user = pwd.getpwuid(os.geteuid()).pw_name
    try:
        yield {"target": f"ssh://{user}@127.0.0.1:{port}", "key": str(user_key), "dir": d}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    m = tf_keras.Sequential([tf_keras.layers.Input((8,)), tf_keras.layers.Dense(4)])
    path = tmp_path_factory.mktemp("ssh_model") / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    return path


def _cfg(sshd: dict, **kwargs) -> benchmark.BenchmarkConfig:
    base = dict(
        FAST,
        target=sshd["target"],
        ssh_key=sshd["key"],
        ssh_options=NO_HOST_CHECK,
        remote_python=sys.executable,  # the device's Python: here, one with ai-edge-litert
    )
    return benchmark.BenchmarkConfig(**{**base, **kwargs})


def test_benchmark_on_a_device_over_ssh(sshd, model, tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.ones((2, 8), np.float32))
    result = benchmark.benchmark(
        model, _cfg(sshd, threads_sweep=(1, 2), profile=True), input_data=data
    )
    d = result.to_dict()
    assert [r["num_threads"] for r in d["rows"]] == [1, 2]
    assert d["num_runs"] >= 5 and d["latency_us"]["p50"] > 0 and d["num_input_samples"] == 2
    env = d["environment"]
    assert env["target"] == sshd["target"] and env["cpu_model"]
    assert (
        d["profile"]["estimate"] and d["profile"]["by_op_type"][0]["op_type"] == "FULLY_CONNECTED"
    )
    assert sshd["target"] in result.format() and env["cpu_model"] in result.format()


def test_crash_on_the_device_is_reported(sshd, model, tmp_path):
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    try:
        from test_benchmark import recursive_call_once_model
    finally:
        sys.path.pop(0)
    crash = tmp_path / "crash.tflite"
    crash.write_bytes(recursive_call_once_model(model.read_bytes()))
    with pytest.raises(benchmark.BenchmarkFailed, match=r"SIGSEGV on ssh://.*first inference"):
        measure.measure_models([crash], _cfg(sshd), input_data=None, validate=False)


def test_device_without_ai_edge_litert(sshd, model, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120
    )
    with pytest.raises(
        benchmark.BenchmarkFailed, match="cannot run the benchmark.*pip install ai-edge-litert"
    ):
        benchmark.benchmark(model, _cfg(sshd, remote_python=str(bare / "bin" / "python")))
    with pytest.raises(benchmark.BenchmarkFailed, match="has no '/no/such/python3'"):
        benchmark.benchmark(model, _cfg(sshd, remote_python="/no/such/python3"))


def test_failed_login(sshd, model, tmp_path):
    stranger = _keygen(tmp_path / "stranger")
    with pytest.raises(errors.UserInputError, match="SSH login failed.*--ssh_key"):
        benchmark.benchmark(model, _cfg(sshd, ssh_key=str(stranger)))


def test_refused_connection(model, tmp_path):
    if not shutil.which("ssh"):
        pytest.skip("no ssh client")
    cfg = benchmark.BenchmarkConfig(
        **FAST, target=f"ssh://root@127.0.0.1:{_free_port()}", ssh_options=NO_HOST_CHECK
    )
    with pytest.raises(errors.UserInputError, match="Could not reach the device.*refused"):
        benchmark.benchmark(model, cfg)
