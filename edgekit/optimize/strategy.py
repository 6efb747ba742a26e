"""The `tf.distribute` strategy fine-tuning runs under: default, mirrored or multi-worker.

Example:
    >>> strategy = get_strategy("mirrored")
    >>> with strategy.scope():
    ...     model = build()
"""

from __future__ import annotations

import json
import os
from typing import Any

from edgekit import _compat, errors
from edgekit import config as config_lib

_STRATEGIES: dict[config_lib.Strategy, Any] = {}


def get_strategy(strategy: config_lib.Strategy | str) -> Any:
    """Returns the process's `tf.distribute` strategy of this kind, creating it once.

    A multi-worker strategy must exist before TensorFlow runs any op in the process,
    so the techniques call this first, before loading the model. A script that
    builds its model in memory calls `get_strategy("multi_worker")` at its start.
    """
    strategy = config_lib.Strategy(strategy)
    if strategy is config_lib.Strategy.DEFAULT:
        return make_strategy(strategy)
    if strategy not in _STRATEGIES:
        _STRATEGIES[strategy] = make_strategy(strategy)
    return _STRATEGIES[strategy]


def make_strategy(strategy: config_lib.Strategy | str) -> Any:
    """Creates the `tf.distribute` strategy; checks TF_CONFIG for multi_worker first."""
    tf = _compat.tf()
    strategy = config_lib.Strategy(strategy)
    if strategy is config_lib.Strategy.DEFAULT:
        return tf.distribute.get_strategy()
    if strategy is config_lib.Strategy.MIRRORED:
        # The default collective all-reduce packs gradients per replica, and TF-MOT's
        # clustering gradients then pack differently on different replicas ("shape
        # mismatch in the collective instance"). Reducing on one device is robust.
        return tf.distribute.MirroredStrategy(cross_device_ops=tf.distribute.ReductionToOneDevice())
    raw = os.environ.get("TF_CONFIG")
    try:
        tf_config = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        tf_config = None
    if not isinstance(tf_config, dict) or "cluster" not in tf_config or "task" not in tf_config:
        raise errors.UserInputError(
            "strategy='multi_worker' runs one process per worker, and each needs the "
            'TF_CONFIG environment variable, e.g. TF_CONFIG=\'{"cluster": {"worker": '
            '["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}\'. '
            "Set it in every worker, or use strategy='default' or 'mirrored'. "
            + errors.received(TF_CONFIG=raw)
        )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as e:
        raise errors.UserInputError(
            f"Could not start the multi-worker strategy ({e}). It must be created before "
            "TensorFlow runs anything else in the process: pass the model as a path (edgekit "
            "then starts the strategy before loading it), or call edgekit.optimize.strategy."
            "get_strategy('multi_worker') first thing in the script. "
            + errors.received(strategy="multi_worker")
        ) from None
