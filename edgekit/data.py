"""Data adapters: every supported source becomes a `Dataset` of numpy arrays.

Sources: a `.npz` file (arrays `x` and optionally `y`), a `.npy` file (inputs
only), a folder of images with one sub-folder per class (the
`image_dataset_from_directory` convention), a `tf.data.Dataset`, numpy arrays, an
`(x, y)` tuple, or a generator/iterable. Generators and `tf.data.Dataset`s yield batches
(`x` or `(x, y)`, first axis = sample), as Keras `fit` expects.

Edge models and their calibration/evaluation sets are small, so data is
materialised in memory; `max_samples` caps what a large source yields.

Example:
    >>> ds = edgekit.data.load("test.npz")
    >>> calib = edgekit.data.calibration_samples(ds.x, 300)
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from edgekit import _compat, errors

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Inputs `x` (one array, first axis = samples), optional labels `y`, and where they came from."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, indices: np.ndarray) -> Dataset:
        return Dataset(
            self.x[indices],
            None if self.y is None else self.y[indices],
            self.source,
            self.class_names,
        )


def load(
    source: Any,
    *,
    max_samples: int | None = None,
    image_size: tuple[int, int] | None = None,
    require_labels: bool = False,
) -> Dataset:
    """Loads any supported data source into a `Dataset`.

    Args:
      source: a path (.npz, .npy, image folder), a `Dataset`, a `tf.data.Dataset`,
        an array, an `(x, y)` tuple, or an iterable of `x` or `(x, y)` batches.
      max_samples: keep at most this many samples, spread evenly over the source
        (iterables are read only up to this many).
      image_size: (height, width) to resize images from a folder to.
      require_labels: raise if the source has no labels.

    Raises:
      UserInputError: missing path, unknown format, missing arrays, empty data,
        inconsistent lengths, or labels required but absent.
    """
    ds = _load(source, max_samples=max_samples, image_size=image_size)
    if len(ds) == 0:
        raise errors.UserInputError(
            f"The data from {ds.source} is empty: it holds no samples. Pass data with at "
            "least one sample. " + errors.received(num_samples=0)
        )
    if ds.y is not None and len(ds.y) != len(ds.x):
        raise errors.UserInputError(
            f"x and y hold different numbers of samples in {ds.source}. "
            + errors.received(x_samples=len(ds.x), y_samples=len(ds.y))
        )
    if require_labels and ds.y is None:
        raise errors.UserInputError(
            f"Labels are needed, but {ds.source} has inputs only. Use a .npz with arrays 'x' "
            "and 'y', an image folder with one sub-folder per class, or an (x, y) tuple. "
            + errors.received(source=ds.source)
        )
    if max_samples is not None and len(ds) > max_samples:
        ds = ds.take(spread_indices(len(ds), max_samples))
    return ds


def _load(source: Any, *, max_samples: int | None, image_size: tuple[int, int] | None) -> Dataset:
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, os.PathLike)):
        return _load_path(pathlib.Path(source), image_size=image_size)
    if isinstance(source, np.ndarray):
        return Dataset(source, None, "an array")
    if isinstance(source, tuple) and len(source) == 2 and not _is_tf_dataset(source):
        x, y = source
        return Dataset(np.asarray(x), None if y is None else np.asarray(y), "an (x, y) tuple")
    if _is_tf_dataset(source):
        return _from_batches(source.as_numpy_iterator(), "a tf.data.Dataset", max_samples)
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes, dict)):
        return _from_batches(iter(source), "a generator", max_samples)
    raise errors.UserInputError(
        "Unsupported data source: expected a .npz/.npy path, an image folder, a tf.data.Dataset, "
        "a numpy array, an (x, y) tuple or a generator. "
        + errors.received(data=type(source).__name__)
    )


def _is_tf_dataset(obj: Any) -> bool:
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(obj, tf.data.Dataset)


def _from_batches(it: Any, what: str, max_samples: int | None) -> Dataset:
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    count = 0
    labelled = None
    for item in it:
        if isinstance(item, dict):
            item = (item["x"], item.get("y"))
        has_y = isinstance(item, tuple) and len(item) == 2
        if labelled is None:
            labelled = has_y
        elif labelled != has_y:
            raise errors.UserInputError(
                f"{what} mixes items with and without labels; yield all `x` or all `(x, y)`. "
                + errors.received(item_type=type(item).__name__)
            )
        x, y = item if has_y else (item, None)
        x = np.asarray(x)
        if x.ndim == 0:
            raise errors.UserInputError(
                f"{what} must yield batches (arrays whose first axis is the sample), as Keras "
                "fit() expects; batch a tf.data.Dataset with .batch(n). "
                + errors.received(item_shape=list(x.shape))
            )
        xs.append(x)
        if y is not None:
            ys.append(np.asarray(y))
        count += x.shape[0]
        if max_samples is not None and count >= max_samples:
            break
    if not xs:
        return Dataset(np.zeros((0,), np.float32), None, what)
    try:
        x_all = np.concatenate(xs)
    except ValueError:
        raise errors.UserInputError(
            f"The samples from {what} have different shapes and cannot be stacked. "
            + errors.received(shapes=sorted({tuple(a.shape[1:]) for a in xs}))
        ) from None
    return Dataset(x_all, np.concatenate(ys) if ys else None, what)


def _load_path(path: pathlib.Path, *, image_size: tuple[int, int] | None) -> Dataset:
    if not path.exists():
        raise errors.UserInputError(
            f"No data at {str(path)!r}: the path does not exist. Expected a .npz file (arrays 'x', "
            "'y'), a .npy file, or an image folder. " + errors.received(data=str(path))
        )
    if path.is_dir():
        return _load_image_folder(path, image_size=image_size)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z.files:
                    raise errors.UserInputError(
                        f"{str(path)!r} has no array named 'x'; it has {z.files}. Save inputs as "
                        "np.savez(path, x=inputs, y=labels). " + errors.received(arrays=z.files)
                    )
                return Dataset(z["x"], z["y"] if "y" in z.files else None, repr(str(path)))
        if suffix == ".npy":
            return Dataset(np.load(path, allow_pickle=False), None, repr(str(path)))
    except (ValueError, OSError, EOFError) as e:
        if isinstance(e, errors.UserInputError):
            raise
        raise errors.UserInputError(
            f"Could not read {str(path)!r} as numpy data ({e}). " + errors.received(data=str(path))
        ) from None
    raise errors.UserInputError(
        f"Unknown data format {suffix!r}: expected .npz (arrays 'x' and 'y'), .npy (inputs) or a "
        "folder of images with one sub-folder per class. " + errors.received(data=str(path))
    )


def _load_image_folder(path: pathlib.Path, *, image_size: tuple[int, int] | None) -> Dataset:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if not classes:
        raise errors.UserInputError(
            f"The folder {str(path)!r} has no class sub-folders. Lay images out as "
            "DIR/<class name>/<image>.png (the image_dataset_from_directory convention). "
            + errors.received(data=str(path))
        )
    tf = _compat.tf()
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted((path / name).iterdir()):
            if f.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            img = tf.io.decode_image(tf.io.read_file(str(f)), expand_animations=False)
            if image_size is not None:
                img = tf.image.resize(img, image_size)
            xs.append(np.asarray(img, dtype=np.float32))
            ys.append(label)
    if not xs:
        return Dataset(np.zeros((0,), np.float32), None, repr(str(path)), tuple(classes))
    if len({x.shape for x in xs}) > 1:
        raise errors.UserInputError(
            f"The images in {str(path)!r} have different sizes; pass image_size=(height, width) "
            "(--image_size) to resize them. "
            + errors.received(shapes=sorted({x.shape for x in xs}))
        )
    return Dataset(np.stack(xs), np.asarray(ys, np.int64), repr(str(path)), tuple(classes))


def spread_indices(n: int, k: int) -> np.ndarray:
    """Returns `min(n, k)` indices spread evenly over `range(n)` (not just the first k)."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def check_inputs(x: np.ndarray, input_shape: tuple[int | None, ...], *, what: str = "data") -> None:
    """Checks that `x` is a finite numeric batch matching `input_shape` (batch dim first).

    Raises:
      UserInputError: wrong rank or shape, non-numeric dtype, NaN or Inf.
    """
    x = np.asarray(x)
    want = [None if d is None or d == -1 else int(d) for d in input_shape]
    if x.ndim != len(want) or any(
        w is not None and w != g for w, g in zip(want[1:], x.shape[1:], strict=False)
    ):
        raise errors.UserInputError(
            f"The {what} does not fit the model: the model takes batches of shape {want} "
            f"(None = any size). Check that the data belongs to this model. "
            + errors.received(shape=list(x.shape))
        )
    if x.dtype.kind not in "fiub":
        raise errors.UserInputError(
            f"The {what} must be numeric (float or integer arrays). "
            + errors.received(dtype=str(x.dtype))
        )
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise errors.UserInputError(
            f"The {what} holds {bad} NaN or Inf value(s); calibration and evaluation need finite "
            "numbers. Clean or drop those samples. " + errors.received(non_finite_values=bad)
        )


def calibration_samples(x: np.ndarray, num_samples: int) -> np.ndarray:
    """Picks `num_samples` calibration inputs spread evenly over `x`."""
    x = np.asarray(x)
    if x.shape[0] == 0:
        raise errors.UserInputError(
            "The calibration set is empty. Pass data with at least one sample "
            "(--calibration_data). " + errors.received(num_samples=0)
        )
    return x[spread_indices(x.shape[0], num_samples)]
