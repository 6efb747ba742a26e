"""Knowledge distillation: train a small student on a frozen teacher's soft predictions.

`distill` computes the teacher's logits (and chosen intermediate features) once per
dataset, in inference mode, and trains a copy of the student on them with a loss
that mixes Hinton's soft targets (KL divergence of the temperature-softened
distributions, scaled by T^2) with the hard-label loss, plus an optional feature
term through a learned projection. The teacher never trains: its outputs are
precomputed, so it is frozen by construction and costs one forward pass.

What edgekit adds around a plain distillation loop:
- logits, not probabilities: when a model ends in softmax (a Softmax layer or a
  Dense/Conv with softmax activation) the pre-softmax tensor is used (the student's
  final layer is split into a linear layer `<name>_logits` and a Softmax layer
  `<name>`, same weights); other outputs fall back to log-probabilities;
- composition: the student can be pruning-wrapped (distillation while pruning) and
  then QAT-wrapped (distillation during QAT) in one call, so distill + prune + QAT
  ends in a model ready for int8 conversion;
- the teacher's outputs are cached per (data, teacher weights) in memory or on
  disk; a cache file is used only if the data and teacher it records match;
- `--student=width:0.5`: `thinner_copy` scales every conv/dense width of a
  Functional teacher, keeping the output width.

Example:
    >>> student, report = distill(teacher, "width:0.5", DistillConfig(temperature=4),
    ...                           (x, y), fit=FitConfig(epochs=30, learning_rate=2e-3))
    >>> report.distilled_accuracy
"""

from __future__ import annotations

import dataclasses
import hashlib
import io as _io
import json
import math
import pathlib
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekit import _compat, errors, io
from edgekit import config as config_lib
from edgekit.optimize import fit as fit_lib
from edgekit.optimize import layers as layers_lib
from edgekit.optimize import prune as prune_lib
from edgekit.optimize import qat as qat_lib
from edgekit.optimize import reports, technique
from edgekit.optimize import strategy as strategy_lib

_WHAT = "Distillation"
_MEMORY_CACHE: OrderedDict[str, list[np.ndarray]] = OrderedDict()
_MEMORY_ENTRIES = 8
_SCALED = ("filters", "units")  # config keys that hold a layer's width


@dataclasses.dataclass(frozen=True)
class DistillReport(reports.Report):
    """What distillation did, and the accuracies it measured.

    Attributes:
      technique: "distill".
      config: the `DistillConfig` as a dict.
      teacher_params / student_params: parameter counts; param_ratio = student / teacher.
      teacher_logits / student_logits: how logits were read ("pre-softmax", "logits"
        or "log-probs").
      num_samples / num_labelled: training samples (mixed inputs included), and how
        many had labels (0: the soft-target term alone was used).
      teacher_cache: "computed", "memory", "disk", "off", or "stale-recomputed" (a
        cache file did not match its data or teacher and was not used).
      accuracy_on: "val_data", "data", or None (no labels to measure on).
      teacher_accuracy, distilled_accuracy: top-1 accuracy of the teacher and the
        distilled student (the Keras model returned).
      student_from_labels_accuracy: the same student trained on labels alone with
        the same budget (when `baseline=True`), else None.
      float_accuracy: with QAT, the distilled float student's accuracy before QAT.
      prune / qat: the pruning and QAT reports of the composed steps, or None.
      fit: the report of the distillation run; qat_fit of the QAT run.
    """

    technique: str
    config: dict[str, Any]
    teacher_params: int
    student_params: int
    param_ratio: float
    teacher_logits: str
    student_logits: str
    num_samples: int
    num_labelled: int
    teacher_cache: str
    accuracy_on: str | None
    teacher_accuracy: float | None
    distilled_accuracy: float | None
    student_from_labels_accuracy: float | None
    float_accuracy: float | None
    prune: Any
    qat: Any
    fit: fit_lib.FitReport
    qat_fit: fit_lib.FitReport | None = None


# ----------------------------------------------------------------------------
# Students


def _output_layer(model: Any) -> Any:
    return model.outputs[0]._keras_history.layer


def _activation_name(layer: Any) -> str | None:
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


