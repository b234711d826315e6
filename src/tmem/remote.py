"""The remote client and administration handle: the tmem contract over the wire.

``tmem.connect(address, name=...)`` returns a :class:`RemoteClient` with exactly
the methods, answers and errors of the embedded client; ``tmem.admin(address)``
returns a :class:`RemoteAdmin` with the embedded host's administrative methods.
Addresses are ``unix:PATH`` (or a bare absolute path) and ``tcp://HOST:PORT``.
Each handle owns one blocking socket; calls are synchronous, and the batched
calls send their frames ahead of the replies.  When the daemon goes away every
call raises :class:`tmem.ConnectionLost`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final, NoReturn, TypeVar

from tmem.api import Record, Stats
from tmem.arguments import (
    DEFAULT_PAGE_SIZE,
    INDEX_LIMIT,
    MAX_PAGE_SIZE,
    OID_LIMIT,
    as_page,
    batch_item,
    check_handle,
    check_page_size,
    check_uuid,
    settle_batch,
)
from tmem.errors import (
    ConnectionLost,
    InvalidArgument,
    Moved,
    NoSuchPool,
    ProtocolError,
    TmemError,
    error_for,
)
from tmem.hostlock import new_lock
from tmem.sockets import default_socket
from tmem.wire import ROLE_ADMIN, ROLE_CLIENT, VERSION, Decoder, Op, WireError, sockio, transfer
from tmem.wire import messages as msg
from tmem.wire.frames import HEADER
from tmem.wire.messages import decode_answer, handle_frame

#: Page bytes sent (or asked for) per batch frame; two frames are kept in flight.
BATCH_BYTES = 1 << 20
_REPLY_LIMIT = 64 << 20
#: Items per PUT_PAGES frame at most: two buffers each, within the kernel's IOV_MAX (1024).
_MAX_ITEMS = 500
_U32: Final = 1 << 32
#: Moves followed for one request before giving up.
_MAX_MOVES = 3
# Constants the compiled module inlines (an IntEnum member costs a lookup and a
# conversion on every call); tests/daemon/test_remote_arguments.py checks them.
_PUT: Final = 4
_GET: Final = 5
_HELLO: Final = 1
_HANDLE_SIZE: Final = 32
#: The C module's single-page round trips (tmem.wire.sockio), or None.
_PUT_CALL: Final[Any] = sockio.PUT
_GET_CALL: Final[Any] = sockio.GET
_T = TypeVar("_T")


def parse_address(address: Any) -> tuple[int, Any]:
    """``(family, sockaddr)`` for ``unix:PATH``, an absolute path, or ``tcp://HOST:PORT``."""
    if address is None:
        address = default_socket()
    text = str(address)
    if text.startswith("unix:"):
        return socket.AF_UNIX, text.removeprefix("unix:").removeprefix("//") or "/"
    if text.startswith("/"):
        return socket.AF_UNIX, text
    if text.startswith("tcp://"):
        host, sep, port = text[6:].rpartition(":")
        if sep and host and port.isdigit():
            host = host.strip("[]")
            return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))
    raise InvalidArgument(f"{address!r} is not unix:PATH or tcp://HOST:PORT")


