"""Named alarms (recommended, geometry, paper, validation): the geometry conditions, streaming
against replay, resumable state, the run's ``alarm`` setting and summary, ``replay``, the
three-way split in a real run and probe schedules."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.detectors.alarm import ALARM_NAMES, DEFAULT_ALARM, GrokAlarm, make_alarm, replay, replay_events
from spectral_edge.errors import ConfigError
from spectral_edge.experiments import RunConfig, run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _rows(R: list[float], pc1: list[float], defect: list[float], every: int = 100) -> list[dict]:
    """One sed row (ratio at the weighted k* = 1), one manifold row and one defect row per step."""
    rows = []
    for i, (r, p, d) in enumerate(zip(R, pc1, defect)):
        s = (i + 1) * every
        rows += [{"kind": "sed", "step": s, "window": 10, "group": "all", "k_star_weighted": 1, "ratio_1": r,
                  "gap_ratio": r, "g23": 1.0},
                 {"kind": "probe", "probe": "manifold", "step": s, "pc1_pct_mean": p},
                 {"kind": "probe", "probe": "defect", "step": s, "defect": d}]
    return rows


def test_geometry_conditions_each_hold_the_alarm_back():
    n = 12
    defect = [1.0, 1.0, 1.0] + [50.0] * (n - 3)  # onset at record 4 (step 400)
    R = [1.3] * n
    pc1 = [60, 65, 70, 71, 72, 73, 74, 74, 74, 74, 74, 74]
    kw = {"ratio_min": 1.15, "ratio_max": 2.0, "pc1_min": 72.0, "persistence": 1, "ratio_records": 5,
          "pc1_records": 3}
    # R needs 5 records (step 500); the PC1 median of the last 3 records reaches 72 at step 600
    assert replay(_rows(R, pc1, defect), GrokAlarm.geometry(**kw)) == 600
    assert replay(_rows(R, pc1, defect), GrokAlarm.geometry(**{**kw, "persistence": 3})) == 800
    assert replay(_rows([1.1] * n, pc1, defect), GrokAlarm.geometry(**kw)) is None  # R below ratio_min
    assert replay(_rows([2.5] * n, pc1, defect), GrokAlarm.geometry(**kw)) is None  # R above ratio_max
    assert replay(_rows(R, [70] * n, defect), GrokAlarm.geometry(**kw)) is None  # PC1 too low
    assert replay(_rows(R, pc1, [1.0] * n), GrokAlarm.geometry(**kw)) is None  # no defect onset
    # without the defect condition, R and PC1 alone
    assert replay(_rows(R, pc1, [1.0] * n), GrokAlarm.geometry(**{**kw, "defect_factor": None})) == 600
    ev = replay_events(_rows(R, pc1, defect), GrokAlarm.geometry(**kw))[0]
    assert "median R 1.3 (need ≥ 1.15 and ≤ 2)" in ev["reason"] and "PC1 72% (need ≥ 72%)" in ev["reason"]
    assert ev["pc1_median"] == 72 and ev["ratio_median"] == 1.3
    with pytest.raises(ConfigError, match="ratio_min"):
        GrokAlarm(ratio_min=2.5, ratio_max=2.0)


def test_turnaround_conditions_read_the_running_peak_and_low():
    n = 14
    defect = [1.0, 1.0, 1.0] + [50.0] * (n - 3)
    # PC1 climbs to 75 then turns down; R falls to 1.10 then climbs back
    pc1 = [70, 72, 74, 75, 75, 75, 74.8, 74.6, 74.4, 74.2, 74.0, 73.5, 73, 72]
    R = [1.5, 1.4, 1.3, 1.2, 1.15, 1.1, 1.1, 1.1, 1.12, 1.14, 1.16, 1.2, 1.25, 1.3]
    kw = {"ratio_min": None, "ratio_max": None, "pc1_min": None, "persistence": 1, "ratio_records": 1,
          "pc1_records": 1}
    # PC1 0.5 points below its peak of 75 first at record 9 (74.4)
    assert replay(_rows(R, pc1, defect), GrokAlarm.geometry(**kw, pc1_drop=0.5)) == 900
    # R 5% above its low of 1.10 first at record 10 (1.16 ≥ 1.155)
    assert replay(_rows(R, pc1, defect), GrokAlarm.geometry(**kw, ratio_rise=0.05)) == 1100
    both = GrokAlarm.geometry(**kw, pc1_drop=0.5, ratio_rise=0.05)
    ev = replay_events(_rows(R, pc1, defect), both)[0]
    assert ev["step"] == 1100 and "below its peak 75%" in ev["reason"] and "its low 1.1" in ev["reason"]
    with pytest.raises(ConfigError, match="pc1_drop"):
        GrokAlarm(pc1_drop=-1)
    with pytest.raises(ConfigError, match="ratio_rise"):
        GrokAlarm(ratio_rise=0)


def test_geometry_streaming_in_chunks_and_resumed_equals_replay():
    n = 30
    defect = [1.0, 1.2, 0.9] + [5.0 * i for i in range(n - 3)]
    R = [1.1 + 0.05 * (i % 7) for i in range(n)]
    pc1 = [60 + 0.6 * i for i in range(n)]
    rows = _rows(R, pc1, defect)
    kw = {"ratio_min": 1.2, "pc1_min": 70, "persistence": 2, "ratio_rise": 0.01, "pc1_drop": None}
    want = replay(rows, GrokAlarm.geometry(**kw))
    assert want is not None
    det = GrokAlarm.geometry(**kw)
    got = None
    for i in range(0, len(rows), 3):  # one step's rows at a time, resumed from a saved state halfway
        if i == 3 * 10:
            state = json.loads(json.dumps(det.state_dict()))
            det = GrokAlarm.geometry(**kw)
            det.load_state_dict(state)
        for ev in det.update(rows[i:i + 3]):
            got = got or ev["step"]
    assert got == want


def test_make_alarm_names():
    assert DEFAULT_ALARM in ALARM_NAMES
    for name in ALARM_NAMES:
        assert make_alarm(name).alarm == name
    assert make_alarm("validation").val_drop is not None and not make_alarm("validation").use_defect
    assert make_alarm("geometry").val_drop is None and make_alarm("geometry").pc1_min is not None
    assert make_alarm(None).alarm == DEFAULT_ALARM
    assert make_alarm("recommended", persistence=3).persistence == 3
    with pytest.raises(ConfigError, match="unknown alarm"):
        make_alarm("oracle")


TINY = dict(op="add", modulus=11, seed=1, steps=60, eval_every=10, every=5, windows=(3,), batch_size=32,
            model={"d_model": 16, "d_ff": 32, "n_heads": 2}, early_stop=False, threads=1,
            task_options={"val_frac": 0.25})


def test_a_run_with_the_validation_alarm_records_it(tmp_path):
    cfg = RunConfig(**TINY, alarm="validation", lr=3e-3)
    res = run_experiment(cfg, tmp_path / "r")
    s = res.summary
    assert s["alarm"] == "validation"
    logs = [json.loads(x) for x in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    evals = [r for r in logs if r.get("kind") == "log" and "val_loss" in r]
    assert evals and all("test_loss" in r and "val_acc" in r for r in evals)
    assert "3 validation" in s["workload"] or "validation" in s["workload"]
    # replay gives what the live alarm gave
    r = CliRunner().invoke(app, ["replay", str(tmp_path / "r"), "--alarm", "validation", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["alarms"][0]
    assert got["warning_step"] == s["warning_step"]
    if s["warning_step"] is not None:
        assert "val_loss" in got["reason"]


def test_probe_schedule_runs_dense_then_sparse(tmp_path):
    cfg = RunConfig(**TINY, probes={"defect": {"every": [[20, 5], [None, 20]], "batch_size": 16, "n_samples": 1}},
                    alarm="paper")
    run_experiment(cfg, tmp_path / "r")
    rows = [json.loads(x) for x in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r.get("kind") == "probe" and r.get("probe") == "defect"]
    assert steps == [5, 10, 15, 20, 40, 60]
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["probes"]["defect"]["every"] == [[20, 5], [None, 20]]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["alarm"] == "paper"


def test_grok_alarm_flag_adds_the_probes_it_reads(tmp_path):
    r = CliRunner().invoke(app, ["grok", "--modulus", "7", "--steps", "10", "--every", "5", "-w", "2",
                                 "--alarm", "geometry", "--val-frac", "0.2", "--out", str(tmp_path / "g"), "--json",
                                 "--threads", "1"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    assert list(cfg["probes"]) == ["manifold", "defect"] and cfg["alarm"] == "geometry"
    assert cfg["task_options"] == {"val_frac": 0.2}
    assert json.loads(r.stdout)["alarm"] == "geometry"


def test_a_validation_alarm_without_a_validation_split_says_it_reads_the_test_loss(tmp_path, recwarn):
    cfg = RunConfig(**{**TINY, "task_options": {}, "steps": 10}, alarm="validation")
    with pytest.warns(RuntimeWarning, match="no validation split, so it reads the test loss"):
        run_experiment(cfg, tmp_path / "a")
    recwarn.clear()
    run_experiment(RunConfig(**{**TINY, "steps": 10}, alarm="validation"), tmp_path / "b")
    assert not [w for w in recwarn if "validation split" in str(w.message)]


@pytest.mark.parametrize("flags,val_frac", [([], 0.25), (["--alarm", "recommended"], 0.25),
                                            (["--alarm", "geometry"], None), (["--alarm", "none"], None),
                                            (["--val-frac", "0"], None), (["--alarm", "paper", "--val-frac", "0.1"], 0.1)])
def test_grok_carves_a_validation_split_when_its_alarm_reads_the_validation_loss(tmp_path, flags, val_frac):
    from spectral_edge.cli.experiments import GROK_VAL_FRAC

    r = CliRunner().invoke(app, ["grok", "--modulus", "7", "--steps", "5", "--every", "5", "-w", "2", *flags,
                                 "--out", str(tmp_path / "g"), "--quiet", "--threads", "1"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    assert cfg["task_options"].get("val_frac") == val_frac
    if not flags:
        assert val_frac == GROK_VAL_FRAC and cfg["alarm"] is True
    # the default alarm reads the test loss only when the split is refused (--val-frac 0), and says so
    assert ("no validation split" in r.output) == (flags == ["--val-frac", "0"]), r.output
