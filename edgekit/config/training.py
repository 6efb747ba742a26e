"""Configs of the training-time techniques: fine-tuning, prune, cluster, QAT, distill."""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any

from edgekit import errors
from edgekit.config import base


class Strategy(str, enum.Enum):
    """The `tf.distribute` strategy that fine-tuning runs under.

    DEFAULT: one device. MIRRORED: every local device (GPUs, or logical CPUs), one
    replica each. MULTI_WORKER: several processes, each reads `TF_CONFIG`.
    """

    DEFAULT = "default"
    MIRRORED = "mirrored"
    MULTI_WORKER = "multi_worker"


class PruneSchedule(str, enum.Enum):
    """How sparsity grows during pruning: POLYNOMIAL ramps from `initial_sparsity`
    up to the target (gentle, keeps accuracy); CONSTANT holds the target from the start."""

    POLYNOMIAL = "polynomial"
    CONSTANT = "constant"


class ClusterInit(str, enum.Enum):
    """How cluster centroids start (TF-MOT's `CentroidInitialization`)."""

    KMEANS_PLUS_PLUS = "kmeans++"
    LINEAR = "linear"
    RANDOM = "random"
    DENSITY = "density"


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(base.is_whole(v, 1) for v in value)


@dataclasses.dataclass(frozen=True)
class FitConfig(base.Config):
    """How a training-time technique fine-tunes the model.

    Attributes:
      epochs: passes over the data.
      steps_per_epoch: batches per epoch; None for one pass over the data (the data
        repeats when more steps than one pass are asked for).
      batch_size: global batch size (split over the replicas of the strategy).
      optimizer: a tf_keras optimizer name ('adam', 'sgd', 'rmsprop', ...).
      learning_rate: fine-tuning needs a small one; 1e-4 is a safe start after training.
      strategy: the `tf.distribute` strategy (see `Strategy`).
      log_dir: write TensorBoard summaries (and pruning summaries) here; None for none.
      seed: seed for weight init, shuffling and dropout; None leaves them random.
      verbose: Keras fit verbosity (0 silent, 1 progress bar, 2 one line per epoch).
      val_split: the share of the training data held out (stratified by class,
        seeded, never trained on) to measure accuracy before and after training when
        no val_data is given. None: 10% when the data has at least 200 samples, else
        nothing is held out and the validation is not measured (a few samples cannot
        resolve a 1-point drop); 0 turns the measurement off.
      max_accuracy_drop: the accuracy drop (in points) on the held-out data above
        which training ends with a warning naming the cause and the fix.
      fail_on_accuracy_drop: such a drop raises `validation.AccuracyDropError` (the
        commands write their outputs, then exit with status 1).
    """

    epochs: int = 2
    steps_per_epoch: int | None = None
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-4
    strategy: Strategy = Strategy.DEFAULT
    log_dir: str | None = None
    seed: int | None = 0
    verbose: int = 0
    val_split: float | None = None
    max_accuracy_drop: float = 1.0
    fail_on_accuracy_drop: bool = False

    def __post_init__(self) -> None:
        self._coerce_enums()
        base.check(
            base.is_whole(self.epochs, 1), "epochs must be a whole number >= 1.", epochs=self.epochs
        )
        base.check(
            self.val_split is None
            or (
                isinstance(self.val_split, (int, float))
                and not isinstance(self.val_split, bool)
                and 0 <= self.val_split <= 0.5
            ),
            "val_split must be None (10% of data with 200+ samples), 0 (no measurement) or a "
            "fraction in (0, 0.5] of the training data to hold out.",
            val_split=self.val_split,
        )
        base.check(
            isinstance(self.max_accuracy_drop, (int, float))
            and not isinstance(self.max_accuracy_drop, bool)
            and 0 <= self.max_accuracy_drop <= 100,
            "max_accuracy_drop must be a number of accuracy points in [0, 100] (1.0 warns "
            "when held-out accuracy falls by more than one point).",
            max_accuracy_drop=self.max_accuracy_drop,
        )
        base.check(
            isinstance(self.fail_on_accuracy_drop, bool),
            "fail_on_accuracy_drop must be true or false.",
            fail_on_accuracy_drop=self.fail_on_accuracy_drop,
        )
        base.check(
            self.steps_per_epoch is None or base.is_whole(self.steps_per_epoch, 1),
            "steps_per_epoch must be None (one pass over the data) or a whole number >= 1.",
            steps_per_epoch=self.steps_per_epoch,
        )
        base.check(
            base.is_whole(self.batch_size, 1),
            "batch_size must be a whole number >= 1 (32 is typical).",
            batch_size=self.batch_size,
        )
        base.check(
            isinstance(self.optimizer, str) and bool(self.optimizer),
            "optimizer must be a tf_keras optimizer name such as 'adam' or 'sgd'.",
            optimizer=self.optimizer,
        )
        base.check(
            isinstance(self.learning_rate, (int, float))
            and not isinstance(self.learning_rate, bool)
            and 0 < self.learning_rate < 10,
            "learning_rate must be a number > 0 (fine-tuning usually uses 1e-5 to 1e-3).",
            learning_rate=self.learning_rate,
        )
        base.check(
            self.log_dir is None or (isinstance(self.log_dir, str) and bool(self.log_dir)),
            "log_dir must be None or a folder path.",
            log_dir=self.log_dir,
        )
        base.check(
            self.seed is None or base.is_whole(self.seed, 0),
            "seed must be None or a whole number >= 0.",
            seed=self.seed,
        )
        base.check(self.verbose in (0, 1, 2), "verbose must be 0, 1 or 2.", verbose=self.verbose)


