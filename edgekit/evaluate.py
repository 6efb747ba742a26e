"""Check a `.tflite` model: metrics on data, parity with the Keras model, per-layer error.

Accuracy alone hides a broken conversion when the float model is weak; parity
(the `.tflite` outputs against the Keras outputs on the same inputs) shows what the
conversion itself changed. For integer models, TensorFlow's quantization debugger
says which layers lose the most.

Example:
    >>> r = edgekit.evaluate.evaluate("model_int8.tflite", "test.npz", reference=keras_model)
    >>> r.accuracy, r.parity.top1_agreement
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import os
import pathlib
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgekit import _compat, convert, data, errors, io, runtime
from edgekit.config import ConvertConfig, ConvertMode, EvaluateConfig
from edgekit.lite import validate

MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclasses.dataclass(frozen=True)
class ParityResult:
    """How closely the `.tflite` outputs follow the reference model's on the same inputs.

    `cosine` is the mean over samples of the cosine similarity of the output vectors;
    `top1_agreement` the share of samples whose arg-max class is the same.
    """

    max_abs_error: float
    mse: float
    cosine: float
    top1_agreement: float
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one `.tflite` model on one data set."""

    num_samples: int
    accuracy: float | None
    top_k_accuracy: dict[int, float]
    metrics: dict[str, float]
    parity: ParityResult | None
    reference_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "accuracy": self.accuracy,
            "top_k_accuracy": {f"top{k}": v for k, v in self.top_k_accuracy.items()},
            "metrics": dict(self.metrics),
            "reference_accuracy": self.reference_accuracy,
            "parity": None if self.parity is None else self.parity.to_dict(),
        }

    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> pathlib.Path:
        """Writes the JSON of `to_dict()` as `evaluation.json` into `folder`.

        Unlike the results that are one JSON file (`edgekit.io.SavesJson`), this one
        takes the folder of a run, where each stage leaves its own file.

        Args:
          folder: an existing folder.
          overwrite: replace an existing `evaluation.json`.

        Returns:
          The path of `evaluation.json`.

        Raises:
          UserInputError: `folder` does not exist, or the file exists and `overwrite`
            is False; nothing is written then.
        """
        path = pathlib.Path(folder) / "evaluation.json"
        return io.write_json(path, self.to_dict(), overwrite=overwrite)


