"""Checking tunables: each control law's settings are a frozen dataclass checked here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any, TypeVar

from tmem.errors import InvalidArgument
from tmem.units import parse_size

T = TypeVar("T")


def check_fraction(name: str, value: Any, *, top: float = 1.0) -> float:
    """``value`` as a float in [0, top], else InvalidArgument naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
        raise InvalidArgument(f"{name} must be a number from 0 to {top}, not {value!r}")
    return float(value)


def check_count(name: str, value: Any, *, low: int = 1) -> int:
    """``value`` as an int >= ``low``, else InvalidArgument naming ``name``."""
    if type(value) is not int or value < low:
        raise InvalidArgument(f"{name} must be an integer >= {low}, not {value!r}")
    return value


def check_seconds(name: str, value: Any) -> float:
    """``value`` as seconds in (0, 3600], else InvalidArgument naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise InvalidArgument(f"{name} must be a number of seconds in (0, 3600], not {value!r}")
    return float(value)


def with_settings(base: T, values: Mapping[str, Any], sizes: tuple[str, ...] = ()) -> T:
    """A copy of the dataclass ``base`` with ``values`` applied.

    Keys may be spelled with dashes; strings are read as numbers (sizes for the
    fields in ``sizes``: ``64M``), so that options and TOML files can say
    ``grow-after=3``.  An unknown key raises InvalidArgument naming it.
    """
    names = {f.name for f in fields(base)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in names:
            raise InvalidArgument(f"unknown tunable {key!r}; choose from {sorted(names)}")
        changes[name] = _read(name, value, name in sizes)
    return replace(base, **changes)  # type: ignore[type-var]


def _read(name: str, value: Any, size: bool) -> Any:
    if value is None or value == "none":
        return None
    if size:
        return parse_size(value)
    if not isinstance(value, str):
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise InvalidArgument(f"tunable {name}: {value!r} is not a number") from None
