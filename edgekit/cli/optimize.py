r"""edgekit-optimize: run a recipe end to end, from a Keras model to a verified bundle.

    edgekit-optimize --model=model.keras --recipe=prune50_int8 --data=train.npz \
        --eval_data=test.npz --output_dir=out
    edgekit-optimize --example --output_dir=out   # the bundled example, whole path

Writes out/model.tflite, out/manifest.json, out/report.md, out/report.html and
out/optimized.keras. Interrupted? Run the same command again: it resumes after the
last finished stage.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from absl import flags

from edgekit.cli import _common

_MODEL = flags.DEFINE_string("model", None, "Keras model: .keras, .h5 or a SavedModel directory.")
_RECIPE = flags.DEFINE_string(
    "recipe", None, "A built-in recipe name (see edgekit-recipes) or a path to a recipe .json."
)
_DATA = flags.DEFINE_string("data", None, "Training and calibration data (.npz with x, y).")
_EVAL_DATA = flags.DEFINE_string("eval_data", None, "Held-out data for accuracy (default: --data).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "The run's folder (resumable).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a folder that holds another run.")
_ALLOW_UNSAFE = flags.DEFINE_bool(
    "allow_unsafe_deserialization",
    False,
    "Load models with Lambda layers (runs code from the file).",
)
_BATCH = flags.DEFINE_integer(
    "batch_size",
    None,
    "Fix the batch dimension of the .tflite inputs at this size (1 for edge inference), "
    "overriding the recipe's convert.batch_size. Default: as the recipe says (free).",
    lower_bound=1,
)
_EXAMPLE = flags.DEFINE_bool(
    "example",
    False,
    "Run the bundled example: train the digits model, then prune + QAT + int8 + benchmark + bundle.",
)
EXAMPLE_RECIPE = "example_prune_qat_int8"


def main(argv: Sequence[str]) -> None:
    del argv
    # Here, not at the top: the pipeline imports every stage (about a second), and
    # --help should answer at once.
    from edgekit import pipeline

    model, data, eval_data, recipe = _MODEL.value, _DATA.value, _EVAL_DATA.value, _RECIPE.value
    if _EXAMPLE.value:
        from edgekit.datasets import showcase  # only --example trains the example model

        example_dir = pathlib.Path(_OUTPUT_DIR.value + "_example_inputs")
        if not (example_dir / "model.keras").exists():
            print(f"Training the example model into {example_dir} ...", flush=True)
            showcase.write_example(example_dir, overwrite=True)
        model = str(example_dir / "model.keras")
        data, eval_data = str(example_dir / "train.npz"), str(example_dir / "test.npz")
        recipe = recipe or EXAMPLE_RECIPE
    if not _EXAMPLE.value:
        _common.require("model", "recipe", "data", hint=" (or pass --example)")
    if _BATCH.value is not None:
        import dataclasses

        from edgekit import recipes

        recipe = recipes.resolve_recipe(recipe)
        recipe = dataclasses.replace(
            recipe, convert=dataclasses.replace(recipe.convert, batch_size=_BATCH.value)
        )
    result = pipeline.run(
        recipe,
        model=model,
        data=data,
        eval_data=eval_data,
        output_dir=_OUTPUT_DIR.value,
        overwrite=_OVERWRITE.value,
        safe_mode=not _ALLOW_UNSAFE.value,
    )
    _print_summary(result)


def _print_summary(result) -> None:
    from edgekit.pipeline import summary as summary_lib  # lazy, like the pipeline itself

    print(summary_lib.format_summary(result))


def run() -> None:
    _common.run(main, required=("output_dir",), isolate=True)


if __name__ == "__main__":
    run()
