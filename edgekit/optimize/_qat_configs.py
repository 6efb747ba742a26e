"""QuantizeConfigs for the layers TF-MOT refuses, and QAT models that load without a scope.

This module imports TF-MOT at its top level, unlike the rest of edgekit. That is
on purpose and safe: nothing imports it until QAT runs, or until Keras loads a
saved QAT model. A QAT model's `.keras` file names this module as the home of its
`QuantizeWrapperV2` and `QuantizeLayer` classes, so `tf_keras.models.load_model`
imports it by itself; importing it registers every TF-MOT quantization object
(what `tfmot.quantization.keras.quantize_scope()` would provide) with tf_keras.
That is what lets plain `tf_keras.models.load_model(path)` read the file, with no
custom scope, in a fresh process (edgekit must be installed).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras
from tensorflow_model_optimization.python.core.quantization.keras import (
    quant_ops,
    quantize,
    quantize_layer,
    quantize_registry,
    quantize_scheme,
    quantize_wrapper,
    quantizers,
)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
    cluster_preserve_quantize_registry as _cluster_registry,
)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry as _prune_registry,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs,
    default_8bit_quantize_registry,
)


class DepthwiseWeightsQuantizer(quantizers.LastValueQuantizer):
    """Per-channel 8-bit quantizer for DepthwiseConv2D kernels, as TFLite quantizes them.

    TF-MOT quantizes a depthwise kernel (kh, kw, channels, multiplier) per slice of
    its last axis, the multiplier, which is 1 in most models: one scale for the
    whole kernel. TFLite folds the following batch norm in and quantizes per output
    channel, so the int8 file disagreed with the QAT model wherever channel scales
    differ (cosine 0.96 on MobileNetV3Small). This quantizer uses one range per
    output channel (channels x multiplier), which is what TFLite stores.
    """

    def __init__(
        self,
        num_bits: int = 8,
        per_axis: bool = True,
        symmetric: bool = True,
        narrow_range: bool = True,
    ) -> None:
        super().__init__(
            num_bits=num_bits, per_axis=per_axis, symmetric=symmetric, narrow_range=narrow_range
        )

    def build(self, tensor_shape: Any, name: str, layer: Any) -> dict[str, Any]:
        channels = int(tensor_shape[-2]) * int(tensor_shape[-1])
        return {
            "min_var": layer.add_weight(
                name + "_min",
                shape=(channels,),
                initializer=tf_keras.initializers.Constant(-6.0),
                trainable=False,
            ),
            "max_var": layer.add_weight(
                name + "_max",
                shape=(channels,),
                initializer=tf_keras.initializers.Constant(6.0),
                trainable=False,
            ),
        }

    def __call__(self, inputs: Any, training: Any, weights: dict[str, Any], **kwargs: Any) -> Any:
        kh, kw, channels, multiplier = inputs.shape
        flat = tf.reshape(inputs, (kh, kw, 1, channels * multiplier))
        quantized = quant_ops.LastValueQuantize(
            flat,
            weights["min_var"],
            weights["max_var"],
            is_training=training,
            num_bits=self.num_bits,
            per_channel=True,
            symmetric=self.symmetric,
            narrow_range=self.narrow_range,
        )
        return tf.reshape(quantized, (kh, kw, channels, multiplier))


class DepthwiseQuantizeConfig(default_8bit_quantize_registry.Default8BitQuantizeConfig):
    """TF-MOT's DepthwiseConv2D config with the per-channel kernel quantizer above."""

    def __init__(
        self, weight_attrs: list[str], activation_attrs: list[str], quantize_output: bool
    ) -> None:
        super().__init__(weight_attrs, activation_attrs, quantize_output)
        self.weight_quantizer = DepthwiseWeightsQuantizer()


class _Registry(quantize_registry.QuantizeRegistry):
    """A scheme's registry, with per-channel depthwise kernels.

    Given through the registry (not as an annotation), so TF-MOT's layout
    transforms still fold the batch norm that follows the convolution.
    """

    def __init__(self, base: Any) -> None:
        self._base = base

    def supports(self, layer: Any) -> bool:
        return self._base.supports(layer)

    def get_quantize_config(self, layer: Any) -> Any:
        if type(layer) is tf_keras.layers.DepthwiseConv2D:
            return DepthwiseQuantizeConfig(["depthwise_kernel"], ["activation"], False)
        return self._base.get_quantize_config(layer)


class Scheme(quantize_scheme.QuantizeScheme):
    """Wraps a TF-MOT scheme (default or collaborative) with the registry above.

    TF-MOT's preserve schemes leave depthwise kernels out of sparsity and cluster
    preservation, so replacing their depthwise config loses nothing.
    """

    def __init__(self, base: Any) -> None:
        self._base = base

    def get_layout_transformer(self) -> Any:
        return self._base.get_layout_transformer()

    def get_quantize_registry(self) -> Any:
        return _Registry(self._base.get_quantize_registry())


class QATModel(tf_keras.Model):
    """A Functional model that holds QAT layers, saved under this module.

    Keras resolves the top-level class of a `.keras` file by importing the module
    the file names (layers nested inside are looked up only in registries), so this
    class is what makes loading import this module and register TF-MOT's objects
    before any layer is read. It adds nothing else to `tf_keras.Model`.
    """


