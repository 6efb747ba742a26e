"""The round-trip machinery every config shares, and the checks their fields use.

`Config` gives a frozen dataclass `to_dict` / `from_dict`: enums travel as their string
values, tuples as lists, nested configs as objects; `from_dict` rejects unknown fields
(naming the known ones), so a typo in a recipe never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, TypeVar

from edgekit import errors

_T = TypeVar("_T", bound="Config")


def coerce_enum(cls: type[enum.Enum], value: Any, name: str) -> enum.Enum:
    """`value` as a member of `cls`, or a UserInputError listing the known values."""
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(repr(m.value) for m in cls)
        raise errors.UserInputError(
            f"Unknown {name}: expected one of {known}. " + errors.received(**{name: value})
        ) from None


class Config:
    """Mixin: JSON round-trip and enum coercion for the frozen config dataclasses.

    Each config calls `self._coerce_enums()` first in its `__post_init__`, so enum fields
    accept their string values and list fields become tuples.
    """

    def _coerce_enums(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            hint = hints[field.name]
            enum_cls = _enum_in(hint)
            value = getattr(self, field.name)
            if enum_cls is not None and value is not None:
                object.__setattr__(self, field.name, coerce_enum(enum_cls, value, field.name))
            elif isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict (enums as their string values, tuples as lists)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            out[field.name] = to_jsonable(getattr(self, field.name))
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
            sub = dataclass_in(hints[name])
            if sub is not None and isinstance(value, dict):
                value = sub.from_dict(value)
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise errors.UserInputError(
                f"Could not build {cls.__name__}: {e}. " + errors.received(data=data)
            ) from None


def to_jsonable(value: Any) -> Any:
    """`value` with enums as their values, configs as dicts and tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
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


def dataclass_in(hint: Any) -> type[Config] | None:
    """The config class in a type hint such as `FitConfig | None`, or None."""
    for arg in _type_args(hint):
        if isinstance(arg, type) and issubclass(arg, Config):
            return arg
    return None


def check(condition: bool, message: str, **received: Any) -> None:
    """Raises UserInputError(`message` + "Received: ...") unless `condition` holds."""
    if not condition:
        raise errors.UserInputError(f"{message} " + errors.received(**received))


def is_whole(value: Any, minimum: int) -> bool:
    """True for an int (not a bool) >= `minimum`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_whole(name: str, value: Any, *, low: int) -> None:
    """Refuses anything but a whole number >= `low` for the field `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise errors.UserInputError(
            f"{name} must be a whole number >= {low}. " + errors.received(**{name: value})
        )


def check_seconds(name: str, value: Any, *, low: float) -> None:
    """Refuses anything but a number of seconds >= `low` for the field `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise errors.UserInputError(
            f"{name} must be a number of seconds >= {low}. " + errors.received(**{name: value})
        )
