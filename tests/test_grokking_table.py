"""The grokking reproduction table, on run folders written from planted streams."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from spectral_edge.detectors.alarm import GrokAlarm
from spectral_edge.detectors.synthetic import planted_run
from spectral_edge.experiments.config import RunConfig
from spectral_edge.io.history import HistoryWriter
from spectral_edge.reproduce import claims as cl
from spectral_edge.experiments.suite import SuiteRun
from spectral_edge.reproduce.alarm_documents import render_grokking_doc
from spectral_edge.reproduce.alarm_study import alarm_study, candidates, lead_law
from spectral_edge.detectors.protocol import ProtocolRun, score
from spectral_edge.reproduce.measures import DETECTORS, grokking_rows


@dataclass(frozen=True)
class _Run:
    name: str
    role: str


def _write(folder, planted, op):
    folder.mkdir(parents=True)
    with HistoryWriter(folder / "history.jsonl", {"n_parameters": 100}) as h:
        h.write(planted.rows)
    (folder / "config.json").write_text(json.dumps(RunConfig(op=op).to_dict()))
    (folder / "summary.json").write_text(json.dumps({"grok_step": planted.grok_step, "grok_step_098x3": None,
                                                     "steps_run": 6000, "final_test_acc": 0.5}))


def test_table_scores_planted_runs(tmp_path):
    runs = []
    for i in range(3):
        g = planted_run("grok", seed=i)
        _write(tmp_path / f"add-s{i}", g, "add")
        runs.append(_Run(f"add-s{i}", "grok"))
        c = planted_run("control_nowd", seed=10 + i)
        _write(tmp_path / f"ctl-s{i}", c, "x3xy")
        runs.append(_Run(f"ctl-s{i}", "control"))
    runs.append(_Run("missing", "grok"))  # not run yet: skipped
    dets = {"paper": lambda: GrokAlarm.paper(), "combined": lambda: GrokAlarm()}
    rows = grokking_rows(tmp_path, runs, dets)
    assert [r["run"] for r in rows] == ["add-s0", "ctl-s0", "add-s1", "ctl-s1", "add-s2", "ctl-s2"]
    grok = [r for r in rows if r["role"] == "grok"]
    for r in grok:
        # the planted defect crosses the onset rule 600–1600 steps before the planted grok step
        assert 600 <= r["lead[paper]"] <= 1700
        assert r["g23_decline"] >= 10 and r["peak_defect"] > 20
    runs_p = [ProtocolRun(r["run"], [], r["grok_step"]) for r in rows]
    paper, combined = (score(runs_p, {r["run"]: r[f"warn[{d}]"] for r in rows}) for d in ("paper", "combined"))
    assert paper.false_alarms == 3 and paper.useful == 3  # the caveat: the rule fires on controls
    assert combined.false_alarms < paper.false_alarms


def _with_val_and_pc1(planted, val_drop_at: int | None, pc1: float):
    """The planted rows plus a validation loss (falling from ``val_drop_at`` on) and a manifold PC1%."""
    rows = list(planted.rows)
    for s in sorted({r["step"] for r in planted.rows}):
        v = 4.0 if val_drop_at is None or s < val_drop_at else 4.0 * 0.5 ** ((s - val_drop_at) / 300 + 1)
        rows += [{"kind": "log", "step": s, "val_loss": v},
                 {"kind": "probe", "probe": "manifold", "step": s, "pc1_pct_mean": pc1}]
    return type(planted)(rows, planted.kind, planted.grok_step, planted.onset_step, planted.g23_peak_step)


def test_alarm_study_and_document_on_planted_runs(tmp_path):
    suite = []
    for op, kind in (("add", "grok"), ("sub", "grok"), ("x3xy", "control_nowd"), ("x2xyy2", "control_wd")):
        for seed in (1, 2):
            p = planted_run(kind, seed=seed + 10 * len(suite))
            grok = p.grok_step
            p = _with_val_and_pc1(p, None if grok is None else grok - 700, 74.0 if grok else 65.0)
            name = f"{op}-s{seed}"
            _write(tmp_path / name, p, op)
            suite.append(SuiteRun(name, "grok" if grok else "control", RunConfig(op=op, seed=seed), "dev",
                                  op if grok else "never-grokking op"))
    p = _with_val_and_pc1(planted_run("grok", seed=99), planted_run("grok", seed=99).grok_step - 700, 74.0)
    _write(tmp_path / "final-add", p, "add")
    suite.append(SuiteRun("final-add", "grok", RunConfig(op="add", seed=7), "final", "add"))
    study = alarm_study(tmp_path, suite)
    fams = study["families"]
    # the planted defect crosses the onset rule in every control: the papers' rule alarms in 4/4
    assert fams["paper"]["in_sample"]["false_alarms"] == 4 and fams["paper"]["cv_op"]["false_alarms"] == 4
    # the planted validation drop starts 700 steps before grokking and never in a control
    for f in ("validation", "recommended"):
        cv = fams[f]["cv_op"]
        assert (cv["useful"], cv["n_grok"], cv["false_alarms"]) == (4, 4, 0), f
    # planted PC1 (74 against 65) separates: the geometry alarm needs no validation data to do as well
    g = fams["geometry"]
    assert g["in_sample"]["false_alarms"] == 0 and g["in_sample"]["useful"] == 4
    assert g["settings"]["pc1_min"] is not None
    assert study["default"] in ("recommended", "geometry", "validation")
    assert fams["geometry"]["final"]["n_grok"] == 1
    rows = grokking_rows(tmp_path, suite, DETECTORS)
    text = render_grokking_doc(study, rows, list(DETECTORS))
    assert f"**Default alarm: {study['default']}**" in text
    assert "| papers' onset rule | `onset rule` (of 1) | 4/4 (40–100%) |" in text
    assert "4/4 (40–100%)" in text  # exact interval of 4 out of 4
    assert "| add-s1 | dev | add |" in text and "| final-add | final | add |" in text
    assert "2800–3300" in text  # the papers' grok steps for add are placed beside ours
    assert len(candidates("geometry")) == 3 * (2 * 5 * 4 * 5 - 1) + 3 * 2 * (6 * 4 - 1)


def test_lead_law_is_least_squares_on_the_logs():
    import numpy as np

    rng = np.random.default_rng(3)
    T = rng.uniform(1000, 20000, 12)
    lead = 0.05 * T ** 1.2 * np.exp(0.1 * rng.standard_normal(12))
    rec = lead_law(list(zip(T, lead)))
    slope, icpt = np.polyfit(np.log(T), np.log(lead), 1)
    assert rec["alpha"] == pytest.approx(slope, rel=1e-10) and rec["c"] == pytest.approx(np.exp(icpt), rel=1e-10)
    assert rec["ci"][0] < 1.2 < rec["ci"][1] and rec["n"] == 12
    assert lead_law([(100, 5), (100, 7), (200, 9)])["alpha"] is not None
    assert lead_law([(100, 5), (100, 7)])["alpha"] is None  # too few points
    assert lead_law([(100, 5), (100, -7), (100, 9)])["alpha"] is None  # one T only (negative leads dropped)


def test_g23_claim_row_counts_against_its_threshold_alone():
    m = cl.G23_DECLINE_MIN

    def row(run, role, decline):
        return {"run": run, "task": "modular", "op": "add", "role": role, "weight_decay": 1.0, "steps_run": 6000,
                "grok_step": 3000 if role == "grok" else None, "grok_step_098x3": None, "g23_decline": decline,
                "warn[paper rule]": 2000, "lead[paper rule]": 1000 if role == "grok" else None,
                "R_weighted_pre": 1.4}

    rows = [row("g1", "grok", m + 0.5), row("g2", "grok", m - 0.5), row("c1", "control", m), row("c2", "control", 2.0)]
    (line,) = cl.g23_row(rows)
    assert f"(1/2 ≥ {m}×); controls" in line and f"(1/2 ≥ {m}×) |" in line
    (line,) = cl.g23_row([row("g1", "grok", m + 0.5), row("g2", "grok", m + 0.1), row("c1", "control", m - 0.1)])
    assert f"(2/2 ≥ {m}×)" in line and f"(0/1 ≥ {m}×)" in line
    # the table is the claim rows in order, each computed alone
    table = cl.grokking_claims_table(rows)
    assert table[:2] == ["| claim (papers) | ours | setup |", "|---|---|---|"]
    assert table[2:] == [line for f in cl.GROKKING_CLAIMS for line in f(rows)]
    assert any(r.startswith("| g23 declines") for r in table)
