"""The papers' defect onset rule, offline and online (METHODS.md §6).

baseline = max(median of the first ``n_baseline`` defect values, ``floor``); the onset is
the first record with index ≥ ``min_index`` whose defect exceeds ``factor``·baseline AND
``min_defect``. Defaults: n_baseline = 3, floor = 0.1, min_index = 2, factor = 10,
min_defect = 20 (the authors' ``find_spike_step``). On their runs the onset leads test
accuracy ≥ 0.9 by 600–1600 steps (mean 1117, 12 runs); but non-grokking operations cross
it too (around step 2000), so the rule is necessary, not sufficient:
:class:`~spectral_edge.detectors.alarm.GrokAlarm` adds confirming signals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from .signals import is_missing

__all__ = ["OnsetParams", "OnsetTracker", "onset_index", "OnsetRule"]


@dataclass(frozen=True)
class OnsetParams:
    """Thresholds of the onset rule (defaults: the papers')."""

    factor: float = 10.0  # D > factor · baseline
    min_defect: float = 20.0  # and D > min_defect
    floor: float = 0.1  # baseline = max(median(first n_baseline), floor)
    n_baseline: int = 3
    min_index: int = 2  # first record index (0-based) that may be an onset

    def __post_init__(self) -> None:
        if self.n_baseline < 1 or self.min_index < 0:
            raise ConfigError(f"n_baseline must be ≥ 1 and min_index ≥ 0, got {self.n_baseline}, {self.min_index}")
        if not self.factor > 0:
            raise ConfigError(f"factor must be positive, got {self.factor}")


def onset_index(values: Sequence[float], params: OnsetParams = OnsetParams()) -> int | None:
    """Index of the first onset in a defect series (missing values skipped), or None."""
    tr = OnsetTracker(params)
    for i, v in enumerate(values):
        if tr.push(v) and tr.onset_record is not None:
            return i
    return None


@dataclass
class OnsetTracker:
    """Incremental onset rule: :meth:`push` one defect value at a time.

    ``crossing`` tells whether the latest value satisfies the threshold (for detectors that
    need a sustained defect); ``onset_record`` latches the index of the first crossing."""

    params: OnsetParams = field(default_factory=OnsetParams)
    first: list[float] = field(default_factory=list)
    n: int = 0
    onset_record: int | None = None
    crossing: bool = False
    last: float = float("nan")

    @property
    def baseline(self) -> float:
        if len(self.first) < self.params.n_baseline:
            return float("nan")
        return max(float(np.median(self.first)), self.params.floor)

    def push(self, value: Any) -> bool:
        """Add the next defect value; returns True if it is the onset (first crossing)."""
        if is_missing(value):
            return False
        v = float(value)
        if len(self.first) < self.params.n_baseline:
            self.first.append(v)
        idx = self.n
        self.n += 1
        self.last = v
        p = self.params
        base = self.baseline
        self.crossing = idx >= p.min_index and base == base and v > p.factor * base and v > p.min_defect
        if self.crossing and self.onset_record is None:
            self.onset_record = idx
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"first": list(self.first), "n": self.n, "onset_record": self.onset_record,
                "crossing": self.crossing, "last": self.last}

    def load_state_dict(self, s: Mapping[str, Any]) -> None:
        self.first = [float(x) for x in s["first"]]
        self.n = int(s["n"])
        self.onset_record = None if s["onset_record"] is None else int(s["onset_record"])
        self.crossing = bool(s["crossing"])
        self.last = float(s["last"])


class OnsetRule:
    """The papers' rule as a :class:`~spectral_edge.monitor.Monitor` detector.

    Reads ``probe`` rows of probe ``probe`` (column ``key``) and emits one
    ``{"event": "alarm", "detector": name, "step": s, "reason": …}`` at the onset.
    Parameters: ``factor``, ``min_defect``, ``floor``, ``n_baseline``, ``min_index`` (see
    :class:`OnsetParams`)."""

    def __init__(self, *, factor: float = 10.0, min_defect: float = 20.0, floor: float = 0.1, n_baseline: int = 3,
                 min_index: int = 2, probe: str = "defect", key: str = "defect", name: str = "onset_rule"):
        self.params = OnsetParams(factor, min_defect, floor, n_baseline, min_index)
        self.probe, self.key, self.name = probe, key, name
        self.tracker = OnsetTracker(self.params)
        self.fired_step: int | None = None

    def update(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        events = []
        for r in rows:
            if r.get("kind") != "probe" or r.get("probe") != self.probe or self.fired_step is not None:
                continue
            if self.tracker.push(r.get(self.key)):
                self.fired_step = int(r["step"])
                t = self.tracker
                events.append({"step": self.fired_step, "event": "alarm", "detector": self.name,
                               "reason": f"defect {t.last:.3g} > {self.params.factor:g}×baseline {t.baseline:.3g} "
                                         f"and > {self.params.min_defect:g}",
                               "defect": t.last, "defect_baseline": t.baseline})
        return events

    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.state_dict(), "fired_step": self.fired_step}

    def load_state_dict(self, s: Mapping[str, Any]) -> None:
        self.tracker.load_state_dict(s["tracker"])
        self.fired_step = s.get("fired_step")
