"""Keras 3 -> tf_keras: rebuild the graph node by node, then copy the weights.

The Keras 3 graph is replayed in its own topological order (as Keras 3 runs it):
each layer becomes the tf_keras layer of the same class and translated config,
each `keras.ops` call the TensorFlow op that tf_keras records as a `TFOpLambda`,
each nested model a nested tf_keras model, and a shared layer stays one shared
layer. Activations that tf_keras lacks or defines differently (Keras 3's
`hard_sigmoid` is relu6(x + 3) / 6, tf_keras's is 0.2x + 0.5) are built the way
tf_keras's own MobileNetV3 builds them, from `ReLU(6)`, an add, a divide and a
`Multiply` layer. Batch norms run unfused, as Keras 3 runs them. Weights are copied last, checked by name and shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from edgekit import _compat, errors
from edgekit.optimize.keras3 import configs, ops

TF_KERAS = configs.Side("tf_keras", None, configs.RENAMES_TO_TF_KERAS)


@dataclasses.dataclass
class Built:
    """The tf_keras side of one Keras 3 layer: the layer and what follows it."""

    layer: Any
    after: Callable[[Any], Any] | None = None


def model_kind(model: Any) -> str:
    """'functional', 'sequential' or 'subclassed' for a Keras 3 model."""
    keras = _compat.keras3()
    functional = keras.src.models.functional.Functional
    if isinstance(model, keras.Sequential):
        return "sequential" if type(model).call is keras.Sequential.call else "subclassed"
    if isinstance(model, functional) and type(model).call is functional.call:
        return "functional"
    return "subclassed"


def describe(op: Any) -> str:
    return f"{op.name!r} (class {type(op).__name__} from {type(op).__module__})"


class Forward:
    """One translation: remembers what it built so shared layers stay shared."""

    def __init__(self, *, allow_lambda: bool = False) -> None:
        self.keras = _compat.keras3()
        self.tf_keras = _compat.tf_keras()
        self.tf = _compat.tf()
        self.side = dataclasses.replace(TF_KERAS, module=self.tf_keras)
        self.allow_lambda = allow_lambda
        self.layers: dict[int, Built] = {}
        self.models: dict[int, Any] = {}
        self.pairs: list[tuple[Any, Any]] = []
        self.expanded: list[str] = []
        self.num_ops = 0

    # -- errors ------------------------------------------------------------

    def refuse(self, op: Any, e: configs.Unmappable) -> errors.UserInputError:
        fix = e.fix or "replace it with built-in Keras layers"
        return errors.UserInputError(
            f"The Keras 3 {'layer' if isinstance(op, self.keras.layers.Layer) else 'op'} "
            f"{describe(op)} cannot be translated to tf_keras for training-time techniques: "
            f"{e.reason}. To fix it: {fix}. (Post-training conversion with edgekit-convert "
            "takes any Keras 3 model.) "
            + errors.received(layer=op.name, layer_class=type(op).__name__)
        )

    # -- activations -------------------------------------------------------

    def expansion(self, act: str, base: str) -> Callable[[Any], Any]:
        """The tf_keras layers and ops equal to a Keras 3 activation tf_keras lacks."""
        tfk, tf = self.tf_keras, self.tf
        self.expanded.append(f"{base}: {act}")
        if act == "relu6":
            relu6 = tfk.layers.ReLU(6.0, name=base)
            return lambda x: relu6(x)
        if act == "leaky_relu":
            leaky = tfk.layers.LeakyReLU(alpha=0.2, name=base)  # Keras 3's default slope
            return lambda x: leaky(x)
        if act == "hard_sigmoid":
            relu = tfk.layers.ReLU(6.0, name=f"{base}_relu6")

            def hard_sigmoid(x: Any) -> Any:
                shifted = tf.math.add(x, 3.0)  # no name=: see ops.forward
                # relu6(x + 3) / 6, the ops Keras 3 runs (a divide, not * 1/6).
                return tf.math.truediv(relu(shifted), 6.0)

            return hard_sigmoid
        if act in ("hard_silu", "hard_swish"):
            gate = self.expansion("hard_sigmoid", f"{base}_hard_sigmoid")
            self.expanded.pop()
            multiply = tfk.layers.Multiply(name=base)
            return lambda x: multiply([x, gate(x)])
        raise configs.Unmappable(f"the activation {act!r} has no tf_keras equivalent")

    def activation(self, value: Any, *, recurrent: bool = False) -> tuple[str, str | None]:
        """(tf_keras activation name, Keras 3 activation to expand after the layer)."""
        act = configs.activation_name(value)
        if act in configs.SAME_ACTIVATIONS:
            return configs.SAME_ACTIVATIONS[act], None
        if act in configs.EXPANDED_ACTIVATIONS and not recurrent:
            return "linear", act
        raise configs.Unmappable(
            f"its activation {act!r} has no tf_keras equivalent",
            f"use one of {sorted(set(configs.SAME_ACTIVATIONS) | set(configs.EXPANDED_ACTIVATIONS))}",
        )

    # -- layers --------------------------------------------------------------

    def layer(self, layer: Any) -> Built:
        """The tf_keras side of a Keras 3 layer (built once, shared afterwards)."""
        key = id(layer)
        if key in self.layers:
            return self.layers[key]
        if isinstance(layer, self.keras.Model):
            built = Built(self.model(layer))
        else:
            try:
                built = self._new_layer(layer)
            except configs.Unmappable as e:
                raise self.refuse(layer, e) from None
            except (TypeError, ValueError, AttributeError, KeyError) as e:
                raise self.refuse(
                    layer, configs.Unmappable(f"tf_keras refused its config: {e}")
                ) from None
        self.layers[key] = built
        return built

    def _new_layer(self, layer: Any) -> Built:
        cls_name = type(layer).__name__
        if not type(layer).__module__.startswith("keras.src.layers"):
            raise configs.Unmappable(
                "it is a custom layer class, and the bridge maps built-in Keras layers only",
                "build the model from built-in Keras 3 layers (or tf_keras layers from the start)",
            )
        config = layer.get_config()
        configs.dtype_name(config.get("dtype"))  # refuses quantized policies
        if cls_name == "Lambda":
            if not self.allow_lambda:
                raise configs.Unmappable(
                    "a Lambda layer runs arbitrary Python code",
                    "if you trust the model, pass safe_mode=False "
                    "(--allow_unsafe_deserialization), or replace the Lambda with layers",
                )
            lam = self.tf_keras.layers.Lambda(
                layer.function, arguments=dict(layer.arguments or {}), name=layer.name
            )
            return Built(lam)
        if cls_name == "Activation":
            act, expand = self.activation(config["activation"])
            if expand:
                return Built(None, self.expansion(expand, layer.name))
            config["activation"] = act
        cls = getattr(self.tf_keras.layers, cls_name, None)
        if cls is None:
            raise configs.Unmappable(f"tf_keras has no {cls_name} layer")
        after = None
        if "activation" in config and cls_name != "Activation":
            config["activation"], expand = self.activation(config["activation"])
            if expand:
                after = self.expansion(expand, f"{layer.name}_{expand}")
        if "recurrent_activation" in config:
            config["recurrent_activation"], _ = self.activation(
                config["recurrent_activation"], recurrent=True
            )
        config = configs.translate_layer_config(cls_name, config, cls, self.side)
        if cls_name == "BatchNormalization":
            # Keras 3 runs tf.nn.batch_normalization; tf_keras's fused kernel orders
            # the arithmetic differently, and a small variance amplifies the difference.
            config["fused"] = False
        new = cls.from_config(config)
        self.pairs.append((layer, new))
        return Built(new, after)

    # -- graphs --------------------------------------------------------------

    def model(self, model: Any) -> Any:
        """The tf_keras model equal to a Keras 3 Functional or Sequential model."""
        key = id(model)
        if key in self.models:
            return self.models[key]
        kind = model_kind(model)
        if kind == "subclassed":
            raise errors.UserInputError(
                f"The Keras 3 model {model.name!r} is a subclassed model ({type(model).__name__}"
                " with its own call()); its graph is Python code the bridge cannot read. Build "
                "it as a Functional model (keras.Input(...) then layers) or a Sequential "
                "model. " + errors.received(model=model.name, model_class=type(model).__name__)
            )
        if kind == "sequential" and not model.built:
            raise errors.UserInputError(
                f"The Keras 3 Sequential model {model.name!r} has no input shape yet. Start it "
                "with keras.Input(shape=...) or call model.build(input_shape) first. "
                + errors.received(model=model.name)
            )
        built = None
        if kind == "sequential":
            parts = [self.layer(layer) for layer in model.layers]
            if all(p.after is None and p.layer is not None for p in parts):
                (inp,) = model.inputs
                built = self.tf_keras.Sequential(
                    [self._input(inp)] + [p.layer for p in parts], name=model.name
                )
            graph = model._functional
        else:
            graph = model
        if built is None:
            built = self._graph(graph, name=model.name)
        self.models[key] = built
        return built

    def _input(self, tensor: Any) -> Any:
        if getattr(tensor, "sparse", False) or getattr(tensor, "ragged", False):
            raise errors.UserInputError(
                "The bridge takes dense model inputs only; this input is sparse or ragged. "
                + errors.received(input=str(tensor))
            )
        return self.tf_keras.Input(
            batch_shape=tuple(tensor.shape),
            dtype=tensor.dtype,
            name=tensor._keras_history.operation.name,
        )

    def _graph(self, model: Any, *, name: str) -> Any:
        tree = self.keras.tree
        tensors: dict[int, Any] = {}
        for tensor in tree.flatten(model._inputs_struct):
            tensors[id(tensor)] = self._input(tensor)
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                if any(id(x) not in tensors for x in node.input_tensors):
                    continue
                args, kwargs = node.arguments.fill_in(tensors)
                outputs = self._call(node.operation, args, kwargs)
                for x, y in zip(node.outputs, tree.flatten(outputs), strict=True):
                    tensors[id(x)] = y
        inputs = tree.map_structure(lambda t: tensors[id(t)], model._inputs_struct)
        outputs = tree.map_structure(lambda t: tensors[id(t)], model._outputs_struct)
        return self.tf_keras.Model(inputs, outputs, name=name)

    def _call(self, op: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if isinstance(op, self.keras.layers.Layer):
            built = self.layer(op)
            try:
                out = built.layer(*args, **kwargs) if built.layer is not None else args[0]
                return built.after(out) if built.after is not None else out
            except (TypeError, ValueError, AttributeError, KeyError) as e:
                raise self.refuse(
                    op, configs.Unmappable(f"tf_keras could not call it: {e}")
                ) from None
        self.num_ops += 1
        try:
            return ops.forward(op, args, kwargs)
        except configs.Unmappable as e:
            raise self.refuse(op, e) from None
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            raise self.refuse(
                op, configs.Unmappable(f"TensorFlow refused its arguments: {e}")
            ) from None

    # -- weights -------------------------------------------------------------

    def copy_weights(self) -> int:
        """Copies every Keras 3 layer's weights to its tf_keras twin; returns the count."""
        count = 0
        for src, dst in self.pairs:
            values = [v for v in src.weights if "seed_generator" not in v.path]
            names = [v.name for v in values]
            arrays = [np.asarray(v.numpy()) for v in values]
            count += len(arrays)
            copy_arrays(src, dst, names, arrays, refuse=self.refuse)
        return count


