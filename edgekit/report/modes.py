"""Every post-training mode side by side: convert, evaluate against Keras, tabulate.

`edgekit-convert --example` and `tools/make_reference_models.py` print this table, so the
README table, the reference models and what a user sees on first run come from the same
code.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from edgekit import convert, evaluate, io
from edgekit.config import ConvertConfig

# (file stem, config) of every post-training variant the showcase makes.
ALL_MODES: tuple[tuple[str, ConvertConfig], ...] = (
    ("float32", ConvertConfig(mode="float32")),
    ("dynamic", ConvertConfig(mode="dynamic")),
    ("float16", ConvertConfig(mode="float16")),
    ("int8", ConvertConfig(mode="int8", choose_granularity=False)),  # per-channel
    ("int8_per_tensor", ConvertConfig(mode="int8", per_channel=False)),
    ("int8_io_uint8", ConvertConfig(mode="int8", io_type="uint8")),
    ("int8_float_fallback", ConvertConfig(mode="int8_float_fallback")),
    ("int16x8", ConvertConfig(mode="int16x8")),
)


def convert_all_modes(
    model: Any,
    calibration: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    output_dir: str | os.PathLike | None = None,
    modes: tuple[tuple[str, ConvertConfig], ...] = ALL_MODES,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Converts `model` in each mode and evaluates each file against the Keras model.

    Returns:
      One row per mode: name, mode, size and gzip size (bytes and % of float32),
      accuracy, accuracy of the Keras model, parity figures, and the file path.
    """
    rows: list[dict[str, Any]] = []
    float_size = None
    for name, _ in modes:
        if output_dir is not None:
            io.check_output_path(pathlib.Path(output_dir) / f"{name}.tflite", overwrite=overwrite)
    for name, cfg in modes:
        result = convert.convert(model, cfg, calibration_data=calibration)
        ev = evaluate.evaluate(result.tflite_bytes, (x_test, y_test), reference=model)
        if float_size is None and cfg.mode.value == "float32":
            float_size = (result.size_bytes, result.gzip_size_bytes)
        path = None
        if output_dir is not None:
            path = str(
                result.save(pathlib.Path(output_dir) / f"{name}.tflite", overwrite=overwrite)
            )
        par = ev.parity
        if par is None:  # pragma: no cover - a reference was given above
            raise RuntimeError("parity missing although a reference model was given")
        rows.append(
            {
                "name": name,
                "mode": cfg.mode.value,
                "io_type": cfg.io_type.value,
                "per_channel": cfg.per_channel,
                "size_bytes": result.size_bytes,
                "gzip_size_bytes": result.gzip_size_bytes,
                "size_vs_float32": None
                if float_size is None
                else result.size_bytes / float_size[0],
                "gzip_vs_float32": None
                if float_size is None
                else result.gzip_size_bytes / float_size[1],
                "accuracy": ev.accuracy,
                "keras_accuracy": ev.reference_accuracy,
                "max_abs_error": par.max_abs_error,
                "cosine": par.cosine,
                "top1_agreement": par.top1_agreement,
                "num_test_samples": ev.num_samples,
                "path": path,
            }
        )
    return rows


TABLE_HEADERS = (
    "variant",
    "size KB",
    "% of f32",
    "gzip KB",
    "accuracy %",
    "Δ vs Keras",
    "top-1 agree %",
    "max abs err",
)


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Formats `convert_all_modes` rows for a printed or Markdown table."""
    out = []
    for r in rows:
        out.append(
            [
                r["name"],
                f"{r['size_bytes'] / 1024:.1f}",
                f"{100 * r['size_vs_float32']:.1f}",
                f"{r['gzip_size_bytes'] / 1024:.1f}",
                f"{100 * r['accuracy']:.2f}",
                f"{100 * (r['accuracy'] - r['keras_accuracy']):+.2f}",
                f"{100 * r['top1_agreement']:.2f}",
                f"{r['max_abs_error']:.2e}",
            ]
        )
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    body = table_rows(rows)
    lines = ["| " + " | ".join(TABLE_HEADERS) + " |", "|" + "---|" * len(TABLE_HEADERS)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(lines)
