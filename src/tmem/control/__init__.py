"""The control plane: operate a running host from beside it.

Everything here calls only the host's public administrative API
(:class:`tmem.Host`, or :func:`tmem.admin` for a daemon): listing, policies,
save and restore, live migration, metrics and the live ``top`` view.

The memory loops live here too, as pure control laws and the readers that
feed them (see ``docs/autosize.md``):

* :mod:`tmem.control.signals` -- what a loop is told each interval
  (:class:`MemorySignal`, :class:`CacheSignal`) and the small interface a
  source of them implements, so that tests can drive a loop with any sequence.
* :mod:`tmem.control.hostlaw` -- how a host sizes itself from the machine's
  memory (MemAvailable and pressure stall information): fast back-off, slow
  probing.  The daemon steps it (:mod:`tmem.daemon.autosize`) and calls
  ``host.set_capacity``.
* :mod:`tmem.control.balloonlaw` -- how a guest's private page cache balloons
  toward its working set (Xen's selfballoon: fast up, slow down).
* :mod:`tmem.control.procfs` -- the real readers of ``/proc/meminfo``,
  ``/proc/pressure/memory`` and memory cgroups.

The laws hold no clock and read no file: they step once per call with the
signal they are given.
"""

from tmem.control.balloonlaw import BalloonLaw, BalloonTunables
from tmem.control.hostlaw import HostLaw, HostTunables, Step
from tmem.control.signals import CacheSignal, MemorySignal, MemorySource

__all__ = [
    "BalloonLaw",
    "BalloonTunables",
    "CacheSignal",
    "HostLaw",
    "HostTunables",
    "MemorySignal",
    "MemorySource",
    "Step",
]
