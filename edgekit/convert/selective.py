"""Accuracy-controlled selective quantization: keep the fewest ops float that meet a target.

When full int8 loses too much, some ops are far more sensitive than others. The
search, on a float `.tflite` and LiteRT Quantizer's static schemes:

1. Quantize everything; if the target holds (accuracy drop at most
   `max_accuracy_drop` points, or mean cosine against the float outputs at least
   `min_cosine`), stop: no op needs to stay float.
2. Rank the ops by measured sensitivity: LiteRT Quantizer's validation runs the
   float and the int8 file side by side and gives each tensor's signal-to-noise
   ratio (linear); an op's score is the relative noise it *adds* (noise at its output minus
   the largest at its activation inputs), so errors inherited from earlier ops do
   not make late ops look sensitive.
   A second ranking may be given (`seed_ranking`, e.g. the converter's
   QuantizationDebugger's per-layer error, which measures each op alone).
3. One op alone: try the top `SINGLES` ops of each ranking, then every op that
   reads a model input (it sees the raw input range through one int8 scale, e.g.
   the stem conv of a net fed 0..255 pixels), then the others (at most
   `MAX_SINGLES` in all), each kept float by itself; the first that meets the
   target is the answer (nothing can use fewer float ops). Otherwise what each op
   recovered alone (accuracy, then cosine) is a third ranking, "single_gain".
4. Prefixes: binary search each ranking's shortest prefix that meets the target
   (the "top-k" answers), then walk all rankings' prefixes in lock step from
   length 2 up to the shortest found, and take the first that meets it. The result
   is never longer than any ranking's top-k prefix.
5. Prune back: try to quantize each kept op again, least sensitive first, and keep
   it quantized whenever the target still holds. Every op left float is one whose
   re-quantization was measured to break the target ("why" in the report).
6. Greedy forward, within `GREEDY_EVALUATIONS`: from the op that recovered most
   alone, add the op whose addition measures best, one at a time, and stop at the
   first set that meets the target; pruned back as in 5, it replaces the answer
   only if it is smaller.

With `integer_only`, sensitive ops get int16 activations instead of float (still
integer kernels); ops without int16 kernels cannot be promoted, and when the target
cannot be met that way, `TargetNotMet` says so.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekit import data, errors, runtime
from edgekit.config import ConvertConfig
from edgekit.convert import converter, litert_quantizer
from edgekit.convert.result import ConversionResult, gzip_size
from edgekit.lite import schema

# Samples LiteRT Quantizer's validation runs per ranking (it rebuilds an interpreter
# per sample; 16 give a stable ranking in well under a second on small models).
RANKING_SAMPLES = 16
# Ops each ranking contributes to the "one op alone" trials before any prefix search.
SINGLES = 8
# At most this many ops are tried alone (each trial is one quantization and one
# evaluation); what each one recovers ranks the ops for the prefix search.
MAX_SINGLES = 128
# Evaluations the greedy forward step may spend to beat the prefix answer.
GREEDY_EVALUATIONS = 320


class TargetNotMet(Exception):
    """The accuracy target cannot be met under the constraints (for example integer-only)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """What "good enough" means: an accuracy drop limit in points, or a cosine floor."""

    max_accuracy_drop: float | None = None
    min_cosine: float | None = None

    def describe(self) -> str:
        if self.max_accuracy_drop is not None:
            return f"accuracy drop <= {self.max_accuracy_drop} points"
        return f"cosine against float >= {self.min_cosine}"


class _Evaluator:
    def __init__(self, float_blob: bytes, x: np.ndarray, y: np.ndarray | None, target: Target):
        self.x, self.y, self.target = x, y, target
        self.reference = self._outputs(float_blob)
        self.float_accuracy = self._accuracy(self.reference)
        self.count = 0

    def _outputs(self, blob: bytes) -> np.ndarray:
        out = runtime.LiteModel(blob).predict(self.x)
        out = out if isinstance(out, np.ndarray) else out[0]
        return np.asarray(out, np.float64).reshape(len(self.x), -1)

    def _accuracy(self, out: np.ndarray) -> float | None:
        if self.y is None:
            return None
        return float(np.mean(out.argmax(1) == self.y))

    def measure(self, blob: bytes) -> dict[str, Any]:
        self.count += 1
        out = self._outputs(blob)
        ref = self.reference
        norms = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
        cosine = float(np.clip(np.mean((out * ref).sum(1) / np.maximum(norms, 1e-30)), -1, 1))
        acc = self._accuracy(out)
        if self.target.max_accuracy_drop is not None:
            drop = 100 * (self.float_accuracy - acc)
            ok = drop <= self.target.max_accuracy_drop + 1e-9
        else:
            drop = None if acc is None else 100 * (self.float_accuracy - acc)
            ok = cosine >= self.target.min_cosine
        return {"accuracy": acc, "accuracy_drop_points": drop, "cosine": cosine, "meets": ok}


