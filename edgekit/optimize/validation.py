"""Held-out accuracy before and after a training-time technique, and what a drop means.

Every technique (prune, cluster, QAT, distillation) measures its input model and its
result on data it never trains on: the user's `val_data`, or else a stratified split
of the training data (`FitConfig.val_split`, 10% by default when the data has at
least `MIN_AUTO_SAMPLES` samples), announced on stdout and kept out of training.
With class labels the measure is top-1 accuracy; without them (unlabelled
distillation data, regression targets) it is agreement with the input model: top-1
agreement for a multi-class output, else the cosine of the outputs (`output_cosine`).

A drop of more than `FitConfig.max_accuracy_drop` points gets a warning that states
the figures, the causes the run can see (each technique's `diagnose(fit,
fit_report)`: too few steps for its schedule, a learning rate above its default, a
high target...) and the concrete fix; `fail_on_accuracy_drop` makes it an
`AccuracyDropError` that still carries the model and the report.

Example:
    >>> (x, y), holdout = hold_out(model, x, y, None, fit=FitConfig(), what="pruning")
    >>> check = judge(holdout, score(holdout, pruned), fit=fit, causes=lambda: [])
    >>> check.to_dict()["accuracy_before"], check.warning
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from edgekit import config as config_lib
from edgekit import errors
from edgekit.optimize import fit as fit_lib
from edgekit.optimize import losses

# The split used when val_split is None, and the least data it applies to: 10% of
# 200 samples is 20, where one sample is already 5 points; below that a held-out
# measure cannot resolve the 1-point default and would warn at random.
AUTO_SPLIT = 0.1
MIN_AUTO_SAMPLES = 200
_BATCH = 256

ACCURACY = "accuracy"
AGREEMENT = "agreement"
COSINE = "output_cosine"
_LABELS = {
    ACCURACY: "accuracy",
    AGREEMENT: "top-1 agreement with the input model",
    COSINE: "output cosine with the input model",
}


class AccuracyDropWarning(UserWarning):
    """Held-out accuracy fell by more than `FitConfig.max_accuracy_drop` points."""


class AccuracyDropError(RuntimeError):
    """`fail_on_accuracy_drop` and a drop past the limit; holds what training made.

    Attributes:
      model: the trained model (as the technique would have returned it).
      report: the technique's report, its `validation` included.
    """

    def __init__(self, message: str, *, model: Any, report: Any) -> None:
        super().__init__(message)
        self.model = model
        self.report = report


@dataclasses.dataclass(frozen=True)
class Cause:
    """A reason for a drop the run can see in its own settings, and the fix."""

    cause: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Holdout:
    """The held-out data of one run and the input model's score on it.

    `x` is None when nothing is measured (`note` says why).
    """

    x: np.ndarray | None
    y: np.ndarray | None
    source: str | None
    metric: str | None
    before: float | None
    reference: np.ndarray | None = None  # the input model's outputs, for agreement
    binary: bool = False
    train_samples: int = 0
    fraction: float | None = None
    note: str | None = None

    @property
    def samples(self) -> int:
        return 0 if self.x is None else len(self.x)


@dataclasses.dataclass(frozen=True)
class Validation:
    """The `validation` entry of a technique's report (see `to_dict`).

    Attributes:
      accuracy_before / accuracy_after: the metric on the held-out data for the
        input model and the result (for agreement metrics, before is 1.0).
      samples: held-out samples measured.
      source: "val_data" (given by the user) or "split" (held out of the training
        data); None when nothing was measured.
      warning: None, or the sentence that was printed for a drop past the limit.
      metric: "accuracy", "agreement" or "output_cosine".
      drop_points: 100 x (before - after).
      max_accuracy_drop: the limit in points.
      causes: what the run saw that explains the drop, each with its fix.
      failed: the drop was past the limit and fail_on_accuracy_drop was set.
      train_samples: the samples trained on; split_fraction the share held out.
      note: why nothing was measured, when it was not.
    """

    accuracy_before: float | None
    accuracy_after: float | None
    samples: int
    source: str | None
    warning: str | None
    metric: str | None = None
    drop_points: float | None = None
    max_accuracy_drop: float = 1.0
    causes: tuple[Cause, ...] = ()
    failed: bool = False
    train_samples: int | None = None
    split_fraction: float | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["causes"] = [c.to_dict() for c in self.causes]
        return out


# -- the held-out data -----------------------------------------------------------------


def outputs(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's outputs on `x`, in eager batches (predict() traces a graph per model)."""
    return np.concatenate(
        [np.asarray(model(x[i : i + _BATCH], training=False)) for i in range(0, len(x), _BATCH)]
    )


