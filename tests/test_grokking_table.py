"""The grokking reproduction table, on run folders written from planted streams."""

from __future__ import annotations

import json
from dataclasses import dataclass

from spectral_edge.detectors.alarm import GrokAlarm
from spectral_edge.detectors.synthetic import planted_run
from spectral_edge.experiments.config import RunConfig
from spectral_edge.io.history import HistoryWriter
from spectral_edge.reproduce import claims as cl
from spectral_edge.reproduce.documents import write_grokking_doc
from spectral_edge.reproduce.measures import grokking_rows, score


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
    paper, combined = score(rows, "paper"), score(rows, "combined")
    assert paper["false_alarms"] == 3 and paper["leads_ge_min"] == 3  # the caveat: the rule fires on controls
    assert combined["false_alarms"] < paper["false_alarms"]
    doc = write_grokking_doc(rows, tmp_path / "doc.md", setup="planted streams", detectors=["paper", "combined"])
    text = doc.read_text()
    assert "| paper | 3/3 |" in text and "3/3 | ctl-s0, ctl-s1, ctl-s2 |" in text
    assert "2800–3300" in text  # the papers' grok steps for add are placed beside ours


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
