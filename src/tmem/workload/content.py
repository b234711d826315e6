"""Real page contents for replayed traces, from a fixed corpus shipped with the package.

Traces say which pages are touched, not what the pages hold; compression and
deduplication only mean something on real bytes.  :class:`Corpus` is a fixed
set of 2,048 real 4 KiB pages (``data/corpus.xz``; ``data/corpus.json`` says
where each came from: CPython's standard library sources and extension
modules, a Python process's heap, and an already compressed wheel; built by
``bench/build_corpus.py``), the same on every machine and Python version.
:class:`ContentMap` gives every ``(trace, page, version)`` of a run a distinct
number and, from it, a page:

* the pages a trace uses are numbered in sorted order, so neighbouring pages of
  a trace hold neighbouring corpus pages, as on a real disk;
* each trace gets its own stretch of numbers, so two guests replaying the same
  trace hold the same bytes (like clones of one VM image) while guests of
  different traces share nothing by construction;
* version ``v`` (the ``v``-th write of a page) takes the number ``v`` stretches
  further on, so a write changes the bytes.

Number ``n`` holds corpus page ``n mod 2048`` with its first 8 bytes replaced
by ``n`` (little-endian): the corpus's compressibility, with no two numbers
sharing content.  A corpus page filled with one repeated 8-byte word (zeros)
stays as it is, as such pages do on real machines.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from tmem.workload.errors import WorkloadError

CORPUS_FILE = "corpus.xz"
MANIFEST_FILE = "corpus.json"
_STAMP = 8


@cache
def _corpus_bytes() -> bytes:
    """The shipped corpus, decompressed once per process and checked against its manifest."""
    data = resources.files("tmem.workload").joinpath("data")
    try:
        body = lzma.decompress(data.joinpath(CORPUS_FILE).read_bytes())
    except (OSError, lzma.LZMAError) as exc:
        raise WorkloadError(f"cannot read the shipped page corpus: {exc}") from None
    if hashlib.sha256(body).hexdigest() != manifest()["sha256"]:
        raise WorkloadError("the shipped page corpus does not match its manifest")
    return body


@cache
def manifest() -> dict[str, Any]:
    """The corpus's provenance (``data/corpus.json``)."""
    text = resources.files("tmem.workload").joinpath("data", MANIFEST_FILE).read_text()
    return dict(json.loads(text))


class Corpus:
    """The shipped pages, cut into ``page_size`` pages (4 KiB: the corpus's own pages)."""

    def __init__(self, page_size: int = 4096) -> None:
        self.page_size = page_size
        self.pages = len(_corpus_bytes()) // page_size
        if not self.pages:
            raise WorkloadError(f"the corpus holds no page of {page_size} bytes")

    def page(self, number: int) -> bytes:
        """The page for ``number``: corpus page ``number mod pages``, stamped with ``number``."""
        ps = self.page_size
        offset = (number % self.pages) * ps
        data = _corpus_bytes()[offset : offset + ps]
        word = data[:_STAMP]
        if word * (ps // _STAMP) == data:
            return data
        return number.to_bytes(_STAMP, "little") + data[_STAMP:]

    def describe(self) -> str:
        """One line on where the pages come from."""
        kinds = manifest()["kinds"]
        parts = ", ".join(f"{k['pages']} {k['what']}" for k in kinds.values())
        return f"{self.pages} real pages shipped with tmem ({parts}), each stamped with its number"

    def close(self) -> None:
        """Nothing to release (kept for callers that close what they open)."""


class ContentMap:
    """The bytes of every ``(trace, page, version)`` of a run, from a :class:`Corpus`."""

    def __init__(self, pages_by_trace: Mapping[str, Iterable[int]], corpus: Corpus) -> None:
        self.corpus = corpus
        self._base: dict[str, int] = {}
        self._rank: dict[str, dict[int, int]] = {}
        total = 0
        for name in sorted(pages_by_trace):
            ranks = {page: i for i, page in enumerate(sorted(set(pages_by_trace[name])))}
            self._rank[name] = ranks
            self._base[name] = total
            total += len(ranks)
        #: Pages of distinct content the unwritten traces need.
        self.stretch = max(total, 1)

    @classmethod
    def build(
        cls, pages_by_trace: Mapping[str, Iterable[int]], page_size: int = 4096
    ) -> ContentMap:
        """A map of the traces' pages onto the shipped corpus."""
        return cls(pages_by_trace, Corpus(page_size))

    def number(self, trace: str, page: int, version: int = 0) -> int:
        """The distinct number of version ``version`` of ``page`` of ``trace``."""
        try:
            rank = self._rank[trace][page]
        except KeyError:
            raise WorkloadError(f"page {page} of {trace} was not declared") from None
        return self._base[trace] + rank + version * self.stretch

    def page(self, trace: str, page: int, version: int = 0) -> bytes:
        """The bytes of version ``version`` of ``page`` of ``trace``."""
        return self.corpus.page(self.number(trace, page, version))
