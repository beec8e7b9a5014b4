"""Bad input for `run`, `grok` and `demo` around run folders (issue 13, items 1 and 13): a run
folder is never destroyed; a refusal is one line naming the folder (or file) and the way out
(--overwrite, --resume), and every file that was there stays byte-identical."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from badinput import Case, check
from spectral_edge.experiments import RunConfig, run_experiment
from spectral_edge.experiments.checkpoint import state_files

TINY_TOML = ('op = "add"\nmodulus = 13\nsteps = 40\nwindows = [3]\nevery = 10\neval_every = 20\nbatch_size = 32\n'
             'threads = 1\n[model]\nd_model = 32\nd_ff = 64\nn_heads = 2\n')


def _old_run(d: Path) -> Path:
    """A finished-looking run folder (193 history lines) that a careless runner would clobber."""
    run = d / "old-run"
    run.mkdir()
    rows = [{"kind": "meta", "step": None, "library": "spectral-edge"}]
    rows += [{"kind": "log", "step": 10 * i, "loss": 1.0 / (i + 1)} for i in range(192)]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "config.json").write_text(json.dumps(RunConfig(steps=1920).to_dict()))
    (run / "eval.csv").write_text("step,train_loss\n0,1.0\n")
    return run


def _finished(d: Path) -> Path:
    run = _old_run(d)
    (run / "summary.json").write_text(json.dumps({"grok_step": None}))
    return run


class _Stop(Exception):
    pass


def _killed(d: Path, torn: bool = False) -> Path:
    """A real run of TINY_TOML interrupted at step 25 (run checkpoints at 10 and 20)."""
    (d / "tiny.toml").write_text(TINY_TOML)
    run = d / "killed-run"

    def stop(step, total, info):
        if step == 25:
            raise _Stop

    try:
        run_experiment(RunConfig.from_file(d / "tiny.toml"), run, save_every=10, progress=stop)
    except _Stop:
        pass
    if torn:
        for p in state_files(run):
            p.write_bytes(p.read_bytes()[:200])
    return run


def _tampered(d: Path) -> Path:
    """A killed run whose newest checkpoint reads fine but holds a bad RNG state."""
    import torch

    run = _killed(d)
    newest = state_files(run)[-1]
    state = torch.load(newest, weights_only=True)
    state["torch_rng"] = torch.zeros(3, dtype=torch.uint8)
    torch.save(state, newest)
    return run


def _run(text: str, folder=_old_run, *flags: str):
    def make(d: Path):
        out = folder(d)
        (d / "c.toml").write_text(text)
        return ["run", d / "c.toml", "--out", out, "--quiet", *flags]

    return make


def _grok(folder, *flags: str):
    def make(d: Path):
        return ["grok", "--modulus", "11", "--steps", "20", "--out", folder(d), "--quiet", *flags]

    return make


def _file(d: Path) -> Path:
    (d / "notafolder.txt").write_text("keep me")
    return d / "notafolder.txt"


def _demo(make_folder, *flags: str):
    def make(d: Path):
        return ["demo", "--modulus", "11", "--steps", "20", "--out", make_folder(d), "--quiet", *flags]

    return make


def _demo_report(d: Path) -> Path:
    out = d / "demo-out"
    out.mkdir()
    (out / "report.html").write_text("<html>an earlier demo</html>")
    return out


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: _killed trains in this process

CASES = [
    # the repro: a bad config and --out an existing run: one line, the run untouched
    Case("repro-steps-float-existing-run", _run("steps = 50.7\n"), ["c.toml", "steps", "50.7"]),
    Case("repro-steps-float-with-overwrite", _run("steps = 50.7\n", _old_run, "--overwrite"),
         ["c.toml", "steps", "50.7"]),
    Case("repro-steps-float-with-resume", _run("steps = 50.7\n", _old_run, "--resume"), ["c.toml", "steps", "50.7"]),
    Case("run-existing-run", _run(TINY_TOML), ["old-run", "already holds a run", "--overwrite", "--resume"]),
    Case("grok-existing-run", _grok(_old_run), ["old-run", "already holds a run", "--overwrite", "--resume"]),
    Case("run-existing-killed-run", _run(TINY_TOML, _killed), ["killed-run", "run_state", "--resume"]),
    Case("resume-no-checkpoint", _run(TINY_TOML, _old_run, "--resume"), ["old-run", "no run checkpoint", "--overwrite"]),
    Case("resume-nothing-there", _run(TINY_TOML, lambda d: d / "absent", "--resume"), ["absent", "no run here"]),
    Case("resume-finished-run", _run(TINY_TOML, _finished, "--resume"), ["old-run", "already finished"]),
    Case("resume-different-config", _run(TINY_TOML.replace("steps = 40", "steps = 40\nseed = 7"), _killed, "--resume"),
         ["step_0000020.pt", "differs in", "seed: 42 → 7"]),
    Case("resume-torn-checkpoints", _run(TINY_TOML, lambda d: _killed(d, torn=True), "--resume"),
         ["killed-run", "no usable run checkpoint", "torn", "--overwrite"]),
    Case("resume-tampered-checkpoint", _run(TINY_TOML, _tampered, "--resume"),
         ["step_0000020.pt", "torch_rng", "does not fit"]),
    Case("grok-resume-no-checkpoint", _grok(_old_run, "--resume"), ["old-run", "no run checkpoint"]),
    Case("overwrite-and-resume", _run(TINY_TOML, _killed, "--overwrite", "--resume"), ["--overwrite", "--resume"]),
    Case("out-is-a-file", _run(TINY_TOML, _file), ["notafolder.txt", "is a file"]),
    Case("out-under-a-file", _run(TINY_TOML, lambda d: _file(d) / "run"), ["notafolder.txt", "is a file"]),
    Case("grok-out-is-a-file", _grok(_file), ["notafolder.txt", "is a file"]),
    Case("save-every-negative", _run(TINY_TOML, lambda d: d / "new", "--save-every", "-1"), ["--save-every"]),
    Case("demo-existing-report", _demo(_demo_report), ["demo-out", "report.html", "--overwrite"]),
    Case("demo-existing-run", _demo(_old_run), ["old-run", "already holds a run", "--overwrite"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_run_folder(case, tmp_path):
    check(case, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders, so there is nothing to refuse")
def test_unwritable_out_parent(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        check(Case("out-parent-unwritable", _run(TINY_TOML, lambda d: locked / "run"), ["locked", "not writable"]),
              tmp_path)
    finally:
        locked.chmod(0o755)
