"""Dispatch: one request frame in, its reply frame out; no sockets, no clock.

A :class:`Session` is one connection's state: its peer's identity and, after
the hello, its tmem client.  :meth:`Dispatcher.dispatch` decodes a request,
calls the host, and appends the reply frame to the session's output buffer.
Errors of the contract become error replies and the connection carries on; a
frame that breaks the protocol raises :class:`WireError` and the caller
closes the connection after sending the error reply.
"""

from __future__ import annotations

import logging
import uuid as _uuid
from collections.abc import Callable
from typing import Any

from tmem.daemon.auth import Authenticator, Identity
from tmem.errors import InvalidArgument, PermissionDenied, ProtocolError, TmemError
from tmem.host import Host, HostClient
from tmem.wire import HEADER, VERSION, Op, WireError
from tmem.wire import messages as msg

log = logging.getLogger("tmem.daemon")
_YES = bytes([msg.ITEM_YES])
_NO = bytes([msg.ITEM_NO])
_SET_CLIENT_KEYS = frozenset({"weight", "cap", "compress", "frozen"})

Handler = Callable[["Session", memoryview], Any]


class Session:
    """One connection: who is there, and its client once the hello is done."""

    __slots__ = ("identity", "client", "admin_only", "greeted")

    def __init__(self, identity: Identity | None) -> None:
        self.identity = identity  # None for TCP until the hello's token is checked
        self.client: HostClient | None = None
        self.admin_only = False
        self.greeted = False

    def close(self) -> None:
        """The connection is gone: the client leaves and its private pools are freed."""
        client, self.client = self.client, None
        if client is not None:
            client.close()


def error_frame(op: int, tag: int, exc: BaseException) -> bytes:
    """The reply frame for an error: its status code and message."""
    code = exc.code if isinstance(exc, TmemError) else ProtocolError.code
    body = str(exc).encode("utf-8", "replace")[:4096]
    return HEADER.pack(op & 0xFF, code, tag, len(body)) + body


