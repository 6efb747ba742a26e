"""One trial: build a candidate's `.tflite` as its recipe says, and measure it for real.

Post-training candidates go through `edgekit.convert.convert` with the exact arguments
the pipeline's convert stage uses, so `edgekit-optimize --recipe=<candidate>` makes
the same bytes; training-time candidates run the pipeline itself (without its
benchmark) into `DIR/trials/<id>/`. The selective candidate first searches the fewest
ops to keep float (`edgekit.convert.selective.search` on the float32 file the convert
stage quantizes, calibrated on the training data, measured on the evaluation data);
its recipe then carries them as `convert.float_scopes` and is built like the others. Then every file is measured the same way:
accuracy and parity on the evaluation data (against the float32 file), size and
gzip size, and p50/p90 latency and memory from the benchmark harness with the float32
baseline interleaved in the same process (locally, or on the SSH target).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import time
from collections.abc import Callable
from typing import Any

from edgekit import benchmark, convert, errors, evaluate, io, pipeline, runtime
from edgekit import config as config_lib
from edgekit import data as data_lib
from edgekit.convert import api as convert_api
from edgekit.convert import converter, litert_quantizer, selective
from edgekit.convert import result as result_lib
from edgekit.lite import digest
from edgekit.tuning import space as space_lib

# The float32 baseline every trial is measured against: the converter, batch fixed at 1.
BASELINE = config_lib.ConvertConfig(batch_size=1)


class TrialFailed(Exception):
    """The candidate could not be built or measured (the search goes on without it)."""


@dataclasses.dataclass
class Context:
    """What every trial shares: the model, the data, the float32 baseline, where to write."""

    model: Any  # the Keras model object
    model_source: Any  # the path the user gave, or the object
    train: data_lib.Dataset
    test: data_lib.Dataset
    baseline: bytes
    baseline_accuracy: float | None
    out: pathlib.Path
    evaluate_config: config_lib.EvaluateConfig
    progress: Callable[[str], None]
    reference: Any = None  # the baseline loaded once (a LiteModel), for parity

    def folder(self, cid: str) -> pathlib.Path:
        return self.out / "trials" / cid

    def reference_model(self) -> runtime.LiteModel:
        """The float32 baseline, loaded once (edgekit made it itself: trusted)."""
        if self.reference is None:
            self.reference = runtime.LiteModel(self.baseline)
        return self.reference


def build(ctx: Context, cand: space_lib.Candidate) -> bytes:
    """The candidate's `.tflite` bytes, as `edgekit-optimize` would make them."""
    recipe = cand.recipe
    if cand.trains:
        folder = ctx.folder(cand.id)
        result = pipeline.run(
            dataclasses.replace(recipe, benchmark=None),
            model=ctx.model_source,
            data=ctx.train,
            eval_data=ctx.test,
            output_dir=folder,
            overwrite=True,
            progress=lambda line: ctx.progress(f"    {line.strip()}"),
        )
        return (pathlib.Path(result.output_dir) / "model.tflite").read_bytes()
    cfg = recipe.convert
    # The pipeline's convert stage: calibration data only for the modes that need it.
    calibration = ctx.train.x if cfg.mode.needs_calibration else None
    return convert.convert(ctx.model, cfg, calibration_data=calibration).tflite_bytes