class Channel:
    """One connection to a daemon: the hello, then request/reply frames.

    If the daemon answers ``Moved`` (the client was migrated), the channel
    reconnects to the address it names and repeats the request there.
    """

    _moves = 0  # moves followed since the last answered request
    #: the socket's descriptor for the C module's round trip (tmem.wire.sockio), or -1:
    #: the socket module's calls (the module is not there, the socket has a timeout,
    #: or it is closed)
    _fd = -1

    def __init__(self, address: Any, name: Any, role: int, token: Any, timeout: Any) -> None:
        if not isinstance(name, str):
            raise InvalidArgument(f"client name {name!r} must be a string")
        if token is not None and not isinstance(token, str):
            raise InvalidArgument("a token must be a string")
        try:
            self._hello = msg.encode_hello(name, role, token or "")
        except WireError as exc:
            raise InvalidArgument(str(exc)) from None
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._open(address)

    def _open(self, address: Any) -> None:
        """Connect to ``address`` and say hello (again, after a move)."""
        family, sockaddr = parse_address(address)
        self.address = address
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.decoder = Decoder(_REPLY_LIMIT)
        try:
            self.sock.settimeout(self.timeout)
            self.sock.connect(sockaddr)
            if family != socket.AF_UNIX:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            self.close()
            raise ConnectionLost(f"cannot connect to {address}: {exc}") from None
        try:
            reply = self.call(self._hello, Op.HELLO)
            version, self.max_body, self.name = msg.decode_hello_reply(reply)
        except WireError as exc:
            self.close()
            raise ProtocolError(f"bad hello reply: {exc}") from None
        except BaseException:
            self.close()  # a refused hello: the daemon closes its end too
            raise
        if version != VERSION:
            self.close()
            raise ProtocolError(f"daemon speaks protocol {version}, not {VERSION}")
        if _PUT_CALL is not None and self.timeout is None:  # a blocking socket
            self._fd = self.sock.fileno()

    def check_open(self) -> None:
        """Raise ConnectionLost if the connection is closed."""
        if self.sock is None:
            raise ConnectionLost("the connection to the daemon is closed")

    def follow(self, moved: Moved) -> None:
        """The daemon says this client moved: reconnect, under the same name, where it went."""
        self.close()
        self._moves += 1
        if self._moves > _MAX_MOVES:
            raise ConnectionLost(f"moved more than {_MAX_MOVES} times in a row; last to {moved}")
        self._open(moved.address)

    def call(self, frame: bytes | list[Any], op: int) -> memoryview:
        """Send one request (a frame, or a list of its parts, sent gathered) and return
        its reply body (valid until the next call)."""
        sock, decoder = self.sock, self.decoder
        if sock is None:
            raise ConnectionLost("the connection to the daemon is closed")
        try:
            if frame.__class__ is list:
                _send_parts(sock, frame)  # type: ignore[arg-type]
            else:
                sock.sendall(frame)  # type: ignore[arg-type]
            if not decoder.buffered:  # the usual case: the whole reply in one read
                decoder.read_from(sock)
        except OSError as exc:
            self._lost(exc)
        except BaseException:
            self.close()  # interrupted mid-call: the stream is out of step
            raise
        try:
            body = self.reply(op)
        except Moved as moved:  # repeat the request where the client's pages went
            self.follow(moved)
            return self.call(frame, op)
        if op != _HELLO:
            self._moves = 0
        return body

    def put(self, pool: int, oid: int, index: int, page: Any) -> bool:
        """A PUT of a checked handle and page: whether the daemon stored it.  One call
        of the C module where it is in use; any reply but a plain answer is read
        as :meth:`call` reads it."""
        fd, decoder = self._fd, self.decoder
        if fd < 0 or decoder.buffered:
            head = handle_frame(_PUT, _HANDLE_SIZE + len(page), pool, oid, index)
            body = self.call(head + page, _PUT)
        else:
            try:
                answer: int = _PUT_CALL(fd, pool, oid, index, page, decoder.start_exchange())
            except OSError as exc:
                self._lost(exc)
            except BaseException:
                self.close()  # interrupted mid-call: the stream is out of step
                raise
            self._moves = 0
            if answer >= 0:  # the usual case: a plain answer
                return answer == 1
            decoder.received(-1 - answer)
            try:
                body = self.reply(_PUT)
            except Moved as moved:  # repeat the request where the client's pages went
                self.follow(moved)
                return self.put(pool, oid, index, page)
        try:
            return decode_answer(body)
        except WireError as exc:
            self.close()  # the daemon broke the protocol: the stream is out of step
            raise ProtocolError(f"bad put reply: {exc}") from None

    def get(self, pool: int, oid: int, index: int) -> bytes | None:
        """A GET of a checked handle: a copy of the page, or None on a miss; as :meth:`put`."""
        fd, decoder = self._fd, self.decoder
        if fd < 0 or decoder.buffered:
            body = self.call(handle_frame(_GET, _HANDLE_SIZE, pool, oid, index), _GET)
        else:
            try:
                page: Any = _GET_CALL(fd, pool, oid, index, decoder.start_exchange())
            except OSError as exc:
                self._lost(exc)
            except BaseException:
                self.close()
                raise
            self._moves = 0
            if page.__class__ is not int:  # the usual case: the page, or None
                return page  # type: ignore[no-any-return]
            decoder.received(-1 - page)
            try:
                body = self.reply(_GET)
            except Moved as moved:
                self.follow(moved)
                return self.get(pool, oid, index)
        return bytes(body) if body else None

    def send(self, parts: list[Any]) -> None:
        """Send a request frame, given as a list of byte buffers, without waiting
        for the reply; the buffers are gathered by the kernel, not copied here."""
        sock = self.sock
        if sock is None:
            raise ConnectionLost("the connection to the daemon is closed")
        try:
            _send_parts(sock, parts)
        except OSError as exc:
            self._lost(exc)

    def reply(self, op: int) -> memoryview:
        """The body of the next reply, which must answer ``op``; raises its error."""
        decoder, sock = self.decoder, self.sock
        try:
            frame = decoder.next_frame()
            while frame is None:
                if sock is None or not (n := sock.recv_into(decoder.recv_buffer())):
                    self._lost("the daemon closed the connection")
                decoder.received(n)
                frame = decoder.next_frame()
        except (OSError, WireError) as exc:
            self._lost(exc)
        except BaseException:
            self.close()  # interrupted mid-reply: the stream is out of step
            raise
        got, status, _tag, body = frame
        if status:
            if status == ProtocolError.code or got != op:
                self.close()  # the daemon closes a connection that broke the protocol
            raise error_for(status, msg.decode_error(body))
        if got != op:
            self.close()
            raise ProtocolError(f"reply to op {got} while waiting for op {op}")
        return body

    def _lost(self, why: object) -> NoReturn:
        self.close()
        raise ConnectionLost(f"lost the daemon: {why}")

    def bye(self) -> None:
        """Say goodbye and wait for the daemon to release this connection, then close."""
        if self.sock is not None:
            with contextlib.suppress(TmemError):
                self.call(msg.encode_json_op(Op.BYE, None), Op.BYE)
        self.close()

    def close(self) -> None:
        """Close the socket; the daemon releases this connection's private pools."""
        sock, self.sock = self.sock, None
        self._fd = -1
        if sock is not None:
            sock.close()


