"""userfaultfd(2) through ctypes: create, register, resolve faults, write-protect, poison.

Only what :class:`tmem.frontends.SwapMemory` needs, with the kernel's names.
Every call raises ``OSError`` with the kernel's errno.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]

SYS_userfaultfd = 323  # x86-64
UFFD_USER_MODE_ONLY = 1
UFFD_API = 0xAA

FEATURE_PAGEFAULT_FLAG_WP = 1 << 0
FEATURE_MISSING_SHMEM = 1 << 5
FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12
FEATURE_POISON = 1 << 14

REGISTER_MODE_MISSING = 1
REGISTER_MODE_WP = 2
COPY_MODE_DONTWAKE = 1
COPY_MODE_WP = 2
WRITEPROTECT_MODE_WP = 1
WRITEPROTECT_MODE_DONTWAKE = 2

EVENT_PAGEFAULT = 0x12
PAGEFAULT_FLAG_WRITE = 1
PAGEFAULT_FLAG_WP = 2
MSG_SIZE = 32

FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | UFFD_API << 8 | nr


UFFDIO_API = _ioc(3, 0x3F, 24)
UFFDIO_REGISTER = _ioc(3, 0x00, 32)
UFFDIO_WAKE = _ioc(2, 0x02, 16)
UFFDIO_COPY = _ioc(3, 0x03, 40)
UFFDIO_WRITEPROTECT = _ioc(3, 0x06, 24)
UFFDIO_POISON = _ioc(3, 0x08, 32)
USERFAULTFD_IOC_NEW = 0xAA00  # _IO(0xAA, 0x00) on /dev/userfaultfd

#: The features SwapMemory asks for.
FEATURES = (
    FEATURE_PAGEFAULT_FLAG_WP | FEATURE_MISSING_SHMEM | FEATURE_WP_HUGETLBFS_SHMEM | FEATURE_POISON
)


class Unavailable(OSError):
    """userfaultfd cannot be had here; the message says what is missing."""


def open_uffd(user_mode_only: bool = False) -> tuple[int, bool]:
    """A new userfaultfd (close-on-exec, non-blocking) and whether it is user-mode only.

    Tries the system call with full rights, then ``/dev/userfaultfd``, then the
    system call in user-mode-only mode (at once if ``user_mode_only``); raises
    :class:`Unavailable` naming what the kernel or the permissions refused.
    """
    flags = os.O_CLOEXEC | os.O_NONBLOCK
    if user_mode_only:
        fd = _libc.syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY)
        if fd >= 0:
            return fd, True
        err = ctypes.get_errno()
        raise Unavailable(err, f"user-mode-only userfaultfd refused: {os.strerror(err)}")
    fd = _libc.syscall(SYS_userfaultfd, flags)
    if fd >= 0:
        return fd, False
    first = ctypes.get_errno()
    if first == errno.ENOSYS:
        raise Unavailable(errno.ENOSYS, "this kernel has no userfaultfd (CONFIG_USERFAULTFD)")
    try:
        dev = os.open("/dev/userfaultfd", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        dev_error: OSError | None = exc
    else:
        dev_error = None
        try:
            fd = fcntl.ioctl(dev, USERFAULTFD_IOC_NEW, flags)
            return fd, False
        except OSError as exc:
            dev_error = exc
        finally:
            os.close(dev)
    fd = _libc.syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY)
    if fd >= 0:
        return fd, True
    raise Unavailable(
        first,
        "userfaultfd refused: the system call said "
        f"{os.strerror(first)} (vm.unprivileged_userfaultfd is 0 and this process lacks "
        f"CAP_SYS_PTRACE), /dev/userfaultfd said {dev_error}, and user-mode-only mode said "
        f"{os.strerror(ctypes.get_errno())}",
    )


def api(fd: int, features: int) -> int:
    """Handshake; return the features the kernel granted (all of ``features`` or Unavailable)."""
    buf = bytearray(struct.pack("QQQ", UFFD_API, features, 0))
    fcntl.ioctl(fd, UFFDIO_API, buf)
    granted = struct.unpack("QQQ", buf)[1]
    if granted & features != features:
        raise Unavailable(
            errno.EINVAL,
            f"this kernel's userfaultfd lacks features {features & ~granted:#x} "
            "(shared-memory missing faults, write-protection, poison: Linux 6.6 or later)",
        )
    return int(granted)


def register(fd: int, start: int, length: int, mode: int) -> None:
    """Register ``[start, start + length)`` for the faults of ``mode``."""
    buf = bytearray(struct.pack("QQQQ", start, length, mode, 0))
    fcntl.ioctl(fd, UFFDIO_REGISTER, buf)


def copy(fd: int, dst: int, src: int, length: int, mode: int) -> bool:
    """Fill missing pages at ``dst`` from ``src``; False if they were already there."""
    buf = bytearray(struct.pack("QQQQq", dst, src, length, mode, 0))
    try:
        fcntl.ioctl(fd, UFFDIO_COPY, buf)
    except FileExistsError:
        return False
    return True


def wake(fd: int, start: int, length: int) -> None:
    """Wake the threads waiting on faults in the range."""
    fcntl.ioctl(fd, UFFDIO_WAKE, bytearray(struct.pack("QQ", start, length)))


def writeprotect(fd: int, start: int, length: int, mode: int) -> None:
    """Write-protect (``WRITEPROTECT_MODE_WP``) or unprotect (0, waking writers) a range."""
    fcntl.ioctl(fd, UFFDIO_WRITEPROTECT, bytearray(struct.pack("QQQ", start, length, mode)))


def poison(fd: int, start: int, length: int) -> None:
    """Make the range's pages raise SIGBUS when touched (the page is lost)."""
    fcntl.ioctl(fd, UFFDIO_POISON, bytearray(struct.pack("QQQq", start, length, 0, 0)))


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Free a range of a memory file (its pages leave every mapping)."""
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def parse_fault(msg: bytes) -> tuple[int, int] | None:
    """(flags, address) of a page-fault message; None for any other event."""
    event = msg[0]
    if event != EVENT_PAGEFAULT:
        return None
    flags, address = struct.unpack_from("QQ", msg, 8)
    return flags, address


def address_of(buffer: object) -> int:
    """The address of a writable buffer (an ``mmap``)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))  # type: ignore[arg-type]
