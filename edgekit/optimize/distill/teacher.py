"""The teacher's targets: its logits and chosen features, computed once and cached.

The teacher never trains: `teacher_targets` runs it once per dataset in inference
mode and keeps the outputs in memory or on disk, keyed by the data and the
teacher's architecture and weights. A cache file records both hashes and is used
only when they match.

Example:
    >>> (logits,), source, status = teacher_targets(teacher, x, cache_dir="cache/")
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import pathlib
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekit import _compat, io
from edgekit.optimize.distill import student as student_lib

_MEMORY_CACHE: OrderedDict[str, list[np.ndarray]] = OrderedDict()
_MEMORY_ENTRIES = 8


def _teacher_view(teacher: Any, names: list[str]) -> tuple[Any, str]:
    """A Functional model teacher input -> [logits, features...] and how logits are read."""
    tf_keras = _compat.tf_keras()
    last = student_lib.output_layer(teacher)
    act = student_lib.activation_name(last)
    source = "logits" if act in (None, "linear") else "log-probs"
    logits = teacher.outputs[0]
    if act == "softmax" and type(last).__name__ in ("Softmax", "Activation"):
        logits, source = last.input, "pre-softmax"
    elif act == "softmax" and len(last._inbound_nodes) == 1:
        cfg = {**last.get_config(), "activation": "linear", "name": f"{last.name}_logits_view"}
        linear = type(last).from_config(cfg)
        logits = linear(last.input)
        linear.set_weights(last.get_weights())  # a frozen copy of the teacher's head
        source = "pre-softmax"
    feats = [teacher.get_layer(n).output for n in names]
    return tf_keras.Model(teacher.inputs, [logits, *feats]), source


def _sha256(*arrays: np.ndarray, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fingerprint_model(model: Any) -> str:
    """sha256 of a model's architecture and every weight."""
    arch = json.dumps(model.get_config(), sort_keys=True, default=str)
    return _sha256(*model.get_weights(), extra=arch)


def _read_cache(
    path: pathlib.Path, data_hash: str, teacher_hash: str, view_key: str, num_samples: int
) -> tuple[list[np.ndarray], str] | None:
    """The cached outputs if the file records this data and teacher, else None."""
    try:
        with np.load(path, allow_pickle=False) as f:
            ok = (
                str(f["data_sha256"]) == data_hash
                and str(f["teacher_sha256"]) == teacher_hash
                and str(f["features"]) == view_key
                and int(f["num_samples"]) == num_samples
            )
            if not ok:
                return None
            outs = [np.array(f[f"out{i}"]) for i in range(int(f["num_outputs"]))]
            return outs, str(f["source"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # unreadable: recomputed and replaced


def teacher_targets(
    teacher: Any,
    x: np.ndarray,
    *,
    feature_names: Sequence[str] = (),
    use_cache: bool = True,
    cache_dir: str | None = None,
) -> tuple[list[np.ndarray], str, str]:
    """The teacher's logits and features on `x`, computed once per (data, teacher).

    The cache key hashes the data and the teacher's architecture and weights; a disk
    cache file also records both hashes and is used only when they match (a file left
    by other data or another teacher is recomputed and replaced).

    Returns:
      ([logits, feature arrays...], how logits were read, cache status).
    """
    data_hash = _sha256(x)
    teacher_hash = fingerprint_model(teacher)
    view_key = json.dumps(list(feature_names))
    key = hashlib.sha256(f"{data_hash}/{teacher_hash}/{view_key}".encode()).hexdigest()
    view, source = _teacher_view(teacher, list(feature_names))
    status = "off"
    path = pathlib.Path(cache_dir) / f"teacher-{key[:24]}.npz" if cache_dir else None
    if use_cache and path is None and key in _MEMORY_CACHE:
        return [a.copy() for a in _MEMORY_CACHE[key]], source, "memory"
    if use_cache and path is not None and path.exists():
        cached = _read_cache(path, data_hash, teacher_hash, view_key, len(x))
        if cached is not None:
            return cached[0], cached[1], "disk"
        status = "stale-recomputed"
        warnings.warn(
            f"Teacher cache {str(path)!r} was made from other data or another teacher (or "
            "is unreadable); recomputing it.",
            stacklevel=2,
        )
    outs = view.predict(x, batch_size=256, verbose=0)
    outs = [np.asarray(o, np.float32) for o in (outs if isinstance(outs, list) else [outs])]
    if source == "log-probs":
        outs[0] = np.log(np.clip(outs[0], 1e-12, 1.0)).astype(np.float32)
    if not use_cache:
        return outs, source, "off"
    if path is None:
        _MEMORY_CACHE[key] = [a.copy() for a in outs]
        while len(_MEMORY_CACHE) > _MEMORY_ENTRIES:
            _MEMORY_CACHE.popitem(last=False)
        return outs, source, "computed"
    buf = _io.BytesIO()
    np.savez(
        buf,
        data_sha256=data_hash,
        teacher_sha256=teacher_hash,
        features=view_key,
        source=source,
        num_samples=len(x),
        num_outputs=len(outs),
        **{f"out{i}": o for i, o in enumerate(outs)},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    io.atomic_write_bytes(path, buf.getvalue(), overwrite=True)
    return outs, source, "computed" if status == "off" else status
