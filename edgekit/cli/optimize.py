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
_VAL_DATA = flags.DEFINE_string(
    "val_data",
    None,
    "Labelled held-out data (.npz) on which each training stage measures accuracy before and "
    "after. Default: --eval_data when given, else a split of --data kept out of training.",
)
_MAX_DROP = flags.DEFINE_float(
    "max_accuracy_drop",
    None,
    "Warn when a training stage's held-out accuracy falls by more than this many points "
    "(overrides the recipe's fit.max_accuracy_drop, default 1.0).",
    lower_bound=0.0,
    upper_bound=100.0,
)
_FAIL_ON_DROP = flags.DEFINE_bool(
    "fail_on_accuracy_drop",
    None,
    "Exit with status 1 when a training stage's accuracy drop is past the limit (the run "
    "still finishes and writes everything). Default: the recipe's fit.fail_on_accuracy_drop.",
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
    recipe = _with_validation(recipe)
    result = pipeline.run(
        recipe,
        model=model,
        data=data,
        eval_data=eval_data,
        val_data=_VAL_DATA.value,
        output_dir=_OUTPUT_DIR.value,
        overwrite=_OVERWRITE.value,
        safe_mode=not _ALLOW_UNSAFE.value,
    )
    _print_summary(result)
    from edgekit.pipeline import summary as summary_lib

    failed = summary_lib.failed_stages(result.summary)
    if failed:
        import sys

        print(
            f"error: the held-out accuracy of {', '.join(failed)} fell past the limit and "
            "fail_on_accuracy_drop is set: exit status 1 (everything was written).",
            file=sys.stderr,
        )
        sys.exit(1)


def _with_validation(recipe):
    """The recipe with --max_accuracy_drop / --fail_on_accuracy_drop in every stage's fit."""
    changes = {}
    if _MAX_DROP.value is not None:
        changes["max_accuracy_drop"] = _MAX_DROP.value
    if _FAIL_ON_DROP.value is not None:
        changes["fail_on_accuracy_drop"] = _FAIL_ON_DROP.value
    if not changes:
        return recipe
    import dataclasses

    from edgekit import recipes

    recipe = recipes.resolve_recipe(recipe)
    fits = {"fit": dataclasses.replace(recipe.fit, **changes)}
    for name in ("distill_fit", "prune_fit", "cluster_fit", "qat_fit"):
        if getattr(recipe, name) is not None:
            fits[name] = dataclasses.replace(getattr(recipe, name), **changes)
    return dataclasses.replace(recipe, **fits)


def _print_summary(result) -> None:
    from edgekit.pipeline import summary as summary_lib  # lazy, like the pipeline itself

    print(summary_lib.format_summary(result))


def run() -> None:
    _common.run(main, required=("output_dir",), isolate=True)


if __name__ == "__main__":
    run()