def _split_softmax(model: Any) -> tuple[Any, str, str]:
    """Returns (model with a logits tensor, the name of the layer giving logits, source).

    A Dense/Conv ending in softmax is split into a linear copy named `<name>_logits`
    (same weights) and a Softmax layer named `<name>`, so the model's outputs are
    unchanged and the logits are a real tensor that pruning and QAT wrap normally.
    """
    tf_keras = _compat.tf_keras()
    last = _output_layer(model)
    act = _activation_name(last)
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


def _find_output(model: Any, name: str) -> Any:
    """The output tensor of the layer called `name`, also when pruning/QAT wrapped it."""
    for layer in model.layers:
        if layer.name == name or getattr(getattr(layer, "layer", None), "name", None) == name:
            return layer.output
    raise errors.UserInputError(
        f"Layer {name!r} is not in the model {model.name!r} (after wrapping). Layers: "
        f"{[layer.name for layer in model.layers][:40]}. " + errors.received(layer=name)
    )


# ----------------------------------------------------------------------------
# The teacher's targets, cached


def _teacher_view(teacher: Any, names: list[str]) -> tuple[Any, str]:
    """A Functional model teacher input -> [logits, features...] and how logits are read."""
    tf_keras = _compat.tf_keras()
    last = _output_layer(teacher)
    act = _activation_name(last)
    source = "logits" if act in (None, "linear") else "log-probs"
    logits = teacher.outputs[0]
    if act == "softmax" and type(last).__name__ in ("Softmax", "Activation"):
        logits, source = last.input, "pre-softmax"
    elif act == "softmax" and len(last._inbound_nodes) == 1:
        cfg = {**last.get_config(), "activation": "linear", "name": f"{last.name}_logits_view"}
        linear = type(last).from_config(cfg)
        logits = linear(last.input)
        linear.set_weights(last.get_weights())  # a frozen copy of the teacher's head
        source = "pre-softmax"
    feats = [teacher.get_layer(n).output for n in names]
    return tf_keras.Model(teacher.inputs, [logits, *feats]), source


