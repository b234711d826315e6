"""The tmem daemon: one host served to many processes (Unix socket) and machines (TCP).

:mod:`~tmem.daemon.config` holds the settings, :mod:`~tmem.daemon.auth` decides
who a peer is, :mod:`~tmem.daemon.dispatch` executes frames against the host
without any I/O, and :mod:`~tmem.daemon.server` is the event loop.
"""

from tmem.daemon.config import Config, default_socket, load

__all__ = ["Config", "default_socket", "load"]
