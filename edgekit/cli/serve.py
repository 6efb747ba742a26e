"""edgekit-serve: serve a bundle over REST (V1 = TensorFlow Serving's API, V2) and gRPC (V2).

    edgekit-serve --bundle=bundle [--model_name=model] [--http_port=8080] \
        [--grpc_port=8081] [--workers=1] [--num_threads=1] [--host=0.0.0.0]

The bundle is verified first (a tampered bundle is refused). SIGTERM lets requests in
flight finish, then the server exits 0. Needs `pip install "edgekit[serve]"`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from absl import flags

from edgekit import errors
from edgekit.cli import _common

_BUNDLE = flags.DEFINE_string("bundle", None, "The bundle folder edgekit-export wrote.")
_MODEL_NAME = flags.DEFINE_string(
    "model_name", "model", "The name in the URLs: /v1/models/NAME:predict, /v2/models/NAME/infer."
)
_HOST = flags.DEFINE_string(
    "host", "0.0.0.0", "Address to listen on: 0.0.0.0 (all, as in a container) or 127.0.0.1."
)
_HTTP_PORT = flags.DEFINE_integer("http_port", 8080, "REST port (V1 and V2).")
_GRPC_PORT = flags.DEFINE_integer("grpc_port", 8081, "gRPC port (V2).")
_GRPC = flags.DEFINE_boolean("grpc", True, "Serve gRPC too (--nogrpc: REST only).")
_WORKERS = flags.DEFINE_integer(
    "workers", 1, "Requests that run at once, each on its own interpreter."
)
_NUM_THREADS = flags.DEFINE_integer(
    "num_threads", 1, "Threads per interpreter; keep workers x num_threads <= cores."
)
_MAX_BATCH_SIZE = flags.DEFINE_integer("max_batch_size", 64, "Most samples one request may hold.")
_MAX_BODY_MB = flags.DEFINE_float(
    "max_body_mb", 16.0, "Largest request body accepted (REST and gRPC), MiB."
)
_GRACE_SECONDS = flags.DEFINE_integer(
    "grace_seconds", 30, "On SIGTERM, how long requests in flight may take."
)
_LOG_REQUESTS = flags.DEFINE_boolean("log_requests", False, "Log every request.")


def main(argv: Sequence[str]) -> None:
    del argv
    if not _BUNDLE.value:
        raise errors.UserInputError(
            "Pass the bundle to serve: --bundle=DIR (the folder edgekit-export wrote). "
            + errors.received(bundle=_BUNDLE.value)
        )
    if importlib.util.find_spec("kserve") is None:
        raise errors.UserInputError(
            "edgekit-serve needs KServe, which is not installed; install it with "
            "pip install 'edgekit[serve]' (TensorFlow is not needed). "
            + errors.received(missing="kserve")
        )
    from edgekit import serve

    options = serve.ServeOptions(
        bundle_dir=_BUNDLE.value,
        model_name=_MODEL_NAME.value,
        host=_HOST.value,
        http_port=_HTTP_PORT.value,
        grpc_port=_GRPC_PORT.value,
        enable_grpc=_GRPC.value,
        workers=_WORKERS.value,
        num_threads=_NUM_THREADS.value,
        max_batch_size=_MAX_BATCH_SIZE.value,
        max_body_mb=_MAX_BODY_MB.value,
        grace_seconds=_GRACE_SECONDS.value,
        log_requests=_LOG_REQUESTS.value,
    )
    serve.serve(options)


def run() -> None:
    _common.run(main, required=("bundle",))


if __name__ == "__main__":
    run()
