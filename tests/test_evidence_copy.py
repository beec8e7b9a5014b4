"""``--evidence DIR`` copies each finished run's compact files, and never writes over what is not
earlier evidence of the same runs (a run folder, another run's evidence, a user's README)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.errors import ConfigError
from spectral_edge.reproduce.run import EVIDENCE_FILES, copy_evidence

DATA = Path(__file__).resolve().parent.parent / "docs" / "data" / "interventions"
RUNS = ["iv-add-s42-baseline", "iv-add-s42-kick"]


@pytest.fixture
def out(tmp_path):
    o = tmp_path / "runs"
    for n in RUNS:
        shutil.copytree(DATA / n, o / n)
    (o / RUNS[0] / "model.safetensors").write_bytes(b"weights")  # a run folder holds more than evidence
    return o


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_copies_the_compact_files_only_and_again_in_place(out, tmp_path):
    dest = tmp_path / "ev"
    assert copy_evidence(out, dest, RUNS + ["not-run"], "interventions") == RUNS
    for n in RUNS:
        assert {p.name for p in (dest / n).iterdir()} <= set(EVIDENCE_FILES)
        assert (dest / n / "history.jsonl").read_bytes() == (out / n / "history.jsonl").read_bytes()
    before = _tree(dest)
    assert copy_evidence(out, dest, RUNS, "interventions") == RUNS  # the same runs again: allowed
    assert _tree(dest) == before


@pytest.mark.parametrize("spoil,match", [
    (lambda d: (d / RUNS[0]).mkdir(parents=True) or (d / RUNS[0] / "model.safetensors").write_bytes(b"w"),
     "holds model.safetensors"),
    (lambda d: (d / RUNS[1]).mkdir(parents=True) or (d / RUNS[1] / "config.json").write_text('{"seed": 7}'),
     "another run's config"),
    (lambda d: d.mkdir() or (d / "README.md").write_text("my notes\n"), "not an evidence README"),
    (lambda d: d.write_text("a file"), "is a file"),
])
def test_refuses_to_write_over_what_is_not_its_evidence(out, tmp_path, spoil, match):
    dest = tmp_path / "ev"
    spoil(dest)
    before = _tree(dest) if dest.is_dir() else dest.read_bytes()
    with pytest.raises(ConfigError, match=match):
        copy_evidence(out, dest, RUNS, "interventions")
    assert (_tree(dest) if dest.is_dir() else dest.read_bytes()) == before  # nothing written


def test_the_cli_refusal_is_one_line(tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(DATA, out)
    dest = tmp_path / "ev"
    dest.mkdir()
    (dest / "README.md").write_text("mine\n")
    r = CliRunner().invoke(app, ["reproduce", "interventions", "--out", str(out), "--no-train", "--quiet",
                                 "--doc", str(tmp_path / "iv.md"), "--evidence", str(dest)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not an evidence README" in lines[0], r.output
    assert (dest / "README.md").read_text() == "mine\n" and not (tmp_path / "iv.md").exists()