def _eval_set(blob: bytes, eval_data: Any, target: Target) -> tuple[np.ndarray, np.ndarray | None]:
    ds = data.load(eval_data)
    lm = runtime.LiteModel(blob)
    data.check_inputs(ds.x, lm.inputs[0].shape_signature, what="evaluation data")
    y = None
    if ds.y is not None:
        y = np.asarray(ds.y)
        y = y.argmax(-1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1).astype(np.int64)
    if target.max_accuracy_drop is not None and y is None:
        raise errors.UserInputError(
            "max_accuracy_drop measures accuracy, so the evaluation data needs labels (an .npz "
            "with x and y). Without labels, use min_cosine (agreement with the float model). "
            + errors.received(labels=None)
        )
    return ds.x.astype(np.float32), y


def _check_target(target: Target) -> None:
    if (target.max_accuracy_drop is None) == (target.min_cosine is None):
        raise errors.UserInputError(
            "Give exactly one target: max_accuracy_drop (points of accuracy, needs labels) or "
            "min_cosine (agreement with the float model, 0..1). "
            + errors.received(
                max_accuracy_drop=target.max_accuracy_drop, min_cosine=target.min_cosine
            )
        )
    if target.max_accuracy_drop is not None and not target.max_accuracy_drop >= 0:
        raise errors.UserInputError(
            "max_accuracy_drop is in points and must be >= 0. "
            + errors.received(max_accuracy_drop=target.max_accuracy_drop)
        )
    if target.min_cosine is not None and not 0 < target.min_cosine <= 1:
        raise errors.UserInputError(
            "min_cosine must be in (0, 1]. " + errors.received(min_cosine=target.min_cosine)
        )


def sensitivity(float_blob: bytes, quant_blob: bytes, x: np.ndarray) -> dict[str, float]:
    """Relative noise each op adds, from LiteRT Quantizer's per-tensor validation (SNR)."""
    from litert_quantizer import model_validator
    from litert_quantizer.utils import validation_utils

    sig = litert_quantizer.signature(float_blob)
    picks = data.calibration_samples(x, RANKING_SAMPLES)
    test = {sig.key: [{sig.input_name: s[None]} for s in picks]}
    with litert_quantizer.quiet():
        result = model_validator.compare_model(
            float_blob, quant_blob, test, [validation_utils.ValidationErrorMetric.SNR]
        )
    snr = {k: v.get("snr") for k, v in result.get_all_tensor_results().items()}

    def noise(name: str) -> float:
        value = snr.get(name)
        # LiteRT Quantizer's SNR is the linear power ratio mean(x^2) / mse.
        if value is None or not np.isfinite(value) or value <= 0:
            return 0.0
        return float(1.0 / value)

    m = schema.parse(float_blob)
    sg = m.subgraphs[0]
    scores = {}
    for op, parsed in zip(litert_quantizer.model_ops(float_blob), sg.operators, strict=True):
        inputs = [
            sg.tensors[i].name
            for i in parsed.inputs
            if i >= 0 and not m.buffers[sg.tensors[i].buffer].size
        ]
        scores[op.name] = max(0.0, noise(op.name) - max((noise(n) for n in inputs), default=0.0))
    return scores


