"""The search space: every candidate a recipe, in the order the search tries them.

Cheapest first. Post-training schemes of both backends (the TFLite converter's modes,
per-channel and per-tensor int8, and the built-in `ptq_*` recipes' own conversions;
LiteRT Quantizer's schemes; last, LiteRT Quantizer's static int8 with selective float
ops, which costs several quantizations and evaluations), then runtime settings
(threads, XNNPack off) of the cheapest files, then the training-time tiers (pruning
levels, 2:4, clustering, QAT, distillation into a narrower student). Each candidate is
a complete `config.Recipe`: `edgekit-optimize --recipe=<it>` rebuilds the same file.
The selective candidate's recipe is complete only after its trial: the trial's search
finds the op scopes that stay float (`float_ops_target`), and `with_float_scopes` gives
the recipe that replays it (`convert.float_scopes`), recorded with the trial.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekit import config, recipes

# The tiers in the order they are entered; the training tiers are entered only when
# the cheaper ones leave a constraint unmet or the budget allows (see `search`).
PTQ_TIERS = ("ptq_converter", "ptq_litert", "runtime")
TRAINING_TIERS = ("prune", "prune_2x4", "cluster", "qat", "distill")
TIERS = (*PTQ_TIERS, *TRAINING_TIERS)
BUILT_IN_PTQ = ("ptq_int8", "ptq_dynamic", "ptq_float16", "ptq_int16x8")
SELECTIVE = "lq_static_selective"
# The accuracy drop (points) the selective candidate searches for when the search has
# no --max_accuracy_drop: the limit `edgekit-quantize`'s examples and the docs use.
SELECTIVE_DEFAULT_DROP = 1.0


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point of the space: an id (Optuna's categorical value), its tier, its recipe.

    `float_ops_target`, when set, is the accuracy drop (points) within which the trial
    searches the fewest ops to keep float (`edgekit.convert.selective.search`); the
    recipe then lacks its `convert.float_scopes` until the trial has found them.
    """

    id: str
    tier: str
    recipe: config.Recipe
    description: str
    float_ops_target: float | None = None

    @property
    def trains(self) -> bool:
        return self.tier in TRAINING_TIERS

    @property
    def fit_epochs(self) -> int:
        """Epochs of every training stage together (0 for post-training candidates)."""
        total = 0
        for stage in ("distill", "prune", "cluster", "qat"):
            if getattr(self.recipe, stage) is not None:
                fit = getattr(self.recipe, f"{stage}_fit") or self.recipe.fit
                total += fit.epochs
        return total


@dataclasses.dataclass(frozen=True)
class SpaceOptions:
    """What shapes the space: integer-only files, fixed threads, the benchmark, epochs."""

    integer_only: bool = False
    num_threads: int | None = None
    benchmark: config.BenchmarkConfig = config.BenchmarkConfig()
    train_epochs: int | None = None
    seed: int = 0
    max_accuracy_drop: float | None = None


def _convert(integer_only: bool, **kw: Any) -> config.ConvertConfig:
    # Batch 1: what edge inference runs; a free batch dimension adds shape ops XNNPack
    # does not take (issue 13, point 6).
    if integer_only and kw.get("mode") == "int8":
        kw["io_type"] = "int8"
    if integer_only and kw.get("mode") == "int16x8":
        kw["io_type"] = "int16"
    return config.ConvertConfig(batch_size=1, **kw)


def _ptq(opts: SpaceOptions) -> list[tuple[str, str, dict[str, Any], str]]:
    """(id, tier, convert kwargs, description) of the post-training candidates."""
    rows = [
        ("int8_per_tensor", "ptq_converter", dict(mode="int8", per_channel=False), "converter int8, per-tensor weights"),
        ("int8_per_channel", "ptq_converter", dict(mode="int8", choose_granularity=False), "converter int8, per-channel weights"),
        ("dynamic", "ptq_converter", dict(mode="dynamic"), "converter dynamic range (int8 weights)"),
        ("float16", "ptq_converter", dict(mode="float16"), "converter float16 weights"),
        ("float32", "ptq_converter", dict(mode="float32"), "converter float32 (no quantization)"),
        ("int8_float_fallback", "ptq_converter", dict(mode="int8_float_fallback", choose_granularity=False), "converter int8, float where an op has no int8 kernel"),
        ("int16x8", "ptq_converter", dict(mode="int16x8"), "converter int16 activations, int8 weights"),
    ]  # fmt: skip
    for scheme in (
        "static_wi8_ai8",
        "dynamic_wi8_afp32",
        "weight_only_wi8_afp32",
        "dynamic_wi4_afp32",
        "weight_only_wi4_afp32",
        "static_wi8_ai16",
    ):
        rows.append(
            (
                f"lq_{scheme}",
                "ptq_litert",
                dict(backend="litert_quantizer", scheme=scheme),
                f"LiteRT Quantizer {scheme}",
            )
        )
    if opts.integer_only:
        keep = {"int8_per_tensor", "int8_per_channel", "int16x8"}
        rows = [r for r in rows if r[0] in keep]
    return rows


def _runtime_variants(opts: SpaceOptions) -> list[tuple[str, dict[str, Any], dict[str, Any], str]]:
    """(id, convert kwargs, benchmark overrides, description): the same files, run differently."""
    bases = [("int8_per_tensor", dict(mode="int8", per_channel=False))]
    if not opts.integer_only:
        bases.append(("float32", dict(mode="float32")))
    out = []
    for name, conv in bases:
        out.append((f"{name}_no_xnnpack", conv, {"use_xnnpack": False}, "XNNPack off"))
        if opts.num_threads is None:
            out.append((f"{name}_2_threads", conv, {"num_threads": 2}, "2 threads"))
    return out


