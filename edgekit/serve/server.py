"""Serve a bundle: options checked up front, the bundle verified, then KServe runs.

Example:
    >>> serve(ServeOptions(bundle_dir="bundle", model_name="digits", http_port=8080))
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import pathlib
import socket
import sys
from collections.abc import Iterator
from typing import Any

from edgekit import errors


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """How to serve a bundle.

    Attributes:
      bundle_dir: the folder edgekit-export / edgekit-optimize wrote.
      model_name: the name in the URLs (/v1/models/NAME:predict, /v2/models/NAME/infer).
      host: the address to listen on; 0.0.0.0 (every interface, as in a container) or
        127.0.0.1 (this machine only).
      http_port / grpc_port: the REST (V1 and V2) and gRPC (V2) ports.
      enable_grpc: serve gRPC too.
      workers: requests that run at once, each on its own interpreter.
      num_threads: threads of each interpreter (workers x num_threads <= cores is best).
      max_batch_size: the most samples one request may hold.
      max_body_mb: the largest request body accepted (REST and gRPC), in MiB.
      grace_seconds: how long SIGTERM waits for requests in flight.
      log_requests: log every request (access log and latency lines).
    """

    bundle_dir: str
    model_name: str = "model"
    host: str = "0.0.0.0"
    http_port: int = 8080
    grpc_port: int = 8081
    enable_grpc: bool = True
    workers: int = 1
    num_threads: int = 1
    max_batch_size: int = 64
    max_body_mb: float = 16.0
    grace_seconds: int = 30
    log_requests: bool = False

    def __post_init__(self) -> None:
        problems = []

        def whole(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                problems.append(f"{name} must be a whole number in [{lo}, {hi}] (got {v!r})")

        whole("http_port", 1, 65535)
        whole("grpc_port", 1, 65535)
        whole("workers", 1, 256)
        whole("num_threads", 1, 256)
        whole("max_batch_size", 1, 1_000_000)
        whole("grace_seconds", 0, 3600)
        if not (isinstance(self.max_body_mb, (int, float)) and 0 < self.max_body_mb <= 2047):
            problems.append(f"max_body_mb must be in (0, 2047] (got {self.max_body_mb!r})")
        if self.enable_grpc and self.http_port == self.grpc_port:
            problems.append(f"http_port and grpc_port must differ (both {self.http_port})")
        name = self.model_name
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            problems.append(
                f"model_name must be letters, digits, '-', '_' or '.' (got {name!r}); "
                "it is part of the URL"
            )
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            problems.append(
                f"host must be an IP address such as 0.0.0.0 or 127.0.0.1 (got {self.host!r})"
            )
        if problems:
            raise errors.UserInputError(
                "Bad server options: "
                + "; ".join(problems)
                + ". "
                + errors.received(**{k: v for k, v in dataclasses.asdict(self).items()})
            )

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


def check_port_free(host: str, port: int, what: str) -> None:
    """Raises a clear error now rather than a bind failure after the bundle loaded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise errors.UserInputError(
                f"The {what} port {port} on {host} is not available ({e.strerror}). Choose "
                f"another with --{what}_port, or stop what uses it. "
                + errors.received(**{f"{what}_port": port, "host": host})
            ) from None


@contextlib.contextmanager
def _argv_hidden() -> Iterator[None]:
    # kserve.model_server parses sys.argv with argparse when it is imported; our
    # flags are already parsed, and its parser must not see (or reject) them.
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def build(options: ServeOptions) -> tuple[Any, Any]:
    """The loaded model and the (not started) server; the bundle is verified here.

    Raises:
      UserInputError: bad options, a port in use, or a bundle that fails verification.
    """
    if not pathlib.Path(options.bundle_dir).is_dir():
        raise errors.UserInputError(
            f"No bundle folder at {options.bundle_dir!r}. Pass the folder edgekit-export or "
            "edgekit-optimize wrote. " + errors.received(bundle=options.bundle_dir)
        )
    check_port_free(options.host, options.http_port, "http")
    if options.enable_grpc:
        check_port_free(options.host, options.grpc_port, "grpc")
    with _argv_hidden():
        from edgekit.serve import kserve_server
        from edgekit.serve import model as model_lib

    model = model_lib.BundleModel(
        options.model_name,
        options.bundle_dir,
        workers=options.workers,
        num_threads=options.num_threads,
        max_batch_size=options.max_batch_size,
    )
    model.load()
    server = kserve_server.EdgeModelServer(
        host=options.host,
        http_port=options.http_port,
        grpc_port=options.grpc_port,
        enable_grpc=options.enable_grpc,
        max_body_bytes=options.max_body_bytes,
        log_requests=options.log_requests,
        enable_latency_logging=options.log_requests,
        grace_period=options.grace_seconds,
        max_threads=max(4, options.workers),
        max_asyncio_workers=max(4, options.workers),
    )
    return model, server


def serve(options: ServeOptions) -> None:
    """Verifies the bundle, then serves it until SIGTERM or SIGINT (which drain first)."""
    model, server = build(options)
    server.start([model])