def search(
    model: bytes | str,
    config: ConvertConfig,
    *,
    calibration_data: Any,
    eval_data: Any,
    max_accuracy_drop: float | None = None,
    min_cosine: float | None = None,
    integer_only: bool = False,
    seed_ranking: Sequence[str] = (),
) -> ConversionResult:
    """Quantizes with `config.scheme`, keeping the fewest ops float that meet the target.

    Args:
      model: a float `.tflite` (bytes or path).
      config: a LiteRT Quantizer config with a static scheme.
      calibration_data: calibration inputs (array, .npy/.npz path).
      eval_data: labelled (for `max_accuracy_drop`) or unlabelled evaluation data.
      max_accuracy_drop: the target in points of accuracy below the float file's.
      min_cosine: the target as mean cosine against the float outputs.
      integer_only: give sensitive ops int16 activations instead of float.
      seed_ranking: op names, most sensitive first, from another source (for
        example the converter's QuantizationDebugger,
        `edgekit.evaluate.layer_quantization_error`); its top ops are tried alone
        and its prefixes searched beside edgekit's own ranking. Unknown names are
        ignored.

    Returns:
      A `ConversionResult` whose `converter_settings["selective"]` holds the search:
      the target, the float/full-int8/result measurements and sizes, `float_ops`
      (each with its rank, score and why it was kept), `top_k_prefix` (how many
      ops the plain ranking prefix needed) and `rankings` (each ranking's prefix).

    Raises:
      UserInputError: bad inputs (checked before quantizing).
      TargetNotMet: integer_only and even int16 activations everywhere miss the target.

    Example:
      >>> r = search("float32.tflite", ConvertConfig(backend="litert_quantizer",
      ...     scheme="static_wi8_ai8"), calibration_data="train.npz",
      ...     eval_data="test.npz", max_accuracy_drop=0.5)  # doctest: +SKIP
    """
    target = Target(max_accuracy_drop, min_cosine)
    _check_target(target)
    if not (config.scheme or "").startswith("static"):
        raise errors.UserInputError(
            "Selective quantization chooses which ops keep float activations, so it needs a "
            "static scheme ('static_wi8_ai8' or 'static_wi8_ai16'). "
            + errors.received(scheme=config.scheme)
        )
    if config.float_scopes:
        raise errors.UserInputError(
            "The selective search chooses which ops stay float itself; give it a config "
            "without float_scopes. " + errors.received(float_scopes=list(config.float_scopes))
        )
    if isinstance(seed_ranking, str):
        raise errors.UserInputError(
            "seed_ranking is a sequence of op names, most sensitive first. "
            + errors.received(seed_ranking=seed_ranking)
        )
    blob, calibration = litert_quantizer.prepare(model, config, calibration_data)
    x, y = _eval_set(blob, eval_data, target)
    start = time.perf_counter()
    ev = _Evaluator(blob, x, y, target)
    session = litert_quantizer.Session(blob, config, calibration)
    full = session.quantize()
    full_m = ev.measure(full)
    ops = litert_quantizer.model_ops(blob)
    candidates = [op for op in ops if op.type not in ("QUANTIZE", "DEQUANTIZE")]
    if integer_only:
        no16 = {op.name for op in litert_quantizer.ops_without_kernels(blob, 16, config)}
        candidates = [op for op in candidates if op.name not in no16]
    scores = sensitivity(blob, full, x) if not full_m["meets"] else {}
    ranking = sorted(candidates, key=lambda op: -scores.get(op.name, 0.0))
    by_name = {op.name: op for op in candidates}
    seed = list(dict.fromkeys(by_name[n] for n in seed_ranking if n in by_name))
    rankings = {"added_noise": ranking}
    if seed:
        rankings["seed"] = seed + [op for op in ranking if op not in seed]
        rankings["merged"] = _interleave(ranking, seed)
    trials: dict[frozenset[str], tuple[bytes, dict]] = {}

    def attempt(kept: Sequence[litert_quantizer.Op]) -> tuple[bytes, dict]:
        key = frozenset(op.name for op in kept)
        if key not in trials:
            scopes = [op.scope for op in kept]
            q = session.quantize(
                float_scopes=() if integer_only else scopes,
                int16_scopes=scopes if integer_only else (),
            )
            trials[key] = (q, ev.measure(q))
        return trials[key]

    def gain_of(m: dict) -> tuple[float, ...]:
        """Sort key, best first: accuracy then cosine, or cosine alone."""
        if target.max_accuracy_drop is not None:
            return (-m["accuracy"], -m["cosine"])
        return (-m["cosine"],)

    kept: list[litert_quantizer.Op] = []
    best, best_m = full, full_m
    why: dict[str, dict] = {}
    prefixes: dict[str, int] = {}
    phase = "full"
    if not full_m["meets"]:
        top_blob, top_m = attempt(ranking)
        if not top_m["meets"]:
            what = (
                "int16 activations on every op that has int16 kernels"
                if integer_only
                else ("every op in float")
            )
            raise TargetNotMet(
                f"The target ({target.describe()}) cannot be met with {what}: that gives "
                f"{_fmt(top_m)}, full {config.scheme} gives {_fmt(full_m)}."
                + (
                    " Drop --integer_only to let the search keep ops in float."
                    if integer_only
                    else ""
                )
            )
        # 1. One op alone: the top of each ranking, the ops that read the model's
        # inputs (they see its raw range, e.g. pixels in 0..255, through one scale),
        # then the others, up to MAX_SINGLES; stop at the first that meets the target.
        singles: dict[str, dict] = {}
        for op in _singles(rankings, candidates, blob):
            q, m = attempt([op])
            singles[op.name] = m
            if m["meets"]:
                kept, best, best_m, phase = [op], q, m, "single"
                break
        if not kept:
            # What each op kept float alone measurably recovered: a ranking of its own.
            measured = sorted(
                (op for op in candidates if op.name in singles),
                key=lambda op: gain_of(singles[op.name]),
            )
            rankings["single_gain"] = measured + [op for op in ranking if op.name not in singles]
        # 2. Each ranking's shortest prefix (binary search), then every ranking's
        # prefixes in lock step from the top, up to the best length found: the
        # result is never longer than any ranking's top-k answer.
        for label, order in rankings.items():
            prefixes[label] = _shortest_prefix(order, attempt)
        if not kept:
            label = min(prefixes, key=lambda k: prefixes[k])
            kept = list(rankings[label][: prefixes[label]])
            phase = f"prefix of {label}"
            for k in range(2, len(kept)):
                hit = next((lb for lb, o in rankings.items() if attempt(o[:k])[1]["meets"]), None)
                if hit is not None:
                    kept, phase = list(rankings[hit][:k]), f"prefix of {hit}"
                    break
        # 3. Prune back: re-quantize each kept op, least sensitive first.
        kept, why = _prune(kept, attempt)
        # 4. Greedy forward, within a budget: grow a set one op at a time (each time
        # the op whose addition measures best, stopping at the first that meets the
        # target); it replaces the answer only if it needs fewer ops.
        if phase != "single" and len(kept) > 2:
            grown = _greedy(rankings["single_gain"], len(kept) - 1, attempt, gain_of)
            if grown is not None:
                (kept, why), phase = _prune(grown, attempt), "greedy"
        best, best_m = attempt(kept)
    seconds = time.perf_counter() - start
    rank = {op.name: i + 1 for i, op in enumerate(ranking)}
    seed_rank = {op.name: i + 1 for i, op in enumerate(seed)}
    float_ops = [
        {
            "op": op.name,
            "type": op.type,
            "sensitivity_rank": rank[op.name],
            "seed_rank": seed_rank.get(op.name),
            "added_relative_noise": scores.get(op.name, 0.0),
            "kept_as": "int16 activations" if integer_only else "float",
            "why": _why(op, why, phase, full_m),
        }
        for op in kept
    ]
    report = {
        "target": target.describe(),
        "integer_only": integer_only,
        "search": "rank by added noise (LiteRT Quantizer validation, SNR) and by the seed "
        "ranking if given; try ops alone (top ops, input ops, the rest); else rank by what "
        "each recovered alone and take the shortest prefix of any ranking (binary search, "
        "then all rankings in lock step from the top); then prune back one op at a time",
        "found_by": phase,
        "evaluations": ev.count,
        "eval_samples": len(x),
        "float": {
            "accuracy": ev.float_accuracy,
            "size_bytes": len(blob),
            "gzip_size_bytes": gzip_size(blob),
        },
        "full": {**full_m, "size_bytes": len(full), "gzip_size_bytes": gzip_size(full)},
        "result": {**best_m, "size_bytes": len(best), "gzip_size_bytes": gzip_size(best)},
        "top_k_prefix": prefixes.get("added_noise", 0),
        "rankings": prefixes,
        "float_ops": float_ops,
        "search_seconds": round(seconds, 2),
    }
    extra = {"selective": report}
    out = litert_quantizer.result_for(session, best, seconds, extra=extra)
    if integer_only and converter.float_ops(best):
        raise TargetNotMet(
            f"The result still has float ops ({', '.join(converter.float_ops(best))}); "
            "integer-only accelerators cannot run it."
        )
    return dataclasses.replace(out, tflite_bytes=best)


