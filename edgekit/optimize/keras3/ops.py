"""`keras.ops` calls in Keras 3 graphs <-> TensorFlow op layers in tf_keras graphs.

A Keras 3 functional graph holds `keras.ops` calls (`x + 3.0` is a
`keras.src.ops.numpy.Add` operation). The same Python written against tf_keras
gives `TFOpLambda` layers calling the TensorFlow function (`tf.math.add`), which
is what the forward direction builds: the tf_keras model then looks exactly like
one written for tf_keras, which TF-MOT and edgekit's QAT rewrites already know.
The backward direction maps those TensorFlow functions to `keras.ops` again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from edgekit import _compat
from edgekit.optimize.keras3 import configs


def _tf_unary() -> dict[str, Callable[..., Any]]:
    tf = _compat.tf()
    return {
        "Negative": tf.math.negative,
        "Sqrt": tf.math.sqrt,
        "Square": tf.math.square,
        "Exp": tf.math.exp,
        "Log": tf.math.log,
        "Absolute": tf.math.abs,
        "Abs": tf.math.abs,
        "Tanh": tf.math.tanh,
        "Relu": tf.nn.relu,
        "Relu6": tf.nn.relu6,
        "Sigmoid": tf.math.sigmoid,
        "Silu": tf.nn.silu,
        "Erf": tf.math.erf,
    }


def _tf_binary() -> dict[str, Callable[..., Any]]:
    tf = _compat.tf()
    return {
        "Add": tf.math.add,
        "Subtract": tf.math.subtract,
        "Multiply": tf.math.multiply,
        "TrueDivide": tf.math.truediv,
        "Divide": tf.math.truediv,
        "Maximum": tf.math.maximum,
        "Minimum": tf.math.minimum,
        "Matmul": tf.linalg.matmul,
        "Power": tf.math.pow,
    }


def forward(op: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Applies the TensorFlow function equal to the Keras 3 op `op` on tf_keras tensors.

    No `name=` is passed: tf_keras records it as an argument of the op layer, and
    edgekit's QAT rewrites recognise `x + c` only without one.

    Raises:
      configs.Unmappable: an op this table does not know, or unusual arguments.
    """
    tf = _compat.tf()
    cls = type(op).__name__
    if not type(op).__module__.startswith("keras.src.ops"):
        raise configs.Unmappable(
            f"it is a custom operation from {type(op).__module__}",
            "build this part from built-in Keras layers or keras.ops",
        )
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    attrs = {k: v for k, v in vars(op).items() if not k.startswith("_") and k != "name"}
    if kwargs:
        raise configs.Unmappable(f"the op {cls} is called with keyword arguments {sorted(kwargs)}")
    unary, binary = _tf_unary(), _tf_binary()
    if cls in unary and len(args) == 1 and not attrs:
        return unary[cls](args[0])
    if cls in binary and len(args) == 2 and not attrs:
        return binary[cls](args[0], args[1])
    (x, *rest) = args
    if cls in ("Mean", "Sum", "Max", "Min") and not rest and attrs.get("initial") is None:
        fn = {
            "Mean": tf.math.reduce_mean,
            "Sum": tf.math.reduce_sum,
            "Max": tf.math.reduce_max,
            "Min": tf.math.reduce_min,
        }[cls]
        return fn(x, axis=attrs.get("axis"), keepdims=bool(attrs.get("keepdims")))
    if cls == "Reshape" and not rest:
        return tf.reshape(x, list(attrs["newshape"]))
    if cls == "Transpose" and not rest:
        axes = attrs.get("axes")
        return tf.transpose(x, perm=None if axes is None else list(axes))
    if cls == "Concatenate" and not rest:
        return tf.concat(list(x), axis=attrs.get("axis", 0))
    if cls == "Squeeze" and not rest:
        return tf.squeeze(x, axis=attrs.get("axis"))
    if cls == "ExpandDims" and not rest:
        return tf.expand_dims(x, axis=attrs["axis"])
    if cls == "Clip" and not rest:
        return tf.clip_by_value(x, attrs["x_min"], attrs["x_max"])
    if cls == "Cast" and not rest:
        return tf.cast(x, configs.dtype_name(attrs["dtype"]))
    if cls == "Softmax" and not rest:
        return tf.nn.softmax(x, axis=attrs.get("axis", -1))
    if cls == "Gelu" and not rest:
        return tf.nn.gelu(x, approximate=bool(attrs.get("approximate")))
    if cls == "GetItem" and len(rest) == 1:
        return x[rest[0]]
    raise configs.Unmappable(
        f"the bridge has no tf_keras equivalent for the Keras 3 op {cls} "
        f"(arguments {len(args)}, settings {attrs})",
        "express it with built-in layers or the supported keras.ops (add, subtract, "
        "multiply, divide, maximum, minimum, matmul, power, mean, sum, max, min, "
        "reshape, transpose, concatenate, squeeze, expand_dims, clip, cast, slicing, "
        "relu, relu6, sigmoid, silu, hard_sigmoid, hard_silu, softmax, gelu, tanh, "
        "exp, log, sqrt, square, abs, erf)",
    )