# Layer selection, shared by the training-time techniques. Depthwise convolutions
# and the first layer hold few weights but carry much of the accuracy; leaving them
# out is what kept 96-99% accuracy where pruning everything fell to 60%.
_DEFAULT_SKIP_TYPES = ("DepthwiseConv2D",)


def _check_selection(cfg: Any) -> None:
    for name in ("layers", "exclude_layers"):
        pattern = getattr(cfg, name)
        base.check(
            pattern is None or isinstance(pattern, str),
            f"{name} must be None or a regular expression matched against layer names.",
            **{name: pattern},
        )
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as e:
                raise errors.UserInputError(
                    f"{name} is not a valid regular expression ({e}). "
                    + errors.received(**{name: pattern})
                ) from None
    for name in ("layer_types", "skip_types"):
        value = getattr(cfg, name)
        base.check(
            isinstance(value, tuple) and all(isinstance(v, str) and v for v in value),
            f"{name} must be a list of layer class names such as ['Conv2D', 'Dense'].",
            **{name: value},
        )


@dataclasses.dataclass(frozen=True)
class PruneConfig(base.Config):
    """Magnitude pruning (TF-MOT `prune_low_magnitude`) and which layers it touches.

    Attributes:
      target_sparsity: fraction of weights set to zero in each pruned layer, in [0, 1).
      schedule: POLYNOMIAL (ramp up, the default) or CONSTANT.
      initial_sparsity: where the polynomial ramp starts.
      begin_fraction: fraction of the training steps before pruning starts.
      end_fraction: fraction of the training steps at which the target is reached;
        the steps after it let the model recover at the final sparsity.
      frequency: prune every this many steps; None picks one that works for the
        actual number of steps (TF-MOT's 100 prunes nothing in a short run).
      m_by_n: structured sparsity as TF-MOT defines it: (m, n) zeroes m of every n
        consecutive weights along the input channels, e.g. (2, 4) (sparsity m/n);
        replaces target_sparsity and schedule.
      block_size: prune (rows, cols) blocks of weights together, e.g. (1, 4).
      xnnpack_policy: apply TF-MOT's `PruneForLatencyOnXNNPack` policy (prunes only
        1x1 convolutions in a pattern XNNPack's sparse kernels can run fast).
      layers: regular expression; only layers whose names match are pruned.
      exclude_layers: regular expression; layers whose names match are left alone.
      layer_types: only these layer classes are pruned; empty for every prunable one.
      skip_types: these layer classes are left alone.
      skip_first: leave the first prunable layer alone.
      skip_last: leave the last prunable layer alone.
    """

    target_sparsity: float = 0.5
    schedule: PruneSchedule = PruneSchedule.POLYNOMIAL
    initial_sparsity: float = 0.0
    begin_fraction: float = 0.0
    end_fraction: float = 0.7
    frequency: int | None = None
    m_by_n: tuple[int, int] | None = None
    block_size: tuple[int, int] = (1, 1)
    xnnpack_policy: bool = False
    layers: str | None = None
    exclude_layers: str | None = None
    layer_types: tuple[str, ...] = ()
    skip_types: tuple[str, ...] = _DEFAULT_SKIP_TYPES
    skip_first: bool = True
    skip_last: bool = False

    def __post_init__(self) -> None:
        self._coerce_enums()
        base.check(
            isinstance(self.target_sparsity, (int, float))
            and not isinstance(self.target_sparsity, bool)
            and 0 <= self.target_sparsity < 1,
            "target_sparsity must be a fraction in [0, 1): 0.5 zeroes half the weights, "
            "0.8 four fifths; 1.0 would zero everything.",
            target_sparsity=self.target_sparsity,
        )
        base.check(
            isinstance(self.initial_sparsity, (int, float))
            and 0 <= self.initial_sparsity <= self.target_sparsity,
            "initial_sparsity must be in [0, target_sparsity].",
            initial_sparsity=self.initial_sparsity,
            target_sparsity=self.target_sparsity,
        )
        base.check(
            isinstance(self.begin_fraction, (int, float))
            and isinstance(self.end_fraction, (int, float))
            and 0 <= self.begin_fraction < self.end_fraction <= 1,
            "begin_fraction and end_fraction must satisfy 0 <= begin < end <= 1 (fractions "
            "of the training steps).",
            begin_fraction=self.begin_fraction,
            end_fraction=self.end_fraction,
        )
        base.check(
            self.frequency is None or base.is_whole(self.frequency, 1),
            "frequency must be None (chosen from the number of steps) or a whole number >= 1.",
            frequency=self.frequency,
        )
        if self.m_by_n is not None:
            base.check(
                _is_pair(self.m_by_n) and self.m_by_n[1] > self.m_by_n[0],
                "m_by_n must be two whole numbers (m, n) with 0 < m < n, such as (2, 4): m "
                "zero weights in every n consecutive ones.",
                m_by_n=self.m_by_n,
            )
        base.check(
            _is_pair(self.block_size),
            "block_size must be two whole numbers (rows, cols) >= 1, such as (1, 4).",
            block_size=self.block_size,
        )
        base.check(
            self.m_by_n is None or self.block_size == (1, 1),
            "m_by_n and block_size cannot be combined; choose one kind of structure.",
            m_by_n=self.m_by_n,
            block_size=self.block_size,
        )
        _check_selection(self)


