"""The early-warning study behind docs/grokking.md: every alarm family scored under the
protocol of :mod:`spectral_edge.detectors.protocol`, and the lead-time law.

Families (each a grid of settings, simplest first; a family's setting is chosen by the
protocol, never by hand):

- ``paper``: the papers' onset rule (no setting);
- ``validation``: the validation loss alone, ``val_drop`` × ``persistence``;
- ``recommended``: defect onset ∧ the validation drop, the same grid;
- ``geometry``: no validation or test data: defect onset (or not) ∧ either levels (the median
  edge ratio R within [ratio_min, ratio_max] ∧ the execution-manifold PC1% ≥ pc1_min) or
  turnarounds (PC1 ≥ pc1_drop points below its running peak ∧ R ≥ ratio_rise above its running
  low), × persistence.

For each family: the in-sample score (chosen and scored on the development runs), the
cross-validated scores (leave one operation out, leave one seed out), and the final check
(chosen on all development runs, scored once on the final-check runs). The default alarm is
the family with the best leave-one-operation-out score (ties: leave-one-seed-out, then the
longer mean lead, then the family listed first).

The lead-time law: lead = c · T_grok^α fitted by least squares on log lead against log
T_grok over runs that grokked with a positive lead, with a seeded bootstrap 95% interval
(resampling runs).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..detectors.protocol import (CRITERION, MIN_LEAD, ProtocolRun, choose, criterion_value, cross_validate,
                                  final_check, score, warning_table)

FAMILIES = ("recommended", "geometry", "paper", "validation")
VAL_DROPS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
PERSISTENCE = (1, 2, 3)
RATIO_MINS = (None, 1.1, 1.15, 1.2, 1.25)
RATIO_MAXS = (None, 1.5, 1.7, 2.0)
PC1_MINS = (None, 70.0, 71.0, 72.0, 73.0)
#: the turnaround conditions: PC1 below its running peak (points), R above its running low (fraction)
PC1_DROPS = (None, 0.1, 0.2, 0.3, 0.5, 1.0)
RATIO_RISES = (None, 0.02, 0.05, 0.1)
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0


def _alarm() -> Any:
    from ..detectors.alarm import GrokAlarm

    return GrokAlarm


def candidates(family: str) -> dict[str, tuple[dict[str, Any], Callable[[], Any]]]:
    """name → (settings, factory) of every setting of ``family``, simplest first."""
    A = _alarm()
    out: dict[str, tuple[dict[str, Any], Callable[[], Any]]] = {}
    if family == "paper":
        out["onset rule"] = ({}, lambda: A.paper())
    elif family in ("validation", "recommended"):
        for p in PERSISTENCE:
            for v in VAL_DROPS:
                kw = {"val_drop": v, "persistence": p}
                make = A.validation if family == "validation" else A.recommended
                out[f"{'defect ∧ ' if family == 'recommended' else ''}val −{v:.0%} ×{p}"] = (
                    kw, (lambda make=make, kw=kw: make(**kw)))
    elif family == "geometry":
        for p in PERSISTENCE:
            for defect in (True, False):
                for lo in RATIO_MINS:
                    for hi in RATIO_MAXS:
                        for pc in PC1_MINS:
                            if not defect and lo is None and hi is None and pc is None:
                                continue
                            kw = {"defect_factor": 10.0 if defect else None, "ratio_min": lo, "ratio_max": hi,
                                  "pc1_min": pc, "pc1_drop": None, "ratio_rise": None, "persistence": p}
                            out[geometry_label(kw)] = (kw, (lambda kw=kw: A.geometry(**kw)))
                for drop in PC1_DROPS:
                    for rise in RATIO_RISES:
                        if drop is None and rise is None:
                            continue
                        kw = {"defect_factor": 10.0 if defect else None, "ratio_min": None, "ratio_max": None,
                              "pc1_min": None, "pc1_drop": drop, "ratio_rise": rise, "persistence": p}
                        out[geometry_label(kw)] = (kw, (lambda kw=kw: A.geometry(**kw)))
    else:
        raise ValueError(f"unknown family {family!r}")
    return out


def geometry_label(kw: Mapping[str, Any]) -> str:
    """A geometry setting in words: ``defect ∧ R∈[1.15, 2] ∧ PC1≥72 ×2``."""
    parts = [] if kw.get("defect_factor", 10.0) is None else ["defect"]  # 10: the onset rule's factor
    lo, hi = kw.get("ratio_min"), kw.get("ratio_max")
    if lo is not None or hi is not None:
        parts.append(f"R∈[{'' if lo is None else f'{lo:g}'}, {'' if hi is None else f'{hi:g}'}]".replace("[, ", "[–, ")
                     .replace(", ]", ", –]"))
    if kw.get("pc1_min") is not None:
        parts.append(f"PC1≥{kw['pc1_min']:g}")
    if kw.get("pc1_drop") is not None:
        parts.append(f"PC1 ≤ peak−{kw['pc1_drop']:g}")
    if kw.get("ratio_rise") is not None:
        parts.append(f"R ≥ low×{1 + kw['ratio_rise']:g}")
    return " ∧ ".join(parts) + f" ×{kw.get('persistence', 1)}"


def load_runs(out: str | Path, suite: Sequence[Any]) -> tuple[list[ProtocolRun], list[str]]:
    """The finished runs of ``suite`` (SuiteRun objects) under ``out`` as ProtocolRuns, and the
    names of the unfinished ones. The grok step is the run's own (summary.json)."""
    from ..detectors.signals import as_rows
    from ..io.history import read_history

    done, missing = [], []
    for r in suite:
        folder = Path(out) / r.name
        try:
            summary = json.loads((folder / "summary.json").read_text())
        except (OSError, ValueError):
            missing.append(r.name)
            continue
        rows = as_rows(read_history(folder / "history.jsonl"))
        done.append(ProtocolRun(r.name, rows, summary.get("grok_step"), r.config.op if r.config.task == "modular"
                                else r.config.task, r.config.seed, r.split, r.kind))
    return done, missing