class RemoteClient:
    """A client of a tmem daemon; implements :class:`tmem.api.Client`.

    Threads may share one client: each call (a whole batch included) holds
    the connection's lock until its answer is read, so calls from several
    threads take turns and never get each other's answers.  For calls that
    run side by side, connect one client per thread, each under its own name.
    The iterable given to a batch must not call the same client.
    """

    def __init__(self, address: Any, name: Any, token: Any = None, timeout: Any = None) -> None:
        self._chan = Channel(address, name, ROLE_CLIENT, token, timeout)
        # one request and its reply at a time on the connection; the single-page
        # calls take it without a ``with`` (bound once: they are the hot path)
        self._lock = new_lock()
        self._acquire: Callable[[], object] = self._lock.acquire
        self._release: Callable[[], object] = self._lock.release
        self.name = self._chan.name  # as the daemon registered it
        self._page_sizes: dict[int, int] = {}

    def new_pool(
        self,
        persistent: Any = False,
        shared: Any = False,
        uuid: Any = None,
        page_size: Any = DEFAULT_PAGE_SIZE,
    ) -> int:
        """Create (or join, for a shared uuid) a pool; return its id."""
        with self._lock:
            page_size = check_page_size(page_size)
            if uuid is not None:
                check_uuid(uuid)
            frame = msg.encode_new_pool(bool(persistent), bool(shared), uuid, page_size)
            pool = msg.decode_pool(self._chan.call(frame, Op.NEW_POOL))
            self._page_sizes[pool] = page_size
            return pool

    def destroy_pool(self, pool: Any) -> None:
        """Leave the pool; its pages go once no client is left in it."""
        with self._lock:
            self._chan.call(msg.encode_pool_op(Op.DESTROY_POOL, _pool(pool)), Op.DESTROY_POOL)
            self._page_sizes.pop(pool, None)

    def put_page(self, pool: Any, oid: Any, index: Any, data: Any) -> bool:
        """Copy ``data`` in; True if stored, False if the host refused it."""
        self._acquire()
        try:
            oid, index = _handle(pool, oid, index)
            page = data if type(data) is bytes and len(data) <= MAX_PAGE_SIZE else as_page(data)
            return self._chan.put(_pool(pool), oid, index, page)
        finally:
            self._release()

    def get_page(self, pool: Any, oid: Any, index: Any) -> bytes | None:
        """A copy of the page, or None on a miss."""
        self._acquire()
        try:
            oid, index = _handle(pool, oid, index)
            return self._chan.get(_pool(pool), oid, index)
        finally:
            self._release()

    def flush_page(self, pool: Any, oid: Any, index: Any) -> None:
        """Forget the page; later gets miss."""
        with self._lock:
            oid, index = _handle(pool, oid, index)
            frame = msg.encode_handle_op(Op.FLUSH_PAGE, _pool(pool), oid, index)
            self._chan.call(frame, Op.FLUSH_PAGE)

    def flush_object(self, pool: Any, oid: Any) -> None:
        """Forget every page of the object."""
        with self._lock:
            oid, _ = _handle(pool, oid, 0)
            self._chan.call(msg.encode_flush_object(_pool(pool), oid), Op.FLUSH_OBJECT)

    def stats(self) -> Stats:
        """This client's counters, with each pool's under ``"pools"``."""
        with self._lock:
            return _int_pool_keys(
                msg.decode_json(self._chan.call(msg.encode_json_op(Op.STATS, None), Op.STATS))
            )

    def put_pages(self, pool: Any, pages: Any, *, errors: Any = "raise") -> list[Any]:
        """Put each ``(oid, index, data)`` in order; a bool per page (see the Client API)."""
        with self._lock:
            self._chan.check_open()
            results: list[Any] = []
            chunks = _put_chunks(_pool(pool), pages, results, self._chan.max_body)
            self._run_batches(chunks, Op.PUT_PAGES, results, False)
            return settle_batch(results, errors)

    def get_pages(self, pool: Any, handles: Any, *, errors: Any = "raise") -> list[Any]:
        """Get each ``(oid, index)`` in order; bytes or None per page (see the Client API)."""
        with self._lock:
            self._chan.check_open()
            results: list[Any] = []
            pool = _pool(pool)  # before the lookup: an unhashable id is no pool, not a TypeError
            per_frame = max(1, BATCH_BYTES // self._page_sizes.get(pool, DEFAULT_PAGE_SIZE))
            chunks = _get_chunks(pool, handles, results, per_frame)
            self._run_batches(chunks, Op.GET_PAGES, results, True)
            return settle_batch(results, errors)

    def _run_batches(
        self,
        chunks: Iterable[tuple[list[Any], list[int]]],
        op: int,
        results: list[Any],
        pages: bool,
    ) -> None:
        """Send each chunk's frame, keeping two in flight; fill ``results`` from replies."""
        chan, in_flight = self._chan, deque[tuple[list[Any], list[int]]]()
        try:
            for frame, positions in chunks:
                chan.send(frame)
                in_flight.append((frame, positions))
                if len(in_flight) > 1:
                    _fill(self._batch_reply(op, in_flight), in_flight.popleft()[1], results, pages)
            while in_flight:
                _fill(self._batch_reply(op, in_flight), in_flight.popleft()[1], results, pages)
        except BaseException:
            chan.close()  # replies may still be on their way: the stream is out of step
            raise

    def _batch_reply(self, op: int, in_flight: deque[tuple[list[Any], list[int]]]) -> memoryview:
        """The next batch reply; if the client moved, the frames in flight go again, there."""
        chan = self._chan
        while True:
            try:
                return chan.reply(op)
            except Moved as moved:
                chan.follow(moved)
                for frame, _ in in_flight:
                    chan.send(frame)

    def close(self) -> None:
        """Leave the daemon: private pools and their pages are released when this returns."""
        with self._lock:
            self._chan.bye()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tmem.RemoteClient {self.name!r}>"


class RemoteAdmin:
    """Administration of a daemon's host; implements :class:`tmem.api.Admin`.

    Threads may share it as they share a :class:`RemoteClient`: calls take turns.
    """

    def __init__(self, address: Any, token: Any = None, timeout: Any = None) -> None:
        self._chan = Channel(address, "admin", ROLE_ADMIN, token, timeout)
        self._lock = threading.Lock()  # one request and its reply at a time on the connection

    def _call(self, op: int, args: dict[str, Any], decode: Callable[[memoryview], _T]) -> _T:
        """Send a request; its reply as ``decode`` reads it (before another call may run)."""
        return self._frame(msg.encode_json_op(op, args), op, decode)

    def _frame(self, frame: bytes, op: int, decode: Callable[[memoryview], _T]) -> _T:
        with self._lock:
            return decode(self._chan.call(frame, op))

    def authorize_shared(self, client: Any, uuid: Any) -> None:
        """Allow ``client`` to create or join the shared pool ``uuid``."""
        self._call(Op.AUTHORIZE_SHARED, _shared_args(client, uuid), _nothing)

    def revoke_shared(self, client: Any, uuid: Any) -> None:
        """Withdraw that right; the client leaves the pool now if it is in it."""
        self._call(Op.REVOKE_SHARED, _shared_args(client, uuid), _nothing)

    def set_capacity(self, capacity: Any) -> None:
        """Change the bytes the host may spend; ephemeral pages are evicted to fit."""
        self._call(Op.SET_CAPACITY, {"capacity": capacity}, _nothing)

    def set_client(
        self,
        name: Any,
        *,
        weight: Any = None,
        cap: Any = ...,
        compress: Any = ...,
        frozen: Any = None,
    ) -> None:
        """Change a connected client's weight, cap, compression or frozen state."""
        args: dict[str, Any] = {"name": name}
        if weight is not None:
            args["weight"] = weight
        if cap is not ...:
            args["cap"] = cap
        if compress is not ...:
            args["compress"] = compress
        if frozen is not None:
            args["frozen"] = frozen
        self._call(Op.SET_CLIENT, args, _nothing)

    def stats(self) -> Stats:
        """Host totals, capacity, ratios and every client's counters."""
        out: Stats = self._call(Op.HOST_STATS, {}, msg.decode_json)
        for client in out.get("clients", {}).values():
            _int_pool_keys(client)
        return out

    # --- save, restore, migration (see tmem.host_transfer) ------------------

    def _transfer(self, action: str, **args: Any) -> Any:
        return self._call(Op.TRANSFER, {"action": action, **args}, msg.decode_json)

    def export_begin(self, name: Any, shared: Any = "refuse") -> dict[str, Any]:
        """Start exporting client ``name``: its header; a first round of every page."""
        return self._transfer("export_begin", name=name, shared=shared)  # type: ignore[no-any-return]

    def export_round(self, name: Any) -> dict[str, Any]:
        """Start the next round with what changed since the last; the header again."""
        return self._transfer("export_round", name=name)  # type: ignore[no-any-return]

    def export_pages(self, name: Any, max_bytes: Any = 2 << 20) -> list[Record]:
        """The next records of this round; [] when it is done."""
        return self._call(Op.EXPORT_PAGES, {"name": name, "max_bytes": max_bytes}, _records)

    def export_end(self, name: Any, release: Any = False) -> None:
        """Stop exporting; with ``release`` the client's pages leave the daemon."""
        self._transfer("export_end", name=name, release=release)

    def import_begin(self, header: Any) -> None:
        """Make the client of ``header`` on the daemon, parked, with its pools and policy."""
        self._transfer("import_begin", header=header)

    def import_pools(self, header: Any) -> None:
        """Make the parked client's pools those of ``header``."""
        self._transfer("import_pools", header=header)

    def import_pages(self, name: Any, records: Any) -> dict[str, int]:
        """Apply records to the parked client; pages stored and refused."""
        try:
            body = transfer.encode_import(name, records)
        except WireError as exc:
            raise InvalidArgument(str(exc)) from None
        frame = HEADER.pack(Op.IMPORT_PAGES, 0, 0, len(body)) + body
        counts: dict[str, int] = self._frame(frame, Op.IMPORT_PAGES, msg.decode_json)
        return counts

    def import_end(self, name: Any, commit: Any) -> None:
        """Let the client connect (commit), or drop what was imported (abort)."""
        self._transfer("import_end", name=name, commit=commit)

    def drop_parked(self, name: Any) -> None:
        """Free a parked client and its pages."""
        self._transfer("drop", name=name)

    def hold(self, name: Any) -> dict[str, Any]:
        """Stop serving the client (its requests wait) and start the last round."""
        return self._transfer("hold", name=name)  # type: ignore[no-any-return]

    def release(self, name: Any) -> None:
        """Serve a held client again, here (a move was given up)."""
        self._transfer("release", name=name)

    def moved(self, name: Any, to: Any) -> None:
        """The held client now lives at ``to``: it is sent there; its pages here go."""
        self._transfer("moved", name=name, to=to)

    def reload(self) -> dict[str, Any]:
        """Make the daemon read its configuration again (as SIGHUP does); what it applied."""
        applied: dict[str, Any] = self._call(Op.RELOAD, {}, msg.decode_json)
        return applied

    def close(self) -> None:
        """Close the administrative connection."""
        with self._lock:
            self._chan.bye()

    def __enter__(self) -> RemoteAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _send_parts(sock: socket.socket, parts: list[Any]) -> None:
    """Send a frame given as parts, gathered by the kernel rather than joined here."""
    sent = sock.sendmsg(parts)
    if sent < sum(map(len, parts)):  # rare: a signal or a full socket cut the send short
        sock.sendall(b"".join(parts)[sent:])


def _nothing(body: memoryview) -> None:
    """The reading of a reply that carries nothing."""


def _records(body: memoryview) -> list[Record]:
    """The transfer records of an EXPORT_PAGES reply; ProtocolError if they do not decode."""
    try:
        return list(transfer.decode_records(body))
    except WireError as exc:
        raise ProtocolError(str(exc)) from None


def connect(
    address: Any = None, *, name: Any, token: Any = None, timeout: Any = None
) -> RemoteClient:
    """Connect client ``name`` to the daemon at ``address`` (see :class:`RemoteClient`)."""
    return RemoteClient(address, name, token, timeout)


def admin(address: Any = None, *, token: Any = None, timeout: Any = None) -> RemoteAdmin:
    """An administrative handle on the daemon at ``address``; PermissionDenied if refused."""
    return RemoteAdmin(address, token, timeout)


# --- argument checks (the engine repeats them; these keep frames encodable) --


def _pool(pool: Any) -> int:
    if type(pool) is not int or not 0 <= pool < _U32:
        raise NoSuchPool(f"no pool {pool!r}")
    return pool


def _handle(pool: Any, oid: Any, index: Any) -> tuple[int, int]:
    if type(pool) is not int or not 0 <= pool < _U32:  # _pool's check, inline: once per call
        _pool(pool)
    if (  # the engine's cheap pre-test: check_handle decides every case it fails
        type(oid) is int
        and 0 <= oid < OID_LIMIT
        and type(index) is int
        and 0 <= index < INDEX_LIMIT
    ):
        return oid, index
    return check_handle(oid, index)


def _shared_args(client: Any, uuid: Any) -> dict[str, Any]:
    return {"client": client, "uuid": str(check_uuid(uuid))}


def _int_pool_keys(stats: Any) -> Any:
    """JSON turned pool ids into strings; turn them back."""
    if isinstance(stats, dict) and isinstance(stats.get("pools"), dict):
        stats["pools"] = {int(k): v for k, v in stats["pools"].items()}
    return stats


def _put_chunks(pool: int, pages: Iterable[Any], results: list[Any], max_body: int):
    """Yield ``(frame parts, positions)`` of same-size pages; bad items become errors in place."""
    limit = min(BATCH_BYTES, max_body - 4096)
    chunk: list[tuple[int, int, Any]] = []
    positions: list[int] = []
    size, per_frame = -1, 0
    for item in pages:
        pos = len(results)
        results.append(None)
        try:
            oid, index, data = (
                item if type(item) is tuple and len(item) == 3 else batch_item(item, 3)
            )
            oid, index = check_handle(oid, index)
            data = as_page(data)
        except InvalidArgument as exc:
            results[pos] = exc
            continue
        if len(data) != size or len(positions) >= per_frame:
            if positions:
                yield msg.encode_put_pages(pool, size, chunk), positions
            chunk, positions = [], []
            size = len(data)
            per_frame = min(_MAX_ITEMS, max(1, limit // (size + msg.ITEM.size)))
        chunk.append((oid, index, data))
        positions.append(pos)
    if positions:
        yield msg.encode_put_pages(pool, size, chunk), positions


def _get_chunks(pool: int, handles: Iterable[Any], results: list[Any], per_frame: int):
    """Yield ``([frame], positions)`` of at most ``per_frame`` handles each."""
    chunk: list[tuple[int, int]] = []
    positions: list[int] = []
    for item in handles:
        pos = len(results)
        results.append(None)
        try:
            oid, index = item if type(item) is tuple and len(item) == 2 else batch_item(item, 2)
            chunk.append(check_handle(oid, index))
        except InvalidArgument as exc:
            results[pos] = exc
            continue
        positions.append(pos)
        if len(positions) >= per_frame:
            yield [msg.encode_get_pages(pool, chunk)], positions
            chunk, positions = [], []
    if positions:
        yield [msg.encode_get_pages(pool, chunk)], positions


def _fill(body: memoryview, positions: list[int], results: list[Any], pages: bool) -> None:
    """Put a batch reply's per-item answers into ``results`` at ``positions``."""
    try:
        codes, message, data = msg.decode_batch_reply(body, len(positions))
    except WireError as exc:
        raise ProtocolError(str(exc)) from None
    hits = codes.count(msg.ITEM_YES)
    size = len(data) // hits if pages and hits else 0
    if size * hits != len(data):
        raise ProtocolError("batch reply data does not split into its hits")
    offset, yes = 0, msg.ITEM_YES
    for pos, code in zip(positions, codes, strict=True):
        if code == yes:
            if pages:
                results[pos] = data[offset : offset + size].tobytes()
                offset += size
            else:
                results[pos] = True
        elif code & msg.ITEM_ERROR:
            results[pos] = error_for(code & ~msg.ITEM_ERROR, message or "batch item failed")
        elif not pages:
            results[pos] = False
