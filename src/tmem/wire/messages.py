"""Messages: the opcodes and the layout of each request and reply body.

Requests and replies share the frame header of :mod:`tmem.wire.frames`; a
reply carries its request's op and tag.  All integers are little-endian; an
object id is 24 bytes (192 bits), a uuid 16.  Every ``decode_*`` function
checks lengths and ranges and raises only :class:`WireError`.
"""

from __future__ import annotations

import json
import struct
import uuid as _uuid
from enum import IntEnum
from typing import Any, Final

from tmem.wire.frames import HEADER, WireError, encode_frame, frame_head

#: Protocol version, exchanged in the hello; a daemon refuses other versions.
VERSION = 1
MAGIC = b"TMEM"


class Op(IntEnum):
    """Operation codes; ops from 16 up are administrative."""

    HELLO = 1
    NEW_POOL = 2
    DESTROY_POOL = 3
    PUT = 4
    GET = 5
    FLUSH_PAGE = 6
    FLUSH_OBJECT = 7
    STATS = 8
    PUT_PAGES = 9
    GET_PAGES = 10
    BYE = 11
    AUTHORIZE_SHARED = 16
    REVOKE_SHARED = 17
    SET_CAPACITY = 18
    SET_CLIENT = 19
    HOST_STATS = 20
    RELOAD = 21
    TRANSFER = 22
    EXPORT_PAGES = 23
    IMPORT_PAGES = 24


#: Ops only an administrative connection may send.
ADMIN_OPS = frozenset(op for op in Op if op >= 16)
ROLE_CLIENT = 0
ROLE_ADMIN = 1
#: Per-item results in a batch reply; an error is ``ITEM_ERROR | status code``.
ITEM_NO: Final = 0
ITEM_YES: Final = 1
ITEM_ERROR: Final = 0x80

HELLO = struct.Struct("<4sHBBH")  # magic, version, role, name length, token length
#: The longest token a hello may carry, and so the longest hello body: before
#: its hello a connection's frames are refused at the header beyond this.
MAX_TOKEN = 1024
MAX_HELLO_BODY = HELLO.size + 255 + MAX_TOKEN
HELLO_REPLY = struct.Struct("<HIB")  # version, max body, name length
HANDLE = struct.Struct("<I24sI")  # pool, oid, index
OBJECT = struct.Struct("<I24s")  # pool, oid
POOL = struct.Struct("<I")
NEW_POOL = struct.Struct("<BI16s")  # flags, page size, uuid
BATCH = struct.Struct("<III")  # pool, count, page size (0 for gets)
ITEM = struct.Struct("<24sI")  # oid, index
#: A batch item read as integers: the object id's three 64-bit words, then the index.
_ITEM_WORDS = struct.Struct("<QQQI")
#: A batch item's integers at an offset of a frame, and over a run of items: for the
#: readers that take items straight from the frame, with no tuple per item made
#: first (the embedded host's packed batches, :meth:`tmem.host.HostClient.put_packed`).
unpack_item: Final = _ITEM_WORDS.unpack_from
iter_items: Final = _ITEM_WORDS.iter_unpack
ITEM_SIZE: Final = 28  # ITEM.size, a constant the compiled module inlines
#: Object ids below this are packed as one word and two zeros (no 24-byte string made).
_U64: Final = 1 << 64
MESSAGE = struct.Struct("<I")  # length of a batch reply's error message
PERSISTENT, SHARED, HAS_UUID = 1, 2, 4
#: An error reply's message is cut to this many bytes.
MAX_ERROR_MESSAGE = 4096
_OID_BYTES = 24
# plain ints: an IntEnum member costs a lookup and a conversion on every call
_PUT, _PUT_PAGES, _GET_PAGES = int(Op.PUT), int(Op.PUT_PAGES), int(Op.GET_PAGES)
_YES, _NO = bytes([ITEM_YES]), bytes([ITEM_NO])


def oid_bytes(oid: int) -> bytes:
    """The 24-byte form of an object id in [0, 2**192)."""
    return oid.to_bytes(_OID_BYTES, "little")


def _text(raw: bytes | memoryview, what: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"{what} is not UTF-8") from None


def _exact(body: memoryview, size: int, what: str) -> None:
    if len(body) != size:
        raise WireError(f"{what} body is {len(body)} bytes, not {size}")


# --- replies -----------------------------------------------------------------


def encode_reply(op: int, tag: int, body: bytes) -> bytes:
    """A successful reply frame: the request's op and tag, then ``body``."""
    return encode_frame(op, body, 0, tag)


def encode_reply_parts(op: int, tag: int, parts: list[Any]) -> list[Any]:
    """A successful reply frame as parts to send in order (the body's parts are not joined)."""
    return [frame_head(op, sum(map(len, parts)), 0, tag), *parts]