@dataclasses.dataclass(frozen=True)
class ClusterConfig(base.Config):
    """Weight clustering (TF-MOT `cluster_weights`) and which layers it touches.

    Attributes:
      num_clusters: unique values per weight tensor (per channel with per_channel).
      init: how centroids start (see `ClusterInit`).
      per_channel: cluster each output channel of a Conv2D separately.
      preserve_sparsity: keep zero weights zero (after pruning).
      layers, exclude_layers, layer_types, skip_types, skip_first, skip_last: which
        layers are clustered, as in `PruneConfig`.
    """

    num_clusters: int = 16
    init: ClusterInit = ClusterInit.KMEANS_PLUS_PLUS
    per_channel: bool = False
    preserve_sparsity: bool = False
    layers: str | None = None
    exclude_layers: str | None = None
    layer_types: tuple[str, ...] = ()
    skip_types: tuple[str, ...] = _DEFAULT_SKIP_TYPES
    skip_first: bool = True
    skip_last: bool = False

    def __post_init__(self) -> None:
        self._coerce_enums()
        base.check(
            base.is_whole(self.num_clusters, 2),
            "num_clusters must be a whole number >= 2 (16 is typical; 8 for more compression).",
            num_clusters=self.num_clusters,
        )
        base.check(
            not self.preserve_sparsity or self.num_clusters >= 3,
            "preserve_sparsity keeps one cluster for the zeros, so num_clusters must be >= 3.",
            num_clusters=self.num_clusters,
            preserve_sparsity=self.preserve_sparsity,
        )
        _check_selection(self)


