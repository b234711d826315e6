"""Pages of every kind a store must round-trip, built from real files where it can."""

from __future__ import annotations

import random
import typing
from pathlib import Path

import zstandard.backend_c

from tmem.store.codecs import Codecs, codec_id

# Python source, from the standard library: a file this project edits would change what
# the tests store (engine/core.py did, until a signature change moved a margin).
_TEXT = Path(typing.__file__).read_bytes()
_BINARY = Path(zstandard.backend_c.__file__).read_bytes()[1 << 20 : 2 << 20]  # machine code


def _slice(source: bytes, size: int, seed: int) -> bytes:
    start = random.Random(seed).randrange(0, len(source) - size)
    return source[start : start + size]


def page_of(kind: str, size: int = 4096, seed: int = 0) -> bytes:
    """A page of ``kind``: zeros, byte, word, text, binary, half (random + zeros) or random."""
    rng = random.Random(f"{kind}{seed}")
    if kind == "zeros":
        return bytes(size)
    if kind == "byte":
        return bytes([rng.randrange(1, 256)]) * size
    if kind == "word":  # one 8-byte word repeated: same-filled, but not one byte
        return rng.randbytes(8) * (size // 8)
    if kind == "text":
        return (_TEXT * (size // len(_TEXT) + 2))[seed % 997 :][:size]
    if kind == "binary":
        return _slice(_BINARY, size, seed)
    if kind == "half":
        return rng.randbytes(size // 2) + bytes(size - size // 2)
    if kind == "random":
        return rng.randbytes(size)
    raise ValueError(kind)


KINDS = ("zeros", "byte", "word", "text", "binary", "half", "random")
SAME_FILLED = ("zeros", "byte", "word")


def compressed_size(compress: str, data: bytes) -> int:
    """What ``compress`` makes of ``data`` (the store's codec, as a reference)."""
    return len(Codecs().compress[codec_id(compress)](data))
