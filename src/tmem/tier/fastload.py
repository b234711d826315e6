"""The tail of an SSD tier get, compiled where the package was built with its C module.

:func:`read_record` reads a record and checks it, and :func:`decode_export`
decodes a page, each in one call that holds the interpreter's lock except
while the disk read blocks (see ``_fastload.c``); :func:`load_record` also
looks the record up in the tier's index first, so that a load is one call.
They call the lz4 and XXH3 code of the ``lz4`` and ``xxhash`` packages, so
they check and decode exactly as the Python steps they replace.  All are None
where the module was not built (no C compiler at install time) or those
packages do not expose that code: the tier then runs the same steps in Python.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tmem.errors import InvalidArgument

#: ``read_record(fd, buffer, start, size, at, end, tag, slot) -> payload | None``
read_record: Callable[..., bytes | None] | None = None
#: ``load_record(fd, buffer, offsets, lengths, tags, counts, slot, tag) -> payload | None | False``
#: (the index lookup as well: see ``_fastload.c``)
load_record: Callable[..., bytes | bool | None] | None = None
#: ``decode_export(blob) -> page | None`` (None: a codec it leaves to the caller)
decode_export: Callable[[bytes], bytes | None] | None = None


def _bind() -> None:
    global read_record, load_record, decode_export
    try:
        lz4_module = importlib.import_module("lz4.block._block")
        xxhash_module = importlib.import_module("xxhash._xxhash")
        module: Any = importlib.import_module("tmem.tier._fastload")
    except ImportError:
        return
    try:
        module.bind(lz4_module.__file__, xxhash_module.__file__, InvalidArgument)
    except ImportError:
        return
    read_record = module.read_record
    load_record = module.load_record
    decode_export = module.decode_export


_bind()
