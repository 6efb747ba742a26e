"""Rewrites op layers TF-MOT cannot quantize into equivalent built-in Keras layers.

Models written with Python operators (`x + 3.0`, `x * (1 / 6)`, `tf.nn.relu6(x)`)
hold `TFOpLambda` layers; MobileNetV3's hard-swish is built that way, and TF-MOT
refuses them. A scalar affine op is exactly a `Rescaling(scale, offset)` layer and
`tf.nn.relu`/`relu6` is a `ReLU` layer, so those are rewritten in the model config;
the rewritten model computes the same values (x * 1.0 + c is x + c in float32).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from edgekit import _compat


@dataclasses.dataclass(frozen=True)
class Rewrite:
    """One op layer replaced by a built-in layer."""

    name: str
    op: str
    replacement: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def _scalar(value: Any) -> float | None:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


def _replacement(function: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """Returns (class name, config) of the built-in layer equal to the op, or None."""
    kwargs = {k: v for k, v in kwargs.items() if not (k == "name" and v is None)}
    if function in ("nn.relu", "nn.relu6") and not kwargs:
        return "ReLU", {"max_value": 6.0 if function == "nn.relu6" else None}
    if set(kwargs) != {"y"}:
        return None
    c = _scalar(kwargs["y"])
    if c is None:
        return None
    if function in ("__operators__.add", "math.add"):
        return "Rescaling", {"scale": 1.0, "offset": c}
    if function in ("math.subtract", "__operators__.sub"):
        return "Rescaling", {"scale": 1.0, "offset": -c}
    if function == "math.multiply":
        return "Rescaling", {"scale": c, "offset": 0.0}
    if function in ("math.truediv", "math.divide") and c != 0:
        return "Rescaling", {"scale": 1.0 / c, "offset": 0.0}
    return None


def rewrite_ops(model: Any) -> tuple[Any, list[Rewrite]]:
    """Returns (a model with scalar op layers rewritten, what was rewritten).

    Only top-level `TFOpLambda` layers called once, on one tensor and a Python
    number, are rewritten; anything else is left for the caller to keep float. The
    returned model is new (weights copied) when something was rewritten, else
    `model` itself.
    """
    tf_keras = _compat.tf_keras()
    if isinstance(model, tf_keras.Sequential) or not getattr(model, "_is_graph_network", False):
        return model, []
    config = model.get_config()
    done: list[Rewrite] = []
    for entry in config["layers"]:
        if entry.get("class_name") != "TFOpLambda":
            continue
        nodes = entry.get("inbound_nodes") or []
        # A TFOpLambda node is stored flat: [inbound_layer, node_index, tensor_index, kwargs].
        if len(nodes) != 1 or not (isinstance(nodes[0], list) and len(nodes[0]) == 4):
            continue
        source, node_index, tensor_index, kwargs = nodes[0]
        if not isinstance(source, str) or not isinstance(kwargs, dict):
            continue
        function = entry["config"].get("function", "")
        found = _replacement(function, kwargs)
        if found is None:
            continue
        class_name, layer_config = found
        name = entry["config"]["name"]
        entry.clear()
        entry.update(
            {
                "module": "keras.layers",
                "class_name": class_name,
                "config": {"name": name, "trainable": True, "dtype": "float32", **layer_config},
                "registered_name": None,
                "name": name,
                "inbound_nodes": [[[source, node_index, tensor_index, {}]]],
            }
        )
        done.append(Rewrite(name=name, op=f"tf.{function}", replacement=class_name))
    if not done:
        return model, []
    rebuilt = tf_keras.Model.from_config(config)
    old = {layer.name: layer for layer in model.layers}
    for layer in rebuilt.layers:
        if layer.weights and layer.name in old:
            layer.set_weights(old[layer.name].get_weights())
    return rebuilt, done