# TensorFlow function symbol (as tf_keras's TFOpLambda records it) -> Keras 3 call.
_BACKWARD: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "math.add": lambda o, a: o.add(a["x"], a["y"]),
    "__operators__.add": lambda o, a: o.add(a["x"], a["y"]),
    "math.subtract": lambda o, a: o.subtract(a["x"], a["y"]),
    "__operators__.sub": lambda o, a: o.subtract(a["x"], a["y"]),
    "math.multiply": lambda o, a: o.multiply(a["x"], a["y"]),
    "math.truediv": lambda o, a: o.true_divide(a["x"], a["y"]),
    "math.divide": lambda o, a: o.true_divide(a["x"], a["y"]),
    "math.maximum": lambda o, a: o.maximum(a["x"], a["y"]),
    "math.minimum": lambda o, a: o.minimum(a["x"], a["y"]),
    "math.pow": lambda o, a: o.power(a["x"], a["y"]),
    "linalg.matmul": lambda o, a: o.matmul(a["a"], a["b"]),
    "math.negative": lambda o, a: o.negative(a["x"]),
    "math.sqrt": lambda o, a: o.sqrt(a["x"]),
    "math.square": lambda o, a: o.square(a["x"]),
    "math.exp": lambda o, a: o.exp(a["x"]),
    "math.log": lambda o, a: o.log(a["x"]),
    "math.abs": lambda o, a: o.abs(a["x"]),
    "math.tanh": lambda o, a: o.tanh(a["x"]),
    "math.erf": lambda o, a: o.erf(a["x"]),
    "math.sigmoid": lambda o, a: o.sigmoid(a["x"]),
    "nn.relu": lambda o, a: o.relu(a["features"]),
    "nn.relu6": lambda o, a: o.relu6(a["features"]),
    "nn.silu": lambda o, a: o.silu(a["features"]),
    "nn.softmax": lambda o, a: o.softmax(a["logits"], axis=a.get("axis", -1)),
    "nn.gelu": lambda o, a: o.gelu(a["features"], approximate=bool(a.get("approximate"))),
    "math.reduce_mean": lambda o, a: o.mean(
        a["input_tensor"], axis=a.get("axis"), keepdims=bool(a.get("keepdims"))
    ),
    "math.reduce_sum": lambda o, a: o.sum(
        a["input_tensor"], axis=a.get("axis"), keepdims=bool(a.get("keepdims"))
    ),
    "math.reduce_max": lambda o, a: o.max(
        a["input_tensor"], axis=a.get("axis"), keepdims=bool(a.get("keepdims"))
    ),
    "math.reduce_min": lambda o, a: o.min(
        a["input_tensor"], axis=a.get("axis"), keepdims=bool(a.get("keepdims"))
    ),
    "reshape": lambda o, a: o.reshape(a["tensor"], tuple(a["shape"])),
    "transpose": lambda o, a: o.transpose(a["a"], axes=a.get("perm")),
    "concat": lambda o, a: o.concatenate(list(a["values"]), axis=a["axis"]),
    "squeeze": lambda o, a: o.squeeze(a["input"], axis=a.get("axis")),
    "expand_dims": lambda o, a: o.expand_dims(a["input"], a["axis"]),
    "clip_by_value": lambda o, a: o.clip(a["t"], a["clip_value_min"], a["clip_value_max"]),
    "cast": lambda o, a: o.cast(a["x"], configs.dtype_name(a["dtype"])),
}


def _slices(key: Any) -> Any:
    """tf_keras records slices as {'start', 'stop', 'step'} dicts; Keras 3 takes slices."""
    if isinstance(key, dict) and set(key) == {"start", "stop", "step"}:
        return slice(key["start"], key["stop"], key["step"])
    if isinstance(key, (list, tuple)):
        return tuple(_slices(k) for k in key)
    return key


def backward(layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Applies the `keras.ops` call equal to the tf_keras op layer `layer`.

    Raises:
      configs.Unmappable: a TensorFlow function this table does not know.
    """
    keras = _compat.keras3()
    cls = type(layer).__name__
    if cls == "SlicingOpLambda":
        x, *rest = args
        key = rest[0] if rest else kwargs.get("slice_spec")
        return x[_slices(key)]
    symbol = getattr(layer, "symbol", "")
    fn = _BACKWARD.get(symbol)
    if fn is None:
        raise configs.Unmappable(
            f"the bridge has no keras.ops equivalent for the TensorFlow function tf.{symbol}",
            "express it with built-in layers",
        )
    try:
        bound = inspect.signature(layer.function).bind(*args, **kwargs)
    except TypeError as e:
        raise configs.Unmappable(
            f"the op tf.{symbol} has arguments the bridge cannot read: {e}"
        ) from None
    arguments = {k: v for k, v in bound.arguments.items() if k != "name"}
    return fn(keras.ops, arguments)
