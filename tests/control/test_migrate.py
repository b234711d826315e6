"""Live migration between two real ``tmem serve`` daemons while the client runs."""

from __future__ import annotations

import random
import threading

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import tmem
from tests.control.conftest import tmem_command
from tmem.control.migrate import migrate

PAGE = 1024


def _data(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAGE // 2) * 2


def test_a_client_that_keeps_working_follows_its_pages_to_the_new_host(serve_process):
    _, old = serve_process("--capacity", "64M")
    _, new = serve_process("--capacity", "64M")
    names = iter(range(1000))

    class Migration(RuleBasedStateMachine):
        """A client's pages, modelled, while a migration to the other daemon runs."""

        @initialize()
        def start(self) -> None:
            self.name = f"vm{next(names)}"
            self.client = tmem.connect(old, name=self.name)
            self.pools = [self.client.new_pool(persistent=True, page_size=PAGE) for _ in range(2)]
            self.cache = self.client.new_pool(page_size=PAGE)  # ephemeral: may miss, never wrong
            self.model: dict[tuple[int, int, int], bytes] = {}
            preload = [(0, i, _data(i)) for i in range(400)]
            assert all(self.client.put_pages(self.pools[0], preload))
            self.model.update({(self.pools[0], o, i): d for o, i, d in preload})
            self.report = None
            self.thread: threading.Thread | None = None

        def _migrate(self) -> None:
            with tmem.admin(old) as source, tmem.admin(new) as target:
                self.report = migrate(source, target, self.name, new)

        @precondition(lambda self: self.thread is None)
        @rule()
        def start_migration(self) -> None:
            self.thread = threading.Thread(target=self._migrate)
            self.thread.start()

        @rule(pool=st.integers(0, 1), oid=st.integers(0, 3), index=st.integers(0, 500),
              seed=st.integers())  # fmt: skip
        def put(self, pool: int, oid: int, index: int, seed: int) -> None:
            handle = (self.pools[pool], oid, index)
            data = _data(seed)
            if self.client.put_page(*handle, data):
                self.model[handle] = data
            else:
                self.model.pop(handle, None)

        @rule(pool=st.integers(0, 1), oid=st.integers(0, 3), index=st.integers(0, 500))
        def get(self, pool: int, oid: int, index: int) -> None:
            handle = (self.pools[pool], oid, index)
            assert self.client.get_page(*handle) == self.model.get(handle)

        @rule(pool=st.integers(0, 1), oid=st.integers(0, 3), index=st.integers(0, 500))
        def flush(self, pool: int, oid: int, index: int) -> None:
            handle = (self.pools[pool], oid, index)
            self.client.flush_page(*handle)
            self.model.pop(handle, None)

        @rule(pool=st.integers(0, 1), oid=st.integers(0, 3))
        def flush_object(self, pool: int, oid: int) -> None:
            self.client.flush_object(self.pools[pool], oid)
            for handle in [h for h in self.model if h[:2] == (self.pools[pool], oid)]:
                del self.model[handle]

        @rule(pool=st.integers(0, 1), oid=st.integers(0, 3), first=st.integers(0, 500))
        def batch(self, pool: int, oid: int, first: int) -> None:
            handles = [(oid, i) for i in range(first, first + 100)]  # sliced by the daemon
            stored = self.client.put_pages(self.pools[pool], [(o, i, _data(i)) for o, i in handles])
            for (o, i), ok in zip(handles, stored, strict=True):
                key = (self.pools[pool], o, i)
                if ok:
                    self.model[key] = _data(i)
                else:
                    self.model.pop(key, None)
            got = self.client.get_pages(self.pools[pool], handles)
            assert got == [self.model.get((self.pools[pool], o, i)) for o, i in handles]

        @rule(index=st.integers(0, 50))
        def cache(self, index: int) -> None:
            self.client.put_page(self.cache, 9, index, _data(index))
            assert self.client.get_page(self.cache, 9, index) in (None, _data(index))

        @invariant()
        def never_an_error(self) -> None:
            pass  # any error of the client's calls fails the step that made it

        def teardown(self) -> None:
            if self.thread is None:
                self.start_migration()
            assert self.thread is not None
            self.thread.join(120)
            assert self.report is not None, "the migration failed"
            assert self.report.freeze_seconds > 0 and self.report.rounds >= 2
            self.client.stats()  # the first call after the move follows it
            for handle, data in self.model.items():
                assert self.client.get_page(*handle) == data
            with tmem.admin(old) as source, tmem.admin(new) as target:
                assert self.name not in source.stats()["clients"]
                moved = target.stats()["clients"][self.name]
            persistent = sum(p["pages"] for p in moved["pools"].values() if p["persistent"])
            assert persistent == len(self.model)
            assert self.client._chan.address == new
            self.client.close()

    run_state_machine_as_test(
        Migration,
        settings=settings(max_examples=6, stateful_step_count=40, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )  # fmt: skip


def test_tmem_migrate_reports_pages_rounds_and_freeze(serve_process):
    _, old = serve_process("--capacity", "64M")
    _, new = serve_process("--capacity", "64M")
    client = tmem.connect(old, name="vm1")
    pool = client.new_pool(persistent=True)
    assert all(client.put_pages(pool, [(1, i, _data(i) * 4) for i in range(300)]))
    run = tmem_command("migrate", "vm1", "--to", new, "--socket", old.removeprefix("unix:"))
    assert run.returncode == 0, run.stderr
    assert "300 pages" in run.stdout and "rounds" in run.stdout and "frozen" in run.stdout
    back = client.get_pages(pool, [(1, i) for i in range(300)])
    assert back == [_data(i) * 4 for i in range(300)]
    assert tmem.admin(old).stats()["pages"] == 0


def test_a_migration_the_new_host_cannot_hold_changes_nothing(serve_process):
    _, old = serve_process("--capacity", "64M", "--compress", "none")
    _, small = serve_process("--capacity", "64K", "--compress", "none")
    client = tmem.connect(old, name="vm1")
    pool = client.new_pool(persistent=True)
    pages = [(1, i, random.Random(i).randbytes(4096)) for i in range(100)]
    assert all(client.put_pages(pool, pages))
    run = tmem_command("migrate", "vm1", "--to", small, "--socket", old.removeprefix("unix:"))
    assert run.returncode == 1 and "refused" in run.stderr
    assert client.get_pages(pool, [(o, i) for o, i, _ in pages]) == [d for _, _, d in pages]
    assert client.put_page(pool, 2, 0, bytes(4096))  # served on the old host as before
    stats = tmem.admin(small).stats()
    assert (stats["clients"], stats["parked"], stats["pages"]) == ({}, [], 0)