def family_study(dev: Sequence[ProtocolRun], final: Sequence[ProtocolRun], family: str,
                 min_lead: int = MIN_LEAD) -> dict[str, Any]:
    """One family under the protocol: in-sample, leave-one-op-out, leave-one-seed-out, final check."""
    cands = candidates(family)
    table = warning_table(list(dev) + list(final), {k: f for k, (_, f) in cands.items()})
    chosen = choose(dev, table, min_lead)
    rec: dict[str, Any] = {"family": family, "n_settings": len(cands), "chosen": chosen,
                           "settings": cands[chosen][0], "in_sample": score(dev, table[chosen], min_lead).as_dict(),
                           "warnings": {r.name: table[chosen][r.name] for r in list(dev) + list(final)}}
    for by in ("op", "seed"):
        try:
            cv = cross_validate(dev, table, by, min_lead)
        except ConfigError:  # fewer than two groups among the finished runs: no cross-validation
            rec[f"cv_{by}"] = None
            continue
        rec[f"cv_{by}"] = {**cv.score.as_dict(), "chosen": dict(cv.chosen),
                           "warnings": dict(cv.warnings)}
    if final:
        c, s = final_check(dev, final, table, min_lead)
        rec["final"] = {**s.as_dict(), "chosen": c}
    return rec


def default_family(study: Mapping[str, Mapping[str, Any]]) -> str:
    """The family with the best leave-one-operation-out value (ties: leave-one-seed-out, then the
    longer leave-one-operation-out mean lead, then the order of :data:`FAMILIES`)."""
    def value(s: Mapping[str, Any] | None) -> float:
        return criterion_value(s) if s else float("-inf")

    def lead(s: Mapping[str, Any] | None) -> float:
        return float(s["mean_lead"]) if s and s.get("mean_lead") == s.get("mean_lead") and s.get("mean_lead") \
            is not None else -1.0

    ranked = sorted(FAMILIES, key=lambda f: (-round(value(study[f]["cv_op"]), 12), -round(value(study[f]["cv_seed"]), 12),
                                             -lead(study[f]["cv_op"]), FAMILIES.index(f)))
    return ranked[0]