def _interleave(*orders: Sequence[litert_quantizer.Op]) -> list[litert_quantizer.Op]:
    """The rankings merged by taking each one's next op in turn, without repeats."""
    merged: dict[str, litert_quantizer.Op] = {}
    for group in zip(*orders, strict=False):
        for op in group:
            merged.setdefault(op.name, op)
    for order in orders:  # the longer rankings' tails
        for op in order:
            merged.setdefault(op.name, op)
    return list(merged.values())


def _singles(
    rankings: dict[str, list[litert_quantizer.Op]],
    candidates: Sequence[litert_quantizer.Op],
    blob: bytes,
) -> list[litert_quantizer.Op]:
    """Ops to try alone: each ranking's top SINGLES, the ops fed by the inputs, the rest."""
    sg = schema.parse(blob).subgraphs[0]
    inputs = set(sg.inputs)
    reads_input = {
        op.name
        for op, parsed in zip(litert_quantizer.model_ops(blob), sg.operators, strict=True)
        if inputs & set(parsed.inputs)
    }
    firsts = [op for op in candidates if op.name in reads_input]
    tops = _interleave(*(order[:SINGLES] for order in rankings.values()))
    rest = _interleave(*rankings.values())
    return list({op.name: op for op in tops + firsts + rest}.values())[:MAX_SINGLES]