def short_name(weight: Any) -> str:
    """'kernel' for tf_keras's 'dense/kernel:0' and Keras 3's 'kernel'."""
    return str(weight.name).split("/")[-1].split(":")[0]


def copy_arrays(
    src: Any,
    dst: Any,
    names: list[str],
    arrays: list[np.ndarray],
    *,
    refuse: Callable[[Any, configs.Unmappable], Exception],
) -> None:
    """Sets `dst`'s weights from arrays named `names`, matched by name then order."""
    targets = [w for w in dst.weights if "seed_generator" not in str(getattr(w, "path", ""))]
    if len(targets) != len(arrays):
        raise refuse(
            src,
            configs.Unmappable(
                f"it holds {len(arrays)} weights ({names}) and its twin "
                f"{len(targets)} ({[short_name(w) for w in targets]})"
            ),
        )
    by_name = dict(zip(names, arrays, strict=True))
    ordered = []
    for i, w in enumerate(targets):
        value = by_name.get(short_name(w), arrays[i]) if len(by_name) == len(names) else arrays[i]
        if tuple(value.shape) != tuple(w.shape):
            raise refuse(
                src,
                configs.Unmappable(
                    f"its weight {short_name(w)} has shape {value.shape} and its twin's "
                    f"{tuple(w.shape)}"
                ),
            )
        ordered.append(value)
    for w, value in zip(targets, ordered, strict=True):
        w.assign(value)
    if hasattr(dst, "finalize_state") and type(dst).__name__ == "Normalization":
        dst.finalize_state()  # its mean and variance are derived from the copied weights
