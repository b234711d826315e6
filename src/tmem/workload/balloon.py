"""The memory of a workload run, and the ``tmem-balloon`` configuration that moves it.

Every configuration has the same memory: ``N * M`` private pages plus ``T``
spare bytes (the *budget*).  A :class:`MemoryMachine` watches a run between
steps and records the memory it holds: *committed* (the private caches'
sizes plus the host's capacity) and *used* (pages the private caches hold
plus the bytes the host stores).

Under ``tmem-balloon`` it also steers: each guest's private cache
self-balloons (:class:`tmem.frontends.SelfBalloon`, Xen's law, one step per
workload step), and the host is auto-sized by :class:`tmem.control.HostLaw`
on a machine of exactly the budget: what the balloons give up is available
to the host, what they take back the host must give back in that same step.
So the committed memory never exceeds the budget.  An optional *spike*
(``STEP:SIZE:STEPS``) takes ``SIZE`` bytes of the machine for ``STEPS``
steps from step ``STEP``, as a competing process would; the machine records
what the host was asked for and what it freed within the step.
"""

from __future__ import annotations

from dataclasses import replace
from statistics import fmean
from typing import Any

from tmem.control import BalloonTunables, HostLaw, HostTunables, MemorySignal
from tmem.units import parse_size
from tmem.workload.config import Configuration, WorkloadSpec
from tmem.workload.errors import WorkloadError

#: The host's law on the simulated machine: no reserve (the budget is all there is),
#: give back exactly the deficit, grow by half the surplus after one calm step.
SIM_HOST = HostTunables(
    floor=0,
    min_free=0.0,
    grow_free=0.01,
    backoff=0.0,
    grow_share=0.5,
    grow_limit=0.05,
    grow_after=1,
)
#: The guests' balloons: Xen's defaults, one interval per workload step.
SIM_BALLOON = BalloonTunables()


def parse_spike(text: str | None) -> tuple[int, int, int] | None:
    """``STEP:SIZE:STEPS`` (SIZE in bytes, ``2M``) as a tuple, or None."""
    if not text:
        return None
    parts = text.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
        raise WorkloadError(f"spike {text!r}: expected STEP:SIZE:STEPS, e.g. 40:4M:10")
    return int(parts[0]), parse_size(parts[1]), int(parts[2])


class MemoryMachine:
    """Records (and under ``config.balloon`` steers) the memory of one configuration's run."""

    def __init__(
        self, spec: WorkloadSpec, config: Configuration, guests: list[Any], host: Any
    ) -> None:
        self.ps = spec.page_size
        self.budget = len(guests) * spec.private_pages * self.ps + spec.spare_bytes
        self.config, self.guests, self.host = config, guests, host
        self.spike = parse_spike(getattr(spec, "spike", None))
        self.committed: list[int] = []
        self.used: list[int] = []
        self.capacity: list[int] = []
        self.events: list[dict[str, Any]] = []
        self.balloons: list[Any] = []
        self.law: HostLaw | None = None
        if config.balloon:
            if spec.scenario != "cleancache" or host is None:
                raise WorkloadError("self-ballooning needs cleancache guests and a host")
            from tmem.frontends.balloon import SelfBalloon

            self.balloons = [
                SelfBalloon(g.cache, SIM_BALLOON, max_pages=config.private_pages, trim=False)
                for g in guests
            ]
            self.law = HostLaw(replace(SIM_HOST, ceiling=self.budget))

    def _sizes(self) -> list[int]:
        """Each guest's private cache size in pages (its allocation)."""
        if self.balloons:
            return [b.cache.cache_pages for b in self.balloons]
        return [self.config.private_pages] * len(self.guests)

    def _held(self) -> int:
        pages = 0
        for guest in self.guests:
            if guest.result is not None:
                continue
            cache = getattr(guest, "cache", None)
            pages += cache.stats()["private_pages"] if cache else len(guest.resident)
        return pages * self.ps

    def taken(self, step: int) -> int:
        """Bytes the spike takes from the machine at ``step``."""
        if self.spike is None:
            return 0
        at, size, steps = self.spike
        return size if at <= step < at + steps else 0

    def step(self) -> None:
        """Between two workload steps: steer (balloon), then record the memory."""
        index = len(self.committed)
        if self.law is not None:
            for guest, balloon in zip(self.guests, self.balloons, strict=True):
                if guest.result is None:
                    balloon.step()
            self._size_host(index)
        capacity = self.host.capacity if self.host is not None else 0
        host_bytes = self.host.stats()["bytes"] if self.host is not None else 0
        self.capacity.append(capacity)
        self.committed.append(sum(self._sizes()) * self.ps + capacity)
        self.used.append(self._held() + host_bytes)

    def _size_host(self, index: int) -> None:
        assert self.law is not None
        capacity = self.host.capacity
        used = self.host.stats()["bytes"]
        taken = self.taken(index)
        available = self.budget - sum(self._sizes()) * self.ps - capacity - taken
        decision = self.law.step(MemorySignal(self.budget, available), capacity, used)
        if decision.capacity != capacity:
            self.host.set_capacity(decision.capacity)
        if decision.reason != "hold" or taken != self.taken(index - 1):
            after = self.host.stats()["bytes"]
            self.events.append(
                {
                    "step": index,
                    "reason": decision.reason,
                    "spike": taken,
                    "wanted": decision.wanted,
                    "capacity": [capacity, decision.capacity],
                    "held": [used, after],
                }
            )

    def summary(self) -> dict[str, Any]:
        """Means of the committed and used memory, the budget, and the spike's response."""
        out: dict[str, Any] = {
            "budget": self.budget,
            "committed_mean": fmean(self.committed) if self.committed else 0,
            "used_mean": fmean(self.used) if self.used else 0,
            "committed_max": max(self.committed, default=0),
        }
        if self.law is not None:
            out["host_capacity_mean"] = fmean(self.capacity) if self.capacity else 0
            out["host_capacity_max"] = max(self.capacity, default=0)
            out["short_steps"] = sum(1 for e in self.events if e["reason"] == "short")
            out["events"] = self.events
            if self.spike is not None:
                at = self.spike[0]
                hit = [e for e in self.events if e["step"] == at]
                if hit:
                    e = hit[0]
                    out["spike"] = {
                        "step": at,
                        "bytes": self.spike[1],
                        "wanted": e["wanted"],
                        "freed_in_step": e["held"][0] - e["held"][1],
                        "capacity": e["capacity"],
                    }
        return out
