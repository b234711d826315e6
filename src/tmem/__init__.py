"""tmem: transcendent memory for user space.

A host lends memory of unknown, changing size to clients that copy whole pages
in and out with synchronous put/get/flush calls and must be ready for any call
to say no.  ``tmem.Host`` is the embedded host; see ``tmem.api`` for the
interfaces every host offers.
"""

from tmem.api import Admin, Client
from tmem.errors import (
    ConnectionLost,
    InvalidArgument,
    LimitExceeded,
    NoSuchClient,
    NoSuchPool,
    PermissionDenied,
    ProtocolError,
    TierError,
    TmemError,
)
from tmem.host import Host, HostClient
from tmem.remote import RemoteAdmin, RemoteClient, admin, connect

__version__ = "0.1.0"

__all__ = [
    "Admin",
    "Client",
    "ConnectionLost",
    "Host",
    "HostClient",
    "InvalidArgument",
    "LimitExceeded",
    "NoSuchClient",
    "NoSuchPool",
    "PermissionDenied",
    "ProtocolError",
    "RemoteAdmin",
    "RemoteClient",
    "TierError",
    "TmemError",
    "admin",
    "connect",
]
