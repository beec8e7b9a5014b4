"""Reports: data loading, degenerate inputs, figures, the page, comparisons, the CLI.

Inputs are written by the tests: a real (tiny) training run under the Monitor, and planted
histories (HistoryWriter) whose peak, phases, grok step and alarm are known exactly.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.errors import ConfigError
from spectral_edge.io.history import HistoryWriter, read_history
from spectral_edge.io.tables import write_table
from spectral_edge.monitor import Monitor
from spectral_edge.report import build_comparison, build_report, compute_phases, load_view
from spectral_edge.report.view import defect_onset

# ---------------------------------------------------------------------------- planted runs
EVERY = 100
RISE, PLATEAU, COLLAPSE = range(1000, 2500, EVERY), range(2500, 3600, EVERY), range(3600, 5100, EVERY)
PEAK_STEP, PEAK_R = 3000, 2.5


def planted_ratio(step: int) -> float:
    """R(t): rises 1.3 → 2.0, plateau 2.2…2.5 (peak 2.5 at step 3000), collapses to 1.1."""
    if step in RISE:
        return 1.3 + 0.7 * (step - RISE.start) / (RISE.stop - EVERY - RISE.start)
    if step in PLATEAU:
        return PEAK_R - 0.3 * abs(step - PEAK_STEP) / 600
    return 1.1


def sed_row(step: int, window: int = 10, r: float | None = None, k: int = 2, group: str = "all", **extra) -> dict:
    """A `sed` row with σ planted so that σ_k/σ_(k+1) = r (k* = 2 by default)."""
    r = planted_ratio(step) if r is None else r
    sig = [10.0, 8.0][:k] + [8.0 / r]
    while len(sig) < window:
        sig.append(sig[-1] / 1.05)
    row = {"kind": "sed", "step": step, "step_first": step - window * EVERY, "group": group, "window": window,
           "k_star": k, "k_star_rule": "floor", "gap_ratio": r, "gap": sig[k - 1] - sig[k],
           "g23": sig[1] ** 2 - sig[2] ** 2, "pc1_pct": 50.0, "k95": 4, "drift_speed": 0.1, "turning": 0.9}
    row.update({f"sigma_{j + 1}": s for j, s in enumerate(sig)})
    row.update({f"ratio_{j + 1}": sig[j] / sig[j + 1] for j in range(window - 1)})
    row.update(extra)
    return row


def planted_run(folder: Path, *, steps=None, windows=(10,), grok_at: int | None = 4000, alarm_at: int | None = 3200,
                evals: bool = True, probes: bool = True, summary: dict | None = None, sketch: str = "fold",
                extra_rows=(), sed: bool = True) -> Path:
    """A run folder with a planted history (and summary.json when ``summary`` is given)."""
    folder.mkdir(parents=True, exist_ok=True)
    steps = list(steps if steps is not None else [*RISE, *PLATEAU, *COLLAPSE])
    meta = {"library": "spectral-edge", "config": {"windows": list(windows), "kstar_rule": "floor",
                                                   "sketch": {"family": sketch, "dim": 100, "seed": 0}}}
    rows = []
    for s in steps:
        if sed:
            rows += [sed_row(s, w) for w in windows]
        if evals:
            acc = 0.99 if grok_at is not None and s >= grok_at else 0.3 + 0.1 * (s / 5000)
            rows.append({"kind": "log", "step": s, "lr": 1e-3, "train_loss": 0.01, "train_acc": 1.0,
                         "test_loss": 0.1 if acc > 0.9 else 3.0, "test_acc": acc})
        if probes:
            d = 60.0 if alarm_at is not None and s >= alarm_at else 1.0 + 0.01 * (s % 300)
            rows.append({"kind": "probe", "probe": "defect", "step": s, "defect": d, "samples": 5})
        if alarm_at is not None and s == alarm_at:
            rows.append({"kind": "event", "step": s, "event": "alarm", "detector": "defect_onset",
                         "reason": "defect 60 > 10 × baseline 1 and > 20"})
    rows += list(extra_rows)
    with HistoryWriter(folder / "history.jsonl", meta, fsync=False) as w:
        w.write(rows)
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def svg_count(html: str) -> int:
    return html.count("<svg")


def assert_offline(html: str) -> None:
    """No network reference of any kind; every href is an in-page anchor; no src attributes."""
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert not re.search(r"\bsrc\s*=", html)
    for href in re.findall(r'\bhref\s*=\s*"([^"]*)"', html):
        assert href.startswith("#"), href
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate ids across inline figures"


# ---------------------------------------------------------------------------- a real run
def _monitor_run(folder: Path, steps: int = 48) -> Path:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(96, 8, generator=g), torch.randint(0, 3, (96,), generator=g)
    Xtr, ytr, Xte, yte = X[:64], y[:64], X[64:], y[64:]
    mon = Monitor(model, windows=(5, 8), every=2, history=folder / "history.jsonl")
    mon.attach(opt)
    for i in range(1, steps + 1):
        loss = torch.nn.functional.cross_entropy(model(Xtr), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % 4 == 0:
            with torch.no_grad():
                mon.log(train_loss=loss.item(), train_acc=(model(Xtr).argmax(1) == ytr).float().mean().item(),
                        test_acc=(model(Xte).argmax(1) == yte).float().mean().item())
    mon.close()
    return folder


@pytest.fixture(scope="module")
def monitor_run(tmp_path_factory) -> Path:
    return _monitor_run(tmp_path_factory.mktemp("monitor") / "run")


def test_report_of_a_monitored_training_run(monitor_run, tmp_path):
    out = build_report(monitor_run, out=tmp_path / "r.html", window=8)
    html = out.read_text()
    assert_offline(html)
    # spectrum, edge, evaluation and g23 are drawn; no defect probe, no JL reference (exact windows)
    assert svg_count(html) == 4
    for key in ("fig-spectrum", "fig-edge", "fig-eval", "fig-warning", "fig-jl", "summary", "numbers", "data"):
        assert f'id="{key}"' in html
    sed = read_history(monitor_run, "sed")
    sed = sed[sed["window"] == 8]
    peak = int(sed.loc[sed["gap_ratio"].idxmax(), "step"])
    assert f"at step {peak}." in html
    assert "there is no JL error to measure" in html  # Monitor(sketch='auto') is exact for this model
    facts = json.loads(re.search(r'<script type="application/json" id="se-facts">(.*?)</script>', html, re.S).group(1))
    assert facts["peak_step"] == peak and facts["window"] == 8 and facts["n_windows"] == len(sed)
    assert facts["k_star_counts"] == {str(k): int(v) for k, v in sed["k_star"].value_counts().sort_index().items()}


def test_default_window_output_place_and_other_windows_noted(monitor_run):
    run = load_view(monitor_run)
    assert run.window == 5 and run.windows == (5, 8)  # no W = 10 recorded → the smallest
    assert any("windows recorded: 5, 8" in n for n in run.notes)
    out = build_report(monitor_run)
    assert out == monitor_run / "report.html" and out.is_file()
    assert (out.stat().st_mode & 0o777) == 0o644


# ---------------------------------------------------------------------------- planted runs
def test_planted_run_peak_phases_grok_and_alarm(tmp_path):
    run = load_view(planted_run(tmp_path / "p"))
    assert run.phases is not None
    assert (run.phases.peak_step, run.phases.peak_ratio) == (PEAK_STEP, PEAK_R)
    # plateau = R ≥ 0.85 · 2.5 = 2.125: the whole planted plateau (its edges are 2.2)
    assert (run.phases.plateau_start, run.phases.plateau_end) == (PLATEAU.start, PLATEAU.stop - EVERY)
    assert run.phases.has_rise and run.phases.has_collapse
    assert run.phases.collapse_event_step == COLLAPSE.start
    assert run.grok_step == 4000 and run.grok_source == "first test_acc ≥ 0.9 in the history"
    assert run.warning_step == 3200 and [a.step for a in run.alarms] == [3200]
    assert len(run.defect) == len(run.sed) == len(RISE) + len(PLATEAU) + len(COLLAPSE)


def test_planted_report_has_every_figure(tmp_path):
    extra = [{"kind": "probe", "probe": "jl", "step": s, "jl_error": 0.01 * (1 + (s // 100) % 3)}
             for s in range(1000, 5100, 100)]
    out = build_report(planted_run(tmp_path / "p", extra_rows=extra), out=tmp_path / "p.html")
    html = out.read_text()
    assert_offline(html)
    assert svg_count(html) == 6  # spectrum, edge, eval, warning, coupling (test_loss is logged), jl
    for key in ("spectrum", "edge", "eval", "warning", "coupling", "jl"):
        assert f'id="fig-{key}"' in html
    assert "The gap ratio peaks at R = 2.500 at step 3000." in html
    assert "median 2.0%, max 3.0% over 41 windows" in html
    assert "p.html" not in html  # the page does not depend on its own name


def test_summary_json_grok_step_wins_over_test_accuracy(tmp_path):
    run = load_view(planted_run(tmp_path / "p", summary={"grok_step": 4200, "warning_step": None, "final_test_acc": 0.97}))
    assert (run.grok_step, run.grok_source) == (4200, "summary.json")
    assert run.warning_step == 3200  # no warning in summary.json → the first alarm event
    run = load_view(planted_run(tmp_path / "q", summary={"grok_step": None, "warning_step": 2000}))
    assert run.grok_step is None and run.grok_source == "summary.json records no grok step"
    assert (run.warning_step, run.warning_source) == (2000, "summary.json")


def test_history_wins_eval_csv_fills_in_and_history_file_finds_its_siblings(tmp_path):
    # the run model's one merge rule (spectral_edge.io.run): where the history logged a step, its
    # value wins; eval.csv fills in the steps it lacks. (Before 0.1.0's run model the report let
    # eval.csv win while the analyses let the history win; they now agree.)
    folder = planted_run(tmp_path / "p", grok_at=None)
    logged = read_history(folder / "history.jsonl", kind="log").dropna(subset=["test_acc"]).set_index("step")
    assert 2000 in logged.index and 2650 not in logged.index
    pd.DataFrame({"step": [1000, 2000, 2650], "train_acc": [0.5, 1.0, 1.0], "test_acc": [0.1, 0.5, 0.95],
                  "train_loss": [2.0, 0.1, 0.05], "test_loss": [3.0, 2.0, 0.2]}).to_csv(folder / "eval.csv", index=False)
    run = load_view(folder / "history.jsonl")
    assert set(run.files) == {"history", "eval"}
    ev = run.evals.set_index("step")
    assert ev.loc[2000, "test_acc"] == logged.loc[2000, "test_acc"] != 0.5  # the history wins
    assert ev.loc[2650, "test_acc"] == 0.95  # eval.csv fills in
    assert run.grok_step == 2650 and "eval.csv" in run.grok_source
    assert run.label == "p"


# ---------------------------------------------------------------------------- degenerate inputs
def test_one_window_only(tmp_path):
    folder = planted_run(tmp_path / "one", steps=[3000], grok_at=None, alarm_at=None, evals=False, probes=False)
    html = build_report(folder).read_text()
    assert_offline(html)
    assert svg_count(html) == 3  # spectrum, edge and g23 (one point each); evaluation and JL are notes
    assert "1 window of W = 10 updates" in html and "at step 3000." in html
    assert "Only 1 window: too few to read phases from." in html
    assert "No evaluation data (no eval.csv" in html


def test_no_evaluation_data_and_no_probes(tmp_path):
    folder = planted_run(tmp_path / "p", evals=False, probes=False, alarm_at=None)
    html = build_report(folder).read_text()
    assert svg_count(html) == 3
    # no accuracy, nothing to grok: no grok, alarm or defect words, and g23 shown on its own
    shown = html[:html.index('<script type="application/json"')].lower()  # the page, not its JSON facts block
    assert "grok" not in shown and "alarm" not in shown and "defect" not in shown
    assert "The gap below the edge: g23" in html


def test_all_nan_columns_still_make_a_page(tmp_path):
    steps = list(range(100, 1100, 100))
    rows = [{"kind": "sed", "step": s, "group": "all", "window": 10, "k_star": None, "gap_ratio": None, "g23": None,
             **{f"sigma_{j}": None for j in range(1, 11)}} for s in steps]
    rows += [{"kind": "log", "step": s, "test_acc": None, "train_loss": None} for s in steps]
    folder = tmp_path / "nan"
    with HistoryWriter(folder / "history.jsonl", {"config": {"kstar_rule": "floor"}}, fsync=False) as w:
        w.write(rows)
    html = build_report(folder).read_text()
    assert_offline(html)
    assert svg_count(html) == 0
    assert "σ_j are missing (NaN) in every window" in html
    assert "k* and the gap ratio are missing (NaN) in every window" in html
    assert "The gap ratio is missing in every window, so there is no peak and no phases." in html
    assert "No evaluation data" in html


def test_only_evaluations_in_a_run_folder(tmp_path):
    folder = tmp_path / "evalonly"
    folder.mkdir()
    pd.DataFrame({"step": [10, 20, 30], "train_acc": [0.2, 0.9, 1.0], "test_acc": [0.1, 0.4, 0.92]}).to_csv(
        folder / "eval.csv", index=False)
    html = build_report(folder).read_text()
    assert svg_count(html) == 1
    assert "No spectral windows in this input" in html and "Grokking at step 30" in html


def test_nothing_to_plot_and_missing_inputs_are_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file or folder"):
        build_report(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="found none of history.jsonl"):
        build_report(tmp_path / "empty")
    with HistoryWriter(tmp_path / "meta" / "history.jsonl", {"library": "spectral-edge"}, fsync=False):
        pass
    with pytest.raises(ConfigError, match="nothing to plot"):
        build_report(tmp_path / "meta")
    folder = planted_run(tmp_path / "p")
    with pytest.raises(ConfigError, match="windows recorded: 10"):
        build_report(folder, window=20)
    with pytest.raises(ConfigError, match="W ≥ 2"):
        build_report(folder, window=1)
    with pytest.raises(ConfigError, match="groups: all"):
        build_report(folder, group="layer.0")
    with pytest.raises(ConfigError, match="ending in .html"):
        build_report(folder, out=tmp_path / "r.pdf")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ConfigError, match="unknown input format"):
        build_report(tmp_path / "x.txt")


# ---------------------------------------------------------------------------- tables, groups, JL
def test_analyze_table_with_groups_and_windows(tmp_path):
    rows = []
    for s in range(1000, 5100, 100):
        for w in (5, 10):
            for g in ("all", "layer.0"):
                r = sed_row(s, w, r=planted_ratio(s) + (0.5 if g == "layer.0" else 0.0), group=g)
                del r["kind"]
                rows.append(r)
    table = write_table(rows, tmp_path / "metrics.csv")
    run = load_view(table, window=5, group="layer.0")
    assert run.window == 5 and run.groups == ("all", "layer.0") and len(run.sed) == 41
    assert run.phases.peak_ratio == pytest.approx(PEAK_R + 0.5)
    assert run.kstar_rule == "floor" and run.label == "metrics"
    assert run.sigma_columns == [f"sigma_{j}" for j in range(1, 6)]
    html = build_report(table, out=tmp_path / "t.html").read_text()  # default W = 10, group all
    assert "The gap ratio peaks at R = 2.500 at step 3000." in html
    assert "groups recorded: all, layer.0" in html
    # a CSV table carries no metadata: the page says so instead of guessing the sketch
    assert "does not record how its spectra were made" in html and "sketch: not recorded" in html


def test_jl_error_from_an_exact_and_a_sketched_stream(tmp_path):
    steps = list(range(100, 1100, 100))
    rows = []
    for i, s in enumerate(steps):
        exact = 2.0 + 0.1 * i
        rows.append(sed_row(s, r=exact, sketch="exact"))
        rows.append(sed_row(s, r=exact * (1 + 0.02 * (i % 3)), sketch="fold"))
    folder = tmp_path / "jl"
    with HistoryWriter(folder / "history.jsonl", {}, fsync=False) as w:
        w.write(rows)
    run = load_view(folder)
    assert run.jl is not None and list(run.jl["step"]) == steps
    np.testing.assert_allclose(run.jl["jl_error"], [0.02 * (i % 3) for i in range(10)], atol=1e-12)
    html = build_report(folder).read_text()
    assert 'id="fig-jl"' in html and "Relative error of the gap ratio" in html


# ---------------------------------------------------------------------------- phases
def test_phase_rule_skips_missing_values():
    steps = np.arange(10) * 10
    r = np.array([1.0, 1.2, 1.8, np.nan, 2.0, 1.9, 1.5, 1.1, np.nan, 1.0])
    ph, note = compute_phases(steps, r)
    assert note is None
    assert (ph.peak_step, ph.plateau_start, ph.plateau_end) == (40, 20, 50)  # 1.8 ≥ 1.7 = 0.85·2
    assert ph.collapse_event_step == 70 and ph.first_step == 0 and ph.last_step == 90
    assert compute_phases(steps, np.full(10, np.nan)) == (None, None)


def test_phases_come_from_the_analysis_module():
    from spectral_edge.analysis.phases import detect_phases

    steps, r = np.arange(0, 100, 10), np.array([1.0, 1.2, 1.9, 2.0, 1.95, 1.9, 1.2, 1.1, 1.0, 1.0])
    ph, note = compute_phases(steps, r)
    assert note is None and ph.method.startswith("spectral_edge.analysis.phases.detect_phases (method 'plateau'")
    assert "R ≥ 0.85 × peak" in ph.method and ph.threshold == pytest.approx(0.85 * 2.0)
    lib = detect_phases(steps, r)
    assert (ph.plateau_start, ph.plateau_end, ph.collapse_event_step) == (lib.plateau_start, lib.plateau_end,
                                                                          lib.collapse_step) == (20, 50, 70)
    # fewer windows than the detector needs: the same rule on what there is, with a note
    ph, note = compute_phases(steps[2:4], r[2:4])
    assert ph.method.startswith("built-in rule") and "only 2 finite values (need 3)" in note
    assert (ph.peak_step, ph.plateau_start, ph.plateau_end) == (30, 20, 30)


def test_defect_onset_rule():
    steps = np.arange(8) * 100
    assert defect_onset(steps, [1, 1, 1, 5, 9, 25, 30, 40]) == 500  # > 10·1 and > 20
    assert defect_onset(steps, [3, 3, 3, 25, 31, 35, 40, 50]) == 400  # > 10·3 = 30
    assert defect_onset(steps, [1, 1, 1, 2, 2, 2, 2, 2]) is None
    assert defect_onset(steps[:2], [1, 50]) is None


# ---------------------------------------------------------------------------- page safety
def test_text_from_inputs_is_escaped(tmp_path):
    folder = planted_run(tmp_path / "p")
    (folder / "config.json").write_text(json.dumps({"optimizer": "<script>alert(1)</script>", "nested": {"lr": 0.001}}))
    html = build_report(folder).read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "nested.lr" in html
    assert html.count("<script") == 1  # only the JSON data block
    assert '<script type="application/json"' in html


def test_pages_are_reproducible(tmp_path):
    folder = planted_run(tmp_path / "p")
    a = build_report(folder, out=tmp_path / "a.html").read_text()
    b = build_report(folder, out=tmp_path / "b.html").read_text()
    footer = re.compile(r"<footer>.*?</footer>")
    assert footer.sub("", a) == footer.sub("", b)


def test_report_modules_do_not_load_matplotlib_on_import():
    code = ("import sys, spectral_edge, spectral_edge.cli, spectral_edge.report; "
            "print('matplotlib' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# ---------------------------------------------------------------------------- comparison
def test_comparison_overlays_runs_with_a_summary_table(tmp_path):
    a = planted_run(tmp_path / "adamw")
    b = planted_run(tmp_path / "muon", grok_at=None, alarm_at=None, probes=False)
    out = build_comparison([a, b], labels="AdamW,Muon", out=tmp_path / "c.html")
    html = out.read_text()
    assert_offline(html)
    assert svg_count(html) == 4  # spectrum, edge, evaluation, warning; JL: a note
    assert html.count("AdamW") >= 5 and html.count("Muon") >= 5  # table, legends, findings
    table = re.search(r'<table class="runs">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[1], re.S)]
    assert cells == ["AdamW", "10", "41", "floor", "2", "2.5", "3000", "4000", "3200", "800", "0.99"]
    assert "No run has an exact reference" in html


def test_comparison_labels_and_errors(tmp_path):
    a = planted_run(tmp_path / "run")
    b = planted_run(tmp_path / "x" / "run")
    out = build_comparison([a, b], out=tmp_path / "c.html")
    assert "run (2)" in out.read_text()  # duplicate names are told apart
    with pytest.raises(ConfigError, match="give 2 non-empty"):
        build_comparison([a, b], labels="only-one")
    with pytest.raises(ConfigError, match="at least two runs"):
        build_comparison([a])


# ---------------------------------------------------------------------------- CLI
runner = CliRunner()


def test_cli_report_prints_one_line(tmp_path):
    folder = planted_run(tmp_path / "p")
    res = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines() == [f"report: {tmp_path / 'r.html'}"]
    assert svg_count((tmp_path / "r.html").read_text()) == 5  # spectrum, edge, eval, warning, coupling


def test_cli_report_keeps_an_existing_page_unless_overwrite(tmp_path):
    import os
    import stat

    folder = planted_run(tmp_path / "p")
    page = folder / "report.html"
    page.write_text("<html>an earlier report</html>")
    res = runner.invoke(app, ["report", str(folder)])
    assert res.exit_code == 2 and "report.html" in res.stderr and "--overwrite" in res.stderr
    assert page.read_text() == "<html>an earlier report</html>"
    res = runner.invoke(app, ["report", str(folder), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert svg_count(page.read_text()) == 5 and stat.S_IMODE(os.stat(page).st_mode) == 0o644
    # the library call is the request: it replaces unless told not to
    assert build_report(folder) == page
    with pytest.raises(ConfigError, match="exists"):
        build_report(folder, overwrite=False)


def test_cli_report_json(tmp_path):
    folder = planted_run(tmp_path / "p")
    res = runner.invoke(app, ["report", str(folder), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    facts = json.loads(res.stdout)
    assert facts["out"] == str(folder / "report.html")
    assert (facts["peak_step"], facts["grok_step"], facts["warning_step"], facts["lead"]) == (3000, 4000, 3200, 800)
    assert facts["warning_before_grok"] is True and facts["modal_k_star"] == 2


@pytest.mark.parametrize("args, message", [
    (["report", "{tmp}/absent"], "no such file or folder"),
    (["report", "{run}", "--window", "7"], "not in this input; windows recorded: 10"),
    (["report", "{run}", "--window", "1"], "W ≥ 2"),
    (["report", "{meta}"], "nothing to plot"),
    (["compare", "{run}"], "at least two runs"),
    (["compare", "{run}", "{run}", "--labels", "a"], "--labels"),
])
def test_cli_user_errors_exit_2_with_one_line(tmp_path, args, message):
    run = planted_run(tmp_path / "p")
    with HistoryWriter(tmp_path / "meta" / "history.jsonl", {}, fsync=False):
        pass
    argv = [a.format(tmp=tmp_path, run=run, meta=tmp_path / "meta") for a in args]
    res = runner.invoke(app, argv)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spectral-edge: error:") and message in lines[0]
    assert "Traceback" not in res.output


def test_cli_bad_window_value_is_a_usage_error(tmp_path):
    res = runner.invoke(app, ["report", str(planted_run(tmp_path / "p")), "--window", "ten"])
    assert res.exit_code == 2


def test_cli_help_has_examples():
    for cmd in ("report", "compare"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0
        assert "Examples" in res.stdout and f"spectral-edge {cmd}" in res.stdout
        assert "--json" in res.stdout and "--out" in res.stdout


def test_cli_compare(tmp_path):
    a, b = planted_run(tmp_path / "a"), planted_run(tmp_path / "b", alarm_at=None)
    res = runner.invoke(app, ["compare", str(a), str(b), "--labels", "wd 1,wd 0", "--out", str(tmp_path / "c.html")])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"comparison: {tmp_path / 'c.html'}"
    res = runner.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "c.html"), "--json"])
    assert res.exit_code == 2 and "--overwrite" in res.stderr  # an existing page is kept unless asked
    res = runner.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "c.html"), "--json", "--overwrite"])
    data = json.loads(res.stdout)
    assert [r["label"] for r in data["runs"]] == ["a", "b"] and [r["lead"] for r in data["runs"]] == [800, None]


def test_late_progress_bar_only_after_a_second(monkeypatch):
    from spectral_edge.cli import report as cli_report

    events = []

    class Bar:
        def __enter__(self):
            events.append("start")

        def __exit__(self, *a):
            events.append("stop")

    monkeypatch.setattr(cli_report, "progress", lambda label, quiet: (Bar(), lambda d, t, s: events.append(d)))
    now = [100.0]
    monkeypatch.setattr(cli_report.time, "monotonic", lambda: now[0])
    bar = cli_report._LateProgress("report", False)
    bar(0, 5, "reading")
    now[0] += 0.5
    bar(1, 5, "spectrum")
    assert events == []  # fast builds show nothing
    now[0] += 0.6
    bar(2, 5, "edge")
    bar(3, 5, "eval")
    bar.close()
    assert events == ["start", 2, 3, "stop"]
