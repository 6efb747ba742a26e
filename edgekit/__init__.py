"""edgekit: a Keras model to a small, fast, verified .tflite file, with measurements.

The public API, loaded lazily so `import edgekit` stays instant and never imports
TensorFlow:

    edgekit.run(recipe, model=..., data=..., output_dir=...)   # the whole pipeline
    edgekit.convert.convert(model, ConvertConfig(...), calibration_data=...)
    edgekit.evaluate.evaluate(tflite, data, reference=...)
    edgekit.benchmark.benchmark(tflite, BenchmarkConfig(...))
    edgekit.LiteModel(tflite).predict(x)

Modules: config, recipes, io, data, datasets, optimize, convert, lite, runtime,
evaluate, benchmark, report, bundle, serve, pipeline, check, tuning
(`edgekit.tune(model, data=..., output_dir=...)` searches recipes for a target). The layout and
its layers: docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself)
_LAZY = {
    "run": ("edgekit.pipeline", "run"),
    "tune": ("edgekit.tuning.search", "tune"),
    "LiteModel": ("edgekit.runtime", "LiteModel"),
    "resolve_recipe": ("edgekit.recipes", "resolve_recipe"),
    "load_model": ("edgekit.io", "load_model"),
    "ConvertConfig": ("edgekit.config", "ConvertConfig"),
    "EvaluateConfig": ("edgekit.config", "EvaluateConfig"),
    "Recipe": ("edgekit.config", "Recipe"),
    "UserInputError": ("edgekit.errors", "UserInputError"),
}
_MODULES = (
    "convert",
    "evaluate",
    "benchmark",
    "config",
    "recipes",
    "io",
    "data",
    "datasets",
    "optimize",
    "lite",
    "runtime",
    "report",
    "bundle",
    "pipeline",
    "check",
    "serve",
    "tuning",
    "errors",
)

__all__ = sorted([*_LAZY, *_MODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
    elif name in _MODULES:
        value = importlib.import_module(f"edgekit.{name}")
    else:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
