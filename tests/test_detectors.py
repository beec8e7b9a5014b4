"""Detectors: the papers' onset rule, the combined alarm on planted streams (leads and false
alarms over seeds), persistence, resume, Monitor integration, replay, Gram-edge signals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from spectral_edge.detectors import (
    GrokAlarm,
    OnsetParams,
    OnsetRule,
    as_rows,
    gram_edge_summary,
    grok_step,
    onset_index,
    ratio_series,
    replay,
    replay_events,
    score_runs,
    series,
)
from spectral_edge.detectors.alarm import evaluate
from spectral_edge.detectors.synthetic import planted_run
from spectral_edge.errors import ConfigError
from spectral_edge.io.history import read_history
from spectral_edge.monitor import Monitor
from spectral_edge.probes.base import Probe


# ---------------------------------------------------------------------- onset rule
def test_onset_rule_on_hand_made_series():
    # baseline = max(median(first 3), 0.1); onset: index ≥ 2, D > 10·baseline and D > 20
    assert onset_index([0.01, 0.02, 0.01, 5, 25]) == 4  # floor 0.1: 5 > 1 but not > 20
    assert onset_index([1, 1, 1, 15, 25]) == 4  # 15 < 20
    assert onset_index([1, 3, 3, 19, 25]) is None  # 25 > 20 but not > 10·3
    assert onset_index([1, 3, 2, 19, 21]) == 4  # 21 > 10·2 and > 20
    assert onset_index([1, 1, 30]) == 2  # index 2 is allowed (baseline includes it: median 1)
    assert onset_index([1, 30, 30, 40]) is None  # the spike is in the baseline: median 30
    assert onset_index([1, None, 1, float("nan"), 1, 50]) == 5  # missing values skipped
    assert onset_index([2, 2, 2, 25], OnsetParams(factor=5, min_defect=10)) == 3
    with pytest.raises(ConfigError):
        OnsetParams(n_baseline=0)


def test_online_rules_equal_the_offline_rule():
    for seed in range(6):
        run = planted_run("grok" if seed % 2 else "control_nowd", seed)
        defect = [r for r in run.rows if r["kind"] == "probe"]
        i = onset_index([r["defect"] for r in defect])
        expected = defect[i]["step"]
        assert expected == run.onset_step  # the planted onset
        assert replay(run.rows, OnsetRule()) == expected
        assert replay(run.rows, GrokAlarm.paper()) == expected
        ev = replay_events(run.rows, OnsetRule())
        assert len(ev) == 1 and ev[0]["event"] == "alarm" and "baseline" in ev[0]["reason"]


# ---------------------------------------------------------------------- combined alarm
def _scores(make, seeds=range(12)):
    """Replay over 12 planted grokking runs and 24 controls; every third no-weight-decay
    control has a strong g23 decline (30×) too, like the papers' one control in twelve."""
    runs = []
    for kind in ("grok", "control_nowd", "control_wd"):
        for seed in seeds:
            decline = 30.0 if kind == "control_nowd" and seed % 3 == 0 else None
            run = planted_run(kind, 1000 * seed + len(kind), decline=decline)
            runs.append((replay(run.rows, make()), run.grok_step))
    return score_runs(runs)


def test_combined_alarm_cuts_false_alarms_and_keeps_most_lead():
    paper, comb = _scores(GrokAlarm.paper), _scores(GrokAlarm)
    assert paper.n_grok == 12 and paper.n_control == 24
    assert paper.false_alarms == 24  # the papers' caveat: controls cross the onset rule too
    assert paper.hits == 12 and 600 <= paper.mean_lead <= 1600
    assert comb.false_alarms <= 2 < paper.false_alarms
    assert comb.hits >= 11 and comb.late == 0  # warns before the grok step
    assert comb.mean_lead >= 0.5 * paper.mean_lead
    # each confirming signal alone is weaker: R cannot reject the controls with weight decay,
    # the g23 decline cannot reject the no-weight-decay controls whose g23 declines
    r_only = _scores(lambda: GrokAlarm(g23_decline=None))
    assert r_only.false_alarms >= 10
    g_only = _scores(lambda: GrokAlarm(ratio_max=None))
    assert g_only.false_alarms >= 3 > comb.false_alarms


