"""The error of the workload benchmark: bad traces, guest specifications or sizes."""

from __future__ import annotations

from tmem.errors import InvalidArgument


class WorkloadError(InvalidArgument):
    """A trace, guest specification or configuration of the workload is unusable."""
