"""A gate for continuous integration: does a `.tflite` model meet its limits?

Each check measures one figure and compares it with a limit; a check whose limit is
not given is skipped (and says so). The figures are measured the way the rest of
edgekit measures them:

- size: the file's bytes on disk (1 KiB = 1024 bytes);
- accuracy: top-1 accuracy of the `.tflite` model on the data (`edgekit.evaluate`);
- accuracy drop: the Keras reference's top-1 accuracy minus the `.tflite` model's, on
  the same data, in percentage points;
- latency: the median (p50) of the timed runs of the benchmark harness
  (`edgekit.benchmark`, a fresh child process, seeded random inputs). The median,
  not the mean, because one slow run on a busy CI machine moves the mean but not the
  median.

Example:
    >>> report = run_checks("model.tflite", "test.npz", min_accuracy=0.95, max_size_kb=64)
    >>> report.passed
    True
    >>> print(report.format())
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Any

from edgekit import benchmark, convert, errors, evaluate, io
from edgekit.config import ConvertConfig
from edgekit.lite import inspect as lite_inspect
from edgekit.lite import validate
from edgekit.report import findings

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One check: what was measured, the limit, and how it was measured.

    Attributes:
      name: `size`, `accuracy`, `accuracy_drop` or `latency`.
      passed: True or False; None when the check was skipped (no limit given).
      measured: the measured figure in `unit`; None when skipped.
      limit: the limit in `unit`; None when skipped.
      unit: `KiB`, `fraction`, `points` or `ms`.
      how: how the figure was measured, in words.
      comparison: `<=` (the figure must not exceed the limit) or `>=`.
    """

    name: str
    passed: bool | None
    measured: float | None
    limit: float | None
    how: str
    unit: str = ""
    comparison: str = "<="

    @property
    def status(self) -> str:
        return SKIP if self.passed is None else PASS if self.passed else FAIL

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status}

    def format(self) -> str:
        """One line: `PASS  accuracy  91.25% >= 90.00%  (top-1 on 1000 samples of test.npz)`."""
        if self.passed is None:
            return f"{SKIP}  {self.name}: no limit given"
        return (
            f"{self.status}  {self.name}: {_show(self.measured, self.unit)} "
            f"(limit {self.comparison} {_show(self.limit, self.unit)}) -- {self.how}"
        )


