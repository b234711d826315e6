"""The daemon's side of save, restore and live migration (``Op.TRANSFER`` and friends).

Host-level steps (export and import) go to :class:`tmem.Host`'s methods.  Two
steps concern connections and live only here: *hold* stops executing a
client's requests (they wait, unread, in its socket) while the last pages are
copied, and *moved* makes every request of the held client, the waiting ones
first, answer ``Moved`` with the new daemon's address, so the remote client
reconnects there and repeats the request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tmem.errors import InvalidArgument, Moved
from tmem.host import Host

if TYPE_CHECKING:
    from tmem.daemon.dispatch import Session

log = logging.getLogger("tmem.daemon")


class MovedClient:
    """Stands in for a client whose pages went to ``address``: every call says so."""

    def __init__(self, address: str, moved: Any) -> None:
        self.address = address
        self.moved = moved

    def close(self) -> None:
        """Release what is left of the client here (its pages went with the move)."""
        self.moved.close()

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise Moved(self.address)

        return refuse


class Transfers:
    """Transfer actions of administrators, by name (the ``action`` of a TRANSFER request)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        #: client name -> the session whose client it is (a session leaves it when
        #: it closes: Session.register)
        self.sessions: dict[str, Session] = {}

    def run(self, action: str, args: dict[str, Any]) -> Any:
        """Do ``action`` with ``args``; its JSON-able answer."""
        method = getattr(self, "do_" + str(action), None)
        if method is None:
            raise InvalidArgument(f"unknown transfer action {action!r}")
        try:
            return method(**args)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise InvalidArgument(f"transfer {action}: {exc}") from None

    def do_export_begin(self, name: str, shared: str = "refuse") -> Any:
        return self.host.export_begin(name, shared)

    def do_export_round(self, name: str) -> Any:
        return self.host.export_round(name)

    def do_export_end(self, name: str, release: bool = False) -> None:
        self.host.export_end(name, release=bool(release))

    def do_import_begin(self, header: dict[str, Any]) -> None:
        self.host.import_begin(header)

    def do_import_pools(self, header: dict[str, Any]) -> None:
        self.host.import_pools(header)

    def do_import_end(self, name: str, commit: bool) -> None:
        self.host.import_end(name, commit=bool(commit))

    def do_drop(self, name: str) -> None:
        self.host.drop_parked(name)

    def do_hold(self, name: str) -> Any:
        """Stop serving the client, then start the last round (nothing changes in between)."""
        session = self._session(name)
        if session is not None:
            session.held = True
        return self.host.export_round(name)

    def do_release(self, name: str) -> None:
        """Serve the held client again here (the move was given up)."""
        session = self._session(name)
        if session is not None:
            session.held = False
            session.resume()

    def do_moved(self, name: str, to: str) -> None:
        """The client now lives at ``to``: its requests say so (its pages here go with
        ``export_end(release=True)``, after the client was let go)."""
        if not isinstance(to, str) or not to:
            raise InvalidArgument("moved needs the new address")
        self.host.export_round(name)  # checks an export of this client is under way
        session = self._session(name)
        if session is not None:
            session.client = MovedClient(to, session.client)
            session.held = False
            session.resume()
        log.info("client %r moved to %s", name, to)

    def _session(self, name: str) -> Session | None:
        session = self.sessions.get(name)
        if session is None or getattr(session.client, "name", None) != name:
            return None
        return session
