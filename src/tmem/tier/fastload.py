"""The tail of an SSD tier get, compiled where the package was built with its C module.

:func:`read_record` reads a record and checks it, and :func:`decode_export`
decodes a page, each in one call that holds the interpreter's lock except
while the disk read blocks (see ``_fastload.c``).  They call the lz4 and XXH3
code of the ``lz4`` and ``xxhash`` packages, so they check and decode exactly
as the Python steps they replace.  Both are None where the module was not
built (no C compiler at install time) or those packages do not expose that
code: the tier then runs the same steps in Python.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tmem.errors import InvalidArgument

#: ``read_record(fd, buffer, start, size, at, end, tag, slot) -> payload | None``
read_record: Callable[..., bytes | None] | None = None
#: ``decode_export(blob) -> page | None`` (None: a codec it leaves to the caller)
decode_export: Callable[[bytes], bytes | None] | None = None


def _bind() -> None:
    global read_record, decode_export
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
    decode_export = module.decode_export


_bind()
