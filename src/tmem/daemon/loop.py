"""The daemon's loop, turn after turn: the one part of the server left interpreted.

Python runs a signal's handler (SIGTERM and SIGINT stop the daemon, SIGHUP
reloads it) only between two of the interpreter's instructions, never inside
a compiled module (``setup.py`` compiles :mod:`tmem.daemon.server` with
mypyc): so the loop returns here after every turn, where the handlers run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tmem.daemon.server import Server


def turns(server: Server) -> None:
    """Run ``server``'s turns until it is asked to stop."""
    turn = server.turn
    while not server.stopping:
        turn()
