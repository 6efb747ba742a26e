"""Share of zeros per weight tensor, as the pipeline's evaluate stage reports it.

Read from the converted `.tflite` (what ships) when it has weight ops, else from the
Keras model; a Keras 3 model's layer names are given back as the user wrote them.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from edgekit.lite import inspect as lite_inspect
from edgekit.optimize import keras3
from edgekit.optimize import reports as optimize_report


def keras_sparsity(model: Any) -> list[dict[str, Any]]:
    """Share of zeros per layer of the Keras model, when the .tflite has no weight ops."""
    layers = optimize_report.measure_layers(model, ())
    return [
        {"layer": s.name, "type": s.type, "sparsity": s.sparsity, "num_weights": s.num_weights}
        for s in layers
    ]


_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}


def _user_layer_name(parts: list[str], num_weights: int, model: Any) -> str:
    """The layer a weight tensor named `scope/layer/...` belongs to, as the user named it.

    Keras 3's export traces the model in a graph where every name scope was used once
    already, so TensorFlow suffixes them all (`net` -> `net_1`, `conv2d` -> `conv2d_1`,
    the user's own `conv2d_1` -> `conv2d_1_2`): undo that for a Keras 3 model.
    """
    (head, _, n), label = parts[0].rpartition("_"), parts[1]
    base, _, suffix = label.rpartition("_")
    if not (keras3.is_keras3(model) and head == model.name and n.isdigit() and suffix.isdigit()):
        return label
    sizes = {x.name: int(np.prod(x.weights[0].shape)) if x.weights else 0 for x in model.layers}
    return base if sizes.get(base) in (0, num_weights) else label


def tflite_weight_sparsity(path: pathlib.Path, model: Any = None) -> list[dict[str, Any]]:
    """Share of exact zeros in each conv/dense weight tensor of the converted file.

    Read from the .tflite itself, so it is what ships, whatever the Keras model's
    wrappers (QAT, pruning) looked like; `model` (the Keras model converted) gives a
    Keras 3 model's layer names back.
    """
    model_report = lite_inspect.inspect_model(path).to_dict()
    tensors = {(t["subgraph"], t["index"]): t for t in model_report["tensors"]}
    rows = []
    for op in model_report["ops"]:
        slot = _WEIGHT_OPS.get(op["type"])
        if slot is None or op["subgraph"] != 0 or len(op["inputs"]) <= slot:
            continue
        t = tensors.get((0, op["inputs"][slot]))
        if not t or not t["constant"] or t.get("zero_fraction") is None:
            continue
        name = t["name"].split(";")[0]
        parts = [p for p in name.split("/") if p]
        num_weights = int(np.prod(t["shape"])) if t["shape"] else 0
        layer = _user_layer_name(parts, num_weights, model) if len(parts) > 2 else name
        rows.append(
            {
                "layer": layer,
                "type": op["type"],
                "sparsity": float(t["zero_fraction"]),
                "num_weights": num_weights,
            }
        )
    return rows
