"""Measures that two models compute the same outputs: max abs error and cosine.

Every translation of the bridge is checked with this on sample inputs, and a
result past the tolerance is refused: a translated model that computes something
else would be trained, pruned and shipped in the user's name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgekit import _compat, errors

# Both sides run the same float32 TensorFlow kernels in the same order (batch norm
# unfused, hard-sigmoid as relu6(x + 3) / 6), so the keras.applications models of
# benchmarks/keras3_bridge.py match exactly; 1e-5 leaves room for kernels that
# TensorFlow may pick differently by graph (a few float32 ulps per layer).
TOLERANCE = 1e-5


class EquivalenceError(errors.UserInputError):
    """A translated model does not compute what the user's model computes."""


@dataclasses.dataclass(frozen=True)
class Equivalence:
    """How closely two models agree on the same inputs (all outputs, flattened)."""

    max_abs_error: float
    cosine: float
    samples: int
    tolerance: float = TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _flat_inputs(model: Any) -> list[Any]:
    inputs = model.inputs
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]


def make_sample(model: Any, *, num_samples: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Random inputs that fit `model`: uniform in [0, 1) for floats, 0/1 for integers.

    Unknown non-batch dimensions become 8.
    """
    rng = np.random.default_rng(seed)
    out = []
    for tensor in _flat_inputs(model):
        shape = [num_samples] + [8 if d is None else int(d) for d in tuple(tensor.shape)[1:]]
        dtype = np.dtype(getattr(tensor.dtype, "name", tensor.dtype))
        if np.issubdtype(dtype, np.integer):
            out.append(rng.integers(0, 2, size=shape).astype(dtype))
        else:
            out.append(rng.random(shape, dtype=np.float32).astype(dtype))
    return out


def outputs(model: Any, sample: Any) -> list[np.ndarray]:
    """The model's outputs on `sample`, flattened to a list of float64 arrays."""
    tf = _compat.tf()
    if isinstance(sample, (list, tuple)) and len(sample) == 1:
        sample = sample[0]
    result = model(sample, training=False)
    return [np.asarray(t, dtype=np.float64) for t in tf.nest.flatten(result)]


def _num_samples(sample: Any) -> int:
    first = sample[0] if isinstance(sample, (list, tuple)) else sample
    return int(np.shape(first)[0])


def check_equivalence(
    a: Any, b: Any, sample: Any, *, tolerance: float = TOLERANCE, what: str = "the bridge"
) -> Equivalence:
    """Runs both models on `sample`; raises past `tolerance` max abs error.

    Args:
      a: the reference model (Keras 3 or tf_keras).
      b: the model that should compute the same thing.
      sample: inputs for both (an array, or a list of arrays for several inputs).
      tolerance: the largest max abs error accepted.
      what: names the translation in the error message.

    Returns:
      An `Equivalence` with the max abs error and the cosine over all outputs.

    Raises:
      EquivalenceError: the outputs differ by more than `tolerance`, differ in
        shape, or are not finite.

    Example:
        >>> eq = check_equivalence(keras3_model, tf_keras_model, x[:8])
        >>> eq.max_abs_error <= 1e-5
        True
    """
    out_a, out_b = outputs(a, sample), outputs(b, sample)
    shapes_a, shapes_b = [o.shape for o in out_a], [o.shape for o in out_b]
    if shapes_a != shapes_b:
        raise EquivalenceError(
            f"The model built by {what} has outputs of shapes {shapes_b}, the original "
            f"{shapes_a}. This is a bug in the bridge; please report it with the model. "
            + errors.received(original_shapes=shapes_a, translated_shapes=shapes_b)
        )
    fa = np.concatenate([o.ravel() for o in out_a]) if out_a else np.zeros(0)
    fb = np.concatenate([o.ravel() for o in out_b]) if out_b else np.zeros(0)
    if not (np.all(np.isfinite(fa)) and np.all(np.isfinite(fb))):
        raise EquivalenceError(
            f"The outputs compared to check {what} are not all finite (NaN or inf), so "
            "equivalence cannot be measured. Check the model's weights and the sample "
            "inputs. " + errors.received(samples=_num_samples(sample))
        )
    max_abs = float(np.max(np.abs(fa - fb))) if fa.size else 0.0
    norm = float(np.linalg.norm(fa) * np.linalg.norm(fb))
    cosine = float(np.dot(fa, fb) / norm) if norm > 0 else float(np.array_equal(fa, fb))
    result = Equivalence(
        max_abs_error=max_abs,
        cosine=cosine,
        samples=_num_samples(sample),
        tolerance=tolerance,
    )
    if not max_abs <= tolerance:
        raise EquivalenceError(
            f"The model built by {what} does not compute what the original computes: max "
            f"abs error {max_abs:.3g} over {result.samples} samples is above the tolerance "
            f"{tolerance:g} (cosine {cosine:.6f}). Nothing was trained or written. Please "
            "report the model; meanwhile build it with tf_keras directly. "
            + errors.received(max_abs_error=max_abs, tolerance=tolerance)
        )
    return result