class QuantizeWrapperV2(quantize_wrapper.QuantizeWrapperV2):
    """TF-MOT's `QuantizeWrapperV2`, saved under this module so loading finds TF-MOT's objects."""

    # A wrapper built around an already-built layer (as after training) lists the
    # layer's weights twice among its own, and one built while loading lists them
    # once, so Keras' count check refused every trained QAT model. Save and load one
    # canonical list: each variable once, leaving out those the inner layer saves.
    def _canonical_variables(self) -> list[Any]:
        inner = {id(v) for v in self.layer._trainable_weights + self.layer._non_trainable_weights}
        seen: set[int] = set()
        out = []
        for v in self._trainable_weights + self._non_trainable_weights:
            if id(v) in seen or id(v) in inner:
                continue
            seen.add(id(v))
            out.append(v)
        return out

    def save_own_variables(self, store: Any) -> None:
        for i, v in enumerate(self._canonical_variables()):
            store[f"{i}"] = v.numpy()

    def load_own_variables(self, store: Any) -> None:
        variables = self._canonical_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"QAT layer {self.name!r} expected {len(variables)} variables in the file, "
                f"found {len(store.keys())}; the file was not written by this edgekit version."
            )
        for i, v in enumerate(variables):
            v.assign(store[f"{i}"])


class QuantizeLayer(quantize_layer.QuantizeLayer):
    """TF-MOT's `QuantizeLayer`, saved under this module for the same reason."""

    def build_from_config(self, config: dict[str, Any]) -> None:
        # TF-MOT's `build` never sets `built`, so loading a `.keras` file built the
        # layer twice (once from the file's build config, once when the Functional
        # model is wired) and then refused the saved variables (5 expected, 3 saved).
        super().build_from_config(config)
        self.built = True


class SigmoidOutputQuantizeConfig(default_8bit_quantize_configs.Default8BitOutputQuantizeConfig):
    """Quantizes a sigmoid's output to TFLite's fixed int8 range: [0, 1) in steps of 1/256.

    TFLite's int8 LOGISTIC always outputs scale 1/256, zero point -128; TF-MOT leaves
    a sigmoid's output float, so QAT never saw that rounding.
    """

    def get_output_quantizers(self, layer: Any) -> list[Any]:
        return [quantizers.FixedQuantizer(8, 0.0, 255.0 / 256.0, narrow_range=False)]


def _quantization_objects() -> dict[str, Any]:
    """Everything `quantize_scope()` provides, plus the collaborative-optimization quantizers."""
    objects: dict[str, Any] = {}
    for part in quantize.quantize_scope().custom_objects:
        objects.update(part)
    for module in (_prune_registry, _cluster_registry, quantizers):
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, quantizers.Quantizer):
                objects.setdefault(name, value)
    objects["Default8BitOutputQuantizeConfig"] = (
        default_8bit_quantize_configs.Default8BitOutputQuantizeConfig
    )
    objects["NoOpQuantizeConfig"] = default_8bit_quantize_configs.NoOpQuantizeConfig
    objects["QuantizeWrapperV2"] = QuantizeWrapperV2
    objects["QuantizeLayer"] = QuantizeLayer
    objects["QATModel"] = QATModel
    objects["DepthwiseWeightsQuantizer"] = DepthwiseWeightsQuantizer
    objects["DepthwiseQuantizeConfig"] = DepthwiseQuantizeConfig
    objects["SigmoidOutputQuantizeConfig"] = SigmoidOutputQuantizeConfig
    return objects


OBJECTS = _quantization_objects()
# Registered process-wide so that TF-MOT's own `from_config` (which resolves its
# nested quantizers and configs through tf_keras' global registry) finds them.
tf_keras.utils.get_custom_objects().update(OBJECTS)


def output_config() -> Any:
    """A config that quantizes a layer's output only (8-bit, moving-average range)."""
    return default_8bit_quantize_configs.Default8BitOutputQuantizeConfig()


def sigmoid_output_config() -> Any:
    """A config that quantizes a sigmoid's output as TFLite's int8 kernel does."""
    return SigmoidOutputQuantizeConfig()


def no_op_config() -> Any:
    """A config that quantizes nothing (the next layer quantizes the value)."""
    return default_8bit_quantize_configs.NoOpQuantizeConfig()


def adopt(model: Any) -> Any:
    """Returns `model` as a `QATModel` (same layers), with TF-MOT layers re-homed here.

    The subclasses add nothing but the module a saved `.keras` file records (and
    the `QuantizeLayer` loading fix). The layers are shared with `model`, not copied.
    """
    for layer in _all_layers(model):
        if type(layer) is quantize_wrapper.QuantizeWrapperV2:
            layer.__class__ = QuantizeWrapperV2
        elif type(layer) is quantize_layer.QuantizeLayer:
            layer.__class__ = QuantizeLayer
    if isinstance(model, QATModel):
        return model
    return QATModel(inputs=model.inputs, outputs=model.outputs, name=model.name)


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model):
            out.extend(_all_layers(layer))
        out.append(layer)
    return out
