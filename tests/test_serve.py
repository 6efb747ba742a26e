"""edgekit-serve: the protocols agree with LiteModel bit for bit; bad requests get 4xx.

Servers run as subprocesses on free loopback ports, one per bundle for the whole module
(start-up verifies the bundle in a child process and imports KServe: seconds each).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import make_tiny_model

REPO = pathlib.Path(__file__).resolve().parents[1]
NAME = "tiny"
MAX_BATCH = 8
MAX_BODY_MB = 0.05  # 52,428 bytes: a 9-sample batch fits, 60 KB does not


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_cmd(bundle, http_port, grpc_port, *extra, python=sys.executable):
    return [
        python,
        "-m",
        "edgekit.cli.serve",
        f"--bundle={bundle}",
        f"--model_name={NAME}",
        "--host=127.0.0.1",
        f"--http_port={http_port}",
        f"--grpc_port={grpc_port}",
        f"--max_batch_size={MAX_BATCH}",
        f"--max_body_mb={MAX_BODY_MB}",
        "--workers=2",
        *extra,
    ]


def http(method, url, body=None, headers=None, timeout=30):
    """(status, parsed JSON body); urllib as a TF Serving client would use it."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_ready(proc, url, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read()[-3000:]}")
        with contextlib.suppress(OSError):
            if http("GET", url, timeout=2)[0] == 200:
                return
        time.sleep(0.3)
    raise AssertionError("server not ready in time")


class Server:
    def __init__(self, bundle, *extra, python=sys.executable, cwd=None, env=None):
        self.http_port, self.grpc_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.proc = subprocess.Popen(
            serve_cmd(bundle, self.http_port, self.grpc_port, *extra, python=python),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        wait_ready(self.proc, f"{self.base}/v1/models/{NAME}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from edgekit import bundle, convert
    from edgekit.config import ConvertConfig

    # A fixed input name: Keras numbers unnamed inputs per process, and the tests send
    # named inputs as TF Serving clients do.
    model = make_tiny_model(3, input_name="input_1")
    calib = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    out = {}
    root = tmp_path_factory.mktemp("serve_bundles")
    for kind, cfg in (
        ("float", ConvertConfig()),
        ("int8", ConvertConfig(mode="int8", io_type="int8")),
    ):
        r = convert.convert(model, cfg, calibration_data=calib if kind == "int8" else None)
        out[kind] = bundle.export(r.tflite_bytes, root / kind).output_dir
    return out


@pytest.fixture(scope="module")
def servers(bundles):
    started = {}
    try:
        for kind, path in bundles.items():
            started[kind] = Server(path)
        yield started
    finally:
        for s in started.values():
            s.stop()


def expected(bundle_dir, x):
    from edgekit.runtime import LiteModel

    return LiteModel(str(pathlib.Path(bundle_dir) / "model.tflite")).predict(x)


def samples(n=3, seed=1):
    return np.random.default_rng(seed).random((n, 8, 8, 1), dtype=np.float32)


def grpc_infer(port, x, *, name=NAME, shape=None, datatype="FP32"):
    import grpc

    sys_argv, sys.argv = sys.argv, sys.argv[:1]  # kserve parses argv on import
    try:
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pbg
    finally:
        sys.argv = sys_argv
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pbg.GRPCInferenceServiceStub(ch)
        req = pb.ModelInferRequest(
            model_name=name,
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="input_1", datatype=datatype, shape=list(shape or x.shape)
                )
            ],
            raw_input_contents=[x.tobytes()],
        )
        resp = stub.ModelInfer(req, timeout=30)
    out = resp.outputs[0]
    return np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(list(out.shape))


def good_request_answered(server, x=None):
    x = samples(2, seed=9) if x is None else x
    status, body = http(
        "POST", f"{server.base}/v1/models/{NAME}:predict", {"instances": x.tolist()}
    )
    assert status == 200, body
    return np.asarray(body["predictions"], np.float32)


