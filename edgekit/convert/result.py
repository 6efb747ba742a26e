"""What a conversion returns: the flatbuffer and how it was made."""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
from typing import Any

from edgekit import io
from edgekit.config import ConvertMode, IOType


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """A converted model and how it was made.

    Attributes:
      tflite_bytes: the flatbuffer.
      mode: the post-training mode.
      io_type: dtype of the inputs and outputs.
      size_bytes / gzip_size_bytes: file size, and size after gzip -9 (what an app
        download or an OTA update pays; pruned weights compress well).
      conversion_seconds: wall time of the converter call.
      converter_settings: the converter attributes that were set.
      converter_warnings: warnings the converter printed.
      num_calibration_samples: samples used to calibrate (0 if none).
    """

    tflite_bytes: bytes
    mode: ConvertMode
    io_type: IOType
    size_bytes: int
    gzip_size_bytes: int
    conversion_seconds: float
    converter_settings: dict[str, Any]
    converter_warnings: tuple[str, ...]
    num_calibration_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the bytes)."""
        return {
            "mode": self.mode.value,
            "io_type": self.io_type.value,
            "size_bytes": self.size_bytes,
            "gzip_size_bytes": self.gzip_size_bytes,
            "conversion_seconds": round(self.conversion_seconds, 3),
            "num_calibration_samples": self.num_calibration_samples,
            "converter_settings": self.converter_settings,
            "converter_warnings": list(self.converter_warnings),
        }

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> pathlib.Path:
        """Writes the `.tflite` file atomically; refuses to overwrite unless asked."""
        return io.atomic_write_bytes(path, self.tflite_bytes, overwrite=overwrite)


def gzip_size(blob: bytes) -> int:
    """Size of `blob` after gzip at level 9 (mtime fixed, so it is reproducible)."""
    return len(gzip.compress(blob, compresslevel=9, mtime=0))
