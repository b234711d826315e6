"""One RemoteClient (and one RemoteAdmin) shared by threads, against a real ``tmem serve``:
calls take turns on the connection and answers never cross."""

from __future__ import annotations

import tmem
from tests.threads import run_threads

THREADS = 4
ROUNDS = 100
PAGE = 1024


def test_threads_sharing_one_remote_client_each_get_their_own_answers(serve_process):
    _, address = serve_process("--capacity", "16M", "--compress", "none")
    client = tmem.connect(address, name="shared")
    pool = client.new_pool(persistent=True, page_size=PAGE)

    def work(n: int) -> None:
        for i in range(ROUNDS):
            page = bytes([n + 1]) * (PAGE - 4) + i.to_bytes(4, "little")
            assert client.put_page(pool, n, i, page)
            assert client.get_page(pool, n, i) == page
            pages = client.get_pages(pool, [(n, j) for j in range(max(0, i - 3), i + 1)])
            assert pages[-1] == page
            assert client.stats()["pools"][pool]["pages"] >= i + 1

    try:
        run_threads(work, THREADS)
        assert client.stats()["pages"] == THREADS * ROUNDS
    finally:
        client.close()


def test_threads_sharing_one_admin_each_get_their_own_answers(serve_process):
    _, address = serve_process("--capacity", "16M")
    clients = [tmem.connect(address, name=f"vm{n}") for n in range(THREADS)]
    admin = tmem.admin(address)

    def work(n: int) -> None:
        for weight in range(1, ROUNDS // 4):
            admin.set_client(f"vm{n}", weight=weight)
            assert admin.stats()["clients"][f"vm{n}"]["weight"] == weight

    try:
        run_threads(work, THREADS)
    finally:
        admin.close()
        for client in clients:
            client.close()
