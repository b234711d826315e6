"""Applying a configuration to a running daemon's host: at start, on SIGHUP, on ``tmem reload``.

Only client policies (``[clients.NAME]``) and the capacity change while the
daemon runs; any other setting that differs is reported as needing a restart.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any

from tmem.daemon.config import Config
from tmem.host import Host

log = logging.getLogger("tmem.daemon")
#: Settings a reload applies; every other one needs a restart.
LIVE_SETTINGS = ("clients", "capacity")


def apply_policies(host: Host, old: Config | None, new: Config) -> None:
    """Give ``host`` the policies of ``new``; names only ``old`` had are forgotten."""
    for name, policy in new.clients.items():
        host.set_client(name, **policy.settings())
    for name in set(old.clients if old else ()) - set(new.clients):
        host.forget_client(name)


def apply_reload(host: Host, old: Config, new: Config) -> dict[str, Any]:
    """Apply ``new``'s live settings to ``host``; return what was done, for logs and replies."""
    apply_policies(host, old, new)
    if new.capacity != old.capacity:
        host.set_capacity(new.capacity)
    restart = [
        f.name.replace("_", "-")
        for f in fields(Config)
        if f.name not in LIVE_SETTINGS and getattr(new, f.name) != getattr(old, f.name)
    ]
    if restart:
        log.warning("reload: %s changed and need(s) a restart", ", ".join(restart))
    return {"clients": sorted(new.clients), "capacity": new.capacity, "restart_needed": restart}