# ---------------------------------------------------------------------------
# The four protocols agree with in-process LiteModel.predict


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_every_protocol_returns_litemodel_outputs_bit_equal(servers, bundles, kind):
    s, x = servers[kind], samples()
    want = expected(bundles[kind], x)
    assert want.dtype == np.float32 and want.shape == (3, 4)
    url = f"{s.base}/v1/models/{NAME}:predict"

    status, body = http("POST", url, {"instances": x.tolist()})
    assert status == 200, body
    np.testing.assert_array_equal(np.asarray(body["predictions"], np.float32), want)

    status, body = http("POST", url, {"inputs": x.tolist()})
    assert status == 200, body
    np.testing.assert_array_equal(np.asarray(body["outputs"], np.float32), want)

    # Named inputs, as TF Serving clients send them (short or full tensor name).
    status, body = http("POST", url, {"inputs": {"input_1": x.tolist()}})
    assert status == 200, body
    np.testing.assert_array_equal(np.asarray(body["outputs"], np.float32), want)

    v2 = {
        "inputs": [
            {
                "name": "input_1",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }
    status, body = _post_raw(s.base, f"/v2/models/{NAME}/infer", json.dumps(v2).encode())
    assert status == 200, body
    out = body["outputs"][0]
    assert out["datatype"] == "FP32" and out["shape"] == [3, 4]
    np.testing.assert_array_equal(np.asarray(out["data"], np.float32).reshape(3, 4), want)

    np.testing.assert_array_equal(grpc_infer(s.grpc_port, x), want)


def test_int8_model_takes_its_own_dtype_over_v2(servers, bundles):
    """A client that quantizes itself may send INT8; the answer is still float."""
    from edgekit.runtime import LiteModel

    lm = LiteModel(str(pathlib.Path(bundles["int8"]) / "model.tflite"))
    x = samples()
    q = LiteModel.quantize(x, lm.inputs[0])
    assert q.dtype == np.int8
    np.testing.assert_array_equal(
        grpc_infer(servers["int8"].grpc_port, q, datatype="INT8"), lm.predict(x)
    )


def test_tf_serving_client_works_unchanged(servers, bundles):
    """Plain urllib, no content type (urllib sends form-encoded), TF Serving's URLs."""
    s, x = servers["float"], samples(2)
    req = urllib.request.Request(
        f"{s.base}/v1/models/{NAME}:predict",
        data=json.dumps({"signature_name": "serving_default", "instances": x.tolist()}).encode(),
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        preds = json.loads(r.read())["predictions"]
    np.testing.assert_array_equal(np.asarray(preds, np.float32), expected(bundles["float"], x))
    status, body = http("GET", f"{s.base}/v1/models/{NAME}")
    assert status == 200
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    assert body["model_version_status"][0]["status"]["error_code"] == "OK"
    # V2 metadata tells a client what to send.
    status, meta = http("GET", f"{s.base}/v2/models/{NAME}")
    assert status == 200 and meta["inputs"][0]["shape"] == [-1, 8, 8, 1]


# ---------------------------------------------------------------------------
# Bad requests: a 4xx with a message, and the next good request is answered


def _post_raw(base, path, data: bytes, content_type="application/json"):
    return http("POST", base + path, data, headers={"Content-Type": content_type})


BAD_V1 = {
    "malformed_json": (b'{"instances": [[1, 2', 400, "Unrecognized request format"),
    "wrong_shape": ({"instances": [[1.0, 2.0, 3.0]]}, 400, "shape"),
    "wrong_dtype": ({"instances": [[[["a"]] * 8] * 8]}, 400, "numbers"),
    "batch_over_bound": (None, 400, "max_batch_size"),
    "both_instances_and_inputs": ({"instances": [], "inputs": []}, 400, "exactly one"),
    "neither": ({"signature_name": "x"}, 400, "exactly one"),
    "not_an_object": ([1, 2, 3], 400, "JSON object"),
    "ragged": ({"instances": [[[0.0]], [[0.0, 1.0]]]}, 400, "rectangular"),
}


@pytest.mark.parametrize("case", sorted(BAD_V1))
def test_bad_v1_request_gets_4xx_and_server_keeps_serving(servers, case):
    s = servers["int8"]
    body, want_status, words = BAD_V1[case]
    if case == "batch_over_bound":
        body = {"instances": samples(MAX_BATCH + 1).tolist()}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = _post_raw(s.base, f"/v1/models/{NAME}:predict", data)
    assert status == want_status, answer
    assert words in answer["error"], answer
    good_request_answered(s)


def test_body_over_the_limit_gets_413(servers):
    s = servers["float"]
    data = json.dumps({"instances": [[0.123456789] * 64] * 100}).encode()  # ~ 77 KB
    assert len(data) > MAX_BODY_MB * 1024 * 1024
    status, answer = _post_raw(s.base, f"/v1/models/{NAME}:predict", data)
    assert status == 413 and "max_body_mb" in answer["error"]
    good_request_answered(s)


def test_unknown_model_name_gets_404_everywhere(servers):
    s = servers["float"]
    x = samples(1)
    status, answer = http("POST", f"{s.base}/v1/models/nope:predict", {"instances": x.tolist()})
    assert status == 404 and "nope" in answer["error"]
    status, answer = http("GET", f"{s.base}/v1/models/nope")
    assert status == 404 and "nope" in answer["error"]
    import grpc

    with pytest.raises(grpc.RpcError) as e:
        grpc_infer(s.grpc_port, x, name="nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    good_request_answered(s)


def test_bad_v2_requests_get_4xx(servers):
    s = servers["float"]
    url = f"/v2/models/{NAME}/infer"
    cases = [
        (
            {"inputs": [{"name": "input_1", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]},
            "shape",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "input_1",
                        "shape": [1, 8, 8, 1],
                        "datatype": "BYTES",
                        "data": ["a"] * 64,
                    }
                ]
            },
            "FP32",
        ),
        (
            {
                "inputs": [
                    {"name": "input_1", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0] * 7}
                ]
            },
            "shape",
        ),
    ]
    for body, words in cases:
        status, answer = _post_raw(s.base, url, json.dumps(body).encode())
        assert 400 <= status < 500, (body, answer)
        assert words in json.dumps(answer), answer
    status, _ = _post_raw(s.base, url, b"{not json")
    assert 400 <= status < 500
    good_request_answered(s)


def test_bad_grpc_requests_get_invalid_argument_or_resource_exhausted(servers):
    import grpc

    s = servers["float"]
    with pytest.raises(grpc.RpcError) as e:
        grpc_infer(s.grpc_port, np.zeros((1, 4), np.float32))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "shape" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        grpc_infer(s.grpc_port, np.zeros((MAX_BATCH + 1, 8, 8, 1), np.float32))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_batch_size" in e.value.details()
    nan = samples(1)
    nan[0, 3, 3, 0] = np.nan
    with pytest.raises(grpc.RpcError) as e:
        grpc_infer(s.grpc_port, nan)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "NaN" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        grpc_infer(s.grpc_port, np.zeros((300, 8, 8, 1), np.float32))  # 76.8 KB
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    x = samples(2)
    np.testing.assert_array_equal(grpc_infer(s.grpc_port, x), good_request_answered(s, x))


# ---------------------------------------------------------------------------
# Start-up and shutdown


def test_tampered_bundle_is_refused_at_start(bundles, tmp_path):
    bad = tmp_path / "tampered"
    shutil.copytree(bundles["float"], bad)
    blob = bytearray((bad / "model.tflite").read_bytes())
    blob[-20] ^= 0x01
    (bad / "model.tflite").write_bytes(bytes(blob))
    p = subprocess.run(
        serve_cmd(bad, free_port(), free_port()), capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 2, p.stderr[-2000:]
    err = " ".join(p.stderr.split())  # one wrapped paragraph
    assert "failed verification" in err and "file:model.tflite" in err
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "flag, words",
    [
        ("--workers=0", "workers"),
        ("--http_port=70000", "http_port"),
        ("--max_body_mb=0", "max_body_mb"),
        ("--host=localhost:80", "host"),
        ("--model_name=a/b", "model_name"),
    ],
)
def test_bad_flags_exit_2_with_one_paragraph(bundles, flag, words):
    p = subprocess.run(
        [*serve_cmd(bundles["float"], free_port(), free_port()), flag],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr[-2000:]
    err = " ".join(p.stderr.split())
    assert err.startswith("error: ") and words in err and "Traceback" not in err


def test_port_in_use_is_a_clear_error(bundles):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run(
            serve_cmd(bundles["float"], port, free_port()),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert p.returncode == 2 and f"port {port}" in " ".join(p.stderr.split()), p.stderr[-2000:]


def test_sigterm_drains_the_request_in_flight_then_exits_0(bundles):
    server = Server(bundles["float"], "--grace_seconds=20")
    try:
        x = samples(2)
        body = json.dumps({"instances": x.tolist()}).encode()
        head = (
            f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as c:
            c.sendall(head + body[: len(body) // 2])  # the request is in flight...
            time.sleep(0.5)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert server.proc.poll() is None, "exited with a request in flight"
            c.sendall(body[len(body) // 2 :])  # ...and completes after SIGTERM
            reply = b""
            while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"content-length: (\d+)", reply.lower()).group(1)
                if re.search(rb"content-length: (\d+)", reply.lower())
                else 10**9
            ):
                chunk = c.recv(65536)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
        preds = json.loads(reply.split(b"\r\n\r\n", 1)[1])["predictions"]
        np.testing.assert_array_equal(np.asarray(preds, np.float32), expected(bundles["float"], x))
        assert server.proc.wait(60) == 0, server.proc.stderr.read()[-3000:]
    finally:
        server.stop()


def test_help_and_import_load_no_tensorflow_and_no_kserve():
    code = (
        "import sys; sys.argv=['x']\nimport edgekit.cli.serve, edgekit.serve\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert not {"tensorflow", "tf_keras", "kserve", "fastapi"} & loaded
    p = subprocess.run(
        [sys.executable, "-m", "edgekit.cli.serve", "--help"], capture_output=True, text=True
    )
    assert "--max_batch_size" in p.stdout and "Traceback" not in p.stderr


# ---------------------------------------------------------------------------
# docs/serving.md: the cloud manifest parses and points at edgekit-serve


def _fenced(text, lang):
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_serving_doc_manifest_and_dockerfile():
    import yaml

    text = (REPO / "docs" / "serving.md").read_text()
    docs = [d for block in _fenced(text, "yaml") for d in yaml.safe_load_all(block) if d]
    isvc = [d for d in docs if d.get("kind") == "InferenceService"]
    assert len(isvc) == 1
    isvc = isvc[0]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["name"]
    container = isvc["spec"]["predictor"]["containers"][0]
    cmd = [*container.get("command", []), *container.get("args", [])]
    assert cmd[0] == "edgekit-serve"
    assert any(a.startswith("--bundle=/mnt/models") for a in cmd)
    assert "--http_port=8080" in cmd
    env = {e["name"]: e["value"] for e in container["env"]}
    assert re.match(r"(gs|s3|pvc|https?)://", env["STORAGE_URI"])  # mounted at /mnt/models
    ports = {p["containerPort"] for p in container["ports"]}
    assert 8080 in ports
    (dockerfile,) = _fenced(text, "dockerfile")
    assert "edgekit[serve]" in dockerfile and "edgekit-serve" in dockerfile
    assert "tensorflow" not in dockerfile.lower().replace("without tensorflow", "")


# ---------------------------------------------------------------------------
# pip install "edgekit[serve]": no TensorFlow, and it serves


@pytest.mark.slow
def test_serve_extra_installs_and_serves_without_tensorflow(bundles, tmp_path_factory):
    venv = tmp_path_factory.mktemp("serve_notf") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    p = subprocess.run(
        [py, "-m", "pip", "install", "-q", f"{REPO}[serve]"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    probe = subprocess.run(
        [py, "-c", "import tensorflow"], capture_output=True, text=True, timeout=120
    )
    assert probe.returncode != 0 and "No module named 'tensorflow'" in probe.stderr
    # Outside the checkout, so the installed edgekit runs, not this tree.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cwd = tmp_path_factory.mktemp("elsewhere")
    server = Server(bundles["int8"], python=py, cwd=cwd, env=env)
    try:
        x = samples(2)
        np.testing.assert_array_equal(
            good_request_answered(server, x), expected(bundles["int8"], x)
        )
        where = subprocess.run(
            [py, "-c", "import edgekit; print(edgekit.__file__)"],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
        )
        assert str(venv) in where.stdout
        # What needs TensorFlow says how to get it.
        err = subprocess.run(
            [py, "-c", "from edgekit import _compat; _compat.tf()"],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
        )
        assert "pip install 'edgekit[tensorflow]'" in err.stderr
    finally:
        server.stop()
