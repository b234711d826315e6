"""How often each handle was got lately, for frequency-aware eviction within a client.

An exclusive cache (a private ephemeral pool: a get takes the page out)
never sees a second hit on a page it holds, but it sees every *get* of a
handle, hit or miss: each is a reference the client's own cache missed,
i.e. reuse beyond it.  Under the ``"frequency"`` eviction the host counts
those gets in a :class:`Sketch` and, of the :data:`SAMPLE` pages next to go
in a client's list, evicts the one got least often lately (the least
recent of those on ties): a page referenced again and again outlives one
that came in once, as in TinyLFU (Einziger et al., ACM ToS 2017) and
Redis's sampled LFU.  ``"lru"`` evicts the least recent page, as before.

The sketch is a count-min sketch of :data:`ROWS` rows of 4-bit counters
(conservative update), :data:`WIDTH_PER_PAGE` counters a row per page the
capacity holds: 32 bytes per 4 KiB of capacity, allocated with the host and
not charged to any client (as ghosts are not).  Every counter is halved
each :data:`WINDOW` capacities of gets (TinyLFU's reset), so the counts
follow the recent past.
"""

from __future__ import annotations

from typing import Final

from tmem.errors import InvalidArgument

#: The ways a client's next ephemeral page to go may be chosen; the first is the default.
EVICTIONS: Final = ("lru", "frequency")
#: Of this many pages next to go in a client's list, the least frequent goes.
SAMPLE: Final = 64
#: Counters a row holds per page of capacity (rounded up to a power of two).
WIDTH_PER_PAGE: Final = 8
#: Rows of the sketch (a count is the least of its counters, one a row; Sketch.count
#: reads exactly four).
ROWS: Final = 4
#: The counts are halved each time this many capacities of gets were counted.
WINDOW: Final = 10
#: A counter stops here (4 bits).
LIMIT: Final = 15

_HALVE: Final = bytes(i >> 1 for i in range(256))
_LOW: Final = 0xFFFFFFFF


def check_eviction(eviction: object) -> str:
    """``eviction`` if it names a way of :data:`EVICTIONS`, else InvalidArgument."""
    if eviction not in EVICTIONS:
        raise InvalidArgument(f"eviction {eviction!r} must be one of {', '.join(EVICTIONS)}")
    return str(eviction)


class Sketch:
    """Gets counted per handle, approximately (never less than the truth since the
    last halving, up to :data:`LIMIT`), in memory fixed by the capacity."""

    __slots__ = ("rows", "mask", "counted", "window")

    def __init__(self, capacity_pages: int) -> None:
        width = 64
        while width < WIDTH_PER_PAGE * capacity_pages:
            width *= 2
        self.mask = width - 1
        self.rows = [bytearray(width) for _ in range(ROWS)]
        self.counted = 0
        self.window = max(64, WINDOW * capacity_pages)

    def _cells(self, key: tuple[int, int, int]) -> list[int]:
        """The counter of ``key`` in each row: row ``i`` takes ``h1 + i * h2`` of two
        halves of its hash (double hashing, Kirsch and Mitzenmacher)."""
        h = hash(key)
        h1, h2, mask = h & _LOW, (h >> 32) & _LOW | 1, self.mask
        return [(h1 + i * h2) & mask for i in range(ROWS)]

    def count(self, key: tuple[int, int, int]) -> int:
        """How often ``key`` was got lately (0 to :data:`LIMIT`)."""
        # _cells(key) and the least of their counters, inline: eviction asks up to
        # SAMPLE times a page
        h = hash(key)
        h1, h2, mask = h & _LOW, (h >> 32) & _LOW | 1, self.mask
        r0, r1, r2, r3 = self.rows
        low = r0[h1 & mask]
        c = r1[(h1 + h2) & mask]
        if c < low:
            low = c
        c = r2[(h1 + 2 * h2) & mask]
        if c < low:
            low = c
        c = r3[(h1 + 3 * h2) & mask]
        return c if c < low else low

    def add(self, key: tuple[int, int, int]) -> None:
        """Count one get of ``key``; halve every count once a window is full."""
        cells, rows = self._cells(key), self.rows
        low = min([rows[i][cell] for i, cell in enumerate(cells)])
        if low < LIMIT:
            for i, cell in enumerate(cells):
                if rows[i][cell] == low:  # conservative update: only the least grow
                    rows[i][cell] = low + 1
        self.counted += 1
        if self.counted >= self.window:
            self.counted = 0
            self.rows = [row.translate(_HALVE) for row in rows]
