"""Rewrites op layers TF-MOT cannot quantize into equivalent built-in Keras layers.

Models written with Python operators (`x + 3.0`, `x * (1 / 6)`, `tf.nn.relu6(x)`)
hold `TFOpLambda` layers; MobileNetV3's hard-swish is built that way, and TF-MOT
refuses them. A scalar affine op is exactly a `Rescaling(scale, offset)` layer and
`tf.nn.relu`/`relu6` is a `ReLU` layer, so those are rewritten in the model config;
the rewritten model computes the same values (x * 1.0 + c is x + c in float32).

`split_affine` handles the other layers that become two TFLite ops, a multiply and
an add: a `Rescaling` with both a scale and an offset, `Normalization`, and a
BatchNormalization that no convolution absorbs. QAT quantizes a layer's output
only, so the value between the two ops had no trained range; the int8 converter
then had to calibrate the whole model, replacing every range QAT learned. Split
into a scale layer and a shift layer, each output gets its own trained range, and
the int8 file computes what the QAT model computed.

`split_separable` does the same for a separable convolution, which TFLite runs as a
DEPTHWISE_CONV_2D and a CONV_2D and TF-MOT has no config for: it becomes a
`DepthwiseConv2D` and a 1x1 `Conv2D` with the same weights (TF-MOT's own
`SeparableConvQuantize` layout transform does this, but only inside
`quantize_model`), so both get TF-MOT's 8-bit configs and the value between them a
trained range.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np

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


def _layer_entry(
    class_name: str, name: str, inbound: Any, *, trainable: bool = True, **config: Any
) -> dict[str, Any]:
    """A built-in Keras layer as a Functional model config lists it."""
    return {
        "module": "keras.layers",
        "class_name": class_name,
        "config": {"name": name, "trainable": trainable, "dtype": "float32", **config},
        "registered_name": None,
        "name": name,
        "inbound_nodes": inbound,
    }


def _rebuild(
    model: Any, config: dict[str, Any], weights: dict[str, list[np.ndarray]] | None = None
) -> Any:
    """The model `config` describes, with `model`'s weights for the layers both name.

    `weights` gives the weights of new layers (or of layers whose weights changed
    shape), by layer name; it wins over `model`'s.
    """
    rebuilt = _compat.tf_keras().Model.from_config(config)
    old = {layer.name: layer for layer in model.layers}
    weights = weights or {}
    for layer in rebuilt.layers:
        if layer.name in weights:
            layer.set_weights(weights[layer.name])
        elif layer.weights and layer.name in old:
            layer.set_weights(old[layer.name].get_weights())
    return rebuilt


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
            _layer_entry(
                class_name, name, [[[source, node_index, tensor_index, {}]]], **layer_config
            )
        )
        done.append(Rewrite(name=name, op=f"tf.{function}", replacement=class_name))
    if not done:
        return model, []
    return _rebuild(model, config), done


# A BatchNormalization right after one of these (with no activation) is folded into
# it by TF-MOT and by the converter; any other one is standalone.
_FOLDS_BN = ("Conv2D", "DepthwiseConv2D", "Dense")


def _affine_of(layer: Any, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, offset) with layer(x) == x * scale + offset over the last axis, or None."""
    if kind == "Rescaling":
        scale = np.asarray(layer.scale, np.float32)
        offset = np.asarray(layer.offset, np.float32)
        if np.all(scale == 1) or np.all(offset == 0):
            return None  # one op already
        return scale, offset
    if kind == "BatchNormalization":
        if np.ndim(layer.axis) != 0 and len(layer.axis) != 1:
            return None
        axis = layer.axis if np.ndim(layer.axis) == 0 else layer.axis[0]
        if axis not in (-1, len(layer.input_shape) - 1):
            return None
        var = layer.moving_variance.numpy()
        gamma = layer.gamma.numpy() if layer.scale else np.ones_like(var)
        beta = layer.beta.numpy() if layer.center else np.zeros_like(var)
        scale = gamma / np.sqrt(var + layer.epsilon)
        return scale, beta - layer.moving_mean.numpy() * scale
    if kind == "Normalization":
        if getattr(layer, "invert", False) or not hasattr(layer, "mean"):
            return None
        channels = layer.input_shape[-1]
        mean = np.asarray(layer.mean, np.float32)
        std = np.maximum(np.sqrt(np.asarray(layer.variance, np.float32)), 1e-7)
        if mean.size not in (1, channels) or mean.shape[:-1] != (1,) * (mean.ndim - 1):
            return None
        return (1.0 / std).reshape(-1), (-mean / std).reshape(-1)
    return None


