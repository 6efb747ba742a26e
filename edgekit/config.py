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
    """

    mode: ConvertMode = ConvertMode.FLOAT32
    io_type: IOType = IOType.FLOAT32
    num_calibration_samples: int = 300
    allow_select_tf_ops: bool = False
    sparse_weights: bool = False
    per_channel: bool = True

    def __post_init__(self) -> None:
        self._coerce_enums()
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


# Later stages (benchmark, prune, cluster, qat, distill, bundle, recipe) add their
# configs below, one dataclass each, in the same style.