def _label_kind(model: Any, y: np.ndarray, *, what: str) -> str | None:
    """ "sparse", "onehot", "binary" for class labels the model's loss reads, else None."""
    try:
        name = losses.choose_loss(model, y)[1]
    except errors.UserInputError as e:
        raise errors.UserInputError(f"The {what} labels do not fit the model: {e}") from None
    return {
        "sparse_categorical_crossentropy": "sparse",
        "categorical_crossentropy": "onehot",
        "binary_crossentropy": "binary",
    }.get(name)


def _class_ids(y: np.ndarray, kind: str) -> np.ndarray:
    if kind == "onehot":
        return np.argmax(y, axis=-1)
    return np.asarray(y).reshape(len(y)).astype(np.int64)


def split_indices(
    groups: np.ndarray, fraction: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: `fraction` of every group (at least one), seeded.

    Raises:
      UserInputError: a group (class) would have no training sample left.
    """
    rng = np.random.default_rng(seed)
    held = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        rng.shuffle(idx)
        k = max(1, round(fraction * len(idx)))
        if len(idx) - k < 1:
            raise errors.UserInputError(
                f"Holding out {100 * fraction:g}% of the training data to measure accuracy "
                f"would leave class {g} with no training sample (it has {len(idx)}). Pass "
                "held-out data as val_data (--val_data), add samples of that class, or set "
                "val_split=0 (--val_split=0) to skip the measurement. "
                + errors.received(class_id=int(g), class_samples=len(idx), val_split=fraction)
            )
        held.append(idx[:k])
    val = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(len(groups)), val)
    return train, val


def hold_out(
    model: Any,
    x: np.ndarray,
    y: np.ndarray | None,
    val_data: Any,
    *,
    fit: config_lib.FitConfig,
    what: str,
    labelled_val: tuple[np.ndarray, np.ndarray] | None = None,
    class_ids: bool = False,
    announce: Callable[[str], None] | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray | None], Holdout]:
    """Chooses the held-out data, measures the input `model` on it, before training.

    Args:
      model: the input model (tf_keras).
      x, y: the training data; y None for unlabelled data (agreement is measured).
      val_data: the user's held-out data, or None to split `x, y`.
      fit: val_split, seed.
      what: the technique, for the announcement ("pruning").
      labelled_val: val_data already read as (x, class ids) by the caller.
      class_ids: `y` already holds class ids, -1 for an unlabelled sample
        (distillation), checked by the caller.
      announce: where the announcement goes (default: print on stdout).

    Returns:
      ((the x, y to train on), the `Holdout` with the input model's score).

    Raises:
      UserInputError: val_data whose labels do not fit the model or differ in kind
        from the training labels, or a split that leaves a class empty.
    """
    say = announce or (lambda s: print(s, flush=True))
    units = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if y is None:
        kind = None
    else:
        kind = "sparse" if class_ids else _label_kind(model, y, what="training data")
    # Unlabelled data (distillation) on a multi-class output: top-1 agreement; targets
    # that are not classes (regression) or a one-unit output: the cosine of the outputs.
    metric = ACCURACY if kind else (AGREEMENT if y is None and units and units > 1 else COSINE)
    if labelled_val is not None or val_data is not None:
        if labelled_val is not None:
            vx, vy = labelled_val
            kind, metric = "sparse", ACCURACY
        else:
            vx, vy = fit_lib.as_arrays(val_data, what="val_data")
            vkind = _label_kind(model, vy, what="val_data")
            if vkind != kind and y is not None:
                raise errors.UserInputError(
                    "val_data must be labelled like the training data (class ids, one-hot "
                    "rows or 0/1 for a sigmoid output), so that accuracy is measured as "
                    "training sees it. "
                    + errors.received(
                        data_labels=kind or "not classes", val_data_labels=vkind or "not classes"
                    )
                )
        fit_lib.check_data_fits(model, vx, what="val_data")
        holdout = _measured(model, vx, vy, kind, metric, source="val_data", n_train=len(x))
        say(
            f"Validation: measuring {_LABELS[holdout.metric]} before and after {what} on "
            f"the {len(vx)} samples of val_data."
        )
        return (x, y), holdout
    fraction = fit.val_split
    if fraction is None:
        fraction = AUTO_SPLIT if len(x) >= MIN_AUTO_SAMPLES else 0.0
        if not fraction:
            note = (
                f"not measured: {len(x)} training samples are too few to hold out "
                f"{100 * AUTO_SPLIT:g}% (fewer than {MIN_AUTO_SAMPLES}; a few samples cannot "
                "resolve a 1-point drop). Pass val_data (--val_data) or set val_split "
                "(--val_split) to measure."
            )
            say(f"Validation: {note}")
            return (x, y), _unmeasured(note, len(x))
    if not fraction:
        return (x, y), _unmeasured("not measured: val_split is 0.", len(x))
    groups = np.zeros(len(x), np.int64) if not kind else _class_ids(y, kind)
    train, val = split_indices(groups, fraction, seed=fit.seed or 0)
    vy = None if y is None else y[val]
    holdout = _measured(
        model, x[val], vy, kind, metric, source="split", n_train=len(train), fraction=fraction
    )
    how = "stratified by class" if kind else "at random"
    say(
        f"Validation: holding out {len(val)} of {len(x)} training samples "
        f"({100 * fraction:g}%, {how}, seed {fit.seed or 0}) to measure "
        f"{_LABELS[metric]} before and after {what}; {what} trains on the other "
        f"{len(train)}. Pass --val_data to measure on your own held-out data."
    )
    return (x[train], None if y is None else y[train]), holdout


def _unmeasured(note: str, n_train: int) -> Holdout:
    return Holdout(None, None, None, None, None, train_samples=n_train, note=note)


def _measured(
    model: Any,
    x: np.ndarray,
    y: np.ndarray | None,
    kind: str | None,
    metric: str,
    *,
    source: str,
    n_train: int,
    fraction: float | None = None,
) -> Holdout:
    out = outputs(model, x)
    holdout = Holdout(
        x=x,
        y=None if not kind else _class_ids(y, kind),
        source=source,
        metric=metric,
        before=None,
        reference=None if metric == ACCURACY else out,
        binary=kind == "binary",
        train_samples=n_train,
        fraction=fraction,
    )
    return dataclasses.replace(holdout, before=_score_outputs(holdout, out))


# -- measuring and judging -------------------------------------------------------------


def _score_outputs(holdout: Holdout, out: np.ndarray) -> float:
    if holdout.metric == ACCURACY:
        pred = (out.reshape(len(out)) > 0.5).astype(np.int64) if holdout.binary else out.argmax(-1)
        keep = holdout.y >= 0  # -1 marks an unlabelled sample (distillation)
        return round(float(np.mean(pred[keep] == holdout.y[keep])), 6) if keep.any() else 0.0
    if holdout.metric == AGREEMENT:
        return round(float(np.mean(out.argmax(-1) == holdout.reference.argmax(-1))), 6)
    a, b = out.ravel().astype(np.float64), holdout.reference.ravel().astype(np.float64)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b) / denom if denom else float(np.array_equal(a, b))
    return round(min(1.0, max(-1.0, cosine)), 6)


def score(holdout: Holdout, model: Any) -> float | None:
    """The holdout's metric for `model` (None when nothing is measured)."""
    if holdout.x is None:
        return None
    return _score_outputs(holdout, outputs(model, holdout.x))


def learning_rate_cause(
    fit: config_lib.FitConfig, default: config_lib.FitConfig, *, technique: str
) -> list[Cause]:
    """A learning rate above the technique's default, as a cause, or nothing."""
    if fit.learning_rate <= default.learning_rate * 1.01:
        return []
    return [
        Cause(
            f"the learning rate {fit.learning_rate:g} is {fit.learning_rate / default.learning_rate:.3g}x "
            f"{technique}'s default of {default.learning_rate:g}: large steps undo what the "
            "model had learned",
            f"--learning_rate={default.learning_rate:g}",
        )
    ]


def epochs_cause(
    fit: config_lib.FitConfig, default: config_lib.FitConfig, *, technique: str
) -> list[Cause]:
    """Fewer epochs than the technique's default, as a cause, or nothing."""
    if fit.steps_per_epoch is not None or fit.epochs >= default.epochs:
        return []
    return [
        Cause(
            f"{fit.epochs} epoch(s) of fine-tuning, fewer than {technique}'s default of "
            f"{default.epochs}",
            f"--epochs={default.epochs}",
        )
    ]


def judge(
    holdout: Holdout,
    after: float | None,
    *,
    fit: config_lib.FitConfig,
    causes: Callable[[], list[Cause]],
) -> Validation:
    """The `Validation` of a run: the drop, and when past the limit, causes and warning."""
    common = {
        "max_accuracy_drop": float(fit.max_accuracy_drop),
        "train_samples": holdout.train_samples,
        "split_fraction": holdout.fraction,
    }
    if holdout.x is None or after is None or holdout.before is None:
        return Validation(None, None, 0, None, None, note=holdout.note, **common)
    drop = round(100 * (holdout.before - after), 4)
    base = Validation(
        accuracy_before=holdout.before,
        accuracy_after=after,
        samples=holdout.samples,
        source=holdout.source,
        warning=None,
        metric=holdout.metric,
        drop_points=drop,
        **common,
    )
    if drop <= fit.max_accuracy_drop:
        return base
    found = list(causes())
    if not found:
        found = [
            Cause(
                "no setting edgekit checks looks wrong: the model needs more fine-tuning than "
                "this run gave it, or gentler steps",
                f"--epochs={2 * fit.epochs} or --learning_rate={fit.learning_rate / 2:g}",
            )
        ]
    where = (
        "val_data"
        if holdout.source == "val_data"
        else f"a {100 * (holdout.fraction or 0):g}% split of the training data, kept out of training"
    )
    warning = (
        f"{_LABELS[holdout.metric].capitalize()} on {holdout.samples} held-out samples "
        f"({where}) fell from {100 * holdout.before:.2f}% to {100 * after:.2f}%, "
        f"{drop:.2f} points, more than the {fit.max_accuracy_drop:g} allowed "
        f"(--max_accuracy_drop). Cause: {'; '.join(c.cause for c in found)}. "
        f"Fix: {'; or '.join(c.fix for c in found)}."
    )
    return dataclasses.replace(
        base, warning=warning, causes=tuple(found), failed=bool(fit.fail_on_accuracy_drop)
    )


def attach(report: Any, check: Validation) -> Any:
    """The report with its `validation` entry (a report without that field is kept)."""
    if dataclasses.is_dataclass(report) and any(
        f.name == "validation" for f in dataclasses.fields(report)
    ):
        report = dataclasses.replace(report, validation=check.to_dict())
    if check.warning:
        warnings.warn(check.warning, AccuracyDropWarning, stacklevel=3)
    return report


def enforce(fit: config_lib.FitConfig, model: Any, report: Any) -> tuple[Any, Any]:
    """(model, report), or `AccuracyDropError` when fail_on_accuracy_drop and a drop past the limit."""
    check = getattr(report, "validation", None) or {}
    if fit.fail_on_accuracy_drop and check.get("warning"):
        raise AccuracyDropError(check["warning"], model=model, report=report)
    return model, report


def suggested_epochs(needed_epochs: float, share: float, current: int) -> int:
    """Epochs that give `needed_epochs` in the `share` of the run they apply to."""
    return max(current + 1, math.ceil(needed_epochs / max(share, 1e-6) - 1e-9))
