"""``spectral-edge reproduce interventions``: the verdict rules on hand-made rows (each rule can
come out either way), the grok criterion on a real run folder, and the whole pipeline at
``--quick`` scale (train, measure, judge, write the document and its figures)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.reproduce.interventions import (MODULAR_BUDGET, PROJECT_STRENGTHS, RANK_ARMS,
                                                   interventions_claims, interventions_plan, project_arm)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _rows(task: str, steps: dict[str, list[int | None]]) -> list[dict]:
    """One row per (arm, seed) with the given grok steps (None: no grok)."""
    return [{"task": task, "seed": s, "arm": arm, "grok": g, "budget": MODULAR_BUDGET, "curve": {"steps": [], "acc": []}}
            for arm, gs in steps.items() for s, g in zip((42, 137, 2024), gs)]


def _verdicts(rows) -> dict[str, str]:
    return {c.key: c.verdict for c in interventions_claims(rows)}


BASE = [3000, 3200, 3100]


def test_dose_response_rules_both_ways():
    mono = {"baseline": BASE, **{project_arm(s): [int(3000 * (1 + s))] * 3 for s in PROJECT_STRENGTHS[:-1]},
            project_arm(1.0): [None] * 3}
    assert _verdicts(_rows("modular", mono))["dose"] == "reproduced"
    slows = {**mono, project_arm(1.0): [7000, 7000, 7000]}
    assert _verdicts(_rows("modular", slows))["dose"] == "partly"
    bumpy = {**mono, project_arm(0.5): [1000, 1000, 1000]}
    assert _verdicts(_rows("modular", bumpy))["dose"] == "not reproduced"
    assert _verdicts(_rows("modular", {"baseline": BASE}))["dose"] == "not tested"


def test_amplification_and_rank_rules():
    same = {"baseline": BASE, "kick": [3100, 3150, 3000], "noise": [2900, 3300, 3100]}
    assert _verdicts(_rows("modular", same))["amplify_modular"] == "reproduced"
    faster = {**same, "kick": [1500, 1500, 1500]}
    assert _verdicts(_rows("modular", faster))["amplify_modular"] == "not reproduced"
    rank = {"baseline": BASE, "keep-sed": [1400, 1500, 1450], "keep-random": [1450, 1400, 1500],
            "remove-sed": BASE, "remove-random": BASE}
    v = _verdicts(_rows("modular", rank))
    assert v["rank_speedup"] == "reproduced" and v["rank_specific"].startswith("not reproduced")
    specific = {**rank, "keep-random": BASE}
    assert _verdicts(_rows("modular", specific))["rank_specific"] == "reproduced"


def test_dyck_rule():
    rows = _rows("dyck", {"baseline": [400, 500, 450], "kick": [200, 250, 220], "noise": [250, 300, 260],
                          "project": [900, 1000, 950]})
    assert _verdicts(rows)["dyck"] == "reproduced"
    rows = _rows("dyck", {"baseline": [400, 500, 450], "kick": [400, 500, 450], "noise": [400, 500, 450],
                          "project": [900, 1000, 950]})
    assert _verdicts(rows)["dyck"] == "partly"


def test_the_plan_points_each_arm_at_its_seeds_baseline(tmp_path):
    base, arms = interventions_plan(tmp_path)
    assert [r.name for r in base][:3] == ["iv-add-s42-baseline", "iv-add-s137-baseline", "iv-add-s2024-baseline"]
    assert all(r.config.checkpoint_every > 0 and r.config.probes == {} for r in base)  # B over the whole run
    for r in arms:
        iv = r.config.intervention
        if iv["kind"] in RANK_ARMS:
            assert "basis_from" not in iv
        else:
            seed = r.config.seed
            want = f"iv-{'add' if r.config.task == 'modular' else 'dyck'}-s{seed}-baseline"
            assert iv["basis_from"] == str((tmp_path / want).resolve())
    assert len([r for r in arms if r.config.task == "modular"]) == 3 * (2 + len(PROJECT_STRENGTHS) + len(RANK_ARMS))


@pytest.mark.slow
def test_quick_pipeline_writes_the_document(tmp_path):
    out = tmp_path / "iv"
    res = CliRunner().invoke(app, ["reproduce", "interventions", "--quick", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["missing"] == [] and {c["key"] for c in rec["claims"]} >= {"dose", "rank_speedup", "dyck", "scan"}
    doc = (out / "interventions.md").read_text()
    assert "Quick pipeline check" in doc and "| baseline |" in doc and "| project-0.5 |" in doc
    assert (out / "figures" / "interventions_curves.png").stat().st_size > 5000
    saved = json.loads((out / "interventions_results.json").read_text())
    ran = {r["run"]: r for r in saved["rows"]}
    assert ran["iv-add-s42-project-0.5"]["intervention"]["kind"] == "project"
    assert ran["iv-add-s42-project-0.5"]["intervention"]["basis_from"] == str((out / "iv-add-s42-baseline").resolve())
    # a second call trains nothing and writes the same verdicts
    again = CliRunner().invoke(app, ["reproduce", "interventions", "--quick", "--out", str(out), "--no-train",
                                     "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["claims"] == rec["claims"]