def encode_error(op: int, tag: int, code: int, message: str) -> bytes:
    """An error reply frame: status ``code`` and the message, cut to MAX_ERROR_MESSAGE bytes."""
    body = message.encode("utf-8", "replace")[:MAX_ERROR_MESSAGE]
    return HEADER.pack(op & 0xFF, code, tag, len(body)) + body


def decode_error(body: memoryview) -> str:
    """The message of an error reply (bytes that are not UTF-8 are replaced)."""
    return bytes(body).decode("utf-8", "replace")


def encode_answer(yes: bool) -> bytes:
    """The body of a PUT reply: stored or refused."""
    return _YES if yes else _NO


def decode_answer(body: memoryview) -> bool:
    """Whether a PUT reply says the page was stored."""
    if len(body) != 1 or body[0] > ITEM_YES:
        raise WireError(f"a put reply is one byte, 0 or 1, not {bytes(body[:8])!r}")
    return body[0] == ITEM_YES


# --- hello -----------------------------------------------------------------


def encode_hello(name: str, role: int = ROLE_CLIENT, token: str = "") -> bytes:
    """The first frame a client sends: magic, version, role, name and token."""
    raw_name, raw_token = name.encode(), token.encode()
    if len(raw_name) > 255 or len(raw_token) > MAX_TOKEN:
        raise WireError("client name or token too long")
    body = HELLO.pack(MAGIC, VERSION, role, len(raw_name), len(raw_token))
    body += raw_name + raw_token
    return HEADER.pack(Op.HELLO, 0, 0, len(body)) + body


def decode_hello(body: memoryview) -> tuple[int, int, str, str]:
    """``(version, role, name, token)`` of a hello body."""
    if len(body) < HELLO.size:
        raise WireError("hello too short")
    magic, version, role, name_len, token_len = HELLO.unpack_from(body)
    if magic != MAGIC:
        raise WireError("not a tmem hello")
    if token_len > MAX_TOKEN:
        raise WireError(f"token longer than {MAX_TOKEN} bytes")
    _exact(body, HELLO.size + name_len + token_len, "hello")
    if role not in (ROLE_CLIENT, ROLE_ADMIN):
        raise WireError(f"unknown role {role}")
    name = _text(body[HELLO.size : HELLO.size + name_len], "client name")
    token = _text(body[HELLO.size + name_len :], "token")
    return version, role, name, token


def encode_hello_reply(name: str, max_body: int) -> bytes:
    """The body of the daemon's answer to a hello: version, limits, registered name."""
    raw = name.encode()
    return HELLO_REPLY.pack(VERSION, max_body, len(raw)) + raw


def decode_hello_reply(body: memoryview) -> tuple[int, int, str]:
    """``(version, max_body, name)`` of a hello reply body."""
    if len(body) < HELLO_REPLY.size:
        raise WireError("hello reply too short")
    version, max_body, name_len = HELLO_REPLY.unpack_from(body)
    _exact(body, HELLO_REPLY.size + name_len, "hello reply")
    return version, max_body, _text(body[HELLO_REPLY.size :], "client name")


# --- pools -----------------------------------------------------------------


def encode_new_pool(
    persistent: bool, shared: bool, uuid: _uuid.UUID | None, page_size: int
) -> bytes:
    """A NEW_POOL request frame."""
    flags = (PERSISTENT if persistent else 0) | (SHARED if shared else 0)
    raw = b"\0" * 16
    if uuid is not None:
        flags |= HAS_UUID
        raw = uuid.bytes
    return HEADER.pack(Op.NEW_POOL, 0, 0, NEW_POOL.size) + NEW_POOL.pack(flags, page_size, raw)


def decode_new_pool(body: memoryview) -> tuple[bool, bool, _uuid.UUID | None, int]:
    """``(persistent, shared, uuid, page_size)`` of a NEW_POOL body."""
    _exact(body, NEW_POOL.size, "new-pool")
    flags, page_size, raw = NEW_POOL.unpack(body)
    if flags & ~(PERSISTENT | SHARED | HAS_UUID):
        raise WireError(f"unknown pool flags {flags:#x}")
    uuid = _uuid.UUID(bytes=raw) if flags & HAS_UUID else None
    return bool(flags & PERSISTENT), bool(flags & SHARED), uuid, page_size


def encode_pool_op(op: int, pool: int) -> bytes:
    """A request whose body is one pool id (DESTROY_POOL)."""
    return HEADER.pack(op, 0, 0, 4) + POOL.pack(pool)


def decode_pool(body: memoryview) -> int:
    """The pool id of a DESTROY_POOL body, or of a NEW_POOL reply."""
    _exact(body, POOL.size, "pool")
    pool: int = POOL.unpack(body)[0]
    return pool


# --- single pages ----------------------------------------------------------

