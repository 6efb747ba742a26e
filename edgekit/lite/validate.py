"""Is this `.tflite` file safe to hand to an interpreter? Structural checks, then a child.

TFLite has had dozens of advisories for crafted models, and TensorFlow's security
policy says to treat a model as a program. Before any interpreter sees the bytes,
`validate_model_bytes` parses the flatbuffer with a bounds-checked reader and checks
what the interpreter trusts: offsets and vectors inside the file, tensor, buffer and
subgraph indices in range, buffer sizes that match the tensors, no op reading and
writing the same tensor, no cycle of subgraph calls, non-negative shapes, finite
positive scales and in-range zero points, and a cap on the total declared size
(the checks themselves, named in `CHECKS`, are in `edgekit.lite.checks`).

A file that passes can still trip a bug in a kernel, so `run_in_subprocess` validates
it, then loads it and runs one inference on zeros in a separate process with a
timeout and a memory cap (`edgekit.lite.sandbox`): a crash or a hang ends that
process, never the caller. The loader needs `os.fork` (Linux, macOS).

Example:
    >>> report = validate_model_bytes(data)
    >>> report.accepted, report.check, report.where
    (False, 'tensor_index', 'subgraph 0, operator 3, input 1')
    >>> result = run_in_subprocess("model.tflite", timeout=30)
    >>> result.status           # "ok", "error", "crash" or "timeout"
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from edgekit import errors
from edgekit.lite import checks, sandbox, schema

CHECKS = checks.CHECKS
DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3  # declared tensor bytes, all subgraphs together
declared_bytes = checks.declared_bytes
LoadResult = sandbox.LoadResult


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """The verdict on one file: accepted, or the first check that failed and where."""

    accepted: bool
    check: str | None = None
    where: str | None = None
    message: str | None = None
    size_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_model_bytes(
    data: bytes, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
) -> ValidationReport:
    """Runs every structural check on the bytes of a `.tflite` file.

    Args:
      data: the whole file.
      max_total_bytes: cap on the sum of declared tensor sizes over all subgraphs.

    Returns:
      A `ValidationReport`; `accepted` is False with `check`, `where` and `message`
      set when a check fails. Never raises for bad bytes.

    Example:
        >>> validate_model_bytes(pathlib.Path("m.tflite").read_bytes()).accepted
        True
    """
    data = bytes(data)
    try:
        checks.parse_and_check(data, max_total_bytes)
    except checks.Reject as e:
        return ValidationReport(False, e.check, e.where, e.message, len(data))
    return ValidationReport(True, size_bytes=len(data))


def check_model_bytes(data: bytes, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> None:
    """Raises `UserInputError` when the bytes fail a structural check (see `CHECKS`).

    This is what `edgekit.runtime.LiteModel` runs before the interpreter sees a file.
    """
    parse_model(data, max_total_bytes=max_total_bytes)


def parse_model(data: bytes, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> schema.Model:
    """Checks the bytes and returns their parsed structure (what `inspect` reads).

    Raises:
      UserInputError: a check failed; the message names the check and where.
    """
    data = bytes(data)
    try:
        return checks.parse_and_check(data, max_total_bytes)
    except checks.Reject as e:
        raise errors.UserInputError(
            f"The .tflite file failed the {e.check!r} safety check at {e.where}: "
            f"{e.message}. The file is malformed, truncated or crafted; it was not "
            "loaded. Re-export it from the original model, or check how it was copied. "
            + errors.received(check=e.check, where=e.where, size_bytes=len(data))
        ) from None


def read_model_bytes(model: str | os.PathLike | bytes) -> bytes:
    """Returns the bytes of a `.tflite` model given as a path or bytes, checking the identifier.

    Raises:
      UserInputError: no file at the path, or the bytes are not a TFLite flatbuffer.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        where = "the given bytes"
    else:
        p = pathlib.Path(model)
        if not p.is_file():
            raise errors.UserInputError(
                f"No .tflite file at {str(p)!r}. Check the path. " + errors.received(model=str(p))
            )
        data = p.read_bytes()
        where = repr(str(p))
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise errors.UserInputError(
            f"{where} is not a TFLite flatbuffer (the file identifier 'TFL3' is missing; "
            f"{len(data)} bytes). Pass a .tflite file made by the TFLite converter or "
            "edgekit-convert. " + errors.received(model=where if len(where) < 200 else "<bytes>")
        )
    return data


def run_in_subprocess(
    model: str | os.PathLike | bytes,
    *,
    timeout: float = 60.0,
    validate: bool = True,
    memory_limit_mb: int | None = 4096,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> LoadResult:
    """Validates, then loads and runs a model once on zeros in a child process.

    Args:
      model: path to a `.tflite` file, or its bytes.
      timeout: seconds the child may take before it is killed ("timeout").
      validate: run the structural checks first (in this process; they cannot crash).
      memory_limit_mb: address-space cap of the child, so a model that asks for huge
        buffers fails there instead of exhausting the machine; None for no cap.
      max_total_bytes: the validation's cap on declared tensor sizes.

    Returns:
      A `LoadResult`. Never raises for a bad model; raises `UserInputError` only if
      the path does not exist.
    """
    data = read_model_bytes(model) if not isinstance(model, bytes) else model
    return run_many_in_subprocess(
        [data],
        timeout=timeout,
        validate=validate,
        memory_limit_mb=memory_limit_mb,
        max_total_bytes=max_total_bytes,
    )[0]


def run_many_in_subprocess(
    models: Sequence[bytes],
    *,
    timeout: float = 60.0,
    validate: bool = True,
    memory_limit_mb: int | None = 4096,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> list[LoadResult]:
    """Like `run_in_subprocess` for many models, sharing one loader server.

    The server starts once and forks a fresh process per model, so each verdict
    belongs to its own model: a crash or hang is recorded as "crash" or "timeout"
    for that model only. `timeout` applies to each model.
    """
    results: list[LoadResult | None] = [None] * len(models)
    todo = []
    for i, data in enumerate(models):
        if validate:
            report = validate_model_bytes(data, max_total_bytes=max_total_bytes)
            if not report.accepted:
                results[i] = LoadResult(
                    "rejected", f"{report.where}: {report.message}", check=report.check
                )
                continue
        todo.append(i)
    loaded = sandbox.load_and_run(
        [models[i] for i in todo], timeout=timeout, memory_limit_mb=memory_limit_mb
    )
    for i, result in zip(todo, loaded, strict=True):
        results[i] = result
    return results  # type: ignore[return-value]
