"""The probe protocol: a measurement the monitor runs on its own schedule.

A probe is a small object with a cadence (``every`` optimizer steps), a ``run`` that returns
a flat mapping of numbers, and optional resumable state. The monitor writes each result as a
``probe`` row of the history and forwards it to the loggers as ``probe/<name>/<key>``.
Probes must not change the model, its gradients, the optimizer or any global RNG; each
states its cost in its docstring.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..monitor import Monitor


class Probe(ABC):
    """Base class for scheduled measurements (see module docs)."""

    name: str = "probe"

    def __init__(self, every: int = 100):
        self.every = int(every)

    def should_run(self, step: int) -> bool:
        """True on the probe's schedule (every ``every`` optimizer steps)."""
        return self.every > 0 and step % self.every == 0

    @abstractmethod
    def run(self, monitor: "Monitor", step: int) -> Mapping[str, Any]:
        """Measure at optimizer step ``step``; return flat scalar metrics."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None
