"""Builders that turn a run config's ``probes`` entries into probe objects for a workload.

Each builder takes (workload, run config, options) and returns a
:class:`~spectral_edge.probes.base.Probe`; ``ALARM_BUILDER`` makes the default grokking
alarm from the probes a run has. Registered into :mod:`.runner` on import.
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .runner import ALARM_BUILDER, PROBE_BUILDERS
from .workloads import Workload


def available() -> list[str]:
    """Names usable in ``RunConfig.probes``."""
    return sorted(PROBE_BUILDERS)


__all__ = ["available", "ALARM_BUILDER", "PROBE_BUILDERS", "RunConfig", "Workload", "Any"]
