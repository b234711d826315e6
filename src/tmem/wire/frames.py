"""Frames: the fixed binary header and a zero-copy, sans-io frame decoder.

Every message in either direction is one frame: an 8-byte little-endian
header ``op:u8 status:u8 tag:u16 length:u32`` followed by ``length`` bytes of
body.  ``status`` is 0 in requests and in successful replies, else a code from
:data:`tmem.errors.STATUS`; ``tag`` is echoed back unchanged in the reply.
Nothing here touches a socket: bytes go in through :meth:`Decoder.recv_buffer`
and :meth:`Decoder.received`, frames come out of :meth:`Decoder.next_frame`.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from itertools import accumulate
from typing import Any, Final

from tmem.wire import sockio

#: op, status, tag, body length.
HEADER: Final = struct.Struct("<BBHI")
#: The C socket calls (tmem.wire.sockio), or None: the socket module's methods.
_RECV_INTO: Final[Any] = sockio.RECV_INTO
_SEND: Final[Any] = sockio.SEND
#: A header's fields at an offset, in one call (compiled, fewer calls than byte by byte).
_unpack_header: Final = HEADER.unpack_from
HEADER_SIZE: Final = 8  # HEADER.size, a constant the compiled module inlines
#: The largest body either side accepts by default (a batch of 4 MiB of pages plus handles).
DEFAULT_MAX_BODY = (4 << 20) + (64 << 10)
#: Buffers start this small and grow (up to one whole frame) only when a frame needs it.
_INITIAL_BUFFER = 256 << 10
#: Keep at least this much free space at the end of the buffer for the next read.
_MIN_READ = 64 << 10
#: An output buffer keeps up to this much memory once drained.
KEEP_OUT = 4 << 20
#: Parts of at least this many bytes in all are queued by reference (OutBuffer.write_gathered).
GATHER = 16 << 10
#: Parts per ``sendmsg`` at most: about what a socket's send buffer takes at once
#: (64 pages of 4 KiB; the kernel's IOV_MAX is 1024), so that a large reply's later
#: parts are not handed to every one of the sends it takes.
GATHER_PARTS = 64


class WireError(Exception):
    """The peer's bytes are not a valid frame or message (the peer's fault)."""


def check_request(status: int) -> None:
    """Refuse a request frame whose status byte is not 0 (only replies carry one)."""
    if status:
        raise WireError(f"a request carries status {status}; requests carry 0")


def encode_frame(op: int, body: bytes = b"", status: int = 0, tag: int = 0) -> bytes:
    """One frame: header plus body."""
    return HEADER.pack(op, status, tag, len(body)) + body


def frame_head(op: int, length: int, status: int = 0, tag: int = 0) -> bytes:
    """The header of a frame whose ``length`` bytes of body are sent after it."""
    return HEADER.pack(op, status, tag, length)


class Decoder:
    """Split a byte stream into frames without copying their bodies.

    A body returned by :meth:`next_frame` is a view into the decoder's buffer;
    it stays valid until the next call of :meth:`recv_buffer`.
    """

    def __init__(self, max_body: int = DEFAULT_MAX_BODY, initial: int | None = None) -> None:
        self.max_body = max_body
        if initial is None:
            initial = min(_INITIAL_BUFFER, max_body + HEADER_SIZE + _MIN_READ)
        self._buf = bytearray(max(initial, 2 * HEADER_SIZE))
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._last = 0  # where the frame next_frame returned last began

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return self._end - self._start

    @property
    def capacity(self) -> int:
        """Bytes of memory the buffer holds (received or not)."""
        return len(self._buf)

    def set_limit(self, max_body: int, size: int | None = None) -> None:
        """Accept bodies up to ``max_body`` from now on; with ``size``, grow the
        buffer to that many bytes now (it still grows further as frames need)."""
        self.max_body = max_body
        if size is not None and size > len(self._buf):
            self._make_room(size)

    def shrink(self, size: int) -> None:
        """Give back memory above ``size`` bytes, if nothing pending needs it."""
        pending = self._end - self._start
        if len(self._buf) > size and pending + _MIN_READ // 16 <= size:
            new = bytearray(size)
            new[:pending] = self._view[self._start : self._end]
            self._buf, self._view = new, memoryview(new)
            self._start, self._end = 0, pending

    def release(self) -> None:
        """Drop the buffer and whatever it holds (the connection is gone)."""
        self._buf = bytearray(2 * HEADER_SIZE)
        self._view = memoryview(self._buf)
        self._start = self._end = self._last = 0

    def wanted(self) -> int:
        """The buffer size the next :meth:`recv_buffer` will need: its current
        size unless a frame being received needs more room."""
        if self._start == self._end:  # the usual case: nothing pending, the whole buffer
            return len(self._buf)
        need, pending = self._need()
        if len(self._buf) - self._end >= max(self._reserve(), need - pending):
            return len(self._buf)
        return max(len(self._buf), max(need, pending) + self._reserve())

    def _need(self) -> tuple[int, int]:
        """Bytes the frame being received needs in all, and bytes pending.

        A header announcing more than ``max_body`` needs no room: the frame is
        refused at its header by :meth:`next_frame`, never buffered.
        """
        pending = self._end - self._start
        need = HEADER_SIZE
        if pending >= HEADER_SIZE:
            length = HEADER.unpack_from(self._buf, self._start)[3]
            if length <= self.max_body:
                need += length
        return need, pending

    def _reserve(self) -> int:
        """Free space kept for the next read (less in a small buffer)."""
        return min(_MIN_READ, len(self._buf) // 2)

    def recv_buffer(self) -> memoryview:
        """Free space to read into (never empty); pass the count read to :meth:`received`.

        The space holds at least the rest of the frame being received, so one
        frame never needs more than the buffer; the buffer grows to fit frames
        up to ``max_body`` and compacts as frames are consumed.
        """
        if self._start == self._end:
            self._start = self._end = 0
            return self._view
        need, pending = self._need()
        reserve = self._reserve()
        if len(self._buf) - self._end < max(reserve, need - pending):
            self._make_room(max(need, pending) + reserve)
        return self._view[self._end :]

    def _make_room(self, size: int) -> None:
        """Move the pending bytes to the front, in a buffer of at least ``size`` bytes."""
        pending = self._end - self._start
        if size > len(self._buf):
            # a new buffer: views handed out earlier keep the old one alive
            new = bytearray(size)
            new[:pending] = self._view[self._start : self._end]
            self._buf, self._view = new, memoryview(new)
        else:
            self._buf[:pending] = self._view[self._start : self._end]
        self._start, self._end = 0, pending

    def read_from(self, sock: Any, limit: int | None = None, fd: int = -1) -> int:
        """Read once from ``sock`` (``recv_into``) into :meth:`recv_buffer`; the count
        read (0: the peer shut its side).  The socket's errors propagate.

        With ``limit``, nothing is read and -1 returned if the buffer would have
        to be larger than ``limit`` bytes (:meth:`wanted`) to read now.  With
        ``fd`` (``sock``'s descriptor, of a non-blocking socket), the read is the
        C module's (:mod:`tmem.wire.sockio`) where it was built.
        """
        if self._start == self._end:  # the usual case: an empty buffer, read from its start
            if limit is not None and len(self._buf) > limit:
                return -1
            self._start = self._end = 0
            if fd >= 0 and _RECV_INTO is not None:
                n: int = _RECV_INTO(fd, self._buf, 0)
            else:
                n = sock.recv_into(self._view)
        else:
            if limit is not None and self.wanted() > limit:
                return -1
            view = self.recv_buffer()
            if fd >= 0 and _RECV_INTO is not None:
                n = _RECV_INTO(fd, self._buf, self._end)
            else:
                n = sock.recv_into(view)
        self._end += n
        return n

    def start_exchange(self) -> bytearray:
        """The whole buffer, emptied, for a caller that receives into it itself from its
        start (the client's round trip in the C module, :mod:`tmem.wire.sockio`), then
        passes the count it left there to :meth:`received`.  Nothing may be pending."""
        if self._start != self._end:
            raise WireError("a reply is pending in the buffer")
        self._start = self._end = 0
        return self._buf

    def received(self, n: int) -> None:
        """Record that ``n`` bytes were written into the last :meth:`recv_buffer`."""
        if n < 0 or self._end + n > len(self._buf):
            raise WireError(f"received {n} bytes into a buffer with less room")
        self._end += n

    def feed(self, data: bytes) -> None:
        """Copy ``data`` in (for callers that do not read with ``recv_into``)."""
        n = len(data)
        if len(self._buf) - self._end < n:
            self._make_room(self._end - self._start + n + _MIN_READ)
        self._buf[self._end : self._end + n] = data
        self._end += n

    def next_frame(self) -> tuple[int, int, int, memoryview] | None:
        """The next whole frame as ``(op, status, tag, body)``, or None if incomplete.

        Raises :class:`WireError` if the header announces a body over the limit.
        """
        start = self._start
        if self._end - start < HEADER_SIZE:
            return None
        op, status, tag, length = _unpack_header(self._buf, start)
        if length > self.max_body:
            raise WireError(f"frame of {length} bytes exceeds the limit of {self.max_body}")
        stop = start + HEADER_SIZE + length
        if stop > self._end:
            return None
        self._last, self._start = start, stop
        return op, status, tag, self._view[start + HEADER_SIZE : stop]

    def unget(self) -> None:
        """Put back the frame :meth:`next_frame` returned last (nothing else called since)."""
        self._start = self._last


class OutBuffer:
    """Bytes waiting to be sent, in one buffer that is reused, not reallocated.

    Growing a fresh buffer for every large reply costs page faults on each
    use; this one keeps its memory (up to ``keep`` bytes, :data:`KEEP_OUT` by
    default) between replies.  Large replies of immutable parts (the pages of
    a batch of gets) are not copied in at all: :meth:`write_gathered` queues
    them by reference, after the buffer's bytes, and :meth:`send_to` sends them
    gathered (``sendmsg``); what is written while any are queued goes after them.
    """

    def __init__(
        self, size: int = 64 << 10, keep: int = KEEP_OUT, limit: int = 1 << 62, gather: int = GATHER
    ) -> None:
        self.keep = keep
        self.gather = gather  # write_gathered queues by reference from this many bytes
        self.limit = limit  # growth doubles the buffer, not past this (unless a write needs it)
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self.queued = 0  # bytes written and not yet consumed (a plain int: read per frame)
        self._parts: list[Any] = []  # queued by reference, sent after the buffer's bytes

    def __len__(self) -> int:
        return self.queued

    @property
    def capacity(self) -> int:
        """Bytes of memory the buffer holds (queued or not)."""
        return len(self._buf)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` after what is already queued."""
        if self._parts:
            self._after_parts(data)
            return
        end = self._end
        stop = end + len(data)
        if stop > len(self._buf):
            self._make_room(len(data))
            end = self._end
            stop = end + len(data)
        self._view[end:stop] = data
        self._end = stop
        self.queued = stop - self._start

    def release(self) -> None:
        """Drop the buffer and whatever is queued in it (the connection is gone)."""
        self._buf = bytearray(0)
        self._view = memoryview(self._buf)
        self._start = self._end = self.queued = 0
        self._parts = []

    def write_frame(self, head: bytes, body: bytes | memoryview) -> None:
        """Queue a frame's ``head`` and then its ``body``, with no joined copy of both."""
        if self._parts:
            self._after_parts(head)
            self._after_parts(body)
            return
        end = self._end
        mid = end + len(head)
        stop = mid + len(body)
        if stop > len(self._buf):
            self._make_room(stop - end)
            end = self._end
            mid = end + len(head)
            stop = mid + len(body)
        view = self._view
        view[end:mid] = head
        view[mid:stop] = body
        self._end = stop
        self.queued = stop - self._start

    def write_parts(self, parts: list[Any]) -> None:
        """Queue each of ``parts`` in order (making room once for all of them)."""
        if self._parts:
            for part in parts:
                self._after_parts(part)
            return
        total = sum(map(len, parts))
        if self._end + total > len(self._buf):
            self._make_room(total)
        view, end = self._view, self._end
        for part in parts:
            stop = end + len(part)
            view[end:stop] = part
            end = stop
        self._end = end
        self.queued = end - self._start

    def write_gathered(self, parts: list[bytes]) -> None:
        """Queue each of ``parts`` in order, by reference if they hold ``gather``
        (:data:`GATHER`) bytes or more in all: they are then sent from where they
        are, never copied here, and must not change until sent (bytes do not)."""
        total = sum(map(len, parts))
        if total < self.gather:
            self.write_parts(parts)
            return
        self._parts += parts
        self.queued += total

    def _after_parts(self, data: bytes | bytearray | memoryview) -> None:
        """Queue a copy of ``data`` after the parts queued by reference."""
        self._parts.append(bytes(data))
        self.queued += len(self._parts[-1])

    def send_to(self, sock: Any, fd: int = -1) -> int:
        """Send what is queued with one ``sock.send`` (``sendmsg`` while parts are
        queued by reference) and forget what went; the bytes sent.  The socket's
        errors (BlockingIOError included) propagate.  With ``fd`` (``sock``'s
        descriptor, of a non-blocking socket), a send from the buffer is the C
        module's (:mod:`tmem.wire.sockio`) where it was built."""
        if self._parts:
            buffers = [self._view[self._start : self._end], *self._parts[:GATHER_PARTS]]
            gathered: int = sock.sendmsg(buffers)
            self.consumed(gathered)
            return gathered
        if fd >= 0 and _SEND is not None:
            sent: int = _SEND(fd, self._buf, self._start, self._end)
        else:
            sent = sock.send(self._view[self._start : self._end])
        if sent < self.queued:
            self._start += sent
            self.queued -= sent
        else:  # consumed(sent), inline: the usual case, all of it went
            self._start = self._end = self.queued = 0
            if len(self._buf) > self.keep:
                self._shrink()
        return sent

    def pending(self) -> memoryview:
        """The queued bytes (a view, valid until the next write; a copy of them
        while parts are queued by reference)."""
        if self._parts:
            return memoryview(b"".join([self._view[self._start : self._end], *self._parts]))
        return self._view[self._start : self._end]

    def consumed(self, n: int) -> None:
        """Forget the first ``n`` queued bytes (they were sent)."""
        if self._parts:
            self._consumed_parts(n)
            return
        self._start += n
        self.queued = self._end - self._start
        if self.queued <= 0:
            self._start = self._end = self.queued = 0
            if len(self._buf) > self.keep:
                self._shrink()

    def _consumed_parts(self, n: int) -> None:
        """:meth:`consumed` while parts are queued by reference: the buffer's bytes
        went first, then whole parts; a part sent in part stays as a view of its rest."""
        self.queued -= n
        mine = min(n, self._end - self._start)
        self._start += mine
        n -= mine
        if self._start == self._end:
            self._start = self._end = 0
        parts = self._parts
        if not self.queued:  # the usual end: all of it went
            parts.clear()
            if len(self._buf) > self.keep:
                self._shrink()
        elif n:  # found in C, not by a loop over the parts: a batch has hundreds
            ends = list(accumulate(map(len, parts[:GATHER_PARTS])))  # what one send can take
            if n > ends[-1]:
                ends = list(accumulate(map(len, parts)))
            done = bisect_right(ends, n)
            rest = n - (ends[done - 1] if done else 0)
            if rest:
                parts[done] = memoryview(parts[done])[rest:]
            del parts[:done]

    def _shrink(self) -> None:
        """Give back memory above ``keep`` bytes (nothing is queued)."""
        self._buf = bytearray(self.keep)
        self._view = memoryview(self._buf)

    def _make_room(self, n: int) -> None:
        pending = self._end - self._start
        if pending + n > len(self._buf):
            new = bytearray(max(min(2 * len(self._buf), self.limit), pending + n))
            new[:pending] = self._view[self._start : self._end]
            self._buf, self._view = new, memoryview(new)
        else:
            self._buf[:pending] = self._view[self._start : self._end]
        self._start, self._end = 0, pending
