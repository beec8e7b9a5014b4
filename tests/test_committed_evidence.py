"""The evidence behind docs/grokking.md, interventions.md, modes.md and trajectories.md is
committed (docs/data/<study>: config, summary, eval curve and history of every run, no weights;
for the modes also the cached mode analyses, since the snapshots they read are 11 MB a run; for
the trajectories the JL study's results, since its checkpoints are larger still), and each
page is recomputed from it: a copy of the folder through ``spectral-edge reproduce <study>
--no-train`` gives the committed page, byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.experiments.suite import alarm_suite, lead_time_suite, probe_claims_suite
from spectral_edge.reproduce.interventions import interventions_plan
from spectral_edge.reproduce.modes_measures import CACHE
from spectral_edge.reproduce.plans import modes_plan, study_plan
from spectral_edge.reproduce.run import EVIDENCE_FILES

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data"


def _plan_names(study: str) -> set[str]:
    if study == "grokking":
        return {r.name for r in alarm_suite() + lead_time_suite() + probe_claims_suite()}
    if study == "modes":
        return {r.name for r in modes_plan()}
    if study == "trajectories":
        return {r.name for r in study_plan("full").runs}
    base, arms = interventions_plan(DATA / study)
    return {r.name for r in base + arms}


@pytest.mark.parametrize("study", ["grokking", "interventions", "modes", "trajectories"])
def test_evidence_holds_every_run_of_the_page_and_no_weights(study):
    names = _plan_names(study)
    present = {p.name for p in (DATA / study).iterdir() if p.is_dir() and p.name not in (CACHE, "jl")}
    text = (ROOT / "docs" / f"{study}.md").read_text()
    # runs the page lists as not finished may be absent; every other run of the plan is there
    tail = text.split("not finished", 1)[-1] if "not finished" in text.lower() else ""
    missing_on_page = {n for n in names if f"`{n}`" in tail}
    assert names - missing_on_page <= present, sorted(names - missing_on_page - present)
    assert present <= names, sorted(present - names)  # nothing the page does not read
    for folder in present:
        files = {p.name for p in (DATA / study / folder).iterdir()}
        assert files <= set(EVIDENCE_FILES), (folder, files)
        assert {"config.json", "summary.json", "history.jsonl"} <= files, folder


def test_the_grokking_page_is_recomputed_from_the_committed_evidence(tmp_path):
    out = tmp_path / "grokking"
    shutil.copytree(DATA / "grokking", out)
    doc = tmp_path / "grokking.md"
    r = CliRunner().invoke(app, ["reproduce", "grokking", "--out", str(out), "--no-train", "--quiet", "--doc",
                                 str(doc)])
    assert r.exit_code == 0, r.output
    assert doc.read_text() == (ROOT / "docs" / "grokking.md").read_text()


@pytest.mark.parametrize("study,figures", [("interventions", {"interventions_dose.png", "interventions_curves.png"}),
                                           ("modes", {"modes_heatmap.png"}),
                                           ("trajectories", {"trajectories_lm.png", "trajectories_backbone.png",
                                                             "trajectories_text.png"})])
def test_the_page_is_recomputed_from_the_committed_evidence(tmp_path, monkeypatch, study, figures):
    # the page names its runs' folder as given on the command line: the same relative path here
    shutil.copytree(DATA / study, tmp_path / "docs" / "data" / study)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["reproduce", study, "--out", f"docs/data/{study}", "--no-train", "--quiet", "--doc",
                                 f"docs/{study}.md"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "docs" / f"{study}.md").read_text() == (ROOT / "docs" / f"{study}.md").read_text()
    assert {p.name for p in (tmp_path / "docs" / "figures").iterdir()} >= figures


def test_modes_evidence_without_its_cache_is_refused_run_by_run(tmp_path, monkeypatch):
    # without the cached analyses the snapshot-less evidence cannot give modes: every run is
    # reported as failed, none is silently dropped from the page
    shutil.copytree(DATA / "modes", tmp_path / "m", ignore=shutil.ignore_patterns(CACHE))
    r = CliRunner().invoke(app, ["reproduce", "modes", "--out", str(tmp_path / "m"), "--no-train", "--json",
                                 "--doc", str(tmp_path / "m.md")])
    assert r.exit_code == 0, r.output
    import json

    res = json.loads(r.stdout)
    assert res["failed"] and {f["run"] for f in res["failed"]} == _plan_names("modes")
