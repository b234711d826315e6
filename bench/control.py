"""The control plane's costs: save and restore against ``cp``, live migration under load,
and what ``tmem top`` costs the daemon.

Every daemon is a real ``tmem serve`` subprocess; the administrative calls
are those of the ``tmem`` command (the same functions, without its start-up).

* ``save``: a client of ``--mib`` MiB of persistent pages (half random, half
  zeros: about 2:1 with lz4) is saved to a file and restored into a second
  daemon; the reference copies that same file with ``cp`` and ``sync``s it
  (a save fsyncs its file too).  Medians of ``--rounds`` rounds, the three
  taking turns first.
* ``migrate``: a client process fills ``--mib`` MiB and then keeps putting
  and getting (checking every get against its own model) while the client
  is migrated to a second daemon; reports total time, freeze time, rounds,
  pages copied more than once, the client's operations meanwhile, and pages
  wrong or lost afterwards (all of them are read back from the new daemon).
* ``top``: the daemon's CPU time per ``tmem top`` refresh (one HOST_STATS
  call) with ``--clients`` clients, and a busy client's puts/s with ``top``
  refreshing 10 times a second against without it.

    python bench/control.py save [--mib 64] [--rounds 3]
    python bench/control.py migrate [--mib 1024]
    python bench/control.py top [--clients 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import tmem
from tmem.control import snapshot
from tmem.control.migrate import migrate

PAGE = 4096
_BLOCK = random.Random(7).randbytes(1 << 20)


def page(seed: int) -> bytes:
    """A distinct page (for distinct seeds, mostly) that lz4 halves."""
    offset = (seed * 2053) % (len(_BLOCK) - PAGE // 2)
    return _BLOCK[offset : offset + PAGE // 2] + bytes(PAGE // 2)


@contextlib.contextmanager
def daemons(count: int, *options: str) -> Iterator[list[tuple[str, subprocess.Popen]]]:
    """``count`` ``tmem serve`` processes on sockets in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="tmem-bench-") as tmp:
        procs = []
        try:
            for n in range(count):
                path = os.path.join(tmp, f"d{n}.sock")
                cmd = [sys.executable, "-m", "tmem.cli", "serve", "--socket", path,
                       "--log-level", "warning", *options]  # fmt: skip
                procs.append(("unix:" + path, subprocess.Popen(cmd)))
            for address, _ in procs:
                _wait(address)
            yield procs
        finally:
            for _, proc in procs:
                proc.terminate()
                proc.wait(60)


