"""``spectral-edge phases | coupling | thesis`` through the CLI runner, on histories, run folders
and analyze tables written by the tests; bad input fails with one line and exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from spectral_edge.analysis.datasets import planted_history
from spectral_edge.cli import app
from spectral_edge.io.history import HistoryWriter
from spectral_edge.io.tables import read_table


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _one_line_error(res, fragment):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output and fragment in res.output, res.output


@pytest.fixture(scope="module")
def hist(tmp_path_factory):
    return planted_history(tmp_path_factory.mktemp("run") / "history.jsonl", windows=(5, 10),
                           lags={5: -2, 10: 3}, n=140, seed=0)


def test_phases_json_and_out(hist, tmp_path):
    out = tmp_path / "phases.csv"
    doc = _json(_run("phases", hist, "--json", "--out", out))
    assert {(r["window"], r["method"]) for r in doc["results"]} == {
        (w, m) for w in (5, 10) for m in ("plateau", "derivative", "threshold", "changepoint")}
    assert all("collapse_tau_1.20" in r for r in doc["results"])
    tab = read_table(out)
    assert len(tab) == 2 * 140 and {"phase_plateau", "phase_changepoint", "gap_ratio"} <= set(tab.columns)
    assert set(tab["phase_plateau"]) <= {"rise", "plateau", "collapse"}
    one = _json(_run("phases", hist, "-w", "10", "--method", "threshold", "--tau", "1.5", "--taus", "1.3,1.4",
                     "--primary-tau", "1.4", "--json"))
    assert len(one["results"]) == 1 and one["results"][0]["primary_tau"] == 1.4
    assert "collapse_tau_1.30" in one["results"][0] and "collapse_tau_1.20" not in one["results"][0]


def test_phases_human_table(hist):
    res = _run("phases", hist, "-w", "5", "--method", "changepoint", "--algo", "pelt")
    assert res.exit_code == 0, res.output
    assert "changepoint" in res.output and "plateau" in res.output
    assert _run("phases", hist, "--quiet").output.strip() == ""


def test_coupling_lag_flip(hist, tmp_path):
    out, lags = tmp_path / "c.parquet", tmp_path / "lags.jsonl"
    doc = _json(_run("coupling", hist, "--json", "--permutations", "199", "--granger-lag", "2",
                     "--out", out, "--lags-out", lags))
    assert doc["target"] == "test_loss"
    assert [r["peak_lag"] for r in doc["results"]] == [-2, 3]
    assert doc["lag_flip"] == {"windows": [5, 10], "peak_lags": [-2, 3], "signs": [-1, 1], "flip": True,
                               "flips": [[5, 10]]}
    assert all(r["p_perm"] <= 0.01 for r in doc["results"])
    assert len(read_table(out)) == 2
    lt = read_table(lags)
    assert len(lt) == 2 * (2 * 10 + 1) and set(lt["window"]) == {5, 10}
    res = _run("coupling", hist, "-w", "10", "--permutations", "0", "--granger-lag", "0")
    assert res.exit_code == 0 and "lag flip" in res.output


def test_run_folder_with_eval_csv(hist, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.jsonl").write_bytes(hist.read_bytes())
    ev = pd.read_json(hist, lines=True)
    ev = ev[ev["kind"] == "log"].dropna(subset=["test_loss"])
    pd.DataFrame({"step": ev["step"], "val_loss": ev["test_loss"], "test_acc": 0.5}).to_csv(run / "eval.csv", index=False)
    (run / "summary.json").write_text(json.dumps({"n_parameters": 1234}))
    doc = _json(_run("coupling", run, "-w", "10", "--json", "--permutations", "0", "--granger-lag", "0"))
    assert doc["target"] == "val_loss" and doc["results"][0]["peak_lag"] == 3  # val_loss from eval.csv
    doc = _json(_run("coupling", run, "-w", "10", "--json", "--val-column", "test_loss", "--permutations", "0"))
    assert doc["target"] == "test_loss"
    th = _json(_run("thesis", run, "-w", "5", "--json"))
    assert th["results"][0]["n_parameters"] == 50_000  # the history's meta row comes first


def test_analyze_table_with_val_csv(hist, tmp_path):
    df = pd.read_json(hist, lines=True)
    sed = df[df["kind"] == "sed"].drop(columns=["kind"]).dropna(axis=1, how="all")
    sed.to_csv(tmp_path / "metrics.csv", index=False)
    logs = df[df["kind"] == "log"].dropna(subset=["test_loss"])
    pd.DataFrame({"step": logs["step"], "val_loss": logs["test_loss"]}).to_csv(tmp_path / "val.csv", index=False)
    doc = _json(_run("coupling", tmp_path / "metrics.csv", "--val", tmp_path / "val.csv", "--json",
                     "--permutations", "0"))
    assert doc["lag_flip"]["signs"] == [-1, 1] and doc["target"] == "val_loss"
    _one_line_error(_run("coupling", tmp_path / "metrics.csv"), "no validation series")
    th = _json(_run("thesis", tmp_path / "metrics.csv", "--lr", "1e-3", "-P", "5000", "--json"))
    assert all(r["lr_source"] == "flag" and r["n_parameters"] == 5000 for r in th["results"])


def test_thesis_json_and_out(hist, tmp_path):
    out = tmp_path / "thesis.csv"
    doc = _json(_run("thesis", hist, "--json", "--out", out, "--low", "1", "--high", "100"))
    r10 = [r for r in doc["results"] if r["window"] == 10][0]
    assert r10["delta_g_method"].startswith("eigenvalue change") and r10["lr_source"] == "log"
    assert r10["n_parameters"] == 50_000 and r10["A_low"] == 1.0 and r10["A_high"] == 100.0
    assert sum(r10["regimes"].values()) == 140
    tab = read_table(out)
    assert len(tab) == 280 and {"A", "regime", "alpha_kstar", "delta_g", "d_crit", "alpha_10"} <= set(tab.columns)
    # A of the per-unit-lr spectra σ/η (the fixture has an lr schedule), from the history by hand
    sed = pd.read_json(hist, lines=True)
    sed = sed[(sed["kind"] == "sed") & (sed["window"] == 10)].sort_values("step")
    t10 = tab[tab["window"] == 10].sort_values("step")
    lam_u = np.sort(sed[[f"sigma_{j}" for j in range(1, 11)]].to_numpy() ** 2, axis=1)[:, ::-1] / t10["lr"].to_numpy()[:, None] ** 2
    want = np.linalg.norm(np.diff(lam_u, axis=0), axis=1) / (t10["gap"].to_numpy()[1:] / t10["lr"].to_numpy()[1:]) ** 2
    np.testing.assert_allclose(t10["A"].to_numpy()[1:], want, rtol=1e-9)
    res = _run("thesis", hist, "-w", "5")
    assert res.exit_code == 0 and "A = ‖ΔG‖/g²" in res.output and "forgetting" not in res.output


def test_bad_input_fails_in_one_line(hist, tmp_path):
    _one_line_error(_run("phases", tmp_path / "missing.jsonl"), "no such file")
    _one_line_error(_run("thesis", tmp_path), "found none of history.jsonl")
    only_logs = tmp_path / "logs.jsonl"
    with HistoryWriter(only_logs, {"n_parameters": 3}, fsync=False) as w:
        w.write([{"kind": "log", "step": 1, "test_loss": 1.0}])
    _one_line_error(_run("phases", only_logs), "no 'sed' rows")
    _one_line_error(_run("phases", hist, "--column", "banana"), "unknown spectral column")
    _one_line_error(_run("coupling", hist, "--val-column", "val_acc"), "no logged metric 'val_acc'")
    _one_line_error(_run("phases", hist, "-w", "7"), "no rows for window W = 7")
    _one_line_error(_run("phases", hist, "--group", "layers.0"), "no rows for group")
    _one_line_error(_run("phases", hist, "--method", "magic"), "unknown --method")
    _one_line_error(_run("coupling", hist, "--out", tmp_path / "x.txt"), "unknown output format")
    _one_line_error(_run("phases", hist, "--taus", "1.2,abc"), "--taus")
    _one_line_error(_run("coupling", hist, "--val", tmp_path / "nope.csv"), "no such validation file")
    _one_line_error(_run("coupling", hist, "--align", "sideways"), "alignment")


def test_a_real_monitor_history(tmp_path):
    from spectral_edge.monitor import Monitor

    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(6, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    path = tmp_path / "history.jsonl"
    mon = Monitor(model, windows=(3, 4), every=1, history=path)
    handle = mon.attach(opt)
    x = torch.randn(64, 6, generator=g)
    target = x[:, :3] * 2
    for i in range(30):
        loss = ((model(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % 2 == 0:
            mon.log(test_loss=float(loss.detach()) * 1.1)
    handle.remove()
    mon.close()
    ph = _json(_run("phases", path, "--json"))
    assert {r["window"] for r in ph["results"]} == {3, 4}
    th = _json(_run("thesis", path, "-w", "4", "--json"))
    assert th["results"][0]["lr_source"] == "log" and th["results"][0]["n_parameters"] == 21
    co = _json(_run("coupling", path, "-w", "3", "--json", "--permutations", "50", "--granger-lag", "1"))
    assert co["results"][0]["n"] >= 20


# ---------------------------------------------------------------------------- issue 13: nothing lost, one line
def _analyze_table(hist, folder):
    df = pd.read_json(hist, lines=True)
    folder.mkdir(exist_ok=True)
    df[df["kind"] == "sed"].drop(columns=["kind"]).dropna(axis=1, how="all").to_csv(folder / "metrics.csv", index=False)
    return folder / "metrics.csv"


def test_thesis_without_a_learning_rate_says_how_to_give_one(hist, tmp_path):
    doc = _json(_run("thesis", _analyze_table(hist, tmp_path / "t"), "-w", "5", "--json"))
    note = " ".join(doc["results"][0]["notes"])
    assert "no learning rate" in note and "--lr" in note and "--val" in note and "lr" in note.split("--val")[1]


@pytest.mark.parametrize("cmd", ["phases", "coupling", "thesis"])
def test_an_existing_output_is_kept_unless_overwrite(hist, tmp_path, cmd):
    out = tmp_path / "out.csv"
    out.write_text("an earlier result\n")
    res = _run(cmd, hist, "-w", "10", "--out", out, "--permutations", "0") if cmd == "coupling" else \
        _run(cmd, hist, "-w", "10", "--out", out)
    _one_line_error(res, "--overwrite")
    assert out.read_text() == "an earlier result\n"
    extra = ["--permutations", "0"] if cmd == "coupling" else []
    res = _run(cmd, hist, "-w", "10", "--out", out, "--overwrite", "--quiet", *extra)
    assert res.exit_code == 0, res.output
    assert len(read_table(out)) >= 1


def test_output_tables_are_readable_by_others(hist, tmp_path):
    import os
    import stat

    out = tmp_path / "p.csv"
    assert _run("phases", hist, "-w", "10", "--method", "plateau", "--out", out, "--quiet").exit_code == 0
    mode = stat.S_IMODE(os.stat(out).st_mode)
    assert mode == 0o644, oct(mode)


def test_flags_show_no_value_in_help_and_version():
    from spectral_edge import __version__

    for cmd in ("phases", "coupling", "thesis", "analyze", "report"):
        res = _run(cmd, "--help")
        assert res.exit_code == 0 and "<bool>" not in res.stdout, res.stdout
        assert "--overwrite" in res.stdout
    res = _run("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"spectral-edge {__version__}"


def test_usage_errors_are_one_line_with_a_hint(hist):
    res = _run("phases", hist, "--bogus")
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("spectral-edge: error:"), res.stderr
    assert "--bogus" in lines[0] and "spectral-edge phases --help" in lines[0]
    res = _run("phases", hist, "--quiet", "yes")
    assert res.exit_code == 2 and "--quiet" in res.stderr and "flag" in res.stderr
    res = _run()  # no command: the help, as before
    assert res.exit_code == 2 and "Usage" in res.output


def test_a_torn_last_line_is_one_warning_line_and_the_rows_before_it_are_read(hist, tmp_path):
    torn = tmp_path / "history.jsonl"
    torn.write_bytes(hist.read_bytes() + b'{"kind": "sed", "step": 99999, "wind')
    res = _run("phases", torn, "-w", "10", "--method", "plateau", "--json")
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("spectral-edge: warning:") and "torn" in lines[0], res.stderr
    assert json.loads(res.stdout)["results"][0]["window"] == 10


def test_an_empty_output_is_an_error_before_anything_is_written(tmp_path):
    from spectral_edge.cli.analyses import _write
    from spectral_edge.errors import ConfigError

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    b.write_text("an earlier result\n")
    with pytest.raises(ConfigError, match="--lags-out .*b.csv: nothing to write"):
        _write({"--out": ([{"step": 1}], a), "--lags-out": ([], b)}, {})
    assert not a.exists() and b.read_text() == "an earlier result\n"
    assert _write({"--out": ([{"step": 1}], a), "--lags-out": ([], None)}, {}) == {"--out": str(a), "--lags-out": None}
