"""A client's policy: weight, cap, compression and frozen state, kept per name.

The administrator sets a policy for a client *name*; the host keeps it while
the client is away and applies it each time a client of that name connects
(``DESIGN.md``: a client's policy belongs to its name).  The daemon's
configuration file may hold policies too (``[clients.NAME]`` tables).  Every
value is checked here, once, whether it comes from Python, the wire, the
configuration file or the command line (as text: ``cap=64M``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tmem.api import check_cap as api_check_cap
from tmem.api import check_weight
from tmem.errors import InvalidArgument
from tmem.units import parse_size

#: The settings a policy holds, in the order they are shown.
POLICY_KEYS: tuple[str, ...] = ("weight", "cap", "compress", "frozen")
#: Compression names a policy may hold; ``"none"`` stores pages raw.
COMPRESS_NAMES: tuple[str, ...] = ("lz4", "zstd", "none")
#: Marks a setting the caller leaves as it is.
KEEP: Any = ...


@dataclass(frozen=True)
class ClientPolicy:
    """What the administrator decided for one client name.

    ``compress`` is KEEP (``...``) while the administrator has not chosen one:
    the client then gets the host's default.
    """

    weight: int = 1
    cap: int | None = None
    compress: Any = KEEP
    frozen: bool = False

    def updated(self, **changes: Any) -> ClientPolicy:
        """A copy with ``changes`` checked and applied; KEEP (or None weight/frozen) skips."""
        unknown = set(changes) - set(POLICY_KEYS)
        if unknown:
            raise InvalidArgument(f"unknown client setting(s) {sorted(unknown)}; use {POLICY_KEYS}")
        checked = {
            key: CHECKS[key](value)
            for key, value in changes.items()
            if value is not KEEP and not (value is None and key in ("weight", "frozen"))
        }
        return replace(self, **checked)

    def settings(self) -> dict[str, Any]:
        """The policy as keyword arguments of ``set_client`` (compress KEEP stays KEEP)."""
        return {"weight": self.weight, "cap": self.cap, "compress": self.compress,
                "frozen": self.frozen}  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """The policy as plain values (compress None when the host's default applies)."""
        compress = None if self.compress is KEEP else (self.compress or "none")
        return {"weight": self.weight, "cap": self.cap, "compress": compress, "frozen": self.frozen}


def check_cap(value: Any) -> int | None:
    """A cap: bytes (``4096``, ``"64M"``), or None / ``"none"`` for no cap."""
    if isinstance(value, str):
        if value.strip().lower() in ("none", ""):
            return None
        try:
            return parse_size(value)
        except InvalidArgument as exc:
            raise InvalidArgument(f"cap: {exc}") from None
    return api_check_cap(value)


def check_compress(value: Any) -> str | None:
    """A compression name: ``lz4``, ``zstd``, or ``none`` / None (stored raw)."""
    if value is None or value == "none":
        return None
    if value not in COMPRESS_NAMES:
        raise InvalidArgument(f"compress {value!r} must be one of {', '.join(COMPRESS_NAMES)}")
    return str(value)


def check_frozen(value: Any) -> bool:
    """Frozen state: True or False, nothing that merely looks like them."""
    if type(value) is not bool:
        raise InvalidArgument(f"frozen {value!r} must be True or False")
    return value


CHECKS: dict[str, Callable[[Any], Any]] = {
    "weight": check_weight,
    "cap": check_cap,
    "compress": check_compress,
    "frozen": check_frozen,
}


def policy_from_text(pairs: Mapping[str, str]) -> dict[str, Any]:
    """Settings written as text (``weight=2 cap=64M compress=zstd frozen=yes``), checked."""
    out: dict[str, Any] = {}
    for key, text in pairs.items():
        if key not in CHECKS:
            raise InvalidArgument(f"unknown client setting {key!r}; use {', '.join(POLICY_KEYS)}")
        if key == "weight":
            try:
                value: Any = int(text)
            except ValueError:
                raise InvalidArgument(f"weight {text!r} must be a positive integer") from None
        elif key == "frozen":
            value = _yes_no(text)
        else:
            value = text
        out[key] = CHECKS[key](value)
    return out


def policies_from_config(tables: Any) -> dict[str, ClientPolicy]:
    """The ``[clients.NAME]`` tables of a configuration file, as checked policies."""
    if not isinstance(tables, Mapping):
        raise InvalidArgument("clients must be a table of [clients.NAME] tables")
    out = {}
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            raise InvalidArgument(f"clients.{name} must be a table")
        try:
            out[str(name)] = ClientPolicy().updated(**table)
        except InvalidArgument as exc:
            raise InvalidArgument(f"clients.{name}: {exc}") from None
    return out


def _yes_no(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise InvalidArgument(f"frozen {text!r} must be true or false")
