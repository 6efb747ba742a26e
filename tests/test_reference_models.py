"""tflite_models/: every reference file loads, runs, and matches its row in the table."""

import gzip
import json
import pathlib

import numpy as np
import pytest

from edgekit import datasets, runtime

FOLDER = pathlib.Path(__file__).resolve().parents[1] / "tflite_models"
TABLE = json.loads((FOLDER / "models.json").read_text())


@pytest.mark.parametrize("row", TABLE["models"], ids=lambda r: r["name"])
def test_reference_model_matches_its_row(row):
    blob = (FOLDER / row["path"]).read_bytes()
    assert len(blob) == row["size_bytes"]
    assert len(gzip.compress(blob, compresslevel=9, mtime=0)) == row["gzip_size_bytes"]
    _, (x_test, y_test) = datasets.load_digits()
    probs = runtime.LiteModel(blob).predict(x_test)
    accuracy = float(np.mean(np.argmax(probs, -1) == y_test))
    # Kernels differ between CPUs (AVX2 vs AVX-512, ARM); allow one image of 359 to flip.
    assert abs(accuracy - row["accuracy"]) <= 1.0 / len(y_test) + 1e-9
    float_probs = runtime.LiteModel(FOLDER / "float32.tflite").predict(x_test)
    agreement = float(np.mean(np.argmax(probs, -1) == np.argmax(float_probs, -1)))
    assert agreement >= row["top1_agreement"] - 1.0 / len(y_test) - 1e-9


def test_readme_table_lists_every_model():
    readme = (FOLDER / "README.md").read_text()
    for row in TABLE["models"]:
        assert f"| {row['name']} |" in readme
