"""A hostile load against a real ``tmem serve``: memory, latency and pages under each attack.

Starts ``tmem serve`` (Unix socket for the administrator and the well-behaved
client, TCP for the token holders and the peers without a token), fills its
capacity with a filler client's ephemeral pages, then runs each attack of
``docs/operations.md`` ("Limits") in a separate process for ``--seconds``,
while the well-behaved client does put-then-get round trips of 4 KiB pages in
a persistent pool and checks every page it gets back.  For each attack it
reports what the attacker sent, the daemon's peak resident memory
(``/proc/PID/status``) against its capacity, the machine's view beside it (the
daemon's ``RssShmem``, the growth of the machine's ``Shmem`` and the drop of its
``MemAvailable``, which other processes move too), the well-behaved client's p50/p99
round trip during the attack against the same client idle (measured just
before, in the same run), and the pages it lost or got wrong.  The failing-batch
attack sends maximum-size batches that name an unknown pool in turn with valid
batches of the same size on the same connection, and reports both medians and
their ratio.  The last row is a structured fuzz run (``--fuzz-seconds``): valid
frames of every op, mutated.  The daemon is started by ``bench/serving.py``.

The attackers run at nice 10: on a small machine their own CPU use would
otherwise slow the well-behaved client whatever the daemon did, and what is
measured here is whether the daemon stalls its other clients.  The fuzzer
comes over TCP (with a client token, without one, or with no hello), never as
an administrator, who may legitimately set the capacity to 0.

    python bench/abuse.py --capacity 64M --seconds 5 --fuzz-seconds 120
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import serving

import tmem
from tmem.units import parse_size
from tmem.wire import HEADER, Decoder, Op
from tmem.wire import messages as msg

PAGE = 4096
CLIENT_TOKEN = "bench-client-token-0123456789"
ADMIN_TOKEN = "bench-admin-token-0123456789ab"
MiB = 1 << 20


# --- the daemon ------------------------------------------------------------


class Daemon:
    """``tmem serve`` in a subprocess, with its addresses and its resident memory."""

    def __init__(self, workdir: str, capacity: int, nofile: int | None) -> None:
        tokens = os.path.join(workdir, "tokens")
        with open(tokens, "w") as fh:
            fh.write(f"client {CLIENT_TOKEN} tenant\nadmin {ADMIN_TOKEN}\n")
        self.path = os.path.join(workdir, "tmem.sock")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        options = ["--capacity", str(capacity), "--compress", "none", "--dedup", "none",
                   "--tcp", f"127.0.0.1:{port}", "--token-file", tokens,
                   "--log-level", "warning"]  # fmt: skip

        def limit() -> None:
            if nofile is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.log = open(os.path.join(workdir, "daemon.log"), "w+")  # noqa: SIM115
        self.proc = serving.start(self.path, *options, stderr=self.log, preexec_fn=limit)
        self.unix = "unix:" + self.path
        self.tcp = f"tcp://127.0.0.1:{port}"

    def resident(self) -> int:
        return self.memory()["VmRSS"]

    def memory(self) -> dict[str, int]:
        """The daemon's ``VmRSS`` and ``RssShmem``, and the machine's ``Shmem`` and
        ``MemAvailable``, in bytes."""
        found = dict.fromkeys(("VmRSS", "RssShmem", "Shmem", "MemAvailable"), 0)
        for path in (f"/proc/{self.proc.pid}/status", "/proc/meminfo"):
            with open(path) as fh:
                for line in fh:
                    key, _, value = line.partition(":")
                    if key in found:
                        found[key] = int(value.split()[0]) * 1024
        return found

    def cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_lines(self) -> int:
        self.log.flush()
        self.log.seek(0)
        return sum(1 for _ in self.log)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# --- attacks (each runs in its own process until ``stop`` is set) ----------


def _raw(address: str) -> socket.socket:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(5)
        sock.connect(address.removeprefix("unix:"))
    else:
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        while sock.recv(1 << 20):
            pass


def attack_prehello(addr: dict[str, str], stop: Any) -> int:
    """Connections without a token: silent, or announcing a frame as large as max-frame."""
    held, sent = [], 0
    while not stop.is_set():
        with contextlib.suppress(OSError):
            sock = _raw(addr["tcp"])
            if sent % 2:
                sock.sendall(HEADER.pack(Op.HELLO, 0, 0, (4 << 20) + (64 << 10)) + b"T")
            held.append(sock)
            sent += 1
        if len(held) > 900:
            for sock in held[:100]:
                sock.close()
            del held[:100]
    for sock in held:
        sock.close()
    return sent


def attack_slots(addr: dict[str, str], stop: Any) -> int:
    """A token holder takes every connection it can, and keeps them busy-idle."""
    held, tries = [], 0
    while not stop.is_set():
        tries += 1
        try:
            held.append(tmem.connect(addr["tcp"], name=f"slot{tries}", token=CLIENT_TOKEN))
        except tmem.TmemError:
            time.sleep(0.01)
    for client in held:
        with contextlib.suppress(tmem.TmemError):
            client.close()
    return tries


def attack_descriptors(addr: dict[str, str], stop: Any) -> int:
    """More connections than the daemon has descriptors for (as its own user, so no
    per-peer limit applies): each past max-connections is refused, none spins the loop."""
    held, sent = [], 0
    while not stop.is_set():
        with contextlib.suppress(OSError):
            held.append(_raw(addr["unix"]))
            sent += 1
        if len(held) > 2000:
            for sock in held[:500]:
                sock.close()
            del held[:500]
    for sock in held:
        sock.close()
    return sent


def attack_big_replies(addr: dict[str, str], stop: Any) -> int:
    """GET_PAGES naming one page 152,136 times (a 594 MiB reply if it were built)."""
    sent = 0
    request = msg.encode_get_pages(0, [(1, 1)] * 152_136)
    while not stop.is_set():
        with contextlib.suppress(OSError):
            sock = _raw(addr["tcp"])
            sock.sendall(msg.encode_hello("greedy", token=CLIENT_TOKEN))
            sock.sendall(msg.encode_new_pool(True, False, None, PAGE))
            sock.sendall(msg.encode_put(0, 1, 1, bytes(PAGE)))
            for _ in range(8):
                sock.sendall(request)
                sent += 1
            _drain(sock)
            sock.close()
    return sent


def attack_pools(addr: dict[str, str], stop: Any) -> int:
    """Empty pools, as many as the daemon lets one token make, then STATS on each client."""
    clients, made = [], 0
    while not stop.is_set():
        try:
            client = tmem.connect(addr["tcp"], name=f"pools{len(clients)}", token=CLIENT_TOKEN)
        except tmem.TmemError:
            break
        clients.append(client)
        with contextlib.suppress(tmem.TmemError):
            while not stop.is_set():
                client.new_pool()
                made += 1
    while not stop.is_set():
        for client in clients:
            with contextlib.suppress(tmem.TmemError):
                client.stats()
    return made


def attack_small_objects(addr: dict[str, str], stop: Any) -> int:
    """512-byte pages, one per object, random 192-bit object ids, as fast as it can."""
    rng = random.Random(7)
    client = tmem.connect(addr["tcp"], name="objects", token=CLIENT_TOKEN)
    pool = client.new_pool(page_size=512)
    sent = 0
    while not stop.is_set():
        batch = [(rng.getrandbits(192), 0, rng.randbytes(512)) for _ in range(2048)]
        client.put_pages(pool, batch)
        sent += len(batch)
    return sent


def attack_failing_batches(addr: dict[str, str], stop: Any) -> dict[str, Any]:
    """Maximum-size PUT_PAGES batches whose every item names an unknown pool, in turn
    with valid batches of the same size (the reference), on one connection."""
    sock = _raw(addr["tcp"])
    decoder = Decoder()

    def ask(frame: bytes) -> float:
        started = time.perf_counter()
        sock.sendall(frame)
        while decoder.next_frame() is None:  # one in flight, as a client would
            decoder.received(sock.recv_into(decoder.recv_buffer()))
        return time.perf_counter() - started

    ask(msg.encode_hello("failing", token=CLIENT_TOKEN))
    ask(msg.encode_new_pool(False, False, None, 512))  # pool 0: the valid batches' pool
    count = ((4 << 20) + (64 << 10) - msg.BATCH.size) // (msg.ITEM.size + 512)
    items = [(i, 0, bytes(512)) for i in range(count)]
    frames = {
        "failing": b"".join(msg.encode_put_pages(99, 512, items)),
        "valid": b"".join(msg.encode_put_pages(0, 512, items)),
    }
    times: dict[str, list[float]] = {"failing": [], "valid": []}
    while not stop.is_set():
        order = list(frames) if len(times["failing"]) % 2 else list(frames)[::-1]
        for kind in order:
            times[kind].append(ask(frames[kind]))
    sock.close()
    return {
        "sent": len(times["failing"]),
        "items": count,
        "failing_ms": statistics.median(times["failing"]) * 1e3,
        "valid_ms": statistics.median(times["valid"]) * 1e3,
    }


def attack_names(addr: dict[str, str], stop: Any) -> int:
    """A token holder registers the well-behaved client's name and joins its shared pool."""
    tries = 0
    while not stop.is_set():
        tries += 1
        with contextlib.suppress(tmem.TmemError):
            thief = tmem.connect(addr["tcp"], name="good", token=CLIENT_TOKEN)
            with contextlib.suppress(tmem.PermissionDenied):
                pool = thief.new_pool(persistent=True, shared=True, uuid=uuid.UUID(addr["shared"]))
                thief.put_page(pool, 1, 0, b"stolen".ljust(PAGE, b"!"))  # would be a wrong page
            thief.close()
    return tries


