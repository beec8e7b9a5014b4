"""Bad-input corpus of the analysis commands, ``analyze`` and ``report`` (issue 13: nothing
lost, no traceback): outputs that are inputs, outputs that exist, empty outputs, history lines
that are JSON but not rows, missing optional dependencies, and usage errors. Every case runs
through :func:`badinput.check` (exit 2, one stderr line naming the problem and the file or
key, no traceback, every file byte-identical, nothing created)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from badinput import Case, check, hide_modules
from safetensors.torch import save_file

from spectral_edge.analysis.datasets import planted_history

ANALYSES = ("phases", "coupling", "thesis")
# modules hidden for a case (sys.modules[name] = None makes `import name` raise ImportError)
HIDE: dict[str, tuple[str, ...]] = {}


# ---------------------------------------------------------------------------- inputs
def _run(d: Path, *, eval_csv: bool = False) -> Path:
    """A run folder with a small planted history (W = 5, 10); optionally an eval.csv."""
    run = d / "run"
    run.mkdir()
    planted_history(run / "history.jsonl", windows=(5, 10), lags={5: -2, 10: 3}, n=40, seed=0)
    if eval_csv:
        pd.DataFrame({"step": [100, 200, 300], "val_loss": [1.0, 0.9, 0.8]}).to_csv(run / "eval.csv", index=False)
    return run


def _table(d: Path) -> Path:
    """An ``analyze``-style table (metrics.csv, no kind column) in its own folder."""
    hist = planted_history(d / "h" / "history.jsonl", windows=(5,), n=40, seed=0)
    df = pd.read_json(hist, lines=True)
    folder = d / "t"
    folder.mkdir()
    df[df["kind"] == "sed"].drop(columns=["kind"]).dropna(axis=1, how="all").to_csv(folder / "metrics.csv", index=False)
    (hist.parent / "history.jsonl").unlink()
    hist.parent.rmdir()
    return folder / "metrics.csv"


def _odd_history(d: Path, line: str, where: str = "middle") -> Path:
    """A planted history with ``line`` inserted as line 3 (``middle``) or appended (``end``)."""
    run = _run(d)
    h = run / "history.jsonl"
    lines = h.read_text().splitlines(keepends=True)
    if where == "middle":
        lines.insert(2, line + "\n")
    else:
        lines.append(line + "\n")
    h.write_text("".join(lines))
    return run


def _checkpoints(d: Path, n: int = 2) -> Path:
    folder = d / "ckpts"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        save_file({"w": torch.randn(4, 3, generator=g)}, str(folder / f"step_{100 * (i + 1)}.safetensors"))
    return folder


def _with_report(d: Path) -> Path:
    run = _run(d)
    _old(run / "report.html", "<html>an earlier report</html>\n")
    return run


def _old(p: Path, text: str = "an earlier result\n") -> Path:
    p.write_text(text)
    return p


# ---------------------------------------------------------------------------- cases
CASES: list[Case] = []

for cmd in ANALYSES:
    CASES += [
        # item 2: --out is the history the command reads (with or without --overwrite)
        Case(f"{cmd}-out-is-the-history", lambda d, c=cmd: [c, _run(d), "--out", d / "run" / "history.jsonl"],
             ["history.jsonl", "input"]),
        Case(f"{cmd}-out-is-the-history-overwrite",
             lambda d, c=cmd: [c, _run(d), "--out", d / "run" / "history.jsonl", "--overwrite"],
             ["history.jsonl", "input"]),
        Case(f"{cmd}-out-is-the-history-by-another-name",
             lambda d, c=cmd: [c, _run(d) / "history.jsonl", "--out", d / "run" / "." / "history.jsonl", "--overwrite"],
             ["history.jsonl", "input"]),
        Case(f"{cmd}-out-is-eval-csv",
             lambda d, c=cmd: [c, _run(d, eval_csv=True), "--out", d / "run" / "eval.csv", "--overwrite"],
             ["eval.csv", "input"]),
        Case(f"{cmd}-out-is-the-val-file",
             lambda d, c=cmd: [c, _run(d), "--val", _old(d / "v.csv", "step,val_loss\n100,1.0\n"), "--out", d / "v.csv",
                               "--overwrite"],
             ["v.csv", "input"]),
        # an existing output that is not an input: kept unless --overwrite
        Case(f"{cmd}-out-exists", lambda d, c=cmd: [c, _run(d), "--out", _old(d / "old.csv")],
             ["old.csv", "exists", "--overwrite"]),
        Case(f"{cmd}-out-is-a-folder", lambda d, c=cmd: [c, _run(d), "--out", (d / "o.csv").mkdir() or d / "o.csv"],
             ["o.csv", "folder"]),
        # item 12: flags take no value; unknown flags; one line
        Case(f"{cmd}-json-true", lambda d, c=cmd: [c, _run(d), "--json", "true"], ["true", "--json", "flag"]),
        Case(f"{cmd}-unknown-flag", lambda d, c=cmd: [c, _run(d), "--bogus"], ["--bogus"]),
        Case(f"{cmd}-missing-argument", lambda d, c=cmd: [c], ["missing argument"]),
        Case(f"{cmd}-empty-window", lambda d, c=cmd: [c, _run(d), "-w", ","], ["--window"]),
    ]
    # item 2 on an analyze table: --out is the table itself
    CASES.append(Case(f"{cmd}-out-is-the-table",
                      lambda d, c=cmd: [c, _table(d), "--out", d / "t" / "metrics.csv", "--overwrite"]
                      + (["--val", _old(d / "v.csv", "step,val_loss\n100,1.0\n")] if c == "coupling" else []),
                      ["metrics.csv", "input"]))

CASES += [
    Case("coupling-lags-out-is-the-history",
         lambda d: ["coupling", _run(d), "--lags-out", d / "run" / "history.jsonl", "--overwrite"],
         ["history.jsonl", "input"]),
    Case("coupling-out-and-lags-out-the-same-file",
         lambda d: ["coupling", _run(d), "--out", d / "c.csv", "--lags-out", d / "c.csv"],
         ["c.csv", "--lags-out"]),
    Case("coupling-lags-out-exists", lambda d: ["coupling", _run(d), "--lags-out", _old(d / "lags.csv")],
         ["lags.csv", "exists", "--overwrite"]),
    # report writes HTML only: the history can never be its output
    Case("report-out-is-the-history", lambda d: ["report", _run(d), "--out", d / "run" / "history.jsonl"],
         [".html", "history.jsonl"]),
    Case("report-out-exists", lambda d: ["report", _run(d), "--out", _old(d / "r.html")],
         ["r.html", "exists", "--overwrite"]),
    Case("report-default-out-exists", lambda d: ["report", _with_report(d)], ["report.html", "exists", "--overwrite"]),
    Case("report-json-true", lambda d: ["report", _run(d), "--json", "true"], ["true", "--json", "flag"]),
    Case("compare-out-exists", lambda d: ["compare", _run(d), _run(d / "run"), "--out", _old(d / "c.html")],
         ["c.html", "exists", "--overwrite"]),
    # item 10: analyze --out an existing folder; item 2: -w 10 on 2 checkpoints over an old output
    Case("analyze-out-is-a-folder",
         lambda d: ["analyze", _checkpoints(d, 3), "-w", "2", "--out", (d / "m.csv").mkdir() or d / "m.csv"],
         ["m.csv", "folder"]),
    Case("analyze-too-few-checkpoints-keeps-the-old-output",
         lambda d: ["analyze", _checkpoints(d, 2), "-w", "10", "--out", _old(d / "m.csv"), "--overwrite"],
         ["ckpts", "W = 10", "2 checkpoints"]),
    Case("analyze-too-few-checkpoints", lambda d: ["analyze", _checkpoints(d, 2), "-w", "10", "--out", d / "m.csv"],
         ["ckpts", "W = 10", "2 checkpoints"]),
    Case("analyze-out-exists", lambda d: ["analyze", _checkpoints(d, 3), "-w", "2", "--out", _old(d / "m.csv")],
         ["m.csv", "exists", "--overwrite"]),
    Case("analyze-out-is-a-checkpoint",
         lambda d: ["analyze", _checkpoints(d, 3), "-w", "2", "--out", d / "ckpts" / "step_100.safetensors"],
         ["step_100.safetensors"]),
    Case("analyze-empty-window", lambda d: ["analyze", _checkpoints(d, 3), "-w", ",", "--out", d / "m.csv"],
         ["--window"]),
    Case("analyze-json-true", lambda d: ["analyze", _checkpoints(d, 3), "--json", "true"], ["true", "--json", "flag"]),
    Case("root-unknown-flag", lambda d: ["--bogus"], ["--bogus"]),
    Case("unknown-command", lambda d: ["phasez"], ["phasez"]),
]

# item 9: history lines that are JSON but not a row, and absurd steps, for every reader
ODD_LINES = {"null": "null", "42": "42", "list": "[1, 2]", "string": '"sed"'}
for cmd in (*ANALYSES, "report"):
    for name, line in ODD_LINES.items():
        CASES.append(Case(f"{cmd}-history-line-{name}", lambda d, c=cmd, ln=line: [c, _odd_history(d, ln)],
                          ["history.jsonl", "line 3", "not a JSON object"]))
    CASES += [
        Case(f"{cmd}-history-step-1e30",
             lambda d, c=cmd: [c, _odd_history(d, json.dumps({"kind": "sed", "step": 1e30, "window": 5, "group": "all",
                                                              "gap_ratio": 1.5}), "end")],
             ["history.jsonl", "step", "1e+30"]),
        Case(f"{cmd}-history-log-step-1e30",
             lambda d, c=cmd: [c, _odd_history(d, json.dumps({"kind": "log", "step": 1e30, "test_loss": 1.0}))],
             ["history.jsonl", "line 3", "step"]),
        Case(f"{cmd}-history-window-1e30",
             lambda d, c=cmd: [c, _odd_history(d, json.dumps({"kind": "sed", "step": 100, "window": 1e30,
                                                              "group": "all", "gap_ratio": 1.5}))],
             ["history.jsonl", "line 3", "window"]),
        Case(f"{cmd}-history-step-text",
             lambda d, c=cmd: [c, _odd_history(d, json.dumps({"kind": "log", "step": "ten", "test_loss": 1.0}))],
             ["history.jsonl", "line 3", "step"]),
        Case(f"{cmd}-history-torn-in-the-middle",
             lambda d, c=cmd: [c, _odd_history(d, '{"kind": "sed", "st')], ["history.jsonl", "line 3"]),
        Case(f"{cmd}-table-step-1e30",
             lambda d, c=cmd: [c, _table_with_step(d, 1e30)], ["metrics.csv", "step", "1e+30"]),
    ]


def _table_with_step(d: Path, step: float) -> Path:
    t = _table(d)
    df = pd.read_csv(t)
    df.loc[3, "step"] = step
    df.to_csv(t, index=False)
    return t


# item 11: a missing optional dependency names the extra to install
CASES += [
    Case("coupling-without-scipy", lambda d: ["coupling", _run(d), "-w", "10", "--granger-lag", "0"],
         ["scipy", "pip install", "spectral-edge[analysis]"]),
    Case("coupling-without-statsmodels", lambda d: ["coupling", _run(d), "-w", "10", "--permutations", "0"],
         ["statsmodels", "pip install", "spectral-edge[analysis]"]),
    Case("phases-without-ruptures", lambda d: ["phases", _run(d), "-w", "10"],
         ["ruptures", "pip install", "spectral-edge[analysis]", "--method"]),
    Case("report-without-matplotlib", lambda d: ["report", _run(d)],
         ["matplotlib", "pip install", "spectral-edge[plot]"]),
]
HIDE.update({"coupling-without-scipy": ("scipy",), "coupling-without-statsmodels": ("statsmodels",),
             "phases-without-ruptures": ("ruptures",), "report-without-matplotlib": ("matplotlib",)})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path, monkeypatch):
    hide_modules(monkeypatch, HIDE.get(case.id, ()))
    check(case, tmp_path)


def test_every_case_id_is_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def _thesis_run(d):
    from spectral_edge.analysis.datasets import planted_history

    planted_history(d / "h.jsonl", windows=(5,), n=40, seed=0)
    return d / "h.jsonl"


LEAD_CASES = [
    Case("thesis-n-parameters-zero", lambda d: ["thesis", _thesis_run(d), "-P", "0"], ["--n-parameters", "≥ 1"]),
    Case("thesis-lr-nan", lambda d: ["thesis", _thesis_run(d), "--lr", "nan"], ["--lr", "> 0"]),
    Case("thesis-lr-negative", lambda d: ["thesis", _thesis_run(d), "--lr", "-1"], ["--lr", "> 0"]),
]


@pytest.mark.parametrize("case", LEAD_CASES, ids=lambda c: c.id)
def test_thesis_numbers_are_checked(case, tmp_path):
    check(case, tmp_path)
