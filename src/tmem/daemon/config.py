"""The daemon's settings: one table of defaults, read from a TOML file and options.

Keys (in the file and as ``tmem serve`` options): ``socket``, ``capacity``,
``compress``, ``dedup``, ``tcp``, ``token-file``, ``socket-mode``,
``admin-uids``, ``max-frame``, ``max-connections``,
``max-connections-per-peer``, ``transfer-budget``, ``hello-timeout``,
``idle-timeout``, ``grant-timeout``, ``fetch-workers``,
``max-pools``, ``log-level``, ``host-policy`` (``utility`` or ``share``: who gives
up memory when the host is full, see ``docs/operations.md``), ``host-reserve``
(the fraction of the capacity kept as floors by weight), ``host-order``
(``adaptive`` or ``lru``: where a client's new ephemeral page goes on its list), ``tier`` (a list in
the file; ``--tier`` given once per tier), ``metrics``, ``state-dir``; ``capacity = "auto"`` with
``capacity-floor``, ``capacity-ceiling`` and ``autosize`` (see
:mod:`tmem.daemon.autosize`); and in the file only, ``[clients.NAME]`` tables of client
policies (``weight``, ``cap``, ``compress``, ``frozen``; see :mod:`tmem.policy`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tmem.control import HostTunables
from tmem.daemon.autosize import autosize_settings
from tmem.engine.insertion import ORDERS
from tmem.engine.ledger import DEFAULT_RESERVE
from tmem.engine.victims import POLICIES
from tmem.errors import InvalidArgument
from tmem.policy import ClientPolicy, policies_from_config
from tmem.sockets import default_socket
from tmem.units import parse_size
from tmem.wire import DEFAULT_MAX_BODY


def parse_tcp(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets) as ``(host, port)``."""
    host, sep, port = str(text).removeprefix("tcp://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InvalidArgument(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Config:
    """Everything ``tmem serve`` can be told; each field has its default here."""

    socket: str = field(default_factory=default_socket)
    capacity: int = 256 << 20
    compress: str | None = "lz4"
    dedup: str | None = "auto"
    tcp: tuple[str, int] | None = None
    token_file: str | None = None
    socket_mode: int = 0o600
    admin_uids: frozenset[int] = field(default_factory=lambda: frozenset({os.getuid()}))
    max_frame: int = DEFAULT_MAX_BODY
    max_connections: int = 1024
    max_connections_per_peer: int = 64
    #: Bytes of large-transfer buffers, all connections together (see tmem.daemon.budget).
    transfer_budget: int = 32 << 20
    hello_timeout: float = 10.0
    idle_timeout: float = 300.0
    #: Seconds a connection may hold a grant others wait for while reading none of its replies.
    grant_timeout: float = 10.0
    max_pools: int = 256
    #: Threads that load pages from tiers for gets (tmem.daemon.later), off the loop.
    fetch_workers: int = 4
    log_level: str = "info"
    metrics: tuple[str, int] | None = None
    state_dir: str | None = None
    #: client name -> the policy the file sets for it
    clients: Mapping[str, ClientPolicy] = field(default_factory=dict)
    tier: tuple[str, ...] = ()
    #: whose ephemeral page goes when the host is full (tmem.Host's ``policy``)
    host_policy: str = "utility"
    #: the fraction of the capacity kept as floors by weight (tmem.Host's ``reserve``)
    host_reserve: float = DEFAULT_RESERVE
    #: where a client's new ephemeral page goes on its list (tmem.Host's ``order``)
    host_order: str = ORDERS[0]
    #: Set when ``capacity`` is ``"auto"``: the host sizes itself (``capacity`` is then the floor).
    autosize: HostTunables | None = None

    def with_values(self, values: dict[str, Any]) -> Config:
        """A copy with ``values`` (file or option spellings) checked and applied."""
        names = {f.name for f in fields(self)} - {"autosize"}
        autosize, values = autosize_settings(self.autosize, dict(values))
        changes: dict[str, Any] = {"autosize": autosize}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in names:
                raise InvalidArgument(f"unknown setting {key!r}")
            if value is not None:
                try:
                    changes[name] = _CONVERT.get(name, _same)(value)
                except InvalidArgument:
                    raise
                except (TypeError, ValueError) as exc:
                    raise InvalidArgument(f"setting {key}: {value!r} is not valid") from exc
        if autosize is not None:
            changes["capacity"] = autosize.floor
        out = replace(self, **changes)
        if out.tcp is not None and out.token_file is None:
            raise InvalidArgument("listening on TCP needs a token file (token-file)")
        return out


def load(path: str | None = None, **options: Any) -> Config:
    """Defaults, overridden by the TOML file at ``path``, overridden by ``options``."""
    config = Config()
    if path is not None:
        try:
            with open(path, "rb") as fh:
                values = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgument(f"cannot read config {path!r}: {exc}") from None
        config = config.with_values(values)
    return config.with_values({k: v for k, v in options.items() if v is not None})


def _same(value: Any) -> Any:
    return value


def _compress(value: Any) -> str | None:
    return None if value in (None, "none", "") else str(value)


def _mode(value: Any) -> int:
    mode = int(value, 8) if isinstance(value, str) else value
    if type(mode) is not int or not 0 <= mode <= 0o777:
        raise InvalidArgument(f"socket mode {value!r} is not a permission mode like 0600")
    return mode


def _positive(value: Any) -> int:
    number = parse_size(value)
    if number <= 0:
        raise InvalidArgument(f"{value!r} must be positive")
    return number


def _seconds(value: Any) -> float:
    seconds = float(value)
    if not 0 < seconds < 86400:
        raise InvalidArgument(f"{value!r} is not a number of seconds in (0, 86400)")
    return seconds


def _idle(value: Any) -> float:
    """Seconds, or 0 for no idle timeout."""
    seconds = float(value)
    return 0.0 if seconds == 0 else _seconds(seconds)


def _count(value: Any) -> int:
    number = int(value)
    if number <= 0:
        raise InvalidArgument(f"{value!r} must be a positive whole number")
    return number


def _uids(value: Any) -> frozenset[int]:
    items = value if isinstance(value, list | tuple | set | frozenset) else str(value).split(",")
    try:
        return frozenset(int(item) for item in items)
    except ValueError:
        raise InvalidArgument(f"{value!r} is not a list of user ids") from None


def _tiers(value: Any) -> tuple[str, ...]:
    """Tier spellings, SSD tiers first (they sit above the network ones)."""
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not item.startswith(("ssd:", "redis://")):
            raise InvalidArgument(f"tier {item!r} is not ssd:PATH:SIZE or redis://HOST:PORT,...")
    return tuple(sorted(items, key=lambda item: not item.startswith("ssd:")))


def _policy(value: Any) -> str:
    if value not in POLICIES:
        raise InvalidArgument(f"host-policy {value!r} is not one of {', '.join(POLICIES)}")
    return str(value)


def _order(value: Any) -> str:
    if value not in ORDERS:
        raise InvalidArgument(f"host-order {value!r} is not one of {', '.join(ORDERS)}")
    return str(value)


def _reserve(value: Any) -> float:
    fraction = float(value)
    if not 0 <= fraction <= 1:
        raise InvalidArgument(f"host-reserve {value!r} is not a fraction in [0, 1]")
    return fraction


def _level(value: Any) -> str:
    level = str(value).lower()
    if level not in ("debug", "info", "warning", "error"):
        raise InvalidArgument(f"log level {value!r} is not debug, info, warning or error")
    return level


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "socket": str,
    "capacity": parse_size,
    "compress": _compress,
    "dedup": _compress,
    "tcp": parse_tcp,
    "token_file": str,
    "socket_mode": _mode,
    "admin_uids": _uids,
    "max_frame": _positive,
    "max_connections": _count,
    "max_connections_per_peer": _count,
    "transfer_budget": parse_size,
    "hello_timeout": _seconds,
    "idle_timeout": _idle,
    "grant_timeout": _seconds,
    "max_pools": _count,
    "fetch_workers": _count,
    "log_level": _level,
    "host_policy": _policy,
    "host_reserve": _reserve,
    "host_order": _order,
    "clients": policies_from_config,
    "tier": _tiers,
    "metrics": parse_tcp,
    "state_dir": str,
}
