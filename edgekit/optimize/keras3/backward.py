"""tf_keras -> Keras 3: the user's own Keras back, plain layers only.

Two ways. With `like` (the user's Keras 3 model that went in), the result is a
clone of `like` (same classes, names, ops and nesting) holding the tf_keras
model's weights, matched by layer name: pruning and clustering change weight
values only, so this gives the user exactly their model with the new weights.
Without `like`, the tf_keras graph is translated node by node, each `TFOpLambda`
becoming the `keras.ops` call of the same TensorFlow function.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgekit import _compat, errors
from edgekit.optimize.keras3 import configs, forward, ops

KERAS3 = configs.Side("keras3", None, configs.RENAMES_TO_KERAS3)


def _refuse(layer: Any, e: configs.Unmappable) -> errors.UserInputError:
    fix = e.fix or "replace it with built-in layers"
    return errors.UserInputError(
        f"The tf_keras layer {forward.describe(layer)} cannot be translated back to Keras 3: "
        f"{e.reason}. To fix it: {fix}. "
        + errors.received(layer=layer.name, layer_class=type(layer).__name__)
    )


def iter_layers(model: Any, *, keras: Any) -> list[Any]:
    """Every layer of `model` that is not a model, descending into nested models."""
    out: list[Any] = []
    seen: set[int] = set()

    def walk(m: Any) -> None:
        for layer in m.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, keras.Model):
                walk(layer)
            else:
                out.append(layer)

    walk(model)
    return out


@contextlib.contextmanager
def unfused_batch_norms(model: Any) -> Iterator[None]:
    """Runs `model`'s tf_keras batch norms unfused (as Keras 3 runs them) inside the block.

    tf_keras leaves `fused` out of a layer's config, so every clone TF-MOT or edgekit
    makes of the bridge's unfused batch norms (wrapping, stripping) runs the fused
    kernel again, which orders the float32 arithmetic differently: on a trained net's
    logits of order 20 the same weights then differ by about 2e-5. The Keras 3 result
    always runs unfused; so the way back compares it with the same weights computed
    the same way, and leaves the tf_keras model as it was after.
    """
    norms = [
        layer
        for layer in iter_layers(model, keras=_compat.tf_keras())
        if type(layer).__name__ == "BatchNormalization" and getattr(layer, "fused", False)
    ]
    for layer in norms:
        layer.fused = False
    try:
        yield
    finally:
        for layer in norms:
            layer.fused = True


def from_like(model: Any, like: Any) -> Any:
    """A clone of the Keras 3 model `like` with the weights of the tf_keras `model`."""
    keras, tf_keras = _compat.keras3(), _compat.tf_keras()
    if forward.model_kind(like) == "subclassed":
        raise errors.UserInputError(
            "like= must be the Keras 3 Functional or Sequential model that was translated. "
            + errors.received(like=type(like).__name__)
        )
    clone = keras.models.clone_model(like)
    sources: dict[str, list[Any]] = {}
    for layer in iter_layers(model, keras=tf_keras):
        sources.setdefault(layer.name, []).append(layer)
    for layer in iter_layers(clone, keras=keras):
        targets = [v for v in layer.weights if "seed_generator" not in v.path]
        if not targets:
            continue
        found = sources.get(layer.name, [])
        if len(found) != 1:
            raise errors.UserInputError(
                f"The Keras 3 layer {layer.name!r} of like= has {len(targets)} weights, and "
                f"the tf_keras model has {len(found)} layers of that name (1 expected). Pass "
                "the Keras 3 model this tf_keras model was translated from, or like=None. "
                + errors.received(layer=layer.name)
            )
        src = found[0]
        forward.copy_arrays(
            src,
            layer,
            [forward.short_name(w) for w in src.weights],
            [np.asarray(w) for w in src.get_weights()],
            refuse=_refuse,
        )
    return clone


def plain(value: Any) -> Any:
    """The config with TensorFlow's tracking wrappers (ListWrapper, ...) as lists and dicts."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListWrapper":
        items = [plain(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


class Backward:
    """One translation tf_keras -> Keras 3; shared layers stay shared."""

    def __init__(self) -> None:
        self.keras = _compat.keras3()
        self.tf_keras = _compat.tf_keras()
        self.side = dataclasses.replace(KERAS3, module=self.keras)
        self.layers: dict[int, Any] = {}
        self.models: dict[int, Any] = {}
        self.pairs: list[tuple[Any, Any]] = []

    def layer(self, layer: Any) -> Any:
        key = id(layer)
        if key not in self.layers:
            if isinstance(layer, self.tf_keras.Model):
                self.layers[key] = self.model(layer)
            else:
                try:
                    self.layers[key] = self._new_layer(layer)
                except configs.Unmappable as e:
                    raise _refuse(layer, e) from None
                except (TypeError, ValueError, AttributeError, KeyError) as e:
                    raise _refuse(
                        layer, configs.Unmappable(f"Keras 3 refused its config: {e}")
                    ) from None
        return self.layers[key]

    def _new_layer(self, layer: Any) -> Any:
        cls_name = type(layer).__name__
        module = type(layer).__module__
        if cls_name in ("TFOpLambda", "SlicingOpLambda"):
            return None  # applied as a keras.ops call in _call
        if not module.startswith("tf_keras.src.layers"):
            raise configs.Unmappable(
                f"it is not a built-in tf_keras layer (module {module}); TF-MOT wrappers are "
                "removed with strip_pruning / strip_clustering first",
                "strip the model (edgekit.optimize returns stripped models)",
            )
        if cls_name == "Lambda":
            return self.keras.layers.Lambda(
                layer.function, arguments=dict(layer.arguments or {}), name=layer.name
            )
        config = plain(layer.get_config())
        if cls_name == "BatchNormalization" and isinstance(config.get("axis"), list):
            if len(config["axis"]) != 1:
                raise configs.Unmappable("Keras 3 batch normalization takes one axis")
            config["axis"] = config["axis"][0]  # tf_keras stores [3] once built
        for key in ("activation", "recurrent_activation"):
            if key in config:
                act = configs.activation_name(config[key])
                if act not in configs.TF_KERAS_TO_KERAS3_ACTIVATIONS:
                    raise configs.Unmappable(
                        f"its activation {act!r} has no identical Keras 3 activation"
                    )
                config[key] = configs.TF_KERAS_TO_KERAS3_ACTIVATIONS[act]
        cls = getattr(self.keras.layers, cls_name, None)
        if cls is None:
            raise configs.Unmappable(f"Keras 3 has no {cls_name} layer")
        config = configs.translate_layer_config(cls_name, config, cls, self.side)
        new = cls.from_config(config)
        self.pairs.append((layer, new))
        return new

    def model(self, model: Any) -> Any:
        key = id(model)
        if key in self.models:
            return self.models[key]
        tf_keras, keras = self.tf_keras, self.keras
        if isinstance(model, tf_keras.Sequential):
            layers = [self.layer(layer) for layer in model.layers]
            if all(layer is not None for layer in layers):
                (inp,) = model.inputs
                built = keras.Sequential([self._input(inp)] + layers, name=model.name)
                self.models[key] = built
                return built
        if not getattr(model, "_is_graph_network", False):
            raise errors.UserInputError(
                f"The tf_keras model {model.name!r} is subclassed; only Functional and "
                "Sequential models translate back to Keras 3. " + errors.received(model=model.name)
            )
        built = self._graph(model)
        self.models[key] = built
        return built

    def _input(self, tensor: Any) -> Any:
        return self.keras.Input(
            batch_shape=tuple(tensor.shape),
            dtype=tensor.dtype.name,
            name=tensor._keras_history.layer.name,
        )

    def _graph(self, model: Any) -> Any:
        tf = _compat.tf()

        class _Repeat:  # tf_keras's map_arguments pops one use per consumer
            def __init__(self, value: Any) -> None:
                self.value = value

            def pop(self) -> Any:
                return self.value

        tensors: dict[str, _Repeat] = {}
        for t in tf.nest.flatten(model._nested_inputs):
            tensors[str(id(t))] = _Repeat(self._input(t))
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                if any(t_id not in tensors for t_id in node.flat_input_ids):
                    continue
                args, kwargs = node.map_arguments(tensors)
                out = self._call(node.layer, args, kwargs)
                for x_id, y in zip(node.flat_output_ids, tf.nest.flatten(out), strict=True):
                    tensors[x_id] = _Repeat(y)

        def get(t: Any) -> Any:
            return tensors[str(id(t))].value

        inputs = tf.nest.map_structure(get, model._nested_inputs)
        outputs = tf.nest.map_structure(get, model._nested_outputs)
        return self.keras.Model(inputs, outputs, name=model.name)

    def _call(self, layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda"):
            try:
                return ops.backward(layer, args, kwargs)
            except configs.Unmappable as e:
                raise _refuse(layer, e) from None
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return self.layer(layer)(*args, **kwargs)

    def copy_weights(self) -> None:
        for src, dst in self.pairs:
            forward.copy_arrays(
                src,
                dst,
                [forward.short_name(w) for w in src.weights],
                [np.asarray(w) for w in src.get_weights()],
                refuse=_refuse,
            )
