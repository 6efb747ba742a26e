"""The report's input: what a run measured, as frozen dataclasses with one spelling per key.

`edgekit.pipeline` builds a `Summary` and hands it to `edgekit.report.render`;
`Summary.to_dict()` is the `summary` of a `PipelineResult` (and the metrics of
manifest.json). A script or a notebook may pass a plain dict instead:
`Summary.from_dict` checks it up front and says what is wrong.

The keys are the pipeline's own: `measured_how`, a column's `name`, a quantization
error row's `tensor` and `op`. Older spellings (`measurement`, `label`, `tensor_name`,
`op_name`) are still read, with a `DeprecationWarning`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

from edgekit import errors

# Left out of `to_dict()` when None (or empty): figures only some runs measure.
_OPTIONAL = {"optional": True}

# Older spelling -> the one key, per kind of dict. Read with a warning, never written.
_LEGACY_KEYS = {
    "summary": {"measurement": "measured_how"},
    "column": {"label": "name"},
    "quant_error": {"tensor_name": "tensor", "op_name": "op"},
}


def is_number(x: Any) -> bool:
    """A finite real number: Python or numpy, not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.metadata.get("optional") and (v is None or (isinstance(v, tuple) and not v)):
                continue
            out[f.name] = _to_json(v)
        return out
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