class Dispatcher:
    """Executes requests against one :class:`Host` for many sessions."""

    def __init__(self, host: Host, auth: Authenticator, max_body: int) -> None:
        self.host = host
        self.auth = auth
        self.max_body = max_body
        self.handlers: dict[int, Handler] = {
            Op.NEW_POOL: self._new_pool,
            Op.DESTROY_POOL: self._destroy_pool,
            Op.PUT: self._put,
            Op.GET: self._get,
            Op.FLUSH_PAGE: self._flush_page,
            Op.FLUSH_OBJECT: self._flush_object,
            Op.STATS: self._stats,
            Op.PUT_PAGES: self._put_pages,
            Op.GET_PAGES: self._get_pages,
            Op.AUTHORIZE_SHARED: self._authorize_shared,
            Op.REVOKE_SHARED: self._revoke_shared,
            Op.SET_CAPACITY: self._set_capacity,
            Op.SET_CLIENT: self._set_client,
            Op.HOST_STATS: self._host_stats,
        }

    def dispatch(
        self, session: Session, op: int, tag: int, body: memoryview, out: bytearray
    ) -> None:
        """Execute one request; append its reply to ``out``.

        Raises WireError (after appending the error reply) if the frame breaks
        the protocol; the caller must then close the connection.
        """
        try:
            if not session.greeted:
                reply = self.hello(session, op, body)
            else:
                reply = self.handlers[op](session, body)
        except TmemError as exc:
            out += error_frame(op, tag, exc)
            if not session.greeted:
                raise WireError(f"hello refused: {exc}") from None
            return
        except (WireError, KeyError) as exc:
            message = f"unknown op {op}" if isinstance(exc, KeyError) else str(exc)
            out += error_frame(op, tag, ProtocolError(message))
            raise WireError(message) from None
        out += HEADER.pack(op, 0, tag, len(reply))
        out += reply

    # --- hello -----------------------------------------------------------

    def hello(self, session: Session, op: int, body: memoryview) -> bytes:
        """Check the hello, establish the identity and register the client."""
        if op != Op.HELLO:
            raise WireError("the first frame must be a hello")
        version, role, name, token = msg.decode_hello(body)
        if version != VERSION:
            raise ProtocolError(f"protocol version {version} is not {VERSION}")
        identity = session.identity or self.auth.tcp_peer(token)
        if role == msg.ROLE_ADMIN and not identity.admin:
            raise PermissionDenied("administration is refused to this peer")
        session.identity = identity
        if role == msg.ROLE_ADMIN:
            session.admin_only = True
            registered = name
        else:
            registered = identity.client_name(name)
            session.client = self.host.connect(registered)
        session.greeted = True
        log.debug("hello from %s as %r (%s)", identity, registered, "admin" if role else "client")
        return msg.encode_hello_reply(registered, self.max_body)

    # --- the client contract ---------------------------------------------

    @staticmethod
    def _client(session: Session) -> HostClient:
        client = session.client
        if client is None:
            raise WireError("an administrative connection has no client")
        return client

    def _new_pool(self, session: Session, body: memoryview) -> bytes:
        persistent, shared, uuid, page_size = msg.decode_new_pool(body)
        pool = self._client(session).new_pool(persistent, shared, uuid, page_size)
        return msg.POOL.pack(pool)

    def _destroy_pool(self, session: Session, body: memoryview) -> bytes:
        self._client(session).destroy_pool(msg.decode_pool(body))
        return b""

    def _put(self, session: Session, body: memoryview) -> bytes:
        pool, oid, index, data = msg.decode_put(body)
        return _YES if self._client(session).put_page(pool, oid, index, data) else _NO

    def _get(self, session: Session, body: memoryview) -> bytes:
        pool, oid, index = msg.decode_handle(body)
        return self._client(session).get_page(pool, oid, index) or b""

    def _flush_page(self, session: Session, body: memoryview) -> bytes:
        self._client(session).flush_page(*msg.decode_handle(body))
        return b""

    def _flush_object(self, session: Session, body: memoryview) -> bytes:
        self._client(session).flush_object(*msg.decode_object(body))
        return b""

    def _stats(self, session: Session, body: memoryview) -> bytes:
        return msg.encode_json(self._client(session).stats())

    def _put_pages(self, session: Session, body: memoryview) -> bytes:
        pool, items = msg.decode_put_pages(body)
        results = self._client(session).put_pages(pool, items, errors="return")
        return _batch_reply([_item_code(r) for r in results], results, [])

    def _get_pages(self, session: Session, body: memoryview) -> bytes:
        pool, handles = msg.decode_get_pages(body)
        results = self._client(session).get_pages(pool, handles, errors="return")
        codes = [_item_code(r) for r in results]
        pages = [r for r in results if type(r) is bytes]
        return _batch_reply(codes, results, pages)

    # --- administration ----------------------------------------------------

    def _admin_args(self, session: Session, body: memoryview) -> dict[str, Any]:
        if session.identity is None or not session.identity.admin:
            raise PermissionDenied("administration is refused to this peer")
        args = msg.decode_json(body)
        if not isinstance(args, dict):
            raise WireError("administrative arguments must be a JSON object")
        return args

    def _shared_args(self, session: Session, body: memoryview) -> tuple[str, _uuid.UUID]:
        args = self._admin_args(session, body)
        try:
            return str(args["client"]), _uuid.UUID(str(args["uuid"]))
        except (KeyError, ValueError):
            raise InvalidArgument("a client name and a uuid are needed") from None

    def _authorize_shared(self, session: Session, body: memoryview) -> bytes:
        self.host.authorize_shared(*self._shared_args(session, body))
        return b""

    def _revoke_shared(self, session: Session, body: memoryview) -> bytes:
        self.host.revoke_shared(*self._shared_args(session, body))
        return b""

    def _set_capacity(self, session: Session, body: memoryview) -> bytes:
        self.host.set_capacity(self._admin_args(session, body).get("capacity"))
        return b""

    def _set_client(self, session: Session, body: memoryview) -> bytes:
        args = self._admin_args(session, body)
        name = args.pop("name", None)
        if not isinstance(name, str) or not set(args) <= _SET_CLIENT_KEYS:
            raise InvalidArgument(f"set_client takes a name and {sorted(_SET_CLIENT_KEYS)}")
        self.host.set_client(name, **args)
        return b""

    def _host_stats(self, session: Session, body: memoryview) -> bytes:
        self._admin_args(session, body or memoryview(b"{}"))
        return msg.encode_json(self.host.stats())


def _item_code(result: Any) -> int:
    if isinstance(result, TmemError):
        return msg.ITEM_ERROR | result.code
    return msg.ITEM_YES if result else msg.ITEM_NO


def _batch_reply(codes: list[int], results: list[Any], pages: list[bytes]) -> bytes:
    first = next((r for r in results if isinstance(r, TmemError)), None)
    return b"".join(msg.encode_batch_reply(bytes(codes), str(first or ""), pages))