def _sha256(*arrays: np.ndarray, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fingerprint_model(model: Any) -> str:
    """sha256 of a model's architecture and every weight."""
    arch = json.dumps(model.get_config(), sort_keys=True, default=str)
    return _sha256(*model.get_weights(), extra=arch)


def _read_cache(
    path: pathlib.Path, data_hash: str, teacher_hash: str, view_key: str, num_samples: int
) -> tuple[list[np.ndarray], str] | None:
    """The cached outputs if the file records this data and teacher, else None."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as f:
            ok = (
                str(f["data_sha256"]) == data_hash
                and str(f["teacher_sha256"]) == teacher_hash
                and str(f["features"]) == view_key
                and int(f["num_samples"]) == num_samples
            )
            if not ok:
                return None
            outs = [np.array(f[f"out{i}"]) for i in range(int(f["num_outputs"]))]
            return outs, str(f["source"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # unreadable: recomputed and replaced


def teacher_targets(
    teacher: Any,
    x: np.ndarray,
    *,
    feature_names: Sequence[str] = (),
    use_cache: bool = True,
    cache_dir: str | None = None,
) -> tuple[list[np.ndarray], str, str]:
    """The teacher's logits and features on `x`, computed once per (data, teacher).

    The cache key hashes the data and the teacher's architecture and weights; a disk
    cache file also records both hashes and is used only when they match (a file left
    by other data or another teacher is recomputed and replaced).

    Returns:
      ([logits, feature arrays...], how logits were read, cache status).
    """
    data_hash = _sha256(x)
    teacher_hash = fingerprint_model(teacher)
    view_key = json.dumps(list(feature_names))
    key = hashlib.sha256(f"{data_hash}/{teacher_hash}/{view_key}".encode()).hexdigest()
    view, source = _teacher_view(teacher, list(feature_names))
    status = "off"
    path = pathlib.Path(cache_dir) / f"teacher-{key[:24]}.npz" if cache_dir else None
    if use_cache and path is None and key in _MEMORY_CACHE:
        return [a.copy() for a in _MEMORY_CACHE[key]], source, "memory"
    if use_cache and path is not None and path.exists():
        cached = _read_cache(path, data_hash, teacher_hash, view_key, len(x))
        if cached is not None:
            return cached[0], cached[1], "disk"
        status = "stale-recomputed"
        warnings.warn(
            f"Teacher cache {str(path)!r} was made from other data or another teacher (or "
            "is unreadable); recomputing it.",
            stacklevel=2,
        )
    outs = view.predict(x, batch_size=256, verbose=0)
    outs = [np.asarray(o, np.float32) for o in (outs if isinstance(outs, list) else [outs])]
    if source == "log-probs":
        outs[0] = np.log(np.clip(outs[0], 1e-12, 1.0)).astype(np.float32)
    if not use_cache:
        return outs, source, "off"
    if path is None:
        _MEMORY_CACHE[key] = [a.copy() for a in outs]
        while len(_MEMORY_CACHE) > _MEMORY_ENTRIES:
            _MEMORY_CACHE.popitem(last=False)
        return outs, source, "computed"
    buf = _io.BytesIO()
    np.savez(
        buf,
        data_sha256=data_hash,
        teacher_sha256=teacher_hash,
        features=view_key,
        source=source,
        num_samples=len(x),
        num_outputs=len(outs),
        **{f"out{i}": o for i, o in enumerate(outs)},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    io.atomic_write_bytes(path, buf.getvalue(), overwrite=True)
    return outs, source, "computed" if status == "off" else status


# ----------------------------------------------------------------------------
# The loss


def _loss(
    num_classes: int,
    feat_sizes: list[int],
    *,
    temperature: float,
    w_soft: float,
    w_hard: float,
    w_feat: float,
) -> Any:
    """Per-sample distillation loss on packed targets [label, teacher logits, features]."""
    tf = _compat.tf()
    c, t2 = num_classes, float(temperature) ** 2

    @tf.autograph.experimental.do_not_convert  # plain Python branches on the weights
    def distillation(y_true: Any, y_pred: Any) -> Any:
        y_true = tf.cast(y_true, y_pred.dtype)
        s = y_pred[:, :c]
        total = tf.zeros_like(s[:, 0])
        if w_soft:
            log_t = tf.nn.log_softmax(y_true[:, 1 : 1 + c] / temperature)
            log_s = tf.nn.log_softmax(s / temperature)
            kl = tf.reduce_sum(tf.exp(log_t) * (log_t - log_s), axis=-1)
            total += w_soft * t2 * kl
        if w_hard:
            label = y_true[:, 0]
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(tf.maximum(label, 0.0), tf.int32), logits=s
            )
            total += w_hard * tf.where(label >= 0, ce, tf.zeros_like(ce))
        if w_feat and feat_sizes:
            start, terms = c, []
            for size in feat_sizes:
                diff = y_pred[:, start : start + size] - y_true[:, 1 + start : 1 + start + size]
                terms.append(tf.reduce_mean(tf.square(diff), axis=-1))
                start += size
            total += w_feat * tf.add_n(terms) / len(terms)
        return total

    return distillation


def _metrics(num_classes: int, has_labels: bool) -> list[Any]:
    tf = _compat.tf()
    c = num_classes

    def agreement(y_true: Any, y_pred: Any) -> Any:
        t = tf.argmax(y_true[:, 1 : 1 + c], -1)
        return tf.cast(tf.equal(t, tf.argmax(y_pred[:, :c], -1)), tf.float32)

    def accuracy(y_true: Any, y_pred: Any) -> Any:
        pred = tf.cast(tf.argmax(y_pred[:, :c], -1), tf.float32)
        return tf.cast(tf.equal(pred, tf.cast(y_true[:, 0], tf.float32)), tf.float32)

    return [agreement, accuracy] if has_labels else [agreement]


def _cosine_callback(base: float, total_steps: int) -> Any:
    tf_keras = _compat.tf_keras()

    class CosineDecay(tf_keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            frac = min(self.step, total_steps) / max(1, total_steps)
            self.model.optimizer.learning_rate.assign(0.5 * base * (1 + math.cos(math.pi * frac)))
            self.step += 1

    return CosineDecay()


# ----------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class _Plan:
    """Everything a training phase needs, checked before any training starts."""

    config: config_lib.DistillConfig
    logits_name: str
    student_source: str
    pairs: tuple[tuple[str, str], ...]
    teacher_shapes: list[tuple[int, ...]]
    num_classes: int
    has_labels: bool


def _train_model(student: Any, plan: _Plan) -> Any:
    """Student input -> [logits, projected features] flattened and concatenated."""
    tf = _compat.tf()
    tf_keras = _compat.tf_keras()
    logits = _find_output(student, plan.logits_name)
    if plan.student_source == "log-probs":
        logits = tf_keras.layers.Lambda(
            lambda p: tf.math.log(tf.clip_by_value(p, 1e-7, 1.0)), name="distill_log_probs"
        )(logits)
    outs = [logits]
    for i, ((_, s_name), t_shape) in enumerate(zip(plan.pairs, plan.teacher_shapes, strict=True)):
        f = _find_output(student, s_name)
        if tuple(f.shape[1:]) != t_shape:
            kind = tf_keras.layers.Conv2D if len(t_shape) == 3 else tf_keras.layers.Dense
            args = (t_shape[-1], 1) if len(t_shape) == 3 else (t_shape[-1],)
            f = kind(*args, name=f"distill_projection_{i}")(f)
        outs.append(tf_keras.layers.Flatten(name=f"distill_flatten_{i}")(f))
    packed = tf_keras.layers.Concatenate(name="distill_packed")(outs) if len(outs) > 1 else outs[0]
    return tf_keras.Model(student.inputs, packed, name="distiller")


class Distillation:
    """Distillation as a technique (`edgekit.optimize.technique`) around another one.

    `build()` builds the inner technique's student (a plain copy, a pruning-wrapped
    or a QAT copy) and puts it under the distiller's outputs (logits and projected
    features, packed); `callbacks()` adds the cosine learning-rate decay to the inner
    ones; `finish()` hands the trained student to the inner technique's `finish`.
    `loss()` and `metrics()` are what the driver compiles with; `fit_report` is the
    fine-tuning report once `finish` ran (the inner report is what `finish` returns).
    """

    def __init__(
        self,
        inner: technique.Technique,
        plan: _Plan,
        *,
        alpha: float,
        fit: config_lib.FitConfig,
        num_samples: int,
    ) -> None:
        self.inner = inner
        self.plan = plan
        self.alpha = alpha
        self.learning_rate = fit.learning_rate
        self.total_steps = fit_lib.plan_steps(num_samples, fit)[1]
        self.student: Any = None
        self.fit_report: fit_lib.FitReport | None = None

    def build(self) -> Any:
        self.student = self.inner.build()
        return _train_model(self.student, self.plan)

    def callbacks(self) -> list[Any]:
        out = list(self.inner.callbacks())
        if self.plan.config.decay_learning_rate:
            out.append(_cosine_callback(self.learning_rate, self.total_steps))
        return out

    def finish(self, trained: Any, fit_report: fit_lib.FitReport | None) -> tuple[Any, Any]:
        del trained  # the distiller; the student inside it is what the inner technique takes
        self.fit_report = fit_report
        return self.inner.finish(self.student, fit_report)

    def loss(self) -> Any:
        plan, cfg = self.plan, self.plan.config
        has_feats = bool(plan.pairs)
        return _loss(
            plan.num_classes,
            [math.prod(s) for s in plan.teacher_shapes] if has_feats else [],
            temperature=cfg.temperature,
            w_soft=self.alpha if plan.has_labels else 1.0,
            w_hard=(1.0 - self.alpha) if plan.has_labels else 0.0,
            w_feat=cfg.feature_weight if has_feats else 0.0,
        )

    def metrics(self) -> list[Any]:
        return _metrics(self.plan.num_classes, self.plan.has_labels)


def _phase(
    inner: technique.Technique,
    plan: _Plan,
    packed: tuple[np.ndarray, np.ndarray],
    val_packed: Any,
    *,
    alpha: float,
    fit: config_lib.FitConfig,
) -> tuple[Any, Any, fit_lib.FitReport | None]:
    """Trains `inner`'s student on packed targets; returns (model, inner report, fit report)."""
    distillation = Distillation(inner, plan, alpha=alpha, fit=fit, num_samples=len(packed[0]))
    model, report = technique.run(
        distillation,
        packed,
        fit=fit,
        val_data=val_packed,
        loss=distillation.loss(),
        metrics=distillation.metrics(),
    )
    return model, report, distillation.fit_report


