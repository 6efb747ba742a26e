"""The public surface users' scripts depend on, collected so a test can pin it.

`python tests/_surface.py --write` records it in `tests/data/public_surface.json`;
`tests/test_public_surface.py` fails when any of it changes. What it holds:
- every console script's flags with their defaults (absl's own flags left out),
- the public names of the modules the docs and the issues name,
- every config class's fields with their defaults, and the recipe format version,
- the JSON key sets of a conversion, an evaluation, a benchmark and a pipeline run
  (manifest, summary, state file).
"""

from __future__ import annotations

import configparser
import dataclasses
import importlib
import inspect
import json
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "data" / "public_surface.json"

# The modules whose public names the issues list as "must not change".
PUBLIC_MODULES = (
    "edgekit",
    "edgekit.config",
    "edgekit.convert",
    "edgekit.evaluate",
    "edgekit.benchmark",
    "edgekit.runtime",
    "edgekit.optimize",
    "edgekit.optimize.prune",
    "edgekit.optimize.cluster",
    "edgekit.optimize.qat",
    "edgekit.optimize.distill",
    "edgekit.optimize._qat_configs",
    "edgekit.lite",
    "edgekit.lite.validate",
    "edgekit.lite.inspect",
    "edgekit.lite.c_array",
    "edgekit.bundle",
    "edgekit.check",
    "edgekit.report",
    "edgekit.data",
    "edgekit.io",
    "edgekit.recipes",
    "edgekit.pipeline",
    "edgekit.datasets",
    "edgekit.errors",
)


def console_scripts() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    text = parser["options.entry_points"]["console_scripts"]
    scripts = {}
    for line in text.strip().splitlines():
        name, target = (s.strip() for s in line.split("=", 1))
        scripts[name] = target
    return scripts


def script_flags(target: str) -> dict[str, str]:
    """name -> default (as absl prints it) of every non-absl flag a command defines."""
    module, func = target.split(":")
    code = f"import sys; sys.argv = ['cmd', '--helpxml']; from {module} import {func}; {func}()"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    root = ET.fromstring(proc.stdout)
    out = {}
    for flag in root.iter("flag"):
        file = flag.findtext("file") or ""
        if file.startswith("absl."):
            continue
        out[flag.findtext("name")] = flag.findtext("default")
    return dict(sorted(out.items()))


def public_names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return sorted(module.__all__)
    names = []
    for name, obj in vars(module).items():
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if callable(obj) and str(getattr(obj, "__module__", "")).startswith("edgekit"):
            names.append(name)
    return sorted(names)


def config_fields() -> dict[str, dict[str, str]]:
    config = importlib.import_module("edgekit.config")
    out = {}
    for name in sorted(dir(config)):
        obj = getattr(config, name)
        if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
            fields = {}
            for f in dataclasses.fields(obj):
                if f.default is not dataclasses.MISSING:
                    default = repr(f.default)
                elif f.default_factory is not dataclasses.MISSING:
                    default = repr(f.default_factory())
                else:
                    default = "<required>"
                fields[f.name] = default
            out[name] = fields
    return out


def key_paths(obj: Any, prefix: str = "", depth: int = 4) -> list[str]:
    """Every dict key path in a JSON object ("a.b", lists as "a[]"), to `depth` levels."""
    paths: set[str] = set()
    if depth == 0:
        return []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else str(k)
            paths.add(p)
            paths.update(key_paths(v, p, depth - 1))
    elif isinstance(obj, list):
        for v in obj:
            paths.update(key_paths(v, f"{prefix}[]", depth))
    return sorted(paths)


def static_surface() -> dict[str, Any]:
    scripts = console_scripts()
    return {
        "console_scripts": scripts,
        "flags": {name: script_flags(target) for name, target in scripts.items()},
        "public_names": {m: public_names(m) for m in PUBLIC_MODULES},
        "config_fields": config_fields(),
    }


def run_surface(example, tmp: pathlib.Path) -> dict[str, Any]:
    """Key sets of real results on the trained example (small, fast settings)."""
    from edgekit import benchmark, convert, evaluate, pipeline
    from edgekit.config import BenchmarkConfig, ConvertConfig

    model, _info, (x_train, y_train), (x_test, y_test) = example
    conv = convert.convert(
        model, ConvertConfig(mode="int8", num_calibration_samples=32), calibration_data=x_train
    )
    ev = evaluate.evaluate(conv.tflite_bytes, (x_test[:64], y_test[:64]), reference=model)
    bench = benchmark.benchmark(
        conv.tflite_bytes,
        BenchmarkConfig(num_runs=5, min_secs=0.05, max_secs=2.0, warmup_min_secs=0.01),
    )
    out = tmp / "run"
    result = pipeline.run(
        "ptq_dynamic",
        model=model,
        data=(x_train, y_train),
        eval_data=(x_test, y_test),
        output_dir=out,
    )
    return {
        "conversion": key_paths(conv.to_dict()),
        "evaluation": key_paths(ev.to_dict()),
        "benchmark": key_paths(bench.to_dict()),
        "pipeline_summary": key_paths(result.summary),
        "manifest": key_paths(json.loads((out / "manifest.json").read_text())),
        "state": key_paths(json.loads((out / ".edgekit" / "state.json").read_text()), depth=1),
        "outputs": sorted(p.name for p in out.iterdir()),
    }


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/_surface.py --write")
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    from edgekit import datasets

    model, info = datasets.example_model()
    example = (model, info, *datasets.load_digits())
    with tempfile.TemporaryDirectory() as tmp:
        surface = {**static_surface(), "runs": run_surface(example, pathlib.Path(tmp))}
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(json.dumps(surface, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
