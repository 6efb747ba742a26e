"""A fixed pool of interpreters: one per request running at once.

A LiteRT interpreter holds its tensors in place and is not thread-safe, so each
in-flight request borrows one interpreter for its whole run and gives it back. The
pool is sized to the server's concurrency (`--workers`): there is never more than one
request per interpreter, and memory stays flat however many clients connect.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator, Sequence

import numpy as np

from edgekit import errors
from edgekit.runtime import LiteModel


class InterpreterPool:
    """`size` independent `LiteModel`s of the same bytes.

    Args:
      model_bytes: the `.tflite` flatbuffer (already verified by the caller).
      size: interpreters in the pool, i.e. requests that run at once.
      num_threads: threads of each interpreter.
    """

    def __init__(self, model_bytes: bytes, *, size: int, num_threads: int | None) -> None:
        if not isinstance(size, int) or size < 1:
            raise errors.UserInputError(
                "The interpreter pool needs at least one interpreter. " + errors.received(size=size)
            )
        self.size = size
        self._free: queue.SimpleQueue[LiteModel] = queue.SimpleQueue()
        self.models = [LiteModel(model_bytes, num_threads=num_threads) for _ in range(size)]
        for m in self.models:
            self._free.put(m)

    @contextlib.contextmanager
    def borrow(self) -> Iterator[LiteModel]:
        model = self._free.get()
        try:
            yield model
        finally:
            self._free.put(model)

    def predict(self, arrays: Sequence[np.ndarray], *, batch_size: int) -> list[np.ndarray]:
        """Runs one request on a free interpreter; float32 outputs in output order."""
        with self.borrow() as model:
            out = model.predict(
                list(arrays) if len(arrays) > 1 else arrays[0], batch_size=batch_size
            )
        return out if isinstance(out, list) else [out]
