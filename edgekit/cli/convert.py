r"""edgekit-convert: convert a Keras model to .tflite in any post-training mode.

    edgekit-convert --model=model.keras --mode=int8 --calibration_data=train.npz \
        --output=model_int8.tflite [--io_type=int8] [--json=report.json]
    edgekit-convert --example --output_dir=DIR   # every mode on the bundled example
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from absl import flags

from edgekit.cli import _common
from edgekit.config import BLOCK_SIZES, SCHEMES, Backend, ConvertMode, IOType

_MODEL = flags.DEFINE_string("model", None, "Keras model: .keras, .h5 or a SavedModel directory.")
_MODE = flags.DEFINE_enum("mode", "float32", [m.value for m in ConvertMode], "Post-training mode.")
_IO_TYPE = flags.DEFINE_enum(
    "io_type",
    "float32",
    [t.value for t in IOType],
    "Input/output dtype: int8/uint8 with --mode=int8, int16 with --mode=int16x8.",
)
_CALIBRATION = flags.DEFINE_string(
    "calibration_data",
    None,
    "Calibration data (.npz with x, .npy, or image folder); needed by int8 modes, except "
    "for a quantization-aware-trained model (it keeps the ranges it learned).",
)
_NUM_CALIBRATION = flags.DEFINE_integer(
    "num_calibration_samples",
    300,
    "Calibration samples, spread evenly over the data.",
    lower_bound=1,
)
_PER_CHANNEL = flags.DEFINE_bool(
    "per_channel",
    True,
    "Per-channel weight scales (False: per-tensor, smaller). Given explicitly either way, "
    "it forces that granularity instead of measuring both.",
)
_CHOOSE = flags.DEFINE_bool(
    "choose_granularity",
    False,
    "int8: convert per-channel and per-tensor, keep per-tensor if it agrees with the float "
    "model as well on the calibration samples (within 0.5 points) and is smaller gzipped. "
    "This is what happens by default whenever calibration data is given and neither "
    "--per_channel nor --noper_channel is; --nochoose_granularity turns it off.",
)
_BACKEND = flags.DEFINE_enum(
    "backend",
    "converter",
    [b.value for b in Backend],
    "Who quantizes: the TFLite converter, or LiteRT Quantizer on the float32 .tflite "
    "(needs --scheme).",
)
_SCHEME = flags.DEFINE_enum(
    "scheme",
    None,
    sorted(SCHEMES),
    "A LiteRT Quantizer scheme (sets the mode); the converter makes static_wi8_ai8, "
    "static_wi8_ai16 and dynamic_wi8_afp32.",
)
_BLOCK = flags.DEFINE_enum(
    "block_size",
    None,
    [str(b) for b in BLOCK_SIZES],
    "LiteRT Quantizer's dynamic schemes: weight scales per block of this many values.",
)
_BATCH = flags.DEFINE_integer(
    "batch_size",
    None,
    "Fix the batch dimension of the inputs at this size (1 for edge inference): static "
    "shapes, no run-time SHAPE/PACK ops, one XNNPack partition. Default: keep it free.",
    lower_bound=1,
)
_SPARSE = flags.DEFINE_bool(
    "sparse_weights", False, "Store sparse weights with TFLite's sparse encoding."
)
_SELECT_TF_OPS = flags.DEFINE_bool(
    "allow_select_tf_ops", False, "Allow Select TF ops (needs the Flex delegate on the device)."
)
_ALLOW_UNSAFE = flags.DEFINE_bool(
    "allow_unsafe_deserialization",
    False,
    "Load models with Lambda layers (runs code from the file).",
)
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the .tflite file.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace outputs that already exist.")
_JSON = flags.DEFINE_string("json", None, "Also write a JSON report here.")
_EXAMPLE = flags.DEFINE_bool(
    "example",
    False,
    "Train the bundled example, convert it in every mode, evaluate each, print a table.",
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "With --example: folder for the data, model and .tflite files."
)


def _run_example() -> None:
    from edgekit.datasets import showcase
    from edgekit.report import modes

    _common.require(
        "output_dir",
        hint=" with --example (a folder for the data, the model and the .tflite files)",
    )
    written = showcase.write_example(_OUTPUT_DIR.value, overwrite=_OVERWRITE.value)
    info = written["training"]
    print(
        f"Example model: {info['params']:,} parameters, trained in {info['train_seconds']} s, "
        f"Keras test accuracy {100 * info['test_accuracy']:.2f}%."
    )
    from edgekit.datasets import load_digits

    (x_train, _), (x_test, y_test) = load_digits()
    rows = modes.convert_all_modes(
        written["model"],
        x_train,
        x_test,
        y_test,
        output_dir=_OUTPUT_DIR.value,
        overwrite=_OVERWRITE.value,
    )
    print(f"\nEvery mode on {len(x_test)} test images (parity = .tflite vs the Keras model):\n")
    _common.print_table(modes.table_rows(rows), modes.TABLE_HEADERS)
    summary = pathlib.Path(_OUTPUT_DIR.value) / "conversions.json"
    from edgekit import io

    io.write_json(summary, {"training": info, "conversions": rows}, overwrite=True)
    print(f"\nFiles and {summary} are in {_OUTPUT_DIR.value}/")


def _granularity_choice() -> bool | None:
    """True/False when the user said so (either flag, given explicitly); None: measure."""
    if flags.FLAGS["choose_granularity"].present:
        return _CHOOSE.value
    if flags.FLAGS["per_channel"].present:
        return False
    return None


def granularity_line(choice: dict | str) -> str:
    """One line that says which weight granularity was kept, and the two measurements."""
    if isinstance(choice, str):
        return choice
    pc, pt = choice["per_channel"], choice["per_tensor"]
    kept = choice["chosen"].replace("_", "-")
    why = (
        "it agrees with the float model as well and is smaller"
        if kept == "per-tensor"
        else "per-tensor was less accurate or not smaller"
    )
    return (
        f"{kept} kept ({why}): agreement with the float model on {choice['samples']} "
        f"calibration samples {100 * pc['agreement']:.2f}% per-channel, "
        f"{100 * pt['agreement']:.2f}% per-tensor; gzipped {pc['gzip_size_bytes']:,} vs "
        f"{pt['gzip_size_bytes']:,} bytes."
    )


def main(argv: Sequence[str]) -> None:
    del argv
    if _EXAMPLE.value:
        return _run_example()
    from edgekit import convert, io
    from edgekit.config import ConvertConfig

    _common.require("model", "output", hint=" (or pass --example --output_dir=DIR)")
    config = ConvertConfig(
        mode=_MODE.value,
        io_type=_IO_TYPE.value,
        num_calibration_samples=_NUM_CALIBRATION.value,
        allow_select_tf_ops=_SELECT_TF_OPS.value,
        sparse_weights=_SPARSE.value,
        per_channel=_PER_CHANNEL.value,
        choose_granularity=_granularity_choice(),
        backend=_BACKEND.value,
        scheme=_SCHEME.value,
        block_size=int(_BLOCK.value) if _BLOCK.value else None,
        batch_size=_BATCH.value,
    )
    # Refuse an existing output before loading or converting anything.
    io.check_output_path(_OUTPUT.value, overwrite=_OVERWRITE.value)
    if _JSON.value:
        io.check_output_path(_JSON.value, overwrite=_OVERWRITE.value, what="JSON report")
    result = convert.convert(
        _MODEL.value,
        config,
        calibration_data=_CALIBRATION.value,
        safe_mode=not _ALLOW_UNSAFE.value,
    )
    result.save(_OUTPUT.value, overwrite=_OVERWRITE.value)
    report = {"output": str(_OUTPUT.value), **result.to_dict()}
    if _JSON.value:
        io.write_json(_JSON.value, report, overwrite=_OVERWRITE.value)
    print(
        f"Wrote {_OUTPUT.value}: mode {config.mode.value}"
        + (f" ({config.scheme}, {config.backend.value})" if config.scheme else "")
        + f", {result.size_bytes:,} bytes "
        f"({result.gzip_size_bytes:,} gzipped), converted in {result.conversion_seconds:.1f} s"
        + (
            f" with {result.num_calibration_samples} calibration samples"
            if result.num_calibration_samples
            else ""
        )
        + "."
    )
    choice = result.converter_settings.get("granularity_choice")
    if choice:
        print(f"  weights: {granularity_line(choice)}")
    for warning in result.converter_warnings:
        print(f"  converter warning: {warning}")


def run() -> None:
    _common.run(main, isolate=True)


if __name__ == "__main__":
    run()
