"""The KServe model class: a verified edgekit bundle behind V1 and V2 endpoints.

`BundleModel.load()` verifies the bundle first (every checksum, the manifest's own,
the model's structure, a load and a run in a child process): a tampered bundle is
refused before anything listens. Requests then run on a pool of LiteRT interpreters,
off the event loop, so the REST and gRPC servers keep accepting while models run.

The same class runs unchanged as a KServe `InferenceService` predictor (see
docs/serving.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import pathlib
import uuid
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from edgekit import bundle, errors
from edgekit.serve import pool as pool_lib
from edgekit.serve import signature as signature_lib


def load_verified_bundle(bundle_dir: str | pathlib.Path) -> tuple[bytes, dict[str, Any]]:
    """The model bytes and manifest of a bundle that passed `bundle.verify`.

    Raises:
      UserInputError: not a bundle, or any check failed (the failed checks are listed).
    """
    result = bundle.verify(bundle_dir)
    if not result.ok:
        raise errors.UserInputError(
            f"The bundle at {str(bundle_dir)!r} failed verification, so it is not served: "
            + "; ".join(result.problems)
            + ". Re-export it with edgekit-export (or check it with edgekit-verify-bundle). "
            + errors.received(bundle=str(bundle_dir))
        )
    d = pathlib.Path(bundle_dir)
    manifest = json.loads((d / bundle.MANIFEST_FILE).read_text(encoding="utf-8"))
    # The bytes verify just hashed: read once more and compare, so a file swapped
    # between the check and this read is still refused.
    data = (d / bundle.MODEL_FILE).read_bytes()
    want = manifest["files"][bundle.MODEL_FILE]
    if hashlib.sha256(data).hexdigest() != want["sha256"] or len(data) != want["size"]:
        raise errors.UserInputError(
            f"{bundle.MODEL_FILE} changed while the bundle was being verified. "
            + errors.received(bundle=str(bundle_dir))
        )
    return data, manifest


class BundleModel(kserve.Model):
    """An edgekit bundle as a KServe model.

    Args:
      name: the model name in the URLs (`/v1/models/NAME:predict`, `/v2/models/NAME/infer`).
      bundle_dir: the folder edgekit-export / edgekit-optimize wrote.
      workers: requests that run at once, each on its own interpreter.
      num_threads: threads of each interpreter.
      max_batch_size: the most samples one request may hold.
    """

    def __init__(
        self,
        name: str,
        bundle_dir: str | pathlib.Path,
        *,
        workers: int = 1,
        num_threads: int | None = 1,
        max_batch_size: int = 64,
    ) -> None:
        super().__init__(name)
        self.bundle_dir = str(bundle_dir)
        self.workers = workers
        self.num_threads = num_threads
        self.max_batch_size = max_batch_size
        self.manifest: dict[str, Any] = {}
        self.signature: signature_lib.Signature | None = None
        self._pool: pool_lib.InterpreterPool | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def load(self) -> bool:
        data, self.manifest = load_verified_bundle(self.bundle_dir)
        self._pool = pool_lib.InterpreterPool(data, size=self.workers, num_threads=self.num_threads)
        first = self._pool.models[0]
        self.signature = signature_lib.Signature(
            inputs=tuple(first.inputs),
            outputs=tuple(first.outputs),
            max_batch_size=self.max_batch_size,
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="edgekit-infer"
        )
        self.ready = True
        return self.ready

    def stop(self) -> None:
        # KServe calls this on SIGTERM while gRPC may still drain: the interpreters and
        # the executor stay, so requests in flight finish; new ones see "not ready".
        self.ready = False

    # -- metadata --------------------------------------------------------------

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.signature.metadata("inputs") if self.signature else []

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.signature.metadata("outputs") if self.signature else []

    # -- inference -------------------------------------------------------------

    async def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self._pool.predict(arrays, batch_size=self.max_batch_size)
        )

    async def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        try:
            if isinstance(payload, InferRequest):
                arrays = self.signature.decode_v2(_v2_inputs(payload))
                outputs = await self._run(arrays)
                return self._v2_response(payload, outputs)
            if isinstance(payload, (bytes, str)):
                # A V1 client that sent JSON without a JSON content type (urllib's
                # default is form-encoded): KServe hands the raw body over.
                payload = _json_body(payload)
            arrays, fmt = self.signature.decode_v1(payload)
        except errors.UserInputError as e:
            raise InvalidInput(str(e)) from None
        outputs = await self._run(arrays)
        return self.signature.encode_v1(outputs, fmt)

    def _v2_response(self, request: InferRequest, outputs: list[np.ndarray]) -> InferResponse:
        infer_outputs = []
        for name, y in zip(self.signature.output_names(), outputs, strict=True):
            y = np.ascontiguousarray(y, dtype=np.float32)
            infer_outputs.append(
                InferOutput(name=name, shape=list(y.shape), datatype="FP32", data=y)
            )
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=infer_outputs,
            from_grpc=request.from_grpc,
        )


def _v2_inputs(request: InferRequest) -> list[tuple[str, str, np.ndarray]]:
    named = []
    for inp in request.inputs:
        dt = inp.datatype
        if (
            dt not in signature_lib.FLOAT_DATATYPES
            and dt not in signature_lib.V2_DATATYPES.values()
        ):
            raise errors.UserInputError(
                f"Input {inp.name!r} takes numbers: send datatype FP32. "
                + errors.received(datatype=dt)
            )
        try:
            arr = inp.as_numpy()
        except (ValueError, TypeError) as e:
            raise errors.UserInputError(
                f"Input {inp.name!r}: its data does not fit its shape or datatype ({e}). "
                + errors.received(shape=list(inp.shape), datatype=dt)
            ) from None
        named.append((inp.name, dt, arr))
    return named


def _json_body(body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise errors.UserInputError(
            f"The request body is not valid JSON: {e}. Send a JSON object such as "
            '{"instances": [...]}. ' + errors.received(body=repr(body[:80]))
        ) from None