class QATPreserve(str, enum.Enum):
    """What quantization-aware training keeps from an earlier compression step.

    NONE: plain 8-bit QAT. SPARSITY: keep the zeros of a pruned model
    (TF-MOT `Default8BitPrunePreserveQuantizeScheme`). CLUSTERS: keep the centroids
    of a clustered model (`Default8BitClusterPreserveQuantizeScheme`). BOTH: keep
    centroids and zeros of a pruned-then-clustered model (the cluster scheme with
    `preserve_sparsity=True`).
    """

    NONE = "none"
    SPARSITY = "sparsity"
    CLUSTERS = "clusters"
    BOTH = "both"


@dataclasses.dataclass(frozen=True)
class QATConfig(base.Config):
    """Quantization-aware training (TF-MOT default 8-bit scheme) and its layer choice.

    Every layer TF-MOT supports is quantized; edgekit adds output-only configs for
    layers TF-MOT refuses (Rescaling, Normalization, standalone BatchNormalization,
    Multiply, ...) and rewrites scalar `TFOpLambda` ops into built-in layers. Layers
    left out stay float during training (the int8 converter calibrates them).

    Attributes:
      preserve: what to keep from pruning/clustering (see `QATPreserve`).
      rewrite_ops: rewrite `x + c`, `x * c`, `x - c`, `x / c` and `tf.nn.relu/relu6`
        op layers into `Rescaling`/`ReLU`, so they are quantized and the model has no
        op layers; and split layers that become a multiply and an add in TFLite
        (Rescaling with scale and offset, Normalization, standalone
        BatchNormalization, whose statistics are then frozen) into a scale and a
        shift layer, and make sigmoid and swish (`sigmoid * x`) explicit layers with
        the sigmoid's output on TFLite's fixed int8 grid, so every op gets a trained
        range and the int8 file needs no calibration.
      exclude_layers: regular expression; layers whose names match stay float.
      skip_types: these layer class names stay float.
      init_ranges: before training, set every activation range from one pass over
        the data (TF-MOT starts them at [-6, 6] and moves them 0.1% per step, so a
        short fine-tune would keep the guess).
    """

    preserve: QATPreserve = QATPreserve.NONE
    rewrite_ops: bool = True
    init_ranges: bool = True
    exclude_layers: str | None = None
    skip_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._coerce_enums()
        base.check(
            isinstance(self.rewrite_ops, bool),
            "rewrite_ops must be true or false.",
            rewrite_ops=self.rewrite_ops,
        )
        base.check(
            isinstance(self.init_ranges, bool),
            "init_ranges must be true or false.",
            init_ranges=self.init_ranges,
        )
        base.check(
            isinstance(self.skip_types, tuple)
            and all(isinstance(v, str) and v for v in self.skip_types),
            "skip_types must be a list of layer class names such as ['Dense'].",
            skip_types=self.skip_types,
        )
        if self.exclude_layers is not None:
            try:
                re.compile(self.exclude_layers)
            except (re.error, TypeError) as e:
                raise errors.UserInputError(
                    f"exclude_layers must be a regular expression matched against layer "
                    f"names ({e}). " + errors.received(exclude_layers=self.exclude_layers)
                ) from None


