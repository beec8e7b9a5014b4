"""Run folders are never destroyed, and a killed run resumes bit-identically (issue 13, items 1, 12, 13).

The reference is an uninterrupted run; an interrupted one (SIGKILLed in a subprocess, or
crashed in-process) is resumed and must give the same losses, the same history.jsonl,
eval.csv and model bytes, and the same summary (but wall_seconds).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.errors import CheckpointError, ConfigError
from spectral_edge.experiments import RunConfig, run_experiment
from spectral_edge.experiments.checkpoint import RUN_STATE, state_files
from spectral_edge.experiments.suite import SuiteRun, launch_mode, run_suite

TINY = {"d_model": 32, "d_ff": 64, "n_heads": 2}
#: no probes; the W = 5 window is still filling at the first run checkpoint (step 40: 5 of 6 samples); the
#: ring of 5 snapshots is full there and wraps after it
PLAIN = RunConfig(op="add", modulus=13, steps=160, eval_every=20, every=10, windows=(3, 5), model=TINY,
                  batch_size=64, lr=3e-3, early_stop=False, threads=1, snapshots=5)
#: probes (manifold, defect), the gradient stream, a learning-rate warm-up and an alarm that fires at
#: step 60 (defect onset only), so a resume from step 25 (between samples, inside the warm-up) has
#: every kind of state to carry
PROBED = RunConfig(op="add", modulus=13, steps=120, eval_every=20, every=10, windows=(3, 5), model=TINY,
                   batch_size=64, lr=3e-3, early_stop=False, threads=1, warmup_steps=30, gradients=True,
                   probes={"manifold": {"every": 20},
                           "defect": {"every": 20, "batch_size": 64, "alarm_defect_factor": 1.5,
                                      "alarm_defect_min": 0.0, "alarm_val_drop": None,
                                      "alarm_defect_baseline_n": 2, "alarm_persistence": 1}})
#: compared byte for byte (the modular runs keep snapshots for functional modes by default: issue 14)
FILES = ("history.jsonl", "eval.csv", "model.safetensors", "snapshots.safetensors", "config.json")

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


class Crash(Exception):
    pass


def crash_at(n: int):
    def cb(step, total, info):
        if step == n:
            raise Crash

    return cb


def record_losses(into: dict[int, float]):
    return lambda step, total, info: into.__setitem__(step, info["loss"])


def assert_same_run(a: Path, b: Path) -> None:
    for f in FILES:
        assert (a / f).is_file(), f
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    sa.pop("wall_seconds")
    sb.pop("wall_seconds")
    assert sa == sb
    assert not (b / RUN_STATE).exists()


@pytest.fixture(scope="module")
def probed_ref(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    losses: dict[int, float] = {}
    res = run_experiment(PROBED, out, save_every=25, progress=record_losses(losses))
    assert res.summary["warning_step"] == 60  # the alarm fires after the resume points below
    return out, losses


SCRIPT = textwrap.dedent("""
    import sys, time
    from spectral_edge.experiments import RunConfig, run_experiment

    cfg, out, every = RunConfig.from_file(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    def slow(step, total, info):  # leave the test time to kill the run after its first checkpoint
        if step > every:
            time.sleep(0.03)

    run_experiment(cfg, out, save_every=every, progress=slow)
""")


def _max_step(history: Path) -> int:
    steps = [json.loads(ln).get("step") for ln in history.read_text().splitlines() if ln.strip()]
    return max((s for s in steps if s is not None), default=-1)


def test_sigkilled_run_resumes_bit_identically(tmp_path):
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(PLAIN.to_dict()))
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(cfg_file), str(killed), "40"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:  # kill once a run checkpoint exists and the history has rows written after it
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no run checkpoint appeared"
            ckpts = state_files(killed)
            if ckpts and _max_step(killed / "history.jsonl") > int(ckpts[-1].stem.split("_")[1]):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists()
    cut_at = int(state_files(killed)[-1].stem.split("_")[1])
    assert _max_step(killed / "history.jsonl") > cut_at  # the resume has rows to drop

    # rerunning without a flag refuses and leaves the killed run as it was
    before = (killed / "history.jsonl").read_bytes()
    again = CliRunner().invoke(app, ["run", str(cfg_file), "--out", str(killed), "--quiet"])
    assert again.exit_code == 2 and "--resume" in again.output, again.output
    assert (killed / "history.jsonl").read_bytes() == before

    res = CliRunner().invoke(app, ["run", str(cfg_file), "--out", str(killed), "--resume", "--save-every", "40",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    ref = tmp_path / "ref"
    run_experiment(PLAIN, ref, save_every=40)
    assert_same_run(ref, killed)


def test_resume_mid_window_with_probes_alarm_and_warmup(tmp_path, probed_ref):
    ref, ref_losses = probed_ref
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_experiment(PROBED, out, save_every=25, progress=crash_at(37))
    assert [p.name for p in state_files(out)] == ["step_0000025.pt"]  # between samples (every 10), in the warm-up
    losses: dict[int, float] = {}
    res = run_experiment(PROBED, out, resume=True, save_every=25, progress=record_losses(losses))
    assert sorted(losses) == list(range(26, 121))
    assert all(losses[s] == ref_losses[s] for s in losses)  # bit-identical losses, step by step
    assert res.summary["warning_step"] == 60
    assert_same_run(ref, out)


def test_torn_newest_checkpoint_falls_back_with_a_warning(tmp_path, probed_ref):
    ref, _ = probed_ref
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_experiment(PROBED, out, save_every=25, progress=crash_at(62))  # after the alarm at 60
    newest = state_files(out)[-1]
    assert newest.name == "step_0000050.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # torn
    with pytest.warns(RuntimeWarning, match="step_0000025.pt.*skipped.*step_0000050.pt"):
        run_experiment(PROBED, out, resume=True, save_every=25)
    assert_same_run(ref, out)


def test_run_checkpoints_are_bounded_complete_and_removed_at_the_end(tmp_path):
    seen: list[list[str]] = []
    cfg = RunConfig(**{**PLAIN.to_dict(), "steps": 60})

    def look(step, total, info):
        folder = tmp_path / "run" / RUN_STATE
        seen.append(sorted(p.name for p in folder.iterdir()) if folder.is_dir() else [])

    run_experiment(cfg, tmp_path / "run", save_every=10, progress=look)
    assert max(len(s) for s in seen) == 2  # the newest two only
    assert seen[-1] == ["step_0000040.pt", "step_0000050.pt"]  # (progress runs before the step's checkpoint)
    assert not any(n.endswith(".tmp") or n.startswith(".") for s in seen for n in s)
    assert not (tmp_path / "run" / RUN_STATE).exists()  # a finished run needs no run checkpoints
    run_experiment(cfg, tmp_path / "none", save_every=0, progress=look)
    assert seen[-1] == []


def test_resume_refusals_name_the_problem(tmp_path):
    cfg = RunConfig(**{**PLAIN.to_dict(), "steps": 40})
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="no run here to resume"):
        run_experiment(cfg, out, resume=True)
    assert not out.exists()
    with pytest.raises(Crash):
        run_experiment(cfg, out, save_every=10, progress=crash_at(25))
    snap = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = RunConfig(**{**cfg.to_dict(), "seed": 7, "lr": 1e-3})
    with pytest.raises(ConfigError, match=r"differs in lr: 0\.003 → 0\.001, seed: 42 → 7"):
        run_experiment(other, out, resume=True)
    with pytest.raises(ConfigError, match="exclude each other"):
        run_experiment(cfg, out, resume=True, overwrite=True)
    with pytest.raises(ConfigError, match="already holds a run.*--overwrite.*--resume"):
        run_experiment(cfg, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snap
    for p in state_files(out):
        p.write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(ConfigError, match="no usable run checkpoint.*torn or damaged"):
        run_experiment(cfg, out, resume=True)
    for p in state_files(out):
        p.unlink()
    with pytest.raises(ConfigError, match="no run checkpoint to resume from"):
        run_experiment(cfg, out, resume=True)
    run_experiment(cfg, out, overwrite=True)
    with pytest.raises(ConfigError, match="already finished"):
        run_experiment(cfg, out, resume=True)


def test_overwrite_replaces_the_whole_previous_run(tmp_path):
    out = tmp_path / "run"
    first = RunConfig(**{**PLAIN.to_dict(), "steps": 40, "checkpoint_every": 10})
    run_experiment(first, out)
    (out / "notes.txt").write_text("mine")
    second = RunConfig(**{**PLAIN.to_dict(), "steps": 20, "seed": 3})
    res = run_experiment(second, out, overwrite=True)
    assert json.loads((out / "config.json").read_text())["seed"] == 3 and res.summary["steps_run"] == 20
    assert not (out / "checkpoints").exists()  # the old run's parameter snapshots went with it
    assert (out / "notes.txt").read_text() == "mine"  # files that are not the run's stay
    assert max(json.loads(ln).get("step") or 0 for ln in (out / "history.jsonl").read_text().splitlines()) == 20


def test_a_full_disk_is_a_one_line_error_naming_the_file(tmp_path, monkeypatch):
    import errno

    from spectral_edge.experiments import runner

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "save_run_state", full)
    cfg = RunConfig(**{**PLAIN.to_dict(), "steps": 20})
    with pytest.raises(CheckpointError, match=r"run_state/step_0000010\.pt: cannot write \(No space left on device\)"):
        run_experiment(cfg, tmp_path / "run", save_every=10)


def test_every_file_the_runner_writes_is_0644(tmp_path):
    old = os.umask(0o022)
    try:
        modes: dict[str, int] = {}

        def look(step, total, info):
            for p in (tmp_path / "run").rglob("*"):
                if p.is_file():
                    modes[str(p.relative_to(tmp_path / "run"))] = stat.S_IMODE(p.stat().st_mode)

        cfg = RunConfig(**{**PLAIN.to_dict(), "steps": 60, "checkpoint_every": 20})
        with pytest.raises(Crash):
            run_experiment(cfg, tmp_path / "run", save_every=20, progress=lambda s, t, i: (look(s, t, i),
                                                                                          crash_at(52)(s, t, i)))
        size = (tmp_path / "run" / "history.jsonl").stat().st_size
        run_experiment(cfg, tmp_path / "run", save_every=20, resume=True, progress=look)  # cuts the history
        assert (tmp_path / "run" / "history.jsonl").stat().st_size != size
        look(0, 0, {})
        assert {"model.safetensors", "summary.json", "eval.csv", "config.json", "history.jsonl",
                "snapshots.safetensors", f"{RUN_STATE}/step_0000040.pt",
                "checkpoints/step_0000020.safetensors"} <= set(modes)
        assert {k: oct(v) for k, v in modes.items() if v != 0o644} == {}
    finally:
        os.umask(old)


def test_suite_resumes_an_unfinished_run_inside_the_run(tmp_path, probed_ref):
    ref, _ = probed_ref
    out = tmp_path / "suite"
    run = SuiteRun("probed", "grok", PROBED)
    with pytest.raises(Crash):
        run_experiment(PROBED, out / "probed", save_every=25, progress=crash_at(62))
    assert launch_mode(out / "probed", PROBED) == "resume"
    assert launch_mode(out / "probed", RunConfig(**{**PROBED.to_dict(), "seed": 1})) == "overwrite"
    assert launch_mode(out / "fresh", PROBED) is None
    config_id = (out / "probed" / "config.json").stat()
    events: list[str] = []
    # the suite's runs use the CLI's default cadence (500); this run resumes from its step-50 checkpoint
    got = run_suite([run], out, jobs=1, on_event=lambda kind, r, s: events.append(kind))
    assert events == ["resume", "done"], (out / "probed" / "run.log").read_text()
    after = (out / "probed" / "config.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (config_id.st_ino, config_id.st_mtime_ns)  # not started again
    assert got["probed"]["steps_run"] == 120
    assert_same_run(ref, out / "probed")


def test_suite_reuses_a_finished_run_and_reruns_one_that_lacks_its_snapshots(tmp_path):
    cfg = RunConfig(**{**PLAIN.to_dict(), "steps": 20, "snapshots": None})  # the default: 21 for this task
    out = tmp_path / "suite"
    run = SuiteRun("a", "grok", cfg)
    run_experiment(cfg, out / "a")
    # a run finished before `snapshots` existed: its config.json lacks the key, which means its default (the
    # rule --resume uses), so it is the same run
    saved = json.loads((out / "a" / "config.json").read_text())
    del saved["snapshots"]
    (out / "a" / "config.json").write_text(json.dumps(saved))
    events: list[str] = []
    run_suite([run], out, jobs=1, on_event=lambda kind, r, s: events.append(kind))
    assert events == []
    # without the snapshots its config asks for (what `spectral-edge modes` reads) it is trained again
    (out / "a" / "snapshots.safetensors").unlink()
    assert launch_mode(out / "a", cfg) == "overwrite"
    run_suite([run], out, jobs=1, on_event=lambda kind, r, s: events.append(kind))
    assert events == ["start", "done"], (out / "a" / "run.log").read_text()
    assert (out / "a" / "snapshots.safetensors").is_file()
