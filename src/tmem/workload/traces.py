"""Readers for the real block-access traces the workload benchmark replays.

A trace is a sequence of requests; each request touches a run of consecutive
4 KiB pages and is a read or a write.  Two formats are read:

* LIRS traces: one block number a line, each block already a page; a line
  holding only ``*`` is a checkpoint mark and is skipped.  All are reads.
* CloudPhysics CSV (``version,time,op,size,lbn``): ``lbn`` counts 512-byte
  sectors, ``op`` is the SCSI opcode in hex; a request of ``size`` bytes
  touches every page it overlaps.

Traces named without a path are the ones shipped in the package
(``tmem/workload/data/traces/``, with their provenance in its README).
"""

from __future__ import annotations

import csv
import gzip
import io
from array import array
from dataclasses import dataclass
from pathlib import Path

from tmem.workload.errors import WorkloadError

PAGE_SIZE = 4096
SECTOR_SIZE = 512

#: SCSI opcodes (hex, lower case) of the CloudPhysics trace: READ(6/10/12/16), WRITE(...).
READ_OPCODES = frozenset({"08", "28", "a8", "88"})
WRITE_OPCODES = frozenset({"0a", "2a", "aa", "8a"})

#: The traces shipped with the project: name -> file name in :func:`traces_dir`.
BUILTIN_TRACES: dict[str, str] = {
    "cloudphysics-io": "cloudphysics-io.csv.gz",
    "lirs-multi1": "lirs-multi1.trace.gz",
    "lirs-multi2": "lirs-multi2.trace.gz",
    "lirs-sprite": "lirs-sprite.trace.gz",
    "lirs-2_pools": "lirs-2_pools.trace.gz",
}


def traces_dir() -> Path:
    """The directory holding the shipped traces (package data, so a plain install has them)."""
    return Path(__file__).resolve().parent / "data" / "traces"


@dataclass(frozen=True)
class Trace:
    """Requests of a trace: request ``i`` touches pages ``starts[i] .. starts[i]+counts[i]-1``.

    ``writes[i]`` is 1 for a write and 0 for a read.  Page numbers are the
    trace's own (sparse) numbers.
    """

    name: str
    starts: array
    counts: array
    writes: bytearray

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def page_accesses(self) -> int:
        """Pages touched, counting repeats: the work a replay does."""
        return sum(self.counts)

    def unique_pages(self) -> list[int]:
        """Every page the trace touches, sorted."""
        pages: set[int] = set()
        for start, count in zip(self.starts, self.counts, strict=True):
            pages.update(range(start, start + count))
        return sorted(pages)

    def slice(self, start: int, count: int | None = None) -> Trace:
        """Requests ``start .. start+count-1`` (to the end if ``count`` is None)."""
        if start < 0 or (count is not None and count <= 0):
            raise WorkloadError(f"bad slice of {self.name}: start {start}, count {count}")
        if start >= len(self):
            raise WorkloadError(f"{self.name} has {len(self)} requests; cannot start at {start}")
        end = len(self) if count is None else min(len(self), start + count)
        return Trace(
            self.name, self.starts[start:end], self.counts[start:end], self.writes[start:end]
        )


def resolve(name: str, directory: Path | None = None) -> Path:
    """The file of trace ``name``: a shipped trace's name, or a path to a trace file."""
    if name in BUILTIN_TRACES:
        path = (directory or traces_dir()) / BUILTIN_TRACES[name]
        if not path.is_file():
            raise WorkloadError(f"trace {name!r} is not at {path} (try --traces DIR)")
        return path
    path = Path(name)
    if not path.is_file():
        known = ", ".join(BUILTIN_TRACES)
        raise WorkloadError(f"no trace {name!r}: give a file or one of {known}")
    return path


def trace_name(path: Path) -> str:
    """A short name for a trace file: its name without ``.gz``, ``.csv`` or ``.trace``."""
    name = path.name
    for suffix in (".gz", ".csv", ".trace"):
        name = name.removesuffix(suffix)
    return name


def load_trace(name: str, directory: Path | None = None) -> Trace:
    """Read a trace by shipped name or path; CSV files are read as CloudPhysics traces."""
    path = resolve(name, directory)
    short = name if name in BUILTIN_TRACES else trace_name(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="ascii", newline="") as text:
            if ".csv" in path.name:
                return read_cloudphysics(text, short)
            return read_lirs(text, short)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"cannot read trace {path}: {exc}") from None


def read_lirs(text: io.TextIOBase, name: str) -> Trace:
    """Parse a LIRS trace: one page number a line, ``*`` lines skipped; all reads."""
    starts = array("q")
    for lineno, line in enumerate(text, 1):
        field = line.strip()
        if not field or field == "*":
            continue
        if not field.isdigit():
            raise WorkloadError(f"{name} line {lineno}: {field[:40]!r} is not a block number")
        starts.append(int(field))
    counts = array("l", [1]) * len(starts)
    return Trace(name, starts, counts, bytearray(len(starts)))


def read_cloudphysics(text: io.TextIOBase, name: str) -> Trace:
    """Parse a CloudPhysics CSV trace into page runs; requests of other opcodes are skipped."""
    rows = csv.reader(text)
    header = next(rows, None)
    if header is None or [h.strip() for h in header[:5]] != [
        "version",
        "time",
        "op",
        "size",
        "lbn",
    ]:
        raise WorkloadError(f"{name}: expected the header version,time,op,size,lbn")
    starts, counts, writes = array("q"), array("l"), bytearray()
    for lineno, row in enumerate(rows, 2):
        try:
            op, size, lbn = row[2].strip().lower(), int(row[3]), int(row[4])
        except (IndexError, ValueError):
            raise WorkloadError(f"{name} line {lineno}: malformed request {row!r}") from None
        if op not in READ_OPCODES and op not in WRITE_OPCODES:
            continue
        if size <= 0 or lbn < 0:
            raise WorkloadError(f"{name} line {lineno}: size {size} at sector {lbn}")
        first = lbn * SECTOR_SIZE // PAGE_SIZE
        last = (lbn * SECTOR_SIZE + size - 1) // PAGE_SIZE
        starts.append(first)
        counts.append(last - first + 1)
        writes.append(op in WRITE_OPCODES)
    return Trace(name, starts, counts, writes)
