"""The inputs of a distillation run: data read and checked, mixed inputs, packed targets.

Example:
    >>> x, y = read_inputs((x, None), what="data")  # unlabelled: soft targets alone
    >>> x_all = np.concatenate([x, mix_inputs(x, 5)])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit import config as config_lib
from edgekit import data as data_lib
from edgekit import errors
from edgekit.optimize import fit as fit_lib

WHAT = "Distillation"


def read_inputs(data: Any, *, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, labels or None) from arrays, (x, y), (x, None), a Dataset or a path."""
    if isinstance(data, np.ndarray):
        x, y = data, None
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    elif hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    else:
        loaded = data_lib.load(data)
        x, y = loaded.x, loaded.y
    if y is None:
        x, _ = fit_lib.as_arrays((x, np.zeros(len(np.asarray(x)))), what=what)
        return x, None
    return fit_lib.as_arrays((x, y), what=what)


def class_ids(y: np.ndarray, num_classes: int, *, what: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == num_classes and y.dtype.kind == "f":
        y = np.argmax(y, axis=1)  # one-hot
    y = y.reshape(len(y), -1)
    ok = y.shape[1] == 1 and np.all(np.mod(y, 1) == 0) and y.min() >= -1 and y.max() < num_classes
    if not ok:
        raise errors.UserInputError(
            f"Distillation takes class-id labels in [0, {num_classes}) (or one-hot rows) for "
            f"the {what}, to match the models' {num_classes} outputs; -1 marks an unlabelled "
            "sample (the soft-target term alone trains on it). "
            + errors.received(label_shape=list(y.shape), min=float(y.min()), max=float(y.max()))
        )
    return y[:, 0].astype(np.float32)


def check_models(teacher: Any, student: Any, config: config_lib.DistillConfig) -> None:
    for model, role in ((teacher, "teacher"), (student, "student")):
        if isinstance(model.output_shape, list) or isinstance(model.input_shape, list):
            raise errors.UserInputError(
                f"{WHAT} supports models with one input and one output; the {role} has "
                "several. " + errors.received(**{role: model.name})
            )
    t_out, s_out = list(teacher.output_shape[1:]), list(student.output_shape[1:])
    if len(t_out) != 1 or not t_out[0] or t_out[0] < 2:
        raise errors.UserInputError(
            f"{WHAT} supports classifiers: one output vector of class scores (2 or more "
            "classes, logits or softmax probabilities). " + errors.received(teacher_output=t_out)
        )
    if t_out != s_out:
        raise errors.UserInputError(
            "The teacher and the student must predict the same classes: one output vector "
            f"of the same size. The teacher outputs {t_out}, the student {s_out}. Build the "
            "student with the teacher's number of classes (or use --student=width:F). "
            + errors.received(teacher_output=t_out, student_output=s_out)
        )
    if list(teacher.input_shape[1:]) != list(student.input_shape[1:]):
        raise errors.UserInputError(
            "The teacher and the student must take the same input shape. "
            + errors.received(
                teacher_input=list(teacher.input_shape), student_input=list(student.input_shape)
            )
        )
    for t_name, s_name in config.feature_layers:
        for model, name, role in ((teacher, t_name, "teacher"), (student, s_name, "student")):
            if name not in {layer.name for layer in model.layers}:
                raise errors.UserInputError(
                    f"feature_layers names layer {name!r}, which the {role} does not have. "
                    f"Its layers are {[layer.name for layer in model.layers][:60]}. Pass "
                    "'teacher_layer:student_layer' with names from these lists. "
                    + errors.received(feature_layer=name, model=model.name)
                )
        t_shape = teacher.get_layer(t_name).output_shape[1:]
        s_shape = student.get_layer(s_name).output_shape[1:]
        same_space = len(t_shape) == len(s_shape) and t_shape[:-1] == s_shape[:-1]
        if not same_space or len(t_shape) not in (1, 3) or None in t_shape:
            raise errors.UserInputError(
                f"Feature layers {t_name!r} (teacher, {list(t_shape)}) and {s_name!r} (student, "
                f"{list(s_shape)}) cannot be matched: edgekit projects channels (1x1 conv or "
                "dense) but needs the same spatial size, rank 1 or 3, and static shapes. Pick "
                "layers at the same resolution. "
                + errors.received(teacher_shape=list(t_shape), student_shape=list(s_shape))
            )


def mix_inputs(x: np.ndarray, per_input: int, *, seed: int = 0) -> np.ndarray:
    """`per_input * len(x)` convex combinations `l * x[i] + (1 - l) * x[j]`, l ~ U(0, 1).

    The teacher labels them (soft targets only): with few samples, the student then
    learns the teacher's function between the training points, not only at them.
    """
    rng = np.random.default_rng(seed)
    n = per_input * len(x)
    pairs = rng.integers(0, len(x), (n, 2))
    lam = rng.uniform(0.0, 1.0, (n,) + (1,) * (x.ndim - 1)).astype(x.dtype)
    return lam * x[pairs[:, 0]] + (1 - lam) * x[pairs[:, 1]]


def pack_targets(y: np.ndarray | None, outs: list[np.ndarray]) -> np.ndarray:
    label = np.full((len(outs[0]), 1), -1.0, np.float32) if y is None else y[:, None]
    return np.concatenate([label, *[o.reshape(len(o), -1) for o in outs]], axis=1)