def _canonical(raw: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """`raw` with older key spellings renamed (the one key wins when both are given)."""
    out = dict(raw)
    for old, new in _LEGACY_KEYS[kind].items():
        if old in out:
            warnings.warn(
                f"The report summary key {old!r} is deprecated; use {new!r}.",
                DeprecationWarning,
                stacklevel=2,
            )
            value = out.pop(old)
            if out.get(new) is None:
                out[new] = value
    return out


def _known(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `cls` found in `raw`; other keys (such as `ratios` for a page) are ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelFigures:
    """One column of the comparison: a .tflite file and what was measured on it.

    Attributes:
      name: column header, e.g. "result (int8 .tflite)"; defaults to the column's role.
      size_bytes: the .tflite file size (required).
      gzip_size_bytes: size after gzip -9.
      accuracy: top-1 accuracy as a fraction in [0, 1].
      keras_accuracy: accuracy of the Keras model the file came from.
      params: number of parameters of the Keras model.
      parity: outputs against the Keras model (`ParityResult.to_dict()`).
      latency_us: `LatencyStats.latency_us` ({"p50": ..., "p90": ..., "p99": ..., ...}).
      peak_rss_mb: peak resident memory of the measuring process.
      init_ms / memory: the benchmark's load time and memory breakdown.
    """

    name: str | None = None
    size_bytes: float | None = None
    gzip_size_bytes: float | None = None
    accuracy: float | None = None
    keras_accuracy: float | None = None
    # Always written, null when unknown (the summary's keys before the typed schema).
    params: int | None = None
    parity: Mapping[str, Any] | None = None
    latency_us: Mapping[str, float] | None = dataclasses.field(default=None, metadata=_OPTIONAL)
    peak_rss_mb: float | None = dataclasses.field(default=None, metadata=_OPTIONAL)
    init_ms: float | None = dataclasses.field(default=None, metadata=_OPTIONAL)
    memory: Mapping[str, Any] | None = dataclasses.field(default=None, metadata=_OPTIONAL)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, default_name: str) -> ModelFigures:
        fields = _known(cls, _canonical(raw, "column"))
        return cls(**{**fields, "name": fields.get("name") or default_name})

    def to_dict(self) -> dict[str, Any]:
        return _to_json(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeasuredHow:
    """How the figures were measured, shown beside them: a sentence or a dict each.

    Attributes:
      accuracy: e.g. "top-1 on 1797 held-out samples", or {"num_samples": int, "data": str}.
      latency: a sentence, or {"num_threads", "num_runs", "warmup_runs", "use_xnnpack",
        "input_source"} (a `BenchmarkConfig.to_dict()` works).
      size: e.g. "bytes of the .tflite file; gzip -9".
      memory: e.g. "peak RSS of the benchmark process".
    """

    accuracy: str | Mapping[str, Any] | None = None
    latency: str | Mapping[str, Any] | None = None
    size: str | Mapping[str, Any] | None = None
    memory: str | Mapping[str, Any] | None = dataclasses.field(default=None, metadata=_OPTIONAL)

    def text(self, what: str) -> str:
        """The sentence for `what` ("latency", "accuracy", "size" or "memory"); "" if not given."""
        m = getattr(self, what, None)
        if m is None:
            return ""
        if isinstance(m, str):
            return m
        if not isinstance(m, Mapping):
            return str(m)
        if what == "latency":
            parts = []
            if "num_threads" in m:
                parts.append(f"{m['num_threads']} thread{'s' if m['num_threads'] != 1 else ''}")
            if "num_runs" in m:
                parts.append(f"{m['num_runs']} runs")
            if "warmup_runs" in m:
                parts.append(f"{m['warmup_runs']} warm-up")
            if "use_xnnpack" in m:
                parts.append("XNNPack" if m["use_xnnpack"] else "no XNNPack")
            if m.get("input_source"):
                parts.append(f"{m['input_source']} inputs")
            return ", ".join(parts)
        if what == "accuracy":
            parts = []
            if "num_samples" in m:
                parts.append(f"{m['num_samples']:,} samples")
            if m.get("data"):
                parts.append(f"of {m['data']}")
            return "top-1 on " + " ".join(parts) if parts else ""
        return ", ".join(f"{k}={v}" for k, v in m.items())


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ratios:
    """Result / original, each only when both figures exist."""

    size: float | None = dataclasses.field(default=None, metadata=_OPTIONAL)
    gzip_size: float | None = dataclasses.field(default=None, metadata=_OPTIONAL)
    accuracy_drop_points: float | None = dataclasses.field(default=None, metadata=_OPTIONAL)
    # The benchmark's paired comparison (`BenchmarkResult.ratios`).
    latency: Any = dataclasses.field(default=None, metadata=_OPTIONAL)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerSparsity:
    """Share of exactly-zero weights in one layer of the result."""

    layer: str | None = dataclasses.field(default=None, metadata=_OPTIONAL)
    type: str | None = dataclasses.field(default=None, metadata=_OPTIONAL)
    sparsity: float | None = None
    num_weights: int | None = dataclasses.field(default=None, metadata=_OPTIONAL)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LayerSparsity:
        return cls(**_known(cls, raw))


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerQuantError:
    """One row of TensorFlow's quantization debugger: a tensor's error against float."""

    tensor: str | None = None
    op: str | None = None
    mean_squared_error: float | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LayerQuantError:
        """Takes a row of `evaluate.layer_quantization_error` too (`tensor_name`, `op_name`)."""
        return cls(**_known(cls, _canonical(raw, "quant_error")))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Summary:
    """Every figure of a run: what the pipeline hands the report.

    Only `original.size_bytes` and `result.size_bytes` are required; a section without
    data is left out of the pages with a sentence saying so.

    Attributes:
      original: the float32 model as converted without changes.
      result: the optimized model.
      title: page title (default "edgekit report").
      model_name: the Keras model the run started from.
      recipe: the recipe as run (any JSON-ready dict).
      environment: where it was measured: cpu_model, os, versions...
      measured_how: how the numbers were measured.
      ratios: result / original.
      stages: each training stage's report, by stage name.
      sparsity_per_layer / quant_error_per_layer: one row per layer / tensor.
      latency_samples_us: per-run latencies by column ("original", "result" or a name).
      notes: sentences shown at the end.
      warnings: where the result is worse than the original (slower beyond the
        measured noise, larger, less accurate), each with what the file shows about
        the cause and what to try; shown first. Empty when nothing is worse.
      created: when the run happened (ISO 8601).
      variants: extra columns beside the original and the result.
      keras: for a Keras 3 input model, which Keras each model was and the Keras 3
        bridge's equivalence figures per training stage; None (left out) otherwise.
    """

    # In the order of the pipeline's summary and manifest.json.
    title: str | None = None
    model_name: str | None = None
    recipe: Mapping[str, Any] | None = None
    environment: Mapping[str, Any] | None = None
    measured_how: MeasuredHow = MeasuredHow()
    original: ModelFigures
    result: ModelFigures
    ratios: Ratios = Ratios()
    stages: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sparsity_per_layer: tuple[LayerSparsity, ...] = ()
    quant_error_per_layer: tuple[LayerQuantError, ...] = ()
    latency_samples_us: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    created: str | None = dataclasses.field(default=None, metadata=_OPTIONAL)
    variants: tuple[ModelFigures, ...] = dataclasses.field(default=(), metadata=_OPTIONAL)
    keras: Mapping[str, Any] | None = dataclasses.field(default=None, metadata=_OPTIONAL)

    def __post_init__(self) -> None:
        # A column without a name is called by its role.
        roles = ["original", "result", *(f"variant {i + 1}" for i in range(len(self.variants)))]
        named = [
            m if m.name else dataclasses.replace(m, name=r)
            for m, r in zip(self.columns, roles, strict=True)
        ]
        object.__setattr__(self, "original", named[0])
        object.__setattr__(self, "result", named[1])
        object.__setattr__(self, "variants", tuple(named[2:]))
        paths = ["summary['original']", "summary['result']"]
        paths += [f"summary['variants'][{i}]" for i in range(len(self.variants))]
        for path, m in zip(paths, self.columns, strict=True):
            _check_column(path, m)

    @property
    def columns(self) -> list[ModelFigures]:
        """The columns of the comparison: original, result, then the variants."""
        return [self.original, self.result, *self.variants]

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready dicts and lists (what manifest.json and summary.json hold)."""
        return _to_json(self)

    @classmethod
    def from_dict(cls, raw: Any) -> Summary:
        """Reads a summary dict; raises `UserInputError` naming the first bad field."""
        _check_shape(raw)
        raw = _canonical(raw, "summary")
        fields = _known(cls, raw)
        fields["original"] = ModelFigures.from_dict(raw["original"], default_name="original")
        fields["result"] = ModelFigures.from_dict(raw["result"], default_name="result")
        fields["variants"] = tuple(
            ModelFigures.from_dict(v, default_name=f"variant {i + 1}")
            for i, v in enumerate(raw.get("variants") or [])
        )
        fields["measured_how"] = MeasuredHow(**_known(MeasuredHow, raw.get("measured_how") or {}))
        fields["ratios"] = Ratios(**_known(Ratios, raw.get("ratios") or {}))
        fields["sparsity_per_layer"] = tuple(
            LayerSparsity.from_dict(r)
            for r in raw.get("sparsity_per_layer") or []
            if isinstance(r, Mapping)
        )
        fields["quant_error_per_layer"] = tuple(
            LayerQuantError.from_dict(r)
            for r in raw.get("quant_error_per_layer") or []
            if isinstance(r, Mapping)
        )
        fields["notes"] = tuple(str(n) for n in raw.get("notes") or [])
        fields["warnings"] = tuple(str(n) for n in raw.get("warnings") or [])
        for key in ("stages", "latency_samples_us"):
            fields[key] = raw.get(key) or {}
        return cls(**fields)


def _check_shape(summary: Any) -> None:
    """The checks a dict needs before it can become a `Summary`."""
    if not isinstance(summary, Mapping):
        raise errors.UserInputError(
            "The report summary must be a dict (see edgekit.report.Summary). "
            + errors.received(summary=type(summary).__name__)
        )
    for key in ("original", "result"):
        entry = summary.get(key)
        if not isinstance(entry, Mapping) or not is_number(entry.get("size_bytes")):
            raise errors.UserInputError(
                _size_message(f"summary[{key!r}]") + errors.received(**{key: entry})
            )
    variants = summary.get("variants") or []
    if not isinstance(variants, list) or not all(isinstance(v, Mapping) for v in variants):
        raise errors.UserInputError(
            "summary['variants'] must be a list of dicts with the keys of summary['result']. "
            + errors.received(variants=variants)
        )
    for key in ("sparsity_per_layer", "quant_error_per_layer", "notes"):
        value = summary.get(key)
        if value is not None and not isinstance(value, list | tuple):
            raise errors.UserInputError(
                f"summary[{key!r}] must be a list (see edgekit.report.Summary). "
                + errors.received(**{key: value})
            )
    samples = summary.get("latency_samples_us")
    if samples is not None and not isinstance(samples, Mapping):
        raise errors.UserInputError(
            "summary['latency_samples_us'] must map a model ('original', 'result') to its "
            "per-run latencies in microseconds. " + errors.received(latency_samples_us=samples)
        )


def _size_message(path: str) -> str:
    return (
        f"The report needs {path}['size_bytes'], the .tflite file size in "
        "bytes, to compare the original and the result. Fill it from "
        "ConversionResult.size_bytes. "
    )


def _check_column(path: str, m: ModelFigures) -> None:
    if not is_number(m.size_bytes):
        raise errors.UserInputError(_size_message(path) + errors.received(size_bytes=m.size_bytes))
    acc = m.accuracy
    if acc is not None and (not is_number(acc) or not 0.0 <= acc <= 1.0):
        raise errors.UserInputError(
            f"Accuracy of {m.name!r} must be a fraction in [0, 1] (0.91 for 91%). "
            + errors.received(accuracy=acc)
        )
    lat = m.latency_us
    if lat is not None and not isinstance(lat, Mapping):
        raise errors.UserInputError(
            f"latency_us of {m.name!r} must be a dict such as {{'p50': 812.0, "
            "'p90': 840.0, 'p99': 901.0}} (LatencyStats.latency_us). "
            + errors.received(latency_us=lat)
        )