def attack_transfers(addr: dict[str, str], stop: Any) -> int:
    """Token holders that each hold a maximum-size frame, half of them sending it but its
    last byte, half asking for a maximum-size reply and reading none of it."""
    frame = (4 << 20) + (64 << 10)
    upload = HEADER.pack(Op.PUT_PAGES, 0, 0, frame) + bytes(frame - 1)
    count = frame // (PAGE + 1) - 1
    held, sent = [], 0
    while not stop.is_set() and len(held) < 48:
        with contextlib.suppress(OSError):
            sock = _raw(addr["tcp"])
            hello = msg.encode_hello(f"transfer{sent}", token=CLIENT_TOKEN)
            if sent % 2:
                data = hello + upload
            else:
                data = hello + msg.encode_new_pool(True, False, None, PAGE)
                data += msg.encode_put(0, 1, 1, bytes(PAGE))
                data += msg.encode_get_pages(0, [(1, 1)] * count) * 2
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):  # what the daemon takes now
                sock.send(data)
            held.append(sock)
            sent += 1
    stop.wait()
    for sock in held:
        sock.close()
    return sent


def _fuzz_frames() -> list[bytes]:
    return [
        msg.encode_new_pool(True, False, None, 512),
        msg.encode_new_pool(False, True, uuid.UUID(int=5), 512),
        msg.encode_put(0, 3, 4, b"p" * 512),
        msg.encode_handle_op(Op.GET, 0, 3, 4),
        msg.encode_handle_op(Op.FLUSH_PAGE, 0, 3, 4),
        msg.encode_flush_object(0, 3),
        b"".join(msg.encode_put_pages(0, 512, [(1, i, b"q" * 512) for i in range(3)])),
        msg.encode_get_pages(0, [(1, i) for i in range(3)]),
        msg.encode_json_op(Op.STATS, None),
        msg.encode_json_op(Op.SET_CAPACITY, {"capacity": 0}),
        msg.encode_json_op(Op.HOST_STATS, {}),
        msg.encode_pool_op(Op.DESTROY_POOL, 0),
        msg.encode_json_op(Op.BYE, None),
    ]


