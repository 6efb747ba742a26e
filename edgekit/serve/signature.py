"""A bundle's signature as the server sees it: what a request must hold, checked up front.

Pure numpy, no KServe: the model class turns the `UserInputError`s raised here into
each protocol's 4xx. Clients send floats (or, over V2, the model's own integer dtype)
and get float32 back: integer models are (de)quantized by `runtime.LiteModel` with
the scale and zero point that `bundle.verify` has matched against the manifest.

Two request shapes of TensorFlow Serving's REST API (V1) are understood:

    {"instances": [sample, sample, ...]}       row format, answered {"predictions": [...]}
    {"inputs": tensor or {name: tensor}}       column format, answered {"outputs": ...}

A sample is the value of the only input, or {input_name: value} for several inputs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgekit import errors
from edgekit.runtime import TensorSpec

# The V2 datatypes a client may send: floats always (the server quantizes), and the
# model's own dtype for clients that quantize themselves.
FLOAT_DATATYPES = ("FP32", "FP64", "FP16")
V2_DATATYPES = {
    "int8": "INT8",
    "uint8": "UINT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float32": "FP32",
    "float16": "FP16",
    "float64": "FP64",
    "bool": "BOOL",
}


def short_name(name: str) -> str:
    """The name a TensorFlow Serving client knows: 'serving_default_image:0' -> 'image'."""
    return re.sub(r":\d+$", "", re.sub(r"^serving_default_", "", name))


@dataclasses.dataclass(frozen=True)
class Signature:
    """The inputs and outputs of a served model, with the request bounds."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int

    def _find(self, name: str) -> int | None:
        for i, (spec, shown) in enumerate(zip(self.inputs, self.input_names(), strict=True)):
            if name in (spec.name, shown):
                return i
        return None

    def input_names(self) -> list[str]:
        return _names(self.inputs)

    def output_names(self) -> list[str]:
        return _names(self.outputs)

    # -- checks --------------------------------------------------------------

    def check_array(self, index: int, value: Any, *, datatype: str | None = None) -> np.ndarray:
        """One input as a checked array: numbers, the sample shape, a batch in bounds."""
        spec = self.inputs[index]
        name = self.input_names()[index]
        native = np.dtype(spec.dtype)
        if datatype is not None:
            if datatype not in FLOAT_DATATYPES and datatype != V2_DATATYPES.get(native.name):
                raise errors.UserInputError(
                    f"Input {name!r} takes floats (FP32) or the model's own "
                    f"{V2_DATATYPES.get(native.name, native.name)}; send FP32 values and the "
                    "server quantizes them. " + errors.received(datatype=datatype)
                )
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError):
            arr = np.asarray([], dtype=object)
            ragged = True
        else:
            ragged = False
        if ragged or arr.dtype == object:
            raise errors.UserInputError(
                f"Input {name!r} must be a rectangular nested list of numbers (all rows the "
                "same length). " + errors.received(input=_preview(value))
            )
        if arr.dtype.kind not in "fiu":
            raise errors.UserInputError(
                f"Input {name!r} takes numbers ({spec.dtype} inside the model; send floats). "
                + errors.received(dtype=str(arr.dtype), input=_preview(value))
            )
        if arr.dtype != native:  # JSON numbers, FP64/FP16: the float interface
            arr = arr.astype(np.float32)
        want = spec.shape_signature
        sample = [None if d == -1 else d for d in want[1:]]
        if arr.ndim != len(want) or any(
            w not in (-1, g) for w, g in zip(want[1:], arr.shape[1:], strict=False)
        ):
            raise errors.UserInputError(
                f"Input {name!r} takes a batch of samples of shape {sample} (shape "
                f"[batch, {', '.join(str(d) for d in sample)}]). Reshape the data. "
                + errors.received(shape=list(arr.shape))
            )
        n = arr.shape[0]
        if n < 1 or n > self.max_batch_size:
            raise errors.UserInputError(
                f"A request holds 1 to {self.max_batch_size} samples (the server's "
                "--max_batch_size); split bigger batches over several requests. "
                + errors.received(batch=n)
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise errors.UserInputError(
                f"Input {name!r} holds NaN or infinity. Send finite numbers. "
                + errors.received(non_finite=int((~np.isfinite(arr)).sum()))
            )
        return arr

    def check_batch(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        sizes = [a.shape[0] for a in arrays]
        if len(set(sizes)) > 1:
            raise errors.UserInputError(
                "Every input must hold the same number of samples. "
                + errors.received(sizes=dict(zip(self.input_names(), sizes, strict=True)))
            )
        return list(arrays)

    def _by_name(self, values: Mapping[str, Any], where: str) -> list[Any]:
        found: dict[int, Any] = {}
        for key, value in values.items():
            i = self._find(str(key))
            if i is None:
                raise errors.UserInputError(
                    f"Unknown input {key!r} in {where}; the model's inputs are "
                    f"{self.input_names()}. " + errors.received(keys=sorted(map(str, values)))
                )
            found[i] = value
        missing = [self.input_names()[i] for i in range(len(self.inputs)) if i not in found]
        if missing:
            raise errors.UserInputError(
                f"Missing input(s) {missing} in {where}; the model's inputs are "
                f"{self.input_names()}. " + errors.received(keys=sorted(map(str, values)))
            )
        return [found[i] for i in range(len(self.inputs))]

    # -- V1 (TensorFlow Serving REST) -----------------------------------------

    def decode_v1(self, body: Any) -> tuple[list[np.ndarray], str]:
        """Checked input arrays and the format ("row" or "column") of a V1 request."""
        if not isinstance(body, Mapping):
            raise errors.UserInputError(
                'A predict request is a JSON object: {"instances": [...]} or {"inputs": ...}. '
                + errors.received(body=_preview(body))
            )
        has_i, has_c = "instances" in body, "inputs" in body
        if has_i == has_c:
            raise errors.UserInputError(
                'Send exactly one of "instances" (a list of samples) and "inputs" (a tensor, '
                "or one per input name), as TensorFlow Serving's REST API defines. "
                + errors.received(keys=sorted(map(str, body)))
            )
        if has_i:
            rows = body["instances"]
            if not isinstance(rows, list) or not rows:
                raise errors.UserInputError(
                    '"instances" must be a non-empty list of samples. '
                    + errors.received(instances=_preview(rows))
                )
            if len(rows) > self.max_batch_size:
                raise errors.UserInputError(
                    f"A request holds 1 to {self.max_batch_size} samples (the server's "
                    "--max_batch_size); split bigger batches over several requests. "
                    + errors.received(batch=len(rows))
                )
            named = all(isinstance(r, Mapping) for r in rows)
            if len(self.inputs) > 1 or named:
                if not named:
                    raise errors.UserInputError(
                        "This model has several inputs: each instance must be an object "
                        f"{{name: value}} with the names {self.input_names()}. "
                        + errors.received(instance=_preview(rows[0]))
                    )
                columns = [self._by_name(r, "an instance") for r in rows]
                values = [[c[i] for c in columns] for i in range(len(self.inputs))]
            else:
                values = [rows]
            return self.check_batch([self.check_array(i, v) for i, v in enumerate(values)]), "row"
        cols = body["inputs"]
        if isinstance(cols, Mapping):
            values = self._by_name(cols, '"inputs"')
        elif len(self.inputs) == 1:
            values = [cols]
        else:
            raise errors.UserInputError(
                'This model has several inputs: "inputs" must be an object {name: tensor} '
                f"with the names {self.input_names()}. " + errors.received(inputs=_preview(cols))
            )
        return self.check_batch([self.check_array(i, v) for i, v in enumerate(values)]), "column"

    def encode_v1(self, outputs: Sequence[np.ndarray], fmt: str) -> dict[str, Any]:
        names = self.output_names()
        if fmt == "row":
            if len(outputs) == 1:
                return {"predictions": outputs[0].tolist()}
            n = outputs[0].shape[0]
            lists = [o.tolist() for o in outputs]
            return {
                "predictions": [
                    {k: v[j] for k, v in zip(names, lists, strict=True)} for j in range(n)
                ]
            }
        if len(outputs) == 1:
            return {"outputs": outputs[0].tolist()}
        return {"outputs": {k: o.tolist() for k, o in zip(names, outputs, strict=True)}}

    # -- V2 (open inference protocol) -----------------------------------------

    def decode_v2(self, named: Sequence[tuple[str, str, Any]]) -> list[np.ndarray]:
        """Checked arrays from (name, datatype, array-or-thunk) triples of a V2 request."""
        if len(named) != len(self.inputs):
            raise errors.UserInputError(
                f"The model takes {len(self.inputs)} input(s) {self.input_names()}. "
                + errors.received(inputs=[n for n, _, _ in named])
            )
        if len(self.inputs) == 1:
            # One input: its name is a formality; any name is accepted.
            order = [0]
        else:
            order = []
            for name, _, _ in named:
                i = self._find(name)
                if i is None or i in order:
                    raise errors.UserInputError(
                        f"Unknown or repeated input {name!r}; the model's inputs are "
                        f"{self.input_names()}. " + errors.received(inputs=[n for n, _, _ in named])
                    )
                order.append(i)
        arrays: list[np.ndarray | None] = [None] * len(self.inputs)
        for i, (_, datatype, value) in zip(order, named, strict=True):
            arrays[i] = self.check_array(i, value, datatype=datatype)
        return self.check_batch(arrays)  # type: ignore[arg-type]

    def metadata(self, kind: str) -> list[dict[str, Any]]:
        """V2 model metadata: what a client sends (FP32) and gets (FP32), by name."""
        specs = self.inputs if kind == "inputs" else self.outputs
        return [
            {"name": name, "datatype": "FP32", "shape": list(s.shape_signature)}
            for s, name in zip(specs, _names(specs), strict=True)
        ]


def _names(specs: Sequence[TensorSpec]) -> list[str]:
    """Short names when they stay distinct ('StatefulPartitionedCall:0' and ':1' do not)."""
    short = [short_name(s.name) for s in specs]
    return short if len(set(short)) == len(short) else [s.name for s in specs]


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
