"""Save, restore and migration on the embedded host: a client's pages out, and back in.

Export: :meth:`TransferMixin.export_begin` starts recording which handles of
the client change and lists every page of its persistent pools as the first
round; :meth:`~TransferMixin.export_pages` hands out records of the round in
chunks (each page as the store keeps it, compressed: :mod:`tmem.store.export`); each
:meth:`~TransferMixin.export_round` starts a new round with what changed since
the last one.  Import: :meth:`~TransferMixin.import_begin` makes the client
under its name with the same pool ids, *parked*: it holds its pages while no
connection has it, and the next ``connect`` under that name adopts it, pages
and all.  While an import is under way the name cannot connect.

Pages go in through the engine's put, so every rule (capacity, cap,
accounting) holds for restored pages too; a page the target refuses is
counted, and the caller aborts.  Ephemeral pages are never copied (their
pools are, empty); clients in shared pools can be saved without those pools
but not migrated; a host with tiers below RAM refuses to export (its
demoted pages would need fetching first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tmem.api import RECORD_FLUSH_OBJECT, RECORD_FLUSH_PAGE, RECORD_PAGE, Record
from tmem.arguments import check_name
from tmem.engine.state import ClientState
from tmem.engine.transfer import handles, new_pool_at, page_ref
from tmem.errors import InvalidArgument, NoSuchClient
from tmem.store.export import decode_export

if TYPE_CHECKING:
    import threading

    from tmem.engine import Engine
    from tmem.host import HostClient
    from tmem.policy import ClientPolicy
    from tmem.store import PageStore
    from tmem.tier.demoter import TierSet

#: The form of a PAGE record's data: the store's export (:mod:`tmem.store.export`).
EXPORT_FORMAT = 1
#: Bytes of page data one export_pages call returns at most, by default.
CHUNK_BYTES = 4 << 20

Key = tuple[int, int, int | None]  # pool, oid, index (None: the whole object)


@dataclass
class Export:
    """One client's export under way: what changed, and what this round still has to send."""

    state: ClientState
    pools: set[int]  # the pool ids being copied (private ones)
    dirty: set[Key] = field(default_factory=set)
    todo: list[Key] = field(default_factory=list)


