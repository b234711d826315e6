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
import struct
import uuid as _uuid
from collections.abc import Callable
from typing import Any, Final

from tmem.daemon.auth import Authenticator, Identity
from tmem.daemon.later import Later
from tmem.daemon.transfer import Transfers
from tmem.engine.tiering import Fetch
from tmem.errors import InvalidArgument, NoSuchPool, PermissionDenied, ProtocolError, TmemError
from tmem.host import Host, HostClient
from tmem.host_transfer import CHUNK_BYTES
from tmem.wire import ADMIN_OPS, VERSION, Op, WireError, transfer
from tmem.wire import messages as msg
from tmem.wire.frames import HEADER, OutBuffer

log = logging.getLogger("tmem.daemon")
_SET_CLIENT_KEYS = frozenset({"weight", "cap", "compress", "frozen"})

#: Batches of more items than this are executed a slice of this many at a time.
SLICE_ITEMS = 64
#: Replies up to this long are queued with their header at once; longer ones in parts.
_JOIN = 64 << 10
_HEAD: Final = HEADER.pack

#: A request handler: the reply body, as bytes or as parts (bytes, sent in order
#: from where they are), a batch to execute a slice at a time, or a reply that
#: waits for a tier's load (the compiled module checks a reply is one of these).
Handler = Callable[["Session", memoryview], "bytes | list[Any] | Batch | Later"]
#: A PUT reply: header and the answer byte, packed at once.
_ANSWER: Final = struct.Struct("<BBHIB").pack
_PUT: Final = 4  # Op.PUT, Op.GET, Op.FLUSH_PAGE as constants the compiled module inlines
_GET: Final = 5
_FLUSH_PAGE: Final = 6
_YES: Final = 1  # msg.ITEM_YES and ITEM_NO, likewise
_NO: Final = 0
#: Where a batch's first item starts in its body (msg.BATCH.size), likewise.
_BATCH_HEAD: Final = 12


class _NoClient:
    """The client of a connection that has none (before the hello, or an admin's)."""

    def close(self) -> None:
        """Nothing to release."""

    def __getattr__(self, name: str) -> Any:
        raise WireError("this connection has no client (administrative, or no hello yet)")


NO_CLIENT: Any = _NoClient()


class Session:
    """One connection: who is there, and its client once the hello is done."""

    __slots__ = (
        "identity", "client", "greeted", "done", "held", "resume", "key", "later", "name",
        "registry",
    )  # fmt: skip

    def __init__(self, identity: Identity | None, key: str | None = None) -> None:
        self.identity = identity  # None for TCP until the hello's token is checked
        self.key = key  # what connection limits count this connection under (None: exempt)
        self.client: Any = NO_CLIENT
        self.greeted = False
        self.done = False  # said goodbye: close once the reply is sent
        self.held = False  # a migration holds its requests: they wait unread
        self.resume: Callable[[], None] = _nothing  # the server serves it again
        #: a request whose reply waits for a tier's load (tmem.daemon.later): the server
        #: takes it and runs the load off the loop
        self.later: Later | None = None
        #: the client name it registered under in ``registry`` (the dispatcher's
        #: sessions by client name), which it leaves when it closes
        self.name: str | None = None
        self.registry: dict[str, Session] | None = None

    def register(self, name: str, registry: dict[str, Session]) -> None:
        """Be the session of client ``name`` in ``registry`` until :meth:`close`."""
        self.name, self.registry = name, registry
        registry[name] = self

    def close(self) -> None:
        """The connection is gone: the client leaves and its private pools are freed.

        It leaves its registry, and the server's ``resume`` hook goes too: it
        refers to the connection, which refers to this session, and that cycle
        would keep the connection's buffers until the garbage collector's next
        full pass.
        """
        client, self.client = self.client, NO_CLIENT
        self.resume = _nothing
        registry, name = self.registry, self.name
        if registry is not None and name is not None and registry.get(name) is self:
            del registry[name]
        self.registry = None
        client.close()


def _nothing() -> None:
    pass


def refuse(op: int, tag: int, exc: TmemError | WireError, out: OutBuffer) -> None:
    """Queue the error reply to a request that raised ``exc``; re-raise a WireError
    (the frame broke the protocol: the caller closes the connection)."""
    if isinstance(exc, WireError):
        out.write(error_frame(op, tag, ProtocolError(str(exc))))
        raise exc
    out.write(error_frame(op, tag, exc))


