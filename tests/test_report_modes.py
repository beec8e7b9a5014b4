"""The report's "Functional modes" section: present for a modular run that kept snapshots (its
numbers are run_modes' numbers), absent — with a note — for a modular run without them, absent
silently for other runs; a newer modes.json from `spectral-edge modes --out` is read instead of
computing; a damaged snapshots file does not stop the report; the caption says what is drawn
and nothing else (the drawing function is the one `spectral-edge modes --plot` uses)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from test_modes import make_modes_run  # noqa: E402  (tests/ is on the path, as for badinput)

from spectral_edge.analysis.modes import ModesConfig, run_modes  # noqa: E402
from spectral_edge.report.build import write_report  # noqa: E402
from spectral_edge.report.load import load_view  # noqa: E402
from spectral_edge.report.modes_figures import draw_modes, modes_caption  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _with_evals(folder: Path) -> Path:
    """A report needs something to plot beside the modes: an evaluation curve."""
    (folder / "eval.csv").write_text("step,train_loss,train_acc,test_loss,test_acc\n"
                                     "0,3.1,0.05,3.1,0.04\n20,1.0,0.6,2.9,0.1\n42,0.1,1.0,2.0,0.3\n")
    return folder


@pytest.fixture(scope="module")
def modes_run(tmp_path_factory):
    return _with_evals(make_modes_run(tmp_path_factory.mktemp("report-modes") / "add"))


def _copy(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in skip and f.name != "report.html":
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _section(html: str) -> str:
    m = re.search(r'<section id="fig-modes".*?</section>', html, flags=re.S)
    return m.group(0) if m else ""


def _caption(html: str) -> str:
    m = re.search(r"<figcaption>(.*?)</figcaption>", _section(html), flags=re.S)
    return m.group(1) if m else ""


def test_report_of_a_run_with_snapshots_has_the_modes_of_run_modes(modes_run, tmp_path):
    path, facts = write_report(modes_run, tmp_path / "r.html")
    html = path.read_text()
    sec = _section(html)
    assert sec and 'href="#fig-modes"' in html and "<svg" in sec
    res = run_modes(modes_run, ModesConfig())  # the defaults the report uses
    m = facts.modes
    assert m["op"] == "add" and m["step"] == res.step and m["window"] == 20 and m["centred"] is True
    assert [r["direction"] for r in m["directions"]] == [d.label for d in res.directions]
    for row, d in zip(m["directions"], res.directions):
        best = d.bases[d.best_basis]
        assert row["role"] == d.role and row["best_basis"] == d.best_basis
        assert row["omega"] == best.omega and row["F"] == best.F and row["ratio_to_uniform"] == best.ratio_to_uniform
        assert row["F_basis"] == d.bases["add"].F and row["sigma"] == d.sigma
    assert m["summary"]["edge"]["F_mean"] == res.summary["edge"]["F_mean"]
    assert m["summary"]["nulls"] == pytest.approx(res.summary["nulls"])
    # the table shows those numbers, edge beside the bulk and random nulls
    cells = re.findall(r"<tr>(.*?)</tr>", sec)
    assert len(cells) == 1 + len(res.directions)
    first = re.findall(r"<td[^>]*>(.*?)</td>", cells[1])
    v1 = res.directions[0]
    assert first[:2] == ["v1", "edge"] and first[5] == f"{v1.bases[v1.best_basis].F:.3f}"
    assert {"edge", "bulk", "random"} <= {re.findall(r"<td[^>]*>(.*?)</td>", c)[1] for c in cells[1:]}
    # the per-run claims in words, with the null comparison
    e, r = res.summary["edge"]["F_mean"], res.summary["nulls"]["random_F_mean"]
    assert f"F = {e:.3f}" in sec and f"random directions&#x27; {r:.3f}" in sec and "Addition: v1–v3 peak" in sec
    # the JSON data block carries the same facts
    data = json.loads(re.search(r'<script type="application/json" id="se-facts">(.*?)</script>', html, re.S).group(1))
    assert data["modes"]["summary"]["edge"]["F_mean"] == pytest.approx(e)
    # the caption describes what is drawn: the add-basis spectra of every direction and v1's heat map
    cap = _caption(html)
    assert "add basis" in cap and "v1–v3" in cap and "v4–v8" in cap and "5 random unit directions" in cap
    assert "heat map of f_1(a, b)" in cap.lower() and "Right:" in cap


def test_a_modular_run_without_snapshots_has_no_section_but_a_note(modes_run, tmp_path):
    run = _copy(modes_run, tmp_path / "old", skip=("snapshots.safetensors",))
    path, facts = write_report(run, tmp_path / "r.html")
    html = path.read_text()
    assert facts.modes is None and not _section(html) and "fig-modes" not in html
    assert any("snapshots.safetensors" in n and "no functional modes" in n for n in facts.notes)
    assert "no functional modes section" in html


def test_a_non_modular_run_gets_neither_section_nor_note(modes_run, tmp_path):
    run = _copy(modes_run, tmp_path / "dyck")
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "task": "dyck"}))
    view = load_view(run)
    assert view.modes is None and view.modes_error is None and not any("modes" in n for n in view.notes)
    # a lone history or table (no config.json) neither
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "eval.csv").write_text((modes_run / "eval.csv").read_text())
    assert load_view(alone).modes is None


def test_a_newer_modes_json_is_read_instead_and_an_older_one_is_not(modes_run, tmp_path):
    from badinput import run as cli

    run = _copy(modes_run, tmp_path / "run")
    res = cli(["modes", run, "--uncentred", "--random", "2", "--out", run / "modes.json", "--quiet"])
    assert res.exit_code == 0, res.output
    path, facts = write_report(run, tmp_path / "r.html")
    m = facts.modes
    assert m["centred"] is False and "modes.json" in m["origin"]
    assert [r["direction"] for r in m["directions"]][-2:] == ["r1", "r2"]
    saved = json.loads((run / "modes.json").read_text())
    assert m["summary"]["edge"]["F_mean"] == saved["summary"]["edge"]["F_mean"]
    # the file has spectra but no response field: the spectra are drawn, no heat map, and the caption says so
    cap = _caption(path.read_text())
    assert "2 random unit directions" in cap and "heat map" not in cap.lower() and "Right:" not in cap
    # older than the snapshots: computed again (the defaults), with a note
    old = (run / "snapshots.safetensors").stat().st_mtime_ns - 10**9
    os.utime(run / "modes.json", ns=(old, old))
    _, facts = write_report(run, tmp_path / "r2.html")
    assert facts.modes["centred"] is True and "computed" in facts.modes["origin"]
    assert any("modes.json is older" in n for n in facts.notes)
    # not a result of spectral-edge modes: computed again, with a note; the file is left as it is
    (run / "modes.json").write_text('{"directions": 3}')
    _, facts = write_report(run, tmp_path / "r3.html")
    assert facts.modes["centred"] is True and any("not a result of spectral-edge modes" in n for n in facts.notes)
    assert (run / "modes.json").read_text() == '{"directions": 3}'


def test_a_damaged_snapshots_file_does_not_stop_the_report(modes_run, tmp_path):
    run = _copy(modes_run, tmp_path / "bad")
    data = (run / "snapshots.safetensors").read_bytes()
    (run / "snapshots.safetensors").write_bytes(data[: len(data) // 2])
    path, facts = write_report(run, tmp_path / "r.html")
    sec = _section(path.read_text())
    assert "could not be computed" in sec and "snapshots.safetensors" in sec and "<svg" not in sec
    assert facts.modes == {"error": facts.modes["error"]} and "snapshots.safetensors" in facts.modes["error"]


def test_a_run_with_fewer_snapshots_uses_a_shorter_window(tmp_path):
    run = _with_evals(make_modes_run(tmp_path / "short", n_snapshots=11))
    _, facts = write_report(run, tmp_path / "r.html")
    assert facts.modes["window"] == 10 and any("W = 10" in n and "11 snapshots" in n for n in facts.notes)


def _record(n_edge=3, n_bulk=2, n_random=0, basis="add", period=11, flat=()):
    rng = np.random.default_rng(0)
    dirs = []
    for role, n in (("edge", n_edge), ("bulk", n_bulk), ("random", n_random)):
        for k in range(1, n + 1):
            s = rng.random(period // 2)
            s /= s.sum()
            omega = None if (role, k) in flat else int(np.argmax(s)) + 1
            dirs.append({"k": k if role == "random" else len(dirs) + 1, "role": role, "best_basis": basis,
                         "bases": {basis: {"omega": omega, "F": float(s.max()), "shares": list(map(float, s))}}})
    return {"directions": dirs, "summary": {"basis": basis}, "modulus": period}


@pytest.mark.parametrize("n_random,fields,flat", [(0, (), ()), (4, ("v1",), ()), (2, ("v1", "v2"), ()),
                                                   (0, ("v1",), (("bulk", 2),))])
def test_the_caption_follows_what_is_drawn(n_random, fields, flat):
    from matplotlib.figure import Figure

    rec = _record(n_random=n_random, flat=flat)
    fmap = {lab: np.ones((11, 11)) for lab in fields}
    drawing = draw_modes(Figure(), rec, fmap)
    cap = modes_caption(drawing)
    assert ("random" in cap) == bool(n_random)
    if n_random:
        assert f"{n_random} random unit directions" in cap and drawing.lines["random"] == tuple(
            f"r{k}" for k in range(1, n_random + 1))
    assert ("heat map" in cap.lower()) == bool(fields)
    assert ("Right:" in cap) == (len(fields) == 1) and ("Bottom:" in cap) == (len(fields) > 1)
    for lab in fields:
        assert lab in cap
    # a direction without power is not drawn and not named
    assert drawing.lines["bulk"] == (("v4",) if flat else ("v4", "v5"))
    assert ("v5" in cap) == (not flat) and drawing.heatmaps == tuple(fields)
    assert "1/5" in cap  # the flat level of 5 frequencies (period 11)


def test_only_fields_are_drawn_no_spectra():
    from matplotlib.figure import Figure

    rec = _record(n_edge=1, n_bulk=0, flat=(("edge", 1),))
    drawing = draw_modes(Figure(), rec, {"v1": np.zeros((11, 11))})
    cap = modes_caption(drawing)
    assert drawing.basis is None and "spectrum" not in cap and cap.startswith("Heat map of f_1")


def test_the_modes_command_draws_with_the_reports_function(modes_run, tmp_path, monkeypatch):
    from badinput import run as cli

    import spectral_edge.report.modes_figures as mf

    calls = []
    real = mf.draw_modes

    def spy(fig, record, fields=None, **kw):
        calls.append((sorted(fields or {}), kw))
        return real(fig, record, fields, **kw)

    monkeypatch.setattr(mf, "draw_modes", spy)
    res = cli(["modes", modes_run, "--random", "1", "--plot", tmp_path / "m.svg", "--quiet"])
    assert res.exit_code == 0, res.output
    assert calls and calls[0][0] == ["v1", "v2", "v3"]  # every edge direction's heat map
    assert (tmp_path / "m.svg").read_text().lstrip().startswith("<?xml")