def _wait(address: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            tmem.admin(address).close()
            return
        except tmem.ConnectionLost:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def fill(client: tmem.RemoteClient, pool: int, pages: int) -> None:
    """Put ``pages`` pages, object 0, indexes 0..pages-1, seeds = indexes."""
    for start in range(0, pages, 4096):
        stop = min(pages, start + 4096)
        assert all(client.put_pages(pool, [(0, i, page(i)) for i in range(start, stop)]))


# --- save and restore -------------------------------------------------------


def bench_save(mib: int, rounds: int) -> None:
    pages = mib * 256
    times: dict[str, list[float]] = {"save": [], "restore": [], "cp+sync": []}
    with daemons(2, "--capacity", f"{2 * mib + 64}M") as [(first, _), (second, _)]:
        client = tmem.connect(first, name="bench")
        fill(client, client.new_pool(persistent=True), pages)
        source, target = tmem.admin(first), tmem.admin(second)
        with tempfile.TemporaryDirectory(prefix="tmem-bench-", dir=".") as tmp:
            saved = Path(tmp) / "bench.tmem"
            snapshot.save(source, "bench", saved)  # the file the first restore reads
            size = saved.stat().st_size
            steps = {
                "save": lambda r: snapshot.save(source, "bench", Path(tmp) / f"s{r}.tmem"),
                "restore": lambda r: _restore_and_drop(target, saved, f"r{r}"),
                "cp+sync": lambda r: _cp(saved, Path(tmp) / f"c{r}.tmem"),
            }
            for r in range(rounds):
                order = list(steps)[r % 3 :] + list(steps)[: r % 3]
                for name in order:
                    start = time.perf_counter()
                    steps[name](r)
                    times[name].append(time.perf_counter() - start)
                for extra in Path(tmp).glob("[sc]*.tmem"):
                    extra.unlink()
    cp = statistics.median(times["cp+sync"])
    print(f"save/restore of {pages} pages ({mib} MiB of pages, file {size / 2**20:.1f} MiB),"
          f" median of {rounds}; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    for name, values in times.items():
        t = statistics.median(values)
        print(f"  {name:8} {t:7.3f} s  {pages / t:9.0f} pages/s  {size / t / 1e6:7.1f} MB/s"
              f"  {t / cp:5.1f}x cp+sync")  # fmt: skip


def _restore_and_drop(target: tmem.RemoteAdmin, path: Path, name: str) -> None:
    snapshot.restore(target, path, name)
    target.drop_parked(name)


def _cp(source: Path, destination: Path) -> None:
    subprocess.run(["cp", str(source), str(destination)], check=True)
    subprocess.run(["sync", str(destination)], check=True)


# --- live migration ---------------------------------------------------------

_LOAD = textwrap.dedent("""
    import random, sys, time
    sys.path.insert(0, {bench!r})
    import tmem
    from control import fill, page
    client = tmem.connect({address!r}, name="vm")
    pool = client.new_pool(persistent=True)
    pages = {pages}
    fill(client, pool, pages)
    model = dict.fromkeys(range(pages), 0)
    for i in range(pages):
        model[i] = i
    print("ready", flush=True)
    rng, ops, errors, wrong, seed = random.Random(1), 0, 0, 0, pages
    import select
    while not select.select([sys.stdin], [], [], 0)[0]:
        i = rng.randrange(pages)
        try:
            if rng.random() < 0.5:
                seed += 1
                if client.put_page(pool, 0, i, page(seed)):
                    model[i] = seed
                else:
                    model.pop(i, None)
            else:
                got = client.get_page(pool, 0, i)
                wrong += got != (page(model[i]) if i in model else None)
        except tmem.TmemError as exc:
            errors += 1
            print("error", exc, file=sys.stderr)
        ops += 1
    lost = 0
    keys = sorted(model)
    for start in range(0, len(keys), 4096):
        chunk = keys[start : start + 4096]
        got = client.get_pages(pool, [(0, i) for i in chunk])
        lost += sum(g != page(model[i]) for g, i in zip(got, chunk))
    print(ops, errors, wrong, lost, client._chan.address, flush=True)
""")


def bench_migrate(mib: int) -> None:
    pages = mib * 256
    capacity = f"{2 * mib + 256}M"
    with daemons(2, "--capacity", capacity) as [(first, _), (second, _)]:
        script = _LOAD.format(bench=str(Path(__file__).parent), address=first, pages=pages)
        load = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert load.stdout is not None and load.stdin is not None
        assert load.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # the client is busy before the move starts
        with tmem.admin(first) as source, tmem.admin(second) as target:
            report = migrate(source, target, "vm", second)
            left = source.stats()["pages"]
        time.sleep(1.0)  # and after
        load.stdin.close()
        ops, errors, wrong, lost, address = load.stdout.readline().split()
        load.wait(600)
    print(f"migration of {pages} persistent pages ({mib} MiB) under load;"
          f" load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"  {report.describe()}")
    print(f"  total {report.total_seconds:.2f} s, freeze {report.freeze_seconds * 1e3:.1f} ms,"
          f" pages copied more than once {report.copied_again},"
          f" {report.data_bytes / report.total_seconds / 1e6:.1f} MB/s of page data")  # fmt: skip
    print(f"  the client meanwhile: {ops} operations, {errors} errors, {wrong} wrong gets;"
          f" afterwards {lost} pages lost or wrong, {left} pages left on the old daemon,"
          f" client now at the new daemon: {address == second}")  # fmt: skip


# --- tmem top ---------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_top(clients: int, rounds: int) -> None:
    refreshes = 200
    with daemons(1, "--capacity", "256M") as [(address, proc)]:
        held = []
        for n in range(clients):
            client = tmem.connect(address, name=f"vm{n}")
            pool = client.new_pool(persistent=True)
            client.put_pages(pool, [(0, i, page(n * 1000 + i)) for i in range(64)])
            client.new_pool()
            held.append(client)
        admin = tmem.admin(address)
        per_refresh = []
        for _ in range(rounds):
            before = _cpu_seconds(proc.pid)
            for _ in range(refreshes):
                admin.stats()
            per_refresh.append((_cpu_seconds(proc.pid) - before) / refreshes)
        busy = held[0]
        pool = 0
        with_top, without = [], []
        for r in range(rounds):
            for topping in ((True, False) if r % 2 else (False, True)):
                (with_top if topping else without).append(_puts_per_s(busy, pool, address, topping))
    cpu = statistics.median(per_refresh)
    ratio = statistics.median(w / o for w, o in zip(with_top, without, strict=True))
    print(f"tmem top with {clients} clients; load {os.getloadavg()[0]:.1f}")
    print(f"  one refresh = one HOST_STATS request: daemon CPU {cpu * 1e3:.2f} ms"
          f" (median of {rounds} x {refreshes}); at the default 1 s interval that is"
          f" 1 request/s and {cpu * 100:.2f}% of one core")  # fmt: skip
    print(f"  a busy client's puts/s with top refreshing 10 times a second:"
          f" {ratio:.3f} of without (median of {rounds} pairs)")  # fmt: skip


def _puts_per_s(client: tmem.RemoteClient, pool: int, address: str, topping: bool) -> float:
    top = None
    if topping:
        top = subprocess.Popen(
            [sys.executable, "-m", "tmem.cli", "top", "--interval", "0.1", "--socket",
             address.removeprefix("unix:")],
            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.5)  # started and refreshing
    try:
        data, n, start = page(1), 0, time.perf_counter()
        while time.perf_counter() - start < 2.0:
            client.put_page(pool, 1, n & 1023, data)
            n += 1
        return n / (time.perf_counter() - start)
    finally:
        if top is not None:
            top.terminate()
            top.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["save", "migrate", "top"])
    parser.add_argument("--mib", type=int, help="MiB of persistent pages [save 64, migrate 1024]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    if args.what == "save":
        bench_save(args.mib or 64, args.rounds)
    elif args.what == "migrate":
        bench_migrate(args.mib or 1024)
    else:
        bench_top(args.clients, args.rounds)


if __name__ == "__main__":
    main()
