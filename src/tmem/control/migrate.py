"""Live migration: move a client's persistent pages to another daemon while it runs.

Pre-copy, as virtual machines are migrated: copy every page, then again
what changed during the copy, round after round while that shrinks; then
*hold* the client (its requests wait in its socket), copy the rest, let the
new host commit, and tell the old one the client *moved*: every waiting and
later request of the client is answered ``Moved`` with the new address, and
the remote client reconnects there and repeats it.  The freeze is the time
from hold to moved.  If anything fails before the commit, the client is let
go on the old host and the new host drops what it got: nothing is lost.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from tmem.api import RECORD_PAGE
from tmem.errors import TmemError

#: Stop the rounds once one has this many changes or fewer to copy.
SMALL_ROUND = 256
MAX_ROUNDS = 10


@dataclass
class MigrationReport:
    """What a migration did and how long the client was held."""

    name: str
    pages: int = 0  # persistent pages on the new host afterwards
    copied: int = 0  # page copies sent, over all rounds
    data_bytes: int = 0
    rounds: int = 0
    freeze_seconds: float = 0.0
    total_seconds: float = 0.0
    round_pages: list[int] = field(default_factory=list)

    @property
    def copied_again(self) -> int:
        """Page copies beyond one per page: the price of the client running meanwhile."""
        return max(0, self.copied - self.pages)

    def describe(self) -> str:
        """One line for people."""
        return (
            f"moved client {self.name!r}: {self.pages} pages ({self.copied} copies,"
            f" {self.copied_again} more than once) in {self.rounds} rounds"
            f" {self.round_pages}; frozen {self.freeze_seconds * 1e3:.1f} ms,"
            f" total {self.total_seconds:.2f} s"
        )


def migrate(source: Any, target: Any, name: str, to: str) -> MigrationReport:
    """Move client ``name`` from ``source`` to ``target`` (admin handles); ``to`` is the
    address the client reconnects to."""
    report = MigrationReport(name)
    start = time.perf_counter()
    header = source.export_begin(name, "refuse")
    try:
        target.import_begin(header)
    except BaseException:
        source.export_end(name)
        raise
    held = committed = False
    try:
        while True:
            report.rounds += 1
            report.round_pages.append(_copy(source, target, name, report))
            header = source.export_round(name)
            target.import_pools(header)
            if header["pending"] <= SMALL_ROUND or report.rounds >= MAX_ROUNDS:
                break
        frozen = time.perf_counter()
        header = source.hold(name)
        held = True
        target.import_pools(header)
        report.rounds += 1
        report.round_pages.append(_copy(source, target, name, report))
        target.import_end(name, commit=True)
        committed = True
        source.moved(name, to)
        report.freeze_seconds = time.perf_counter() - frozen
    except BaseException:
        _give_up(source, target, name, held, committed)
        raise
    source.export_end(name, release=True)  # the old copy goes, after the client was let go
    report.total_seconds = time.perf_counter() - start
    report.pages = _persistent_pages(target.stats()["clients"].get(name, {}))
    return report


def _copy(source: Any, target: Any, name: str, report: MigrationReport) -> int:
    """Copy the rest of this round; the pages it copied."""
    copied = 0
    while records := source.export_pages(name):
        result = target.import_pages(name, records)
        if result["refused"]:
            raise TmemError(
                f"the new host refused {result['refused']} page(s) of {name!r} (not enough room)"
            )
        for record in records:
            if record[0] == RECORD_PAGE:
                copied += 1
                report.data_bytes += len(record[5])
    report.copied += copied
    return copied


def _give_up(source: Any, target: Any, name: str, held: bool, committed: bool) -> None:
    """Undo a migration that failed: the client stays, and is served, on the source."""
    with contextlib.suppress(TmemError):
        if committed:
            target.drop_parked(name)
        else:
            target.import_end(name, commit=False)
    with contextlib.suppress(TmemError):
        if held:
            source.release(name)
    with contextlib.suppress(TmemError):
        source.export_end(name)


def _persistent_pages(client: dict[str, Any]) -> int:
    return sum(p["pages"] for p in client.get("pools", {}).values() if p["persistent"])
