"""The alarm protocol (spectral_edge.detectors.protocol): exact intervals, scoring, choice and
cross-validation against brute-force versions, on planted warning tables."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from spectral_edge.detectors.alarm import GrokAlarm
from spectral_edge.detectors.protocol import (ProtocolRun, binomial_interval, choose, cross_validate, final_check,
                                              score, warning_table)
from spectral_edge.errors import ConfigError


@pytest.mark.parametrize("k,n", [(0, 15), (1, 9), (3, 12), (12, 12), (5, 5), (7, 20), (0, 1)])
def test_binomial_interval_matches_scipy(k, n):
    stats = pytest.importorskip("scipy.stats")
    lo, hi = binomial_interval(k, n)
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert lo == pytest.approx(ref.low, abs=1e-9)
    assert hi == pytest.approx(ref.high, abs=1e-9)


def test_binomial_interval_closed_forms():
    # k = 0: upper = 1 − (α/2)^(1/n); k = n: lower = (α/2)^(1/n)
    assert binomial_interval(0, 15) == (0.0, pytest.approx(1 - 0.025 ** (1 / 15), abs=1e-12))
    assert binomial_interval(15, 15) == (pytest.approx(0.025 ** (1 / 15), abs=1e-12), 1.0)
    assert all(np.isnan(binomial_interval(0, 0)))
    with pytest.raises(ConfigError):
        binomial_interval(4, 3)


def _runs():
    g = [ProtocolRun(f"{op}-s{s}", [], 3000, op, s) for op in ("add", "sub", "mul") for s in (1, 2)]
    c = [ProtocolRun(f"c{op}-s{s}", [], None, op, s) for op in ("x", "y") for s in (1, 2)]
    return g + c


def test_score_counts_each_outcome():
    runs = _runs()
    warns = {"add-s1": 2000, "add-s2": 2600, "sub-s1": 3100, "sub-s2": None, "mul-s1": 3000, "mul-s2": 2500,
             "cx-s1": 100, "cx-s2": None, "cy-s1": None, "cy-s2": 5000}
    s = score(runs, warns)
    assert (s.n_grok, s.n_control) == (6, 4)
    assert s.useful == 2  # leads 1000 and 500 (≥ 500); 400 and 0 are too short
    assert sorted(s.leads) == [0, 400, 500, 1000]
    assert (s.late, s.missed, s.false_alarms) == (1, 1, 2)
    assert s.alarmed == ("cx-s1", "cy-s2")
    assert s.value == pytest.approx(2 / 6 - 2 / 4)


def _brute_choose(runs, table):
    best = None
    for i, (c, w) in enumerate(table.items()):
        s = score(runs, w)
        k = (s.value, s.mean_lead if s.leads else -1, -i)
        if best is None or k > best[0]:
            best = (k, c)
    return best[1]


def test_cross_validation_never_sees_the_held_out_group():
    rng = np.random.default_rng(0)
    runs = _runs()
    for trial in range(20):
        table = {f"c{j}": {r.name: (None if rng.random() < 0.3 else int(rng.integers(0, 6) * 500)) for r in runs}
                 for j in range(6)}
        for by in ("op", "seed"):
            cv = cross_validate(runs, table, by=by)
            key = (lambda r: r.op) if by == "op" else (lambda r: str(r.seed))
            for g, c in cv.chosen.items():
                train = [r for r in runs if key(r) != g]
                assert c == _brute_choose(train, table)
                # changing the held-out runs' warnings never changes the choice made without them
                spoiled = {cn: {rn: (0 if any(r.name == rn and key(r) == g for r in runs) else w)
                                for rn, w in ws.items()} for cn, ws in table.items()}
                assert cross_validate(runs, spoiled, by=by).chosen[g] == c
            for r in runs:
                assert cv.warnings[r.name] == table[cv.chosen[key(r)]][r.name]


def test_in_sample_choice_can_beat_cross_validation():
    # "lucky" misses one grokking run; "steady" alarms in one control. In sample lucky wins
    # (5/6 − 0 against 6/6 − 1/4); held out, the choice changes with the fold and the pooled
    # cross-validated score is worse than the in-sample one
    runs = _runs()
    ok = {r.name: (2000 if r.is_grok else None) for r in runs}
    table = {"steady": {**ok, "cx-s1": 100}, "lucky": {**ok, "add-s1": None}}
    assert choose(runs, table) == "lucky"
    cv = cross_validate(runs, table, by="op")
    # without the add runs lucky is perfect; without the x controls steady is; without sub or
    # mul the two tie (3/4 − 0 = 4/4 − 1/4) and the earlier-listed steady is kept
    assert cv.chosen == {"add": "lucky", "mul": "steady", "sub": "steady", "x": "steady", "y": "lucky"}
    assert (cv.score.useful, cv.score.missed, cv.score.false_alarms) == (5, 1, 1)
    assert cv.score.value < score(runs, table["lucky"]).value


def test_final_check_chooses_on_development_runs_only():
    dev, fin = _runs(), [ProtocolRun("f1", [], 3000, "add", 7, "final"), ProtocolRun("f2", [], None, "x", 7, "final")]
    table = {"a": {**{r.name: (2000 if r.is_grok else None) for r in dev}, "f1": None, "f2": 10},
             "b": {**{r.name: None for r in dev}, "f1": 1000, "f2": None}}
    c, s = final_check(dev, fin, table)
    assert c == "a" and (s.useful, s.false_alarms) == (0, 1)


def test_cross_validation_needs_two_groups():
    runs = [ProtocolRun("a", [], 10, "add", 1), ProtocolRun("b", [], None, "add", 1)]
    with pytest.raises(ConfigError, match="two groups"):
        cross_validate(runs, {"c": {"a": 1, "b": None}}, by="op")


def test_warning_table_replays_fresh_detectors():
    # a planted history: validation loss peaks then falls 40% by step 500; grokking at 900
    rows = [{"kind": "log", "step": s, "val_loss": v} for s, v in
            zip(range(0, 1000, 100), [4.0, 4.5, 5.0, 4.8, 4.0, 3.0, 2.0, 1.0, 0.5, 0.1])]
    runs = [ProtocolRun("r", rows, 900, "add", 1)]
    cands = {f"drop{d}": (lambda d=d: GrokAlarm.validation(val_drop=d, persistence=1)) for d in (0.1, 0.35, 0.9)}
    t = warning_table(runs, cands)
    assert t == {"drop0.1": {"r": 400}, "drop0.35": {"r": 500}, "drop0.9": {"r": 800}}
    # a second call gives the same: every replay starts from a fresh detector
    assert warning_table(runs, cands) == t
    assert list(itertools.chain(t)) == list(cands)
