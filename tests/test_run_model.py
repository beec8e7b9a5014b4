"""The run model (spectral_edge.io.run): one reader, one merge rule, one grok step, one meaning
of "no window given", seen identically by every consumer (analyses, report, detectors, runner)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spectral_edge.analysis.coupling import run_coupling
from spectral_edge.detectors.signals import gram_edge_summary, grok_step, primary_window
from spectral_edge.errors import ConfigError
from spectral_edge.io.history import HistoryWriter, read_history
from spectral_edge.io.run import load_run, merge_metrics, metric_frame, read_run
from spectral_edge.report import load_view


def _spectral_rows(steps, windows=(5, 10), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for W in windows:
        for s in steps:
            sig = np.sort(rng.uniform(0.1, 3.0, W))[::-1]
            rows.append({"kind": "sed", "step": int(s), "window": W, "group": "all", "k_star": 1,
                         "gap_ratio": float(sig[0] / sig[1]), "g23": float(sig[1] ** 2 - sig[2] ** 2),
                         **{f"sigma_{j + 1}": float(v) for j, v in enumerate(sig)}})
    return rows


def _run_folder(tmp_path, *, history_logs, eval_rows=None, windows=(5, 10), steps=range(100, 3100, 100),
                summary=None):
    folder = tmp_path / "run"
    folder.mkdir()
    w = HistoryWriter(folder / "history.jsonl", {"library": "spectral-edge"}, fsync=False)
    w.write(_spectral_rows(list(steps), windows))
    w.write([{"kind": "log", **r} for r in history_logs])
    w.close()
    if eval_rows is not None:
        cols = sorted({k for r in eval_rows for k in r if k != "step"})
        lines = ["step," + ",".join(cols)] + [
            f"{r['step']}," + ",".join("" if r.get(c) is None else str(r[c]) for c in cols) for r in eval_rows]
        (folder / "eval.csv").write_text("\n".join(lines) + "\n")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_history_wins_over_eval_csv_and_every_consumer_sees_the_same_value(tmp_path):
    # the disagreement the run model settles: history says 9.0 at step 500, eval.csv says 2.0
    logs = [{"step": s, "val_loss": 5.0 - s / 1000} for s in range(100, 3100, 100)]
    logs = [dict(r, val_loss=9.0) if r["step"] == 500 else r for r in logs]
    evals = [{"step": s, "val_loss": 2.0 if s == 500 else 5.0 - s / 1000, "test_acc": 0.1} for s in range(0, 3100, 100)]
    folder = _run_folder(tmp_path, history_logs=logs, eval_rows=evals)

    analyses = load_run(folder)
    assert analyses.logs.loc[500, "val_loss"] == 9.0
    assert analyses.logs.loc[0, "val_loss"] == 5.0  # eval.csv fills a step the history lacks
    report = load_view(folder)
    ev = report.evals.set_index("step")
    assert ev.loc[500, "val_loss"] == 9.0 and ev.loc[0, "val_loss"] == 5.0
    # the history file given directly reads the same side files as its folder
    assert load_run(folder / "history.jsonl").logs.equals(analyses.logs)
    # an explicit validation file overrides both
    (tmp_path / "val.csv").write_text("step,val_loss\n500,1.5\n")
    assert load_run(folder, val=tmp_path / "val.csv").logs.loc[500, "val_loss"] == 1.5
    # the coupling analysis reads the same series
    res = run_coupling(analyses, window=10, n_perm=19, granger_max_lag=1)
    assert res.window == 10


def test_within_one_file_the_last_value_of_a_step_wins():
    import pandas as pd

    df = pd.DataFrame({"step": [100, 200, 200, 300], "val_loss": [1.0, 2.0, 7.0, 3.0]})
    assert metric_frame(df).loc[200, "val_loss"] == 7.0
    base = metric_frame(pd.DataFrame({"step": [100, 200], "a": [1.0, np.nan]}))
    extra = metric_frame(pd.DataFrame({"step": [200, 300], "a": [5.0, 6.0]}))
    merged = merge_metrics(base, extra)
    assert merged["a"].tolist() == [1.0, 5.0, 6.0]
    assert merge_metrics(extra, base)["a"].tolist() == [1.0, 5.0, 6.0]  # NaN never wins
    both = metric_frame(pd.DataFrame({"step": [200], "a": [9.0]}))
    assert merge_metrics(extra, both).loc[200, "a"] == 9.0 and merge_metrics(both, extra).loc[200, "a"] == 5.0


def test_no_window_given_means_the_smallest_window_everywhere(tmp_path):
    logs = [{"step": s, "test_acc": min(1.0, s / 2000)} for s in range(0, 3100, 100)]
    folder = _run_folder(tmp_path, history_logs=logs, windows=(20, 5, 10))
    assert primary_window([20, 5, 10]) == 5 and primary_window([]) is None
    data = load_run(folder)
    assert data.resolve_window(None) == 5
    assert data.spectral_series("gap_ratio").window == 5
    assert load_view(folder).window == 5
    rows = read_history(folder / "history.jsonl")
    g = gram_edge_summary(rows)
    five = data.spectral_series("g23", window=5)
    assert np.array_equal(g.steps, five.steps) and np.allclose(g.g23, five.values)
    with pytest.raises(ConfigError, match="no rows for window W = 7"):
        data.resolve_window(7)


def test_one_grok_step(tmp_path):
    acc = {0: 0.0, 100: 0.5, 200: 0.91, 300: 0.85, 400: 0.99, 500: 0.99, 600: 0.99, 700: 0.97}
    rows = [{"step": s, "test_acc": a} for s, a in acc.items()]
    assert grok_step(rows) == 200
    assert grok_step(rows, 0.98, consecutive=3) == 600
    assert grok_step(rows, 0.999) is None
    assert grok_step(rows, 0.0) == 100  # the initial evaluation (step 0) never counts
    assert grok_step([{"step": 1, "loss": 1.0}]) is None  # no accuracy at all
    with pytest.raises(ConfigError, match="accuracy column 'val_acc'"):
        grok_step(rows, key="val_acc")
    # a step logged twice keeps its last value (a resumed run)
    assert grok_step(rows + [{"step": 200, "test_acc": 0.1}]) == 400
    # history rows of other kinds are ignored; evaluation tables (no kind) count
    assert grok_step([{"kind": "sed", "step": 50, "test_acc": 1.0}] + rows) == 200
    # the accuracy column order: test_acc before val_acc before eval_accuracy (the HF Trainer's)
    mixed = [{"step": 100, "val_acc": 0.95, "test_acc": 0.2}, {"step": 200, "val_acc": 0.95, "test_acc": 0.95}]
    assert grok_step(mixed) == 200
    assert grok_step([{"step": 300, "eval_accuracy": 0.93}]) == 300

    # the run model and the report read the same grok step from the same folder
    folder = _run_folder(tmp_path, history_logs=[{"kind": "log", **r} for r in rows][:0],
                         eval_rows=[dict(r, val_loss=1.0) for r in rows])
    assert read_run(folder).grok() == (200, "first test_acc ≥ 0.9 in eval.csv")
    view = load_view(folder)
    assert (view.grok_step, view.grok_source) == read_run(folder).grok()


def test_summary_grok_step_is_the_runs_own_record(tmp_path):
    rows = [{"step": s, "test_acc": s / 1000} for s in range(0, 1100, 100)]
    folder = _run_folder(tmp_path, history_logs=rows, summary={"grok_step": 700})
    assert read_run(folder).grok() == (700, "summary.json")
    assert load_view(folder).grok_step == 700
    (folder / "summary.json").write_text(json.dumps({"grok_step": "soon"}))
    with pytest.raises(ConfigError, match="grok_step must be a step or null"):
        read_run(folder).grok()


def test_hf_and_lightning_history_name_is_found(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    w = HistoryWriter(folder / "spectral_edge_history.jsonl", {}, fsync=False)
    w.write(_spectral_rows(range(100, 1100, 100), (10,)))
    w.write([{"kind": "log", "step": s, "eval_loss": 3.0 - s / 1000} for s in range(200, 1100, 200)])
    w.close()
    data = load_run(folder)
    assert data.files["history"].name == "spectral_edge_history.jsonl"
    assert data.validation().name == "eval_loss"


def test_broken_side_files_become_notes_not_errors(tmp_path):
    rows = [{"step": s, "val_loss": 1.0} for s in range(100, 1100, 100)]
    folder = _run_folder(tmp_path, history_logs=rows, summary={})
    (folder / "summary.json").write_text("{not json")
    (folder / "eval.csv").write_bytes(b"\x00\x01garbage")
    data = read_run(folder)
    assert any("summary.json" in n for n in data.notes) and any("eval.csv" in n for n in data.notes)
    assert data.logs["val_loss"].notna().all()


# ---------------------------------------------------------------------------- steps are integers (issue 13)
def test_absurd_steps_in_tables_and_val_files_are_errors_and_in_eval_csv_a_note(tmp_path):
    import pandas as pd

    from spectral_edge.io.run import read_val_csv

    folder = _run_folder(tmp_path, history_logs=[{"step": 100, "test_loss": 1.0}])
    pd.DataFrame({"step": [100, 1e30], "val_loss": [1.0, 0.5]}).to_csv(folder / "eval.csv", index=False)
    data = read_run(folder)
    assert any("eval.csv" in n and "1e+30" in n and "ignored" in n for n in data.notes), data.notes
    assert "val_loss" not in data.logs.columns
    with pytest.raises(ConfigError, match=r"eval.csv: row 2: step 1e\+30 is not a training step"):
        read_val_csv(folder / "eval.csv")
    table = tmp_path / "t" / "metrics.csv"
    table.parent.mkdir()
    pd.DataFrame({"step": [100, 200, 300], "window": [5, 5, 2**40], "group": "all", "gap_ratio": 1.5}).to_csv(table, index=False)
    with pytest.raises(ConfigError, match=r"metrics.csv: row 3: window 1099511627776 is not a window size"):
        read_run(table)
    table.write_text("step,window,gap_ratio\n100,5,1.5\nten,5,1.4\n")
    with pytest.raises(ConfigError, match=r"metrics.csv: row 2: step 'ten'"):
        load_run(table)


def test_a_jsonl_whose_first_line_is_not_an_object_is_refused(tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match="h.jsonl: line 1 is not a JSON object"):
        read_run(p)
