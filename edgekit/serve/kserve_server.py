"""KServe's ModelServer with what a deployed edgekit bundle needs around it.

KServe 0.21 serves V1 and V2 over REST (uvicorn) and V2 over gRPC on one event loop,
and handles SIGTERM: uvicorn stops accepting, finishes the requests in flight (up to
the grace period), then the gRPC server stops with the same grace. Added here:

- the listen address (`--host`): KServe binds every interface, as a container wants;
  a gateway box may want 127.0.0.1 only;
- a request-body limit: 413 with a JSON message over REST, RESOURCE_EXHAUSTED over gRPC;
- TensorFlow Serving's model status (`GET /v1/models/NAME` answers
  `model_version_status` as TF Serving does, next to KServe's `name`/`ready`).

Imported only by `server.serve`, after the flags are checked.
"""

from __future__ import annotations

import json
import logging
from concurrent import futures
from typing import Any

import kserve
from grpc import aio
from kserve import model_server as kserve_model_server
from kserve.errors import ModelNotFound
from kserve.logging import logger
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """ASGI middleware: a request body over `max_bytes` gets 413 before it is parsed."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Any, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _too_large(self, size: int) -> str:
        return (
            f"The request body is {size} bytes; this server accepts at most {self.max_bytes} "
            "(its --max_body_mb). Send fewer samples per request. "
            f"Received: body_bytes={size}"
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                await self._reject(send, 400, f"Bad Content-Length header. Received: {length!r}")
                return
            if size > self.max_bytes:
                await self._reject(send, 413, self._too_large(size))
                return
        seen = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        async def tracked_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._reject(send, 413, self._too_large(seen))


class HostGRPCServer(GRPCServer):
    """KServe's gRPC server, listening on a chosen address instead of every interface."""

    def __init__(self, host: str, port: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(port, *args, **kwargs)
        self._host = host

    async def start(self, max_workers: int) -> None:
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        # KServe's LoggingInterceptor logs every call at INFO; the exception
        # interceptor is what maps InvalidInput to INVALID_ARGUMENT.
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(ExceptionToStatusInterceptor(),),
            options=[
                ("grpc.max_send_message_length", self._kwargs["grpc_max_send_message_length"]),
                (
                    "grpc.max_receive_message_length",
                    self._kwargs["grpc_max_receive_message_length"],
                ),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._server.add_insecure_port(f"{host}:{self._port}")
        logger.info("Starting gRPC server on %s:%s", host, self._port)
        await self._server.start()
        await self._server.wait_for_termination()


class EdgeModelServer(kserve.ModelServer):
    """`kserve.ModelServer` bound to `host`, with the body limit and TF Serving status.

    KServe's `start()` builds its servers, then calls `setup_event_loop()` just before
    running them; that hook is where the REST server's address is set and the gRPC
    server (built here, not by KServe, to choose its address) is added.
    """

    def __init__(
        self,
        *,
        host: str,
        grpc_port: int,
        enable_grpc: bool,
        max_body_bytes: int,
        log_requests: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(enable_grpc=False, grpc_port=grpc_port, **kwargs)
        self.host = host
        self.edge_enable_grpc = enable_grpc
        self.max_body_bytes = max_body_bytes
        self.log_requests = log_requests
        self._install_app_extras()

    def _install_app_extras(self) -> None:
        app = kserve_model_server.app
        app.add_middleware(BodyLimitMiddleware, max_bytes=self.max_body_bytes)
        registry = self.registered_models

        async def tf_serving_status(model_name: str) -> dict[str, Any]:
            model = registry.get_model(model_name)
            if model is None:
                raise ModelNotFound(model_name)
            ready = bool(model.ready)
            return {
                "name": model_name,
                "ready": ready,
                "model_version_status": [
                    {
                        "version": "1",
                        "state": "AVAILABLE" if ready else "UNAVAILABLE",
                        "status": {
                            "error_code": "OK" if ready else "UNAVAILABLE",
                            "error_message": "",
                        },
                    }
                ],
            }

        # Added before KServe registers its own routes, so this one answers first.
        app.add_api_route("/v1/models/{model_name}", tf_serving_status, methods=["GET"])

    def setup_event_loop(self) -> None:
        if self._rest_server is not None:
            self._rest_server.config.host = self.host
        if not self.log_requests:
            # One access line and two timing lines per request cost more than a
            # small model's inference; errors are still logged.
            for name in ("uvicorn.access", "kserve.trace"):
                logging.getLogger(name).setLevel(logging.WARNING)
        if self.edge_enable_grpc:
            self._grpc_server = HostGRPCServer(
                self.host,
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs={
                    "grpc_max_send_message_length": max(self.max_body_bytes, 4 << 20),
                    "grpc_max_receive_message_length": self.max_body_bytes,
                },
                grace_period=self.grace_period,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        super().setup_event_loop()