# ----------------------------------------------------------------------------
# Inputs


def _read(data: Any, *, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, labels or None) from arrays, (x, y), (x, None), a Dataset or a path."""
    if isinstance(data, np.ndarray):
        x, y = data, None
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    elif hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    else:
        from edgekit import data as data_lib

        loaded = data_lib.load(data)
        x, y = loaded.x, loaded.y
    if y is None:
        x, _ = fit_lib.as_arrays((x, np.zeros(len(np.asarray(x)))), what=what)
        return x, None
    return fit_lib.as_arrays((x, y), what=what)


def _class_ids(y: np.ndarray, num_classes: int, *, what: str) -> np.ndarray:
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


def _check_models(teacher: Any, student: Any, config: config_lib.DistillConfig) -> None:
    for model, role in ((teacher, "teacher"), (student, "student")):
        if isinstance(model.output_shape, list) or isinstance(model.input_shape, list):
            raise errors.UserInputError(
                f"{_WHAT} supports models with one input and one output; the {role} has "
                "several. " + errors.received(**{role: model.name})
            )
    t_out, s_out = list(teacher.output_shape[1:]), list(student.output_shape[1:])
    if len(t_out) != 1 or not t_out[0] or t_out[0] < 2:
        raise errors.UserInputError(
            f"{_WHAT} supports classifiers: one output vector of class scores (2 or more "
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


def recalibrate_batch_norm(model: Any, x: np.ndarray, *, max_samples: int = 2048) -> int:
    """Sets every BatchNormalization's moving statistics to their exact values on `x`.

    A student trained from scratch for a few hundred steps keeps moving averages
    that are still mostly their initial guess (momentum 0.99), so inference-mode
    accuracy can sit at chance while training accuracy is high. Layer by layer, in
    order, each one's input is computed in inference mode (earlier layers already
    fixed) and its mean and variance are stored.

    Returns:
      How many layers were recalibrated.
    """
    tf_keras = _compat.tf_keras()
    idx = np.linspace(0, len(x) - 1, num=min(len(x), max_samples)).astype(int)
    sample = x[idx]
    done = 0
    for layer in model.layers:
        if not isinstance(layer, tf_keras.layers.BatchNormalization):
            continue
        if len(layer._inbound_nodes) != 1:
            continue
        upto = tf_keras.Model(model.inputs, layer.input)
        total = total_sq = None
        count = 0
        for start in range(0, len(sample), 256):
            # Eager calls: one graph per layer would retrace predict for each one.
            z = np.asarray(upto(sample[start : start + 256], training=False), np.float64)
            axes = tuple(i for i in range(z.ndim) if i not in [a % z.ndim for a in layer.axis])
            part, part_sq = z.sum(axis=axes), np.square(z).sum(axis=axes)
            total = part if total is None else total + part
            total_sq = part_sq if total_sq is None else total_sq + part_sq
            count += z.size // part.size
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(total_sq / count - mean**2, 0).astype(np.float32))
        done += 1
    return done


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    # Eager batches: predict() would trace a new graph for every model measured.
    probs = np.concatenate(
        [np.asarray(model(x[i : i + 256], training=False)) for i in range(0, len(x), 256)]
    )
    return round(float(np.mean(np.argmax(probs, -1) == y)), 6)


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


def _pack(y: np.ndarray | None, outs: list[np.ndarray]) -> np.ndarray:
    label = np.full((len(outs[0]), 1), -1.0, np.float32) if y is None else y[:, None]
    return np.concatenate([label, *[o.reshape(len(o), -1) for o in outs]], axis=1)


# ----------------------------------------------------------------------------
# The entry point


def distill(
    teacher: Any,
    student: Any,
    config: config_lib.DistillConfig | None = None,
    data: Any = None,
    *,
    fit: config_lib.FitConfig = config_lib.FitConfig(),
    val_data: Any = None,
    prune: config_lib.PruneConfig | None = None,
    qat: config_lib.QATConfig | None = None,
    qat_fit: config_lib.FitConfig | None = None,
    baseline: bool = False,
) -> tuple[Any, DistillReport]:
    """Trains a copy of `student` on the frozen `teacher`'s soft targets.

    Args:
      teacher: a tf_keras model (or path); never trained or changed.
      student: a Functional/Sequential tf_keras model (or path), or "width:F" for a
        thinner untrained copy of the teacher (`thinner_copy`); never changed.
      config: temperature, alpha, feature layers, cache; None for the defaults.
      data: training inputs: (x, y) arrays, x alone or (x, None) (unlabelled: the
        soft-target term alone), an `edgekit.data.Dataset` or a path. A label of -1
        marks one unlabelled sample among labelled ones.
      fit: epochs, batch size, learning rate, strategy, seed. A student trained from
        scratch needs a larger learning rate than the 1e-4 fine-tuning default.
      val_data: labelled data the accuracies are measured on (else `data`'s labels).
      prune: also prune the student while it learns (TF-MOT wrappers, stripped after).
      qat: then run quantization-aware training, still on the teacher's targets; the
        result converts to int8 (`preserve` becomes "sparsity" after pruning).
      qat_fit: the QAT run's budget; None uses `fit` with a quarter of its epochs and
        a twentieth of its learning rate (QAT fine-tunes the distilled float student;
        on the example, 1/10 lost 0.56 points in int8, 1/20 and 1/40 gained).
      baseline: also train the same student on the labels alone, same budget and
        steps, and report its accuracy as `student_from_labels_accuracy`.

    Returns:
      (the distilled student: plain tf_keras model, or a QAT model with `qat`,
      a `DistillReport`).

    Raises:
      UserInputError: different output shapes, bad temperature/alpha (in
        `DistillConfig`), unknown or mismatched feature layers, data that does not
        fit, `baseline` or `val_data` without labels.

    Example:
        >>> student, report = distill(teacher, "width:0.5", DistillConfig(), (x, y),
        ...                           fit=FitConfig(epochs=20, learning_rate=2e-3))
    """
    config = config or config_lib.DistillConfig()
    if not isinstance(config, config_lib.DistillConfig):
        raise errors.UserInputError(
            "config must be an edgekit.config.DistillConfig. "
            + errors.received(config=type(config).__name__)
        )
    if data is None:
        raise errors.UserInputError(
            f"{_WHAT} needs training inputs: (x, y), x alone, a Dataset or a path. "
            + errors.received(data=None)
        )
    strategy_lib.get_strategy(fit.strategy)  # before any TensorFlow op (multi_worker needs it)
    teacher = io.load_model(teacher)
    layers_lib.check_functional(teacher, what=_WHAT)
    student = resolve_student(student, teacher, seed=fit.seed or 0)
    layers_lib.check_functional(student, what=_WHAT)
    _check_models(teacher, student, config)
    num_classes = int(teacher.output_shape[-1])
    x, y = _read(data, what="data")
    fit_lib.check_data_fits(student, x)
    y = None if y is None else _class_ids(y, num_classes, what="data")
    if y is not None and not np.any(y >= 0):
        y = None
    val = None
    if val_data is not None:
        vx, vy = _read(val_data, what="val_data")
        if vy is None:
            raise errors.UserInputError(
                "val_data measures accuracy and needs labels. "
                + errors.received(val_data=type(val_data).__name__)
            )
        fit_lib.check_data_fits(student, vx, what="val_data")
        val = (vx, _class_ids(vy, num_classes, what="val_data"))
    if baseline and y is None:
        raise errors.UserInputError(
            "baseline trains the student on labels alone, and the data has none. Pass "
            "labelled data or leave baseline off. " + errors.received(baseline=True)
        )
    if qat is not None and prune is not None and qat.preserve is config_lib.QATPreserve.NONE:
        qat = dataclasses.replace(qat, preserve=config_lib.QATPreserve.SPARSITY)
    qat_fit = qat_fit or dataclasses.replace(
        fit, epochs=max(1, fit.epochs // 4), learning_rate=fit.learning_rate / 20
    )

    # Every run takes its steps from the data it was given (before mixing), so the
    # labels-only baseline and the distilled student get the same budget.
    steps = fit_lib.plan_steps(len(x), fit)[0]
    fit = dataclasses.replace(fit, steps_per_epoch=steps)
    qat_fit = dataclasses.replace(qat_fit, steps_per_epoch=fit_lib.plan_steps(len(x), qat_fit)[0])
    x_all, y_all = x, y
    if config.mixed_inputs:
        x_all = np.concatenate([x, mix_inputs(x, config.mixed_inputs, seed=fit.seed or 0)])
        if y is not None:
            y_all = np.concatenate([y, np.full(len(x_all) - len(x), -1, np.float32)])

    split, logits_name, student_source = _split_softmax(student)
    t_names = [t for t, _ in config.feature_layers]
    outs, teacher_source, cache = teacher_targets(
        teacher,
        x_all,
        feature_names=t_names,
        use_cache=config.cache_teacher,
        cache_dir=config.cache_dir,
    )
    packed = (x_all, _pack(y_all, outs))
    val_packed = None
    if val is not None:
        v_outs, _, _ = teacher_targets(
            teacher,
            val[0],
            feature_names=t_names,
            use_cache=config.cache_teacher,
            cache_dir=config.cache_dir,
        )
        val_packed = (val[0], _pack(val[1], v_outs))
    plan = _Plan(
        config=config,
        logits_name=logits_name,
        student_source=student_source,
        pairs=config.feature_layers,
        teacher_shapes=[tuple(o.shape[1:]) for o in outs[1:]],
        num_classes=num_classes,
        has_labels=y is not None,
    )
    kw = {"packed": packed, "val_packed": val_packed, "fit": fit, "qat_fit": qat_fit}
    distilled, prune_report, qat_report, fit_report, qat_fit_report, float_student = _train(
        split, plan, config.alpha, prune=prune, qat=qat, **kw
    )
    if val is not None:
        acc_x, acc_y, acc_on = val[0], val[1], "val_data"
    else:
        mask = np.ones(len(x), bool) if y is None else y >= 0
        acc_x, acc_y, acc_on = x[mask], None if y is None else y[mask], "data"
    labels_acc = None
    if baseline:
        # The labelled samples alone (no mixed or unlabelled ones), same steps.
        labelled = packed[1][:, 0] >= 0
        base_plan = dataclasses.replace(plan, pairs=(), teacher_shapes=[])
        base_kw = {**kw, "packed": (packed[0][labelled], packed[1][labelled])}
        labels_only = _train(split, base_plan, 0.0, prune=prune, qat=qat, **base_kw)[0]
        labels_acc = _accuracy(labels_only, acc_x, acc_y)
    has_acc = acc_y is not None
    report = DistillReport(
        technique="distill",
        config=config.to_dict(),
        teacher_params=int(teacher.count_params()),
        student_params=int(student.count_params()),
        param_ratio=round(student.count_params() / teacher.count_params(), 4),
        teacher_logits=teacher_source,
        student_logits=student_source,
        num_samples=len(x_all),
        num_labelled=0 if y is None else int(np.sum(y >= 0)),
        teacher_cache=cache,
        accuracy_on=acc_on if has_acc else None,
        teacher_accuracy=_accuracy(teacher, acc_x, acc_y) if has_acc else None,
        distilled_accuracy=_accuracy(distilled, acc_x, acc_y) if has_acc else None,
        student_from_labels_accuracy=labels_acc,
        float_accuracy=_accuracy(float_student, acc_x, acc_y) if has_acc and qat else None,
        prune=prune_report,
        qat=qat_report,
        fit=fit_report,
        qat_fit=qat_fit_report,
    )
    return distilled, report


def _train(
    split: Any,
    plan: _Plan,
    alpha: float,
    *,
    prune: config_lib.PruneConfig | None,
    qat: config_lib.QATConfig | None,
    packed: tuple[np.ndarray, np.ndarray],
    val_packed: Any,
    fit: config_lib.FitConfig,
    qat_fit: config_lib.FitConfig,
) -> tuple[Any, Any, Any, fit_lib.FitReport, fit_lib.FitReport | None, Any]:
    """Distills (while pruning, when asked), then distills during QAT (when asked).

    Batch-norm statistics are recalibrated on the inputs the student trained on,
    mixed ones included: its weights adapted to those batch statistics (measured:
    calibrating on the given inputs alone cost 1-2 points with mixed_inputs=5).
    """
    student: technique.Technique = technique.Plain(split)
    if prune is not None:
        total_steps = fit_lib.plan_steps(len(packed[0]), fit)[1]
        student = prune_lib.Pruning(split, prune, total_steps=total_steps)
    # Until recalibration, the moving batch-norm statistics of a student trained from
    # scratch are mostly their initial guess: per-epoch validation would show chance.
    float_val = None if plan.config.recalibrate_batch_norm else val_packed
    trained, prune_report, fit_report = _phase(
        student, plan, packed, float_val, alpha=alpha, fit=fit
    )
    if plan.config.recalibrate_batch_norm:
        recalibrate_batch_norm(trained, packed[0])
    if qat is None:
        return trained, prune_report, None, fit_report, None, trained
    quantization = qat_lib.QuantizationAware(trained, qat, packed[0], strategy=qat_fit.strategy)
    final, qat_report, qat_fit_report = _phase(
        quantization, plan, packed, val_packed, alpha=alpha, fit=qat_fit
    )
    return final, prune_report, qat_report, fit_report, qat_fit_report, trained
