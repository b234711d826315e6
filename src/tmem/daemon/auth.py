"""Who is at the other end of a connection, and what it may do.

A Unix-socket peer is known by its kernel-checked credentials
(``SO_PEERCRED``): the daemon's administrative users (by default the user the
daemon runs as) may administer and keep the client names they ask for; any
other user's client names are prefixed with ``<uid>:`` so they can never take
over another user's name or shared-pool rights.  A TCP peer is known only by
the token it presents in its hello: ``client`` tokens connect clients whose
names are prefixed with the token's namespace (``<namespace>:``), the way the
uid prefixes them on the Unix socket; ``admin`` tokens may also administer and
keep the names they ask for.
"""

from __future__ import annotations

import hashlib
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
#: Tokens longer than this are refused (a hello carries at most this much token).
MAX_TOKEN_LENGTH = 1024


@dataclass(frozen=True)
class Grant:
    """What a token grants: a role and, for a client token, a namespace of names."""

    role: str
    namespace: str


@dataclass(frozen=True)
class Identity:
    """A connection's peer: how it came, its uid (Unix only), its rights."""

    transport: str  # "unix" or "tcp"
    uid: int | None = None
    pid: int | None = None
    admin: bool = False
    trusted_names: bool = True  # may use client names unprefixed
    namespace: str | None = None  # a TCP client token's prefix for client names

    def __str__(self) -> str:
        role = "admin" if self.admin else "client"
        if self.transport == "unix":
            return f"uid {self.uid} pid {self.pid} ({role}, unix socket)"
        return f"{role} token (tcp)"

    def client_name(self, requested: str) -> str:
        """The name the host knows this peer's client by."""
        if self.trusted_names:
            return requested
        prefix = self.namespace if self.namespace is not None else str(self.uid)
        return f"{prefix}:{requested}"

    @property
    def key(self) -> str:
        """What connection limits count this peer's connections under."""
        if self.transport == "unix":
            return f"uid {self.uid}"
        return f"token {self.namespace}"


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


def read_token_file(path: str) -> dict[str, Grant]:
    """Token -> :class:`Grant` from ``<role> <token> [<namespace>]`` lines.

    A lone token is a client's.  A client token's namespace defaults to
    ``t-`` and the first 8 hex digits of the token's SHA-256, so that it stays
    the same whatever else the file holds.  Blank lines and ``#`` comments are
    skipped; unknown roles, short or overlong tokens, namespaces that are not
    plain words and namespaces given twice raise InvalidArgument.
    """
    tokens: dict[str, Grant] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read token file {path!r}: {exc}") from None
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path}:{number}"
        role, token = ("client", words[0]) if len(words) == 1 else (words[0], words[1])
        if len(words) > 3 or role not in ROLES:
            raise InvalidArgument(f"{where}: expected '<client|admin> <token> [<namespace>]'")
        if not MIN_TOKEN_LENGTH <= len(token.encode()) <= MAX_TOKEN_LENGTH:
            raise InvalidArgument(
                f"{where}: a token has {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters"
            )
        default = "t-" + hashlib.sha256(token.encode()).hexdigest()[:8]
        namespace = words[2] if len(words) == 3 else default
        if not namespace.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InvalidArgument(f"{where}: namespace {namespace!r} is not a plain word")
        if namespace.isdigit():
            raise InvalidArgument(f"{where}: namespace {namespace!r} could be a uid")
        if any(g.namespace == namespace for g in tokens.values()):
            raise InvalidArgument(f"{where}: namespace {namespace!r} is given twice")
        tokens[token] = Grant(role, namespace)
    if not tokens:
        raise InvalidArgument(f"token file {path!r} holds no token")
    return tokens


class Authenticator:
    """Turns a peer (and the token of its hello) into an :class:`Identity`."""

    def __init__(
        self, admin_uids: frozenset[int] | None = None, tokens: dict[str, Grant] | None = None
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
        grant = None
        raw = token.encode()
        for known, known_grant in self.tokens.items():  # every one, in constant time
            if hmac.compare_digest(raw, known.encode()):
                grant = known_grant
        if grant is None:
            raise PermissionDenied("a valid token is needed to connect over TCP")
        admin = grant.role == "admin"
        return Identity("tcp", admin=admin, trusted_names=admin, namespace=grant.namespace)
