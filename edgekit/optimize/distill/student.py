"""The student: a model as given, a file loaded, or a thinner copy of the teacher.

`resolve_student("width:0.5", teacher)` builds an untrained copy of a Functional
teacher with every conv/dense width scaled (`thinner_copy`). `split_softmax` makes
a student's logits a real tensor (a Dense/Conv ending in softmax becomes a linear
`<name>_logits` layer and a Softmax layer `<name>`, same weights), which pruning and
QAT then wrap like any other layer.

Example:
    >>> student = resolve_student("width:0.5", teacher)
    >>> split, logits_layer, source = split_softmax(student)
"""

from __future__ import annotations

from typing import Any

from edgekit import _compat, errors, io
from edgekit.optimize import layers as layers_lib

_SCALED = ("filters", "units")  # config keys that hold a layer's width


def output_layer(model: Any) -> Any:
    return model.outputs[0]._keras_history.layer


def activation_name(layer: Any) -> str | None:
    if type(layer).__name__ == "Softmax":
        return "softmax"
    act = getattr(layer, "activation", None)
    return act if isinstance(act, str) or act is None else getattr(act, "__name__", None)


def thinner_copy(teacher: Any, width: float, *, seed: int = 0) -> Any:
    """Builds an untrained copy of a Functional model with every conv/dense width scaled.

    Widths (`filters`, `units`) are multiplied by `width` and rounded as MobileNet
    does (to a multiple of 8, at least 8; layers under 16 wide to at least 1). The layers
    that set the output's width (the last conv/dense on every path to an output)
    keep theirs, so the copy predicts the same classes.

    Raises:
      UserInputError: a width outside (0, 1], a subclassed or nested model, or an
        architecture whose shapes do not allow scaling (e.g. a residual add with an
        unscaled branch, a Reshape to fixed channels).
    """
    tf_keras = _compat.tf_keras()
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise errors.UserInputError(
            "width must be a number in (0, 1]: 0.5 halves every conv and dense width "
            "(about a quarter of the parameters). " + errors.received(width=width)
        )
    layers_lib.check_functional(teacher, what="Building a thinner student")
    if any(isinstance(layer, tf_keras.Model) for layer in teacher.layers):
        raise errors.UserInputError(
            "width:F cannot scale a model that holds nested models. Pass a student model "
            "file instead (--student=student.keras). "
            + errors.received(
                nested=[m.name for m in teacher.layers if isinstance(m, tf_keras.Model)]
            )
        )
    keep = _width_setting_layers(teacher)

    def scaled(n: int) -> int:
        return max(8, int(round(n * width / 8)) * 8) if n >= 16 else max(1, round(n * width))

    def clone_fn(layer: Any) -> Any:
        cfg = layer.get_config()
        if layer.name not in keep:
            for key in _SCALED:
                if isinstance(cfg.get(key), int):
                    cfg[key] = scaled(cfg[key])
        return layer.__class__.from_config(cfg)

    tf_keras.utils.set_random_seed(seed)
    try:
        copy = tf_keras.models.clone_model(teacher, clone_function=clone_fn)
    except (ValueError, TypeError) as e:
        raise errors.UserInputError(
            f"The teacher's architecture does not allow width:{width:g}: scaling every "
            f"conv/dense width breaks a shape ({str(e).splitlines()[0][:200]}). Typical "
            "causes: a residual Add with an unscaled branch, a Reshape to a fixed number of "
            "channels. Pass a student model file instead (--student=student.keras). "
            + errors.received(width=width)
        ) from None
    if copy.count_params() >= teacher.count_params():
        raise errors.UserInputError(
            f"width:{width:g} made no layer thinner (only the output layers hold a width, or "
            "the widths are already minimal). Pass a smaller width or a student model file. "
            + errors.received(width=width, params=int(copy.count_params()))
        )
    return copy


def _width_setting_layers(model: Any) -> set[str]:
    """Names of the layers whose width reaches an output without another conv/dense."""
    keep: set[str] = set()
    seen: set[int] = set()
    stack = [t._keras_history.layer for t in model.outputs]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if any(isinstance(layer.get_config().get(k), int) for k in _SCALED):
            keep.add(layer.name)
            continue
        for node in layer._inbound_nodes:
            stack.extend(_compat.tf().nest.flatten(node.inbound_layers))
    return keep


def resolve_student(student: Any, teacher: Any, *, seed: int = 0) -> Any:
    """Returns the student model: a model as is, a path loaded, or "width:F" built."""
    if isinstance(student, str) and student.startswith("width:"):
        try:
            width = float(student.split(":", 1)[1])
        except ValueError:
            raise errors.UserInputError(
                "A built student is written width:F with F a number in (0, 1], e.g. "
                "width:0.5. " + errors.received(student=student)
            ) from None
        return thinner_copy(teacher, width, seed=seed)
    return io.load_model(student)


def split_softmax(model: Any) -> tuple[Any, str, str]:
    """Returns (model with a logits tensor, the name of the layer giving logits, source).

    A Dense/Conv ending in softmax is split into a linear copy named `<name>_logits`
    (same weights) and a Softmax layer named `<name>`, so the model's outputs are
    unchanged and the logits are a real tensor that pruning and QAT wrap normally.
    """
    tf_keras = _compat.tf_keras()
    last = output_layer(model)
    act = activation_name(last)
    if act == "softmax" and type(last).__name__ in ("Softmax", "Activation"):
        return model, last.input._keras_history.layer.name, "pre-softmax"
    if act == "softmax" and len(last._inbound_nodes) == 1:
        own = layers_lib.clone(model)
        old = own.get_layer(last.name)
        cfg = {**old.get_config(), "activation": "linear", "name": f"{last.name}_logits"}
        linear = type(old).from_config(cfg)
        logits = linear(old.input)
        linear.set_weights(old.get_weights())
        probs = tf_keras.layers.Softmax(name=last.name)(logits)
        return tf_keras.Model(own.inputs, probs, name=model.name), linear.name, "pre-softmax"
    if act in (None, "linear"):
        return model, last.name, "logits"
    return model, last.name, "log-probs"


def find_output(model: Any, name: str) -> Any:
    """The output tensor of the layer called `name`, also when pruning/QAT wrapped it."""
    for layer in model.layers:
        if layer.name == name or getattr(getattr(layer, "layer", None), "name", None) == name:
            return layer.output
    raise errors.UserInputError(
        f"Layer {name!r} is not in the model {model.name!r} (after wrapping). Layers: "
        f"{[layer.name for layer in model.layers][:40]}. " + errors.received(layer=name)
    )