def attack_fuzz(addr: dict[str, str], stop: Any) -> int:
    """Valid conversations of every op, then flipped bits, cuts, inserts, rewritten lengths."""
    rng, frames, sent = random.Random(11), _fuzz_frames(), 0
    while not stop.is_set():
        token = CLIENT_TOKEN if sent % 3 else ""  # a third without a valid token
        stream = bytearray(msg.encode_hello(f"fuzz{sent}", token=token) if sent % 5 else b"")
        stream += b"".join(rng.choice(frames) for _ in range(rng.randint(1, 8)))
        for _ in range(rng.randint(0, 4)):
            if not stream:
                break
            pos = rng.randrange(len(stream))
            kind = rng.choice(["flip", "cut", "insert", "length"])
            if kind == "flip":
                stream[pos] ^= 1 << rng.randrange(8)
            elif kind == "cut":
                del stream[pos : pos + rng.randint(1, 64)]
            elif kind == "insert":
                stream[pos:pos] = rng.randbytes(rng.randint(1, 16))
            elif len(stream) >= pos + 8:
                stream[pos + 4 : pos + 8] = rng.getrandbits(32).to_bytes(4, "little")
        with contextlib.suppress(OSError):
            sock = _raw(addr["tcp"])
            with contextlib.suppress(OSError):
                sock.sendall(bytes(stream))
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(5)
                while sock.recv(1 << 16):
                    pass
            sock.close()
        sent += 1
    return sent


