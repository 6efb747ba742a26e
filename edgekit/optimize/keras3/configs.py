"""Layer configs between Keras 3 and tf_keras: dtype policies, objects, activations.

A layer's config is translated key by key. Nested objects (initializers,
regularizers, constraints) are rebuilt from the other Keras's class of the same
name, with their own configs checked the same way. A key the target class does
not take is dropped only when its value is the neutral default (so dropping it
changes nothing); any other value is refused, because silently losing it would
make a different model.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

# Keys that exist on one side only and whose value here means "off": dropping them
# leaves the layer computing the same thing.
NEUTRAL: dict[str, Any] = {
    "quantization_config": None,
    "lora_rank": None,
    "lora_alpha": None,
    "seed": None,
    "zero_output_for_mask": False,
    "rms_scaling": False,
    "pad_to_aspect_ratio": False,
    "fill_mode": "constant",
    "fill_value": 0.0,
    "antialias": False,
    "data_format": "channels_last",
    "input_axes": None,
    "output_axes": None,
    "optional": False,
    "synchronized": False,
    "renorm": False,
    "renorm_clipping": None,
    "renorm_momentum": 0.99,
    "autocast": True,
    "ragged": False,
    "sparse": False,
    "groups": 1,
    "use_gate": False,
    "sliding_window": None,
    "input_length": None,
    "time_major": False,
    "dynamic": False,
}

# Keys that choose how a result is computed, never what: dropped whatever the value.
HOW_NOT_WHAT = {"implementation", "fused"}

# Keys a class inherits but never uses (tf_keras's separable convolutions keep the
# base convolution's kernel_* settings; their kernels are depthwise_* and pointwise_*).
UNUSED = {
    cls: {"kernel_initializer", "kernel_regularizer", "kernel_constraint"}
    for cls in ("SeparableConv1D", "SeparableConv2D")
}

# Keras 3 name -> tf_keras name of the same argument.
RENAMES_TO_TF_KERAS = {"LeakyReLU": {"negative_slope": "alpha"}}
RENAMES_TO_KERAS3 = {
    cls: {v: k for k, v in names.items()} for cls, names in RENAMES_TO_TF_KERAS.items()
}

# Activations that compute the same function in both Kerases (Keras 3 name -> tf_keras).
SAME_ACTIVATIONS = {
    "linear": "linear",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "elu": "elu",
    "selu": "selu",
    "softplus": "softplus",
    "softsign": "softsign",
    "exponential": "exponential",
    "gelu": "gelu",
    "mish": "mish",
    "swish": "swish",
    "silu": "swish",
}
# Keras 3 activations that tf_keras lacks or computes differently (its hard_sigmoid
# is 0.2x + 0.5; Keras 3's is relu6(x + 3) / 6): built from layers and ops instead.
EXPANDED_ACTIVATIONS = ("relu6", "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu")
TF_KERAS_TO_KERAS3_ACTIVATIONS = {v: k for k, v in SAME_ACTIVATIONS.items() if k != "silu"}
TF_KERAS_TO_KERAS3_ACTIVATIONS["swish"] = "silu"


class Unmappable(Exception):  # noqa: N818 - internal signal, turned into UserInputError
    """A layer, op or setting with no faithful equivalent on the other side."""

    def __init__(self, reason: str, fix: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


@dataclasses.dataclass(frozen=True)
class Side:
    """The Keras a config is translated into: its module and naming conventions."""

    name: str  # "tf_keras" or "keras3"
    module: Any
    renames: dict[str, dict[str, str]]


def dtype_name(value: Any) -> str | None:
    """The policy name ("float32", "mixed_float16") of a serialized dtype or policy."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        cls = value.get("class_name", "")
        cfg = value.get("config") or {}
        if "Quantized" in cls or cfg.get("quantization_mode"):
            raise Unmappable(
                f"its dtype policy {cls} is a Keras 3 quantized policy",
                "give edgekit the float model: quantize after edgekit, or let edgekit "
                "quantize (QAT or edgekit-convert int8)",
            )
        return cfg.get("name")
    name = getattr(value, "name", None)
    return str(name) if name is not None else str(value)


