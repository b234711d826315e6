"""The trace mixes shipped with the workload benchmark: guests and sizes, by name.

``default`` is what ``tmem bench workload`` runs with no option; the others
put the host in the other situations tenants bring it (see
``docs/workload.md``).  ``--mix NAME`` picks one; ``--guest``, ``-m`` and
``-t`` override its parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from tmem.workload.errors import WorkloadError


@dataclass(frozen=True)
class Mix:
    """Guests (``TRACE[:START[:COUNT]][@DELAY]``), private pages each and spare memory."""

    name: str
    guests: tuple[str, ...]
    private_pages: int
    spare: str
    about: str


MIXES: dict[str, Mix] = {
    mix.name: mix
    for mix in (
        Mix(
            "default",
            (
                "lirs-sprite:0:60000",
                "cloudphysics-io:22772:3000@10000",
                "lirs-2_pools:0:40000@20000",
                "lirs-multi2@30000",
                "lirs-sprite:60000:40000@40000",
            ),
            256,
            "8M",
            "five guests of different appetites that start at different times; one a "
            "production VM with writes, two clones of one image",
        ),
        Mix(
            "all-five",
            (
                "lirs-sprite",
                "lirs-2_pools@10000",
                "cloudphysics-io:22772:6000@20000",
                "lirs-multi2@40000",
                "lirs-multi1@60000",
            ),
            256,
            "16M",
            "every shipped trace, the LIRS traces whole",
        ),
        Mix(
            "late-loop",
            ("lirs-2_pools:0:60000", "lirs-multi1@12000"),
            128,
            "8M",
            "a large guest holds the host when a small one with a loop that fits starts",
        ),
        Mix(
            "clones",
            ("lirs-sprite:0:40000", "lirs-sprite:0:40000@8000", "lirs-sprite:0:40000@16000"),
            256,
            "6M",
            "three clones of one image, started one after another",
        ),
        Mix(
            "vm-writes",
            (
                "cloudphysics-io:0:2500",
                "cloudphysics-io:22772:2500@4000",
                "cloudphysics-io:60000:2500@8000",
            ),
            256,
            "8M",
            "three stretches of a production VM's block trace, reads and writes",
        ),
    )
}
DEFAULT_MIX = "default"


def mix(name: str) -> Mix:
    """The shipped mix called ``name``."""
    try:
        return MIXES[name]
    except KeyError:
        raise WorkloadError(f"no mix {name!r}; choose from {', '.join(MIXES)}") from None
