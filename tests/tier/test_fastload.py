"""The SSD tier's compiled read and decode (tmem.tier.fastload) against the Python steps."""

from __future__ import annotations

import random
import shutil
import sysconfig

import lz4.block
import pytest
import zstandard

from tmem.errors import InvalidArgument
from tmem.store.export import decode_export
from tmem.tier import fastload

PAGE = 4096
ORDER = 3 << 4  # log2(4096) - 9, in the export's first byte


def test_the_compiled_module_is_built_where_a_compiler_is():
    # pip builds it as the package installs; without a C compiler the build is skipped
    # and the tier runs the same steps in Python (the other half of these tests).
    if shutil.which(sysconfig.get_config_var("CC").split()[0]) is None:
        pytest.skip("no C compiler here: the Python steps serve")
    built = None not in (fastload.read_record, fastload.load_record, fastload.decode_export)
    assert built, "tmem.tier._fastload is missing: `pip install -e .` builds it"


@pytest.fixture
def compiled():
    if fastload.decode_export is None:
        pytest.skip("tmem.tier._fastload was not built")
    return fastload.decode_export


def exports() -> list[bytes]:
    page = random.Random(1).randbytes(PAGE // 2) + bytes(PAGE // 2)
    return [
        bytes([1 | ORDER]) + lz4.block.compress(page, store_size=False),
        bytes([0 | ORDER]) + page,
        bytes([3 | ORDER]) + (7).to_bytes(8, "little"),
        bytes([1 | (0 << 4)]) + lz4.block.compress(page[:512], store_size=False),
    ]


def test_pages_decode_as_the_python_steps_decode_them(compiled):
    for blob in exports():
        assert compiled(blob) == decode_export(blob)
    zstd = bytes([2 | ORDER]) + zstandard.ZstdCompressor().compress(bytes(PAGE))
    assert compiled(zstd) is None  # left to the caller, which decodes it in Python


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        bytes([1 | ORDER]) + b"\x00garbage",  # lz4 that is not a page
        bytes([1 | (1 << 4)]) + lz4.block.compress(bytes(512), store_size=False),  # too short
        bytes([0 | ORDER]) + bytes(100),  # raw, not a whole page
        bytes([3 | ORDER]) + b"abc",  # same-filled without its word
    ],
)
def test_what_does_not_decode_to_a_page_is_refused_by_both(compiled, blob):
    with pytest.raises(InvalidArgument):
        decode_export(blob)
    with pytest.raises(InvalidArgument):
        compiled(blob)


def test_zstd_that_is_not_a_page_is_refused():
    with pytest.raises(InvalidArgument):
        decode_export(bytes([2 | ORDER]) + b"\x28\xb5\x2f\xfd garbage")
