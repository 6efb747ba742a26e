"""edgekit-qat: quantization-aware training, then a `.keras` file ready for int8 conversion.

Example:
    edgekit-qat --model=model.keras --data=train.npz --epochs=2 --output=qat.keras \\
        --json=qat.json
    edgekit-convert --model=qat.keras --mode=int8 --calibration_data=train.npz ...

A Keras 3 model is trained through the checked Keras 3 bridge; the QAT model saved
is tf_keras either way (TF-MOT's fake-quant wrappers exist only in tf_keras), and
its deliverable is the int8 .tflite.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from absl import flags

from edgekit import errors
from edgekit.cli import _common
from edgekit.cli import _train_flags as train_flags
from edgekit.config import QATConfig, QATPreserve

_PRESERVE = flags.DEFINE_enum_class(
    "preserve",
    QATPreserve.NONE,
    QATPreserve,
    "Keep what an earlier step made: sparsity (zeros of a pruned model), clusters "
    "(centroids of a clustered model), both, or none.",
    case_sensitive=False,
)
_EXCLUDE = flags.DEFINE_string(
    "exclude_layers", None, "Regular expression; matching layer names stay float."
)
_SKIP_TYPES = flags.DEFINE_list("skip_types", [], "Layer class names that stay float.")
_NO_REWRITE = flags.DEFINE_bool(
    "keep_op_layers", False, "Do not rewrite scalar op layers (x + c, x * c) into Rescaling."
)


def main(argv: Sequence[str]) -> None:
    del argv
    from edgekit import io
    from edgekit.optimize import keras3, qat

    config = QATConfig(
        preserve=_PRESERVE.value,
        rewrite_ops=not _NO_REWRITE.value,
        exclude_layers=_EXCLUDE.value,
        skip_types=tuple(_SKIP_TYPES.value),
    )
    if pathlib.Path(train_flags.output_path()).suffix != ".keras":
        raise errors.UserInputError(
            "edgekit-qat saves .keras files only (a QAT model in .h5 needs TF-MOT's custom "
            "scope to load). Use --output=NAME.keras. "
            + errors.received(output=train_flags.output_path())
        )
    train_flags.check_outputs()
    data = train_flags.load_data(train_flags.data_path(), what="data")
    val_path = train_flags.val_data_path()
    val = train_flags.load_data(val_path, what="val_data") if val_path else None
    model = io.load_model(train_flags.model_path(), safe_mode=not train_flags.allow_unsafe())
    qat_model, report, failed = train_flags.train(
        qat.quantize_aware, model, config, data, fit=train_flags.fit_config(), val_data=val
    )
    wrote = train_flags.write_outputs(qat_model, report)
    if report.bridge:
        print(keras3.describe(report.bridge))
    rows = [(d.name, d.type, d.status, d.reason) for d in report.float_layers()]
    print(
        f"QAT ({report.preserve}): {report.num_quantized} layers quantized, "
        f"{report.num_float} left float, {len(report.rewrites)} op layers rewritten."
    )
    if rows:
        _common.print_table(rows, ["layer", "type", "status", "reason"])
    if report.preserve != "none":
        print(
            f"kernel sparsity of the quantized weights: {report.sparsity_before:.4f} before, "
            f"{report.sparsity_after:.4f} after"
        )
    if report.fit is not None and report.fit.history:
        last = {k: round(v[-1], 4) for k, v in report.fit.history.items()}
        print(f"fine-tuning ({report.fit.total_steps} steps, {report.fit.seconds} s): {last}")
    if wrote:
        print(f"wrote {train_flags.output_path()}")
    train_flags.print_validation(report, failed)


def run() -> None:
    """Console-script entry point."""
    _common.run(main, required=("model", "data", "output"), isolate=True)


if __name__ == "__main__":
    run()
