r"""edgekit-prune: prune a Keras model with TF-MOT, fine-tune it, save it stripped.

    edgekit-prune --model=model.keras --data=train.npz --target_sparsity=0.8 \
        --epochs=10 --output=pruned.keras [--json=report.json] [--m_by_n=2:4] \
        [--block_size=1x4] [--schedule=polynomial|constant] [--strategy=mirrored]

The saved model is in the Keras it was given: a Keras 3 model goes through the
checked Keras 3 bridge and comes back as Keras 3 (loads with plain
`keras.saving.load_model`), a tf_keras one loads with plain
`tf_keras.models.load_model`. Convert it with `edgekit-convert --sparse_weights`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from absl import flags

from edgekit import errors
from edgekit.cli import _common
from edgekit.cli import _train_flags as train
from edgekit.config import PruneSchedule

_TARGET = flags.DEFINE_float(
    "target_sparsity", 0.5, "Fraction of weights set to zero in each pruned layer, in [0, 1)."
)
_SCHEDULE = flags.DEFINE_enum_class(
    "schedule", PruneSchedule.POLYNOMIAL, PruneSchedule, "How sparsity grows.", case_sensitive=False
)
_FREQUENCY = flags.DEFINE_integer(
    "frequency", None, "Prune every N steps (default: chosen from the step count).", lower_bound=1
)
_M_BY_N = flags.DEFINE_string(
    "m_by_n", None, "Structured sparsity M:N, e.g. 2:4 (M of every N consecutive weights zero)."
)
_BLOCK = flags.DEFINE_string("block_size", None, "Block sparsity ROWSxCOLS, e.g. 1x4.")
_XNNPACK = flags.DEFINE_bool(
    "xnnpack_policy", False, "TF-MOT's PruneForLatencyOnXNNPack policy (1x1 convs only)."
)
_LAYERS = flags.DEFINE_string("layers", None, "Regex: prune only layers whose names match.")
_EXCLUDE = flags.DEFINE_string("exclude_layers", None, "Regex: leave matching layers alone.")
_LAYER_TYPES = flags.DEFINE_list("layer_types", [], "Prune only these layer classes.")
_SKIP_TYPES = flags.DEFINE_list(
    "skip_types", ["DepthwiseConv2D"], "Leave these layer classes alone."
)
_SKIP_FIRST = flags.DEFINE_bool("skip_first", True, "Leave the first layer alone.")
_SKIP_LAST = flags.DEFINE_bool("skip_last", False, "Leave the last layer alone.")
_COMPARE = flags.DEFINE_bool(
    "compare_sparse_tflite",
    True,
    "Convert to float32 .tflite with and without sparse encoding; report size and latency.",
)


def _pair(flag: str, value: str | None, sep: str) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.lower().split(sep)
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        raise errors.UserInputError(
            f"--{flag} takes two whole numbers separated by {sep!r}, e.g. "
            f"{'2:4' if sep == ':' else '1x4'}. " + errors.received(**{flag: value})
        ) from None
    return a, b


def main(argv: Sequence[str]) -> None:
    del argv
    from edgekit.config import PruneConfig
    from edgekit.optimize import keras3, prune

    fit = train.fit_config(prune.DEFAULT_FIT)
    config = PruneConfig(
        target_sparsity=_TARGET.value,
        schedule=_SCHEDULE.value,
        frequency=_FREQUENCY.value,
        m_by_n=_pair("m_by_n", _M_BY_N.value, ":"),
        block_size=_pair("block_size", _BLOCK.value, "x") or (1, 1),
        xnnpack_policy=_XNNPACK.value,
        layers=_LAYERS.value,
        exclude_layers=_EXCLUDE.value,
        layer_types=tuple(_LAYER_TYPES.value),
        skip_types=tuple(_SKIP_TYPES.value),
        skip_first=_SKIP_FIRST.value,
        skip_last=_SKIP_LAST.value,
    )
    model_path = train.model_path()
    train.check_outputs()
    train.start_strategy(fit)
    data = train.load_data(train.data_path(), what="data")
    val = train.load_data(train.val_data_path(), what="val_data") if train.val_data_path() else None
    from edgekit import io

    model = io.load_model(model_path, safe_mode=not train.allow_unsafe())
    stripped, report, failed = train.train(prune.prune, model, config, data, fit=fit, val_data=val)
    if _COMPARE.value and train.is_chief():
        report = dataclasses.replace(report, tflite=prune.compare_sparse_encoding(stripped))
    if report.bridge:
        print(keras3.describe(report.bridge))
    if train.write_outputs(stripped, report):
        print(
            f"\nWrote {train.output_path()}"
            + (f" and {train.json_path()}" if train.json_path() else "")
        )
    train.print_layers(report, value="sparsity")
    s = report.schedule
    print(
        f"Sparsity {100 * report.achieved_sparsity:.1f}% of the pruned weights (target "
        f"{100 * report.target_sparsity:.1f}%), {100 * report.model_sparsity:.1f}% of all kernel "
        f"weights; {s['kind']} schedule, steps {s['begin_step']}..{s['end_step']} every "
        f"{s['frequency']} of {s['total_steps']}; {report.fit.seconds:.1f} s on "
        f"{report.fit.num_replicas} replica(s)."
    )
    if report.tflite:
        t = report.tflite
        print(
            f"float32 .tflite: {t['dense']['size_bytes']:,} bytes dense, "
            f"{t['sparse']['size_bytes']:,} with sparse encoding (x{t['size_ratio']}); median "
            f"invoke {t['dense']['median_latency_ms']} ms vs {t['sparse']['median_latency_ms']} "
            f"ms ({t['timing']['runs']} runs, {t['timing']['num_threads']} thread, batch 1, "
            f"{t['timing']['cpu_path'].split(' (')[0]})."
        )
    train.print_validation(report, failed)


def run() -> None:
    _common.run(main, required=("model", "data", "output"), isolate=True)


if __name__ == "__main__":
    run()
