"""The tmem wire protocol, sans-io: bytes to frames to messages and back.

:mod:`tmem.wire.frames` splits a byte stream into frames; :mod:`tmem.wire.messages`
lays out each message's body.  Neither does any I/O; both raise only
:class:`WireError` for bad peer input.  ``docs/protocol.md`` documents the format.
"""

from tmem.wire.frames import (
    DEFAULT_MAX_BODY,
    HEADER,
    HEADER_SIZE,
    Decoder,
    OutBuffer,
    WireError,
    check_request,
    encode_frame,
)
from tmem.wire.messages import ADMIN_OPS, ROLE_ADMIN, ROLE_CLIENT, VERSION, Op

__all__ = [
    "ADMIN_OPS",
    "DEFAULT_MAX_BODY",
    "HEADER",
    "HEADER_SIZE",
    "ROLE_ADMIN",
    "ROLE_CLIENT",
    "VERSION",
    "Decoder",
    "Op",
    "OutBuffer",
    "WireError",
    "check_request",
    "encode_frame",
]