# What the base Layer of either Keras takes through **kwargs.
_BASE_LAYER_KWARGS = {"name", "trainable", "dtype", "activity_regularizer", "autocast"}


def _accepted(cls: Any) -> set[str]:
    """The arguments `cls` takes: its own and those its bases name (they get **kwargs)."""
    names = set(_BASE_LAYER_KWARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for name, param in inspect.signature(init).parameters.items():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and name != "self":
                names.add(name)
    return names


def translate_object(kind: str, value: Any, side: Side) -> Any:
    """An initializer / regularizer / constraint config for `side`, or None."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, dict) or "class_name" not in value:
        raise Unmappable(f"its {kind} {value!r} is not a built-in one", "use a built-in " + kind)
    module = {
        "initializer": "initializers",
        "regularizer": "regularizers",
        "constraint": "constraints",
    }[kind]
    cls_name = value["class_name"]
    registered = value.get("registered_name")
    src_module = str(value.get("module") or "")
    if registered not in (None, cls_name) or (src_module and "keras" not in src_module):
        raise Unmappable(
            f"its {kind} {registered or cls_name} is a custom class",
            f"use a built-in {kind}, or drop it before handing the model to edgekit",
        )
    cls = getattr(getattr(side.module, module), cls_name, None)
    if cls is None:
        raise Unmappable(f"{side.name} has no {kind} {cls_name}", f"use another {kind}")
    config = _translate_keys(cls_name, dict(value.get("config") or {}), cls, side, what=kind)
    return {"class_name": cls_name, "config": config}


def _translate_keys(
    cls_name: str, config: dict[str, Any], cls: Any, side: Side, *, what: str
) -> dict[str, Any]:
    accepted = _accepted(cls)
    renames = side.renames.get(cls_name, {})
    out: dict[str, Any] = {}
    for key, value in config.items():
        key = renames.get(key, key)
        if key in accepted:
            out[key] = value
        elif (key in NEUTRAL and value == NEUTRAL[key]) or key in HOW_NOT_WHAT:
            continue
        elif key in UNUSED.get(cls_name, ()):
            continue
        else:
            raise Unmappable(
                f"its {what} setting {key}={value!r} has no equivalent in {side.name}",
                f"leave {key} at its default",
            )
    return out


def translate_layer_config(
    cls_name: str, config: dict[str, Any], cls: Any, side: Side
) -> dict[str, Any]:
    """The config of the `side` layer class equal to a layer of the other Keras."""
    config = dict(config)
    if isinstance(config.get("layer"), dict) or isinstance(config.get("forward_layer"), dict):
        raise Unmappable(
            "wrapper layers (a layer inside a layer's config) are not translated",
            "apply the inner layer directly (for example Dense on the last axis instead "
            "of TimeDistributed(Dense)), or train this model with Keras 3 itself",
        )
    if cls_name.startswith("Random"):
        raise Unmappable(
            "random augmentation layers behave differently in training and inference in "
            "the two Kerases",
            "remove augmentation layers from the model you optimize; augment the data "
            "instead (they do nothing at inference)",
        )
    if "dtype" in config:
        config["dtype"] = dtype_name(config["dtype"])
    for key, value in list(config.items()):
        for kind in ("initializer", "regularizer", "constraint"):
            if key.endswith(kind):
                config[key] = translate_object(kind, value, side)
    # Keras 2 writes these on the first layer of a Sequential; the input layer holds them.
    for key in ("batch_input_shape", "input_shape", "batch_size"):
        if side.name == "keras3":
            config.pop(key, None)
    return _translate_keys(cls_name, config, cls, side, what="layer")


def activation_name(value: Any) -> str:
    """The name of a serialized built-in activation; refuses custom functions."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") == "function":
        cfg = value.get("config")
        if isinstance(cfg, str) and str(value.get("module", "")).startswith("keras"):
            return cfg
    if value is None:
        return "linear"
    raise Unmappable(
        f"its activation {value!r} is a custom function",
        "use a built-in activation name, or an activation layer",
    )