def _feature_pair(value: Any) -> tuple[str, str] | None:
    if isinstance(value, str) and value:
        parts = value.split(":")
        if len(parts) == 1:
            return value, value
        if len(parts) == 2 and all(parts):
            return parts[0], parts[1]
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        if all(isinstance(v, str) and v for v in value):
            return value[0], value[1]
    return None


@dataclasses.dataclass(frozen=True)
class DistillConfig(base.Config):
    """Knowledge distillation (Hinton et al.) from a teacher into a smaller student.

    The loss is `alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) *
    CE(labels, s) + feature_weight * MSE(features)`, on logits t and s.

    Attributes:
      temperature: T, > 0; softens both distributions (2-8 is typical).
      alpha: weight of the soft-target term in [0, 1]; 1 - alpha weighs the
        hard-label loss. Without labels only the soft term is used.
      feature_layers: intermediate layers to match, each "teacher_layer:student_layer"
        (or one name for both, or a pair); a learned 1x1 conv / dense projection maps
        the student's features to the teacher's channels when they differ.
      feature_weight: weight of the feature-matching (mean squared error) term, >= 0.
      cache_teacher: compute the teacher's outputs once per (data, teacher) and reuse them.
      cache_dir: keep that cache on disk here; None keeps it in memory.
      decay_learning_rate: cosine-decay the learning rate to zero over the run
        (steadier batch-norm statistics for a student trained from scratch).
      recalibrate_batch_norm: after training, set every BatchNormalization's moving
        statistics to their exact values on the training inputs (a student trained
        for a few hundred steps otherwise keeps mostly their initial guess).
      mixed_inputs: add this many mixed inputs per training input: convex combinations
        of two random training inputs, which the teacher's soft targets alone label
        (no new data or labels; the number of steps stays that of the original data).
    """

    temperature: float = 4.0
    alpha: float = 0.9
    feature_layers: tuple[tuple[str, str], ...] = ()
    feature_weight: float = 1.0
    cache_teacher: bool = True
    cache_dir: str | None = None
    decay_learning_rate: bool = True
    recalibrate_batch_norm: bool = True
    mixed_inputs: int = 0

    def __post_init__(self) -> None:
        self._coerce_enums()
        base.check(
            base.is_whole(self.mixed_inputs, 0) and self.mixed_inputs <= 64,
            "mixed_inputs must be a whole number in [0, 64] (mixed copies per input; 5 is "
            "a good start with a few hundred samples).",
            mixed_inputs=self.mixed_inputs,
        )
        is_tuple = isinstance(self.feature_layers, tuple)
        pairs = tuple(_feature_pair(v) for v in self.feature_layers) if is_tuple else ()
        base.check(
            is_tuple and all(p is not None for p in pairs),
            "feature_layers must be a list of 'teacher_layer:student_layer' strings (or one "
            "layer name shared by both models).",
            feature_layers=self.feature_layers,
        )
        object.__setattr__(self, "feature_layers", pairs)
        base.check(
            isinstance(self.temperature, (int, float))
            and not isinstance(self.temperature, bool)
            and 0 < self.temperature < 1e4,
            "temperature must be a number > 0 (1 leaves the outputs as they are; 2-8 softens "
            "them, which is what distillation needs).",
            temperature=self.temperature,
        )
        base.check(
            isinstance(self.alpha, (int, float))
            and not isinstance(self.alpha, bool)
            and 0 <= self.alpha <= 1,
            "alpha must be in [0, 1]: the weight of the teacher's soft targets; 1 - alpha "
            "weighs the hard labels (0.9 is a good start with few labels).",
            alpha=self.alpha,
        )
        base.check(
            isinstance(self.feature_weight, (int, float))
            and not isinstance(self.feature_weight, bool)
            and self.feature_weight >= 0,
            "feature_weight must be a number >= 0.",
            feature_weight=self.feature_weight,
        )
        base.check(
            self.cache_dir is None or (isinstance(self.cache_dir, str) and bool(self.cache_dir)),
            "cache_dir must be None (cache in memory) or a folder path.",
            cache_dir=self.cache_dir,
        )