ATTACKS: dict[str, tuple[str, Callable[[dict[str, str], Any], int]]] = {
    "1 memory before login": ("connections", attack_prehello),
    "2 connection slots": ("connection attempts", attack_slots),
    "3 out of descriptors": ("connections", attack_descriptors),
    "4 unbounded replies": ("152,136-item GET_PAGES", attack_big_replies),
    "5 unbounded pools": ("pools made", attack_pools),
    "6 metadata (512 B, 1 page/object)": ("pages put", attack_small_objects),
    "7 failing batches": ("max-size failing batches", attack_failing_batches),
    "8 names borrowed over TCP": ("takeover attempts", attack_names),
    "large transfers from many clients": ("connections", attack_transfers),
}


def _run_attack(attack: Callable[[dict[str, str], Any], int], addr: dict[str, str],
                stop: Any, result: Any) -> None:  # fmt: skip
    os.nice(10)  # the attacker's own CPU use is not the daemon's doing: it yields first
    try:
        result.put(attack(addr, stop))
    except BaseException as exc:  # reported, not hidden
        result.put(f"failed: {exc!r}")


# --- the well-behaved client -------------------------------------------------


class Good:
    """A well-behaved client: round trips of checked pages in a persistent pool."""

    def __init__(self, daemon: Daemon, shared: uuid.UUID) -> None:
        self.client = tmem.connect(daemon.unix, name="good")
        self.pool = self.client.new_pool(persistent=True)
        self.shared = self.client.new_pool(persistent=True, shared=True, uuid=shared)
        assert self.client.put_page(self.shared, 1, 0, _page(-1))
        self.stored: dict[int, bytes] = {}
        self.wrong = 0
        self.next = 0

    def round_trips(self, seconds: float) -> list[float]:
        times, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            index = self.next % 512
            self.next += 1
            data = _page(self.next)
            started = time.perf_counter()
            stored = self.client.put_page(self.pool, 0, index, data)
            got = self.client.get_page(self.pool, 0, index)
            times.append(time.perf_counter() - started)
            if stored:
                self.stored[index] = data
                self.wrong += got != data
            else:  # a refused put over a stored page flushes it (put-put-get)
                self.stored.pop(index, None)
            time.sleep(0.002)  # an interactive client, not a flood
        return times

    def lost_or_wrong(self) -> tuple[int, int]:
        lost = wrong = 0
        for index, data in self.stored.items():
            got = self.client.get_page(self.pool, 0, index)
            lost += got is None
            wrong += got is not None and got != data
        shared = self.client.get_page(self.shared, 1, 0)
        lost += shared is None
        wrong += shared is not None and shared != _page(-1)
        return lost, wrong + self.wrong


