"""Save a client's persistent pages to a file, and restore them into a host.

The file: ``TMEMSAVE``, a format version (u32), the client's header (its
policy, pools and next pool id; JSON, length-prefixed, with its crc32), the
transfer records of :mod:`tmem.wire.transfer` (every page as the store kept
it, each with its own crc32), and a trailer: ``TMEMEND!``, the record and
page counts (u64) and the crc32 of every byte before the trailer.

A restore reads the whole file and checks all of it before it changes
anything; a foreign, damaged or truncated file raises :class:`SnapshotError`
and the host is left as it was.  Both sides take anything with the host's
export or import methods: a :class:`tmem.Host` or a :func:`tmem.admin` handle.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from tmem.api import RECORD_PAGE, Record
from tmem.errors import InvalidArgument, TmemError
from tmem.wire import WireError
from tmem.wire.transfer import RECORD, decode_records, encode_record

MAGIC = b"TMEMSAVE"
END = b"TMEMEND!"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sII")  # magic, version, header length
_CRC = struct.Struct("<I")
_TRAILER = struct.Struct("<8sQQI")  # END, records, pages, crc32 of all before
#: Page bytes imported per call (a daemon's frame holds a little over 4 MiB).
IMPORT_BYTES = 2 << 20


class SnapshotError(InvalidArgument):
    """The file is not a tmem save file of this version, or it is damaged or truncated."""


@dataclass
class Report:
    """What a save or restore did."""

    name: str
    pages: int
    data_bytes: int  # page data as kept (compressed)
    file_bytes: int
    seconds: float

    def describe(self, verb: str) -> str:
        """One line for people: counts and throughput."""
        rate = self.pages / self.seconds if self.seconds else 0.0
        mb = self.file_bytes / self.seconds / 1e6 if self.seconds else 0.0
        return (
            f"{verb} client {self.name!r}: {self.pages} pages,"
            f" {self.data_bytes} bytes of page data, {self.file_bytes} bytes of file,"
            f" in {self.seconds:.3f} s"
            f" ({rate:.0f} pages/s, {mb:.1f} MB/s)"
        )


class _Writer:
    """A file that keeps the crc32 and size of what was written."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.crc, self.size = fh, 0, 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)


def save(source: Any, name: str, path: str | os.PathLike[str]) -> Report:
    """Write client ``name``'s persistent pools from ``source`` to ``path`` (atomically)."""
    start = time.perf_counter()
    header = source.export_begin(name, "skip")
    tmp = f"{os.fspath(path)}.part"
    records = pages = data_bytes = 0
    try:
        with open(tmp, "wb") as fh:
            out = _Writer(fh)
            raw = json.dumps(header, sort_keys=True).encode()
            out.write(_HEAD.pack(MAGIC, FORMAT_VERSION, len(raw)) + raw)
            out.write(_CRC.pack(zlib.crc32(raw)))
            while chunk := source.export_pages(name):
                for record in chunk:
                    out.write(encode_record(*record))
                    records += 1
                    if record[0] == RECORD_PAGE:
                        pages += 1
                        data_bytes += len(record[5])
            fh.write(_TRAILER.pack(END, records, pages, out.crc))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    finally:
        source.export_end(name)
    size = out.size + _TRAILER.size
    return Report(name, pages, data_bytes, size, time.perf_counter() - start)


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Record]]:
    """The header and records of a save file, every checksum checked; SnapshotError if bad."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise SnapshotError(f"cannot read {os.fspath(path)!r}: {exc}") from None
    where = os.fspath(path)
    if len(data) < _HEAD.size or data[:8] != MAGIC:
        raise SnapshotError(f"{where} is not a tmem save file")
    _, version, length = _HEAD.unpack_from(data)
    if version != FORMAT_VERSION:
        raise SnapshotError(f"{where} has format version {version}, not {FORMAT_VERSION}")
    body_end = len(data) - _TRAILER.size
    start = _HEAD.size + length + _CRC.size
    if body_end < start:
        raise SnapshotError(f"{where} is truncated")
    end, count, pages, crc = _TRAILER.unpack_from(data, body_end)
    if end != END:
        raise SnapshotError(f"{where} is truncated (no trailer)")
    if zlib.crc32(memoryview(data)[:body_end]) != crc:
        raise SnapshotError(f"{where} is damaged (file checksum mismatch)")
    raw = data[_HEAD.size : _HEAD.size + length]
    if zlib.crc32(raw) != _CRC.unpack_from(data, _HEAD.size + length)[0]:
        raise SnapshotError(f"{where} is damaged (header checksum mismatch)")
    try:
        header = json.loads(raw)
        records = list(decode_records(memoryview(data)[start:body_end]))
    except (ValueError, WireError) as exc:
        raise SnapshotError(f"{where} is damaged: {exc}") from None
    if len(records) != count or sum(r[0] == RECORD_PAGE for r in records) != pages:
        raise SnapshotError(f"{where} is damaged (record counts do not match)")
    return header, records


def restore(target: Any, path: str | os.PathLike[str], as_name: str | None = None) -> Report:
    """Bring the client saved in ``path`` into ``target``, parked until it connects.

    Nothing changes unless the whole file is sound and the target stores
    every page; otherwise the import is undone and the error raised.
    """
    start = time.perf_counter()
    header, records = read(path)
    name = as_name or header.get("name")
    if not isinstance(name, str) or not name:
        raise SnapshotError(f"{os.fspath(path)} names no client")
    header["name"] = name
    target.import_begin(header)
    try:
        for chunk in _chunks(records):
            result = target.import_pages(name, chunk)
            if result["refused"]:
                raise TmemError(
                    f"the host refused {result['refused']} page(s) of {name!r} (not enough room)"
                )
        target.import_end(name, commit=True)
    except BaseException:
        target.import_end(name, commit=False)
        raise
    pages = [r for r in records if r[0] == RECORD_PAGE]
    size = os.path.getsize(path)
    data_bytes = sum(len(r[5]) for r in pages)
    return Report(name, len(pages), data_bytes, size, time.perf_counter() - start)


def _chunks(records: list[Record]) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    size = 0
    for record in records:
        chunk.append(record)
        size += len(record[5]) + RECORD.size
        if size >= IMPORT_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