def error_frame(op: int, tag: int, exc: BaseException) -> bytes:
    """The reply frame for an error: its status code (ProtocolError's if not a TmemError)."""
    code = exc.code if isinstance(exc, TmemError) else ProtocolError.code
    return msg.encode_error(op, tag, code, str(exc))


class Dispatcher:
    """Executes requests against one :class:`Host` for many sessions."""

    def __init__(
        self,
        host: Host,
        auth: Authenticator,
        max_body: int,
        admit: Callable[[Session, Identity], None] | None = None,
    ) -> None:
        self.host = host
        self.auth = auth
        self.max_body = max_body
        #: Called with the identity a hello established, before its client is
        #: registered; raises a TmemError to refuse the hello (connection limits).
        self.admit = admit
        self.handlers: dict[int, Handler] = {
            Op.NEW_POOL: self._new_pool,
            Op.DESTROY_POOL: self._destroy_pool,
            Op.FLUSH_OBJECT: self._flush_object,
            Op.STATS: self._stats,
            Op.PUT_PAGES: self._put_pages,
            Op.GET_PAGES: self._get_pages,
            Op.BYE: self._bye,
            Op.AUTHORIZE_SHARED: self._authorize_shared,
            Op.REVOKE_SHARED: self._revoke_shared,
            Op.SET_CAPACITY: self._set_capacity,
            Op.SET_CLIENT: self._set_client,
            Op.HOST_STATS: self._host_stats,
            Op.RELOAD: self._reload,
            Op.TRANSFER: self._transfer,
            Op.EXPORT_PAGES: self._export_pages,
            Op.IMPORT_PAGES: self._import_pages,
        }
        self.transfers = Transfers(host)
        #: the server's hooks: re-read the configuration; describe the daemon
        self.on_reload: Callable[[], dict[str, Any]] | None = None
        self.daemon_info: Callable[[], dict[str, Any]] = dict

    def dispatch(
        self, session: Session, op: int, tag: int, body: memoryview, out: OutBuffer
    ) -> Batch | None:
        """Execute one request; append its reply to ``out``.

        A batch of more than :data:`SLICE_ITEMS` items is returned instead: the
        caller executes it with :meth:`Batch.step`, which appends the reply.
        Raises WireError (after appending the error reply) if the frame breaks
        the protocol; the caller must then close the connection.
        """
        if session.greeted and self.answer_quick(session, op, tag, body, out):
            return None
        try:
            if session.greeted:
                handler = self.handlers.get(op)
                if handler is None:
                    raise WireError(f"unknown op {op}")
                if op in ADMIN_OPS and not (session.identity and session.identity.admin):
                    raise PermissionDenied("administration is refused to this peer")
                reply = handler(session, body)
            else:
                reply = self.hello(session, op, body)
        except (TmemError, WireError) as exc:
            refuse(op, tag, exc, out)
            if not session.greeted:
                raise WireError(f"hello refused: {exc}") from None
            return None
        if reply.__class__ is bytes and len(reply) <= _JOIN:  # the usual case: a page or less
            out.write_frame(_HEAD(op, 0, tag, len(reply)), reply)
        elif isinstance(reply, bytes):  # a large reply is not copied into a frame first
            _write_parts(out, op, tag, [reply])
        elif isinstance(reply, Batch):
            reply.tag = tag
            return reply
        elif isinstance(reply, Later):  # the reply comes once a tier's load is done
            reply.tag = tag
            session.later = reply
        else:  # a list of parts, written without joining them first
            _write_parts(out, op, tag, reply)
        return None

    def answer_quick(
        self, session: Session, op: int, tag: int, body: memoryview, out: OutBuffer
    ) -> bool:
        """Answer a single-page request (PUT, GET, FLUSH_PAGE) of a greeted ``session``
        into ``out``, its error reply included (no reply is built first); False for any
        other op.  The daemon's hot path: compiled, each is a direct call."""
        if op == _PUT:
            self._put(session, tag, body, out)
        elif op == _GET:
            self._get(session, tag, body, out)
        elif op == _FLUSH_PAGE:
            self._flush_page(session, tag, body, out)
        else:
            return False
        return True

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
        if self.admit is not None:
            self.admit(session, identity)
        session.identity = identity
        if role == msg.ROLE_ADMIN:
            registered = name
        else:
            registered = identity.client_name(name)
            session.client = self.host.connect(registered)
            session.register(registered, self.transfers.sessions)
        session.greeted = True
        log.debug("hello from %s as %r (%s)", identity, registered, "admin" if role else "client")
        return msg.encode_hello_reply(registered, self.max_body)

    # --- the client contract ---------------------------------------------

    def _new_pool(self, session: Session, body: memoryview) -> bytes:
        persistent, shared, uuid, page_size = msg.decode_new_pool(body)
        pool = session.client.new_pool(persistent, shared, uuid, page_size)
        return msg.POOL.pack(pool)

    def _destroy_pool(self, session: Session, body: memoryview) -> bytes:
        session.client.destroy_pool(msg.decode_pool(body))
        return b""

    def _put(self, session: Session, tag: int, body: memoryview, out: OutBuffer) -> None:
        client = session.client
        try:
            pool, oid, index, data = msg.decode_put(body)  # a plain call, not f(*args): cheaper
            if isinstance(client, HostClient):  # the usual case: a native call
                stored = client.put_page(pool, oid, index, data)
            else:  # a moved client, or none
                stored = client.put_page(pool, oid, index, data)
        except (TmemError, WireError) as exc:
            refuse(_PUT, tag, exc, out)
            return
        out.write(_ANSWER(_PUT, 0, tag, 1, _YES if stored else _NO))

    def _get(self, session: Session, tag: int, body: memoryview, out: OutBuffer) -> None:
        client = session.client
        page: Any
        try:
            handle = msg.decode_handle(body)
            if isinstance(client, HostClient):  # the usual case: a native call
                page = client.start_get(handle[0], handle[1], handle[2])
            else:
                page = client.start_get(*handle)
        except (TmemError, WireError) as exc:
            refuse(_GET, tag, exc, out)
            return
        if page is None:  # a miss: an empty reply (_page, inline: a single get is the hot path)
            out.write(_HEAD(_GET, 0, tag, 0))
        elif page.__class__ is Fetch:  # below RAM: loaded off the loop, answered then
            later = session.later = Later(_GET, _finish_get(session.client, page, handle), _page)
            later.tag = tag
        else:
            out.write_frame(_HEAD(_GET, 0, tag, len(page)), page)

    def _flush_page(self, session: Session, tag: int, body: memoryview, out: OutBuffer) -> None:
        try:
            pool, oid, index = msg.decode_handle(body)
            session.client.flush_page(pool, oid, index)
        except (TmemError, WireError) as exc:
            refuse(_FLUSH_PAGE, tag, exc, out)
            return
        out.write(_HEAD(_FLUSH_PAGE, 0, tag, 0))

    def _flush_object(self, session: Session, body: memoryview) -> bytes:
        session.client.flush_object(*msg.decode_object(body))
        return b""

    def _stats(self, session: Session, body: memoryview) -> bytes:
        msg.decode_empty(body, "stats")
        return msg.encode_json(session.client.stats())

    def _put_pages(self, session: Session, body: memoryview) -> Any:
        pool, count, size = msg.batch_head(body)
        try:  # a batch that cannot succeed fails once, not once per item, and is not decoded
            page_size = session.client.page_size(pool)
            if count and size != page_size:
                raise InvalidArgument(f"the batch's pages are not this pool's {page_size} bytes")
        except (NoSuchPool, InvalidArgument) as exc:  # others (Moved) answer the whole frame
            msg.check_put_pages_length(body)
            return _failed_batch(count, exc)
        msg.check_put_pages_length(body)
        if count > SLICE_ITEMS:
            return Batch(Op.PUT_PAGES, pool, count, body, size)
        results = session.client.put_packed(pool, body, _BATCH_HEAD, count, size)
        return _batch_reply(results, [])

    def _get_pages(self, session: Session, body: memoryview) -> Any:
        pool, count, _ = msg.batch_head(body)
        try:
            page_size = session.client.page_size(pool)
        except NoSuchPool as exc:
            msg.check_get_pages_length(body)
            return _failed_batch(count, exc)
        # Bound what one request can make the daemon hold: the reply fits a frame.
        reply = count * (page_size + 1) + msg.MESSAGE.size
        if reply > self.max_body:
            raise InvalidArgument(
                f"a batch of {count} gets of {page_size}-byte pages could need a"
                f" {reply}-byte reply; at most {self.max_body // (page_size + 1) - 1} per batch"
            )
        msg.check_get_pages_length(body)
        if count > SLICE_ITEMS:
            return Batch(Op.GET_PAGES, pool, count, body, 0)
        client = session.client
        results, fetches = client.start_get_packed(pool, body, _BATCH_HEAD, count)
        if fetches:  # pages below RAM: loaded off the loop, answered then
            return Later(Op.GET_PAGES, _finish_pages(client, pool, results, fetches), _pages)
        return _batch_reply(results, _hits(results))

    def _bye(self, session: Session, body: memoryview) -> bytes:
        """The peer leaves: its client is released before the reply goes out."""
        msg.decode_empty(body, "bye")
        session.close()
        session.done = True
        return b""

    # --- administration ----------------------------------------------------

    def _admin_args(self, session: Session, body: memoryview) -> dict[str, Any]:
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
        client, uuid = self._shared_args(session, body)
        self.host.authorize_shared(client, uuid)
        _log_admin(session, "authorized %r for shared pool %s", client, uuid)
        return b""

    def _revoke_shared(self, session: Session, body: memoryview) -> bytes:
        client, uuid = self._shared_args(session, body)
        self.host.revoke_shared(client, uuid)
        _log_admin(session, "revoked %r from shared pool %s", client, uuid)
        return b""

    def _set_capacity(self, session: Session, body: memoryview) -> bytes:
        capacity: Any = self._admin_args(session, body).get("capacity")  # the engine checks it
        self.host.set_capacity(capacity)
        _log_admin(session, "set the capacity to %s", capacity)
        return b""

    def _set_client(self, session: Session, body: memoryview) -> bytes:
        args = self._admin_args(session, body)
        name = args.pop("name", None)
        if not isinstance(name, str) or not set(args) <= _SET_CLIENT_KEYS:
            raise InvalidArgument(f"set_client takes a name and {sorted(_SET_CLIENT_KEYS)}")
        self.host.set_client(name, **args)
        _log_admin(session, "set client %r: %s", name, args)
        return b""

    def _host_stats(self, session: Session, body: memoryview) -> bytes:
        self._admin_args(session, body or memoryview(b"{}"))
        stats = self.host.stats()
        stats["daemon"] = self.daemon_info()
        return msg.encode_json(stats)

    def _reload(self, session: Session, body: memoryview) -> bytes:
        self._admin_args(session, body or memoryview(b"{}"))
        if self.on_reload is None:
            raise InvalidArgument("this daemon cannot reload its configuration")
        done = self.on_reload()
        _log_admin(session, "reloaded the configuration")
        return msg.encode_json(done)

    def _transfer(self, session: Session, body: memoryview) -> bytes:
        args = self._admin_args(session, body)
        action = args.pop("action", None)
        done = self.transfers.run(action, args)
        if action != "export_round":
            header = args.get("header")
            who = args.get("name") or (header.get("name") if isinstance(header, dict) else None)
            _log_admin(session, "transfer %s of client %r", action, who)
        return msg.encode_json(done)

    def _export_pages(self, session: Session, body: memoryview) -> bytes:
        args = self._admin_args(session, body)
        limit = min(int(args.get("max_bytes", CHUNK_BYTES)), self.max_body // 2)
        return transfer.encode_records(self.host.export_pages(str(args.get("name")), limit))

    def _import_pages(self, session: Session, body: memoryview) -> bytes:
        name, records = transfer.decode_import(body)
        return msg.encode_json(self.host.import_pages(name, records))


class Batch:
    """A PUT_PAGES or GET_PAGES executed :data:`SLICE_ITEMS` items at a time, so that
    one large batch does not keep the daemon's only thread from its other clients.

    Its items stay views into the connection's receive buffer: until the batch is
    done, the server reads and answers nothing else of that connection, which so
    still sees its requests executed one after the other, in order.  Other
    clients' requests may run between two slices, as between two requests.
    """

    __slots__ = (
        "op", "tag", "pool", "count", "body", "page_size", "done", "results", "fetches", "spent"
    )  # fmt: skip

    def __init__(self, op: int, pool: int, count: int, body: memoryview, page_size: int) -> None:
        self.op = op
        self.tag = 0
        self.pool = pool
        self.count = count
        self.body = body
        self.page_size = page_size
        self.done = 0  # items executed
        self.results: list[Any] = []
        self.fetches: list[tuple[int, Fetch, int, int]] = []  # gets of pages below RAM
        self.spent = 0.0  # seconds executing it so far (for the request metrics)

    def step(self, session: Session, out: OutBuffer) -> bool:
        """Execute the next slice; True once every item is done and the reply
        (or an error that ends the whole batch, as ``Moved``) is in ``out``.

        Raises WireError (after appending the error reply) as :meth:`Dispatcher.dispatch`.
        """
        first, last = self.done, min(self.count, self.done + SLICE_ITEMS)
        try:
            client = session.client
            if self.op == Op.PUT_PAGES:
                start = _BATCH_HEAD + first * (msg.ITEM_SIZE + self.page_size)
                self.results += client.put_packed(
                    self.pool, self.body, start, last - first, self.page_size
                )
            else:
                start = _BATCH_HEAD + first * msg.ITEM_SIZE
                results, fetches = client.start_get_packed(
                    self.pool, self.body, start, last - first
                )
                self.fetches += [(first + at, *rest) for at, *rest in fetches]
                self.results += results
        except (TmemError, WireError) as exc:
            refuse(self.op, self.tag, exc, out)
            return True
        self.done = last
        if last < self.count:
            return False
        results = self.results
        if self.fetches:  # pages below RAM: loaded off the loop, answered then
            work = _finish_pages(session.client, self.pool, results, self.fetches)
            later = session.later = Later(self.op, work, _pages)
            later.tag = self.tag
            return True
        pages = _hits(results) if self.op == Op.GET_PAGES else []
        _write_parts(out, self.op, self.tag, _batch_reply(results, pages))
        return True


def _finish_get(client: Any, fetch: Fetch, handle: tuple[int, int, int]) -> Callable[[], Any]:
    """The load of one page below RAM, to run off the loop."""
    return lambda: client.finish_get(fetch, *handle)


def _page(page: bytes | None, tag: int, out: OutBuffer) -> None:
    """Queue the reply to a GET whose page was loaded from a tier."""
    if page is None:
        out.write(_HEAD(_GET, 0, tag, 0))
    else:
        out.write_frame(_HEAD(_GET, 0, tag, len(page)), page)


def _finish_pages(
    client: Any, pool: int, results: list[Any], fetches: list[tuple[int, Fetch, int, int]]
) -> Callable[[], list[Any]]:
    """The loads of a batch's pages below RAM, to run off the loop: then the results."""

    def work() -> list[Any]:
        client.finish_get_pages(pool, results, fetches)
        return results

    return work


def _pages(results: list[Any], tag: int, out: OutBuffer) -> None:
    """Queue the reply to a GET_PAGES some of whose pages were loaded from tiers."""
    _write_parts(out, Op.GET_PAGES, tag, _batch_reply(results, _hits(results)))


def _write_parts(out: OutBuffer, op: int, tag: int, parts: list[bytes]) -> None:
    """Append a reply given as parts (bytes), without joining them first; a large
    one (a batch of gets' pages) is sent from the parts themselves, not copied."""
    out.write_gathered(msg.encode_reply_parts(op, tag, parts))


def _log_admin(session: Session, what: str, *args: Any) -> None:
    """Every administrative change is logged at info level, with who made it."""
    log.info("admin %s: " + what, session.identity, *args)


def _hits(results: list[Any]) -> list[bytes]:
    """The pages among a batch of gets' results: all of them in the usual case (found
    in C, without a loop in Python over the results)."""
    if set(map(type, results)) == _BYTES:
        return results
    return [r for r in results if type(r) is bytes]


_BYTES = {bytes}


def _item_code(result: Any) -> int:
    if isinstance(result, TmemError):
        return msg.ITEM_ERROR | result.code
    return msg.ITEM_YES if result else msg.ITEM_NO


def _failed_batch(count: int, exc: TmemError) -> list[Any]:
    """The reply of a batch whose every item fails with ``exc``."""
    return msg.encode_batch_reply(bytes([msg.ITEM_ERROR | exc.code]) * count, str(exc), [])


def _batch_reply(results: list[Any], pages: list[bytes]) -> list[Any]:
    """The reply to a batch: a code per result (True, bytes: yes; False, None: no; an
    error: its code), the first error's message, and the pages of the hits."""
    if pages:  # gets; no error if every result that is not a page is a miss
        if len(pages) == len(results):  # every one a hit
            return msg.encode_batch_reply(bytes([msg.ITEM_YES]) * len(results), "", pages)
        if results.count(None) + len(pages) == len(results):
            return msg.encode_batch_reply(bytes([r is not None for r in results]), "", pages)
    else:
        try:  # puts; without an error, a list of True and False is the codes themselves
            return msg.encode_batch_reply(bytes(results), "", pages)
        except TypeError:
            pass
    codes = bytes(map(_item_code, results))
    first = next((r for r in results if isinstance(r, TmemError)), None)
    return msg.encode_batch_reply(codes, str(first or ""), pages)
