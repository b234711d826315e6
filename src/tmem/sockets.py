"""Where a tmem daemon listens unless told otherwise (shared by the daemon and its clients)."""

from __future__ import annotations

import os


def default_socket() -> str:
    """``$XDG_RUNTIME_DIR/tmem.sock``, else ``/run/tmem/tmem.sock``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "tmem.sock") if runtime else "/run/tmem/tmem.sock"