@dataclasses.dataclass(frozen=True)
class CheckReport(io.SavesJson):
    """Every check of one model, in the order they ran; `save(path)` writes its JSON."""

    model: str
    results: tuple[CheckResult, ...]
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True when no check failed (skipped checks do not count)."""
        return not self.failures

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.passed is False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "passed": self.passed,
            "checks": [r.to_dict() for r in self.results],
            "warnings": list(self.warnings),
        }

    def format(self) -> str:
        """One line per check, then the verdict."""
        lines = [r.format() for r in self.results]
        lines += [f"WARNING: {w}" for w in self.warnings]
        ran = [r for r in self.results if r.passed is not None]
        noted = f" ({len(self.warnings)} warning(s) above)" if self.warnings else ""
        if self.passed:
            lines.append(f"All {len(ran)} checks passed{noted}.")
        else:
            names = ", ".join(r.name for r in self.failures)
            lines.append(f"{len(self.failures)} of {len(ran)} checks failed: {names}{noted}.")
        return "\n".join(lines)


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "fraction":
        return f"{100 * value:.2f}%"
    if unit == "points":
        return f"{value:.2f} points"
    if unit == "KiB":
        return f"{value:,.2f} KiB"
    if unit == "ms":
        return f"{value:.3f} ms" if value >= 0.1 else f"{value:.3g} ms"
    return f"{value:g} {unit}".strip()


def _number(name: str, value: Any, *, low: float, high: float | None = None, hint: str) -> None:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= low
        and (high is None or value <= high)
    )
    if not ok:
        bounds = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        raise errors.UserInputError(
            f"{name} must be a number {bounds}; {hint} " + errors.received(**{name: value})
        )


def _validate_options(
    *,
    data: Any,
    reference: Any,
    min_accuracy: float | None,
    max_accuracy_drop: float | None,
    max_size_kb: float | None,
    max_latency_ms: float | None,
    num_threads: int,
    num_runs: int,
) -> None:
    limits = {
        "min_accuracy": min_accuracy,
        "max_accuracy_drop": max_accuracy_drop,
        "max_size_kb": max_size_kb,
        "max_latency_ms": max_latency_ms,
    }
    if all(v is None for v in limits.values()):
        raise errors.UserInputError(
            "No limit given, so there is nothing to check. Pass at least one of "
            "min_accuracy, max_accuracy_drop, max_size_kb, max_latency_ms (on the command "
            "line: --min_accuracy=0.9, --max_size_kb=256, ...). " + errors.received(**limits)
        )
    if min_accuracy is not None:
        _number(
            "min_accuracy",
            min_accuracy,
            low=0.0,
            high=1.0,
            hint="it is a fraction, so pass 0.9 for 90%.",
        )
    if max_accuracy_drop is not None:
        _number(
            "max_accuracy_drop",
            max_accuracy_drop,
            low=0.0,
            high=100.0,
            hint="it is in percentage points, so pass 1.5 to allow 98.0% -> 96.5%.",
        )
        if reference is None:
            raise errors.UserInputError(
                "max_accuracy_drop compares the .tflite model with the Keras model it came "
                "from, so it needs that model: pass reference= (--reference=model.keras). "
                + errors.received(max_accuracy_drop=max_accuracy_drop, reference=None)
            )
    if max_size_kb is not None:
        _number("max_size_kb", max_size_kb, low=0.0, hint="it is in KiB (1 KiB = 1024 bytes).")
    if max_latency_ms is not None:
        _number(
            "max_latency_ms",
            max_latency_ms,
            low=0.0,
            hint="it is the median latency per inference in milliseconds.",
        )
    for name, value in (("num_threads", num_threads), ("num_runs", num_runs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise errors.UserInputError(
                f"{name} must be a whole number >= 1. " + errors.received(**{name: value})
            )
    if (min_accuracy is not None or max_accuracy_drop is not None) and data is None:
        raise errors.UserInputError(
            "The accuracy checks need labelled data: pass data= (--data=test.npz with arrays "
            "x and y, or an image folder). " + errors.received(data=None, min_accuracy=min_accuracy)
        )
    if isinstance(data, (str, os.PathLike)) and not pathlib.Path(data).exists():
        raise errors.UserInputError(
            f"No data at {str(data)!r}. Pass a .npz file (x, y) or an image folder. "
            + errors.received(data=str(data))
        )
    if isinstance(reference, (str, os.PathLike)) and not pathlib.Path(reference).exists():
        raise errors.UserInputError(
            f"No Keras model at {str(reference)!r}. Pass the .keras, .h5 or SavedModel the "
            ".tflite file was converted from. " + errors.received(reference=str(reference))
        )


def run_checks(
    model: str | os.PathLike | bytes,
    data: Any = None,
    *,
    reference: Any = None,
    min_accuracy: float | None = None,
    max_accuracy_drop: float | None = None,
    max_size_kb: float | None = None,
    max_latency_ms: float | None = None,
    num_threads: int = 1,
    num_runs: int = 50,
) -> CheckReport:
    """Measures a `.tflite` model against the given limits.

    Args:
      model: the `.tflite` path or its bytes.
      data: labelled evaluation data (any source `edgekit.data.load` accepts); needed by
        the accuracy checks only.
      reference: the Keras model (object or path) the file came from; needed by
        `max_accuracy_drop`.
      min_accuracy: lowest top-1 accuracy, a fraction in [0, 1].
      max_accuracy_drop: largest drop of top-1 accuracy from `reference`, in
        percentage points.
      max_size_kb: largest file size in KiB (1 KiB = 1024 bytes).
      max_latency_ms: largest median (p50) latency per inference, in milliseconds,
        measured by the benchmark harness with `num_threads` threads.
      num_threads: interpreter threads for the latency check.
      num_runs: minimum timed runs for the latency check.

    Returns:
      A `CheckReport`; `report.passed` is False when any check failed.

    Raises:
      UserInputError: no limit given, a limit out of range, `max_accuracy_drop`
        without `reference`, missing files, data without labels (all before measuring),
        or a model the runtime refuses.

    Example:
        >>> run_checks("m.tflite", "test.npz", reference="m.keras", max_accuracy_drop=1.0)
    """
    _validate_options(
        data=data,
        reference=reference,
        min_accuracy=min_accuracy,
        max_accuracy_drop=max_accuracy_drop,
        max_size_kb=max_size_kb,
        max_latency_ms=max_latency_ms,
        num_threads=num_threads,
        num_runs=num_runs,
    )
    blob = validate.read_model_bytes(model)
    validate.check_model_bytes(blob)
    name = "<bytes>" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
    results = [_size_check(blob, max_size_kb)]
    results += _accuracy_checks(
        model,
        blob,
        data,
        reference=reference,
        min_accuracy=min_accuracy,
        max_accuracy_drop=max_accuracy_drop,
    )
    results.append(_latency_check(blob, max_latency_ms, num_threads=num_threads, num_runs=num_runs))
    warnings = _against_original(
        blob, reference, results, latency=max_latency_ms is not None, num_threads=num_threads
    )
    return CheckReport(model=name, results=tuple(results), warnings=tuple(warnings))


def _against_original(
    blob: bytes, reference: Any, results: list[CheckResult], *, latency: bool, num_threads: int
) -> list[str]:
    """Warnings where the file is worse than its Keras model as float32 `.tflite`.

    Needs `reference`; the latency comparison (interleaved, in one child process) runs
    only when a latency limit was given, since it takes a few seconds.
    """
    if reference is None:
        return []
    ratios: dict[str, Any] = {}
    for r in results:
        if r.name == "accuracy_drop" and r.measured is not None:
            ratios["accuracy_drop_points"] = r.measured
    # The original as float32 with the same batch setting, so only the optimization differs.
    first = lite_inspect.inspect_model(blob).inputs[0]["shape_signature"]
    fixed = first[0] if first and first[0] > 0 else None
    try:
        original = convert.convert(reference, ConvertConfig(batch_size=fixed))
    except errors.UserInputError:  # a SavedModel keeps its own batch dimension
        original = convert.convert(reference, ConvertConfig())
    figures = [{"size_bytes": original.size_bytes}, {"size_bytes": len(blob)}]
    ratios["size"] = len(blob) / original.size_bytes
    samples = None
    if latency:
        cfg = benchmark.BenchmarkConfig(num_threads=num_threads, num_runs=200, max_secs=20)
        compared = benchmark.compare([original.tflite_bytes, blob], cfg)
        rows = compared.rows
        ratios["latency"] = compared.ratios[-1]
        samples = {"original": rows[0].samples_us or [], "result": rows[1].samples_us or []}
        for f, row in zip(figures, rows, strict=True):
            f["latency_us"] = row.latency_us
    threshold = next(
        (r.limit for r in results if r.name == "accuracy_drop" and r.limit is not None), 1.0
    )
    return findings.warnings_for(
        original=figures[0],
        result=figures[1],
        ratios=ratios,
        samples_us=samples,
        model=blob,
        max_accuracy_drop=threshold,
    )


def _skipped(name: str) -> CheckResult:
    return CheckResult(name, None, None, None, "no limit given")


def _size_check(blob: bytes, max_size_kb: float | None) -> CheckResult:
    if max_size_kb is None:
        return _skipped("size")
    kib = len(blob) / 1024
    return CheckResult(
        "size",
        kib <= max_size_kb,
        kib,
        float(max_size_kb),
        f"file size, {len(blob):,} bytes; 1 KiB = 1024 bytes",
        unit="KiB",
    )


def _accuracy_checks(
    model: str | os.PathLike | bytes,
    blob: bytes,
    data: Any,
    *,
    reference: Any,
    min_accuracy: float | None,
    max_accuracy_drop: float | None,
) -> list[CheckResult]:
    if min_accuracy is None and max_accuracy_drop is None:
        return [_skipped("accuracy"), _skipped("accuracy_drop")]
    # `evaluate` runs the file in a child process (a crash cannot end the caller); a
    # path rather than the bytes lets its error name the file.
    result = evaluate.evaluate(
        model if isinstance(model, (str, os.PathLike)) else blob,
        data,
        reference=reference if max_accuracy_drop is not None else None,
    )
    if result.accuracy is None:
        raise errors.UserInputError(
            "The accuracy checks need labels, and a classifier (outputs of shape "
            "(batch, classes)): the data has no labels or the model is not a classifier. "
            "Pass a .npz file with arrays x and y, or an image folder with one folder per "
            "class. " + errors.received(data=str(data) if not hasattr(data, "shape") else "array")
        )
    where = f"top-1 on {result.num_samples:,} samples"
    if isinstance(data, (str, os.PathLike)):
        where += f" of {os.fspath(data)}"
    out = []
    if min_accuracy is None:
        out.append(_skipped("accuracy"))
    else:
        out.append(
            CheckResult(
                "accuracy",
                result.accuracy >= min_accuracy,
                result.accuracy,
                float(min_accuracy),
                where,
                unit="fraction",
                comparison=">=",
            )
        )
    if max_accuracy_drop is None:
        out.append(_skipped("accuracy_drop"))
    else:
        drop = 100 * (result.reference_accuracy - result.accuracy)
        out.append(
            CheckResult(
                "accuracy_drop",
                # Rounding to 1e-9 points keeps equal accuracies from failing on float noise.
                round(drop, 9) <= max_accuracy_drop,
                drop,
                float(max_accuracy_drop),
                f"Keras {100 * result.reference_accuracy:.2f}% - .tflite "
                f"{100 * result.accuracy:.2f}%, {where}",
                unit="points",
            )
        )
    return out


def _latency_check(
    blob: bytes, max_latency_ms: float | None, *, num_threads: int, num_runs: int
) -> CheckResult:
    if max_latency_ms is None:
        return _skipped("latency")
    cfg = benchmark.BenchmarkConfig(num_threads=num_threads, num_runs=num_runs)
    stats = benchmark.benchmark(blob, cfg).rows[0]
    p50_ms = stats.latency_us["p50"] / 1000
    how = (
        f"median (p50) of {stats.num_runs} timed runs after {stats.warmup_runs} warm-up, "
        f"{stats.num_threads} thread{'s' if stats.num_threads != 1 else ''}, "
        f"XNNPack {'on' if stats.use_xnnpack else 'off'}, {stats.input_source} inputs, "
        "benchmark harness in a fresh process"
    )
    return CheckResult(
        "latency", p50_ms <= max_latency_ms, p50_ms, float(max_latency_ms), how, unit="ms"
    )
