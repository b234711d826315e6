"""The daemon's state directory: persistent pages and policies kept across a planned restart.

On a clean stop (SIGTERM, SIGINT) the daemon saves every client that holds
persistent pools, connected or parked, to ``NAME.tmem`` files
(:mod:`tmem.control.snapshot`), and every policy to ``policies.json``.  At
start it restores them, parked until their clients reconnect, and deletes
each file it used, so that after a later crash no stale page can come back.
A crash (SIGKILL, power loss) saves nothing: every page held since the last
start is lost, as RAM is.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.parse
from pathlib import Path
from typing import Any

from tmem.control import snapshot
from tmem.errors import TmemError

log = logging.getLogger("tmem.daemon")
POLICIES = "policies.json"
SUFFIX = ".tmem"


def _file_for(directory: Path, name: str) -> Path:
    return directory / (urllib.parse.quote(name, safe="") + SUFFIX)


def save_state(host: Any, directory: str) -> None:
    """Save every client with persistent pools, and every policy, into ``directory``."""
    path = Path(directory)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    stats = host.stats()
    _write_json(path / POLICIES, stats["policies"])
    for name, client in stats["clients"].items():
        if not any(p["persistent"] and not p["shared"] for p in client["pools"].values()):
            continue
        try:
            report = snapshot.save(host, name, _file_for(path, name))
        except (TmemError, OSError) as exc:
            log.error("could not save client %r: %s", name, exc)
            continue
        log.info("%s", report.describe("saved"))


def restore_state(host: Any, directory: str) -> None:
    """Bring back what :func:`save_state` left in ``directory``; the files used are removed."""
    path = Path(directory)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    policies = path / POLICIES
    if policies.exists():
        for name, policy in _read_json(policies).items():
            settings = {k: policy[k] for k in ("weight", "cap", "frozen")}
            if policy.get("compress") is not None:
                settings["compress"] = policy["compress"]
            host.set_client(name, **settings)
        policies.unlink()
    for saved in sorted(path.glob("*" + SUFFIX)):
        try:
            report = snapshot.restore(host, saved)
        except (TmemError, OSError) as exc:
            log.error("could not restore %s, kept as %s.bad: %s", saved, saved, exc)
            os.replace(saved, f"{saved}.bad")
            continue
        saved.unlink()
        log.info("%s", report.describe("restored"))


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.error("could not read %s: %s", path, exc)
        return {}
    return value if isinstance(value, dict) else {}
