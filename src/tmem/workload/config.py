"""What a workload run is made of: guests, memory sizes and the configurations compared.

Every configuration gives the guests the same total memory: ``N * M`` private
pages plus ``T`` bytes of spare memory.  ``static`` splits the spare memory
evenly into bigger private caches; the ``tmem`` configurations keep it in one
host that lends it to whichever guest needs it, plain, compressed or
deduplicated.  ``private`` (``M`` pages each, no spare memory at all) is the
reference that shows what the spare memory buys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tmem.workload.errors import WorkloadError

SCENARIOS = ("cleancache", "frontswap")
#: The configurations compared, in the order they run and are reported.
CONFIG_NAMES = (
    "private",
    "static",
    "tmem",
    "tmem-share",
    "tmem-lru",
    "tmem-freq",
    "tmem-lz4",
    "tmem-zstd",
    "tmem-dedup",
    "tmem-balloon",
)
#: What frontswap does with a page read back from the swap file (``--swap-cache``).
SWAP_CACHE_MODES = ("offer", "keep", "drop")


@dataclass(frozen=True)
class GuestSpec:
    """One guest: ``count`` requests of ``trace`` from request ``start`` (all if None).

    The guest stays idle until the others have made ``delay`` page accesses
    each: a guest that starts late, as virtual machines do.
    """

    trace: str
    start: int = 0
    count: int | None = None
    delay: int = 0

    @classmethod
    def parse(cls, text: str) -> GuestSpec:
        """Read ``TRACE[:START[:COUNT]][@DELAY]`` (START, COUNT in requests; DELAY in pages)."""
        body, at, delay_text = text.rpartition("@") if "@" in text else (text, "", "")
        if at and not delay_text.isdigit():
            raise WorkloadError(f"guest {text!r}: DELAY after @ must be a number of pages")
        parts = body.split(":")
        numbers: list[str] = []
        # A path may hold colons: only up to two trailing numeric fields are START and COUNT.
        while len(parts) > 1 and len(numbers) < 2 and parts[-1].isdigit():
            numbers.insert(0, parts.pop())
        trace = ":".join(parts)
        if not trace:
            raise WorkloadError(f"guest {text!r}: expected TRACE[:START[:COUNT]][@DELAY]")
        start = int(numbers[0]) if numbers else 0
        count = int(numbers[1]) if len(numbers) > 1 else None
        if count == 0:
            raise WorkloadError(f"guest {text!r}: COUNT must be positive")
        return cls(trace, start, count, int(delay_text) if at else 0)

    def __str__(self) -> str:
        text = self.trace
        if self.count is not None:
            text += f":{self.start}:{self.count}"
        elif self.start:
            text += f":{self.start}"
        return text + (f"@{self.delay}" if self.delay else "")


@dataclass(frozen=True)
class Configuration:
    """How the memory is arranged: private pages per guest and the host, if any."""

    name: str
    private_pages: int
    host_bytes: int | None  # None: no tmem at all (client None)
    compress: str | None = None
    dedup: str | None = None
    tiers: tuple[str, ...] = ()  # stores below the host's RAM (tmem.Host's ``tiers``)
    policy: str = "utility"
    order: str = "adaptive"  # where a client's new page goes on its list (tmem.Host's ``order``)
    eviction: str = "lru"  # which of a client's pages goes (tmem.Host's ``eviction``)
    writeback: str = "frequency"  # which page frontswap writes back (Frontswap's ``eviction``)
    balloon: bool = False  # self-ballooning guests, auto-sized host (tmem.workload.balloon)

    @property
    def uses_tmem(self) -> bool:
        """True when the guests are tmem clients of a host."""
        return self.host_bytes is not None


@dataclass(frozen=True)
class WorkloadSpec:
    """A whole run: guests, private pages ``M`` per guest and spare bytes ``T`` in all.

    ``step_pages`` is how many page accesses each guest makes between samples;
    ``selfshrink`` runs frontswap's self-shrinking in the frontswap scenario;
    ``swap_cache`` says whether a page read back from the swap file keeps its
    copy there and is offered to tmem when evicted again (``"offer"``), keeps
    it and is dropped clean (``"keep"``), or frees it (``"drop"``);
    ``processes`` makes each guest a process and a client of a daemon.
    """

    guests: tuple[GuestSpec, ...]
    private_pages: int
    spare_bytes: int
    page_size: int = 4096
    step_pages: int = 512
    scenario: str = "cleancache"
    selfshrink: bool = True
    swap_cache: str = "offer"
    processes: bool = False
    configurations: tuple[str, ...] = field(default=())
    spike: str | None = None  # tmem-balloon: STEP:SIZE:STEPS taken from the machine

    def __post_init__(self) -> None:
        if not self.guests:
            raise WorkloadError("a workload needs at least one guest")
        if self.private_pages < 1:
            raise WorkloadError(f"private pages per guest must be >= 1, not {self.private_pages}")
        if self.spare_bytes < 0:
            raise WorkloadError(f"spare memory must be >= 0 bytes, not {self.spare_bytes}")
        if self.step_pages < 1:
            raise WorkloadError(f"step must be >= 1 page, not {self.step_pages}")
        if self.scenario not in SCENARIOS:
            raise WorkloadError(f"scenario {self.scenario!r}: choose from {SCENARIOS}")
        if self.swap_cache not in SWAP_CACHE_MODES:
            raise WorkloadError(f"swap cache {self.swap_cache!r}: choose from {SWAP_CACHE_MODES}")
        unknown = [name for name in self.configurations if name not in CONFIG_NAMES]
        if unknown:
            raise WorkloadError(f"unknown configuration {unknown[0]!r}; choose from {CONFIG_NAMES}")

    def chosen(self) -> list[Configuration]:
        """The configurations to run: those named, in the order given (the benchmark
        rotates it), or all of them in the order of :func:`all_configurations`."""
        every = all_configurations(self)
        if not self.configurations:
            return every
        by_name = {c.name: c for c in every}
        return [by_name[name] for name in dict.fromkeys(self.configurations)]


def all_configurations(spec: WorkloadSpec) -> list[Configuration]:
    """Every configuration, each with the same total memory (``private`` has only ``N*M``)."""
    m, t = spec.private_pages, spec.spare_bytes
    static_pages = m + t // len(spec.guests) // spec.page_size
    configs = [
        Configuration("private", m, None),
        Configuration("static", static_pages, None),
        Configuration("tmem", m, t),
        Configuration("tmem-share", m, t, policy="share"),
        Configuration("tmem-lru", m, t, order="lru", writeback="lru"),
        Configuration("tmem-freq", m, t, eviction="frequency"),
        Configuration("tmem-lz4", m, t, compress="lz4"),
        Configuration("tmem-zstd", m, t, compress="zstd"),
        Configuration("tmem-dedup", m, t, dedup="host"),
        Configuration("tmem-balloon", m, t, balloon=True),
    ]
    assert tuple(c.name for c in configs) == CONFIG_NAMES
    return configs
