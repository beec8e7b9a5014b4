"""The probe protocol: a measurement the monitor runs on its own schedule.

A probe is a small object with a cadence (``every``: N optimizer steps, or a schedule such as
``[(1000, 10), (None, 100)]``, dense early; see :class:`~spectral_edge.stream.cadence.Cadence`;
0 switches it off), a ``run`` that returns
a flat mapping of numbers, and optional resumable state. The monitor writes each result as a
``probe`` row of the history and forwards it to the loggers as ``probe/<name>/<key>``.
Probes must not change the model, its gradients, the optimizer or any global RNG; each
states its cost in its docstring.

A probe sees a :class:`ProbeContext` (the model, the optimizer, the step and a read-only view
of the update stream's windows), not the monitor: probes do not depend on the monitor, and
a probe can be run by hand with ``probe.run(ProbeContext(step, model=model))``.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..stream.cadence import CadenceSpec

    from ..functional.sketch import SketchSpec
    from ..stream.window import SketchWindow


def _no_windows() -> Mapping[str, SketchWindow]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ProbeContext:
    """What a probe sees at one call (the monitor builds one per call).

    ``step``: the optimizer step just taken. ``model``: the monitored ``nn.Module`` (None
    when the monitor was built from bare parameters). ``optimizer``: the optimizer the
    monitor is attached to (None before :meth:`~spectral_edge.monitor.Monitor.attach`).
    ``windows``: read-only mapping group → :class:`~spectral_edge.stream.window.SketchWindow`
    of the update stream (do not push into them). ``sketch``: that stream's sketch and
    ``names``: its selected parameter names in sketch order (what a window's vectors mean;
    with the exact sketch, a window direction is a vector over these parameters).
    """

    step: int
    model: torch.nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    windows: Mapping[str, SketchWindow] = field(default_factory=_no_windows)
    sketch: SketchSpec | None = None
    names: tuple[str, ...] = ()


class Probe(ABC):
    """Base class for scheduled measurements (see module docs)."""

    name: str = "probe"

    def __init__(self, every: "CadenceSpec" = 100):
        self.every = every

    @property
    def every(self) -> Any:
        """The cadence as recorded: an int N (0: off) or a schedule ``[[until, every], …]``."""
        return self._every

    @every.setter
    def every(self, value: "CadenceSpec") -> None:
        from ..stream.cadence import Cadence

        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) == 0:
            self._cadence, self._every = None, 0  # switched off
            return
        self._cadence = Cadence(value, name=f"{self.name} probe: every")
        self._every = self._cadence.record()

    def should_run(self, step: int) -> bool:
        """True on the probe's cadence (every N optimizer steps, or its schedule)."""
        return self._cadence is not None and self._cadence(step)

    @abstractmethod
    def run(self, ctx: ProbeContext) -> Mapping[str, Any]:
        """Measure at optimizer step ``ctx.step``; return flat scalar metrics."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None
