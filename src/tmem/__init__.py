"""tmem: transcendent memory for user space.

A host lends memory of unknown, changing size to clients that copy whole pages
in and out with synchronous put/get/flush calls and must be ready for any call
to say no.  ``tmem.Host`` is the embedded host; see ``tmem.api`` for the
interfaces every host offers.  ``tmem.compiled()`` says whether the modules
mypyc compiled at install are running (``TMEM_PURE=1``: the ``.py`` sources).
"""

from tmem.loader import compiled, use_sources

use_sources()  # before any other tmem module is imported

from tmem.api import Admin, Client  # noqa: E402
from tmem.errors import (  # noqa: E402
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
from tmem.host import Host, HostClient  # noqa: E402
from tmem.remote import RemoteAdmin, RemoteClient, admin, connect  # noqa: E402

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
    "compiled",
    "connect",
]
