"""``tmem mount``: a passthrough FUSE file system whose reads go through cleancache.

Design
------
:class:`CleanCacheFS` exposes a directory ``source`` at a mount point.  Every
file operation is passed to ``source`` (errors keep their errno); every read
and write of file data goes through one :class:`~tmem.frontends.CleanCache`
(a bounded private page cache whose victims go to the host's ephemeral pool,
misses to the file), so any program, in any language, re-reading a data set
larger than its own memory finds it in the tmem host instead of on disk.

* **Kernel page cache.** By default every file is opened with ``direct_io``
  (``FOPEN_DIRECT_IO``): the kernel keeps no page of the mounted file, every
  read reaches the daemon, and the only copies are the private cache, tmem and
  the source.  The source is read with ``os.pread`` followed by
  ``POSIX_FADV_DONTNEED`` on the range, so the source's own page cache does
  not hold a hidden third copy either (in both modes).  ``MAP_PRIVATE`` mmap (program text,
  ``mmap.ACCESS_COPY``) works in this mode; ``MAP_SHARED`` mmap needs the
  kernel's cache: with ``kernel_cache=True`` files are opened without
  ``direct_io`` (and without ``keep_cache``: the kernel drops the file's
  pages at each open), so shared mappings work and the kernel's page cache,
  charged to the reader's memory cgroup, sits in front of the private cache.
* **Coherency** is :class:`~tmem.frontends.CleanCache`'s: a file's handle is
  its device, inode, change time and size, checked with ``fstat`` before each
  read, so a file changed behind the mount's back is never served from an old
  page; writes, truncation, unlink and rename through the mount flush or update
  the pages they touch.  Attribute and entry timeouts are zero so that sizes
  seen through the mount follow the source.  With ``kernel_cache=True`` a
  file kept open across a change made behind the mount's back may still show
  the kernel's old pages until it is reopened.
* **Pools.** One ephemeral pool for the mounted file system (the device of
  ``source``); with ``shared_uuid`` the host's shared pool of that uuid, when
  the host has authorized this client.  Files on other devices below
  ``source`` use the private cache only.
* **Loss of the host** costs only hits: the cache goes on with the source,
  and the mount logs one warning.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import threading
import time
import uuid as _uuid
from dataclasses import dataclass
from typing import Any

from tmem.api import DEFAULT_PAGE_SIZE, Client
from tmem.errors import ConnectionLost, InvalidArgument, NoSuchPool, TmemError
from tmem.frontends.cleancache import CleanCache, FileRecord

log = logging.getLogger("tmem.mount")

# libfuse passes utimensat's special values in the nanoseconds of a zero second.
_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2
_DROP_WINDOW = 2 << 20

_STAT_FIELDS = (
    "st_mode",
    "st_ino",
    "st_dev",
    "st_nlink",
    "st_uid",
    "st_gid",
    "st_size",
    "st_blocks",
    "st_blksize",
    "st_rdev",
)
_TIME_FIELDS = ("st_atime_ns", "st_mtime_ns", "st_ctime_ns")
_STATVFS_FIELDS = (
    "f_bsize",
    "f_frsize",
    "f_blocks",
    "f_bfree",
    "f_bavail",
    "f_files",
    "f_ffree",
    "f_favail",
    "f_flag",
    "f_namemax",
)


class MountError(TmemError):
    """The file system could not be mounted (no FUSE, no libfuse, a bad mount point)."""

    code = 20


@dataclass(eq=False)
class OpenFile:
    """A file opened through the mount: the source's descriptor and the cache's record."""

    fd: int
    rec: FileRecord


class ReportingClient:
    """A client that logs, once, when its host goes away; every call is passed on."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._warned = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except (ConnectionLost, NoSuchPool) as exc:
                if not self._warned:
                    self._warned = True
                    log.warning("tmem host lost (%s): reads go on from the source only", exc)
                raise

        return call


