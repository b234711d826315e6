"""Victim choice: whose ephemeral page goes, and which one.

The engine decides *whether* pages must go and which clients' pages may go
(caps, capacity, a persistent put's own pages first, persistent pages never;
see :meth:`tmem.engine.Engine.make_room`).  The functions here only choose,
as a cachetools policy does: they read the engine's records and change
nothing.  A policy is a pair of such functions; the engine is handed the
client choice (``Engine(store, capacity, choose_client=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from tmem.engine.frequency import LIMIT, SAMPLE, Sketch
from tmem.engine.pages import PageTable
from tmem.engine.state import ClientState

#: ``choose(clients, putter, cost)``: the client that gives up an ephemeral page
#: (``clients`` may be iterated more than once).
#: Only clients holding ephemeral bytes may be chosen; ``putter`` (None when no
#: put is waiting) is about to be charged ``cost`` more bytes.
ClientChoice = Callable[[Collection[ClientState], "ClientState | None", int], ClientState]


def most_over(clients: Iterable[ClientState], putter: ClientState | None, cost: int) -> ClientState:
    """The client with the most ephemeral bytes per unit of weight.

    The page being put counts against the putter, so under steady contention
    each client's ephemeral memory converges to its weighted share.
    """
    best, best_ratio = None, -1.0
    for client in clients:
        held = client.eph_bytes
        if held <= 0:
            continue
        if client is putter:
            held += cost
        ratio = held / client.weight
        if ratio > best_ratio:
            best, best_ratio = client, ratio
    assert best is not None, "no ephemeral pages to evict"
    return best


def least_useful(
    clients: Collection[ClientState], putter: ClientState | None, cost: int
) -> ClientState:
    """The client above its floor whose memory saves the fewest misses per byte it holds.

    A client's utility is its recent ghost hits: gets that missed a page the
    host evicted from it a short while ago, i.e. misses that a little more
    memory would have saved (Cliffhanger's and Memshare's shadow queues).
    Only clients holding more ephemeral bytes than their ``floor`` (the
    putter counting the page it puts) may be chosen; among them the most
    bytes per unit of weight and per ``1 + utility`` loses a page, so above
    the floors each client's memory tends to be proportional to its weight
    times one plus its recent ghost hits: memory follows the misses it saves,
    and a client that has had no evictions yet (no ghost hits possible) is
    not starved.  (Taking from the lowest utility outright read 2 to 3% more
    on four of the five shipped mixes, ``bench/policy_sim.py --engine``.)
    When every client is within its floor, :func:`most_over` chooses.
    """
    best, best_ratio = None, -1.0
    for client in clients:
        held = client.eph_bytes
        if held <= 0:
            continue
        if client is putter:
            held += cost
        if held <= client.floor:
            continue
        ratio = held / (client.weight * (1.0 + client.utility))
        if ratio > best_ratio:
            best, best_ratio = client, ratio
    if best is None:  # most_over skips clients that hold no ephemeral bytes itself
        return most_over(clients, putter, cost)
    return best


#: The victim choices a host may be built with, by name.
POLICIES: dict[str, ClientChoice] = {"utility": least_useful, "share": most_over}


def coldest(table: PageTable, head: int, sketch: Sketch) -> int:
    """Of the :data:`~tmem.engine.frequency.SAMPLE` least recent pages of list
    ``head``, the one ``sketch`` counts fewest gets of (the least recent on ties);
    -1 if the list is empty."""
    nxt, pools, oids, indexes = table.next, table.pool, table.oid, table.index
    best, best_count = -1, LIMIT + 1
    pid = int(nxt[head])
    for _ in range(SAMPLE):
        if pid == head:
            break
        count = sketch.count((pools[pid], oids[pid], indexes[pid]))
        if count < best_count:
            best, best_count = pid, count
            if count == 0:  # none can be less, and this one is older
                break
        pid = int(nxt[pid])
    return best


def least_recent(
    table: PageTable, client: ClientState, now: int, sketch: Sketch | None = None
) -> int:
    """The page id of the ephemeral page of ``client`` that goes next.

    Puts append a page to its owner's list and non-destructive gets of an
    ephemeral page move it to the end (the engine does both), so each list is
    exact LRU.  Pages kept raw because they compress poorly sit in a list of
    their own; of the two lists' least recent pages, the one that has held
    more bytes for longer goes: its charged bytes times its age, the puts
    since it was put (``now`` is the engine's latest version; a hit on a
    shared page, which makes it most recent in its list, leaves its age as
    it was).  A raw page thus goes once it has sat unused about half as long
    as a page compressed to half its size, not at once: every miss costs
    one read whatever the page's size, and sending every raw page first read
    up to 10% more than an uncompressed host on the shipped mixes
    (docs/workload.md).

    With a ``sketch`` (the ``"frequency"`` eviction), the other page is the
    one of the client's next to go that was got least often lately
    (:func:`coldest`) instead of its least recent.
    """
    poor = table.oldest(client.poor_lru) if client.poor_pages else -1
    good = table.oldest(client.lru) if sketch is None else coldest(table, client.lru, sketch)
    if poor < 0:
        return good
    if good < 0:
        return poor
    ver, cost = table.ver, table.cost
    if (now - ver[poor]) * int(cost[poor]) >= (now - ver[good]) * int(cost[good]):
        return poor
    return good