class TransferMixin:
    """The export and import methods of :class:`tmem.Host`."""

    # What the host provides (plain declarations, so that mypyc compiles the mixin).
    lock: threading.Lock
    engine: Engine
    store: PageStore
    tiers: TierSet | None
    policies: dict[str, ClientPolicy]
    _handles: dict[str, HostClient]

    def _left(self, state: ClientState) -> None:
        raise NotImplementedError  # the host's

    def set_client(
        self, name: Any, *, weight: Any = None, cap: Any = ..., compress: Any = ...,
        frozen: Any = None,
    ) -> None:
        raise NotImplementedError  # the host's

    def _transfer_init(self) -> None:
        self.exports: dict[str, Export] = {}
        self.parked: dict[str, ClientState] = {}  # name -> a client no connection has
        self.incoming: set[str] = set()  # parked names still being imported

    # --- export ----------------------------------------------------------

    def export_begin(self, name: Any, shared: Any = "refuse") -> dict[str, Any]:
        """Start exporting client ``name``: its header, and a first round of every page.

        ``shared="skip"`` leaves shared pools out; ``"refuse"`` (for migration)
        raises InvalidArgument if the client is in any.
        """
        check_name(name)
        with self.lock:
            if self.tiers is not None:  # pages below RAM are not exported yet
                raise InvalidArgument("a host with tiers cannot save or move its clients yet")
            if name in self.exports:
                raise InvalidArgument(f"client {name!r} is already being exported")
            state = self.engine.client(name)
            private = {pid for pid, pool in state.pools.items() if not pool.shared}
            if shared == "refuse" and len(private) < len(state.pools):
                raise InvalidArgument(f"client {name!r} is in shared pools and cannot be moved")
            export = Export(state, private)
            export.todo = [
                (pid, oid, index)
                for pid in sorted(private)
                if state.pools[pid].persistent
                for oid, index in handles(self.engine, state, pid)
            ]
            self.exports[name] = export
            client = self._handles.get(name)
            if client is not None:
                client._track(export.dirty)
            return self._export_header(name, export)

    def _export_header(self, name: Any, export: Export) -> dict[str, Any]:
        state = export.state
        policy = self.policies.get(name)
        return {
            "name": name,
            "weight": state.weight,
            "cap": state.cap,
            "frozen": state.frozen,
            "compress": None if policy is None else policy.as_dict()["compress"],
            "next_pool_id": state.next_pool_id,
            "pools": [
                {"id": pid, "persistent": state.pools[pid].persistent,
                 "page_size": state.pools[pid].page_size}
                for pid in sorted(export.pools) if pid in state.pools
            ],  # fmt: skip
            "pending": len(export.todo),
        }

    def export_round(self, name: Any) -> dict[str, Any]:
        """Start the next round: the handles changed since the last one; the header again."""
        with self.lock:
            export = self._export(name)
            export.todo.extend(sorted(export.dirty, key=_key_order))
            export.dirty.clear()
            return self._export_header(name, export)

    def export_pages(self, name: Any, max_bytes: Any = CHUNK_BYTES) -> list[Record]:
        """The next records of this round, about ``max_bytes`` of data; [] when it is done."""
        out: list[Record] = []
        size = 0
        with self.lock:
            export = self._export(name)
            todo = export.todo
            while todo and size < max_bytes:
                for record in self._records_for(export, todo.pop()):
                    out.append(record)
                    size += len(record[5]) + 64
        return out

    def _records_for(self, export: Export, key: Key) -> list[Record]:
        pool_id, oid, index = key
        state = export.state
        pool = state.pools.get(pool_id)
        if pool is None or not pool.persistent or pool_id not in export.pools:
            return []  # pools that came and went are settled by the header
        if index is None:
            flush: Record = (RECORD_FLUSH_OBJECT, pool_id, oid, 0, 0, b"")
            pages = handles(self.engine, state, pool_id, oid)
            return [flush, *(self._page_record(state, pool_id, o, i) for o, i in pages)]
        return [self._page_record(state, pool_id, oid, index)]

    def _page_record(self, state: ClientState, pool_id: int, oid: int, index: int) -> Record:
        ref = page_ref(self.engine, state, pool_id, oid, index)
        if ref < 0:
            return (RECORD_FLUSH_PAGE, pool_id, oid, index, 0, b"")
        return (RECORD_PAGE, pool_id, oid, index, EXPORT_FORMAT, self.store.export(ref))

    def export_end(self, name: Any, release: Any = False) -> None:
        """Stop exporting; with ``release`` the client's pages leave this host (it moved)."""
        check_name(name)
        with self.lock:
            export = self.exports.pop(name, None)
            client = self._handles.get(name)
            if client is not None:
                client._track(None)
            if release and export is not None and export.state.live:
                self.parked.pop(name, None)
                self.engine.remove_client(export.state)
                self._left(export.state)

    def _export(self, name: Any) -> Export:
        export = self.exports.get(check_name(name))
        if export is None:
            raise InvalidArgument(f"client {name!r} is not being exported")
        if not export.state.live:
            raise InvalidArgument(f"client {name!r} left while it was being exported")
        return export

    # --- import ----------------------------------------------------------

    def import_begin(self, header: dict[str, Any]) -> None:
        """Make the client of ``header`` here, parked, with its pools and policy; pages follow."""
        name = header.get("name")
        with self.lock:
            if not isinstance(name, str) or name in self.engine.clients:
                raise InvalidArgument(f"client {name!r} is already on this host")
            state = self.engine.add_client(name, header["weight"], header["cap"])
            self.parked[name] = state
            self.incoming.add(name)
        try:
            settings = {k: header[k] for k in ("weight", "cap", "frozen")}
            if header.get("compress") is not None:
                settings["compress"] = header["compress"]
            self.set_client(name, **settings)
            self.import_pools(header)
        except BaseException:
            self.import_end(name, commit=False)
            raise

    def import_pools(self, header: dict[str, Any]) -> None:
        """Make the parked client's pools those of ``header``: create new ones, drop gone ones."""
        with self.lock:
            state = self._incoming(header.get("name"))
            wanted = {int(p["id"]): p for p in header["pools"]}
            for pool_id in set(state.pools) - set(wanted):
                self.engine.destroy_pool(state, pool_id)
            for pool_id, pool in sorted(wanted.items()):
                new_pool_at(self.engine, state, pool_id, bool(pool["persistent"]),
                            int(pool["page_size"]))  # fmt: skip
            state.next_pool_id = max(state.next_pool_id, int(header["next_pool_id"]))

    def import_pages(self, name: Any, records: list[Record]) -> dict[str, int]:
        """Apply records to the parked client ``name``; counts of pages stored and refused."""
        stored = refused = 0
        engine = self.engine
        with self.lock:
            state = self._incoming(name)
            for kind, pool_id, oid, index, codec, data in records:
                if kind == RECORD_PAGE:
                    page = _page(codec, data, engine.pool_of(state, pool_id).page_size)
                    if engine.put(state, pool_id, oid, index, page):
                        stored += 1
                    else:
                        refused += 1
                elif kind == RECORD_FLUSH_PAGE:
                    engine.flush_page(state, pool_id, oid, index)
                elif kind == RECORD_FLUSH_OBJECT:
                    engine.flush_object(state, pool_id, oid)
                else:
                    raise InvalidArgument(f"unknown record kind {kind}")
        return {"stored": stored, "refused": refused}

    def import_end(self, name: Any, commit: Any) -> None:
        """Finish an import: the client may now connect (commit), or it is dropped (abort)."""
        with self.lock:
            state = self._incoming(name)
            self.incoming.discard(name)
            if not commit:
                del self.parked[name]
                self.engine.remove_client(state)
                self._left(state)

    def _incoming(self, name: Any) -> ClientState:
        if check_name(name) not in self.incoming:
            raise InvalidArgument(f"no import of client {name!r} is under way")
        return self.parked[name]

    def parked_names(self) -> list[str]:
        """Clients restored here that no connection has claimed yet."""
        with self.lock:
            return sorted(self.parked)

    def drop_parked(self, name: Any) -> None:
        """Free a parked client and its pages (nobody came back for them)."""
        check_name(name)
        with self.lock:
            state = self.parked.pop(name, None)
            if state is None or name in self.incoming:
                raise NoSuchClient(f"no parked client named {name!r}")
            self.engine.remove_client(state)
            self._left(state)


def _page(form: int, data: bytes, page_size: int) -> bytes:
    """The page a PAGE record carries (the store's export form), checked against its pool."""
    if form != EXPORT_FORMAT:
        raise InvalidArgument(f"unknown page form {form} in a transfer record")
    page = decode_export(data)
    if len(page) != page_size:
        raise InvalidArgument(f"a {len(page)}-byte page for a pool of {page_size}-byte pages")
    return page


def _key_order(key: Key) -> tuple[int, int, int]:
    pool, oid, index = key
    return pool, oid, -1 if index is None else index
