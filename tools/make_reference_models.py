r"""Regenerates tflite_models/: the example model as float32, dynamic, float16 and int8.

    python tools/make_reference_models.py [--output_dir=tflite_models] [--overwrite]

Trains the bundled example (seeded), converts it in each mode, evaluates each file
on the bundled test split against the Keras model, and writes the files with
tflite_models/README.md (a table of size, gzip size, accuracy and parity) and
tflite_models/models.json (the same rows, read by tests/test_reference_models.py).
"""

from __future__ import annotations

import pathlib
import platform
from collections.abc import Sequence

from absl import app, flags

from edgekit import _compat, io
from edgekit.cli import _common
from edgekit.config import ConvertConfig

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    str(pathlib.Path(__file__).resolve().parents[1] / "tflite_models"),
    "Where to write.",
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing files.")

REFERENCE_MODES = (
    ("float32", ConvertConfig(mode="float32")),
    ("dynamic", ConvertConfig(mode="dynamic")),
    ("float16", ConvertConfig(mode="float16")),
    ("int8", ConvertConfig(mode="int8", choose_granularity=False)),  # per-channel
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from edgekit import datasets
    from edgekit.report import modes

    out = pathlib.Path(_OUTPUT_DIR.value)
    out.mkdir(parents=True, exist_ok=True)
    model, info = datasets.train_example_model(seed=0)
    (x_train, _), (x_test, y_test) = datasets.load_digits()
    rows = modes.convert_all_modes(
        model,
        x_train,
        x_test,
        y_test,
        output_dir=out,
        modes=REFERENCE_MODES,
        overwrite=_OVERWRITE.value,
    )
    for r in rows:
        r["path"] = pathlib.Path(r["path"]).name
    versions = _compat.versions()
    io.write_json(
        out / "models.json",
        {"training": info, "versions": versions, "models": rows},
        overwrite=_OVERWRITE.value,
    )
    text = f"""# Reference models

The bundled example (`edgekit.datasets.build_example_model`, {info["params"]:,} parameters,
seed 0, trained with `EXAMPLE_TRAINING`: Keras test accuracy {100 * info["test_accuracy"]:.2f}%)
converted by edgekit in each post-training mode. Accuracy is top-1 on the bundled
test split ({rows[0]["num_test_samples"]} images); parity compares each file's outputs with the
Keras model's on the same images. Made by `python tools/make_reference_models.py`
on {platform.machine()} with TensorFlow {versions.get("tensorflow")}, LiteRT
{versions.get("ai-edge-litert")}; `tests/test_reference_models.py` checks that every file
loads, runs and matches its row.

{modes.markdown_table(rows)}

Sizes are the `.tflite` file; gzip is `gzip -9`. The int8 file keeps per-channel
scales (float32) and zero points (int64) for every conv channel, for weights and
biases: about 36 KB here, which is why it lands above the textbook 25% of float32.
`edgekit-convert --mode=int8 --noper_channel` drops them (27% of float32, same
accuracy on this model).
"""
    io.atomic_write_text(out / "README.md", text, overwrite=_OVERWRITE.value)
    _common.print_table(modes.table_rows(rows), modes.TABLE_HEADERS)
    print(f"wrote {len(rows)} models, README.md and models.json to {out}")


if __name__ == "__main__":
    app.run(main)
