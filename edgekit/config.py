"""String enums and frozen, validated dataclasses for every stage.

Every config round-trips through JSON: `Config.from_dict(c.to_dict()) == c`.
`from_dict` rejects unknown fields (naming the known ones), so a typo in a recipe
never silently falls back to a default; fields added later get defaults, so older
files keep loading.

Example:
    >>> cfg = ConvertConfig(mode="int8", io_type="uint8")
    >>> cfg.to_dict()["mode"]
    'int8'
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from typing import Any, TypeVar

from edgekit import errors

_T = TypeVar("_T", bound="_Config")


class ConvertMode(str, enum.Enum):
    """Post-training conversion modes.

    FLOAT32: no quantization. DYNAMIC: int8 weights, float activations (no data
    needed). FLOAT16: float16 weights, dequantized on load. INT8: full integer;
    every op int8 (needs calibration data). INT8_FLOAT_FALLBACK: integer where the
    op has an int8 kernel, float elsewhere. INT16X8: int16 activations, int8 weights.
    """

    FLOAT32 = "float32"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    INT8 = "int8"
    INT8_FLOAT_FALLBACK = "int8_float_fallback"
    INT16X8 = "int16x8"

    @property
    def needs_calibration(self) -> bool:
        return self in (ConvertMode.INT8, ConvertMode.INT8_FLOAT_FALLBACK, ConvertMode.INT16X8)


class IOType(str, enum.Enum):
    """The dtype of a converted model's inputs and outputs."""

    FLOAT32 = "float32"
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"


class Backend(str, enum.Enum):
    """Who quantizes: TensorFlow's TFLite converter, or LiteRT Quantizer (on a float .tflite)."""

    CONVERTER = "converter"
    LITERT_QUANTIZER = "litert_quantizer"


# Every scheme (LiteRT Quantizer's recipe names), the mode of the file it makes, and
# the backends that offer it. The converter makes three of them as its own modes.
SCHEMES = {
    "static_wi8_ai8": (ConvertMode.INT8, (Backend.CONVERTER, Backend.LITERT_QUANTIZER)),
    "static_wi8_ai16": (ConvertMode.INT16X8, (Backend.CONVERTER, Backend.LITERT_QUANTIZER)),
    "dynamic_wi8_afp32": (ConvertMode.DYNAMIC, (Backend.CONVERTER, Backend.LITERT_QUANTIZER)),
    "dynamic_wi4_afp32": (ConvertMode.DYNAMIC, (Backend.LITERT_QUANTIZER,)),
    "weight_only_wi8_afp32": (ConvertMode.DYNAMIC, (Backend.LITERT_QUANTIZER,)),
    "weight_only_wi4_afp32": (ConvertMode.DYNAMIC, (Backend.LITERT_QUANTIZER,)),
}
BLOCK_SIZES = (32, 64, 128, 256)


# Which input/output types each mode can produce. The converter itself would
# accept some odd pairs and then fail late or silently keep float; refuse early.
_IO_TYPES_BY_MODE = {
    ConvertMode.FLOAT32: (IOType.FLOAT32,),
    ConvertMode.DYNAMIC: (IOType.FLOAT32,),
    ConvertMode.FLOAT16: (IOType.FLOAT32,),
    ConvertMode.INT8: (IOType.FLOAT32, IOType.INT8, IOType.UINT8),
    ConvertMode.INT8_FLOAT_FALLBACK: (IOType.FLOAT32,),
    ConvertMode.INT16X8: (IOType.FLOAT32, IOType.INT16),
}


def _coerce_enum(cls: type[enum.Enum], value: Any, name: str) -> enum.Enum:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(repr(m.value) for m in cls)
        raise errors.UserInputError(
            f"Unknown {name}: expected one of {known}. " + errors.received(**{name: value})
        ) from None