def test_confirm_any_and_disabled_signals():
    run = planted_run("control_wd", 3)  # R ≈ 1.4 but no g23 decline
    assert replay(run.rows, GrokAlarm(confirm="any")) is not None  # R alone confirms
    assert replay(run.rows, GrokAlarm(confirm="all")) is None
    g = planted_run("grok", 3)
    no_defect = replay(g.rows, GrokAlarm(defect_factor=None))
    assert no_defect is not None and no_defect <= g.grok_step
    with pytest.raises(ConfigError):
        GrokAlarm(defect_factor=None, g23_decline=None, ratio_max=None)
    with pytest.raises(ConfigError):
        GrokAlarm(confirm="some")
    with pytest.raises(ConfigError):
        GrokAlarm(g23_decline=0.5)


def _rows(defect, g23, ratio=1.4, start=100, every=100):
    rows = []
    for i, (d, g) in enumerate(zip(defect, g23)):
        s = start + i * every
        rows.append({"kind": "sed", "step": s, "group": "all", "window": 10, "g23": g, "gap_ratio": ratio})
        rows.append({"kind": "probe", "probe": "defect", "step": s, "defect": d})
    return rows


def test_persistence_ignores_a_one_record_blip():
    g23 = [10, 10, 10, 10, 1, 10, 10, 1, 1, 1]  # a one-window dip, then a real decline
    defect = [1, 1, 1, 50, 50, 50, 50, 50, 50, 50]
    rows = _rows(defect, g23)
    assert replay(rows, GrokAlarm(persistence=1, g23_smooth=1, ratio_records=1)) == 500
    assert replay(rows, GrokAlarm(persistence=2, g23_smooth=1, ratio_records=1)) == 900
    # median of 3 windows: the blip at 500 ([10, 10, 1]) is ignored; at 900 ([10, 1, 1]) the decline holds
    assert replay(rows, GrokAlarm(persistence=1, g23_smooth=3, ratio_records=1)) == 900
    # a warm-up keeps early windows out of the peak: the peak is then the 10 at step 600
    early = _rows(defect, [100, 100] + g23[2:])
    assert replay(early, GrokAlarm(persistence=1, g23_smooth=1, ratio_records=1)) == 400  # 100 → 10 is 10×
    assert replay(early, GrokAlarm(persistence=1, g23_smooth=1, ratio_records=1, g23_warmup=2)) == 500
    # latched defect vs a defect that must stay high
    defect2 = [1, 1, 1, 50, 2, 2, 2, 2, 2, 2]
    assert replay(_rows(defect2, g23), GrokAlarm(persistence=2, g23_smooth=1, ratio_records=1)) == 900
    assert replay(_rows(defect2, g23), GrokAlarm(persistence=2, g23_smooth=1, ratio_records=1, defect_latch=False)) is None
    # the alarm fires once
    ev = replay_events(rows, GrokAlarm(persistence=1, g23_smooth=1, ratio_records=1))
    assert [e["step"] for e in ev] == [500]
    assert ev[0]["detector"] == "grok_alarm" and ev[0]["g23_factor"] == pytest.approx(10.0)
    assert "defect onset at step 400" in ev[0]["reason"]


def test_ratio_is_read_under_the_weighted_rule_when_rows_carry_it():
    rows = _rows([1, 1, 1, 50, 50], [10, 10, 10, 1, 1], ratio=3.0)  # gap_ratio (monitor's rule) high
    for r in rows:
        if r["kind"] == "sed":
            r.update(k_star_weighted=2, ratio_1=5.0, ratio_2=1.3)  # the papers' weighted R is low
    kw = dict(persistence=1, g23_smooth=1, ratio_records=1)
    assert replay(rows, GrokAlarm(**kw)) == 400
    assert replay(rows, GrokAlarm(ratio_rule=None, **kw)) is None
    a = GrokAlarm(ratio_max=1.8, persistence=3, **{k: v for k, v in kw.items() if k != "persistence"})
    assert GrokAlarm(**a.params()).params() == a.params()  # params() reproduces the detector
    assert a.params()["ratio_rule"] == "weighted" and a.params()["ratio_max"] == 1.8


