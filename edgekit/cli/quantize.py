r"""edgekit-quantize: quantize any float .tflite with LiteRT Quantizer.

    edgekit-quantize --model=model_float.tflite --scheme=static_wi8_ai8 \
        --calibration_data=train.npz --output=model_int8.tflite [--json=report.json]
    edgekit-quantize --model=M.tflite --scheme=dynamic_wi4_afp32 --block_size=32 --output=OUT
    # keep the fewest ops float that hold accuracy within 0.5 points of the float model:
    edgekit-quantize --model=M.tflite --scheme=static_wi8_ai8 --calibration_data=train.npz \
        --max_accuracy_drop=0.5 --eval_data=test.npz --output=OUT.tflite [--integer_only]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from edgekit import errors
from edgekit.cli import _common
from edgekit.config import BLOCK_SIZES, SCHEMES

_MODEL = flags.DEFINE_string("model", None, "The float .tflite to quantize (any source).")
_SCHEME = flags.DEFINE_enum("scheme", None, sorted(SCHEMES), "LiteRT Quantizer's scheme.")
_BLOCK = flags.DEFINE_enum(
    "block_size",
    None,
    [str(b) for b in BLOCK_SIZES],
    "Dynamic schemes: one weight scale per block of this many values (fully connected ops).",
)
_CALIBRATION = flags.DEFINE_string(
    "calibration_data", None, "Calibration data (.npz with x, .npy); needed by static schemes."
)
_NUM_CALIBRATION = flags.DEFINE_integer(
    "num_calibration_samples", 300, "Calibration samples, spread evenly.", lower_bound=1
)
_FLOAT_SCOPE = flags.DEFINE_multi_string(
    "float_scope",
    [],
    "Regex of op scopes (output tensor names, as edgekit-inspect lists them) to keep float.",
)
_MAX_DROP = flags.DEFINE_float(
    "max_accuracy_drop",
    None,
    "Selective: keep the fewest ops float so that accuracy on --eval_data drops at most "
    "this many points below the float model's.",
    lower_bound=0.0,
)
_MIN_COSINE = flags.DEFINE_float(
    "min_cosine",
    None,
    "Selective, without labels: mean cosine against the float outputs at least this.",
    lower_bound=0.0,
    upper_bound=1.0,
)
_EVAL = flags.DEFINE_string("eval_data", None, "Selective: data the target is measured on.")
_INTEGER_ONLY = flags.DEFINE_bool(
    "integer_only",
    False,
    "Selective: no float ops (for integer-only accelerators); sensitive ops get int16 "
    "activations instead, and the command exits 1 if the target cannot be met that way.",
)
_LATENCY_SECS = flags.DEFINE_float(
    "latency_secs",
    2.0,
    "Selective: seconds of interleaved latency measurement (float, full, result); 0 skips.",
    lower_bound=0.0,
)
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the quantized .tflite.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace outputs that already exist.")
_JSON = flags.DEFINE_string("json", None, "Also write a JSON report here.")


def _latency(float_path: str, full: bytes, result: bytes) -> dict:
    from edgekit import benchmark
    from edgekit.config import BenchmarkConfig

    cfg = BenchmarkConfig(num_threads=1, num_runs=20, min_secs=_LATENCY_SECS.value, max_secs=30)
    got = benchmark.compare([float_path, full, result], cfg)
    p50 = [row.latency_us["p50"] for row in got.rows]
    return {
        "how": "interleaved in one process, 1 thread, p50 of steady-state runs (µs)",
        "float_p50_us": p50[0],
        "full_p50_us": p50[1],
        "result_p50_us": p50[2],
        "ratios_vs_float": list(got.ratios),
    }


def main(argv: Sequence[str]) -> None:
    del argv
    from edgekit import io
    from edgekit.config import ConvertConfig
    from edgekit.convert import litert_quantizer, selective

    selective_mode = _MAX_DROP.value is not None or _MIN_COSINE.value is not None
    if (selective_mode or _INTEGER_ONLY.value) and not _EVAL.value:
        raise errors.UserInputError(
            "--max_accuracy_drop, --min_cosine and --integer_only measure the result, so they "
            "need --eval_data=DATA. " + errors.received(eval_data=_EVAL.value)
        )
    if _INTEGER_ONLY.value and not selective_mode:
        raise errors.UserInputError(
            "--integer_only goes with a target: --max_accuracy_drop=P or --min_cosine=C. "
            + errors.received(integer_only=True)
        )
    config = ConvertConfig(
        backend="litert_quantizer",
        scheme=_SCHEME.value,
        block_size=int(_BLOCK.value) if _BLOCK.value else None,
        num_calibration_samples=_NUM_CALIBRATION.value,
    )
    io.check_output_path(_OUTPUT.value, overwrite=_OVERWRITE.value)
    if _JSON.value:
        io.check_output_path(_JSON.value, overwrite=_OVERWRITE.value, what="JSON report")
    if selective_mode:
        if _FLOAT_SCOPE.value:
            raise errors.UserInputError(
                "--float_scope and a selective target both choose the float ops; use one. "
                + errors.received(float_scope=_FLOAT_SCOPE.value)
            )
        try:
            result = selective.search(
                _MODEL.value,
                config,
                calibration_data=_CALIBRATION.value,
                eval_data=_EVAL.value,
                max_accuracy_drop=_MAX_DROP.value,
                min_cosine=_MIN_COSINE.value,
                integer_only=_INTEGER_ONLY.value,
            )
        except selective.TargetNotMet as e:
            _common.print_error(f"{e} Nothing was written.")
            sys.exit(1)
    else:
        result = litert_quantizer.quantize(
            _MODEL.value,
            config,
            calibration_data=_CALIBRATION.value,
            float_scopes=_FLOAT_SCOPE.value,
        )
    report = {"output": str(_OUTPUT.value), **result.to_dict()}
    # The recipe field that replays this file from the Keras model (convert.float_scopes,
    # with backend litert_quantizer and this scheme), when the float file is the one
    # edgekit's converter makes from it. Only when ops stay float (the plain report keeps
    # edgekit-convert's keys).
    if _FLOAT_SCOPE.value:
        report["float_scopes"] = list(_FLOAT_SCOPE.value)
    sel = result.converter_settings.get("selective")
    if sel is not None:
        report["float_ops"] = [op["op"] for op in sel["float_ops"]]
        if not sel["integer_only"]:
            report["float_scopes"] = [litert_quantizer.scope(op["op"]) for op in sel["float_ops"]]
        if _LATENCY_SECS.value > 0:
            sel["latency"] = _latency(_MODEL.value, _full_file(config), result.tflite_bytes)
    result.save(_OUTPUT.value, overwrite=_OVERWRITE.value)
    if _JSON.value:
        io.write_json(_JSON.value, report, overwrite=_OVERWRITE.value)
    print(
        f"Wrote {_OUTPUT.value}: {config.scheme} with LiteRT Quantizer, {result.size_bytes:,} "
        f"bytes ({result.gzip_size_bytes:,} gzipped), in {result.conversion_seconds:.1f} s"
        + (
            f" with {result.num_calibration_samples} calibration samples"
            if result.num_calibration_samples
            else ""
        )
        + "."
    )
    if sel is not None:
        _print_selective(sel)


def _full_file(config) -> bytes:
    from edgekit.convert import litert_quantizer

    return litert_quantizer.quantize(
        _MODEL.value, config, calibration_data=_CALIBRATION.value
    ).tflite_bytes


def _print_selective(sel: dict) -> None:
    res, full, flt = sel["result"], sel["full"], sel["float"]
    kept = sel["float_ops"]
    what = "int16" if sel["integer_only"] else "float"
    print(
        f"  target {sel['target']}: {len(kept)} op(s) kept {what}, found by "
        f"{sel.get('found_by', 'the search')} (the noise ranking's top-k prefix needed "
        f"{sel['top_k_prefix']}; {sel['evaluations']} "
        f"evaluations on {sel['eval_samples']} samples)"
    )
    for op in kept:
        print(f"    {op['type']} {op['op']}: {op['why']}")

    def acc(m: dict) -> str:
        return "-" if m.get("accuracy") is None else f"{100 * m['accuracy']:.2f}%"

    print(
        f"  accuracy: float {acc(flt)}, full {acc(full)}, result {acc(res)}; size: float "
        f"{flt['size_bytes']:,}, full {full['size_bytes']:,}, result {res['size_bytes']:,} bytes"
    )
    lat = sel.get("latency")
    if lat:
        print(
            f"  latency p50 ({lat['how']}): float {lat['float_p50_us']:.1f}, full "
            f"{lat['full_p50_us']:.1f}, result {lat['result_p50_us']:.1f}"
        )


def run() -> None:
    _common.run(main, required=("model", "scheme", "output"))


if __name__ == "__main__":
    run()