def folded_into(layer: Any) -> Any:
    """The layer a BatchNormalization `layer` folds into (TF-MOT and the converter), or None."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1:
        return None
    sources = _compat.tf().nest.flatten(nodes[0].inbound_layers)
    if len(sources) != 1 or type(sources[0]).__name__ not in _FOLDS_BN:
        return None
    activation = getattr(sources[0], "activation", None)
    return sources[0] if getattr(activation, "__name__", None) == "linear" else None


def _as_config(value: np.ndarray) -> float | list[float]:
    flat = value.reshape(-1)
    return float(flat[0]) if flat.size == 1 else [float(v) for v in flat]


def split_affine(model: Any) -> tuple[Any, list[Rewrite]]:
    """Returns (model with two-op affine layers split into scale + shift, what was split).

    The scale layer is named `<name>_scale` and the shift layer keeps the layer's
    name. A standalone BatchNormalization becomes fixed: its moving statistics and
    gamma/beta are frozen into the two layers (QAT then trains the layers around it).
    """
    tf_keras = _compat.tf_keras()
    if isinstance(model, tf_keras.Sequential) or not getattr(model, "_is_graph_network", False):
        return model, []
    config = model.get_config()
    names = {layer.name for layer in model.layers}
    new_layers: list[dict[str, Any]] = []
    done: list[Rewrite] = []
    for entry in config["layers"]:
        kind = entry.get("class_name")
        name = entry.get("config", {}).get("name")
        nodes = entry.get("inbound_nodes") or []
        found = None
        if kind in ("Rescaling", "Normalization", "BatchNormalization") and len(nodes) == 1:
            layer = model.get_layer(name)
            if kind != "BatchNormalization" or folded_into(layer) is None:
                found = _affine_of(layer, kind)
        scale_name = f"{name}_scale"
        if found is None or scale_name in names:
            new_layers.append(entry)
            continue
        scale, offset = found

        frozen = {"trainable": False, "scale": _as_config(scale), "offset": 0.0}
        new_layers.append(_layer_entry("Rescaling", scale_name, nodes, **frozen))
        shift = {"trainable": False, "scale": 1.0, "offset": _as_config(offset)}
        new_layers.append(_layer_entry("Rescaling", name, [[[scale_name, 0, 0, {}]]], **shift))
        op = "BatchNormalization (standalone; frozen)" if kind == "BatchNormalization" else kind
        done.append(Rewrite(name=name, op=op, replacement="Rescaling (scale) + Rescaling (shift)"))
    if not done:
        return model, []
    config["layers"] = new_layers
    return _rebuild(model, config), done


# TFLite runs swish as LOGISTIC then MUL, and LOGISTIC's int8 output has a fixed step
# of 1/256. TF-MOT quantizes only a swish's output, and a sigmoid's not at all, so the
# int8 file rounded values the QAT model never rounded (and a convolution with a fused
# swish had no trained output range at all).
_SIGMOIDS = ("sigmoid",)
_SWISHES = ("swish", "silu")
_WEIGHTED = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


def _redirect(value: Any, old: str, new: str) -> Any:
    """`value` with every tensor reference [old, node, tensor(, kwargs)] pointing at `new`."""
    if isinstance(value, list):
        if (
            len(value) in (3, 4)
            and value[0] == old
            and isinstance(value[1], int)
            and isinstance(value[2], int)
        ):
            return [new, *value[1:]]
        return [_redirect(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _redirect(v, old, new) for k, v in value.items()}
    return value


def split_activations(model: Any) -> tuple[Any, list[Rewrite]]:
    """Returns (model with sigmoid and swish made explicit layers, what was rewritten).

    `Conv2D(..., activation="sigmoid")` becomes `Conv2D(...)` then
    `Activation("sigmoid")` (`<name>_sigmoid`); a swish, fused or an `Activation`
    layer, becomes `Activation("sigmoid")` and `Multiply()` of the input and the
    sigmoid (the layer's name, or `<name>_swish` when fused), which is how TFLite runs
    it. Same function; QAT then quantizes every value TFLite's int8 kernels keep.
    """
    tf_keras = _compat.tf_keras()
    if isinstance(model, tf_keras.Sequential) or not getattr(model, "_is_graph_network", False):
        return model, []
    config = model.get_config()
    names = {layer.name for layer in model.layers}
    moved: dict[str, str] = {}  # a fused layer's name -> the name of its new last layer
    added: set[str] = set()
    new_layers: list[dict[str, Any]] = []
    done: list[Rewrite] = []
    for entry in config["layers"]:
        kind = entry.get("class_name")
        layer_config = entry.get("config", {})
        name = layer_config.get("name")
        activation = layer_config.get("activation")
        nodes = entry.get("inbound_nodes") or []
        fused = kind in _WEIGHTED and activation in _SIGMOIDS + _SWISHES
        standalone = kind == "Activation" and activation in _SWISHES
        sigmoid = f"{name}_sigmoid"
        swish = f"{name}_swish" if fused else name
        if not (fused or standalone) or len(nodes) != 1 or {sigmoid, swish} & (names - {name}):
            new_layers.append(entry)
            continue
        if fused:
            layer_config["activation"] = "linear"
            new_layers.append(entry)
            source = [[name, 0, 0, {}]]
        else:
            source = nodes[0]
        new_layers.append(_layer_entry("Activation", sigmoid, [source], activation="sigmoid"))
        last = sigmoid
        if activation in _SWISHES:
            inbound = [[*source, [sigmoid, 0, 0, {}]]]
            new_layers.append(_layer_entry("Multiply", swish, inbound))
            last = swish
        added.update({sigmoid, last})
        if fused:
            moved[name] = last
        replacement = "Activation(sigmoid)" + (" * input" if activation in _SWISHES else "")
        where = f"inside {name}" if fused else "layer"
        done.append(Rewrite(name=last, op=f"{activation} {where}", replacement=replacement))
    if not done:
        return model, []
    for entry in new_layers:
        if entry["config"]["name"] in added:
            continue
        for old, new in moved.items():
            entry["inbound_nodes"] = _redirect(entry.get("inbound_nodes"), old, new)
    for old, new in moved.items():
        config["output_layers"] = _redirect(config["output_layers"], old, new)
    config["layers"] = new_layers
    return _rebuild(model, config), done


# ----------------------------------------------------------------------------
# Separable convolutions


def depthwise_name(name: str) -> str:
    """The name of the depthwise layer `split_separable` makes from separable `name`."""
    return f"{name}_depthwise"


def added_layers(rewrite: Rewrite) -> list[str]:
    """The layers a `split_separable` rewrite added besides the one keeping the name."""
    if rewrite.op.startswith("SeparableConv1D"):
        return [f"{rewrite.name}_expand", depthwise_name(rewrite.name), f"{rewrite.name}_pointwise"]
    return [depthwise_name(rewrite.name)]


# Config keys the depthwise and the pointwise layers take from a SeparableConv2D.
_DEPTHWISE_KEYS = ("kernel_size", "strides", "padding", "data_format", "dilation_rate")
_DEPTHWISE_RENAMED = ("depthwise_initializer", "depthwise_regularizer", "depthwise_constraint")
_POINTWISE_RENAMED = {
    "pointwise_initializer": "kernel_initializer",
    "pointwise_regularizer": "kernel_regularizer",
    "pointwise_constraint": "kernel_constraint",
}
_POINTWISE_KEYS = (
    "filters",
    "activation",
    "use_bias",
    "bias_initializer",
    "bias_regularizer",
    "bias_constraint",
    "activity_regularizer",
    "data_format",
)


def _pair(value: Any) -> list[Any]:
    """A 1-D layer's size argument as the 2-D one over (1, length)."""
    return [1, value[0] if isinstance(value, (list, tuple)) else value]


def split_separable(model: Any) -> tuple[Any, list[Rewrite]]:
    """Returns (model with each separable convolution split in two, what was split).

    A `SeparableConv2D` named `n` becomes `DepthwiseConv2D` `n_depthwise` (kernel
    size, strides, padding, dilation, depth multiplier; no bias, no activation) and a
    1x1 `Conv2D` named `n` (filters, bias, activation), holding the layer's own
    depthwise and pointwise kernels: the same function, computed as TFLite computes
    it. A `SeparableConv1D` (TF-MOT has no 1-D convolution config) becomes the same
    pair over a (1, length) image between two `Reshape` layers: `n_expand`, then
    `n_depthwise`, `n_pointwise`, and `n` back to (length, filters). Layers called more
    than once, channels-first ones, causal or unknown-length 1-D ones and those whose
    new names are taken are left as they are.
    """
    tf_keras = _compat.tf_keras()
    if isinstance(model, tf_keras.Sequential) or not getattr(model, "_is_graph_network", False):
        return model, []
    config = model.get_config()
    names = {layer.name for layer in model.layers}
    new_layers: list[dict[str, Any]] = []
    weights: dict[str, list[np.ndarray]] = {}
    done: list[Rewrite] = []
    for entry in config["layers"]:
        kind = entry.get("class_name")
        layer_config = dict(entry.get("config", {}))
        name = str(layer_config.get("name"))
        nodes = entry.get("inbound_nodes") or []
        depthwise = depthwise_name(name)
        one_d = kind == "SeparableConv1D"
        added = {depthwise} | ({f"{name}_expand", f"{name}_pointwise"} if one_d else set())
        if (
            kind not in ("SeparableConv1D", "SeparableConv2D")
            or len(nodes) != 1
            or layer_config.get("data_format", "channels_last") != "channels_last"
            or added & names
        ):
            new_layers.append(entry)
            continue
        layer = model.get_layer(name)
        layer_weights = layer.get_weights()
        if one_d:
            length = layer.input_shape[1]
            if layer_config.get("padding") == "causal" or length is None:
                new_layers.append(entry)
                continue
            for key in ("kernel_size", "strides", "dilation_rate"):
                layer_config[key] = _pair(layer_config[key])
            layer_weights = [layer_weights[0][None], layer_weights[1][None], *layer_weights[2:]]
            expand = f"{name}_expand"
            new_layers.append(
                _layer_entry("Reshape", expand, nodes, target_shape=[1, *layer.input_shape[1:]])
            )
            nodes = [[[expand, 0, 0, {}]]]
        pointwise = f"{name}_pointwise" if one_d else name
        common = {"trainable": layer_config.get("trainable", True)}
        new_layers.append(
            _layer_entry(
                "DepthwiseConv2D",
                depthwise,
                nodes,
                **common,
                **{k: layer_config[k] for k in _DEPTHWISE_KEYS if k in layer_config},
                **{k: layer_config[k] for k in _DEPTHWISE_RENAMED if k in layer_config},
                depth_multiplier=layer_config.get("depth_multiplier", 1),
                activation="linear",
                use_bias=False,
            )
        )
        new_layers.append(
            _layer_entry(
                "Conv2D",
                pointwise,
                [[[depthwise, 0, 0, {}]]],
                **common,
                **{k: layer_config[k] for k in _POINTWISE_KEYS if k in layer_config},
                **{
                    new: layer_config[k]
                    for k, new in _POINTWISE_RENAMED.items()
                    if k in layer_config
                },
                kernel_size=[1, 1],
                strides=[1, 1],
                padding="valid",
            )
        )
        if one_d:
            new_layers.append(
                _layer_entry(
                    "Reshape",
                    name,
                    [[[pointwise, 0, 0, {}]]],
                    target_shape=list(layer.output_shape[1:]),
                )
            )
        weights[depthwise] = layer_weights[:1]
        weights[pointwise] = layer_weights[1:]
        done.append(
            Rewrite(
                name=name,
                op=f"{kind} (split into depthwise + pointwise)",
                replacement=f"DepthwiseConv2D ({depthwise}) + Conv2D 1x1 ({pointwise})"
                + (" between Reshape layers" if one_d else ""),
            )
        )
    if not done:
        return model, []
    config["layers"] = new_layers
    return _rebuild(model, config, weights), done
