"""The experiment runner and the `grok` / `run` commands, on tiny settings."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

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
