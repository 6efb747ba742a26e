"""Shared fixtures: tiny models built in code, and the example trained once per session."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pytest

# Train the example into a fresh cache per test session, so CI measures what a new
# user gets rather than a model left on the machine by an earlier run.
os.environ.setdefault("EDGEKIT_CACHE", tempfile.mkdtemp(prefix="edgekit-test-cache-"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def example():
    """(model, info, (x_train, y_train), (x_test, y_test)) of the trained example."""
    from edgekit import datasets

    model, info = datasets.example_model()
    return model, info, *datasets.load_digits()


@pytest.fixture(scope="session")
def example_dir(example, tmp_path_factory):
    """A folder as `edgekit-example` writes it: train.npz, test.npz, model.keras."""
    from edgekit.datasets import showcase

    out = tmp_path_factory.mktemp("example")
    showcase.write_example(out)
    return out


def make_tiny_model(seed: int = 0, *, input_shape=(8, 8, 1), classes: int = 4, input_name=None):
    """A small conv + dense tf_keras classifier (untrained but seeded)."""
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    inputs = tf_keras.Input(input_shape, name=input_name)
    x = tf_keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = tf_keras.layers.Flatten()(x)
    outputs = tf_keras.layers.Dense(classes, activation="softmax")(x)
    return tf_keras.Model(inputs, outputs)


@pytest.fixture
def tiny_model():
    return make_tiny_model()


@pytest.fixture
def tiny_data():
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 4, 64)
    return x, y


def run_cli(module: str, *args: str, cwd: str | os.PathLike | None = None, timeout: float = 600):
    """Runs `python -m edgekit.cli.<module> args...`; returns the CompletedProcess."""
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", f"edgekit.cli.{module}", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def tree_snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to prove nothing was touched."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
