"""The daemon's event loop: one thread, one epoll, one :class:`tmem.Host`.

Sockets are non-blocking; each connection reads straight into its frame
decoder's buffer and answers every whole frame it holds before waiting again,
so pipelined requests cost one read and one write per batch of frames.

What a peer can make the daemon hold is bounded (``docs/operations.md``,
"Limits"): before its hello a connection has a 4 KiB buffer and frames longer
than a hello are refused at their header; after it, a connection keeps small
buffers, and larger ones (a large frame in, large replies out) only under a
grant of the daemon-wide ``transfer-budget`` (:mod:`tmem.daemon.budget`); a
connection whose unsent replies reach its limit is not read from until they
drain, and connections are limited in all, per peer (uid, token or address)
and in time (``hello-timeout``, ``idle-timeout``), with slots kept for the
administrator.

A get of a page below RAM is loaded by a worker thread, off the loop: the
connection's reply waits, and its later requests wait unread, until the load
is done (:mod:`tmem.daemon.later`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import resource
import select
import signal
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from tmem.control.metrics import HostCollector, LatencyRecorder, serve_metrics
from tmem.control.state import restore_state, save_state
from tmem.daemon.auth import Authenticator, Identity, read_token_file
from tmem.daemon.autosize import make_autosizer
from tmem.daemon.budget import SMALL_OUT, SMALL_QUEUE, TransferBudget, granted_out
from tmem.daemon.config import Config
from tmem.daemon.dispatch import Batch, Dispatcher, Session, error_frame, refuse
from tmem.daemon.later import Fetchers, Later
from tmem.daemon.loop import turns
from tmem.daemon.notify import notify
from tmem.daemon.reload import apply_policies, apply_reload
from tmem.errors import LimitExceeded, TmemError
from tmem.host import Host
from tmem.wire import Decoder, Op, WireError, check_request
from tmem.wire.frames import OutBuffer
from tmem.wire.messages import MAX_HELLO_BODY

log = logging.getLogger("tmem.daemon")
#: A connection's receive buffer before its hello (the longest hello fits).
HELLO_BUFFER = 4 << 10
#: Buffer sizes of a connection after its hello; they grow for large frames
#: and shrink back once the connection has been quiet for :data:`SHRINK_AFTER`.
BASE_IN = 32 << 10
BASE_OUT = 4 << 10
SHRINK_AFTER = 1.0
#: Requests whose reply may be larger than a page: answered only under a grant.
LARGE_REPLIES = frozenset({Op.GET_PAGES, Op.STATS, Op.HOST_STATS, Op.TRANSFER, Op.EXPORT_PAGES})
#: Connection slots only administrative Unix peers may take (at most a quarter).
ADMIN_RESERVE = 4
#: Descriptors the daemon keeps for itself beside its connections.
SPARE_FDS = 32
#: Seconds a large batch runs before the other connections are served again.
BATCH_TURN = 0.001
#: Seconds between two log lines about the same kind of peer misbehaviour.
LOG_EVERY = 10.0
# Final: module constants the compiled loop reads per request without a dict lookup
_IN: Final = select.EPOLLIN | select.EPOLLRDHUP
_OUT: Final = select.EPOLLOUT
_READABLE: Final = select.EPOLLIN
_GONE: Final = select.EPOLLHUP | select.EPOLLERR
_SMALL_QUEUE: Final = SMALL_QUEUE
#: Timers (hello and idle timeouts, buffer shrinking) are checked this often.
_SWEEP = 0.25
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _Goodbye(Exception):
    """The peer said goodbye: send what is queued and close."""


class Connection:
    """A peer's socket, decoder, unsent replies and session."""

    __slots__ = (
        "sock", "fd", "decoder", "out", "session", "events", "closed", "eof", "opened", "last",
        "grant", "waiting", "batch", "stepping", "drained", "later",
    )  # fmt: skip

    def __init__(self, sock: socket.socket, session: Session) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.decoder = Decoder(MAX_HELLO_BODY, initial=HELLO_BUFFER)
        self.out = OutBuffer(BASE_OUT, limit=SMALL_OUT)
        self.grant = 0  # bytes of the transfer budget it holds (0 or one grant)
        self.waiting = False  # for a grant: it is neither read nor answered
        self.batch: Batch | None = None  # a large batch under way: nothing else is read
        self.stepping = False  # it is in the server's queue of batches under way
        self.later: Later | None = None  # a reply waiting for a tier's load: nothing else is read
        self.session = session
        self.events = _IN
        self.closed = False
        self.eof = False  # the peer shut its sending side: answer what came, then close
        self.opened = self.last = time.monotonic()
        self.drained = self.opened  # when its replies last moved (sent, or none queued)