def _labels(y: np.ndarray | None) -> np.ndarray | None:
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        return np.argmax(y, axis=-1)
    return y.reshape(-1).astype(np.int64)


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of samples whose label is among the k highest scores.

    Tied scores (common in an int8 softmax) go to the lower class index, as with
    `np.argmax` (what an app and `parity`'s top-1 agreement use): a stable sort, since
    numpy's default one may order ties either way.
    """
    top = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=-1)))


def parity(outputs: np.ndarray, reference: np.ndarray) -> ParityResult:
    """Compares two output arrays of the same shape, sample by sample."""
    a = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    b = np.asarray(reference, np.float64).reshape(len(reference), -1)
    if a.shape != b.shape:
        raise errors.UserInputError(
            "The .tflite model and the reference produce outputs of different shapes, so they "
            "are not the same model. "
            + errors.received(tflite_shape=list(a.shape), reference_shape=list(b.shape))
        )
    diff = a - b
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    cos = np.where(
        norms > 0, dots / np.maximum(norms, 1e-30), np.where(np.all(diff == 0, axis=1), 1.0, 0.0)
    )
    return ParityResult(
        max_abs_error=float(np.max(np.abs(diff))) if diff.size else 0.0,
        mse=float(np.mean(diff**2)) if diff.size else 0.0,
        # Rounding can put a cosine a hair outside [-1, 1] (1.0000000000000002).
        cosine=float(np.clip(np.mean(np.clip(cos, -1.0, 1.0)), -1.0, 1.0)),
        top1_agreement=float(np.mean(np.argmax(a, 1) == np.argmax(b, 1))),
        num_samples=int(len(a)),
    )


def input_signatures(model_bytes: bytes) -> list[list[int]]:
    """The input shapes of a `.tflite` file's main graph (-1 = any size), read without running it.

    Raises:
      UserInputError: the bytes fail a structural check (`edgekit.lite.validate`).
    """
    m = validate.parse_model(model_bytes)
    main = m.subgraphs[0]
    return [list(main.tensors[i].shape_signature or main.tensors[i].shape) for i in main.inputs]


def _name(model: Any) -> str:
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else "<bytes>"


def _predict(
    model: runtime.LiteModel | bytes, x: np.ndarray, config: EvaluateConfig, *, what: str
) -> np.ndarray | list[np.ndarray]:
    if isinstance(model, runtime.LiteModel):
        return model.predict(x, batch_size=config.batch_size)
    return runtime.predict_isolated(
        model, x, batch_size=config.batch_size, num_threads=config.num_threads, what=what
    )


def _is_tflite(reference: Any) -> bool:
    if isinstance(reference, (runtime.LiteModel, bytes, bytearray)):
        return True
    if isinstance(reference, (str, os.PathLike)) and pathlib.Path(reference).is_file():
        return io.detect_format(reference) == "tflite"
    return False


def predict_reference(reference: Any, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Runs a Keras model (tf_keras or Keras 3), a SavedModel or a LiteModel on `x`."""
    if isinstance(reference, runtime.LiteModel):
        out = reference.predict(x, batch_size=batch_size)
        return out if isinstance(out, np.ndarray) else out[0]
    if isinstance(reference, io.SavedModelDir):
        return np.concatenate(
            [reference.predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )
    outs = [
        np.asarray(reference(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs)


def evaluate(
    model: Any,
    eval_data: Any,
    *,
    config: EvaluateConfig | None = None,
    reference: Any = None,
    metrics: Mapping[str, MetricFn] | None = None,
    custom_objects: dict[str, Any] | None = None,
    safe_mode: bool = True,
) -> EvaluationResult:
    """Evaluates a `.tflite` model on data, optionally against its Keras reference.

    Args:
      model: a `.tflite` path, its bytes, or a `runtime.LiteModel`.
      eval_data: any source `edgekit.data.load` accepts; labels enable accuracy.
      config: top-k values, batch size, sample cap, threads.
      reference: the Keras model (object or path) the file was converted from, or
        the float `.tflite` (path, bytes or LiteModel) it was quantized from;
        enables parity figures.
      metrics: extra metrics, `name -> fn(y_true, y_pred) -> float`, computed on the
        dequantized outputs.

    Returns:
      An `EvaluationResult`.
    """
    config = config or EvaluateConfig()
    name = _name(model)
    if isinstance(model, runtime.LiteModel):
        # Loaded by the caller, in the caller's process: run it there.
        signatures = [s.shape_signature for s in model.inputs]
    else:
        # A file from outside: validated here, run in a child (`runtime.predict_isolated`),
        # so a file that crashes the interpreter cannot take this process down.
        model = validate.read_model_bytes(model)
        signatures = input_signatures(model)
    ds = data.load(eval_data, max_samples=config.max_samples)
    if len(signatures) == 1:
        data.check_inputs(ds.x, signatures[0], what="evaluation data")
    ref_model, ref_name = None, _name(reference)
    if _is_tflite(reference):
        # A float .tflite as the reference: parity and accuracy with no Keras model.
        ref_model = (
            reference
            if isinstance(reference, runtime.LiteModel)
            else validate.read_model_bytes(reference)
        )
    elif reference is not None:
        ref_model = io.load_model(reference, custom_objects=custom_objects, safe_mode=safe_mode)
    x = ds.x.astype(np.float32) if ds.x.dtype.kind == "f" else ds.x
    outputs = _predict(model, x, config, what=name)
    scores = outputs if isinstance(outputs, np.ndarray) else outputs[0]
    labels = _labels(ds.y)
    accuracy = None
    top_k: dict[int, float] = {}
    ref_scores = None
    if isinstance(ref_model, bytes):
        ref_scores = _predict(ref_model, x.astype(np.float32), config, what=ref_name)
        ref_scores = ref_scores if isinstance(ref_scores, np.ndarray) else ref_scores[0]
    elif ref_model is not None:
        ref_scores = predict_reference(ref_model, x.astype(np.float32))
    ref_accuracy = None
    is_classifier = scores.ndim == 2 and scores.shape[1] > 1
    if labels is not None and is_classifier:
        if len(labels) != len(scores):
            raise errors.UserInputError(
                "The labels and the inputs hold different numbers of samples. "
                + errors.received(inputs=len(scores), labels=len(labels))
            )
        for k in config.top_k:
            if k <= scores.shape[1]:
                top_k[k] = top_k_accuracy(scores, labels, k)
        accuracy = top_k_accuracy(scores, labels, 1)
        if ref_scores is not None:
            ref_accuracy = top_k_accuracy(ref_scores.reshape(len(ref_scores), -1), labels, 1)
    extra: dict[str, float] = {}
    for name, fn in (metrics or {}).items():
        extra[name] = float(fn(ds.y, scores))
    return EvaluationResult(
        num_samples=len(ds),
        accuracy=accuracy,
        top_k_accuracy=top_k,
        metrics=extra,
        parity=None if ref_scores is None else parity(scores, ref_scores),
        reference_accuracy=ref_accuracy,
    )


def layer_quantization_error(
    model: Any,
    calibration_data: Any,
    *,
    config: ConvertConfig | None = None,
    debug_samples: int = 64,
) -> list[dict[str, Any]]:
    """Per-layer quantization error of a model's integer conversion.

    Uses `tf.lite.experimental.QuantizationDebugger`, which runs the float and the
    quantized op side by side on `debug_samples` inputs spread over the data.

    Returns:
      One dict per quantized op output: op name, tensor, and the debugger's
      statistics (`mean_squared_error`, `num_elements`, `stddev`, `mean_error`,
      `max_abs_error`, `scale`, ...).
    """
    tf = _compat.tf()
    config = config or ConvertConfig(mode=ConvertMode.INT8)
    if not config.mode.needs_calibration:
        raise errors.UserInputError(
            "Per-layer quantization error applies to integer modes (int8, "
            "int8_float_fallback, int16x8). " + errors.received(mode=config.mode.value)
        )
    keras_model = io.load_model(model)
    calibration = convert.calibration_set(keras_model, config, calibration_data)
    debug = data.calibration_samples(calibration, debug_samples)
    with tempfile.TemporaryDirectory(prefix="edgekit-qdebug-") as workdir:
        converter = convert.make_converter(keras_model, workdir)
        convert.configure(converter, dataclasses.replace(config, io_type="float32"), calibration)

        def debug_dataset():
            for sample in debug:
                yield [sample[None]]

        with convert.captured_stderr():
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=debug_dataset
            )
            debugger.run()
        buf = _io.StringIO()
        debugger.layer_statistics_dump(buf)
    rows = list(csv.DictReader(_io.StringIO(buf.getvalue())))
    out = []
    for row in rows:
        parsed: dict[str, Any] = {}
        for k, v in row.items():
            try:
                parsed[k] = float(v) if v not in ("", None) else None
            except ValueError:
                parsed[k] = v
        out.append(parsed)
    return out


def save_layer_errors_csv(
    rows: list[dict[str, Any]], path: str | os.PathLike, *, overwrite: bool = False
) -> pathlib.Path:
    """Writes per-layer quantization errors as CSV, atomically."""
    buf = _io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    return io.atomic_write_text(path, buf.getvalue(), overwrite=overwrite)