#: Header and handle of a PUT, GET or FLUSH_PAGE frame, packed in one go.
_HANDLE_FRAME: Final = struct.Struct("<BBHII24sI")
_OBJECT_FRAME = struct.Struct("<BBHII24s")
#: The same with the object id as three 64-bit words: an id below 2**64 is packed as
#: it is, with no 24-byte string made for it.
_HANDLE_FRAME_WORDS: Final = struct.Struct("<BBHIIQQQI")
_pack_handle_frame: Final = _HANDLE_FRAME_WORDS.pack


def handle_frame(op: int, length: int, pool: int, oid: int, index: int) -> bytes:
    """A frame header of ``length`` bytes of body, followed by a handle: a whole GET or
    FLUSH_PAGE frame (``length`` = HANDLE.size), or a PUT's up to its page."""
    if oid < _U64:  # the usual case
        return _pack_handle_frame(op, 0, 0, length, pool, oid, 0, 0, index)
    return _HANDLE_FRAME.pack(op, 0, 0, length, pool, oid_bytes(oid), index)


def encode_put(pool: int, oid: int, index: int, data: bytes | memoryview) -> bytes:
    """A PUT request frame: handle then the page."""
    return encode_put_head(pool, oid, index, len(data)) + data


def encode_put_head(pool: int, oid: int, index: int, length: int) -> bytes:
    """A PUT request frame up to its page of ``length`` bytes (sent after it, not joined)."""
    return handle_frame(_PUT, HANDLE.size + length, pool, oid, index)


def encode_handle_op(op: int, pool: int, oid: int, index: int) -> bytes:
    """A GET or FLUSH_PAGE request frame."""
    return handle_frame(op, HANDLE.size, pool, oid, index)


def encode_flush_object(pool: int, oid: int) -> bytes:
    """A FLUSH_OBJECT request frame."""
    return _OBJECT_FRAME.pack(Op.FLUSH_OBJECT, 0, 0, OBJECT.size, pool, oid_bytes(oid))


#: A handle read as integers: pool, the object id's three 64-bit words (least
#: significant first), index; no 24-byte string is made for the usual small id.
_HANDLE_WORDS: Final = struct.Struct("<IQQQI")
_unpack_handle: Final = _HANDLE_WORDS.unpack_from
_HANDLE_BYTES: Final = 32  # HANDLE.size, a constant the compiled module inlines


def decode_put(body: memoryview) -> tuple[int, int, int, memoryview]:
    """``(pool, oid, index, data)`` of a PUT body; ``data`` is a view into it."""
    try:
        pool, low, mid, high, index = _unpack_handle(body)
    except struct.error:
        raise WireError("put shorter than a handle") from None
    oid = low | mid << 64 | high << 128 if mid or high else low
    return pool, oid, index, body[_HANDLE_BYTES:]


def decode_handle(body: memoryview) -> tuple[int, int, int]:
    """``(pool, oid, index)`` of a GET or FLUSH_PAGE body."""
    try:
        pool, low, mid, high, index = _HANDLE_WORDS.unpack(body)
    except struct.error:
        raise WireError(f"handle body is {len(body)} bytes, not {HANDLE.size}") from None
    return pool, low | mid << 64 | high << 128 if mid or high else low, index


def decode_object(body: memoryview) -> tuple[int, int]:
    """``(pool, oid)`` of a FLUSH_OBJECT body."""
    _exact(body, OBJECT.size, "flush-object")
    pool, oid = OBJECT.unpack(body)
    return pool, int.from_bytes(oid, "little")


# --- batches ---------------------------------------------------------------


def encode_put_pages(pool: int, page_size: int, pages: list[tuple[int, int, Any]]) -> list[Any]:
    """A PUT_PAGES frame as parts to send gathered, in order: the headers, then each
    ``(oid, index, data)`` item's handle and its page (``page_size`` bytes, not copied)."""
    pack, words, parts = ITEM.pack, _ITEM_WORDS.pack, [b""]
    for oid, index, data in pages:
        if len(data) != page_size:
            raise WireError("a page in the batch is not page_size long")
        parts.append(words(oid, 0, 0, index) if oid < _U64 else pack(oid_bytes(oid), index))
        parts.append(data)
    body_len = BATCH.size + len(pages) * (ITEM.size + page_size)
    parts[0] = frame_head(_PUT_PAGES, body_len) + BATCH.pack(pool, len(pages), page_size)
    return parts


def batch_head(body: memoryview) -> tuple[int, int, int]:
    """``(pool, count, page_size)`` of a PUT_PAGES or GET_PAGES body, read from its
    header alone, so that a batch can be refused before its items are decoded."""
    if len(body) < BATCH.size:
        raise WireError("batch too short")
    pool, count, page_size = BATCH.unpack_from(body)
    return pool, count, page_size


