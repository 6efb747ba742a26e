"""The example on disk: the bundled digits and the trained example model, as files.

Used by `edgekit-example`, `edgekit-convert --example`, `edgekit-optimize --example` and
`tools/make_reference_models.py`; `edgekit.report.modes` converts it in every mode.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from edgekit import io
from edgekit.datasets import digits, models


def write_example(output_dir: str | os.PathLike, *, overwrite: bool = False) -> dict[str, Any]:
    """Writes `train.npz`, `test.npz` and a trained `model.keras` into `output_dir`.

    Returns:
      The training info (test accuracy, seconds, parameters) and the written paths.
    """
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("train.npz", "test.npz", "model.keras")}
    for p in paths.values():
        io.check_output_path(p, overwrite=overwrite)
    (x_train, y_train), (x_test, y_test) = digits.load_digits()
    model, info = models.example_model()
    for name, (x, y) in (("train.npz", (x_train, y_train)), ("test.npz", (x_test, y_test))):
        with io.atomic_path(paths[name], overwrite=overwrite) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, x=x, y=y)
    io.save_model(model, paths["model.keras"], overwrite=overwrite)
    return {"training": info, "paths": {k: str(v) for k, v in paths.items()}, "model": model}
