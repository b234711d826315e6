"""A fixed-size bitmap, one bit per swap slot, that keeps count of its set bits."""

from __future__ import annotations

from collections.abc import Iterator


class Bitmap:
    """``size`` bits, all clear at first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self._bits = bytearray((size + 7) // 8)

    def __getitem__(self, i: int) -> bool:
        return bool(self._bits[i >> 3] >> (i & 7) & 1)

    def set(self, i: int) -> None:
        """Set bit ``i``."""
        mask = 1 << (i & 7)
        if not self._bits[i >> 3] & mask:
            self._bits[i >> 3] |= mask
            self.count += 1

    def clear(self, i: int) -> None:
        """Clear bit ``i``."""
        mask = 1 << (i & 7)
        if self._bits[i >> 3] & mask:
            self._bits[i >> 3] &= ~mask & 0xFF
            self.count -= 1

    def clear_all(self) -> None:
        """Clear every bit."""
        self._bits[:] = bytes(len(self._bits))
        self.count = 0

    def iter_set(self) -> Iterator[int]:
        """The set bits, in order (do not change the bitmap while iterating)."""
        bits = self._bits
        byte = 0
        while True:
            byte = _next_nonzero(bits, byte)
            if byte < 0:
                return
            value = bits[byte]
            for bit in range(8):
                if value >> bit & 1:
                    yield byte * 8 + bit
            byte += 1

    def next_set(self, start: int) -> int:
        """The first set bit at or after ``start``, wrapping around; -1 if none is set."""
        if not self.count:
            return -1
        bits = self._bits
        byte = start >> 3
        value = bits[byte] >> (start & 7) if byte < len(bits) else 0
        if value:
            return start + (value & -value).bit_length() - 1
        nxt = _next_nonzero(bits, byte + 1)
        if nxt < 0:
            nxt = _next_nonzero(bits, 0)
        value = bits[nxt]
        return nxt * 8 + (value & -value).bit_length() - 1


def _next_nonzero(bits: bytearray, start: int) -> int:
    """Index of the first non-zero byte at or after ``start``, or -1."""
    n = len(bits)
    # Scan in 4 KiB chunks so a sparse bitmap is skipped at C speed.
    while start < n:
        chunk = bits[start : start + 4096]
        stripped = chunk.lstrip(b"\0")
        if stripped:
            return start + len(chunk) - len(stripped)
        start += 4096
    return -1
