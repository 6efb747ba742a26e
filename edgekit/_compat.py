"""The only module that imports the heavy packages, and only when asked.

`import edgekit` and every `edgekit-<verb> --help` must stay instant, and the
runtime pieces (the interpreter wrapper, the benchmark harness, `edgekit.lite`)
must work on a device that has only numpy and ai-edge-litert. So every heavy
import goes through one of the functions below, each called at the point of use.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import threading
import types
from collections.abc import Iterator

from edgekit import errors

# `pip install edgekit` (and the `serve` extra) brings the runtime only; the training
# and conversion stages need the `tensorflow` extra.
_NEEDS_TENSORFLOW = (
    "This needs TensorFlow, which is not installed; install it with "
    "pip install 'edgekit[tensorflow]' (the runtime, the benchmark harness and "
    "edgekit-serve work without it). "
)


def _missing(package: str, error: ImportError) -> errors.UserInputError:
    return errors.UserInputError(
        _NEEDS_TENSORFLOW + errors.received(missing=package, import_error=str(error))
    )


def _quiet_tensorflow() -> None:
    # TensorFlow prints pages of CUDA and oneDNN notes on import (level 2 still lets
    # its early INFO lines through); they are noise for our users. Set
    # TF_CPP_MIN_LOG_LEVEL=0 to see them: a value the user chose is respected.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# What TensorFlow's C++ side prints on import and device set-up whatever
# TF_CPP_MIN_LOG_LEVEL says (absl logs them before its own initialisation).
_IMPORT_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "Unable to register cu",
    "TF-TRT Warning",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
)


# What LiteRT's C++ side prints to file descriptor 2 when an interpreter is created or
# its tensors allocated, whatever TF_CPP_MIN_LOG_LEVEL says (tested: levels 0 to 3 all
# print it).
LITERT_NOISE = (
    "Created TensorFlow Lite XNNPACK delegate for CPU",
    "node(s) with delegate (",  # "INFO: Replacing 12 out of 12 node(s) with delegate (...)"
    "Initialized TensorFlow Lite runtime",
)


def litert_logs_wanted() -> bool:
    """True when the user asked for LiteRT's own INFO lines (TF_CPP_MIN_LOG_LEVEL=0)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"


@contextlib.contextmanager
def quiet_litert() -> Iterator[None]:
    """Drops LiteRT's INFO lines (the XNNPack delegate note) from file descriptor 2.

    Wrap interpreter creation and `allocate_tensors` in it; every other line still
    reaches stderr, after the block. Set TF_CPP_MIN_LOG_LEVEL=0 to keep LiteRT's lines.
    """
    if litert_logs_wanted():
        yield
        return
    # fd 2 is one per process: two threads swapping it at once could leave it pointing
    # at a closed temporary file, so interpreters are created one at a time here.
    with _STDERR_LOCK, _filtered_stderr(LITERT_NOISE):
        yield


_STDERR_LOCK = threading.RLock()


@contextlib.contextmanager
def _filtered_stderr(noise: tuple[str, ...] = _IMPORT_NOISE) -> Iterator[None]:
    """Drops the lines holding `noise` from file descriptor 2; keeps everything else."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(n in line for n in noise):
                    sys.stderr.write(line)
            sys.stderr.flush()


@functools.cache
def tf() -> types.ModuleType:
    """Returns the `tensorflow` module."""
    _quiet_tensorflow()
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:  # checked without the noisy import
        raise _missing("tensorflow", ImportError("No module named 'tensorflow'"))
    with _filtered_stderr():
        import tensorflow

        # Device discovery prints its own CUDA notes; do it while filtering.
        tensorflow.config.list_physical_devices()
    return tensorflow


@functools.cache
def tf_keras() -> types.ModuleType:
    """Returns `tf_keras` (Keras 2), the only Keras that TF-MOT accepts.

    Imported explicitly, never through `TF_USE_LEGACY_KERAS`, so the result does not
    depend on the user's environment.
    """
    tf()
    try:
        import tf_keras
    except ImportError as e:
        raise _missing("tf_keras", e) from None

    return tf_keras


@functools.cache
def tfmot() -> types.ModuleType:
    """Returns `tensorflow_model_optimization`."""
    tf_keras()  # TF-MOT picks its Keras at import time; make sure tf_keras is there.
    try:
        import tensorflow_model_optimization
    except ImportError as e:
        raise _missing("tensorflow-model-optimization", e) from None

    return tensorflow_model_optimization


@functools.cache
def keras3() -> types.ModuleType:
    """Returns Keras 3 (the `keras` package), used to read Keras 3 model files."""
    tf()
    import keras

    return keras


@functools.cache
def litert_interpreter() -> types.ModuleType:
    """Returns the interpreter module: LiteRT's, or TensorFlow's if LiteRT is missing."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:  # pragma: no cover - only on machines without LiteRT
        _quiet_tensorflow()
        from tensorflow.lite.python import interpreter
    return interpreter


@functools.cache
def litert_schema() -> types.ModuleType:
    """Returns the flatbuffer schema module that ships inside ai-edge-litert."""
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def versions() -> dict[str, str | None]:
    """Versions of the stack, for manifests and reports; never imports TensorFlow itself."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in (
        "edgekit",
        "tensorflow",
        "tensorflow-cpu",
        "tf-keras",
        "tensorflow-model-optimization",
        "ai-edge-litert",
        "keras",
        "numpy",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