def _greedy(
    order: Sequence[litert_quantizer.Op], most: int, attempt: Any, gain_of: Any
) -> list[litert_quantizer.Op] | None:
    """A set of at most `most` ops that meets the target, grown greedily from `order`'s
    first op, or None (none found, or GREEDY_EVALUATIONS spent)."""
    chosen, spent = [order[0]], 0
    while len(chosen) < most:
        scored = []
        for op in order:
            if op in chosen:
                continue
            if spent >= GREEDY_EVALUATIONS:
                return None
            spent += 1
            m = attempt([*chosen, op])[1]
            if m["meets"]:
                return [*chosen, op]
            scored.append((gain_of(m), op))
        if not scored:
            return None
        chosen.append(min(scored, key=lambda t: t[0])[1])
    return None


def _prune(
    kept: list[litert_quantizer.Op], attempt: Any
) -> tuple[list[litert_quantizer.Op], dict[str, dict]]:
    """Re-quantizes each kept op, last first, wherever the target still holds; says why
    each op left could not be."""
    why: dict[str, dict] = {}
    for op in reversed(list(kept)):
        if len(kept) == 1:
            break
        trial = [k for k in kept if k is not op]
        if attempt(trial)[1]["meets"]:
            kept = trial
        else:
            why[op.name] = attempt(trial)[1]
    return kept, why


def _shortest_prefix(order: Sequence[litert_quantizer.Op], attempt: Any) -> int:
    """The shortest prefix of `order` that meets the target (binary search; the whole
    ranking is known to meet it)."""
    lo, hi = 1, len(order)
    while lo < hi:
        mid = (lo + hi) // 2
        if attempt(order[:mid])[1]["meets"]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _why(op: litert_quantizer.Op, why: dict[str, dict], phase: str, full_m: dict) -> str:
    if op.name in why:
        return f"quantizing it too gives {_fmt(why[op.name])}, which misses the target"
    if phase == "single":
        return (
            f"kept alone it meets the target; full quantization gives {_fmt(full_m)}, "
            "which misses it"
        )
    return "the only op left; the whole file quantized misses the target"


def _fmt(m: dict) -> str:
    parts = []
    if m.get("accuracy") is not None:
        parts.append(f"accuracy {100 * m['accuracy']:.2f}%")
    parts.append(f"cosine {m['cosine']:.4f}")
    return ", ".join(parts)
