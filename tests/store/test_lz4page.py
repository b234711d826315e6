"""lz4 for one page in C writes exactly what the lz4 package writes, and the store uses it."""

from __future__ import annotations

import importlib
import random
import sysconfig
from pathlib import Path
from typing import Any

import lz4.block
import pytest

from tmem.loader import pure_requested
from tmem.store import codecs


def _module() -> Any:
    try:
        module = importlib.import_module("tmem.store._lz4page")
    except ImportError:
        pytest.skip("tmem.store._lz4page was not built (no C compiler at install time)")
    module.bind(importlib.import_module("lz4.block._block").__file__, lz4.block.LZ4BlockError)
    return module


def _pages() -> list[bytes]:
    rnd = random.Random(14)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = b"".join(p.read_bytes() for p in sorted(stdlib.glob("a*.py")))
    pages = [bytes(4096), b"\x01" * 4096, rnd.randbytes(4096), text[:4096], text[4096:8192]]
    for size in (512, 1024, 2048, 4096, 8192, 16384, 65536):
        for _ in range(8):
            noise = rnd.randrange(256)  # from text-like to incompressible
            pages.append(bytes(rnd.randrange(noise + 1) for _ in range(size)))
            start = rnd.randrange(len(text) - size)
            pages.append(text[start : start + size])
    pages.append(text[:200_000])  # beyond the module's static buffer
    return pages


def test_compress_writes_the_lz4_packages_bytes_and_decompress_reads_them():
    page = _module()
    for data in _pages():
        packed = page.compress(data)
        assert packed == lz4.block.compress(data, store_size=False), len(data)
        assert page.compress(memoryview(data)) == packed == page.compress(bytearray(data))
        assert page.decompress(packed, len(data)) == data
        assert page.decompress(memoryview(packed), len(data)) == data


def test_a_corrupt_block_or_a_wrong_size_raises_the_lz4_packages_error():
    page = _module()
    data = _pages()[3]
    packed = page.compress(data)
    for block, size in ((b"\xff" * 16, 4096), (packed, len(data) - 1), (packed, len(data) + 1),
                        (packed[:-3], len(data))):  # fmt: skip
        with pytest.raises(lz4.block.LZ4BlockError):
            page.decompress(block, size)
    with pytest.raises(ValueError):
        page.decompress(packed, -1)
    with pytest.raises(TypeError):
        page.decompress(packed)
    with pytest.raises(TypeError):
        page.compress("not bytes")


def test_the_store_compresses_through_it_unless_tmem_pure():
    page = _module()
    assert (codecs.PAGE_LZ4 is None) == pure_requested()
    table = codecs.Codecs()
    if not pure_requested():
        assert table.compress[codecs.LZ4] is page.compress
        assert table.decompress[codecs.LZ4] is page.decompress
    fallback = codecs.Codecs(lz4_page=None)  # the lz4 package's calls: the same bytes
    for data in _pages()[:20]:
        packed = table.compress[codecs.LZ4](data)
        assert fallback.compress[codecs.LZ4](data) == packed
        assert fallback.decompress[codecs.LZ4](packed, len(data)) == data
