"""Memory is really bounded: a full host's resident memory stays near its capacity."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CAPACITY = 64 << 20
OVERHEAD = 12 << 20  # interpreter warm-up, arrays' growth slack, arena chunk rounding

FILL = textwrap.dedent(
    """
    import json, os, psutil, tmem
    proc = psutil.Process()
    host = tmem.Host(capacity={capacity}, compress=None)
    client = host.connect("filler")
    pools = [client.new_pool(persistent=True), client.new_pool()]
    page = bytearray(os.urandom(4096))
    before = proc.memory_info().rss
    accepted = 0
    for i in range(3 * {capacity} // 4096):
        page[:8] = i.to_bytes(8, "little")
        accepted += client.put_page(pools[i % 2], i // 1000, i % 1000, page)
    after = proc.memory_info().rss
    stats = host.stats()
    print(json.dumps(dict(growth=after - before, accepted=accepted, bytes=stats["bytes"],
                          pages=stats["pages"])))
    """
)


def test_resident_memory_of_a_full_host_stays_within_capacity_plus_overhead():
    code = FILL.format(capacity=CAPACITY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout)
    assert figures["bytes"] <= CAPACITY
    assert figures["bytes"] > CAPACITY * 0.95  # the host really filled up
    assert figures["accepted"] > figures["pages"]  # and evicted to keep putting
    assert figures["growth"] <= CAPACITY + OVERHEAD
