"""Histories and tables never lose data (issue 13): a torn last line is cut before appending and
skipped (with a warning) when reading; lines that are JSON but not rows, and absurd steps, are
errors naming the file and line; rewritten histories and written tables keep readable modes;
output paths are checked before any work; optional dependencies fail in one line."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import warnings

import pytest

from spectral_edge.errors import ConfigError, SpectralEdgeError
from spectral_edge.io.history import HistoryWriter, history_meta, read_history
from spectral_edge.io.tables import read_table, write_table


def _rows(path):
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def _history(path, steps=(1, 2)):
    with HistoryWriter(path, {"n_parameters": 3}, fsync=False) as w:
        w.write([{"kind": "log", "step": s, "loss": float(s)} for s in steps])
    return path


# ---------------------------------------------------------------------------- torn lines
def test_a_torn_last_line_is_cut_before_appending_and_no_row_is_lost(tmp_path):
    h = _history(tmp_path / "history.jsonl")
    with open(h, "ab") as f:
        f.write(b'{"kind": "log", "step": 3, "lo')  # power loss mid-row
    with pytest.warns(RuntimeWarning, match="torn"):
        w = HistoryWriter(h, mode="a", fsync=False)
    w.write([{"kind": "log", "step": 4, "loss": 4.0}])
    w.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second open finds a clean file: no warning
        with HistoryWriter(h, mode="a", fsync=False) as w:
            w.write([{"kind": "log", "step": 5, "loss": 5.0}])
        df = read_history(h)
    assert df["step"].dropna().astype(int).tolist() == [1, 2, 4, 5]
    assert [r["kind"] for r in _rows(h)] == ["meta", "log", "log", "log", "log"]


def test_a_complete_last_row_without_its_newline_is_kept_when_appending(tmp_path):
    h = _history(tmp_path / "history.jsonl")
    with open(h, "ab") as f:
        f.write(b'{"kind": "log", "step": 3, "loss": 3.0}')  # e.g. written by hand or another tool
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with HistoryWriter(h, mode="a", fsync=False) as w:
            w.write([{"kind": "log", "step": 4, "loss": 4.0}])
    assert [r.get("step") for r in _rows(h)] == [None, 1, 2, 3, 4]


def test_a_file_that_is_one_torn_line_gets_a_meta_row_when_appending(tmp_path):
    h = tmp_path / "history.jsonl"
    h.write_bytes(b'{"kind": "me')
    with pytest.warns(RuntimeWarning, match="torn"):
        with HistoryWriter(h, {"n_parameters": 7}, mode="a", fsync=False) as w:
            w.write([{"kind": "log", "step": 1}])
    assert [r["kind"] for r in _rows(h)] == ["meta", "log"] and history_meta(h)["n_parameters"] == 7


def test_readers_skip_a_torn_last_line_with_a_warning(tmp_path):
    h = _history(tmp_path / "history.jsonl")
    with open(h, "ab") as f:
        f.write(b'{"kind": "log", "st')
    before = h.read_bytes()
    with pytest.warns(RuntimeWarning, match="history.jsonl: the last line is torn"):
        df = read_history(h)
    assert df["step"].dropna().astype(int).tolist() == [1, 2]
    assert h.read_bytes() == before  # reading never changes the file


def test_a_torn_line_in_the_middle_is_an_error_naming_the_file_and_line(tmp_path):
    h = _history(tmp_path / "history.jsonl")
    lines = h.read_text().splitlines(keepends=True)
    lines.insert(2, '{"kind": "log", "st\n')
    h.write_text("".join(lines))
    with pytest.raises(ConfigError, match=r"history.jsonl: line 3 is not valid JSON"):
        read_history(h)
    # a glued line (what appending to a torn line used to make) is no longer skipped when last
    h2 = _history(tmp_path / "h2.jsonl")
    with open(h2, "a") as f:
        f.write('{"kind": "log", "st{"kind": "log", "step": 9}\n')
    with pytest.raises(ConfigError, match="line 4"):
        read_history(h2)


# ---------------------------------------------------------------------------- lines that are not rows
@pytest.mark.parametrize("line, got", [("null", "null"), ("42", "int"), ("[1, 2]", "list"), ('"sed"', "str")])
def test_a_line_that_is_json_but_not_an_object_is_an_error(tmp_path, line, got):
    h = _history(tmp_path / "history.jsonl")
    with open(h, "a") as f:
        f.write(line + "\n")
    with pytest.raises(ConfigError, match=rf"history.jsonl: line 4 is not a JSON object \(got {got}"):
        read_history(h)


@pytest.mark.parametrize("row, key", [
    ({"kind": "log", "step": 1e30}, "step 1e+30"),
    ({"kind": "log", "step": 2.5}, "step 2.5"),
    ({"kind": "log", "step": "ten"}, "step 'ten'"),
    ({"kind": "log", "step": True}, "step True"),
    ({"kind": "sed", "step": 3, "window": 1e30}, "window 1e+30"),
    ({"kind": "sed", "step": 3, "window": 0}, "window 0"),
    ({"kind": "sed", "step": 3, "window": 5, "k_star": -1}, "k_star -1"),
])
def test_absurd_steps_and_windows_are_errors_naming_the_line(tmp_path, row, key):
    h = _history(tmp_path / "history.jsonl")
    with open(h, "a") as f:
        f.write(json.dumps(row) + "\n")
    with pytest.raises(ConfigError, match=re.escape(f"line 4: {key}")):
        read_history(h)


def test_integral_floats_nulls_and_non_finite_literals_are_read(tmp_path):
    h = _history(tmp_path / "history.jsonl")
    with open(h, "a") as f:
        f.write('{"kind": "sed", "step": 300.0, "window": 5, "k_star": 0, "gap_ratio": NaN, "g23": Infinity}\n')
        f.write('{"kind": "log", "step": null, "note": "no step"}\n')
    df = read_history(h)
    sed = df[df["kind"] == "sed"].iloc[0]
    assert sed["step"] == 300 and sed["gap_ratio"] != sed["gap_ratio"] and sed["g23"] != sed["g23"]


# ---------------------------------------------------------------------------- modes
def test_a_rewritten_history_keeps_its_mode_and_tables_are_0644(tmp_path):
    h = _history(tmp_path / "history.jsonl", steps=(1, 2, 3))
    os.chmod(h, 0o640)
    with HistoryWriter(h, mode="a", fsync=False) as w:
        assert w.truncate_after(1) == 2
    assert stat.S_IMODE(os.stat(h).st_mode) == 0o640
    for ext in (".csv", ".jsonl", ".parquet"):
        out = write_table([{"step": 1, "x": 1.0}], tmp_path / f"t{ext}")
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o644, ext
        assert len(read_table(out)) == 1


def test_write_table_refuses_a_folder(tmp_path):
    (tmp_path / "m.csv").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        write_table([{"step": 1}], tmp_path / "m.csv")


# ---------------------------------------------------------------------------- output paths
def test_check_outputs(tmp_path):
    from spectral_edge.io.tables import check_outputs

    hist = _history(tmp_path / "history.jsonl")
    old = tmp_path / "old.csv"
    old.write_text("x\n")
    link = tmp_path / "link.jsonl"
    os.link(hist, link)
    check_outputs({"--out": tmp_path / "new.csv", "--lags-out": None}, [("history", hist)])
    with pytest.raises(ConfigError, match=r"--out .*history.jsonl: is an input of this command \(history"):
        check_outputs({"--out": tmp_path / "sub" / ".." / "history.jsonl"}, [("history", hist)], overwrite=True)
    with pytest.raises(ConfigError, match="link.jsonl: is an input"):  # a hard link is the same file
        check_outputs({"--out": link}, [("history", hist)], overwrite=True)
    with pytest.raises(ConfigError, match="is inside an input"):
        check_outputs({"--out": tmp_path / "x.csv"}, [("checkpoint", tmp_path)])
    with pytest.raises(ConfigError, match=r"old.csv: exists; pass --overwrite"):
        check_outputs({"--out": old}, [("history", hist)])
    check_outputs({"--out": old}, [("history", hist)], overwrite=True)
    with pytest.raises(ConfigError, match="--lags-out .*a.csv: is also the --out file"):
        check_outputs({"--out": tmp_path / "a.csv", "--lags-out": tmp_path / "a.csv"})
    with pytest.raises(ConfigError, match="does not exist"):
        check_outputs({"--out": tmp_path / "nope" / "a.csv"})
    check_outputs({"--out": tmp_path / "nope" / "a.html"}, need_folder=False)


# ---------------------------------------------------------------------------- optional dependencies
def test_require_names_the_extra(monkeypatch):
    from spectral_edge._deps import MissingDependencyError, require

    assert require("json", "analysis", "x") is json
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(MissingDependencyError, match=r"the coupling analysis needs scipy, which is not installed: "
                                                     r"pip install 'spectral-edge\[analysis\]'") as e:
        require("scipy.stats", "analysis", "the coupling analysis")
    assert isinstance(e.value, SpectralEdgeError) and isinstance(e.value, ImportError)
    with pytest.raises(MissingDependencyError, match=r"\(or --granger-lag 0\)"):
        require("scipy", "analysis", "x", "--granger-lag 0")


# ---------------------------------------------------------------------------- flags reach the library unchanged
def test_analyze_passes_zero_sketch_values_through(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import spectral_edge.stream.analyzer as analyzer
    from spectral_edge.cli import app
    from spectral_edge.cli._app import parse_windows

    seen = {}

    def fake(windows, family, dim=None, seed=0, buckets=None):
        seen.update(windows=windows, dim=dim, buckets=buckets)
        raise ConfigError("stop here")

    monkeypatch.setattr(analyzer, "default_sketch", fake)
    res = CliRunner().invoke(app, ["analyze", str(tmp_path), "-w", "0", "--sketch-dim", "0", "--buckets", "0",
                                   "--out", str(tmp_path / "m.csv")])
    assert res.exit_code == 2 and "stop here" in res.stderr
    assert seen == {"windows": (0,), "dim": 0, "buckets": 0}
    assert parse_windows(["5,10", "20"]) == (5, 10, 20)
    with pytest.raises(ConfigError, match="--window needs at least one integer"):
        parse_windows([","])
