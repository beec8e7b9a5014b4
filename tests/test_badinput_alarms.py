"""Bad-input corpus of the alarm options (tests/badinput.py): ``replay`` on broken runs and
wrong flags, ``--alarm`` / ``alarm =`` on ``grok`` and ``run``, and ``--val-frac``. Each case
exits 2 with one line naming the problem and the flag, key or file, and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from badinput import Case, check

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

GROK = ["grok", "--modulus", "7", "--steps", "20"]


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def _history(folder: Path, extra: str = "") -> Path:
    rows = [{"kind": "meta", "step": None, "n_parameters": 10},
            {"kind": "log", "step": 100, "val_loss": 4.0, "test_acc": 0.1},
            {"kind": "probe", "probe": "defect", "step": 100, "defect": 1.0}]
    return _write(folder / "history.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + extra)


CASES = [
    Case("replay-no-history", lambda d: ["replay", d / "nowhere"], ["no such history file", "nowhere"]),
    Case("replay-empty-folder", lambda d: (d / "run").mkdir() or ["replay", d / "run"],
         ["no such history file", "history.jsonl"]),
    Case("replay-unknown-alarm", lambda d: ["replay", _history(d / "run").parent, "--alarm", "oracle"],
         ["--alarm", "unknown alarm 'oracle'", "geometry"]),
    Case("replay-corrupt-line", lambda d: ["replay", _history(d / "run", "{not json\n{}\n").parent],
         ["history.jsonl", "line"]),
    Case("replay-binary-file", lambda d: ["replay", _write(d / "h.jsonl", b"\x00\xff\x10garbage\n")],
         ["h.jsonl", "line 1"]),
    Case("replay-no-rows", lambda d: ["replay", _write(d / "h.jsonl", "")], ["h.jsonl", "no history rows"]),
    Case("replay-threshold-above-one", lambda d: ["replay", _history(d / "run").parent, "--threshold", "2"],
         ["--threshold", "less than or equal to 1"]),
    Case("grok-unknown-alarm", lambda d: [*GROK, "--alarm", "oracle", "--out", d / "o"],
         ["alarm", "unknown alarm 'oracle'", "recommended"]),
    Case("grok-geometry-without-defect", lambda d: [*GROK, "--alarm", "geometry", "--no-defect", "--out", d / "o"],
         ["--alarm geometry reads the commutator-defect probe", "--no-defect"]),
    Case("grok-val-frac-too-big", lambda d: [*GROK, "--val-frac", "0.6", "--out", d / "o"],
         ["val_frac", "0.6"]),
    Case("run-alarm-not-a-name", lambda d: ["run", _write(d / "c.toml", 'task = "modular"\nmodulus = 7\nsteps = 20\n'
                                                                          'alarm = 3\n'), "--out", d / "o"],
         ["alarm", "expected bool | str", "c.toml"]),
    Case("run-alarm-needs-probes", lambda d: ["run", _write(d / "c.toml", 'task = "modular"\nmodulus = 7\nsteps = 20\n'
                                                                            'alarm = "paper"\n'), "--out", d / "o"],
         ["paper alarm reads the defect probe", "probes.defect"]),
    Case("run-flag-alarm-unknown", lambda d: ["run", _write(d / "c.toml", 'task = "modular"\nmodulus = 7\n'), "--alarm",
                                              "soon", "--out", d / "o"], ["unknown alarm 'soon'", "--alarm"]),
    Case("run-probe-schedule-bad", lambda d: ["run", _write(d / "c.json", json.dumps(
        {"modulus": 7, "steps": 20, "probes": {"defect": {"every": [[100, 10], [50, 100]]}}})), "--out", d / "o"],
         ["defect probe: every", "increase strictly"]),
    Case("run-every-schedule-bad", lambda d: ["run", _write(d / "c.toml", 'task = "lm"\nsteps = 20\n'
                                                                        'every = [[10, 2], [5, 1]]\n'), "--out", d / "o"],
         ["c.toml", "every", "increase strictly"]),
    Case("run-eval-every-schedule-zero", lambda d: ["run", _write(d / "c.json", json.dumps(
        {"task": "lm", "steps": 20, "eval_every": [[10, 0]]})), "--out", d / "o"], ["c.json", "eval_every", "≥ 1"]),
    Case("run-every-schedule-snapshots", lambda d: ["run", _write(d / "c.json", json.dumps(
        {"modulus": 7, "steps": 20, "every": [[10, 2], [None, 5]]})), "--out", d / "o"], ["snapshots = 0"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path):
    check(case, tmp_path)
