"""The evidence behind docs/grokking.md is committed (docs/data/grokking: config, summary, eval
curve and history of every run, no weights), and the page is recomputed from it: a copy of the
folder through ``spectral-edge reproduce grokking --no-train`` gives the committed page, byte for
byte."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.experiments.suite import alarm_suite, lead_time_suite

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data" / "grokking"
DOC = ROOT / "docs" / "grokking.md"


def test_evidence_holds_every_run_of_the_page_and_no_weights():
    names = {r.name for r in alarm_suite() + lead_time_suite()}
    present = {p.name for p in DATA.iterdir() if p.is_dir()}
    text = DOC.read_text()
    missing_on_page = {n for n in names if f"`{n}`" in text.split("Not finished", 1)[-1]} if "Not finished" in text \
        else set()
    assert names - missing_on_page <= present, sorted(names - missing_on_page - present)
    for folder in present:
        files = {p.name for p in (DATA / folder).iterdir()}
        assert files <= {"config.json", "summary.json", "eval.csv", "history.jsonl"}, (folder, files)
        assert {"config.json", "summary.json", "history.jsonl"} <= files, folder


def test_the_page_is_recomputed_from_the_committed_evidence(tmp_path):
    out = tmp_path / "grokking"
    shutil.copytree(DATA, out)
    doc = tmp_path / "grokking.md"
    r = CliRunner().invoke(app, ["reproduce", "grokking", "--out", str(out), "--no-train", "--quiet", "--doc",
                                 str(doc)])
    assert r.exit_code == 0, r.output
    assert doc.read_text() == DOC.read_text()
