"""What save, restore and migration need from the engine: a client's handles, and pools by id.

These read and build the engine's records without changing any rule: pages
still go in through :meth:`Engine.put` and out through the store.
"""

from __future__ import annotations

import uuid as _uuid

from tmem.engine.core import Engine
from tmem.engine.state import ClientState


def handles(
    engine: Engine, client: ClientState, pool_id: int, oid: int | None = None
) -> list[tuple[int, int]]:
    """Every ``(oid, index)`` stored in the client's pool (of object ``oid`` only, if given)."""
    pool = engine.pool_of(client, pool_id)
    if oid is not None:
        return [(oid, index) for index in pool.objs.get(oid, ())]
    return [(o, index) for o, pages in pool.objs.items() for index in pages]


def page_ref(engine: Engine, client: ClientState, pool_id: int, oid: int, index: int) -> int:
    """The store reference of the page at the handle, or -1 if there is none."""
    pool = client.pools.get(pool_id)
    pages = pool.objs.get(oid) if pool is not None else None
    pid = pages.get(index) if pages is not None else None
    return -1 if pid is None else engine.table.ref[pid]


def new_pool_at(
    engine: Engine,
    client: ClientState,
    pool_id: int,
    persistent: bool,
    page_size: int,
    shared: bool = False,
    uuid: _uuid.UUID | None = None,
) -> None:
    """Create a pool under the id ``pool_id`` (free in this client), as a restore needs."""
    if pool_id in client.pools:
        return
    following = client.next_pool_id
    client.next_pool_id = pool_id
    try:
        engine.new_pool(client, persistent, shared, uuid, page_size)
    finally:
        client.next_pool_id = max(following, pool_id + 1)
