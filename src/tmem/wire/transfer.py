"""Transfer records: a client's pages on their way out of one host and into another.

Save files and live migration carry the same records.  Each is a fixed
header, ``kind:u8 form:u8 0:u16 pool:u32 oid:24 bytes index:u32
length:u32 crc32:u32``, then ``length`` bytes: the page as the store kept it
(form 1: :mod:`tmem.store.export`'s portable form, a metadata byte and the
compressed, raw or same-filled bytes).  ``crc32`` covers the header's
first 40 bytes and the data, so a damaged record is found, whatever part of
it was damaged.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any

from tmem.api import RECORD_FLUSH_OBJECT, RECORD_FLUSH_PAGE, RECORD_PAGE, Record
from tmem.wire.frames import WireError

RECORD = struct.Struct("<BBHI24sIII")
_CHECKED = RECORD.size - 4  # the header bytes the crc covers, before the crc itself
KINDS = (RECORD_PAGE, RECORD_FLUSH_PAGE, RECORD_FLUSH_OBJECT)
#: The largest page data a record may carry (a 64 KiB page stored raw, and its form byte).
MAX_DATA = 65536 + 1


def encode_record(kind: int, pool: int, oid: int, index: int, codec: int, data: Any) -> bytes:
    """One record, checksummed."""
    head = RECORD.pack(kind, codec, 0, pool, oid.to_bytes(24, "little"), index, len(data), 0)
    crc = zlib.crc32(data, zlib.crc32(head[:_CHECKED]))
    return head[:_CHECKED] + crc.to_bytes(4, "little") + bytes(data)


def encode_records(records: list[Record]) -> bytes:
    """Records one after another."""
    return b"".join(encode_record(*record) for record in records)


def decode_records(body: bytes | memoryview) -> Iterator[Record]:
    """Each record of ``body`` in order; WireError at the first damaged or truncated one."""
    view = memoryview(body)
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < RECORD.size:
            raise WireError(f"truncated record header at byte {pos}")
        kind, codec, pad, pool, oid, index, length, crc = RECORD.unpack_from(view, pos)
        stop = pos + RECORD.size + length
        if kind not in KINDS or pad or length > MAX_DATA or stop > end:
            raise WireError(f"damaged or truncated record at byte {pos}")
        data = view[pos + RECORD.size : stop]
        if zlib.crc32(data, zlib.crc32(view[pos : pos + _CHECKED])) != crc:
            raise WireError(f"checksum mismatch in the record at byte {pos}")
        yield kind, pool, int.from_bytes(oid, "little"), index, codec, bytes(data)
        pos = stop


def encode_import(name: str, records: list[Record]) -> bytes:
    """An IMPORT_PAGES body: the client's name (u8 length), then its records."""
    raw = name.encode()
    if len(raw) > 255:
        raise WireError("client name too long")
    return bytes([len(raw)]) + raw + encode_records(records)


def decode_import(body: bytes | memoryview) -> tuple[str, list[Record]]:
    """``(name, records)`` of an IMPORT_PAGES body."""
    if not body or len(body) < 1 + body[0]:
        raise WireError("import body shorter than its name")
    try:
        name = bytes(body[1 : 1 + body[0]]).decode()
    except UnicodeDecodeError:
        raise WireError("client name is not UTF-8") from None
    return name, list(decode_records(body[1 + body[0] :]))