def test_resume_equals_uninterrupted_and_window_filtering():
    run = planted_run("grok", 7)
    full = replay(run.rows, GrokAlarm())
    cut = next(i for i, r in enumerate(run.rows) if r["step"] > 1800)
    a = GrokAlarm()
    a.update(run.rows[:cut])
    b = GrokAlarm()
    b.load_state_dict(a.state_dict())
    ev = b.update(run.rows[cut:])
    assert ev and ev[0]["step"] == full
    # rows of other windows/groups are ignored: doubling the stream with W = 20 junk changes nothing
    junk = [dict(r, window=20, g23=1e9, gap_ratio=9.0) for r in run.rows if r["kind"] == "sed"]
    junk += [dict(r, group="layer.0", g23=1e9) for r in run.rows if r["kind"] == "sed"]
    assert replay(run.rows + junk, GrokAlarm(window=10)) == full


class _Replayer(Probe):
    """Feeds planted defect values through a real Monitor (as a probe would)."""

    name = "defect"

    def __init__(self, values, every):
        super().__init__(every)
        self.values = values

    def run(self, ctx):
        return {"defect": self.values[ctx.step // self.every - 1]}


def test_alarm_inside_a_monitor_is_recorded_and_replays_from_the_history(tmp_path):
    values = [1.0, 1.2, 0.9, 1.1, 30.0, 40.0, 45.0, 50.0]
    det = GrokAlarm.paper()
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, every=2, windows=(2,), sketch="exact", probes=[_Replayer(values, 2)], detectors=[det],
                  history=tmp_path / "h.jsonl")
    mon.attach(opt)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    for _ in range(16):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    mon.close()
    events = [r for r in mon.rows if r["kind"] == "event"]
    assert len(events) == 1 and events[0]["step"] == 10 and events[0]["detector"] == "onset_rule"
    assert mon.state_dict()["detectors"]["onset_rule"]["fired_step"] == 10
    df = read_history(tmp_path / "h.jsonl")
    assert replay(df, GrokAlarm.paper()) == 10  # a DataFrame with NaN cells replays the same
    assert replay(df, OnsetRule()) == 10


# ---------------------------------------------------------------------- signals
def test_gram_edge_summary_on_hand_made_rows():
    g23 = [2.0, 8.0, 6.0, 3.0, 1.0, 0.25, 0.2, 0.3]
    R = [1.3, 1.5, 1.4, 1.4, 1.2, 1.6, 1.1, 1.0]
    rows = []
    for i, (g, r) in enumerate(zip(g23, R)):
        s = 100 * (i + 1)
        rows.append({"kind": "sed", "step": s, "group": "all", "window": 5, "g23": g, "gap_ratio": r})
        rows.append({"kind": "sed", "step": s, "group": "all", "window": 10, "g23": 99.0, "gap_ratio": 9.0})
        rows.append({"kind": "log", "step": s, "test_acc": 0.1 if s < 650 else 0.95})
    assert grok_step(rows) == 700
    sm = gram_edge_summary(rows)
    assert (sm.peak_step, sm.peak_g23) == (200, 8.0)
    assert (sm.ref_step, sm.g23_at_ref) == (700, 0.2)
    assert sm.decline == pytest.approx(40.0)
    assert sm.ratio_pre == pytest.approx(np.mean(R[:6]))
    assert sm.ratio_at_ref == 1.1 and sm.ratio_final == 1.0
    # an explicit grok step and the DataFrame form agree; no grok: the last window is the reference
    df = pd.DataFrame(rows)
    assert gram_edge_summary(df, 500).decline == pytest.approx(8.0 / 1.0)
    ctrl = gram_edge_summary([r for r in rows if r["kind"] == "sed"])
    assert ctrl.grok_step is None and ctrl.decline == pytest.approx(8.0 / 0.3)
    s, v = series(df, "g23", window=10)
    assert s.tolist() == [100 * (i + 1) for i in range(8)] and set(v) == {99.0}
    assert series(rows, "g23")[1].tolist() == g23  # default: the smallest window


def test_ratio_series_recomputes_r_under_a_rule_and_grok_step_keys():
    rows = [{"kind": "sed", "step": 100, "group": "all", "window": 4, "k_star_weighted": 2, "ratio_1": 1.1,
             "ratio_2": 3.0, "ratio_3": 1.2},
            {"kind": "sed", "step": 200, "group": "all", "window": 4, "k_star_weighted": 1, "ratio_1": 1.5,
             "ratio_2": 1.0, "ratio_3": 1.2}]
    s, v = ratio_series(rows, "weighted")
    assert s.tolist() == [100, 200] and v.tolist() == [3.0, 1.5]
    logs = [{"kind": "log", "step": 5, "val_acc": 0.5}, {"kind": "log", "step": 9, "val_acc": 0.92}]
    assert grok_step(logs) == 9 and grok_step(logs, threshold=0.95) is None
    with pytest.raises(ConfigError):
        grok_step(logs, key="nope")
    assert as_rows(pd.DataFrame([{"a": 1.0, "b": math.nan}])) == [{"a": 1.0}]


def test_planted_streams_follow_the_papers_numbers():
    for seed in range(8):
        g = planted_run("grok", seed)
        sm = gram_edge_summary(g.rows)
        assert sm.grok_step == g.grok_step and 600 <= g.grok_step - g.onset_step <= 1600
        assert sm.decline > 5
        c = planted_run("control_nowd", seed)
        assert gram_edge_summary(c.rows).decline < 5 and 2.0 < gram_edge_summary(c.rows).ratio_pre < 3.6
    sc = evaluate([(planted_run("grok", s).rows, planted_run("grok", s).grok_step) for s in range(3)], GrokAlarm)
    assert sc.n_grok == 3 and sc.hits == 3
    with pytest.raises(ConfigError):
        planted_run("nope")


def _val_stream(decline: bool, onset_step: int = 1500, steps: int = 4000):
    """Defect crosses the onset rule at ``onset_step``; the validation loss plateaus, and in the
    grokking case falls by 40% from step 1800."""
    rows = []
    for s in range(100, steps + 1, 100):
        rows.append({"kind": "probe", "probe": "defect", "step": s, "defect": 2.0 if s < onset_step else 60.0})
        val = 8.0 if (not decline or s < 1800) else 8.0 * (1 - min(0.4, (s - 1800) / 1000))
        rows.append({"kind": "log", "step": s, "test_loss": val, "test_acc": 0.01})
    return rows


def test_validation_drop_confirms_the_defect_onset():
    from spectral_edge.detectors.alarm import GrokAlarm, replay

    det = lambda: GrokAlarm(g23_decline=None, ratio_max=None, val_drop=0.15, persistence=1)  # noqa: E731
    # 15% below the 8.0 plateau is reached when (s − 1800)/1000 ≥ 0.15, i.e. at step 1950 → first record 2000
    assert replay(_val_stream(True), det()) == 2000
    assert replay(_val_stream(False), det()) is None  # the defect alone does not fire it
    assert replay(_val_stream(False), GrokAlarm.paper()) == 1500  # the papers' rule does
    # state round trip in the middle of the stream
    a, b = det(), det()
    rows = _val_stream(True)
    a.update(rows[:30])
    b.load_state_dict(a.state_dict())
    assert a.update(rows[30:]) == b.update(rows[30:])


def test_recommended_alarm_is_the_defect_onset_confirmed_by_the_validation_drop():
    from spectral_edge.detectors.alarm import GrokAlarm, replay

    rec = GrokAlarm.recommended()
    p = rec.params()
    assert p["val_drop"] == 0.15 and p["g23_decline"] is None and p["ratio_max"] is None and p["persistence"] == 1
    # 15% below the 8.0 plateau is reached at step 1950 → first record 2000
    assert replay(_val_stream(True), GrokAlarm.recommended()) == 2000
    assert replay(_val_stream(True), GrokAlarm.recommended(val_drop=0.25)) == 2100
    assert replay(_val_stream(False), GrokAlarm.recommended()) is None
    assert GrokAlarm.recommended(val_drop=0.3).params()["val_drop"] == 0.3


def test_validation_alarm_defaults_need_two_records_of_a_ten_percent_drop():
    from spectral_edge.detectors.alarm import GrokAlarm, replay

    p = GrokAlarm.validation().params()
    assert p["val_drop"] == 0.1 and p["persistence"] == 2 and p["defect_factor"] is None
    # the loss is 10% below the 8.0 plateau at step 1900 (within rounding: 0.0999…), 20% at 2000,
    # held at 2100: the default fires at 2100, with or without a defect onset
    assert replay(_val_stream(True, onset_step=10_000), GrokAlarm.validation()) == 2100
    assert replay(_val_stream(True), GrokAlarm.validation(val_drop=0.08)) == 2000
    assert replay(_val_stream(True), GrokAlarm.validation(val_drop=0.08, persistence=1)) == 1900
    assert replay(_val_stream(False), GrokAlarm.validation()) is None
