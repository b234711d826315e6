"""Errors of the tmem contract, and the one table of numeric status codes.

A rejected put or a missed get is an answer, not an error: only misuse (bad
arguments, unknown pools, missing rights) and a lost daemon raise.  Every error
class has a numeric code so it can cross the wire and come back as the same
class; :data:`STATUS` is that table, read by code and docs alike.
"""

from __future__ import annotations


class TmemError(Exception):
    """Base of every error tmem raises."""

    code = 1


class NoSuchPool(TmemError):
    """The pool id is unknown to this client, or the pool was destroyed."""

    code = 2


class InvalidArgument(TmemError, ValueError):
    """An argument is out of range or of the wrong kind (the caller's fault)."""

    code = 3


class PermissionDenied(TmemError):
    """The caller is not allowed to do this (shared pool, administration)."""

    code = 4


class ConnectionLost(TmemError):
    """The daemon went away or the connection broke; nothing is known of the call."""

    code = 5


class NoSuchClient(InvalidArgument):
    """No client of that name is known to the host."""

    code = 6


class ProtocolError(TmemError):
    """The peer broke the wire protocol (the peer's fault)."""

    code = 7


class TierError(TmemError):
    """A tier below RAM could not answer in its time bound (device failed, cluster down)."""

    code = 8

class Moved(TmemError):
    """The client's pages moved to another daemon, whose address is the message.

    A remote client follows it by itself (it reconnects there and repeats the
    call); the error reaches a caller only if that fails.
    """

    code = 9

    @property
    def address(self) -> str:
        """Where the client went."""
        return str(self.args[0]) if self.args else ""


class LimitExceeded(TmemError):
    """A limit the host's administrator set was reached: connections, pools."""

    code = 10


#: status code -> error class; 0 means success and has no class.
STATUS: dict[int, type[TmemError]] = {
    cls.code: cls
    for cls in (
        TmemError,
        NoSuchPool,
        InvalidArgument,
        PermissionDenied,
        ConnectionLost,
        NoSuchClient,
        ProtocolError,
        TierError,
        Moved,
        LimitExceeded,
    )
}


def error_for(code: int, message: str) -> TmemError:
    """Return the error instance that status ``code`` stands for (TmemError if unknown)."""
    return STATUS.get(code, TmemError)(message)
