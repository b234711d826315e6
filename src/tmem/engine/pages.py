"""Per-page metadata in flat arrays, and the LRU lists threaded through them.

A stored page is a small integer, its page id.  Everything the engine keeps
about it lives at that index in a few typed arrays (store reference, charged
bytes, pool, index, LRU links) plus one slot of a list for its object id, so
a page costs a few dozen bytes of metadata and no Python object of its own.

The arrays are ``librt.vecs.vec`` of fixed-width integers: compiled, an
item is read and written in place (an ``array.array`` item cost a boxed
index and a boxed value, about 350 instructions, and a put with its
eviction touches some thirty).  A vec that grows is a new vec, so nothing
may keep one of these arrays across a call that may allocate a page id:
read them from the table (``table.ref[pid]``).

A page also has a **version**, handed out by the engine once per put and
never reused, and a **tier** byte: 0 while its bytes are in the page store,
``k`` while tier ``k - 1`` below RAM holds them (``ref`` is then the tier's
location and ``tlen`` the bytes it holds there).

Ephemeral pages sit on their owner's LRU list: a circular doubly linked list
whose sentinel is a page id reserved for that client.  Free page ids are
chained through the ``next`` array.
"""

from __future__ import annotations

from typing import Final

from librt.vecs import extend, vec
from mypy_extensions import i32, i64, u8

#: "No page": the free list's end and the links of a page on no list.
NIL: Final = -1
#: Page ids a table gains when it first grows, and at least at every growth: enough
#: that its 4-byte arrays come to 128 KiB, which the C allocator maps apart and
#: unmaps when a growth frees them.  (A vec grows into a new buffer; old buffers
#: below that size stayed in the heap, about 600 KiB after 50k pages.)
GROWTH: Final = 32768


class PageTable:
    """Arrays indexed by page id; ids are reused after :meth:`release`."""

    __slots__ = (
        "ref", "cost", "pool", "index", "oid", "prev", "next", "ver", "tier", "tlen",
        "free_head", "_size",
    )  # fmt: skip

    def __init__(self, initial: int = 1024) -> None:
        # 4-byte items where the values allow: page ids, pool ids and costs stay
        # below 2**31; an index may reach 2**32 - 1.
        self.ref: vec[i64] = vec[i64]()
        self.cost: vec[i32] = vec[i32]()
        self.pool: vec[i32] = vec[i32]()
        self.index: vec[i64] = vec[i64]()
        self.oid: list[int] = []
        self.prev: vec[i32] = vec[i32]()
        self.next: vec[i32] = vec[i32]()
        self.ver: vec[i64] = vec[i64]()
        self.tier: vec[u8] = vec[u8]()
        self.tlen: vec[i32] = vec[i32]()
        self.free_head = NIL
        self._size = 0
        self._grow(initial)

    def _grow(self, extra: int) -> None:
        start = self._size
        end = start + extra
        # A vec extended by a vec of its own type is one copy; by a list or a range,
        # one conversion per item: zeros of each item type are made by doubling.
        long_zeros, zeros, byte_zeros = vec[i64]([0]), vec[i32]([0]), vec[u8]([0])
        while len(zeros) < extra:
            long_zeros = extend(long_zeros, long_zeros)
            zeros = extend(zeros, zeros)
            byte_zeros = extend(byte_zeros, byte_zeros)
        long_zeros, zeros, byte_zeros = long_zeros[:extra], zeros[:extra], byte_zeros[:extra]
        self.ref = extend(self.ref, long_zeros)
        self.cost = extend(self.cost, zeros)
        self.pool = extend(self.pool, zeros)
        self.index = extend(self.index, long_zeros)
        self.prev = extend(self.prev, zeros)
        self.ver = extend(self.ver, long_zeros)
        self.tier = extend(self.tier, byte_zeros)
        self.tlen = extend(self.tlen, zeros)
        self.oid.extend([0] * extra)
        nxt = extend(self.next, zeros)
        for pid in range(start, end - 1):  # the new ids, chained in order
            nxt[pid] = pid + 1
        nxt[end - 1] = self.free_head
        self.next = nxt
        self.free_head = start
        self._size = end

    def alloc(
        self, ref: int, cost: int, pool: int, oid: int, index: int, ver: int = 0, head: int = NIL
    ) -> int:
        """Take a free page id and record the page in it, with version ``ver``; link it
        as the most recently used entry of the list ``head`` (by default on none)."""
        pid = self.free_head
        if pid == NIL:
            self._grow(max(GROWTH, self._size // 2))
            pid = self.free_head
        nxt, prev = self.next, self.prev  # after any growth: a grown vec is a new one
        self.free_head = nxt[pid]
        self.ref[pid] = ref
        self.cost[pid] = cost
        self.pool[pid] = pool
        self.oid[pid] = oid
        self.index[pid] = index
        self.ver[pid] = ver
        if head == NIL:
            prev[pid] = NIL
            nxt[pid] = NIL
        else:  # append(head, pid), inline: a put is the hot path
            tail: int = prev[head]
            nxt[tail] = pid
            prev[pid] = tail
            nxt[pid] = head
            prev[head] = pid
        return pid

    def release(self, pid: int) -> None:
        """Give a page id back (it must be unlinked from any LRU list).

        The engine's ``_drop`` does :meth:`unlink` and this in one, inline.
        """
        self.oid[pid] = 0
        self.ver[pid] = 0
        self.tier[pid] = 0
        self.next[pid] = self.free_head
        self.free_head = pid

    # --- LRU lists -------------------------------------------------------

    def new_list(self) -> int:
        """Reserve a sentinel for an empty LRU list; return it."""
        head = self.alloc(0, 0, NIL, 0, 0)
        self.prev[head] = head
        self.next[head] = head
        return head

    def append(self, head: int, pid: int) -> None:
        """Link ``pid`` as the most recently used entry of the list ``head``."""
        prev = self.prev
        tail: int = prev[head]
        self.next[tail] = pid
        prev[pid] = tail
        self.next[pid] = head
        prev[head] = pid

    def prepend(self, head: int, pid: int) -> None:
        """Link ``pid`` as the least recently used entry of the list ``head`` (next to go)."""
        nxt = self.next
        first: int = nxt[head]
        self.prev[first] = pid
        nxt[pid] = first
        self.prev[pid] = head
        nxt[head] = pid

    def unlink(self, pid: int) -> None:
        """Take ``pid`` off whatever list it is on (a no-op if on none)."""
        prev, nxt = self.prev, self.next
        p: int = prev[pid]
        if p == NIL:
            return
        n: int = nxt[pid]
        nxt[p] = n
        prev[n] = p
        prev[pid] = NIL
        nxt[pid] = NIL

    def touch(self, head: int, pid: int) -> None:
        """Make ``pid`` the most recently used entry of list ``head``."""
        self.unlink(pid)
        self.append(head, pid)

    def oldest(self, head: int) -> int:
        """The least recently used page id of list ``head``, or -1 if it is empty."""
        pid = self.next[head]
        return -1 if pid == head else pid

    def members(self, head: int) -> list[int]:
        """Page ids of list ``head`` from least to most recently used."""
        out = []
        pid: int = self.next[head]
        while pid != head:
            out.append(pid)
            pid = self.next[pid]
        return out