def find_float_scopes(
    ctx: Context, cand: space_lib.Candidate
) -> tuple[space_lib.Candidate, dict[str, Any]]:
    """The selective candidate with the float op scopes its search found, and the search.

    Without labels the target is top-1 agreement with the float32 file (labels are its
    predictions), as the trials' `accuracy` is then measured.
    """
    cfg = cand.recipe.convert
    # The float32 file convert() quantizes for this config; the baseline when they agree
    # (the space's candidates use the baseline's settings), so it is not converted again.
    if convert_api.float_config(cfg) == BASELINE:
        f32, float_model = ctx.baseline, ctx.reference_model()
    else:
        f32 = convert.convert(ctx.model, convert_api.float_config(cfg)).tflite_bytes
        float_model = runtime.LiteModel(f32)
    y = ctx.test.y
    if y is None:
        y = evaluate.predict_reference(float_model, ctx.test.x).reshape(len(ctx.test), -1)
        y = y.argmax(-1)
    found = selective.search(
        f32,
        cfg,
        calibration_data=ctx.train.x,
        eval_data=(ctx.test.x, y),
        max_accuracy_drop=cand.float_ops_target,
    ).converter_settings["selective"]
    scopes = [litert_quantizer.scope(op["op"]) for op in found["float_ops"]]
    report = {
        "target_max_accuracy_drop": cand.float_ops_target,
        "float_scopes": scopes,
        "found_by": found["found_by"],
        "evaluations": found["evaluations"],
        "full_int8_accuracy_drop_points": found["full"]["accuracy_drop_points"],
        "search_seconds": found["search_seconds"],
    }
    return space_lib.with_float_scopes(cand, scopes), report


def measure(ctx: Context, cand: space_lib.Candidate, blob: bytes) -> dict[str, Any]:
    """Every figure of one `.tflite` file, measured; JSON-ready."""
    ev = evaluate.evaluate(
        blob, ctx.test, config=ctx.evaluate_config, reference=ctx.reference_model()
    )
    bench = benchmark.compare([ctx.baseline, blob], cand.recipe.benchmark)
    base_row, row = bench.rows[0], bench.rows[1]
    memory = row.memory or {}
    added = [memory.get("init_added_mb"), memory.get("inference_added_mb")]
    peak = sum(v for v in added if v is not None) if any(v is not None for v in added) else None
    accuracy = ev.accuracy
    if accuracy is None and ev.parity is not None:
        accuracy = ev.parity.top1_agreement  # no labels: agreement with the float32 file
    drop = None
    if accuracy is not None:
        ref = ctx.baseline_accuracy if ev.accuracy is not None else 1.0
        drop = 100 * ((ref or 0.0) - accuracy)
    ratio = bench.ratios[-1] if bench.ratios else {}
    return {
        "accuracy": accuracy,
        "accuracy_metric": "top1" if ev.accuracy is not None else "top1_agreement_with_float32",
        "accuracy_drop_points": drop,
        "parity": ev.parity.to_dict() if ev.parity is not None else None,
        "num_eval_samples": ev.num_samples,
        "size_bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "graph_sha256": digest.graph_sha256(blob),
        "gzip_size_bytes": result_lib.gzip_size(blob),
        "latency_us": {k: row.latency_us[k] for k in ("p50", "p90")},
        "float_latency_us": {k: base_row.latency_us[k] for k in ("p50", "p90")},
        "latency_ratio_median": ratio.get("median"),
        "peak_memory_mb": peak,
        "num_threads": row.num_threads,
        "use_xnnpack": row.use_xnnpack,
        "num_runs": row.num_runs,
        "target": cand.recipe.benchmark.target or "local",
        "float_ops": converter.float_ops(blob),
    }


def run(ctx: Context, cand: space_lib.Candidate) -> tuple[bytes, dict[str, Any]]:
    """Builds and measures a candidate; writes its file to DIR/trials/<id>/model.tflite."""
    start = time.perf_counter()
    found = None
    try:
        if cand.float_ops_target is not None:
            cand, found = find_float_scopes(ctx, cand)
        blob = build(ctx, cand)
        ctx.folder(cand.id).mkdir(parents=True, exist_ok=True)
        io.atomic_write_bytes(ctx.folder(cand.id) / "model.tflite", blob, overwrite=True)
        figures = measure(ctx, cand, blob)
    # A candidate the backend refuses (an op without an int16 kernel), a benchmark that
    # crashed or a target that went away: this trial fails, the search goes on.
    except (errors.UserInputError, RuntimeError, OSError, ValueError, selective.TargetNotMet) as e:
        raise TrialFailed(f"{type(e).__name__}: {e}"[:600]) from e
    if found is not None:
        figures["selective"] = found
    figures["seconds"] = round(time.perf_counter() - start, 2)
    return blob, figures
