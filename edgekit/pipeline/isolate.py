"""`edgekit.run(..., isolate=True)`: the pipeline in a child process a crash cannot take down.

The caller's process waits while a fresh Python runs `runner.run`; a child that crashes inside TensorFlow is retried once with
`TF_ENABLE_ONEDNN_OPTS=0` (`edgekit.subproc`), resuming after the last finished stage.
The child (`edgekit.pipeline.child`) takes files only (model and data paths), and hands
back the `PipelineResult` as JSON.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
from typing import Any

from edgekit import errors, recipes, subproc

# The child's entry point (`python -m`); it imports the runner, this module must not.
CHILD_MODULE = "edgekit.pipeline.child"


def run(
    recipe: Any,
    *,
    model: Any,
    data: Any,
    output_dir: str | os.PathLike,
    eval_data: Any = None,
    val_data: Any = None,
    overwrite: bool = False,
    safe_mode: bool = True,
) -> dict[str, Any]:
    """`runner.run` in a child process: its `PipelineResult.to_dict()`.

    See `edgekit.pipeline.run(isolate=True)`.
    """
    named = (("model", model), ("data", data), ("eval_data", eval_data), ("val_data", val_data))
    for name, value in named:
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise errors.UserInputError(
                f"isolate=True runs the pipeline in another process, which takes {name} as "
                "a file path: save it first (model.save(...), numpy.savez(...)) and pass the "
                "path, or call without isolate. " + errors.received(**{name: type(value).__name__})
            )
    spec = {
        "recipe": recipes.resolve_recipe(recipe).to_dict(),
        "model": str(model),
        "data": str(data),
        "eval_data": None if eval_data is None else str(eval_data),
        "val_data": None if val_data is None else str(val_data),
        "output_dir": str(output_dir),
        "overwrite": overwrite,
        "safe_mode": safe_mode,
    }
    with tempfile.TemporaryDirectory(prefix="edgekit-isolate-") as tmp:
        spec_path, result_path = pathlib.Path(tmp, "spec.json"), pathlib.Path(tmp, "result.json")
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", CHILD_MODULE, str(spec_path), str(result_path)]
        outcome = subproc.run_isolated(cmd, what="edgekit.run")
        payload = json.loads(result_path.read_text()) if result_path.exists() else None
    if payload and "error" in payload:
        raise errors.UserInputError(payload["error"])
    if outcome.returncode != 0 or not payload:
        raise RuntimeError(
            f"edgekit.run(isolate=True): the pipeline's process ended with status "
            f"{outcome.returncode} (see the messages above). {subproc.WORKAROUND}"
        )
    payload["resumed_stages"] = tuple(payload["resumed_stages"])
    return payload
