"""One input or output of a `.tflite` model, as the interpreter reports it.

`TensorSpec` turns an entry of `Interpreter.get_input_details()` (or outputs) into a
small frozen record that is JSON-ready through `to_dict()`. `edgekit.runtime` uses it
for a loaded model; the sandboxed loader (`edgekit.lite.sandbox`) reports the I/O of a
model it loaded with it; bundles compare that report with their manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input or output of a `.tflite` model.

    `shape` is the shape as allocated now; `shape_signature` has -1 for dynamic
    dimensions. `scale`/`zero_point` are the per-tensor quantization parameters
    (None for float tensors); per-channel parameters are in `scales`/`zero_points`.
    """

    name: str
    index: int
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    @property
    def dynamic_batch(self) -> bool:
        return len(self.shape_signature) > 0 and self.shape_signature[0] == -1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["shape_signature"] = list(self.shape_signature)
        d["scales"] = list(self.scales)
        d["zero_points"] = list(self.zero_points)
        return d

    @classmethod
    def from_details(cls, detail: Mapping[str, Any]) -> TensorSpec:
        qp = detail.get("quantization_parameters") or {}
        scales = tuple(float(s) for s in qp.get("scales", ()))
        zps = tuple(int(z) for z in qp.get("zero_points", ()))
        scale, zp = detail.get("quantization", (0.0, 0))
        quantized = bool(scales) and float(scale) != 0.0
        return cls(
            name=str(detail["name"]),
            index=int(detail["index"]),
            shape=tuple(int(d) for d in detail["shape"]),
            shape_signature=tuple(int(d) for d in detail.get("shape_signature", detail["shape"])),
            dtype=np.dtype(detail["dtype"]).name,
            scale=float(scale) if quantized else None,
            zero_point=int(zp) if quantized else None,
            scales=scales,
            zero_points=zps,
            quantized_dimension=int(qp.get("quantized_dimension", 0)),
        )