def lead_law(points: Sequence[tuple[float, float]], n_boot: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED
             ) -> dict[str, Any]:
    """Fit lead = c · T^α on (T_grok, lead) pairs with lead > 0: least squares on the logs; a
    bootstrap interval over the pairs (seeded). None fields when fewer than 3 pairs or one T."""
    pts = [(float(t), float(ld)) for t, ld in points if t > 0 and ld > 0]
    rec: dict[str, Any] = {"n": len(pts), "alpha": None, "c": None, "ci": None, "r2": None}
    if len(pts) < 3 or len({t for t, _ in pts}) < 2:
        return rec
    x = np.log([t for t, _ in pts])
    y = np.log([ld for _, ld in pts])
    A = np.stack([np.ones_like(x), x], axis=1)
    (b0, b1), *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - (b0 + b1 * x)
    r2 = 1 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum()) if len(pts) > 2 else None
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(pts), len(pts))
        if np.ptp(x[i]) == 0:
            continue
        boots.append(np.linalg.lstsq(A[i], y[i], rcond=None)[0][1])
    lo, hi = (np.percentile(boots, [2.5, 97.5]) if boots else (math.nan, math.nan))
    rec.update(alpha=float(b1), c=float(math.exp(b0)), ci=[float(lo), float(hi)], r2=r2,
               t_range=[float(min(t for t, _ in pts)), float(max(t for t, _ in pts))])
    return rec


def alarm_study(out: str | Path, suite: Sequence[Any], lead_suite: Sequence[Any] = (),
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every family under the protocol on the finished runs of ``suite`` (the alarm suite), the
    default alarm, the control horizon facts, the lead-time law (``suite``'s lr-1e-3 runs with
    ``lead_suite``'s split ``lead``) and the probe claims (its split ``probes``,
    :mod:`.probe_claims`)."""
    runs, missing = load_runs(out, suite)
    lead_runs, lead_missing = load_runs(out, lead_suite)
    dev = [r for r in runs if r.split == "dev"]
    final = [r for r in runs if r.split == "final"]
    rec: dict[str, Any] = {"criterion": CRITERION.format(min_lead=MIN_LEAD), "min_lead": MIN_LEAD,
                           "missing": missing + lead_missing, "families": {},
                           "runs": [{"run": r.name, "op": r.op, "seed": r.seed, "split": r.split, "kind": r.kind,
                                     "grok_step": r.grok_step, "last_step": _last_step(r.rows)} for r in runs]}
    for fam in FAMILIES:
        if log:
            log(f"alarm family {fam}: replaying {len(candidates(fam))} settings on {len(runs)} runs")
        rec["families"][fam] = family_study(dev, final, fam)
    rec["default"] = default_family(rec["families"])
    rec["lead_law"] = lead_law_study(runs, [r for r in lead_runs if r.split == "lead"])
    from .probe_claims import probe_records

    rec["probe_claims"] = probe_records(out, [r for r in lead_suite if r.split == "probes"])
    return rec


def _last_step(rows: Sequence[Mapping[str, Any]]) -> int | None:
    steps = [int(r["step"]) for r in rows if r.get("step") is not None]
    return max(steps) if steps else None


def lead_law_study(runs: Sequence[ProtocolRun], lead_runs: Sequence[ProtocolRun]) -> dict[str, Any]:
    """The papers' onset-rule lead against T_grok: modular (add/sub/mul at lr 1e-3 from the alarm
    suite's development runs plus the slower learning rates) and Dyck (lr sweep, probes dense
    early)."""
    from ..detectors.alarm import GrokAlarm, replay

    def points(rs: Sequence[ProtocolRun]) -> list[dict[str, Any]]:
        out = []
        for r in rs:
            if r.grok_step is None:
                continue
            w = replay(r.rows, GrokAlarm.paper())
            out.append({"run": r.name, "op": r.op, "grok_step": r.grok_step, "warning_step": w,
                        "lead": None if w is None else r.grok_step - w})
        return out

    mod = points([r for r in runs if r.split == "dev" and r.op in ("add", "sub", "mul")]
                 + [r for r in lead_runs if r.op != "dyck"])
    dyck = points([r for r in lead_runs if r.op == "dyck"])
    res = {}
    for name, pts in (("modular", mod), ("dyck", dyck)):
        res[name] = {"points": pts, **lead_law([(p["grok_step"], p["lead"]) for p in pts if p["lead"] is not None])}
    return res
