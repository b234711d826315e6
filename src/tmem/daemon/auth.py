"""Who is at the other end of a connection, and what it may do.

A Unix-socket peer is known by its kernel-checked credentials
(``SO_PEERCRED``): the daemon's administrative users (by default the user the
daemon runs as) may administer and keep the client names they ask for; any
other user's client names are prefixed with ``<uid>:`` so they can never take
over another user's name or shared-pool rights.  A TCP peer is known only by
the token it presents in its hello: ``client`` tokens connect clients,
``admin`` tokens may also administer.
"""

from __future__ import annotations

import hmac
import os
import socket
import struct
from dataclasses import dataclass

from tmem.errors import InvalidArgument, PermissionDenied

_PEERCRED = struct.Struct("3i")  # pid, uid, gid
#: Tokens shorter than this are refused when the token file is read.
MIN_TOKEN_LENGTH = 16
ROLES = ("client", "admin")


@dataclass(frozen=True)
class Identity:
    """A connection's peer: how it came, its uid (Unix only), its rights."""

    transport: str  # "unix" or "tcp"
    uid: int | None = None
    pid: int | None = None
    admin: bool = False
    trusted_names: bool = True  # may use client names unprefixed

    def __str__(self) -> str:
        role = "admin" if self.admin else "client"
        if self.transport == "unix":
            return f"uid {self.uid} pid {self.pid} ({role}, unix socket)"
        return f"{role} token (tcp)"

    def client_name(self, requested: str) -> str:
        """The name the host knows this peer's client by."""
        return requested if self.trusted_names else f"{self.uid}:{requested}"


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


def read_token_file(path: str) -> dict[str, str]:
    """Token -> role from a file of ``<role> <token>`` lines (a lone token is a client's).

    Blank lines and ``#`` comments are skipped; unknown roles and short tokens
    raise InvalidArgument.
    """
    tokens: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read token file {path!r}: {exc}") from None
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        role, token = ("client", words[0]) if len(words) == 1 else (words[0], words[-1])
        if len(words) > 2 or role not in ROLES:
            raise InvalidArgument(f"{path}:{number}: expected '<client|admin> <token>'")
        if len(token) < MIN_TOKEN_LENGTH:
            raise InvalidArgument(f"{path}:{number}: token shorter than {MIN_TOKEN_LENGTH}")
        tokens[token] = role
    if not tokens:
        raise InvalidArgument(f"token file {path!r} holds no token")
    return tokens


class Authenticator:
    """Turns a peer (and the token of its hello) into an :class:`Identity`."""

    def __init__(
        self, admin_uids: frozenset[int] | None = None, tokens: dict[str, str] | None = None
    ):
        self.admin_uids = admin_uids if admin_uids is not None else frozenset({os.getuid()})
        self.tokens = dict(tokens or {})

    def unix_peer(self, sock: socket.socket) -> Identity:
        """The identity of a Unix-socket peer, from its credentials."""
        pid, uid, _ = peer_credentials(sock)
        admin = uid in self.admin_uids
        return Identity("unix", uid=uid, pid=pid, admin=admin, trusted_names=admin)

    def tcp_peer(self, token: str) -> Identity:
        """The identity a TCP peer's token grants, or PermissionDenied."""
        role = None
        raw = token.encode()
        for known, known_role in self.tokens.items():
            if hmac.compare_digest(raw, known.encode()):
                role = known_role
        if role is None:
            raise PermissionDenied("a valid token is needed to connect over TCP")
        return Identity("tcp", admin=role == "admin")