def _fit(recipe: config.Recipe, opts: SpaceOptions) -> dict[str, Any]:
    """The fit sections of a built-in recipe, seeded, with the epochs overridden if asked."""
    out: dict[str, Any] = {}
    for name in ("fit", "prune_fit", "cluster_fit", "qat_fit", "distill_fit"):
        fit = getattr(recipe, name)
        if fit is None:
            continue
        changes: dict[str, Any] = {"seed": opts.seed, "verbose": 0}
        if opts.train_epochs is not None:
            changes["epochs"] = opts.train_epochs
        out[name] = dataclasses.replace(fit, **changes)
    return out


def _training(opts: SpaceOptions) -> list[tuple[str, str, dict[str, Any], str]]:
    """(id, tier, recipe sections, description) of the training-time candidates."""
    rows = []
    for name, tier in (
        ("prune50_int8", "prune"),
        ("prune80_int8", "prune"),
        ("prune_2x4_int8", "prune_2x4"),
        ("cluster16_int8", "cluster"),
        ("qat_int8", "qat"),
    ):
        built_in = recipes.resolve_recipe(name)
        sections = {s: getattr(built_in, s) for s in ("prune", "cluster", "qat")}
        rows.append((name, tier, {**sections, **_fit(built_in, opts)}, built_in.description))
    distill_fit = config.FitConfig(
        epochs=opts.train_epochs or 12, learning_rate=1e-3, seed=opts.seed
    )
    rows.append(
        (
            "distill_width0.5_int8",
            "distill",
            {"distill": config.DistillConfig(), "distill_student": "width:0.5", "fit": distill_fit},
            "Distil into a student with half the width of every layer, then int8.",
        )
    )
    return rows


def build(opts: SpaceOptions) -> list[Candidate]:
    """Every candidate, cheapest first (the order the search enqueues them)."""
    bench = opts.benchmark
    if opts.num_threads is not None:
        bench = dataclasses.replace(bench, num_threads=opts.num_threads)
    out = []
    for cid, tier, conv, text in _ptq(opts):
        recipe = config.Recipe(
            name=f"tune_{cid}",
            description=f"edgekit-tune candidate: {text}.",
            convert=_convert(opts.integer_only, **conv),
            benchmark=bench,
        )
        out.append(Candidate(cid, tier, recipe, text))
    if not opts.integer_only:
        # The built-in post-training recipes' own conversions (free batch dimension,
        # granularity measured): the search measures them too, so it cannot end up
        # worse than the best of them.
        for name in BUILT_IN_PTQ:
            built_in = recipes.resolve_recipe(name)
            recipe = config.Recipe(
                name=f"tune_{name}",
                description=f"edgekit-tune candidate: the built-in recipe {name}.",
                convert=built_in.convert,
                benchmark=bench,
            )
            out.append(Candidate(name, "ptq_converter", recipe, f"built-in recipe {name}"))
    if not opts.integer_only:
        # Float ops break integer-only files (int16 promotion is not searched here).
        out.append(_selective(opts, bench))
    for cid, conv, runtime, text in _runtime_variants(opts):
        recipe = config.Recipe(
            name=f"tune_{cid}",
            description=f"edgekit-tune candidate: {text}.",
            convert=_convert(opts.integer_only, **conv),
            benchmark=dataclasses.replace(bench, **runtime),
        )
        out.append(Candidate(cid, "runtime", recipe, text))
    for cid, tier, sections, text in _training(opts):
        recipe = config.Recipe(
            name=f"tune_{cid}",
            description=f"edgekit-tune candidate: {text}",
            convert=_convert(opts.integer_only, mode="int8", choose_granularity=False),
            benchmark=bench,
            **sections,
        )
        out.append(Candidate(cid, tier, recipe, text))
    return out


def _selective(opts: SpaceOptions, bench: config.BenchmarkConfig) -> Candidate:
    target = opts.max_accuracy_drop
    target = SELECTIVE_DEFAULT_DROP if target is None else target
    # The recipe holds no target: the study's identity (and a rerun with other limits)
    # does not depend on it; the trial records the target it searched for.
    recipe = config.Recipe(
        name=f"tune_{SELECTIVE}",
        description="edgekit-tune candidate: LiteRT Quantizer static_wi8_ai8 with the fewest "
        "ops kept float that hold the accuracy (found by a selective search).",
        convert=_convert(False, backend="litert_quantizer", scheme="static_wi8_ai8"),
        benchmark=bench,
    )
    text = f"LiteRT Quantizer static_wi8_ai8, the fewest ops float within {target:g} points"
    return Candidate(SELECTIVE, "ptq_litert", recipe, text, float_ops_target=float(target))


def with_float_scopes(cand: Candidate, float_scopes: list[str] | tuple[str, ...]) -> Candidate:
    """The candidate with the float op scopes its trial found: a recipe that replays it."""
    convert = dataclasses.replace(cand.recipe.convert, float_scopes=tuple(float_scopes))
    recipe = dataclasses.replace(cand.recipe, convert=convert)
    return dataclasses.replace(cand, recipe=recipe, float_ops_target=None)


def by_id(candidates: list[Candidate]) -> dict[str, Candidate]:
    return {c.id: c for c in candidates}
