"""The socket calls of the daemon's loop and the remote client's round trip.

``tmem.wire._sockio`` (C, ``_sockio.c``) does one ``recv`` or one ``send`` on a
descriptor, or a client's whole single-page PUT or GET (pack, send, receive,
read a plain reply), without the argument parsing, timeout checks and
interpreter-lock handoffs the socket module adds to each call.  Where it was
not built, or with ``TMEM_PURE=1``, the callers use the socket module's
methods instead (:class:`tmem.wire.frames.Decoder`,
:class:`~tmem.wire.frames.OutBuffer`, :class:`tmem.remote.Channel`), with the
same results and errors.  This module is never compiled.
"""

from __future__ import annotations

import importlib
from typing import Any

from tmem.loader import pure_requested


def _compiled() -> Any:
    if pure_requested():
        return None
    try:
        return importlib.import_module("tmem.wire._sockio")
    except ImportError:  # not built (no C compiler at install time)
        return None


#: The C module, or None where the socket module's methods are used.
FAST: Any = _compiled()
#: Its functions (None without it): ``recv_into(fd, buffer, start)``,
#: ``send(fd, buffer, start, stop)``, ``put(fd, pool, oid, index, page, buffer)``,
#: ``get(fd, pool, oid, index, buffer)`` (see ``_sockio.c``).
RECV_INTO: Any = FAST.recv_into if FAST is not None else None
SEND: Any = FAST.send if FAST is not None else None
PUT: Any = FAST.put if FAST is not None else None
GET: Any = FAST.get if FAST is not None else None