class Throttle:
    """Log lines about peers at most once per :data:`LOG_EVERY` seconds per kind,
    saying how many were left out."""

    def __init__(self, every: float = LOG_EVERY) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def warning(self, kind: str, text: str, *args: object) -> None:
        """Log ``text % args`` unless a line of this ``kind`` was logged recently."""
        now = time.monotonic()
        if now - self._last.get(kind, -self.every) < self.every:
            self._dropped[kind] = self._dropped.get(kind, 0) + 1
            return
        self._last[kind] = now
        dropped = self._dropped.pop(kind, 0)
        if dropped:
            text += f" ({dropped} more like this left out)"
        log.warning(text, *args)


class Server:
    """A tmem daemon: listens on a Unix socket (and optionally TCP) and serves a host."""

    def __init__(
        self,
        config: Config,
        host: Host | None = None,
        loader: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        #: reads the configuration again (file and options) for a reload
        self.loader = loader or (lambda: self.config)
        self._own_host = host is None
        self.host = host or Host(
            config.capacity,
            compress=config.compress,
            dedup=config.dedup,
            tiers=config.tier,
            policy=config.host_policy,
            reserve=config.host_reserve,
            order=config.host_order,
        )
        if config.state_dir is not None:
            restore_state(self.host, config.state_dir)
        self.host.engine.max_pools = config.max_pools
        apply_policies(self.host, None, config)
        tokens = read_token_file(config.token_file) if config.token_file else {}
        self.auth = Authenticator(config.admin_uids, tokens)
        self.dispatcher = Dispatcher(self.host, self.auth, config.max_frame, self._admit)
        #: config.max_frame (never reloaded), read per request without the config's getattr
        self._max_frame = config.max_frame
        self.dispatcher.on_reload = self.reload
        self.dispatcher.daemon_info = self.info
        self.started = time.time()
        self.metrics_url: str | None = None
        self._observe: Callable[[int, float], None] | None = None  # request metrics
        self._metrics: Any = None
        self._reload_requested = False
        self._resumed: list[Connection] = []
        #: single-page requests are answered straight from the loop
        #: (Dispatcher.answer_quick), unless every request is timed
        self._quick = True
        #: every other request (timed when metrics are served)
        self._dispatch = self.dispatcher.dispatch
        self._batches: deque[Connection] = deque()  # connections with a batch to step
        self.autosizer = make_autosizer(self.host, config.autosize) if config.autosize else None
        self.max_connections = fit_descriptors(config.max_connections)
        self.reserve = min(ADMIN_RESERVE, self.max_connections // 4)
        self.conns: dict[int, Connection] = {}
        self.budget = TransferBudget(config.transfer_budget, config.max_frame)
        self.per_peer: dict[str, int] = {}
        self.throttle = Throttle()
        self._next_sweep = 0.0
        #: when the loop's last wait ended: the time of reads and sends (no clock per request)
        self._now = time.monotonic()
        self._accept_resume = 0.0  # while accepting is paused (out of descriptors): until when
        self._accept_backoff = 0.0
        self.listeners: dict[int, tuple[socket.socket, str]] = {}
        self.tcp_address: tuple[str, int] | None = None
        self._socket_id: tuple[int, int] | None = None
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = socket.socketpair()
        self.fetchers = Fetchers(config.fetch_workers)
        #: set by :meth:`stop`: the loop ends after its turn
        self.stopping = False
        self._bind()
        if config.metrics is not None:
            self._serve_metrics(config.metrics)

    def _serve_metrics(self, address: tuple[str, int]) -> None:
        recorder = LatencyRecorder({int(op): op.name.lower() for op in Op})
        self._dispatch = recorder.timed(self.dispatcher.dispatch)
        self._quick = False  # every request goes through the timed dispatch
        self._observe = recorder.observe
        try:
            self._metrics, _ = serve_metrics(address, HostCollector(self._stats, recorder))
        except OSError:
            self._close_sockets()
            raise
        host, port = self._metrics.server_address[:2]
        self.metrics_url = f"http://{host}:{port}/metrics"

    def _stats(self) -> dict[str, Any]:
        stats = self.host.stats()
        stats["daemon"] = self.info()
        return stats

    @property
    def address(self) -> str:
        """The Unix address clients pass to :func:`tmem.connect`."""
        return "unix:" + self.config.socket

    def _bind(self) -> None:
        path = self.config.socket
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if _is_stale_socket(path):
                os.unlink(path)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o777 & ~self.config.socket_mode)
        try:
            unix.bind(path)
        finally:
            os.umask(old)
        made = os.stat(path)
        self._socket_id = (made.st_dev, made.st_ino)  # to remove only our own at the end
        os.chmod(path, self.config.socket_mode)
        self._listen(unix, "unix")
        if self.config.tcp is not None:
            host, port = self.config.tcp
            tcp = socket.create_server((host, port), family=_family(host), backlog=128)
            self.tcp_address = tcp.getsockname()[:2]
            self._listen(tcp, "tcp")
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)  # a full buffer already wakes the loop (and signals)
        self._epoll.register(self._wake_r.fileno(), select.EPOLLIN)
        self._epoll.register(self.fetchers.fd, select.EPOLLIN)

    def _listen(self, sock: socket.socket, kind: str) -> None:
        sock.listen(128)
        sock.setblocking(False)
        self.listeners[sock.fileno()] = (sock, kind)
        self._epoll.register(sock.fileno(), select.EPOLLIN)

    @property
    def addresses(self) -> list[str]:
        """Every address the daemon listens on."""
        out = [self.address]
        if self.tcp_address:
            host, port = self.tcp_address
            out.append(f"tcp://{host}:{port}")
        return out

    def serve_forever(self) -> None:
        """Serve until :meth:`stop`; then close every connection and the sockets."""
        config = self.config
        log.info(
            "tmem %s serving %s: capacity %d bytes, compress %s, dedup %s",
            _version(), " and ".join(self.addresses), self.host.capacity,
            config.compress or "none", config.dedup or "none",
        )  # fmt: skip
        if self.metrics_url:
            log.info("metrics at %s", self.metrics_url)
        notify(f"READY=1\nMAINPID={os.getpid()}")
        try:
            turns(self)
        finally:
            self._shutdown()

    def wake_on_signals(self) -> None:
        """Have a signal's arrival end the loop's wait at once (the main thread only).

        The signal handlers run between two turns (:func:`tmem.daemon.loop.turns`);
        without this, a signal that came while a turn was busy would wait for
        the next event or timer (forever, with no connection open).
        """
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)

    def turn(self) -> None:
        """One turn of the loop: wait for events (or the next timer), then answer them."""
        conns = self.conns
        timers = conns or self._accept_resume
        # one clock reading per turn, after the wait: the next sweep may come
        # as late as this turn's work took (timers are 0.25 s apart)
        wait = max(0.0, self._next_sweep - self._now) if timers else -1.0
        if self._batches:
            wait = 0.0  # look at the others, then the batches go on
        sizer = self.autosizer
        ready = self._epoll.poll(sizer.timeout(wait) if sizer else wait)
        self._now = time.monotonic()
        for fd, events in ready:
            conn = conns.get(fd)
            if conn is None:
                if fd in self.listeners:
                    self._accept(*self.listeners[fd])
                elif fd == self.fetchers.fd:
                    self._fetched()
                elif fd == self._wake_r.fileno():
                    self._woken()
            elif events == _READABLE:  # the usual case, first
                self._read(conn)
            else:
                self._ready(conn, events)
        while self._resumed:  # held clients let go while answering others
            conn = self._resumed.pop()
            if not conn.closed:
                self._process(conn)
        if self._batches:
            self._step_batches()
        if self._now >= self._next_sweep:
            self._sweep(self._now)
        if sizer is not None:
            sizer.tick()

    def _sweep(self, now: float) -> None:
        """Expire late hellos and idle connections, shrink quiet buffers, resume accepting."""
        self._next_sweep = now + _SWEEP
        if self._accept_resume and now >= self._accept_resume:
            self._accept_resume = 0.0
            for fd in self.listeners:
                with contextlib.suppress(OSError):
                    self._epoll.register(fd, select.EPOLLIN)
        idle = self.config.idle_timeout
        for conn in list(self.conns.values()):
            session = conn.session
            if self._hoards(conn, now):
                self.throttle.warning(
                    "hoard",
                    "closing a connection of %s: it holds a grant others wait for "
                    "and has read none of its replies for %.0f s",
                    session.identity,
                    now - conn.drained,
                )
                self._close(conn)
                continue
            if conn.batch is not None or conn.later is not None:
                continue  # busy, not idle: its buffers hold the batch, or a load runs
            if not session.greeted:
                if now - conn.opened >= self.config.hello_timeout:
                    self.throttle.warning(
                        "hello", "closing a connection of %s: no hello in time", session.identity
                    )
                    self._close(conn)
                continue
            quiet = now - conn.last
            if idle and quiet >= idle and self._may_expire(conn):
                self.throttle.warning(
                    "idle", "closing a connection of %s: idle for %.0f s", session.identity, quiet
                )
                self._close(conn)
            elif quiet >= SHRINK_AFTER:
                if conn.grant:
                    self._release(conn)
                else:
                    conn.decoder.shrink(BASE_IN)
                    if not conn.out.queued and conn.out.capacity > BASE_OUT:
                        conn.out = OutBuffer(BASE_OUT, limit=SMALL_OUT)

    def _hoards(self, conn: Connection, now: float) -> bool:
        """True when ``conn`` keeps a grant that others wait for while its replies
        have not moved for ``grant-timeout`` (the peer reads nothing)."""
        return (
            bool(conn.grant)
            and bool(self.budget.waiting)
            and conn.out.queued > 0
            and now - conn.drained >= self.config.grant_timeout
        )

    @staticmethod
    def _may_expire(conn: Connection) -> bool:
        """An idle connection may be closed unless its client holds persistent pages
        (which the contract keeps) and it is not stuck mid-frame or mid-reply."""
        if conn.decoder.buffered or conn.out.queued:
            return True
        client = conn.session.client
        holds = getattr(client, "holds_persistent_pages", None)
        return holds is None or not holds()

    def info(self) -> dict[str, Any]:
        """The daemon's version, uptime, addresses and open connections."""
        return {
            "version": _version(),
            "started": self.started,
            "uptime": time.time() - self.started,
            "addresses": self.addresses,
            "connections": len(self.conns),
            "metrics": self.metrics_url,
            **self.fetchers.stats(),
        }

    def reload(self) -> dict[str, Any]:
        """Read the configuration again; apply client policies and capacity."""
        new = self.loader()
        done = apply_reload(self.host, self.config, new)
        self.config = replace(self.config, clients=new.clients, capacity=new.capacity)
        log.info("reloaded the configuration: %s", done)
        return done

    def request_reload(self) -> None:
        """Reload from the loop, soon (safe from a signal handler)."""
        self._reload_requested = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"r")

    def _woken(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_r.recv(4096)
        if self._reload_requested:
            self._reload_requested = False
            try:
                self.reload()
            except TmemError as exc:
                log.error("reload failed, nothing changed: %s", exc)

    def stop(self) -> None:
        """Ask the loop to stop (safe from any thread or a signal handler)."""
        self.stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _shutdown(self) -> None:
        notify("STOPPING=1")
        if self.config.state_dir is not None:
            try:  # before the connections close: their clients' pages are still here
                save_state(self.host, self.config.state_dir)
            except Exception:
                log.exception("could not save the state")
        for conn in list(self.conns.values()):
            self._close(conn)
        for later in self.fetchers.close():  # loads under way end (tiers bound their time)
            later.owner.session.close()
        self._close_sockets()
        log.info("stopped")

    def _close_sockets(self) -> None:
        for sock, _ in self.listeners.values():
            sock.close()
        self._remove_socket()
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics.server_close()
        self._epoll.close()
        self._wake_r.close()
        self._wake_w.close()
        if self._own_host:
            self.host.close()
        log.info("stopped")

    def _remove_socket(self) -> None:
        """Unlink the socket path only if it is still the socket this daemon made."""
        path = self.config.socket
        try:
            found = os.lstat(path)
        except OSError:
            return
        if (found.st_dev, found.st_ino) != self._socket_id:
            log.warning("leaving %s in place: it is no longer this daemon's socket", path)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    # --- connections -----------------------------------------------------

    def _accept(self, listener: socket.socket, kind: str) -> None:
        try:
            sock, peer = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in _OUT_OF_RESOURCES:
                self._pause_accepting(exc)
            else:  # the peer left before we took it, and the like
                self.throttle.warning("accept", "accept failed: %s", exc)
            return
        self._accept_backoff = 0.0
        sock.setblocking(False)
        identity: Identity | None = None
        if kind == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key: str | None = f"address {peer[0]}"
        else:
            try:
                identity = self.auth.unix_peer(sock)
            except OSError as exc:  # the peer left before we asked who it was
                self.throttle.warning("accept", "no peer credentials: %s", exc)
                sock.close()
                return
            key = None if identity.admin else identity.key
        refusal = self._refusal(key, identity is not None and identity.admin)
        if refusal is not None:
            self.throttle.warning("refuse", "refusing a connection of %s: %s", key, refusal)
            with contextlib.suppress(OSError):  # best effort: the peer learns why
                sock.send(error_frame(0, 0, LimitExceeded(refusal)))
            sock.close()
            return
        if key is not None:
            self.per_peer[key] = self.per_peer.get(key, 0) + 1
        conn = Connection(sock, Session(identity, key))
        conn.session.resume = functools.partial(self._resumed.append, conn)
        self.conns[conn.fd] = conn
        self._epoll.register(conn.fd, _IN)

    def _refusal(self, key: str | None, admin: bool) -> str | None:
        """Why a new connection of ``key`` may not have a slot, or None if it may."""
        limit = self.max_connections if admin else self.max_connections - self.reserve
        if len(self.conns) >= limit:
            return f"{len(self.conns)} connections already open"
        if key is not None and self.per_peer.get(key, 0) >= self.config.max_connections_per_peer:
            return f"{self.config.max_connections_per_peer} connections of {key} already open"
        return None

    def _admit(self, session: Session, identity: Identity) -> None:
        """A hello named who the peer is: count it under that identity from now on."""
        key = None if identity.admin else identity.key
        if key == session.key:
            return
        if key is not None and self.per_peer.get(key, 0) >= self.config.max_connections_per_peer:
            raise LimitExceeded(
                f"{self.config.max_connections_per_peer} connections of {key} already open"
            )
        self._uncount(session)
        if key is not None:
            self.per_peer[key] = self.per_peer.get(key, 0) + 1
        session.key = key

    def _uncount(self, session: Session) -> None:
        key, session.key = session.key, None
        if key is not None:
            left = self.per_peer[key] - 1
            if left:
                self.per_peer[key] = left
            else:
                del self.per_peer[key]

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors (or memory): stop accepting for a while, not spin on it."""
        self._accept_backoff = min(1.0, max(0.05, 2 * self._accept_backoff))
        self._accept_resume = time.monotonic() + self._accept_backoff
        self._next_sweep = min(self._next_sweep, self._accept_resume)
        for fd in self.listeners:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
        self.throttle.warning(
            "accept", "accept failed: %s; not accepting for %.2f s", exc, self._accept_backoff
        )

    def _ready(self, conn: Connection, events: int) -> None:
        if events & _GONE and (
            conn.eof or conn.waiting or conn.batch is not None or conn.later is not None
        ):
            # the peer is gone both ways: nothing more can be sent, so a batch under
            # way or a request waiting for a grant is dropped, not executed for nobody
            self._close(conn)
            return
        if events & _OUT:
            self._process(conn)
        if events & select.EPOLLIN and not conn.closed:
            self._read(conn)
        elif events & (_GONE | select.EPOLLRDHUP) and not conn.closed and not conn.eof:
            self._read(conn)  # reads the last bytes, then sees the end

    def _read(self, conn: Connection) -> None:
        if conn.batch is not None:
            return  # its items are views into the receive buffer: read once it is done
        try:
            n = conn.decoder.read_from(conn.sock, None if conn.grant else BASE_IN, conn.fd)
            if n < 0:  # a frame larger than its buffer waits for a grant, unread
                if not self._take_grant(conn):
                    self._send(conn)
                    return
                n = conn.decoder.read_from(conn.sock, None, conn.fd)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.last = self._now
        if n == 0:  # the peer shut its side: answer what it sent, then close
            conn.eof = True
        self._process(conn)

    def _process(self, conn: Connection) -> None:
        """Answer every whole frame buffered (while replies fit), then send."""
        if conn.batch is not None and not conn.stepping and not conn.session.held:
            conn.stepping = True  # a held client's batch goes on once it is let go
            self._batches.append(conn)
        more = 1
        while more and not conn.closed:
            more = self._answer(conn)
            self._send(conn)
            more = more if conn.out.queued < more else 0  # else sending resumes it
        if conn.closed or conn.waiting or conn.out.queued or conn.batch is not None:
            return
        if conn.later is not None:
            return
        if conn.eof:
            self._close(conn)
        elif conn.grant and self.budget.waiting and not conn.decoder.buffered:
            self._release(conn)  # others wait: its grant goes as soon as it is done

    def _queue_limit(self, conn: Connection) -> int:
        """Unsent reply bytes at which ``conn`` stops being answered and read."""
        return self.config.max_frame if conn.grant else SMALL_QUEUE

    def _take_grant(self, conn: Connection) -> bool:
        """Give ``conn`` a grant of the transfer budget (True at once if it holds
        one), or False: it waits for one."""
        if conn.grant:
            return True
        # an administrator's connection (counted under no key) never waits
        if not self.budget.take(conn, overdraw=conn.session.key is None):
            return False
        conn.out.limit = granted_out(self.config.max_frame)
        return True

    def _release(self, conn: Connection) -> None:
        """Shrink the buffers of ``conn`` and give its grant to whoever waits for one."""
        conn.decoder.shrink(BASE_IN)
        if conn.decoder.capacity > BASE_IN or conn.out.queued:
            return  # something pending still needs the room (the next sweep tries again)
        conn.out = OutBuffer(BASE_OUT, limit=SMALL_OUT)
        self._wake(self.budget.give_back(conn))

    def _wake(self, granted: list[Any]) -> None:
        """Connections that waited for a grant and now have one: answer and read them."""
        for conn in granted:
            conn.out.limit = granted_out(self.config.max_frame)
            self._resumed.append(conn)

    def _answer(self, conn: Connection) -> int:
        """Answer buffered frames until none can be now (0) or replies fill up: then the
        length the queue of replies must drain below for answering to go on."""
        out, decoder, session = conn.out, conn.decoder, conn.session
        dispatch, quick, dispatcher = self._dispatch, self._quick, self.dispatcher
        max_frame = self._max_frame
        if conn.later is not None:
            return 0  # its next requests wait for the reply being loaded
        try:  # the queue's limit is _queue_limit's, inline: this loop runs per request
            while out.queued < (max_frame if conn.grant else _SMALL_QUEUE):
                if session.held or conn.batch is not None:  # its requests wait
                    return 0
                try:
                    frame = decoder.next_frame()
                    if frame is not None and frame[1]:
                        check_request(frame[1])
                except WireError as bad:
                    out.write(error_frame(0, 0, bad))  # the frame's own header is not trusted
                    raise
                if frame is None:
                    return 0
                op, _status, tag, body = frame
                if (  # a single page: no hello, batch or grant
                    quick
                    and session.greeted
                    and dispatcher.answer_quick(session, op, tag, body, out)
                ):
                    if session.later is not None:  # its reply waits for a tier's load
                        self._start_later(conn)
                        return 0
                    continue
                large = op in LARGE_REPLIES and session.greeted
                if large and out.queued > SMALL_QUEUE:
                    decoder.unget()  # a large reply starts after a short queue only
                    return SMALL_QUEUE + 1
                if large and not self._take_grant(conn):
                    decoder.unget()  # answered once a grant is free
                    return 0
                batch = dispatch(session, op, tag, body, out)  # on WireError it queued the error
                if session.later is not None:
                    self._start_later(conn)
                    return 0
                if batch is not None:  # executed a slice at a time by _step_batches
                    conn.batch, conn.stepping = batch, True
                    self._batches.append(conn)
                    return 0
                if session.done:
                    raise _Goodbye
                if decoder.max_body != max_frame and session.greeted:
                    decoder.set_limit(max_frame, BASE_IN)  # the hello is done
        except Exception as exc:
            self._fail(conn, exc)
            return 0
        return self._queue_limit(conn)

    def _step_batches(self) -> None:
        """Let each large batch under way run for :data:`BATCH_TURN`, in turn."""
        clock = time.perf_counter
        for _ in range(len(self._batches)):
            conn = self._batches.popleft()
            conn.stepping = False
            batch = conn.batch
            if conn.closed or batch is None or conn.session.held:
                continue  # a held client's batch is queued again when it is let go
            started = clock()
            turn_ends = started + BATCH_TURN
            try:
                while not (done := batch.step(conn.session, conn.out)) and clock() < turn_ends:
                    pass
            except Exception as exc:
                self._fail(conn, exc)
                continue
            conn.last = time.monotonic()
            batch.spent += clock() - started
            if done:
                conn.batch = None
                if self._observe is not None:
                    self._observe(batch.op, batch.spent)
                if conn.session.later is not None:
                    self._start_later(conn)
                self._process(conn)  # sends the reply and answers what came after it
            else:
                conn.stepping = True
                self._batches.append(conn)

    def _start_later(self, conn: Connection) -> None:
        """Hand the session's :class:`Later` to a worker; the connection waits for it."""
        later, conn.session.later = conn.session.later, None
        assert later is not None
        later.owner = conn
        conn.later = later
        self.fetchers.start(later)

    def _fetched(self) -> None:
        """Loads are done: queue their replies and serve their connections again."""
        for later in self.fetchers.finished():
            conn = later.owner
            later.owner = conn.later = None
            if conn.closed:  # the peer left meanwhile: its client goes now
                conn.session.close()
                continue
            if later.fault is not None:
                self._fail(conn, later.fault)
                continue
            conn.last = self._now
            if later.error is not None:
                refuse(later.op, later.tag, later.error, conn.out)
            else:
                later.reply(later.result, later.tag, conn.out)
            self._process(conn)  # sends it and answers what came after it

    def _fail(self, conn: Connection, exc: Exception) -> None:
        """Close ``conn`` after a goodbye, a frame that breaks the protocol (its error
        reply is queued) or a fault of ours, sending what is queued first."""
        if isinstance(exc, WireError):
            self.throttle.warning(
                "protocol", "closing a connection of %s: %s", conn.session.identity, exc
            )
        elif not isinstance(exc, _Goodbye):  # a fault of ours must not take the daemon down
            log.error("internal error; closing the connection", exc_info=exc)
            conn.out.write(error_frame(0, 0, TmemError("internal error in the daemon")))
        self._send(conn)
        self._close(conn)

    def _send(self, conn: Connection) -> None:
        out = conn.out
        sent = 0
        if out.queued:
            try:
                sent = out.send_to(conn.sock, conn.fd)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(conn)
                return
        queued = out.queued
        if sent or not queued:
            conn.drained = self._now
        reading = (
            queued < (self._max_frame if conn.grant else _SMALL_QUEUE)  # _queue_limit
            and not conn.session.held
            and not conn.waiting
            and conn.batch is None
            and conn.later is None
        )
        if conn.eof:
            want = _OUT if queued else 0
        else:
            want = (_OUT if queued else 0) | (_IN if reading else 0)
        if want != conn.events and not conn.closed:
            conn.events = want
            self._epoll.modify(conn.fd, want)

    def _close(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        conn.batch = None
        self.conns.pop(conn.fd, None)
        self._uncount(conn.session)
        later = conn.later
        if conn.grant or conn.waiting:
            self._wake(self.budget.give_back(conn))
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(conn.fd)
        # its number may go to the next connection accepted: reads and sends by
        # number (tmem.wire.sockio) must never reach that one
        conn.fd = -1
        conn.sock.close()
        conn.decoder.release()  # whatever still refers to the connection,
        conn.out.release()  # its buffers go now
        if later is None:  # else its client goes once the load is done (_fetched)
            conn.session.close()


def _version() -> str:
    from tmem import __version__

    return __version__


def fit_descriptors(wanted: int) -> int:
    """Raise the soft open-file limit to what ``wanted`` connections need, as far as
    the hard limit allows; return the connections that fit (logged if fewer)."""
    need = wanted + SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    fit = soft - SPARE_FDS
    if fit < 1:
        raise TmemError(f"the open-file limit of {soft} leaves no descriptor for connections")
    log.warning(
        "max-connections lowered from %d to %d to fit the open-file limit of %d",
        wanted, fit, soft,
    )  # fmt: skip
    return fit


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _is_stale_socket(path: str) -> bool:
    """Whether ``path`` is a socket nobody listens on (left by a daemon that died)."""
    if not stat.S_ISSOCK(os.stat(path).st_mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    raise OSError(f"another daemon is listening on {path}")


def run_in_thread(server: Server) -> threading.Thread:
    """Start ``server.serve_forever`` in a daemon thread (for tests and benchmarks)."""
    thread = threading.Thread(target=server.serve_forever, name="tmem-daemon", daemon=True)
    thread.start()
    return thread