def _page(n: int) -> bytes:
    return n.to_bytes(8, "little", signed=True) * (PAGE // 8)


def _fill(daemon: Daemon, capacity: int) -> tmem.RemoteClient:
    """A filler client's ephemeral pages up to the capacity, so RSS is measured full."""
    filler = tmem.connect(daemon.unix, name="filler")
    pool = filler.new_pool()
    seed = os.urandom(PAGE)
    for start in range(0, capacity // PAGE + 256, 256):
        filler.put_pages(pool, [(start, i, seed[:-8] + (start + i).to_bytes(8, "little"))
                                for i in range(256)])  # fmt: skip
    return filler


def _sample(daemon: Daemon, peak: list[dict[str, int]], done: threading.Event) -> None:
    """Append the daemon's and the machine's memory every 50 ms until ``done``."""
    while not done.wait(0.05):
        peak.append(daemon.memory())


def _pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        daemon = Daemon(workdir, args.capacity, args.nofile)
        shared = uuid.uuid4()
        admin = tmem.admin(daemon.unix)
        admin.authorize_shared("good", shared)
        good = Good(daemon, shared)
        filler = _fill(daemon, args.capacity)  # kept: its pages go with its connection
        addr = {"unix": daemon.unix, "tcp": daemon.tcp, "shared": str(shared)}
        plan = [(name, *ATTACKS[name], args.seconds) for name in ATTACKS]
        plan.append(("structured fuzz", "fuzzed conversations", attack_fuzz, args.fuzz_seconds))
        ctx = mp.get_context("fork")
        for name, unit, attack, seconds in plan:
            idle = good.round_trips(min(3.0, seconds))
            stop, result = ctx.Event(), ctx.Queue()
            proc = ctx.Process(target=_run_attack, args=(attack, addr, stop, result))
            lines, cpu = daemon.log_lines(), daemon.cpu()
            peak, sampling = [daemon.memory()], threading.Event()
            sampler = threading.Thread(target=_sample, args=(daemon, peak, sampling))
            proc.start()
            sampler.start()
            time.sleep(min(1.0, seconds / 4))  # let the attack build up
            during = good.round_trips(seconds)
            stop.set()
            sent, extra = result.get(timeout=120), {}
            if isinstance(sent, dict):  # figures of its own beside the count
                extra, sent = sent, sent.pop("sent")
            proc.join(60)
            sampling.set()
            sampler.join()
            lost, wrong = good.lost_or_wrong()
            row = dict(
                attack=name, unit=unit, sent=sent, capacity=args.capacity,
                peak_rss=max(m["VmRSS"] for m in peak),
                peak_rss_shmem=max(m["RssShmem"] for m in peak),
                shmem_growth=max(m["Shmem"] for m in peak) - peak[0]["Shmem"],
                available_drop=peak[0]["MemAvailable"] - min(m["MemAvailable"] for m in peak),
                idle_p50=_pct(idle, 0.5), idle_p99=_pct(idle, 0.99),
                p50=_pct(during, 0.5), p99=_pct(during, 0.99), lost=lost, wrong=wrong,
                log_lines=daemon.log_lines() - lines, daemon_cpu=daemon.cpu() - cpu,
                alive=daemon.proc.poll() is None, extra=extra,
            )  # fmt: skip
            rows.append(row)
            _print_row(row)
            time.sleep(1.5)  # buffers grown by the attack are given back after 1 s quiet
        filler.close()
        daemon.stop()
    return rows


def _print_row(row: dict[str, Any]) -> None:
    print(
        f"| {row['attack']} | {row['sent']} {row['unit']} | "
        f"{row['peak_rss'] / MiB:.0f} | {(row['peak_rss'] - row['capacity']) / MiB:+.0f} | "
        f"{row['idle_p50']:.0f} / {row['idle_p99']:.0f} | {row['p50']:.0f} / {row['p99']:.0f} | "
        f"{row['p99'] / row['idle_p99']:.1f} | {row['lost']} / {row['wrong']} | "
        f"{row['log_lines']} | {row['daemon_cpu']:.1f} | "
        f"{row['peak_rss_shmem'] / MiB:.0f} / {row['shmem_growth'] / MiB:+.0f} | "
        f"{row['available_drop'] / MiB:.0f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=parse_size, default=64 * MiB)
    parser.add_argument("--seconds", type=float, default=5.0, help="each attack's duration")
    parser.add_argument("--fuzz-seconds", type=float, default=120.0)
    parser.add_argument(
        "--nofile", type=int, default=512,
        help="the daemon's open-file limit (it lowers max-connections to fit)",
    )  # fmt: skip
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"capacity {args.capacity / MiB:.0f} MiB, {args.seconds:.0f} s per attack, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")  # fmt: skip
    print(
        "| attack | sent | peak RSS MiB | over capacity MiB | idle p50/p99 µs "
        "| during p50/p99 µs | p99 / idle p99 | lost / wrong | log lines | daemon CPU s "
        "| daemon RssShmem / machine Shmem MiB | MemAvailable drop MiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = run(args)
    for row in rows:
        extra = row["extra"]
        if "failing_ms" in extra:
            print(
                f"{row['attack']}: a failing batch of {extra['items']} items took"
                f" {extra['failing_ms']:.1f} ms, a valid batch of the same size"
                f" {extra['valid_ms']:.1f} ms (medians of {row['sent']} each, alternating);"
                f" failing / valid = {extra['failing_ms'] / extra['valid_ms']:.2f};"
                f" other client p50/p99 {row['p50']:.0f} / {row['p99']:.0f} µs during,"
                f" {row['idle_p50']:.0f} / {row['idle_p99']:.0f} µs idle"
            )
    load = os.getloadavg()
    print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
