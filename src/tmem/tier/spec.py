"""Tiers as users write them: ``ssd:PATH:SIZE`` and ``redis://HOST:PORT,HOST:PORT,...``.

The same spellings serve ``tmem serve --tier``, the ``tier`` list of the TOML
file and ``tmem.Host(tiers=[...])``.  A Redis spelling may end with options
after ``?``: ``fetch-timeout``, ``wait-timeout``, ``retry-interval`` (seconds)
and ``replicas`` (how many replicas must confirm a persistent page).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from tmem.errors import InvalidArgument
from tmem.tier.base import Tier
from tmem.units import parse_size

_REDIS_OPTIONS = {
    "fetch-timeout": ("fetch_timeout", float),
    "wait-timeout": ("wait_timeout", float),
    "retry-interval": ("retry_interval", float),
    "socket-timeout": ("socket_timeout", float),
    "replicas": ("replicas", int),
}


def parse_tier(spec: Any) -> Tier:
    """Build the tier ``spec`` names (a spelling above, or a ready-made tier)."""
    if not isinstance(spec, str):
        if hasattr(spec, "store") and hasattr(spec, "load"):
            return spec  # type: ignore[no-any-return]
        raise InvalidArgument(f"tier {spec!r} is not ssd:PATH:SIZE or redis://HOST:PORT,...")
    if spec.startswith("ssd:"):
        path, sep, size = spec[4:].rpartition(":")
        if not sep or not path:
            raise InvalidArgument(f"tier {spec!r}: write ssd:PATH:SIZE, e.g. ssd:/var/tmp:8G")
        from tmem.tier.ssd import SsdTier

        try:
            return SsdTier(path, parse_size(size))
        except InvalidArgument as exc:
            raise InvalidArgument(f"tier {spec!r}: {exc}") from None
    if spec.startswith("redis://"):
        return _redis(spec)
    raise InvalidArgument(f"tier {spec!r} is not ssd:PATH:SIZE or redis://HOST:PORT,...")


def _redis(spec: str) -> Tier:
    body, _, query = spec[len("redis://") :].partition("?")
    nodes = []
    for item in body.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidArgument(f"tier {spec!r}: {item!r} is not HOST:PORT")
        nodes.append((host.strip("[]"), int(port)))
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in _REDIS_OPTIONS:
            names = ", ".join(_REDIS_OPTIONS)
            raise InvalidArgument(f"tier {spec!r}: unknown option {key!r} (known: {names})")
        name, kind = _REDIS_OPTIONS[key]
        try:
            options[name] = kind(value)
        except ValueError:
            raise InvalidArgument(f"tier {spec!r}: {key}={value!r} is not a number") from None
    try:
        from tmem.tier.ramster import ClusterTier
    except ImportError:  # pragma: no cover - the extra is not installed
        raise InvalidArgument(
            "a Redis tier needs the redis package: pip install 'tmem[cluster]'"
        ) from None
    return ClusterTier(nodes, **options)


def parse_tiers(specs: Iterable[Any]) -> list[Tier]:
    """Build every tier of ``specs``, closing those built if a later one is invalid."""
    tiers: list[Tier] = []
    try:
        for spec in specs:
            tiers.append(parse_tier(spec))
    except BaseException:
        for tier in tiers:
            tier.close()
        raise
    return tiers