def check_put_pages_length(body: memoryview) -> tuple[int, int, int]:
    """The :func:`batch_head` of a PUT_PAGES body whose length matches it, else WireError."""
    pool, count, page_size = batch_head(body)
    _exact(body, BATCH.size + count * (ITEM.size + page_size), "put-pages")
    return pool, count, page_size


def check_get_pages_length(body: memoryview) -> tuple[int, int]:
    """``(pool, count)`` of a GET_PAGES body whose length matches its header, else WireError."""
    pool, count, page_size = batch_head(body)
    if page_size:
        raise WireError("get-pages carries no page size")
    _exact(body, BATCH.size + count * ITEM.size, "get-pages")
    return pool, count


def decode_put_pages(body: memoryview) -> tuple[int, list[tuple[int, int, memoryview]]]:
    """``(pool, [(oid, index, data), ...])`` of a PUT_PAGES body (views into it)."""
    pool, count, page_size = check_put_pages_length(body)
    return pool, put_pages_items(body, page_size, 0, count)


def put_pages_items(
    body: memoryview, page_size: int, first: int, last: int
) -> list[tuple[int, int, memoryview]]:
    """Items ``first`` up to ``last`` of a PUT_PAGES body whose length was checked
    (:func:`check_put_pages_length`), as :func:`decode_put_pages` gives them."""
    step = ITEM.size + page_size
    unpack, size = _ITEM_WORDS.unpack_from, ITEM.size
    items: list[tuple[int, int, memoryview]] = []
    append = items.append
    for pos in range(BATCH.size + first * step, BATCH.size + last * step, step):
        low, mid, high, index = unpack(body, pos)
        oid = low | mid << 64 | high << 128 if mid or high else low
        append((oid, index, body[pos + size : pos + step]))
    return items


def encode_get_pages(pool: int, handles: list[tuple[int, int]]) -> bytes:
    """A GET_PAGES frame for ``(oid, index)`` handles."""
    pack, words = ITEM.pack, _ITEM_WORDS.pack
    items = [
        words(oid, 0, 0, index) if oid < _U64 else pack(oid_bytes(oid), index)
        for oid, index in handles
    ]
    body_len = BATCH.size + len(items) * ITEM.size
    head = frame_head(_GET_PAGES, body_len) + BATCH.pack(pool, len(items), 0)
    return head + b"".join(items)


def decode_get_pages(body: memoryview) -> tuple[int, list[tuple[int, int]]]:
    """``(pool, [(oid, index), ...])`` of a GET_PAGES body."""
    pool, count = check_get_pages_length(body)
    return pool, get_pages_items(body, 0, count)


def get_pages_items(body: memoryview, first: int, last: int) -> list[tuple[int, int]]:
    """Handles ``first`` up to ``last`` of a GET_PAGES body whose length was checked
    (:func:`check_get_pages_length`), as :func:`decode_get_pages` gives them."""
    items = body[BATCH.size + first * ITEM.size : BATCH.size + last * ITEM.size]
    return [
        (low | mid << 64 | high << 128 if mid or high else low, index)
        for low, mid, high, index in _ITEM_WORDS.iter_unpack(items)
    ]


def encode_batch_reply(results: bytes | bytearray, message: str, pages: list[bytes]) -> list[Any]:
    """A batch reply body, as parts: one result byte per item, the first error's
    message, then the data of every hit."""
    raw = message.encode()
    return [bytes(results), MESSAGE.pack(len(raw)), raw, *pages]


def decode_batch_reply(body: memoryview, count: int) -> tuple[bytes, str, memoryview]:
    """``(results, message, data)`` of a batch reply of ``count`` items."""
    if len(body) < count + MESSAGE.size:
        raise WireError("batch reply too short")
    results = bytes(body[:count])
    (msg_len,) = MESSAGE.unpack_from(body, count)
    start = count + MESSAGE.size + msg_len
    if start > len(body):
        raise WireError("batch reply message overruns the frame")
    return results, _text(body[count + MESSAGE.size : start], "message"), body[start:]


# --- administration and statistics ---------------------------------------


def encode_json_op(op: int, args: Any) -> bytes:
    """A request (administration, statistics) whose body is a JSON document."""
    body = json.dumps(args, separators=(",", ":")).encode() if args is not None else b""
    return HEADER.pack(op, 0, 0, len(body)) + body


def decode_json(body: memoryview) -> Any:
    """The JSON document of a body (None for an empty body)."""
    if not body:
        return None
    try:
        return json.loads(bytes(body))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WireError("body is not a JSON document") from None


def decode_empty(body: memoryview, what: str) -> None:
    """Check that a request that carries no arguments (BYE) has an empty body."""
    if len(body):
        raise WireError(f"{what} carries no body, not {len(body)} bytes")


def encode_json(value: Any) -> bytes:
    """A JSON body (statistics replies)."""
    return json.dumps(value, separators=(",", ":"), default=str).encode()
