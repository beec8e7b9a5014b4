"""Golden checks of the plain-language summary on planted histories (see test_report.py for
the planted run: R peaks at 2.5 at step 3000, plateau 2500–3500, collapse from 3600)."""

from __future__ import annotations

import json

import pytest
from test_report import planted_run
from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.report import build_report, load_view, summary_facts, summary_sentences
from spectral_edge.report.summary import DEFECT_CAVEAT, summary_caveats

COMMON_HEAD = [
    "41 windows of W = 10 updates (group 'all'), steps 1000 to 5000.",
    "The spectral edge sits at k* = 2 in 100% of windows.",
    "The gap ratio peaks at R = 2.500 at step 3000.",
    "Phases: rise until step 2500; plateau from step 2500 to step 3500; collapse after step 3500.",
    "After the peak, R first falls below 1.20 at step 3600 (collapse event).",
]
COMMON_TAIL = [
    "g23 = σ_2² − σ_3² peaks at step 3000, then falls 5× by step 4000.",
    "Validation loss (test_loss): 3 at the first evaluation, 0.1 at the last, lowest 0.1 at step 4000.",
    "No exact reference in this input (no jl_error column or probe, no exact stream beside the sketched one), "
    "so the JL error of this sketch is not shown.",
]
#: the coupling sentence of the planted run (its numbers are lag_coupling's, tested in test_analysis_coupling.py)
COUPLING = "Coupling: detrended R and test_loss are most anti-correlated at lag "


def _sentences(tmp_path, **kw):
    """(facts, the sentences without the coupling one, caveats); the coupling sentence must be
    there, once, right after the validation-loss sentence."""
    facts = summary_facts(load_view(planted_run(tmp_path / "run", **kw)))
    text = summary_sentences(facts)
    at = [i for i, t in enumerate(text) if t.startswith(COUPLING)]
    if facts.coupling is None:  # too few windows to correlate: no coupling sentence
        assert at == [], text
        return facts, text, summary_caveats(facts)
    assert len(at) == 1 and text[at[0] - 1].startswith("Validation loss (test_loss)"), text
    assert f"lag {facts.coupling['peak_lag']:+d} samples" in text[at[0]]
    return facts, text[:at[0]] + text[at[0] + 1:], summary_caveats(facts)


def test_golden_alarm_800_steps_before_grokking(tmp_path):
    facts, text, caveats = _sentences(tmp_path, grok_at=4000, alarm_at=3200)
    assert text == COMMON_HEAD + [
        "Grokking at step 4000 (first test_acc ≥ 0.9 in the history).",
        "The first alarm fired at step 3200, 800 steps before grokking.",
        "The commutator defect crosses the paper's onset rule (D > 10 × baseline and D > 20) at step 3200.",
    ] + COMMON_TAIL
    assert (facts.lead, facts.warning_before_grok) == (800, True)
    assert DEFECT_CAVEAT in caveats
    assert DEFECT_CAVEAT.startswith("The defect onset is necessary but not sufficient for grokking")
    assert caveats[0].startswith("k* rule 'floor': argmax of σ_j/σ_(j+1) over the modes above a noise floor")
    assert any(c.startswith("Phases: ") and "R ≥ 0.85 × peak" in c for c in caveats)
    assert "The spectra come from a random projection (fold d=100 seed=0); its error is not measured in this input." in caveats


def test_golden_no_alarm(tmp_path):
    facts, text, caveats = _sentences(tmp_path, grok_at=4000, alarm_at=None)
    assert text == COMMON_HEAD + [
        "Grokking at step 4000 (first test_acc ≥ 0.9 in the history).",
        "No alarm fired in this run, so grokking at step 4000 came without warning.",
        "The commutator defect never crosses the paper's onset rule (max D = 3).",
    ] + COMMON_TAIL
    assert facts.lead is None and facts.warning_before_grok is None and facts.alarm_steps == []


def test_golden_no_alarm_and_no_grok(tmp_path):
    _, text, caveats = _sentences(tmp_path, grok_at=None, alarm_at=None, probes=False)
    assert "No alarm fired in this run." in text
    assert "No grok step: test_acc stays below 0.9 (max 0.4)." in text
    assert DEFECT_CAVEAT not in caveats  # nothing about the defect to qualify


def test_golden_alarm_after_grokking(tmp_path):
    facts, text, _ = _sentences(tmp_path, grok_at=4000, alarm_at=4500)
    assert "The first alarm fired at step 4500, 500 steps after grokking: too late to warn." in text
    assert (facts.lead, facts.warning_before_grok) == (-500, False)


def test_golden_warning_from_summary_json(tmp_path):
    facts, text, caveats = _sentences(tmp_path, summary={"grok_step": 4000, "warning_step": 3000})
    assert "Grokking at step 4000 (summary.json)." in text
    assert "The early warning (summary.json) is at step 3000, 1000 steps before grokking." in text
    assert "The first alarm event is at step 3200." in text
    assert not any("stricter rule" in c for c in caveats)  # the runner's grok step, not ours


def test_golden_alarm_without_grok_step(tmp_path):
    _, text, _ = _sentences(tmp_path, grok_at=None, alarm_at=3200)
    assert "The first alarm fired at step 3200; with no grok step there is no lead to measure." in text


def test_summary_is_on_the_page_and_in_json(tmp_path):
    folder = planted_run(tmp_path / "run")
    html = build_report(folder).read_text()
    assert "<li>The first alarm fired at step 3200, 800 steps before grokking.</li>" in html
    assert "<h3>Caveats</h3>" in html
    res = CliRunner().invoke(app, ["report", str(folder), "--json", "--overwrite"])
    facts = json.loads(res.stdout)
    assert facts["lead"] == 800 and facts["alarm_steps"] == [3200] and facts["alarm_detector"] == "defect_onset"
    assert facts["phases"]["plateau_start"] == 2500 and facts["phases"]["plateau_end"] == 3500


@pytest.mark.parametrize("n, expected", [(2, "Only 2 windows: too few to read phases from."), (4, "Only 4 windows")])
def test_few_windows_caveat(tmp_path, n, expected):
    _, text, caveats = _sentences(tmp_path, steps=range(1000, 1000 + 100 * n, 100), grok_at=None, alarm_at=None)
    assert any(c.startswith(expected) for c in caveats)
    if n < 3:
        assert not any(s.startswith("Phases:") for s in text)
