"""`tune()`: search recipes for the best model under limits, measuring every candidate."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgekit import __version__, convert, errors, evaluate, io
from edgekit import config as config_lib
from edgekit import data as data_lib
from edgekit.tuning import front as front_lib
from edgekit.tuning import outputs as outputs_lib
from edgekit.tuning import space as space_lib
from edgekit.tuning import study as study_lib
from edgekit.tuning import trial as trial_lib
from edgekit.tuning import worker as worker_lib

OBJECTIVES = ("latency", "size", "accuracy")
# What the search's own benchmark runs by default: enough for a stable p50 on
# small models, short enough for dozens of candidates.
DEFAULT_BENCHMARK = config_lib.BenchmarkConfig(
    num_runs=50, min_secs=0.5, max_secs=10.0, warmup_min_secs=0.2
)
_IDENTITY = "tune.json"


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """Where the search wrote its files, and what it chose (summary.json's content)."""

    output_dir: str
    summary: dict[str, Any]

    @property
    def met(self) -> bool:
        """True when a candidate meets every constraint."""
        return bool(self.summary.get("constraints_met"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise errors.UserInputError(
            f"{name} must be a number > 0, or None for no limit. "
            + errors.received(**{name: value})
        )


def _validate(
    objective: str, storage: str | None, limits: front_lib.Limits, **numbers: Any
) -> None:
    if objective not in OBJECTIVES:
        raise errors.UserInputError(
            f"objective must be one of {list(OBJECTIVES)}. " + errors.received(objective=objective)
        )
    if limits.max_accuracy_drop is not None and (
        isinstance(limits.max_accuracy_drop, bool) or limits.max_accuracy_drop < 0
    ):
        raise errors.UserInputError(
            "max_accuracy_drop is in percentage points and must be >= 0. "
            + errors.received(max_accuracy_drop=limits.max_accuracy_drop)
        )
    for name in ("max_size_kb", "max_latency_ms", "max_peak_memory_mb"):
        _positive(name, getattr(limits, name))
    for name, value in numbers.items():
        _positive(name, value)
    if numbers.get("max_trials") is not None and not isinstance(numbers["max_trials"], int):
        raise errors.UserInputError(
            "max_trials must be a whole number >= 1. "
            + errors.received(max_trials=numbers["max_trials"])
        )
    if storage is not None:
        study_lib.check_url(storage)


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, bytes):
            h.update(p)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _what_is_measured(cand: space_lib.Candidate) -> dict[str, Any]:
    """The candidate's recipe without how the device is reached (key, ssh options, Python):
    workers that reach one device with their own credentials share the study."""
    d = cand.recipe.to_dict()
    if d.get("benchmark"):  # set to the defaults: a search without them keeps its study name
        d["benchmark"].update(ssh_key=None, ssh_options=[], remote_python="python3")
    return d


def _model_digest(source: Any, model: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        path = pathlib.Path(source)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return _digest(*[p.read_bytes() for p in files])
    return _digest(model.to_json(), *[np.asarray(w) for w in model.get_weights()])


def _check_folder(out: pathlib.Path, identity: dict[str, Any]) -> None:
    """Refuses a folder that holds another study's search, or other files (writes nothing)."""
    path = out / _IDENTITY
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("key") != identity["key"]:
            raise errors.UserInputError(
                f"{str(out)!r} holds the search of a different study ({old.get('study_name')}: "
                "another model, data or search space). Expected a new folder or this "
                "search's own folder (to resume it). Pass another --output_dir, or delete the "
                "folder to start over. "
                + errors.received(output_dir=str(out), study=identity["study_name"])
            )
        return
    if out.exists() and any(p.name != "study.db" for p in out.iterdir()):
        raise errors.UserInputError(
            f"{str(out)!r} already holds files that are not an edgekit-tune search. Expected an "
            "empty or new folder. Pass another --output_dir. "
            + errors.received(output_dir=str(out))
        )


def tune(
    model: Any,
    *,
    data: Any,
    output_dir: str | os.PathLike,
    eval_data: Any = None,
    max_accuracy_drop: float | None = None,
    max_size_kb: float | None = None,
    max_latency_ms: float | None = None,
    max_peak_memory_mb: float | None = None,
    integer_only: bool = False,
    objective: str = "latency",
    target: str | None = None,
    num_threads: int | None = None,
    budget_minutes: float | None = None,
    max_trials: int | None = None,
    storage: str | None = None,
    seed: int = 0,
    benchmark: config_lib.BenchmarkConfig | None = None,
    train_epochs: int | None = None,
    candidates: Sequence[str] | None = None,
    heartbeat_seconds: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> TuneResult:
    """Searches recipes for the best `.tflite` under limits, measuring every candidate.

    Candidates are tried cheapest first: post-training schemes of both backends,
    runtime settings, then training-time tiers (entered only when the cheaper ones
    leave a constraint unmet, or when `budget_minutes` allows). Every candidate is
    measured: accuracy and parity on `eval_data`, size and gzip size, p50/p90 latency
    and memory from the benchmark harness with the float32 baseline interleaved in
    the same process (on `target` over SSH when given). The search is an Optuna
    study in `storage` (default `sqlite:///output_dir/study.db`): run the same call
    again to resume it, or point several workers at one PostgreSQL URL.

    Args:
      model: the Keras model (object or path).
      data: training and calibration data (any source `edgekit.data.load` takes).
      output_dir: where trials.jsonl, pareto.json, best_recipe.json, best.tflite,
        summary.json and report.html go.
      eval_data: held-out data for accuracy; defaults to `data`.
      max_accuracy_drop: points of accuracy the file may lose against float32.
      max_size_kb / max_latency_ms / max_peak_memory_mb: limits on the file size, the
        p50 latency and the memory the model adds to the process.
      integer_only: only files whose every op computes in integers.
      objective: what to minimise among the candidates that meet the limits:
        "latency", "size" or "accuracy" (maximised). Ties (latencies within the
        measured noise) are decided by the next objective, among the tied candidates
        that lose to the best built-in recipe on nothing when there are such
        (summary.json's `built_in_reference` says how the choice compares with it).
      target: `ssh://user@host[:port]` to measure on a device.
      num_threads: interpreter threads; None also tries 2 threads as a candidate.
      budget_minutes: stop starting trials when the next one would not fit.
      max_trials: at most this many trials measured (in the whole study).
      storage: an Optuna storage URL (sqlite:///... or postgresql://...).
      seed: seeds training, the benchmark inputs and the sampler.
      benchmark: how each trial is measured (threads and target are set from the
        arguments above).
      train_epochs: epochs of each training tier (default: the built-in recipes').
      candidates: search only these candidate ids (in the space's order); None for all.
      heartbeat_seconds: how often a running trial tells the storage it is alive.
      progress: where progress lines go (default: stdout).

    Returns:
      A `TuneResult`; `met` is False when no candidate meets the limits (summary.json
      then names the closest candidate per constraint).

    Raises:
      UserInputError: bad options, a storage that cannot be reached, or an output
        folder of another study, before any long work.

    Example:
        >>> result = edgekit.tune("model.keras", data="train.npz", eval_data="test.npz",
        ...                       output_dir="search", max_accuracy_drop=1.0)
        >>> result.summary["latency_us"]["p50"]
    """
    started = time.monotonic()  # the budget counts from here: set-up time is spent too
    candidates_wanted = None if candidates is None else list(candidates)
    say = progress or (lambda s: print(s, flush=True))
    limits = front_lib.Limits(
        max_accuracy_drop=max_accuracy_drop,
        max_size_kb=max_size_kb,
        max_latency_ms=max_latency_ms,
        max_peak_memory_mb=max_peak_memory_mb,
        integer_only=bool(integer_only),
    )
    _validate(objective, storage, limits, budget_minutes=budget_minutes, max_trials=max_trials,
              num_threads=num_threads, train_epochs=train_epochs)  # fmt: skip
    bench = benchmark or DEFAULT_BENCHMARK
    bench = (
        dataclasses.replace(bench, target=target, seed=seed)
        if target
        else dataclasses.replace(bench, seed=seed)
    )
    out = pathlib.Path(output_dir)
    study_lib.optuna()  # the extra is installed, or a clear error now
    keras_model = io.load_model(model)
    train = data_lib.load(data)
    test = data_lib.load(eval_data) if eval_data is not None else train
    shapes = convert.model_input_shapes(keras_model)
    if len(shapes) == 1:
        data_lib.check_inputs(train.x, shapes[0], what="training data")
        data_lib.check_inputs(test.x, shapes[0], what="evaluation data")
    opts = space_lib.SpaceOptions(integer_only=bool(integer_only), num_threads=num_threads,
                                  benchmark=bench, train_epochs=train_epochs, seed=seed,
                                  max_accuracy_drop=max_accuracy_drop)  # fmt: skip
    candidates = space_lib.build(opts)
    if candidates_wanted is not None:
        known = [c.id for c in candidates]
        unknown = sorted(set(candidates_wanted) - set(known))
        if unknown or not candidates_wanted:
            raise errors.UserInputError(
                f"candidates must name some of the search space's candidates: {known}. "
                + errors.received(candidates=list(candidates_wanted))
            )
        candidates = [c for c in candidates if c.id in set(candidates_wanted)]
    # The study is the model, the data and the space measured: the limits and the
    # objective only choose among its trials, so a rerun with new ones answers at once.
    key = _digest(
        _model_digest(model, keras_model), train.x, train.y if train.y is not None else "",
        test.x, test.y if test.y is not None else "", [_what_is_measured(c) for c in candidates],
    )  # fmt: skip
    name = f"edgekit-tune-{key[:16]}"
    url = storage or study_lib.default_url(out)
    identity = {
        "study_name": name,
        "key": key,
        "storage": study_lib.shown(url),
        "edgekit": __version__,
    }
    _check_folder(out, identity)
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)  # the default SQLite file lives there
    store = study_lib.open_storage(url, heartbeat_seconds=heartbeat_seconds)
    out.mkdir(parents=True, exist_ok=True)
    io.write_json(out / _IDENTITY, identity, overwrite=True)
    opt = study_lib.optuna()
    # Constraints reach the sampler through `trial.set_constraint` (Optuna 5).
    sampler = opt.samplers.NSGAIISampler(seed=seed)
    study, created = study_lib.open_study(store, name, [c.id for c in candidates], sampler=sampler)
    say(
        f"{'Created' if created else 'Joined'} study {name} in {study_lib.shown(url)}; {len(candidates)} candidates, cheapest first"
    )
    # The float32 baseline: converted once per study folder (the folder's identity pins
    # the model), reused when the search resumes or answers another objective.
    saved = out / "baseline_float32.tflite"
    if saved.exists():
        baseline = saved.read_bytes()
    else:
        baseline = convert.convert(keras_model, trial_lib.BASELINE).tflite_bytes
    eval_cfg = config_lib.EvaluateConfig(top_k=(1,))
    base_eval = evaluate.evaluate(baseline, test, config=eval_cfg)
    ctx = trial_lib.Context(
        model=keras_model, model_source=model, train=train, test=test, baseline=baseline,
        baseline_accuracy=base_eval.accuracy, out=out, evaluate_config=eval_cfg, progress=say,
    )  # fmt: skip
    io.atomic_write_bytes(saved, baseline, overwrite=True)
    search = worker_lib.Worker(study, ctx, candidates, limits, max_trials=max_trials,
                     budget_s=None if budget_minutes is None else 60.0 * budget_minutes,
                     has_budget=budget_minutes is not None)  # fmt: skip
    search.start = started
    search.heartbeat_seconds = heartbeat_seconds or study_lib.HEARTBEAT_SECONDS
    search.loop()
    summary = outputs_lib.write_all(
        out, study=study, by_id=search.by_id, limits=limits, objective=objective,
        baseline={"size_bytes": len(baseline), "accuracy": base_eval.accuracy},
        notes=search.notes, ctx=ctx, storage=study_lib.shown(url),
        elapsed=round(search.elapsed(), 1),
    )  # fmt: skip
    return TuneResult(output_dir=str(out), summary=summary)
