"""One worker of a search: takes candidates from the shared study until it is done.

It decides, before each trial, whether to run it, skip it (a training tier that is
not needed, does not fit the budget, or cannot beat the front) or stop (max_trials,
budget), and after the queue is empty waits for trials other workers (or a killed
process) still hold.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import numpy as np

from edgekit.tuning import front as front_lib
from edgekit.tuning import outputs as outputs_lib
from edgekit.tuning import space as space_lib
from edgekit.tuning import study as study_lib
from edgekit.tuning import trial as trial_lib


class Worker:
    """The state one worker keeps while it takes trials from the shared study."""

    def __init__(self, study: Any, ctx: trial_lib.Context, candidates: list[space_lib.Candidate],
                 limits: front_lib.Limits, *, max_trials: int | None, budget_s: float | None,
                 has_budget: bool) -> None:  # fmt: skip
        self.study, self.ctx, self.limits = study, ctx, limits
        self.by_id = space_lib.by_id(candidates)
        self.ids = [c.id for c in candidates]
        self.max_trials, self.budget_s, self.has_budget = max_trials, budget_s, has_budget
        self.start = time.monotonic()
        self.epoch_seconds: float | None = None
        self.notes: list[str] = []
        self.heartbeat_seconds = study_lib.HEARTBEAT_SECONDS

    # -- what the storage says ---------------------------------------------------------

    def trials(self, *states: str) -> list[Any]:
        opt = study_lib.optuna()
        wanted = tuple(getattr(opt.trial.TrialState, s) for s in states)
        return self.study.get_trials(deepcopy=False, states=wanted)

    def ran(self) -> list[Any]:
        """Trials that ran to an outcome: measured, or failed while measuring."""
        failed = [t for t in self.trials("FAIL") if "error" in t.user_attrs]
        return [*self.trials("COMPLETE"), *failed]

    def rows(self) -> list[dict[str, Any]]:
        done = [t for t in self.trials("COMPLETE") if "measurements" in t.user_attrs]
        return [outputs_lib.row(t, self.limits) for t in done]

    def next_waiting(self) -> space_lib.Candidate | None:
        waiting = sorted(self.trials("WAITING"), key=lambda t: t.number)
        for t in waiting:
            cid = t.system_attrs.get("fixed_params", {}).get(study_lib.PARAM)
            if cid in self.by_id:
                return self.by_id[cid]
        return None

    # -- when to stop, what to skip ----------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def estimate(self, cand: space_lib.Candidate) -> float:
        """Seconds a candidate should take, from the trials measured so far."""
        done = [t for t in self.trials("COMPLETE") if "measurements" in t.user_attrs]
        same = [
            t.user_attrs["measurements"]["seconds"]
            for t in done
            if t.user_attrs.get("tier") == cand.tier
        ]
        if same:
            return float(np.mean(same))
        ptq = [
            t.user_attrs["measurements"]["seconds"]
            for t in done
            if t.user_attrs.get("tier") in space_lib.PTQ_TIERS
        ]
        base = float(np.mean(ptq)) if ptq else 0.0
        if not cand.trains:
            return base
        return 2 * base + cand.fit_epochs * self._epoch_seconds()

    def _epoch_seconds(self) -> float:
        """One training epoch: about 3 forward passes over the training data (measured once)."""
        if self.epoch_seconds is None:
            x = self.ctx.train.x[: min(64, len(self.ctx.train))].astype(np.float32)
            self.ctx.model(x, training=False)  # the first call builds the graph
            t0 = time.perf_counter()
            self.ctx.model(x, training=False)
            per_sample = (time.perf_counter() - t0) / len(x)
            self.epoch_seconds = 3 * per_sample * len(self.ctx.train) + 1.0
        return self.epoch_seconds

    def stop_reason(self) -> str | None:
        """Why no further trial should start, or None."""
        if self.max_trials is not None and len(self.ran()) >= self.max_trials:
            return f"max_trials reached ({self.max_trials} trials measured)"
        if self.budget_s is not None:
            nxt = self.next_waiting()
            left = self.budget_s - self.elapsed()
            if left <= 0:
                return "the time budget is used up"
            if nxt is not None and not nxt.trains and self.estimate(nxt) > left:
                return (
                    f"the time budget cannot hold another trial ({left:.0f} s left, a trial "
                    f"takes about {self.estimate(nxt):.0f} s)"
                )
        return None

    def skip_reason(self, cand: space_lib.Candidate) -> str | None:
        """Why a training-tier candidate is not worth its time now, or None."""
        if not cand.trains:
            return None
        rows = self.rows()
        feasible = [r for r in rows if r["meets"]]
        if feasible and not self.has_budget:
            return (
                f"not needed: {feasible[0]['candidate']} already meets every constraint after "
                "training-free steps (give --budget_minutes to search the training tiers anyway)"
            )
        if self.budget_s is not None:
            need, left = self.estimate(cand), self.budget_s - self.elapsed()
            if need > left:
                return (
                    f"skipped: the {cand.tier} tier needs about {need:.0f} s (estimated from the "
                    f"measured trials), the budget leaves {max(left, 0):.0f} s"
                )
        same_tier = [r for r in rows if r["tier"] == cand.tier]
        if same_tier and rows:
            front_lib.corrected_latency(rows)
            noise = front_lib.noise_band(rows)
            on_front = {r["number"] for r in front_lib.pareto(rows, noise)}
            if not any(r["number"] in on_front for r in same_tier):
                return (
                    f"pruned: the {cand.tier} tier cannot beat the front (its candidate "
                    f"{same_tier[0]['candidate']} is dominated)"
                )
        return None

    # -- one trial ---------------------------------------------------------------------

    def objective(self, trial: Any) -> tuple[float, float, float]:
        opt = study_lib.optuna()
        # Was this trial taken from the queue of candidates (not made up by the sampler)?
        mine = [t for t in self.trials("RUNNING") if t.number == trial.number]
        fixed = bool(mine) and "fixed_params" in mine[0].system_attrs
        cid = trial.suggest_categorical(study_lib.PARAM, self.ids)
        cand = self.by_id[cid]
        trial.set_user_attr("tier", cand.tier)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if not fixed:
            # Every candidate was enqueued; a sampled one is a repeat. Stop here.
            trial.set_user_attr("note", "every enqueued candidate is taken")
            self.study.stop()
            raise opt.TrialPruned("every candidate is taken")
        if self.max_trials is not None and len(self.ran()) >= self.max_trials:
            # Another worker filled the quota meanwhile: give the candidate back.
            self._give_back(trial, cid, "max_trials reached")
            self.study.stop()
            raise opt.TrialPruned("max_trials reached")
        if self.max_trials is not None and "failed_trial" not in mine[0].system_attrs:
            # Optuna enqueues the retry of a killed trial last; under max_trials that would
            # change which candidates get measured. Candidates queued after it in the
            # space's order go back behind it, so the resumed search measures the same set.
            first = self._first_retry()
            if first is not None and self.ids.index(first) < self.ids.index(cid):
                self._give_back(trial, cid, f"the retry of {first} goes first")
                raise opt.TrialPruned("a retried candidate goes first")
        reason = self.skip_reason(cand)
        if reason:
            trial.set_user_attr("note", reason)
            self.ctx.progress(f"[trial {trial.number}] {cid}: {reason}")
            raise opt.TrialPruned(reason)
        self.ctx.progress(f"[trial {trial.number}] {cid}: {cand.description} ...")
        try:
            _, figures = trial_lib.run(self.ctx, cand)
        except trial_lib.TrialFailed as e:
            trial.set_user_attr("error", str(e))
            self.ctx.progress(f"[trial {trial.number}] {cid}: FAILED: {e}")
            raise
        found = figures.get("selective")
        if found is not None:
            # The candidate's recipe is complete only now: outputs rebuild it from
            # measurements["selective"]["float_scopes"].
            trial.set_user_attr(
                "note",
                f"{len(found['float_scopes'])} op(s) kept float, found by {found['found_by']} "
                f"({found['evaluations']} evaluations) for a drop of at most "
                f"{found['target_max_accuracy_drop']:g} points",
            )
        constraints = self.limits.check(figures)
        trial.set_user_attr("measurements", figures)
        trial.set_user_attr("constraints", constraints)
        for name, violation in zip(constraints, self.limits.violations(figures), strict=True):
            trial.set_constraint(name, violation)
        self.ctx.progress(
            f"[trial {trial.number}] {cid}: " + outputs_lib.one_line(figures, constraints)
        )
        return (
            (figures["accuracy"] or 0.0),
            float(figures["size_bytes"]),
            figures["latency_us"]["p50"],
        )

    def _first_retry(self) -> str | None:
        """The earliest candidate (in the space's order) waiting as a retry, or None."""
        retries = [
            t.system_attrs.get("fixed_params", {}).get(study_lib.PARAM)
            for t in self.trials("WAITING")
            if "failed_trial" in t.system_attrs
        ]
        retries = [c for c in retries if c in self.by_id]
        return min(retries, key=self.ids.index) if retries else None

    def _give_back(self, trial: Any, cid: str, why: str) -> None:
        self.study.enqueue_trial({study_lib.PARAM: cid})
        trial.set_user_attr("note", f"returned to the queue: {why}")
        trial.set_user_attr("requeued", True)

    def after_trial(self, study: Any, _trial: Any) -> None:
        reason = self.stop_reason()
        if reason or self.next_waiting() is None:
            study.stop()

    def loop(self) -> None:
        """Takes trials until the queue is empty or a limit is reached; waits for other workers."""
        beat = self.heartbeat_seconds
        while True:
            study_lib.fail_stale(self.study)
            reason = self.stop_reason()
            if reason:
                self.notes.append(f"The search stopped: {reason}.")
                return
            if self.next_waiting() is not None:
                self.study.optimize(
                    self.objective, callbacks=[self.after_trial], catch=(trial_lib.TrialFailed,)
                )
                continue
            if not self.trials("RUNNING"):
                return
            # Another worker is measuring, or a killed one left a trial behind: wait for
            # it to finish or for its heartbeat to go stale (then it is enqueued again).
            time.sleep(beat)
