"""edgekit-example: write the bundled example (data and a trained model) to a folder.

    edgekit-example --output_dir=example

writes example/train.npz and example/test.npz (arrays x, y) and a trained
example/model.keras, so every command can be tried on something real.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from edgekit.cli import _common

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Folder to write train.npz, test.npz and model.keras into."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace files that already exist.")


def main(argv: Sequence[str]) -> None:
    del argv
    from edgekit.datasets import showcase

    out = showcase.write_example(_OUTPUT_DIR.value, overwrite=_OVERWRITE.value)
    info = out["training"]
    print(
        f"Trained the example model ({info['params']:,} parameters) in {info['train_seconds']} s: "
        f"test accuracy {100 * info['test_accuracy']:.2f}% on the 359 held-out test images."
    )
    for path in out["paths"].values():
        print(f"  wrote {path}")


def run() -> None:
    _common.run(main, required=("output_dir",))


if __name__ == "__main__":
    run()
