"""edgekit-export: a deployment bundle (model, manifest, labels, C array) for a .tflite file.

    edgekit-export --model=model.tflite --output_dir=bundle [--labels=labels.txt] \
        [--normalization=127.5,127.5] [--c_array] [--overwrite]
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from edgekit.cli import _common

_MODEL = flags.DEFINE_string("model", None, "The .tflite file to bundle.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "The bundle folder to write.")
_LABELS = flags.DEFINE_string("labels", None, "A text file with one class label per line.")
_NORMALIZATION = flags.DEFINE_string(
    "normalization", None, "'mean,std': the device feeds (x - mean) / std, e.g. 127.5,127.5."
)
_C_ARRAY = flags.DEFINE_boolean(
    "c_array", False, "Also write model_data.h/.cc for TensorFlow Lite Micro."
)
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace an existing output folder.")


def main(argv: Sequence[str]) -> None:
    del argv
    from edgekit import bundle

    norm = bundle.parse_normalization(_NORMALIZATION.value) if _NORMALIZATION.value else None
    result = bundle.export(
        _MODEL.value,
        _OUTPUT_DIR.value,
        labels=_LABELS.value,
        normalization=norm,
        c_array=_C_ARRAY.value,
        overwrite=_OVERWRITE.value,
    )
    print(f"wrote {result.output_dir}:")
    _common.print_table(
        [[name, e["size"], e["sha256"][:16]] for name, e in result.files.items()],
        ["file", "bytes", "sha256 (first 16)"],
    )
    model = result.manifest["model"]
    print(
        f"ops: {', '.join(model['ops'])}; arena estimate {model['arena_estimate_bytes']} bytes. "
        f"Check it with: edgekit-verify-bundle {result.output_dir}"
    )


def run() -> None:
    _common.run(main, required=("model", "output_dir"))


if __name__ == "__main__":
    run()
