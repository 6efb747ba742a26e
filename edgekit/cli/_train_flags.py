"""Flags every training-time command shares (edgekit-prune, -cluster, -qat).

Importing this module defines the flags; each command adds its own. `fit_config()`
turns them into a `FitConfig`, `check_outputs()` refuses existing outputs before
any training, and `write_outputs()` saves the model and the JSON report (only on
the chief worker under `--strategy=multi_worker`).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import warnings
from typing import Any

from absl import flags
from absl import logging as absl_logging

from edgekit import errors
from edgekit.cli import _common
from edgekit.config import FitConfig, Strategy

_MODEL = flags.DEFINE_string("model", None, "Keras model to optimize: .keras, .h5 or SavedModel.")
_DATA = flags.DEFINE_string(
    "data", None, "Labelled training data: .npz with 'x' and 'y', or an image folder."
)
_VAL_DATA = flags.DEFINE_string(
    "val_data",
    None,
    "Labelled held-out data (.npz like --data): accuracy is measured on it before and after "
    "training. Default: a stratified split of --data (see --val_split), never trained on.",
)
_VAL_SPLIT = flags.DEFINE_float(
    "val_split",
    None,
    "Share of --data held out to measure accuracy when --val_data is not given. Default: "
    "0.1 when --data has 200+ samples, else no measurement; 0 turns it off.",
    lower_bound=0.0,
    upper_bound=0.5,
)
_MAX_DROP = flags.DEFINE_float(
    "max_accuracy_drop",
    1.0,
    "Warn (with the cause and the fix) when held-out accuracy falls by more than this many points.",
    lower_bound=0.0,
    upper_bound=100.0,
)
_FAIL_ON_DROP = flags.DEFINE_bool(
    "fail_on_accuracy_drop",
    False,
    "Exit with status 1 after such a drop (the model and --json are still written, for a "
    "look at what went wrong).",
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Fine-tuning epochs (default: the technique's own).", lower_bound=1
)
_STEPS = flags.DEFINE_integer(
    "steps_per_epoch", None, "Batches per epoch (default: one pass over the data).", lower_bound=1
)
_BATCH = flags.DEFINE_integer("batch_size", 32, "Global batch size.", lower_bound=1)
_LR = flags.DEFINE_float(
    "learning_rate",
    None,
    "Fine-tuning learning rate (default: the technique's own).",
    lower_bound=0.0,
)
_OPTIMIZER = flags.DEFINE_string("optimizer", "adam", "tf_keras optimizer name.")
_STRATEGY = flags.DEFINE_enum_class(
    "strategy",
    Strategy.DEFAULT,
    Strategy,
    "tf.distribute strategy: default (one device), mirrored (all local devices), "
    "multi_worker (one process per worker, each with TF_CONFIG).",
    case_sensitive=False,
)
# --log_dir is absl.logging's own flag (absl writes log files there only when asked
# to, which edgekit never does); the training commands use it for TensorBoard.
absl_logging.get_absl_handler()  # make sure absl.logging defined --log_dir


def _log_dir() -> str | None:
    return flags.FLAGS["log_dir"].value or None


_SEED = flags.DEFINE_integer("seed", 0, "Seed for weights, shuffling and dropout.", lower_bound=0)
_OUTPUT = flags.DEFINE_string("output", None, "Where to save the optimized model (.keras or .h5).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace outputs that already exist.")
_JSON = flags.DEFINE_string("json", None, "Also write the report as JSON here.")
_ALLOW_UNSAFE = flags.DEFINE_bool(
    "allow_unsafe_deserialization",
    False,
    "Load models with Lambda layers (runs code from the file).",
)


def fit_config(defaults: FitConfig | None = None) -> FitConfig:
    """The `FitConfig` the shared flags describe.

    Args:
      defaults: the technique's default fine-tuning (e.g. `prune.DEFAULT_FIT`);
        --epochs and --learning_rate fall back to it when not given.
    """
    defaults = defaults or FitConfig()
    return FitConfig(
        epochs=_EPOCHS.value if _EPOCHS.value is not None else defaults.epochs,
        steps_per_epoch=_STEPS.value,
        batch_size=_BATCH.value,
        optimizer=_OPTIMIZER.value,
        learning_rate=_LR.value if _LR.value is not None else defaults.learning_rate,
        strategy=_STRATEGY.value,
        log_dir=_log_dir(),
        seed=_SEED.value,
        verbose=2,
        val_split=_VAL_SPLIT.value,
        max_accuracy_drop=_MAX_DROP.value,
        fail_on_accuracy_drop=_FAIL_ON_DROP.value,
    )


def model_path() -> str:
    """--model, checked to be set."""
    _common.require("model")
    return _MODEL.value


def data_path() -> str:
    """--data, checked to be set."""
    _common.require("data")
    return _DATA.value


def val_data_path() -> str | None:
    return _VAL_DATA.value


def allow_unsafe() -> bool:
    return _ALLOW_UNSAFE.value


def output_path() -> str:
    """--output, checked to be set."""
    _common.require("output")
    return _OUTPUT.value


def json_path() -> str | None:
    return _JSON.value


def load_data(path: str, *, what: str) -> Any:
    """Loads labelled data with `edgekit.data.load`, without touching TensorFlow for .npz."""
    from edgekit import data

    if not pathlib.Path(path).exists():
        raise errors.UserInputError(
            f"No {what} at {path!r}: the path does not exist. " + errors.received(**{what: path})
        )
    return data.load(path, require_labels=True)


def is_chief() -> bool:
    """False on the non-chief workers of a multi-worker run (they write nothing)."""
    if _STRATEGY.value is not Strategy.MULTI_WORKER:
        return True
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    except json.JSONDecodeError:
        return True
    return task.get("type", "worker") in ("chief", "worker") and (
        task.get("type") == "chief" or int(task.get("index", 0)) == 0
    )


def check_outputs() -> None:
    """Refuses existing --output/--json files (unless --overwrite) before any work."""
    from edgekit import io

    if not is_chief():
        return
    output = output_path()
    if pathlib.Path(output).suffix not in (".keras", ".h5"):
        raise errors.UserInputError(
            "--output must end in .keras (recommended) or .h5. " + errors.received(output=output)
        )
    io.check_output_path(output, overwrite=_OVERWRITE.value, what="output")
    if _JSON.value:
        io.check_output_path(_JSON.value, overwrite=_OVERWRITE.value, what="JSON report")


def write_outputs(model: Any, report: Any) -> bool:
    """Saves the model and the JSON report on the chief; returns whether it wrote."""
    from edgekit import io

    if not is_chief():
        return False
    io.save_model(model, output_path(), overwrite=_OVERWRITE.value)
    if _JSON.value:
        payload = {"output": output_path(), **report.to_dict()}
        io.write_json(_JSON.value, payload, overwrite=_OVERWRITE.value)
    return True


def train(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any, bool]:
    """Calls a technique; returns (model, report, whether --fail_on_accuracy_drop failed it).

    The library's `AccuracyDropWarning` is silenced: `print_validation` prints the
    warning as the command's last word, where a user reads it.
    """
    from edgekit.optimize import validation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", validation.AccuracyDropWarning)
        try:
            model, report = fn(*args, **kwargs)
        except validation.AccuracyDropError as e:
            return e.model, e.report, True
    return model, report, False


def print_validation(report: Any, failed: bool) -> None:
    """Prints the held-out accuracy before and after, the WARNING of a drop; exits 1 if failed.

    Called after the outputs are written: with --fail_on_accuracy_drop a script gets
    exit status 1, and the model and --json report are there to look at.
    """
    check = getattr(report, "validation", None)
    if not check:
        return
    if check["samples"]:
        name = "accuracy" if check["metric"] == "accuracy" else check["metric"].replace("_", " ")
        where = (
            "--val_data"
            if check["source"] == "val_data"
            else f"{100 * check['split_fraction']:g}% of --data, kept out of training"
        )
        print(
            f"Held-out {name}: {100 * check['accuracy_before']:.2f}% before, "
            f"{100 * check['accuracy_after']:.2f}% after ({-check['drop_points']:+.2f} points) "
            f"on {check['samples']} samples ({where})."
        )
    else:
        print(f"Held-out accuracy {check['note']}")
    if check["warning"]:
        print(f"WARNING: {check['warning']}", flush=True)
    if failed:
        print(
            "error: the accuracy drop is past --max_accuracy_drop and --fail_on_accuracy_drop "
            "is set: exit status 1 (the outputs were written, to look at).",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)


def start_strategy(fit: FitConfig) -> None:
    """Creates the strategy before anything runs TensorFlow (multi_worker needs that)."""
    from edgekit.optimize import strategy

    strategy.get_strategy(fit.strategy)


def print_layers(report: Any, *, value: str) -> None:
    """Prints the per-layer table of a prune/cluster report."""
    from edgekit.cli import _common

    rows = [
        [s.name, s.type, "yes" if s.compressed else "no", s.num_weights, getattr(s, value)]
        for s in report.layers
    ]
    _common.print_table(rows, ["layer", "type", "optimized", "weights", value])
    for s in report.skipped:
        print(f"  left alone: {s.name} ({s.type}): {s.reason}")
