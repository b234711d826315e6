"""The daemon-wide budget of transfer buffers: large frames in and out, all connections together.

Every connection after its hello keeps small buffers of its own (``BASE_IN``
in, replies queued up to :data:`SMALL_QUEUE` out); that is the per-connection
overhead of ``docs/operations.md``.  Anything larger -- receiving a frame
longer than the small buffer holds, or answering a request whose reply may be
large (a batch of gets, statistics, a transfer) -- needs a **grant**: a fixed
share of the budget, enough for one frame of ``max-frame`` in, the pages of
one reply in the making (a batch of gets runs a slice at a time, so several
may be under way at once, one per connection) and out a queue of replies up
to ``max-frame`` (a large reply is only started once at most
:data:`SMALL_QUEUE` bytes are queued before it).  A connection takes its
grant whole or waits for it, unread, in arrival order; it gives it back once it
has nothing buffered and another connection is waiting, or after it has been
quiet a while.  So the sum of all connections' buffers stays within the budget
plus their small buffers, and no two connections can each hold part of what
the other needs (a connection with a grant never needs more).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from tmem.errors import InvalidArgument
from tmem.wire.frames import HEADER_SIZE

#: Unsent reply bytes at which a connection without a grant stops being answered.
SMALL_QUEUE = 32 << 10
#: The send buffer of a connection without a grant: its queue and one more reply
#: of at most a 64 KiB page (replies that may be larger need a grant).
SMALL_OUT = SMALL_QUEUE + (64 << 10) + 64
#: Free space a receive buffer keeps for the next read beside a whole frame.
READ_SLACK = 64 << 10


def granted_out(max_frame: int) -> int:
    """The send buffer of a connection with a grant: small replies queued up to
    ``max_frame`` bytes and one more of at most a page, or a reply of up to a frame
    after at most :data:`SMALL_QUEUE` bytes."""
    return max_frame + SMALL_OUT


def grant_size(max_frame: int) -> int:
    """Bytes one grant holds: a whole frame in, one reply's pages in the making,
    and :func:`granted_out` out."""
    return max_frame + HEADER_SIZE + READ_SLACK + max_frame + granted_out(max_frame)


def check_budget(budget: int, max_frame: int) -> int:
    """``budget``, if it holds at least one grant; else InvalidArgument naming the option."""
    least = grant_size(max_frame)
    if budget < least:
        raise InvalidArgument(
            f"transfer-budget {budget} is less than one connection's largest transfer"
            f" ({least} bytes with max-frame {max_frame})"
        )
    return budget


class Holder(Protocol):
    """A connection as the budget sees it."""

    grant: int
    waiting: bool


class TransferBudget:
    """Grants of :func:`grant_size` bytes out of ``total``, and who waits for one."""

    def __init__(self, total: int, max_frame: int) -> None:
        self.total = check_budget(total, max_frame)
        self.grant = grant_size(max_frame)
        self.used = 0
        self.waiting: deque[Holder] = deque()

    def take(self, conn: Holder, overdraw: bool = False) -> bool:
        """Give ``conn`` a grant if it has none; False (and it waits) if none is free.

        With ``overdraw`` (the administrator's connections) the grant is given even
        past the budget, so that no other peer can keep the administrator waiting.
        """
        if conn.grant:
            return True
        if overdraw or (not self.waiting and self.used + self.grant <= self.total):
            conn.grant = self.grant
            self.used += self.grant
            return True
        if not conn.waiting:
            conn.waiting = True
            self.waiting.append(conn)
        return False

    def give_back(self, conn: Holder) -> list[Holder]:
        """``conn`` returns its grant (or stops waiting); the waiting connections
        that now have one, in arrival order."""
        if conn.waiting:
            conn.waiting = False
            self.waiting.remove(conn)
        self.used -= conn.grant
        conn.grant = 0
        granted = []
        while self.waiting and self.used + self.grant <= self.total:
            waiter = self.waiting.popleft()
            waiter.waiting = False
            waiter.grant = self.grant
            self.used += self.grant
            granted.append(waiter)
        return granted
