"""SwapMemory: real userfaultfd faults, resolved by a real handler process, paged through tmem.

Every workload runs in a child process with a bounded wait: a thread that
faults waits in the kernel, so a broken handler must cost a failed test, never
a hung one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.frontends.mounting import serving

PS = os.sysconf("SC_PAGE_SIZE")


def _uffd_missing() -> str | None:
    if not os.path.exists("/dev/userfaultfd") and not os.path.exists(
        "/proc/sys/vm/unprivileged_userfaultfd"
    ):
        return "this kernel has no userfaultfd"
    try:
        from tmem.frontends import uffd

        fd, _ = uffd.open_uffd()
        try:
            uffd.api(fd, uffd.FEATURES)
        finally:
            os.close(fd)
    except OSError as exc:
        return str(exc)
    return None


pytestmark = pytest.mark.skipif(_uffd_missing() is not None, reason=str(_uffd_missing()))


def child(code: str, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (bounded); its output is captured as text."""
    return subprocess.run(  # type: ignore[call-overload]
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


NUMPY = """
    import hashlib, json, sys
    import numpy as np
    from tmem.frontends import SwapMemory

    RESIDENT = 64
    kw = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {{"embedded": 64 << 20}}
    with SwapMemory(4 * RESIDENT * {ps}, RESIDENT, **kw) as mem:
        a = np.frombuffer(mem.buffer, dtype=np.float64)
        ref = np.empty_like(a)
        for out in (a, ref):  # the same unmodified computation in both memories
            out[:] = np.arange(len(out), dtype=np.float64)
            out *= 1.5
            out += np.sin(np.arange(len(out)) % 97)
            out[::7] = -out[::7]
        results = [float(x.sum()) for x in (a, ref)]
        results += [float(np.dot(x, x[::-1])) for x in (a, ref)]
        cums = [float(np.cumsum(x)[-1]) for x in (a, ref)]
        stats = mem.stats()
        per_page = len(a) // (4 * RESIDENT)
        bad = [p for p in range(4 * RESIDENT)
               if a[p * per_page:(p + 1) * per_page].tobytes()
               != ref[p * per_page:(p + 1) * per_page].tobytes()]
        del a
    print(json.dumps({{"results": results, "cums": cums, "bad": bad, "stats": stats}}))
"""


@pytest.mark.parametrize("where", ["embedded", "daemon", "swap-file"])
def test_numpy_on_a_region_four_times_its_resident_limit_matches_ordinary_memory(
    tmp_path: Path, where: str
) -> None:
    import json

    code = NUMPY.format(ps=PS)
    if where == "daemon":
        with serving(tmp_path) as (_, address):
            r = child_args(code, {"address": address})
    elif where == "swap-file":
        r = child_args(code, {"no_tmem": True})
    else:
        r = child(code)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    s1, s2, d1, d2 = out["results"]
    assert s1 == s2 and d1 == d2 and out["cums"][0] == out["cums"][1]
    assert out["bad"] == []
    stats = out["stats"]
    assert stats["resident"] <= 64
    assert stats["evictions"] > 3 * 64
    assert stats["store_fills"] > 0  # pages came back from the swap area
    swap = stats["frontswap"]
    if where == "swap-file":
        assert swap["swap_writes"] > 0 and swap["succ_stores"] == 0
    else:
        assert swap["succ_stores"] > 0 and swap["loads"] > 0 and swap["swap_writes"] == 0


def child_args(code: str, kwargs: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` with ``kwargs`` (JSON) as its first argument."""
    import json

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), json.dumps(kwargs)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


THREADS = """
    import threading
    import numpy as np
    from tmem.frontends import SwapMemory

    PAGES, RESIDENT, ROUNDS = 64, 6, 40
    with SwapMemory(PAGES * {ps}, RESIDENT, embedded=16 << 20) as mem:
        view = memoryview(mem.buffer)
        a = np.frombuffer(mem.buffer, dtype=np.int64)
        per = len(a) // 4
        stale = []

        def numpy_worker(t):  # C loops that fault with the GIL released
            seg = a[t * per:(t + 1) * per - 64]
            for _ in range(ROUNDS):
                np.add(seg, 1, out=seg)

        def hammer(t):  # Python code on one hot page: it goes cold for the LRU
            off = (t * per + per - 32) * 8
            for v in range(1, 5001):
                view[off:off + 8] = v.to_bytes(8, "little")
                got = int.from_bytes(view[off:off + 8], "little")
                if got != v:
                    stale.append((v, got))

        threads = [threading.Thread(target=numpy_worker, args=(t,)) for t in range(4)]
        threads += [threading.Thread(target=hammer, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(90)
        assert not any(th.is_alive() for th in threads), "a thread hung"
        lost = len(stale)
        for t in range(4):
            seg = a[t * per:(t + 1) * per - 64]
            lost += int((seg != ROUNDS).sum())
            lost += int(a[t * per + per - 32] != 5000)
        stats = mem.stats()
        del a, seg
        view.release()
    print("lost", lost, "evictions", stats["evictions"], "resident", stats["resident"])
"""


def test_many_threads_writing_while_pages_are_evicted_lose_no_update() -> None:
    r = child(THREADS.format(ps=PS))
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[0:2] == ["lost", "0"], r.stdout
    assert int(words[3]) > 1000  # eviction ran all the time
    assert int(words[5]) <= 6


KILLED = """
    import sys, json
    import numpy as np
    from tmem.frontends import SwapMemory

    mem = SwapMemory(256 * {ps}, 16, address=sys.argv[1])
    a = np.frombuffer(mem.buffer, dtype=np.int64)
    a[:] = np.arange(len(a))
    print("filled", flush=True)
    sys.stdin.readline()  # the daemon is killed now
    ok = bool((a == np.arange(len(a))).all())
    print("WRONG BYTES" if not ok else "all true", flush=True)
"""


def test_the_daemon_killed_under_swapmemory_gives_sigbus_and_a_message_never_a_wrong_byte(
    tmp_path: Path,
) -> None:
    with serving(tmp_path) as (server, address):
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(KILLED.format(ps=PS)), address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "filled"
            server.kill()
            server.wait(10)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert "WRONG BYTES" not in out
    assert proc.returncode == -signal.SIGBUS, (proc.returncode, out, err)
    assert "was lost with the tmem host" in err


def test_an_ordinary_user_gets_user_mode_only_faults(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    code = f"""
        import numpy as np
        from tmem.frontends import SwapMemory
        with SwapMemory(64 * {PS}, 8, no_tmem=True) as mem:
            a = np.frombuffer(mem.buffer, dtype=np.int32)
            a[:] = np.arange(len(a))
            print(mem.user_mode_only, int(a.sum()) == int(np.arange(len(a)).sum()))
            del a
    """
    env = dict(os.environ, TMPDIR=str(tmp_path), HOME=str(tmp_path))
    os.chmod(tmp_path, 0o777)
    try:
        r = child(code, user=65534, env=env, cwd="/")
    except PermissionError:
        pytest.skip("this interpreter cannot be run by another user here")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]


def test_user_mode_only_serves_user_faults_and_fails_faults_inside_system_calls(
    tmp_path: Path,
) -> None:
    (tmp_path / "f").write_bytes(b"x" * PS)
    code = f"""
        import errno, os, sys
        import numpy as np
        from tmem.frontends import SwapMemory
        with SwapMemory(64 * {PS}, 8, no_tmem=True, user_mode_only=True) as mem:
            a = np.frombuffer(mem.buffer, dtype=np.int32)
            a[:] = np.arange(len(a))
            ok = int(a.sum()) == int(np.arange(len(a)).sum())
            view = memoryview(mem.buffer)
            fd = os.open(sys.argv[1], os.O_RDONLY)
            try:
                os.readv(fd, [view[:{PS}]])  # page 0 was evicted: the kernel faults on it
                kernel = "served"
            except OSError as exc:
                kernel = errno.errorcode[exc.errno]
            print(mem.user_mode_only, ok, kernel)
            del a
            view.release()
    """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(tmp_path / "f")],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "EFAULT"]


def test_bad_arguments_are_named() -> None:
    from tmem import InvalidArgument
    from tmem.frontends import SwapMemory

    for kwargs in (
        {"size": 0, "resident_pages": 1, "no_tmem": True},
        {"size": PS, "resident_pages": 0, "no_tmem": True},
        {"size": PS, "resident_pages": 1},
        {"size": PS, "resident_pages": 1, "no_tmem": True, "embedded": 1 << 20},
    ):
        with pytest.raises(InvalidArgument):
            SwapMemory(**kwargs)  # type: ignore[arg-type]


def test_close_refuses_while_an_array_is_alive() -> None:
    code = f"""
        import numpy as np
        from tmem.frontends import SwapMemory
        mem = SwapMemory(8 * {PS}, 2, no_tmem=True)
        a = np.frombuffer(mem.buffer, dtype=np.uint8)
        a[:] = 7
        try:
            mem.close()
        except BufferError:
            print("refused")
        del a
        mem.close()
        mem.close()
        print("closed")
    """
    r = child(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["refused", "closed"]


HOT_PAGE = """
    import threading
    import numpy as np
    from tmem.frontends import SwapMemory

    PAGES, RESIDENT, N = 96, 6, 100000
    with SwapMemory(PAGES * {ps}, RESIDENT, embedded=16 << 20) as mem:
        a = np.frombuffer(mem.buffer, dtype=np.int64)
        per = {ps} // 8
        hot = a[:per]                       # one page, written all the time
        sweep = a[per:]                     # the rest, swept to force evictions
        done = threading.Event()

        def hammer():                       # C loops with the GIL released
            for _ in range(N):
                np.add(hot, 1, out=hot)
            done.set()

        def sweeper():
            while not done.is_set():
                np.add(sweep, 1, out=sweep)

        threads = [threading.Thread(target=hammer), threading.Thread(target=sweeper)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(90)
        assert not any(th.is_alive() for th in threads), "a thread hung"
        lost = int((hot != N).sum())
        stats = mem.stats()
        del a, hot, sweep
    print("lost", lost, "dirty_evictions", stats["dirty_evictions"])
"""


def test_a_page_written_while_it_is_evicted_loses_no_write() -> None:
    r = child(HOT_PAGE.format(ps=PS))
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[:2] == ["lost", "0"], r.stdout
    assert int(words[3]) > 100
