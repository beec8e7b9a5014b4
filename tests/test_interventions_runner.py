"""The runner and the CLI with an intervention: two-phase (a baseline run, then ``--basis-from``),
summary.json records it, config.json keeps the table, and ``--resume`` continues it bit-identically."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.experiments import RunConfig, run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

TINY = {"d_model": 32, "d_ff": 64, "n_heads": 2}
BASE = dict(op="add", modulus=7, steps=60, eval_every=20, every=10, windows=(3,), model=TINY, batch_size=32,
            lr=3e-3)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    out = tmp_path_factory.mktemp("iv") / "base"
    run_experiment(RunConfig(**BASE), out)
    return out


def test_project_with_basis_from_a_baseline_completes_and_is_recorded(baseline, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({**BASE, "windows": [3]}))
    res = CliRunner().invoke(app, ["run", str(cfg), "--intervention", "project", "--basis-from", str(baseline),
                                   "--intervention-start", "20", "--strength", "1", "--out", str(tmp_path / "p"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "p" / "summary.json").read_text())
    iv = s["intervention"]
    assert iv["kind"] == "project" and iv["strength"] == 1.0 and iv["start"] == 20 and iv["every"] == 1
    assert iv["basis_source"] == "run" and iv["basis_from"] == str(baseline) and iv["selection"] == "all"
    assert iv["basis"]["dim"] == 16 and iv["basis"]["blocks"] == 8  # 2 PCs × 8 attention matrices
    assert iv["steps_applied"] == 41 and iv["first_step_applied"] == 20
    assert "grok_step" in s and s["steps_run"] == 60
    assert json.loads((tmp_path / "p" / "config.json").read_text())["intervention"]["kind"] == "project"
    # it changed training; the baseline's own summary and config have no intervention key
    a, b = load_file(baseline / "model.safetensors"), load_file(tmp_path / "p" / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert "intervention" not in json.loads((baseline / "summary.json").read_text())
    assert "intervention" not in json.loads((baseline / "config.json").read_text())


def test_strength_zero_run_matches_the_baseline_bit_for_bit(baseline, tmp_path):
    res = run_experiment(RunConfig(**BASE, intervention={"kind": "project", "basis_from": str(baseline),
                                                         "start": 1, "strength": 0.0}), tmp_path / "z")
    a, b = load_file(baseline / "model.safetensors"), load_file(tmp_path / "z" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert res.summary["intervention"]["steps_applied"] == 0


@pytest.mark.parametrize("table", [{"kind": "keep-sed", "window": 5}, {"kind": "noise", "basis": "random",
                                                                      "start": 10, "every": 7}])
def test_a_killed_intervention_run_resumes_bit_identically(table, tmp_path):
    cfg = RunConfig(**BASE, intervention=table)
    full = run_experiment(cfg, tmp_path / "full", save_every=20).summary

    def crash(step, total, info):
        if step == 47:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "r", save_every=20, progress=crash)
    resumed = run_experiment(cfg, tmp_path / "r", resume=True, save_every=20).summary
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "r" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in full.items() if k != "wall_seconds"} == \
        {k: v for k, v in resumed.items() if k != "wall_seconds"}
    assert (tmp_path / "full" / "history.jsonl").read_bytes() == (tmp_path / "r" / "history.jsonl").read_bytes()
    assert full["intervention"]["steps_applied"] > 0


def test_online_basis_needs_the_manifold_probe_and_then_runs(tmp_path):
    from spectral_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="manifold probe"):
        run_experiment(RunConfig(**BASE, intervention={"kind": "project", "basis": "online", "start": 1}),
                       tmp_path / "x")
    assert not (tmp_path / "x").exists()
    s = run_experiment(RunConfig(**BASE, probes={"manifold": {"every": 10, "null_trials": 0}},
                                 intervention={"kind": "project", "basis": "online", "start": 1}),
                       tmp_path / "o").summary
    assert s["intervention"]["basis"] == "online" and 0 < s["intervention"]["steps_applied"] < 60


def test_basis_from_a_run_with_checkpoints_uses_the_whole_trajectory(tmp_path):
    from spectral_edge.interventions import basis_from_run

    run_experiment(RunConfig(**BASE, checkpoint_every=20, snapshots=0), tmp_path / "b")
    B = basis_from_run(tmp_path / "b")
    assert B.dim == 16 and "4 checkpoints, steps 0–60" in B.description
    assert sorted(B.shapes) == sorted(f"layers.{i}.attn.{m}_proj.weight" for i in range(2) for m in "qkvo")
