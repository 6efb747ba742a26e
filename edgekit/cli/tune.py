r"""edgekit-tune: find the best .tflite for a target by measuring candidates under limits.

    edgekit-tune --model=model.keras --data=train.npz --eval_data=test.npz \
        --output_dir=search --max_accuracy_drop=1 --objective=latency
    edgekit-tune ... --target=ssh://pi@raspberrypi --budget_minutes=30
    edgekit-tune ... --storage=postgresql://user:pw@db:5432/tune   # many workers, one study

Writes search/trials.jsonl, pareto.json, best_recipe.json, best.tflite, summary.json
and report.html. Killed? Run the same command again: it resumes the study. Exit
status 1 when no candidate meets the limits (summary.json names the closest ones).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence

from absl import flags

from edgekit import errors
from edgekit.cli import _common

_MODEL = flags.DEFINE_string("model", None, "Keras model: .keras, .h5 or a SavedModel directory.")
_DATA = flags.DEFINE_string("data", None, "Training and calibration data (.npz with x, y).")
_EVAL_DATA = flags.DEFINE_string("eval_data", None, "Held-out data for accuracy (default: --data).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "The search's folder (resumable).")
_MAX_DROP = flags.DEFINE_float(
    "max_accuracy_drop", None, "Accuracy points the file may lose against float32.", lower_bound=0
)
_MAX_SIZE = flags.DEFINE_float("max_size_kb", None, "Largest .tflite file size, KB.", lower_bound=0)
_MAX_LATENCY = flags.DEFINE_float(
    "max_latency_ms", None, "Largest p50 latency on the target, ms.", lower_bound=0
)
_MAX_MEMORY = flags.DEFINE_float(
    "max_peak_memory_mb",
    None,
    "Most memory the model may add to the process (init + inference), MB.",
    lower_bound=0,
)
_INTEGER_ONLY = flags.DEFINE_bool(
    "integer_only", False, "Only files whose every op computes in integers (int8/int16 I/O)."
)
_OBJECTIVE = flags.DEFINE_enum(
    "objective",
    "latency",
    ["latency", "size", "accuracy"],
    "What to optimise among the candidates that meet the limits.",
)
_TARGET = flags.DEFINE_string(
    "target", None, "Measure on a device: ssh://user@host[:port] (default: this machine)."
)
_SSH_KEY = flags.DEFINE_string(
    "ssh_key", None, "With --target: the SSH private key (default: agent/default keys)."
)
_SSH_OPTION = flags.DEFINE_multi_string(
    "ssh_option", [], "With --target: an extra `ssh -o` option (repeatable)."
)
_REMOTE_PYTHON = flags.DEFINE_string(
    "remote_python", None, "With --target: the Python on the device (default: python3)."
)
_THREADS = flags.DEFINE_integer(
    "num_threads", None, "Interpreter threads (default: 1, and 2 as a candidate).", lower_bound=1
)
_BUDGET = flags.DEFINE_float(
    "budget_minutes", None, "Start no trial that would end after this many minutes.", lower_bound=0
)
_MAX_TRIALS = flags.DEFINE_integer(
    "max_trials", None, "At most this many trials measured (in the whole study).", lower_bound=1
)
_STORAGE = flags.DEFINE_string(
    "storage",
    None,
    "Optuna storage URL: postgresql://user:password@host:5432/db to share the study "
    "between workers (default: sqlite:///OUTPUT_DIR/study.db).",
)
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seeds training, benchmark inputs and the sampler.", lower_bound=0
)
_JSON = flags.DEFINE_string("json", None, "Also write summary.json's content to this file.")


def main(argv: Sequence[str]) -> None:
    del argv
    from edgekit.tuning import (
        search,
    )  # here, not at the top: --help stays instant (no Optuna, no TF)

    remote = {
        k: v
        for k, v in (
            ("ssh_key", _SSH_KEY.value),
            ("ssh_options", tuple(_SSH_OPTION.value)),
            ("remote_python", _REMOTE_PYTHON.value),
        )
        if v
    }
    if remote and not _TARGET.value:
        raise errors.UserInputError(
            "--ssh_key, --ssh_option and --remote_python set how the device is reached, so "
            "they need --target=ssh://user@host[:port]. "
            + errors.received(target=_TARGET.value, **{k: str(v) for k, v in remote.items()})
        )
    benchmark = dataclasses.replace(search.DEFAULT_BENCHMARK, **remote) if remote else None
    result = search.tune(
        _MODEL.value,
        data=_DATA.value,
        eval_data=_EVAL_DATA.value,
        output_dir=_OUTPUT_DIR.value,
        max_accuracy_drop=_MAX_DROP.value,
        max_size_kb=_MAX_SIZE.value,
        max_latency_ms=_MAX_LATENCY.value,
        max_peak_memory_mb=_MAX_MEMORY.value,
        integer_only=_INTEGER_ONLY.value,
        objective=_OBJECTIVE.value,
        target=_TARGET.value,
        num_threads=_THREADS.value,
        budget_minutes=_BUDGET.value,
        max_trials=_MAX_TRIALS.value,
        storage=_STORAGE.value,
        seed=_SEED.value,
        benchmark=benchmark,
    )
    if _JSON.value:
        from edgekit import io

        io.write_json(_JSON.value, result.summary, overwrite=True)
    print(format_result(result.summary, result.output_dir))
    if not result.met:
        sys.exit(1)


def format_result(s: dict, output_dir: str) -> str:
    """The closing lines: the chosen candidate, or the closest per constraint."""
    out = [""]
    if s.get("constraints_met"):
        acc = s.get("accuracy")
        out.append(
            f"Chosen: {s['candidate']} (trial {s['trial']}): "
            + (f"accuracy {100 * acc:.2f}%, " if acc is not None else "")
            + f"{s['size_bytes'] / 1024:.1f} KB, p50 {s['latency_us']['p50']:.1f} us "
            f"(float32 {s['float_latency_us']['p50']:.1f} us, noise band "
            f"{100 * s['noise_band']:.1f}%)"
        )
        met = [n for n, c in (s.get("constraints") or {}).items() if c["met"]]
        if met:
            out.append(f"Meets: {', '.join(met)}")
        ref = s.get("built_in_reference")
        if ref:
            verdicts = ", ".join(f"{o} {v}" for o, v in ref["chosen_is"].items())
            out.append(f"Against the best built-in recipe ({ref['candidate']}): {verdicts}")
        out.append(
            f"Wrote {output_dir}/: best.tflite, best_recipe.json, summary.json, pareto.json, "
            "trials.jsonl, report.html"
        )
    else:
        out.append("No candidate meets every constraint. The closest per constraint:")
        for name, c in (s.get("closest") or {}).items():
            out.append(f"  {name}: {c['candidate']} at {c['value']:.4g} (limit {c['limit']:.4g})")
        out.append(f"Wrote {output_dir}/: summary.json, pareto.json, trials.jsonl, report.html")
    for n in s.get("notes") or ():
        out.append(f"Note: {n}")
    return "\n".join(out) + (
        "\n" + json.dumps({"trials": s.get("trials")}) if s.get("trials") else ""
    )


def run() -> None:
    _common.run(main, required=("model", "data", "output_dir"))


if __name__ == "__main__":
    run()
