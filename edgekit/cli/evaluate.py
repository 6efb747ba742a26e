r"""edgekit-evaluate: accuracy of a .tflite model, and parity with its Keras model.

    edgekit-evaluate --model=model_int8.tflite --data=test.npz \
        [--reference=model.keras] [--json=report.json] \
        [--quant_debug_csv=layers.csv --calibration_data=train.npz]
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from edgekit import errors
from edgekit.cli import _common

_MODEL = flags.DEFINE_string("model", None, "The .tflite model to evaluate.")
_DATA = flags.DEFINE_string(
    "data", None, "Evaluation data: .npz (x, y), .npy (x) or an image folder."
)
_REFERENCE = flags.DEFINE_string(
    "reference",
    None,
    "The Keras model it came from, or the float .tflite it was quantized from, for parity figures.",
)
_TOP_K = flags.DEFINE_list("top_k", ["1", "5"], "k values of top-k accuracy.")
_BATCH = flags.DEFINE_integer(
    "batch_size", 64, "Samples per invoke (dynamic-batch models).", lower_bound=1
)
_MAX_SAMPLES = flags.DEFINE_integer(
    "max_samples", None, "Evaluate at most this many samples.", lower_bound=1
)
_THREADS = flags.DEFINE_integer("num_threads", None, "Interpreter threads.", lower_bound=1)
_QDEBUG = flags.DEFINE_string(
    "quant_debug_csv",
    None,
    "Write per-layer quantization error (TensorFlow's quantization debugger) to this CSV; "
    "needs --reference and --calibration_data.",
)
_CALIBRATION = flags.DEFINE_string(
    "calibration_data", None, "Calibration data for --quant_debug_csv."
)
_ALLOW_UNSAFE = flags.DEFINE_bool(
    "allow_unsafe_deserialization", False, "Load reference models with Lambda layers."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace outputs that already exist.")
_JSON = flags.DEFINE_string("json", None, "Also write a JSON report here.")


def main(argv: Sequence[str]) -> None:
    del argv
    from edgekit import evaluate, io
    from edgekit.config import EvaluateConfig

    try:
        top_k = tuple(int(k) for k in _TOP_K.value)
    except ValueError:
        raise errors.UserInputError(
            "--top_k takes whole numbers, for example --top_k=1,5. "
            + errors.received(top_k=_TOP_K.value)
        ) from None
    config = EvaluateConfig(
        top_k=top_k,
        batch_size=_BATCH.value,
        max_samples=_MAX_SAMPLES.value,
        num_threads=_THREADS.value,
    )
    if _QDEBUG.value:
        _common.require(
            "reference",
            "calibration_data",
            hint=" with --quant_debug_csv (it compares the float and the quantized layers)",
        )
    for path, what in ((_JSON.value, "JSON report"), (_QDEBUG.value, "CSV")):
        if path:
            io.check_output_path(path, overwrite=_OVERWRITE.value, what=what)
    result = evaluate.evaluate(
        _MODEL.value,
        _DATA.value,
        config=config,
        reference=_REFERENCE.value,
        safe_mode=not _ALLOW_UNSAFE.value,
    )
    report = {"model": _MODEL.value, "data": _DATA.value, **result.to_dict()}
    print(f"{_MODEL.value} on {result.num_samples} samples of {_DATA.value}:")
    if result.accuracy is not None:
        line = ", ".join(f"top-{k} {100 * v:.2f}%" for k, v in result.top_k_accuracy.items())
        print(f"  accuracy: {line}")
        if result.reference_accuracy is not None:
            kind = "Keras" if io.detect_format(_REFERENCE.value) != "tflite" else "float .tflite"
            print(f"  {kind} reference accuracy: {100 * result.reference_accuracy:.2f}%")
    if result.parity is not None:
        p = result.parity
        print(
            f"  parity with {_REFERENCE.value}: top-1 agreement {100 * p.top1_agreement:.2f}%, "
            f"max abs error {p.max_abs_error:.3g}, MSE {p.mse:.3g}, cosine {p.cosine:.6f}"
        )
    if _QDEBUG.value:
        rows = evaluate.layer_quantization_error(_REFERENCE.value, _CALIBRATION.value)
        evaluate.save_layer_errors_csv(rows, _QDEBUG.value, overwrite=_OVERWRITE.value)
        report["quant_debug_csv"] = _QDEBUG.value
        print(f"  per-layer quantization error of {len(rows)} tensors: {_QDEBUG.value}")
    if _JSON.value:
        io.write_json(_JSON.value, report, overwrite=_OVERWRITE.value)


def run() -> None:
    _common.run(main, required=("model", "data"))


if __name__ == "__main__":
    run()