class CleanCacheFS:
    """The operations of the passthrough file system (an ``mfusepy.Operations``).

    Paths are those under the mount point; each is resolved under ``source``.
    Methods raise ``OSError`` with the source's errno, which the FUSE layer
    hands to the caller.
    """

    use_ns = True

    def __init__(
        self,
        source: str | os.PathLike[str],
        cache: CleanCache,
        *,
        read_only: bool = False,
        kernel_cache: bool = False,
    ) -> None:
        self.source = os.path.realpath(source)
        self.cache = cache
        self.read_only = read_only
        self.kernel_cache = kernel_cache
        self._files: dict[int, OpenFile] = {}
        self._handles = itertools.count(1)
        self._lock = threading.Lock()
        self.mounted = False

    def init(self, path: str) -> None:
        """The kernel accepted the mount."""
        self.mounted = True
        log.info("mounted %s (tmem: %s)", self.source, self.cache.client is not None)

    def _path(self, path: str) -> str:
        return os.path.join(self.source, path.lstrip("/"))

    def _writable(self) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    # --- attributes and names ---------------------------------------------

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        """The source's ``lstat`` (or ``fstat`` of an open file)."""
        st = os.fstat(self._file(fh).fd) if fh is not None else os.lstat(self._path(path))
        out = {name: getattr(st, name) for name in _STAT_FIELDS}
        for name in _TIME_FIELDS:
            out[name[:-3]] = getattr(st, name)
        return out

    def access(self, path: str, amode: int) -> int:
        """``access`` on the source."""
        if amode & os.W_OK and self.read_only:
            self._writable()
        if not os.access(self._path(path), amode):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        return 0

    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        """The entries of a source directory (name, inode and type), with ``.`` and ``..``."""
        full = self._path(path)
        out = []
        for name in (".", ".."):
            st = os.lstat(os.path.join(full, name))
            out.append((name, {"st_mode": st.st_mode, "st_ino": st.st_ino}, 0))
        with os.scandir(full) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                out.append((entry.name, {"st_mode": st.st_mode, "st_ino": st.st_ino}, 0))
        return out

    def readlink(self, path: str) -> str:
        """The target of a source symlink."""
        return os.readlink(self._path(path))

    def statfs(self, path: str) -> dict[str, int]:
        """The source file system's ``statvfs``."""
        st = os.statvfs(self._path(path))
        return {name: getattr(st, name) for name in _STATVFS_FIELDS}

    def mknod(self, path: str, mode: int, dev: int) -> int:
        """``mknod`` in the source."""
        self._writable()
        os.mknod(self._path(path), mode, dev)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        """``mkdir`` in the source."""
        self._writable()
        os.mkdir(self._path(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        """``rmdir`` in the source."""
        self._writable()
        os.rmdir(self._path(path))
        return 0

    def symlink(self, target: str, source: str) -> int:
        """Make ``target`` (under the mount) a symlink holding ``source``."""
        self._writable()
        os.symlink(source, self._path(target))
        return 0

    def link(self, target: str, source: str) -> int:
        """Make ``target`` a hard link to ``source`` (both under the mount)."""
        self._writable()
        os.link(self._path(source), self._path(target))
        return 0

    def unlink(self, path: str) -> int:
        """Remove a file; its pages leave the private cache and tmem."""
        self._writable()
        self.cache.unlink(self._path(path))
        return 0

    def rename(self, old: str, new: str) -> int:
        """Rename within the source; a file that ``new`` replaces is flushed."""
        self._writable()
        self.cache.rename(self._path(old), self._path(new))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        """``chmod`` in the source."""
        self._writable()
        os.chmod(self._path(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        """``chown`` in the source (-1 leaves an id as it is)."""
        self._writable()
        os.lchown(self._path(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        """Set access and modification times (ns) in the source."""
        self._writable()
        full = self._path(path)
        if times is not None and (_UTIME_NOW in times or _UTIME_OMIT in times):
            st = os.lstat(full)
            now = time.time_ns()
            kept = (st.st_atime_ns, st.st_mtime_ns)
            a, m = (
                now if t == _UTIME_NOW else kept[i] if t == _UTIME_OMIT else t
                for i, t in enumerate(times)
            )
            times = (a, m)
        if times is None:  # os.utime refuses ns=None; no times means now
            os.utime(full, follow_symlinks=False)
        else:
            os.utime(full, ns=times, follow_symlinks=False)
        return 0

    # --- files ---------------------------------------------------------------

    def open(self, path: str, fi: Any) -> int:
        """Open the source file and attach it to the cache; set the kernel's caching flags."""
        flags = fi.flags
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            self._writable()
        self._open(self._path(path), flags, 0, fi)
        return 0

    def create(self, path: str, mode: int, fi: Any) -> int:
        """Create and open a source file."""
        self._writable()
        self._open(self._path(path), fi.flags | os.O_CREAT, mode, fi)
        return 0

    def _open(self, full: str, flags: int, mode: int, fi: Any) -> None:
        # The kernel gives every write its offset (appends included): the
        # source descriptor must not append on its own, or the cache and the
        # file would disagree about where the bytes went.
        flags &= ~(os.O_APPEND | getattr(os, "O_DIRECT", 0))
        fd = os.open(full, flags | os.O_CLOEXEC, mode)
        try:
            with self.cache.lock:
                rec = self.cache.attach(fd)
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            fh = next(self._handles)
            self._files[fh] = OpenFile(fd, rec)
        fi.fh = fh
        fi.direct_io = 0 if self.kernel_cache else 1
        fi.keep_cache = 0

    def _file(self, fi: Any) -> OpenFile:
        fh = fi if isinstance(fi, int) else fi.fh
        try:
            return self._files[fh]
        except KeyError:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from None

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        """Up to ``size`` bytes at ``offset``, through the private cache, tmem, the source."""
        f = self._file(fi)
        buf = bytearray(size)
        with self.cache.lock:
            n = self.cache.read(f.rec, f.fd, offset, memoryview(buf))
        if n:
            _drop_source_pages(f.fd, offset, n)
        return bytes(buf[:n])

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        """Write through to the source, keeping every cached page true."""
        self._writable()
        f = self._file(fi)
        with self.cache.lock:
            return self.cache.write(f.rec, f.fd, offset, memoryview(data))

    def truncate(self, path: str, length: int, fi: Any = None) -> int:
        """Cut or extend a file; pages past the new end are flushed."""
        self._writable()
        if fi is not None:
            f = self._file(fi)
            with self.cache.lock:
                self.cache.truncate(f.rec, f.fd, length)
            return 0
        fd = os.open(self._path(path), os.O_WRONLY | os.O_CLOEXEC)
        try:
            with self.cache.lock:
                rec = self.cache.attach(fd)
                try:
                    self.cache.truncate(rec, fd, length)
                finally:
                    self.cache.detach(rec, fd)
        finally:
            os.close(fd)
        return 0

    def flush(self, path: str, fi: Any) -> int:
        """Nothing is buffered: writes reached the source already."""
        self._file(fi)
        return 0

    def fsync(self, path: str, datasync: int, fi: Any) -> int:
        """``fsync`` (or ``fdatasync``) the source file."""
        fd = self._file(fi).fd
        if datasync:
            os.fdatasync(fd)
        else:
            os.fsync(fd)
        return 0

    def release(self, path: str, fi: Any) -> int:
        """Close the source file; a file with no name left is forgotten by the cache."""
        fh = fi if isinstance(fi, int) else fi.fh
        with self._lock:
            f = self._files.pop(fh, None)
        if f is None:
            return 0
        try:
            with self.cache.lock:
                self.cache.detach(f.rec, f.fd)
        finally:
            os.close(f.fd)
        return 0

    def destroy(self, path: str) -> None:
        """The file system is being unmounted: close what is open, destroy the pool."""
        with self._lock:
            files, self._files = self._files, {}
        for f in files.values():
            os.close(f.fd)
        self.cache.close()


def _drop_source_pages(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to drop the source's cached pages up to the end of a range just read.

    The range starts at the 2 MiB window below ``offset``: the kernel drops
    only folios that lie entirely inside the range, and a file written in
    large writes is cached in folios of up to 2 MiB, which are dropped by the
    read that reaches their end.  Pages read ahead past the range stay until
    they are read.
    """
    start = offset & ~(_DROP_WINDOW - 1)
    with contextlib.suppress(OSError):  # advice only: some file systems keep their pages
        os.posix_fadvise(fd, start, offset + length - start, os.POSIX_FADV_DONTNEED)


def check_mount_point(source: str, mountpoint: str) -> None:
    """Raise :class:`MountError` unless ``source`` and ``mountpoint`` are usable directories."""
    for name, path in (("SOURCE", source), ("MOUNTPOINT", mountpoint)):
        if not os.path.isdir(path):
            raise MountError(f"{name} {path!r} is not a directory")
    if not os.path.exists("/dev/fuse"):
        raise MountError("/dev/fuse is missing: this kernel or container offers no FUSE")
    real_src, real_mnt = os.path.realpath(source), os.path.realpath(mountpoint)
    if real_mnt == real_src or real_mnt.startswith(real_src.rstrip("/") + "/"):
        raise MountError("MOUNTPOINT must not be SOURCE or lie inside it")


def mount(
    source: str,
    mountpoint: str,
    client: Client | None,
    *,
    cache_size: int = 64 << 20,
    page_size: int = DEFAULT_PAGE_SIZE,
    read_only: bool = False,
    kernel_cache: bool = False,
    shared_uuid: _uuid.UUID | None = None,
    threads: bool = True,
    debug: bool = False,
) -> None:
    """Mount ``source`` at ``mountpoint`` and serve it until unmounted; blocks.

    ``cache_size`` bytes of private cache (at least one page) sit in front of
    ``client``'s ephemeral pool; ``client`` None means no tmem at all.  Returns
    when the file system is unmounted (``fusermount3 -u``, SIGTERM, SIGINT or
    SIGHUP).  Raises :class:`MountError` when it cannot mount.
    """
    if cache_size < page_size:
        raise InvalidArgument(f"cache size {cache_size} is smaller than one page ({page_size})")
    check_mount_point(source, mountpoint)
    try:
        fuse_class = _fuse_class()
    except (ImportError, OSError) as exc:  # mfusepy or libfuse3 missing
        raise MountError(f"FUSE is not available: {exc} (install fuse3 and mfusepy)") from None

    cache = CleanCache(
        ReportingClient(client) if client is not None else None,  # type: ignore[arg-type]
        cache_pages=cache_size // page_size,
        page_size=page_size,
    )
    shared = cache.enable(source, shared_uuid=shared_uuid)
    if shared_uuid is not None and not shared:
        log.warning("the host did not authorize shared pool %s: using a private pool", shared_uuid)
    fs = CleanCacheFS(source, cache, read_only=read_only, kernel_cache=kernel_cache)
    options: dict[str, Any] = {
        "fsname": "tmem:" + os.path.realpath(source),
        "subtype": "tmem",
        "default_permissions": True,
        "use_ino": True,
        "attr_timeout": 0,
        "entry_timeout": 0,
        "negative_timeout": 0,
    }
    if read_only:
        options["ro"] = True
    try:
        fuse_class(
            fs,
            mountpoint,
            raw_fi=True,
            foreground=True,
            nothreads=not threads,
            debug=debug,
            **options,
        )
    except RuntimeError as exc:
        # libfuse's loop ends with status 8 when a signal stopped it (SIGTERM,
        # SIGINT, SIGHUP); it has unmounted by then, which is a clean end.
        if fs.mounted and exc.args == (8,):
            return
        raise MountError(f"cannot mount {source!r} at {mountpoint!r}: libfuse said {exc}") from None
    finally:
        cache.close()


def _fuse_class() -> Any:
    import mfusepy  # type: ignore[import-untyped]

    class FUSE(mfusepy.FUSE):  # type: ignore[misc]
        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            # renameat2's RENAME_NOREPLACE / RENAME_EXCHANGE cannot be passed
            # on atomically: refuse them rather than drop them.
            if flags:
                return -errno.EINVAL
            return int(self.rename_fuse_2(old, new))

    return FUSE