class _Config:
    """Mixin: JSON round-trip and enum coercion for the frozen dataclasses below."""

    def _coerce_enums(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            hint = hints[field.name]
            enum_cls = _enum_in(hint)
            value = getattr(self, field.name)
            if enum_cls is not None and value is not None:
                object.__setattr__(self, field.name, _coerce_enum(enum_cls, value, field.name))
            elif isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict (enums as their string values, tuples as lists)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            out[field.name] = _to_jsonable(getattr(self, field.name))
        return out

    @classmethod
    def from_dict(cls: type[_T], data: dict[str, Any] | None) -> _T:
        """Builds the config from a dict, rejecting unknown fields."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise errors.UserInputError(
                f"{cls.__name__} must be a JSON object. " + errors.received(data=data)
            )
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise errors.UserInputError(
                f"Unknown field(s) {unknown} in {cls.__name__}. Known fields: "
                f"{sorted(known)}. Check the spelling or remove them. "
                + errors.received(fields=unknown)
            )
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in data.items():
            sub = _dataclass_in(hints[name])
            if sub is not None and isinstance(value, dict):
                value = sub.from_dict(value)
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise errors.UserInputError(
                f"Could not build {cls.__name__}: {e}. " + errors.received(data=data)
            ) from None


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    return value


def _type_args(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _enum_in(hint: Any) -> type[enum.Enum] | None:
    for arg in _type_args(hint):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return arg
    return None


def _dataclass_in(hint: Any) -> type[_Config] | None:
    for arg in _type_args(hint):
        if isinstance(arg, type) and issubclass(arg, _Config):
            return arg
    return None


def _check(condition: bool, message: str, **received: Any) -> None:
    if not condition:
        raise errors.UserInputError(f"{message} " + errors.received(**received))


@dataclasses.dataclass(frozen=True)
class ConvertConfig(_Config):
    """How to convert a Keras model to a `.tflite` flatbuffer.

    Attributes:
      mode: the post-training mode (see `ConvertMode`).
      io_type: dtype of the model's inputs and outputs; integer types only for the
        full-integer modes (int8/uint8 with `int8`, int16 with `int16x8`).
      num_calibration_samples: how many samples, spread evenly over the given data,
        calibrate activation ranges (modes that need calibration only).
      allow_select_tf_ops: let ops without a TFLite builtin run as Select TF ops
        (needs the Flex delegate on the device, several MB).
      sparse_weights: store sparse weights with TFLite's sparse encoding
        (`EXPERIMENTAL_SPARSITY`); useful after pruning.
      per_channel: quantize conv weights with one scale per output channel (the
        default, safest for accuracy). False uses one scale per tensor: each channel
        otherwise costs a float32 scale and an int64 zero point for its weights and
        again for its bias (about 36 KB on the 139k-parameter example), so on small
        models per-tensor files are markedly smaller; check the accuracy.
      choose_granularity: int8 modes: convert with per-channel and with per-tensor
        weights and keep the per-tensor file when its outputs agree with the float
        model's as well (top-1 agreement, or mean cosine for other outputs, on the
        calibration samples, within 0.5 points) and it is smaller after gzip;
        otherwise keep the per-channel one. Pruned models gain most: their per-channel
        scales are a large part of what does not compress. `converter_settings`
        records both measurements. Not for quantization-aware-trained models (their
        granularity was fixed in training). None (the default): measure whenever
        calibration data is given and `per_channel` is not False; False forces
        `per_channel` as given.
      backend: who quantizes: "converter" (TensorFlow's TFLite converter) or
        "litert_quantizer" (LiteRT Quantizer, applied to the float32 .tflite).
      scheme: a LiteRT Quantizer recipe name (see `SCHEMES`); it sets `mode` to the
        mode of the file it makes (weight-only schemes count as "dynamic": integer
        weights, float activations, no calibration). Needed by "litert_quantizer".
      block_size: LiteRT Quantizer's dynamic and weight-only schemes: one weight
        scale per block of this many input values (32, 64, 128 or 256) instead of
        one per output channel, on the ops that have blockwise kernels (fully
        connected ops with the dynamic schemes); None for per-channel.
    """

    mode: ConvertMode = ConvertMode.FLOAT32
    io_type: IOType = IOType.FLOAT32
    num_calibration_samples: int = 300
    allow_select_tf_ops: bool = False
    sparse_weights: bool = False
    per_channel: bool = True
    choose_granularity: bool | None = None
    backend: Backend = Backend.CONVERTER
    scheme: str | None = None
    block_size: int | None = None

    def __post_init__(self) -> None:
        self._coerce_enums()
        self._check_backend()
        allowed = _IO_TYPES_BY_MODE[self.mode]
        _check(
            self.io_type in allowed,
            f"io_type {self.io_type.value!r} does not go with mode {self.mode.value!r}: "
            f"that mode allows {[t.value for t in allowed]}. Use mode='int8' for int8/uint8 "
            "inputs and outputs, mode='int16x8' for int16.",
            mode=self.mode.value,
            io_type=self.io_type.value,
        )
        _check(
            isinstance(self.num_calibration_samples, int) and self.num_calibration_samples >= 1,
            "num_calibration_samples must be a whole number >= 1 (a few hundred is typical).",
            num_calibration_samples=self.num_calibration_samples,
        )
        _check(
            self.choose_granularity is not True
            or self.mode in (ConvertMode.INT8, ConvertMode.INT8_FLOAT_FALLBACK),
            "choose_granularity picks per-channel or per-tensor int8 weights; it needs mode "
            "'int8' or 'int8_float_fallback'.",
            mode=self.mode.value,
            choose_granularity=self.choose_granularity,
        )

    def _check_backend(self) -> None:
        names = {
            Backend.CONVERTER: "The TFLite converter",
            Backend.LITERT_QUANTIZER: "LiteRT Quantizer",
        }
        here, other = names[self.backend], [b for b in Backend if b is not self.backend][0]
        if self.scheme is not None:
            _check(
                self.scheme in SCHEMES,
                f"Unknown scheme: expected one of {sorted(SCHEMES)}.",
                scheme=self.scheme,
            )
            mode, backends = SCHEMES[self.scheme]
            _check(
                self.backend in backends,
                f"{here} has no scheme {self.scheme!r}; {names[other]} has it: set "
                f"backend={other.value!r} (--backend={other.value}).",
                backend=self.backend.value,
                scheme=self.scheme,
            )
            _check(
                self.mode in (ConvertMode.FLOAT32, mode),
                f"Scheme {self.scheme!r} makes a {mode.value!r} file; leave mode out or set "
                f"mode={mode.value!r}.",
                mode=self.mode.value,
                scheme=self.scheme,
            )
            object.__setattr__(self, "mode", mode)
        lq = self.backend is Backend.LITERT_QUANTIZER
        _check(
            not lq or self.scheme is not None,
            f"backend 'litert_quantizer' needs a scheme, one of {sorted(SCHEMES)}.",
            backend=self.backend.value,
            scheme=self.scheme,
        )
        _check(
            not lq or (self.io_type is not IOType.UINT8 and self.choose_granularity is not True),
            "uint8 inputs/outputs and choose_granularity are the TFLite converter's: set "
            "backend='converter' (--backend=converter).",
            io_type=self.io_type.value,
            choose_granularity=self.choose_granularity,
        )
        weights_only = self.scheme is not None and not self.scheme.startswith("static")
        _check(
            self.block_size is None or (lq and weights_only and self.block_size in BLOCK_SIZES),
            f"block_size is for LiteRT Quantizer's dynamic and weight-only schemes and must be "
            f"one of {list(BLOCK_SIZES)}.",
            backend=self.backend.value,
            scheme=self.scheme,
            block_size=self.block_size,
        )


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(_Config):
    """How to evaluate a `.tflite` model on data.

    Attributes:
      top_k: the k values of top-k accuracy to report (classifiers only).
      batch_size: samples per interpreter call when the model takes a dynamic batch.
      max_samples: evaluate at most this many samples (spread evenly); None for all.
      num_threads: interpreter threads; None lets the runtime choose.
    """

    top_k: tuple[int, ...] = (1, 5)
    batch_size: int = 64
    max_samples: int | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        self._coerce_enums()
        _check(
            len(self.top_k) > 0 and all(isinstance(k, int) and k >= 1 for k in self.top_k),
            "top_k must be a non-empty list of whole numbers >= 1, for example [1, 5].",
            top_k=self.top_k,
        )
        _check(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            "batch_size must be a whole number >= 1.",
            batch_size=self.batch_size,
        )
        _check(
            self.max_samples is None
            or (isinstance(self.max_samples, int) and self.max_samples >= 1),
            "max_samples must be None (all samples) or a whole number >= 1.",
            max_samples=self.max_samples,
        )
        _check(
            self.num_threads is None
            or (isinstance(self.num_threads, int) and self.num_threads >= 1),
            "num_threads must be None (runtime default) or a whole number >= 1.",
            num_threads=self.num_threads,
        )


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


def _is_whole(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(_is_whole(v, 1) for v in value)


@dataclasses.dataclass(frozen=True)
class FitConfig(_Config):
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

    def __post_init__(self) -> None:
        self._coerce_enums()
        _check(_is_whole(self.epochs, 1), "epochs must be a whole number >= 1.", epochs=self.epochs)
        _check(
            self.steps_per_epoch is None or _is_whole(self.steps_per_epoch, 1),
            "steps_per_epoch must be None (one pass over the data) or a whole number >= 1.",
            steps_per_epoch=self.steps_per_epoch,
        )
        _check(
            _is_whole(self.batch_size, 1),
            "batch_size must be a whole number >= 1 (32 is typical).",
            batch_size=self.batch_size,
        )
        _check(
            isinstance(self.optimizer, str) and bool(self.optimizer),
            "optimizer must be a tf_keras optimizer name such as 'adam' or 'sgd'.",
            optimizer=self.optimizer,
        )
        _check(
            isinstance(self.learning_rate, (int, float))
            and not isinstance(self.learning_rate, bool)
            and 0 < self.learning_rate < 10,
            "learning_rate must be a number > 0 (fine-tuning usually uses 1e-5 to 1e-3).",
            learning_rate=self.learning_rate,
        )
        _check(
            self.log_dir is None or (isinstance(self.log_dir, str) and bool(self.log_dir)),
            "log_dir must be None or a folder path.",
            log_dir=self.log_dir,
        )
        _check(
            self.seed is None or _is_whole(self.seed, 0),
            "seed must be None or a whole number >= 0.",
            seed=self.seed,
        )
        _check(self.verbose in (0, 1, 2), "verbose must be 0, 1 or 2.", verbose=self.verbose)


# Layer selection, shared by the training-time techniques. Depthwise convolutions
# and the first layer hold few weights but carry much of the accuracy; leaving them
# out is what kept 96-99% accuracy where pruning everything fell to 60%.
_DEFAULT_SKIP_TYPES = ("DepthwiseConv2D",)


def _check_selection(cfg: Any) -> None:
    import re

    for name in ("layers", "exclude_layers"):
        pattern = getattr(cfg, name)
        _check(
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
        _check(
            isinstance(value, tuple) and all(isinstance(v, str) and v for v in value),
            f"{name} must be a list of layer class names such as ['Conv2D', 'Dense'].",
            **{name: value},
        )


@dataclasses.dataclass(frozen=True)
class PruneConfig(_Config):
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
        _check(
            isinstance(self.target_sparsity, (int, float))
            and not isinstance(self.target_sparsity, bool)
            and 0 <= self.target_sparsity < 1,
            "target_sparsity must be a fraction in [0, 1): 0.5 zeroes half the weights, "
            "0.8 four fifths; 1.0 would zero everything.",
            target_sparsity=self.target_sparsity,
        )
        _check(
            isinstance(self.initial_sparsity, (int, float))
            and 0 <= self.initial_sparsity <= self.target_sparsity,
            "initial_sparsity must be in [0, target_sparsity].",
            initial_sparsity=self.initial_sparsity,
            target_sparsity=self.target_sparsity,
        )
        _check(
            isinstance(self.begin_fraction, (int, float))
            and isinstance(self.end_fraction, (int, float))
            and 0 <= self.begin_fraction < self.end_fraction <= 1,
            "begin_fraction and end_fraction must satisfy 0 <= begin < end <= 1 (fractions "
            "of the training steps).",
            begin_fraction=self.begin_fraction,
            end_fraction=self.end_fraction,
        )
        _check(
            self.frequency is None or _is_whole(self.frequency, 1),
            "frequency must be None (chosen from the number of steps) or a whole number >= 1.",
            frequency=self.frequency,
        )
        if self.m_by_n is not None:
            _check(
                _is_pair(self.m_by_n) and self.m_by_n[1] > self.m_by_n[0],
                "m_by_n must be two whole numbers (m, n) with 0 < m < n, such as (2, 4): m "
                "zero weights in every n consecutive ones.",
                m_by_n=self.m_by_n,
            )
        _check(
            _is_pair(self.block_size),
            "block_size must be two whole numbers (rows, cols) >= 1, such as (1, 4).",
            block_size=self.block_size,
        )
        _check(
            self.m_by_n is None or self.block_size == (1, 1),
            "m_by_n and block_size cannot be combined; choose one kind of structure.",
            m_by_n=self.m_by_n,
            block_size=self.block_size,
        )
        _check_selection(self)


@dataclasses.dataclass(frozen=True)
class ClusterConfig(_Config):
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
        _check(
            _is_whole(self.num_clusters, 2),
            "num_clusters must be a whole number >= 2 (16 is typical; 8 for more compression).",
            num_clusters=self.num_clusters,
        )
        _check(
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
class QATConfig(_Config):
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
        _check(
            isinstance(self.rewrite_ops, bool),
            "rewrite_ops must be true or false.",
            rewrite_ops=self.rewrite_ops,
        )
        _check(
            isinstance(self.init_ranges, bool),
            "init_ranges must be true or false.",
            init_ranges=self.init_ranges,
        )
        _check(
            isinstance(self.skip_types, tuple)
            and all(isinstance(v, str) and v for v in self.skip_types),
            "skip_types must be a list of layer class names such as ['Dense'].",
            skip_types=self.skip_types,
        )
        if self.exclude_layers is not None:
            import re

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
class DistillConfig(_Config):
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
        _check(
            _is_whole(self.mixed_inputs, 0) and self.mixed_inputs <= 64,
            "mixed_inputs must be a whole number in [0, 64] (mixed copies per input; 5 is "
            "a good start with a few hundred samples).",
            mixed_inputs=self.mixed_inputs,
        )
        is_tuple = isinstance(self.feature_layers, tuple)
        pairs = tuple(_feature_pair(v) for v in self.feature_layers) if is_tuple else ()
        _check(
            is_tuple and all(p is not None for p in pairs),
            "feature_layers must be a list of 'teacher_layer:student_layer' strings (or one "
            "layer name shared by both models).",
            feature_layers=self.feature_layers,
        )
        object.__setattr__(self, "feature_layers", pairs)
        _check(
            isinstance(self.temperature, (int, float))
            and not isinstance(self.temperature, bool)
            and 0 < self.temperature < 1e4,
            "temperature must be a number > 0 (1 leaves the outputs as they are; 2-8 softens "
            "them, which is what distillation needs).",
            temperature=self.temperature,
        )
        _check(
            isinstance(self.alpha, (int, float))
            and not isinstance(self.alpha, bool)
            and 0 <= self.alpha <= 1,
            "alpha must be in [0, 1]: the weight of the teacher's soft targets; 1 - alpha "
            "weighs the hard labels (0.9 is a good start with few labels).",
            alpha=self.alpha,
        )
        _check(
            isinstance(self.feature_weight, (int, float))
            and not isinstance(self.feature_weight, bool)
            and self.feature_weight >= 0,
            "feature_weight must be a number >= 0.",
            feature_weight=self.feature_weight,
        )
        _check(
            self.cache_dir is None or (isinstance(self.cache_dir, str) and bool(self.cache_dir)),
            "cache_dir must be None (cache in memory) or a folder path.",
            cache_dir=self.cache_dir,
        )


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig(_Config):
    """How to measure, in the spirit of TFLite's `benchmark_model`.

    Attributes:
      num_threads: interpreter threads.
      threads_sweep: if set, one measurement (one fresh process) per thread count,
        instead of `num_threads`.
      warmup_runs, warmup_min_secs: warm-up lasts at least this many runs and seconds.
      num_runs, min_secs: the steady state lasts at least this many runs and seconds...
      max_secs: ...but stops after this many seconds (at least one run).
      use_xnnpack: apply the XNNPack delegate (LiteRT's default CPU path).
      signature: the signature key to run; None runs the main subgraph.
      cpu_affinity: pin the measuring process to these core ids.
      seed: seed of the random inputs (used when no input data is given).
      profile: also estimate time per op by timing truncated prefixes of the graph.
      profile_max_cuts: at most this many prefixes are timed (bigger graphs are
        cut into segments).
      timeout_secs: kill a measurement after this long; None derives it from max_secs.
      target: None for this machine, or `ssh://user@host[:port]`.
      ssh_key: private key file for the target (else the SSH agent / default keys).
      ssh_options: extra `ssh -o` options, such as `StrictHostKeyChecking=no`.
      remote_python: the Python to run on the target.
    """

    num_threads: int = 1
    threads_sweep: tuple[int, ...] = ()
    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    num_runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0
    use_xnnpack: bool = True
    signature: str | None = None
    cpu_affinity: tuple[int, ...] = ()
    seed: int = 0
    profile: bool = False
    profile_max_cuts: int = 64
    timeout_secs: float | None = None
    target: str | None = None
    ssh_key: str | None = None
    ssh_options: tuple[str, ...] = ()
    remote_python: str = "python3"

    def __post_init__(self) -> None:
        self._coerce_enums()
        for name in ("num_threads", "num_runs", "profile_max_cuts"):
            _check_whole(name, getattr(self, name), low=1 if name != "profile_max_cuts" else 2)
        _check_whole("warmup_runs", self.warmup_runs, low=0)
        _check_whole("seed", self.seed, low=0)
        for t in self.threads_sweep:
            _check_whole("threads_sweep", t, low=1)
        for c in self.cpu_affinity:
            _check_whole("cpu_affinity", c, low=0)
        for name in ("warmup_min_secs", "min_secs"):
            _check_seconds(name, getattr(self, name), low=0.0)
        _check_seconds("max_secs", self.max_secs, low=1e-3)
        if self.timeout_secs is not None:
            _check_seconds("timeout_secs", self.timeout_secs, low=1.0)
        if self.min_secs > self.max_secs:
            raise errors.UserInputError(
                "min_secs must not exceed max_secs (max_secs stops the run). "
                + errors.received(min_secs=self.min_secs, max_secs=self.max_secs)
            )
        if self.target is not None:
            from edgekit import _remote

            _remote.parse_target(self.target)
        if self.ssh_key is not None and not os.path.isfile(self.ssh_key):
            raise errors.UserInputError(
                f"No SSH private key file at {self.ssh_key!r}. Pass the path of an existing key, "
                "or leave it unset to use the SSH agent. " + errors.received(ssh_key=self.ssh_key)
            )

    def timeout_for(self, num_models: int) -> float:
        if self.timeout_secs is not None:
            return self.timeout_secs
        per_model = self.max_secs + max(self.warmup_min_secs, 0.0)
        return 120.0 + num_models * per_model * (3 if self.profile else 1)


def _check_whole(name: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise errors.UserInputError(
            f"{name} must be a whole number >= {low}. " + errors.received(**{name: value})
        )


def _check_seconds(name: str, value: Any, *, low: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise errors.UserInputError(
            f"{name} must be a number of seconds >= {low}. " + errors.received(**{name: value})
        )


@dataclasses.dataclass(frozen=True)
class BundleConfig(_Config):
    """What the deployment bundle carries besides the model.

    Attributes:
      labels: class names in output order, or a path to a labels.txt (one per line).
      normalization: (mean, std) the app applies to raw inputs: x = (raw - mean) / std.
      c_array: also write model_data.h / model_data.cc for TFLite Micro.
    """

    labels: tuple[str, ...] | str | None = None
    normalization: tuple[float, float] | None = None
    c_array: bool = False

    def __post_init__(self) -> None:
        self._coerce_enums()
        _check(
            self.normalization is None
            or (
                len(self.normalization) == 2
                and all(isinstance(v, (int, float)) for v in self.normalization)
                and self.normalization[1] != 0
            ),
            "normalization must be [mean, std] with std != 0, for example [127.5, 127.5].",
            normalization=self.normalization,
        )


# The convert modes a QAT model can go to: QAT trains for integer kernels.
_QAT_MODES = (ConvertMode.INT8, ConvertMode.INT8_FLOAT_FALLBACK)


@dataclasses.dataclass(frozen=True)
class Recipe(_Config):
    """One reproducible run: an optional section per stage, applied in this order.

    distill -> prune -> cluster -> qat (each fine-tunes) -> convert -> evaluate ->
    benchmark -> bundle. `fit` is the fine-tuning budget of every training stage;
    `<stage>_fit` overrides it for one stage. Sections left out are skipped
    (convert, evaluate and bundle always run, with their defaults).

    Attributes:
      name / description: shown by edgekit-recipes and in the report.
      format_version: the recipe file format (1).
      fit: the fine-tuning budget (epochs, batch size, learning rate, strategy) of
        every training stage.
      distill: distil the model into a smaller student first (see DistillConfig);
        the student is `distill_student`.
      distill_student: the student: "width:F" for a copy of the model with every
        conv/dense width scaled by F, or a path to a Keras model.
      prune: magnitude or structured pruning while fine-tuning (see PruneConfig).
      cluster: weight clustering while fine-tuning (see ClusterConfig); after prune,
        set its preserve_sparsity.
      qat: quantization-aware training (see QATConfig); needs an int8 convert mode.
      distill_fit / prune_fit / cluster_fit / qat_fit: override `fit` for one stage.
      convert: the post-training conversion (see ConvertConfig); int8 by default.
      evaluate: accuracy and parity settings (see EvaluateConfig).
      benchmark: latency and memory of the original (float32) and the result,
        interleaved in one process (see BenchmarkConfig); null skips it.
      bundle: what the deployment bundle carries (see BundleConfig).
    """

    name: str = "custom"
    description: str = ""
    format_version: int = 1
    fit: FitConfig = FitConfig()
    distill: DistillConfig | None = None
    distill_student: str = "width:0.5"
    distill_fit: FitConfig | None = None
    prune: PruneConfig | None = None
    prune_fit: FitConfig | None = None
    cluster: ClusterConfig | None = None
    cluster_fit: FitConfig | None = None
    qat: QATConfig | None = None
    qat_fit: FitConfig | None = None
    convert: ConvertConfig = ConvertConfig(mode=ConvertMode.INT8)
    evaluate: EvaluateConfig = EvaluateConfig()
    benchmark: BenchmarkConfig | None = None
    bundle: BundleConfig = BundleConfig()

    def __post_init__(self) -> None:
        self._coerce_enums()
        _check(
            self.format_version == 1,
            "This edgekit reads recipe format_version 1; update edgekit for newer files.",
            format_version=self.format_version,
        )
        if self.qat is not None:
            _check(
                self.convert.mode in _QAT_MODES,
                "Quantization-aware training prepares the model for integer kernels, so the "
                "convert mode must be 'int8' or 'int8_float_fallback'; drop the qat section "
                "for a float16 or dynamic-range file.",
                qat=True,
                convert_mode=self.convert.mode.value,
            )
            preserve = self.qat.preserve.value
            _check(
                preserve not in ("sparsity", "both") or self.prune is not None,
                "qat.preserve keeps the zeros of pruning, but the recipe has no prune section.",
                qat_preserve=preserve,
            )
            _check(
                preserve not in ("clusters", "both") or self.cluster is not None,
                "qat.preserve keeps clusters, but the recipe has no cluster section.",
                qat_preserve=preserve,
            )
        if self.prune is not None and self.cluster is not None:
            _check(
                self.cluster.preserve_sparsity,
                "Clustering after pruning would fill the zeros again; set "
                "cluster.preserve_sparsity to true.",
                cluster_preserve_sparsity=self.cluster.preserve_sparsity,
            )


# Later stages (benchmark, prune, cluster, qat, distill, bundle, recipe) add their
# configs below, one dataclass each, in the same style.
