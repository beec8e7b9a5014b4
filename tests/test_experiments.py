"""The experiment runner and the `grok` / `run` commands, on tiny settings."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from badinput import Case, check
from spectral_edge.cli import app
from spectral_edge.errors import ConfigError
from spectral_edge.experiments import RunConfig, run_experiment
from spectral_edge.io.history import read_history

TINY = {"d_model": 32, "d_ff": 64, "n_heads": 2}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_modular_run_writes_the_run_folder(tmp_path):
    cfg = RunConfig(op="add", modulus=13, steps=120, eval_every=20, every=10, windows=(3, 5), model=TINY,
                    batch_size=64, lr=3e-3, checkpoint_every=60, early_stop=False)
    res = run_experiment(cfg, tmp_path / "run")
    out = tmp_path / "run"
    for f in ("config.json", "history.jsonl", "eval.csv", "summary.json", "model.safetensors"):
        assert (out / f).is_file(), f
    ev = pd.read_csv(out / "eval.csv")
    assert ev["step"].tolist() == list(range(0, 121, 20))
    assert ev["train_loss"].iloc[-1] < ev["train_loss"].iloc[0]  # it learns
    s = json.loads((out / "summary.json").read_text())
    assert {"grok_step", "warning_step", "final_test_acc", "history"} <= set(s)
    assert s["steps_run"] == 120 and s["final_test_acc"] == pytest.approx(ev["test_acc"].iloc[-1])
    sed = read_history(out / "history.jsonl", kind="sed")
    assert sorted(set(sed["window"])) == [3, 5] and sed["step"].max() == 120
    logs = read_history(out / "history.jsonl", kind="log")
    assert logs["test_acc"].notna().sum() == len(ev) and logs["lr"].notna().any()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_0000000.safetensors", "step_0000060.safetensors", "step_0000120.safetensors"]
    assert res.summary == s
    # the monitor watched the attention weights only (the papers' grokking selection)
    assert s["n_parameters_monitored"] == 2 * 4 * 32 * 32


def test_run_is_reproducible_and_leaves_global_rng_alone(tmp_path):
    cfg = RunConfig(op="mul", modulus=11, steps=40, eval_every=20, every=10, windows=(3,), model=TINY,
                    batch_size=32)
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = run_experiment(cfg, tmp_path / "a").summary
    after = torch.rand(1)
    b = run_experiment(cfg, tmp_path / "b").summary
    assert torch.equal(before, after)
    for k in ("final_test_acc", "final_train_loss"):
        assert a[k] == b[k]
    ha = read_history(tmp_path / "a" / "history.jsonl", kind="sed")
    hb = read_history(tmp_path / "b" / "history.jsonl", kind="sed")
    pd.testing.assert_series_equal(ha["gap_ratio"], hb["gap_ratio"])


def test_early_stop_after_grokking(tmp_path):
    # a threshold every evaluation meets makes the first evaluation after step 0 the grok step
    cfg = RunConfig(op="add", modulus=7, steps=2000, eval_every=10, every=10, windows=(3,), model=TINY,
                    batch_size=32, grok_threshold=0.0, stop_margin=30)
    s = run_experiment(cfg, tmp_path / "r").summary
    assert s["grok_step"] == 10 and s["stopped_early"] and s["steps_run"] == 40
    no_stop = run_experiment(RunConfig(**{**cfg.to_dict(), "steps": 50, "early_stop": False}), tmp_path / "n").summary
    assert no_stop["steps_run"] == 50 and not no_stop["stopped_early"]


@pytest.mark.parametrize("task,extra", [
    ("multitask", {"op": "add,mul", "modulus": 7, "model": TINY}),
    ("dyck", {"model": TINY, "task_options": {"n_pool": 200, "n_train": 20, "max_pairs": 4}, "batch_size": 20}),
    ("scan", {"model": {"d_model": 32, "d_ff": 64, "n_heads": 2, "n_enc_layers": 1, "n_dec_layers": 1},
              "task_options": {"n_train": 64, "n_test": 16}, "batch_size": 16}),
    ("lm", {"model": {"d_model": 32, "n_layer": 1, "n_head": 2}, "task_options": {"n_stories": 50, "block_size": 32},
            "batch_size": 16, "selection": "all"}),
])
def test_every_task_runs_and_learns(tmp_path, task, extra):
    cfg = RunConfig(task=task, steps=30, eval_every=15, every=5, windows=(3,), lr=3e-3, weight_decay=0.0, **extra)
    run_experiment(cfg, tmp_path / task)
    ev = pd.read_csv(tmp_path / task / "eval.csv")
    assert ev["train_loss"].iloc[-1] < ev["train_loss"].iloc[0]
    assert len(read_history(tmp_path / task / "history.jsonl", kind="sed")) > 0


def test_muon_and_sgd_optimizers_run(tmp_path):
    for opt in ("muon", "sgd"):
        cfg = RunConfig(op="add", modulus=7, steps=20, eval_every=10, every=5, windows=(3,), model=TINY,
                        optimizer=opt, lr=2e-2, weight_decay=0.0, batch_size=32)
        s = run_experiment(cfg, tmp_path / opt).summary
        assert s["optimizer"] == opt and s["final_train_loss"] < 2.5


def test_config_files_and_validation(tmp_path):
    (tmp_path / "c.toml").write_text('task = "modular"\nop = "sub"\nmodulus = 11\nwindows = [3]\n')
    cfg = RunConfig.from_file(tmp_path / "c.toml")
    assert cfg.op == "sub" and cfg.windows == (3,)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown config keys"):
        RunConfig.from_dict({"tsak": "modular"})
    with pytest.raises(ConfigError, match="unknown task"):
        RunConfig(task="vision")
    with pytest.raises(ConfigError, match="unknown optimizer"):
        RunConfig(optimizer="lion")


def test_grok_cli_with_a_tiny_modulus(tmp_path):
    out = tmp_path / "g"
    res = CliRunner().invoke(app, ["grok", "--op", "add", "--modulus", "11", "--steps", "60", "--every", "10",
                                   "-w", "3", "--no-defect", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["steps_run"] == 60 and (out / "summary.json").is_file()
    assert set(json.loads((out / "summary.json").read_text())) >= {"grok_step", "warning_step", "final_test_acc",
                                                                    "history"}


def test_run_cli_with_overrides_and_bad_input(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"task": "modular", "op": "add", "modulus": 7, "model": TINY, "windows": [3],
                               "every": 5, "eval_every": 10, "batch_size": 32}))
    out = tmp_path / "r"
    res = CliRunner().invoke(app, ["run", str(cfg), "--set", "steps=20", "--set", "seed=3", "--out", str(out),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["seed"] == 3
    bad = CliRunner().invoke(app, ["run", str(cfg), "--set", "stpes=3", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown config keys" in bad.output
    bad = CliRunner().invoke(app, ["grok", "--op", "div", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown operation" in bad.output


def test_demo_command_writes_a_run_folder(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--modulus", "11", "--steps", "200", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith(("report:", "results:")) and str(out) in last
    s = json.loads((out / "summary.json").read_text())
    assert s["steps_run"] == 200 and (out / "history.jsonl").is_file()
    # a second demo into the same folder refuses (one line, nothing touched) unless --overwrite
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = CliRunner().invoke(app, ["demo", "--modulus", "11", "--steps", "100", "--out", str(out), "--quiet"])
    assert again.exit_code == 2 and "--overwrite" in again.output, again.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    res = CliRunner().invoke(app, ["demo", "--modulus", "11", "--steps", "100", "--out", str(out), "--quiet",
                                   "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "summary.json").read_text())["steps_run"] == 100


# ---------------------------------------------------------------------- probes that stop (issue 14, part 6)
def _probe_steps(out) -> list[int]:
    return read_history(out / "history.jsonl", kind="probe")["step"].tolist()


UNTIL = RunConfig(op="add", modulus=7, steps=60, eval_every=10, every=10, windows=(3,), model=TINY, batch_size=32,
                  grok_threshold=0.0, early_stop=False, lr=3e-3, weight_decay=0.0,
                  probes={"defect": {"every": 10, "batch_size": 16, "n_samples": 1}})


def test_a_probe_until_grok_stops_after_the_grok_step(tmp_path):
    # a threshold every evaluation meets makes step 10 the grok step
    run_experiment(UNTIL, tmp_path / "all")
    assert _probe_steps(tmp_path / "all") == [10, 20, 30, 40, 50, 60]
    until = RunConfig(**{**UNTIL.to_dict(), "probes": {"defect": {**UNTIL.probes["defect"], "until": "grok"}}})
    s = run_experiment(until, tmp_path / "until").summary
    assert s["grok_step"] == 10 and _probe_steps(tmp_path / "until") == [10]
    # nothing else changes: the probe never touched training
    a, b = ((tmp_path / d / "model.safetensors").read_bytes() for d in ("all", "until"))
    assert a == b


def test_a_probe_until_alarm_stops_after_the_first_alarm(tmp_path):
    # the defect onset alone, with a baseline of two records and a factor every run meets: the alarm fires at
    # the third record (step 30), and the probe stops there
    alarm = {"every": 10, "batch_size": 16, "n_samples": 1, "alarm_defect_factor": 1e-6, "alarm_defect_min": 0.0,
             "alarm_val_drop": None, "alarm_defect_baseline_n": 2}
    base = RunConfig(**{**UNTIL.to_dict(), "grok_threshold": 1.0, "probes": {"defect": alarm}})
    s = run_experiment(base, tmp_path / "all").summary
    assert s["warning_step"] is not None and _probe_steps(tmp_path / "all") == [10, 20, 30, 40, 50, 60]
    until = RunConfig(**{**base.to_dict(), "probes": {"defect": {**alarm, "until": "alarm"}}})
    s2 = run_experiment(until, tmp_path / "until").summary
    assert s2["warning_step"] == s["warning_step"]
    assert _probe_steps(tmp_path / "until") == [t for t in range(10, 61, 10) if t <= s["warning_step"]]


def test_a_probe_until_grok_resumes_stopped(tmp_path):
    until = RunConfig(**{**UNTIL.to_dict(), "probes": {"defect": {**UNTIL.probes["defect"], "until": "grok"}}})
    run_experiment(until, tmp_path / "ref", save_every=20)

    def crash(step, total, info):
        if step == 45:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(until, tmp_path / "run", save_every=20, progress=crash)
    run_experiment(until, tmp_path / "run", save_every=20, resume=True)
    for f in ("history.jsonl", "eval.csv", "model.safetensors", "snapshots.safetensors"):
        assert (tmp_path / "ref" / f).read_bytes() == (tmp_path / "run" / f).read_bytes(), f


def test_a_bad_until_is_refused_before_anything_is_written(tmp_path):
    bad = RunConfig(**{**UNTIL.to_dict(), "probes": {"defect": {"every": 10, "until": "never"}}})
    with pytest.raises(ConfigError, match=r"probes\.defect\.until: must be one of grok, alarm, got 'never'"):
        run_experiment(bad, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_demo_calls_its_hook_after_the_run_and_before_the_report(tmp_path, monkeypatch):
    from spectral_edge.cli import demo as demo_mod

    seen = []

    def hook(out, summary, quiet):
        seen.append(((out / "summary.json").is_file(), (out / "snapshots.safetensors").is_file(),
                     (out / "report.html").exists(), summary["steps_run"], quiet))

    monkeypatch.setattr(demo_mod, "before_report", hook)
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--modulus", "11", "--steps", "100", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert seen == [(True, True, False, 100, True)]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["probes"] == {"defect": {"every": 100, "until": "grok"}}


# ---------------------------------------------------------------------- bad probe options on the command line
def _cfg_file(probes):
    def make(d):
        (d / "c.json").write_text(json.dumps({"modulus": 7, "steps": 5, "model": TINY, "windows": [3], "every": 5,
                                               "probes": probes}))
        return ["run", str(d / "c.json"), "--out", str(d / "run"), "--quiet"]

    return make


CASES = [
    Case("probe-until-unknown", _cfg_file({"defect": {"until": "never"}}), ["probes.defect.until", "never", "grok"]),
    Case("probe-option-unknown", _cfg_file({"defect": {"bogus": 1}}), ["probes.defect", "bogus"]),
    Case("probe-option-bad-value", _cfg_file({"defect": {"every": "often"}}), ["probes.defect", "often"]),
    Case("probe-option-bad-value-manifold", _cfg_file({"manifold": {"max_snapshots": 1}}),
         ["probes.manifold", "max_snapshots"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_probe_options(case, tmp_path):
    check(case, tmp_path)
