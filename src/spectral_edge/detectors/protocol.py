"""Choosing an alarm's settings without fooling oneself: cross-validation over runs.

An alarm is a family of detectors (one per setting, e.g. a validation-drop threshold and a
persistence). Choosing the setting on the runs it is then scored on gives in-sample numbers.
This module does it the honest way:

1. every candidate setting is replayed once on every run (:func:`warning_table`);
2. :func:`choose` picks a setting on a set of runs by one stated criterion
   (:data:`CRITERION`): the share of grokking runs warned at least ``min_lead`` steps ahead,
   minus the share of controls that alarmed; ties go to the longer mean lead, then to the
   candidate listed first (list the simpler settings first);
3. :func:`cross_validate` holds out one group at a time (an operation, or a seed), chooses on
   the rest, and scores the held-out runs with the setting chosen without them. The pooled
   held-out warnings are the cross-validated score;
4. a final check scores runs that took no part in any choice with the setting chosen on all
   development runs (:func:`final_check`).

Scores come with exact (Clopper–Pearson) 95% intervals (:func:`binomial_interval`), since a
false-alarm count over 15 controls says little without one.

A run's outcome is read from its own records: ``grok_step`` None means it did not grok
within its horizon (a control); an alarm counts in a control only if it fires by the run's
last step (every control runs to the same horizon in our suites).

Pure Python and numpy; detectors are replayed with :func:`~spectral_edge.detectors.alarm.replay`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from .alarm import replay

__all__ = ["CRITERION", "MIN_LEAD", "ProtocolRun", "Score", "CVResult", "binomial_interval", "criterion_value", "score",
           "warning_table", "choose", "cross_validate", "final_check"]

#: the lead a warning must have to count as useful (steps), as in the papers' goal
MIN_LEAD = 500
CRITERION = ("share of grokking runs warned ≥ {min_lead} steps ahead − share of controls that alarmed; "
             "ties: longer mean lead, then the simpler (earlier-listed) setting")


@dataclass(frozen=True)
class ProtocolRun:
    """One finished run: its history rows, its grok step (None: a control) and its labels."""

    name: str
    rows: Sequence[Mapping[str, Any]]
    grok_step: int | None
    op: str = ""
    seed: int = 0
    split: str = "dev"
    kind: str = ""

    @property
    def is_grok(self) -> bool:
        return self.grok_step is not None


def binomial_interval(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) two-sided interval for a proportion k/n, by bisection on the
    binomial distribution (no scipy). (nan, nan) when n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ConfigError(f"binomial_interval: need 0 ≤ k ≤ n, got k={k}, n={n}")
    a = (1 - conf) / 2

    def cdf(kk: int, p: float) -> float:  # P[X ≤ kk], X ~ Bin(n, p)
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(kk + 1))

    def solve(f: Callable[[float], float]) -> float:  # f increasing in p, root in [0, 1]
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda p: (1 - cdf(k - 1, p)) - a)  # P[X ≥ k] = a
    upper = 1.0 if k == n else solve(lambda p: a - cdf(k, p))  # P[X ≤ k] = a
    return lower, upper


@dataclass(frozen=True)
class Score:
    """Warnings scored against outcomes. ``useful``: grokking runs warned ≥ ``min_lead`` steps
    ahead; ``leads``: every lead ≥ 0; ``late``: warned after grokking; ``missed``: never
    warned; ``false_alarms``: controls that alarmed (names in ``alarmed``)."""

    n_grok: int
    n_control: int
    useful: int
    late: int
    missed: int
    false_alarms: int
    leads: tuple[int, ...] = ()
    alarmed: tuple[str, ...] = ()
    min_lead: int = MIN_LEAD

    @property
    def value(self) -> float:
        """The selection criterion (see :data:`CRITERION`)."""
        return criterion_value(self.as_counts())

    def as_counts(self) -> dict[str, int]:
        return {"useful": self.useful, "n_grok": self.n_grok, "false_alarms": self.false_alarms,
                "n_control": self.n_control}

    @property
    def mean_lead(self) -> float:
        return float(np.mean(self.leads)) if self.leads else float("nan")

    @property
    def useful_interval(self) -> tuple[float, float]:
        return binomial_interval(self.useful, self.n_grok)

    @property
    def false_alarm_interval(self) -> tuple[float, float]:
        return binomial_interval(self.false_alarms, self.n_control)

    def as_dict(self) -> dict[str, Any]:
        return {"n_grok": self.n_grok, "n_control": self.n_control, "useful": self.useful, "late": self.late,
                "missed": self.missed, "false_alarms": self.false_alarms, "mean_lead": self.mean_lead,
                "min_lead_seen": min(self.leads) if self.leads else None, "alarmed": list(self.alarmed),
                "useful_interval": list(self.useful_interval), "false_alarm_interval": list(self.false_alarm_interval)}


def criterion_value(s: Mapping[str, Any]) -> float:
    """:data:`CRITERION` from a score's counts (a :class:`Score` or its ``as_dict()``): the share
    of grokking runs usefully warned minus the share of controls that alarmed."""
    g = s["useful"] / s["n_grok"] if s["n_grok"] else 0.0
    c = s["false_alarms"] / s["n_control"] if s["n_control"] else 0.0
    return g - c


def score(runs: Sequence[ProtocolRun], warnings: Mapping[str, int | None], min_lead: int = MIN_LEAD) -> Score:
    """Score ``warnings`` (run name → warning step or None) on ``runs``."""
    n_g = n_c = useful = late = missed = fa = 0
    leads: list[int] = []
    alarmed: list[str] = []
    for r in runs:
        w = warnings.get(r.name)
        if not r.is_grok:
            n_c += 1
            if w is not None:
                fa += 1
                alarmed.append(r.name)
            continue
        n_g += 1
        if w is None:
            missed += 1
        elif w > int(r.grok_step):  # type: ignore[arg-type]
            late += 1
        else:
            lead = int(r.grok_step) - int(w)  # type: ignore[arg-type]
            leads.append(lead)
            useful += lead >= min_lead
    return Score(n_g, n_c, useful, late, missed, fa, tuple(leads), tuple(alarmed), min_lead)


def warning_table(runs: Sequence[ProtocolRun], candidates: Mapping[str, Callable[[], Any]],
                  progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, int | None]]:
    """Replay a fresh detector of every candidate on every run: candidate → run → warning step."""
    out: dict[str, dict[str, int | None]] = {}
    total = len(candidates) * len(runs)
    done = 0
    for cname, make in candidates.items():
        out[cname] = {}
        for r in runs:
            out[cname][r.name] = replay(r.rows, make())
            done += 1
            if progress is not None:
                progress(done, total)
    return out


def choose(runs: Sequence[ProtocolRun], table: Mapping[str, Mapping[str, int | None]],
           min_lead: int = MIN_LEAD) -> str:
    """The candidate with the best criterion on ``runs`` (see :data:`CRITERION`)."""
    if not table:
        raise ConfigError("no candidate settings to choose from")
    best, key = None, None
    for i, (cname, warns) in enumerate(table.items()):
        s = score(runs, warns, min_lead)
        lead = s.mean_lead if s.leads else -1.0
        k = (round(s.value, 12), lead, -i)
        if key is None or k > key:
            best, key = cname, k
    return str(best)


@dataclass(frozen=True)
class CVResult:
    """Held-out warnings of a cross-validation and what each fold chose."""

    by: str
    chosen: Mapping[str, str]  # held-out group → candidate chosen without it
    warnings: Mapping[str, int | None]  # run → warning of the setting chosen without its group
    score: Score
    folds: Mapping[str, Score] = field(default_factory=dict)


def _group(r: ProtocolRun, by: str) -> str:
    if by == "op":
        return r.op
    if by == "seed":
        return str(r.seed)
    raise ConfigError(f"cross-validation groups are 'op' or 'seed', got {by!r}")


def cross_validate(runs: Sequence[ProtocolRun], table: Mapping[str, Mapping[str, int | None]], by: str = "op",
                   min_lead: int = MIN_LEAD) -> CVResult:
    """Leave one group (``by`` = ``"op"`` or ``"seed"``) out: choose on the other groups, score
    the held-out group with that choice; pool the held-out warnings."""
    groups = sorted({_group(r, by) for r in runs})
    if len(groups) < 2:
        raise ConfigError(f"cross-validation by {by} needs at least two groups, got {groups}")
    chosen: dict[str, str] = {}
    warns: dict[str, int | None] = {}
    folds: dict[str, Score] = {}
    for g in groups:
        train = [r for r in runs if _group(r, by) != g]
        held = [r for r in runs if _group(r, by) == g]
        c = choose(train, table, min_lead)
        chosen[g] = c
        for r in held:
            warns[r.name] = table[c][r.name]
        folds[g] = score(held, {r.name: table[c][r.name] for r in held}, min_lead)
    return CVResult(by, chosen, warns, score(runs, warns, min_lead), folds)


def final_check(dev: Sequence[ProtocolRun], final: Sequence[ProtocolRun],
                table: Mapping[str, Mapping[str, int | None]], min_lead: int = MIN_LEAD) -> tuple[str, Score]:
    """Choose on every development run, score the final-check runs once with that choice."""
    c = choose(dev, table, min_lead)
    return c, score(final, {r.name: table[c][r.name] for r in final}, min_lead)
