"""The file object :meth:`CleanCache.open` returns: unbuffered, every byte through the cache."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

from tmem.errors import InvalidArgument

if TYPE_CHECKING:
    from tmem.frontends.cleancache import CleanCache, FileRecord

_BASE_FLAGS = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
}


def open_flags(mode: str) -> int:
    """The ``os.open`` flags of a binary file mode, or InvalidArgument for any other mode."""
    if not isinstance(mode, str):
        raise InvalidArgument(f"file mode must be a string, not {mode!r}")
    letters = set(mode)
    kinds = letters & set(_BASE_FLAGS)
    if (
        len(kinds) != 1
        or "b" not in letters
        or not letters <= set("rwaxb+")
        or len(mode) != len(letters)
    ):
        raise InvalidArgument(f"file mode {mode!r} is not a binary mode like 'rb', 'r+b', 'wb'")
    flags = _BASE_FLAGS[kinds.pop()]
    if "+" in letters:
        flags = (flags & ~(os.O_RDONLY | os.O_WRONLY)) | os.O_RDWR
    return flags | getattr(os, "O_CLOEXEC", 0)


class CachedFile(io.RawIOBase):
    """A binary file read and written through a :class:`CleanCache`.

    Offers ``read``, ``readinto``, ``readline``, ``seek``, ``tell``, ``write``,
    ``truncate`` and ``close``, and is a context manager.  Reads are served from
    the private cache, then tmem, then the disk; writes go through to the file.
    """

    def __init__(self, cache: CleanCache, path: str | os.PathLike[str], mode: str) -> None:
        super().__init__()
        self._fd = -1
        self._rec: FileRecord | None = None
        flags = open_flags(mode)
        self._cache = cache
        self.name = os.fspath(path)
        self.mode = mode
        self._append = bool(flags & os.O_APPEND)
        self._readable = "r" in mode or "+" in mode
        self._writable = "r" not in mode or "+" in mode
        self._pos = 0
        self._fd = os.open(path, flags, 0o666)
        try:
            with cache.lock:
                self._rec = cache.attach(self._fd)
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    def readable(self) -> bool:
        """True if the file was opened for reading."""
        return self._readable

    def writable(self) -> bool:
        """True if the file was opened for writing."""
        return self._writable

    def seekable(self) -> bool:
        """Always True."""
        return True

    def fileno(self) -> int:
        """The underlying descriptor (writing through it bypasses the cache's coherency)."""
        self._check_closed()
        return self._fd

    def readinto(self, buffer: Any) -> int:
        """Read up to ``len(buffer)`` bytes at the position into ``buffer``; 0 at end of file."""
        self._check_closed()
        if not self._readable:
            raise io.UnsupportedOperation("file not open for reading")
        out = memoryview(buffer).cast("B")
        with self._cache.lock:
            n = self._cache.read(self._record(), self._fd, self._pos, out)
        self._pos += n
        return n

    def readall(self) -> bytes:
        """Read from the position to the end of the file."""
        self._check_closed()
        with self._cache.lock:
            size = self._cache.validate(self._record(), self._fd)
            buf = bytearray(max(0, size - self._pos))
            n = self.readinto(buf)
        return bytes(buf[:n])

    def write(self, data: Any) -> int:
        """Write ``data`` at the position (at the end in append mode); return its length."""
        self._check_closed()
        if not self._writable:
            raise io.UnsupportedOperation("file not open for writing")
        view = memoryview(data).cast("B")
        with self._cache.lock:
            if self._append:
                self._pos = self._cache.validate(self._record(), self._fd)
            n = self._cache.write(self._record(), self._fd, self._pos, view)
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position; return the new one."""
        self._check_closed()
        if whence == os.SEEK_SET:
            base = 0
        elif whence == os.SEEK_CUR:
            base = self._pos
        elif whence == os.SEEK_END:
            with self._cache.lock:
                base = self._cache.validate(self._record(), self._fd)
        else:
            raise InvalidArgument(f"invalid whence {whence!r}")
        if base + offset < 0:
            raise InvalidArgument(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        """The position."""
        self._check_closed()
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        """Cut or extend the file to ``size`` bytes (default: the position); return it."""
        self._check_closed()
        if not self._writable:
            raise io.UnsupportedOperation("file not open for writing")
        size = self._pos if size is None else size
        if size < 0:
            raise InvalidArgument(f"negative size {size}")
        with self._cache.lock:
            self._cache.truncate(self._record(), self._fd, size)
        return size

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self.closed:
            return
        try:
            if self._rec is not None:
                with self._cache.lock:
                    self._cache.detach(self._rec, self._fd)
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            super().close()

    def _record(self) -> FileRecord:
        """The file's record in the cache (there is one while the file is open)."""
        assert self._rec is not None
        return self._rec

    def _check_closed(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def __repr__(self) -> str:
        return f"<tmem CachedFile {self.name!r} mode={self.mode!r}>"
