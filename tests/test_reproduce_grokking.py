"""``spectral-edge reproduce grokking``: the quick suite end to end, resuming, and the no-train mode."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from spectral_edge.cli import app


def test_reproduce_grokking_quick_resume_and_missing_runs(tmp_path):
    out = tmp_path / "runs"
    r = CliRunner().invoke(app, ["reproduce", "grokking", "--out", str(out), "--quick", "--quiet"])
    assert r.exit_code == 0, r.output
    doc = out / "grokking.md"
    text = doc.read_text()
    assert "Quick pipeline check" in text
    from spectral_edge.reproduce.plans import QUICK_RUNS

    names = set(QUICK_RUNS)
    with open(out / "grokking_runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert {row["run"] for row in rows} == names
    for n in names:
        assert f"| {n} |" in text
    assert "Not finished" not in text
    study = json.loads((out / "alarm_study.json").read_text())
    assert set(study["families"]) == {"recommended", "geometry", "paper", "validation"}
    assert f"**Default alarm: {study['default']}**" in text
    # both cross-validations ran (two operations, two seeds among the development runs)
    assert all(study["families"][f]["cv_op"] and study["families"][f]["cv_seed"] for f in study["families"])
    # a second call trains nothing (summaries untouched) and rewrites the same table
    mtimes = {p: p.stat().st_mtime for p in out.glob("*/summary.json")}
    r = CliRunner().invoke(app, ["reproduce", "grokking", "--out", str(out), "--quick", "--json"])
    assert r.exit_code == 0, r.output
    assert {p: p.stat().st_mtime for p in out.glob("*/summary.json")} == mtimes
    got = json.loads(r.stdout)
    assert got["doc"] == str(doc) and {row["run"] for row in got["runs"]} == names
    # --no-train documents what is finished and names what is not
    (out / "x3xy-s42" / "summary.json").unlink()
    r = CliRunner().invoke(app, ["reproduce", "grokking", "--out", str(out), "--quick", "--quiet", "--no-train"])
    assert r.exit_code == 0, r.output
    text = doc.read_text()
    assert "| x3xy-s42 |" not in text and "Not finished" in text and "`x3xy-s42`" in text
    assert not (out / "x3xy-s42" / "summary.json").exists()


def test_reproduce_grokking_no_runs_is_a_one_line_error(tmp_path):
    r = CliRunner().invoke(app, ["reproduce", "grokking", "--out", str(tmp_path), "--no-train", "--no-sweep",
                                 "--doc", str(tmp_path / "g.md")])
    assert r.exit_code == 2
    assert "no finished runs" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "g.md").exists()
