"""The daemon's event loop: one thread, one epoll, one :class:`tmem.Host`.

Sockets are non-blocking; each connection reads straight into its frame
decoder's buffer and answers every whole frame it holds before waiting again,
so pipelined requests cost one read and one write per batch of frames.  A
connection whose unsent replies exceed :data:`OUT_LIMIT` is not read from until
they drain, which bounds the memory any one peer can make the daemon hold.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tmem.control.metrics import HostCollector, LatencyRecorder, serve_metrics
from tmem.control.state import restore_state, save_state
from tmem.daemon.auth import Authenticator, read_token_file
from tmem.daemon.autosize import make_autosizer
from tmem.daemon.config import Config
from tmem.daemon.dispatch import Dispatcher, Session, error_frame
from tmem.daemon.notify import notify
from tmem.daemon.reload import apply_policies, apply_reload
from tmem.errors import TmemError
from tmem.host import Host
from tmem.wire import Decoder, Op, WireError
from tmem.wire.frames import OutBuffer

log = logging.getLogger("tmem.daemon")
#: Unsent reply bytes at which a connection stops being read.
OUT_LIMIT = 8 << 20
_IN, _OUT = select.EPOLLIN | select.EPOLLRDHUP, select.EPOLLOUT
_GONE = select.EPOLLHUP | select.EPOLLERR
#: While hellos are pending, wake at least this often (seconds) to expire late ones.
_SWEEP = 0.25


class _Goodbye(Exception):
    """The peer said goodbye: send what is queued and close."""


class Connection:
    """A peer's socket, decoder, unsent replies and session."""

    __slots__ = ("sock", "fd", "decoder", "out", "session", "events", "closed")

    def __init__(self, sock: socket.socket, session: Session, max_body: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.decoder = Decoder(max_body)
        self.out = OutBuffer()
        self.session = session
        self.events = _IN
        self.closed = False


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
            config.capacity, compress=config.compress, dedup=config.dedup, tiers=config.tier
        )
        if config.state_dir is not None:
            restore_state(self.host, config.state_dir)
        apply_policies(self.host, None, config)
        tokens = read_token_file(config.token_file) if config.token_file else {}
        self.auth = Authenticator(config.admin_uids, tokens)
        self.dispatcher = Dispatcher(self.host, self.auth, config.max_frame)
        self.dispatcher.on_reload = self.reload
        self.dispatcher.daemon_info = self.info
        self.started = time.time()
        self.metrics_url: str | None = None
        self._metrics: Any = None
        self._reload_requested = False
        self._resumed: list[Connection] = []
        self.autosizer = make_autosizer(self.host, config.autosize) if config.autosize else None
        self.conns: dict[int, Connection] = {}
        self._hello_deadlines: dict[int, float] = {}  # fd -> when its hello is overdue
        self._next_sweep = 0.0
        self.listeners: dict[int, tuple[socket.socket, str]] = {}
        self.tcp_address: tuple[str, int] | None = None
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._bind()
        if config.metrics is not None:
            self._serve_metrics(config.metrics)

    def _serve_metrics(self, address: tuple[str, int]) -> None:
        recorder = LatencyRecorder({int(op): op.name.lower() for op in Op})
        self.dispatcher.dispatch = recorder.timed(self.dispatcher.dispatch)  # type: ignore[method-assign]
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
        os.chmod(path, self.config.socket_mode)
        self._listen(unix, "unix")
        if self.config.tcp is not None:
            host, port = self.config.tcp
            tcp = socket.create_server((host, port), family=_family(host), backlog=128)
            self.tcp_address = tcp.getsockname()[:2]
            self._listen(tcp, "tcp")
        self._wake_r.setblocking(False)
        self._epoll.register(self._wake_r.fileno(), select.EPOLLIN)

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
        poll, conns, readable = self._epoll.poll, self.conns, select.EPOLLIN
        hellos, sizer = self._hello_deadlines, self.autosizer
        wake = self._wake_r.fileno()
        try:
            while not self._stopping:
                timeout = _SWEEP if hellos else -1
                for fd, events in poll(sizer.timeout(timeout) if sizer else timeout):
                    conn = conns.get(fd)
                    if conn is None:
                        if fd in self.listeners:
                            self._accept(*self.listeners[fd])
                        elif fd == wake:
                            self._woken()
                    elif events == readable:  # the usual case, first
                        self._read(conn)
                    else:
                        self._ready(conn, events)
                while self._resumed:  # held clients let go while answering others
                    conn = self._resumed.pop()
                    if not conn.closed:
                        self._process(conn)
                if hellos and time.monotonic() >= self._next_sweep:
                    self._expire_hellos()
                if sizer is not None:
                    sizer.tick()
        finally:
            self._shutdown()

    def _expire_hellos(self) -> None:
        """Close connections that have not finished their hello in time."""
        now = time.monotonic()
        self._next_sweep = now + _SWEEP
        for fd, deadline in list(self._hello_deadlines.items()):
            conn = self.conns.get(fd)
            if conn is None or conn.session.greeted:
                del self._hello_deadlines[fd]
            elif now >= deadline:
                log.warning("closing a connection of %s: no hello in time", conn.session.identity)
                self._close(conn)

    def info(self) -> dict[str, Any]:
        """The daemon's version, uptime, addresses and open connections."""
        return {
            "version": _version(),
            "started": self.started,
            "uptime": time.time() - self.started,
            "addresses": self.addresses,
            "connections": len(self.conns),
            "metrics": self.metrics_url,
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
        self._stopping = True
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
        self._close_sockets()
        log.info("stopped")

    def _close_sockets(self) -> None:
        for sock, _ in self.listeners.values():
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.config.socket)
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics.server_close()
        self._epoll.close()
        self._wake_r.close()
        self._wake_w.close()
        if self._own_host:
            self.host.close()
        log.info("stopped")

    def _accept(self, listener: socket.socket, kind: str) -> None:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # out of descriptors and the like: the daemon carries on
            log.warning("accept failed: %s", exc)
            return
        if len(self.conns) >= self.config.max_connections:
            log.warning("refusing a connection: %d already open", len(self.conns))
            sock.close()
            return
        sock.setblocking(False)
        if kind == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            identity = None
        else:
            try:
                identity = self.auth.unix_peer(sock)
            except OSError as exc:  # the peer left before we asked who it was
                log.warning("no peer credentials: %s", exc)
                sock.close()
                return
        conn = Connection(sock, Session(identity), self.config.max_frame)
        conn.session.resume = functools.partial(self._resumed.append, conn)
        self.conns[conn.fd] = conn
        self._hello_deadlines[conn.fd] = time.monotonic() + self.config.hello_timeout
        self._epoll.register(conn.fd, _IN)

    def _ready(self, conn: Connection, events: int) -> None:
        if events & _OUT:
            self._process(conn)
        if events & select.EPOLLIN and not conn.closed:
            self._read(conn)
        elif events & (_GONE | select.EPOLLRDHUP) and not conn.closed:
            self._read(conn)  # reads the last bytes, then sees the end

    def _read(self, conn: Connection) -> None:
        decoder = conn.decoder
        try:
            n = conn.sock.recv_into(decoder.recv_buffer())
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if n == 0:
            self._close(conn)
            return
        decoder.received(n)
        self._process(conn)

    def _process(self, conn: Connection) -> None:
        """Answer every whole frame buffered (while replies fit), then send."""
        out = conn.out
        more = True
        while more and not conn.closed:
            more = self._answer(conn)
            self._send(conn)
            more = more and out.queued < OUT_LIMIT

    def _answer(self, conn: Connection) -> bool:
        """Answer buffered frames until none is left (False) or replies fill up (True)."""
        out, decoder, session = conn.out, conn.decoder, conn.session
        dispatch = self.dispatcher.dispatch
        try:
            while out.queued < OUT_LIMIT:
                if session.held:  # a migration holds this client: its requests wait
                    return False
                try:
                    frame = decoder.next_frame()
                except WireError as exc:
                    out.write(error_frame(0, 0, exc))  # the frame's own header is not trusted
                    raise
                if frame is None:
                    return False
                op, _status, tag, body = frame
                dispatch(session, op, tag, body, out)  # on WireError it queued the error
                if session.done:
                    raise _Goodbye
        except (WireError, _Goodbye) as exc:
            if isinstance(exc, WireError):
                log.warning("closing a connection of %s: %s", session.identity, exc)
            self._send(conn)
            self._close(conn)
            return False
        except Exception:  # a fault of ours must not take the daemon down
            log.exception("internal error; closing the connection")
            out.write(error_frame(0, 0, TmemError("internal error in the daemon")))
            self._send(conn)
            self._close(conn)
            return False
        return True

    def _send(self, conn: Connection) -> None:
        out = conn.out
        if out.queued:
            try:
                out.consumed(conn.sock.send(out.pending()))
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(conn)
                return
        queued = out.queued
        reading = queued < OUT_LIMIT and not conn.session.held
        want = (_OUT if queued else 0) | (_IN if reading else 0)
        if want != conn.events and not conn.closed:
            conn.events = want
            self._epoll.modify(conn.fd, want)

    def _close(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.conns.pop(conn.fd, None)
        self._hello_deadlines.pop(conn.fd, None)
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(conn.fd)
        conn.sock.close()
        conn.session.close()


def _version() -> str:
    from tmem import __version__

    return __version__


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
