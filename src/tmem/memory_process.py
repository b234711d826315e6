"""The process that handles a SwapMemory region's faults: it builds the client, then serves.

Started by :class:`tmem.frontends.SwapMemory` as ``python -m tmem.memory_process
CONTROL_FD JSON``; it is no command for people.  The client is made here, as
the CLI makes the mount's, so the frontends see only the client API.
"""

from __future__ import annotations

import json
import socket
import sys

import tmem
from tmem.api import Client
from tmem.errors import TmemError
from tmem.frontends import swaphandler


def main(argv: list[str]) -> int:
    """Connect to the host the arguments name and serve the region's faults."""
    control = socket.socket(fileno=int(argv[0]))
    args = json.loads(argv[1])
    client: Client | None
    try:
        if args["embedded"] is not None:
            client = tmem.Host(args["embedded"]).connect(args["name"])
        elif args["no_tmem"]:
            client = None
        else:
            client = tmem.connect(args["address"], name=args["name"], timeout=10)
    except (TmemError, OSError) as exc:
        control.sendall(f"error cannot reach the tmem host: {exc}\n".encode())
        return 1
    return swaphandler.run(client, args, control)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
