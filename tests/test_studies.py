"""Trajectory studies: run plans, the small analysis helpers, the verdict rules, and the whole
pipeline (runs → analysis → document) at the tiny scale through the CLI."""

from __future__ import annotations

import json
import math

import pytest

from spectral_edge.experiments import studies as st
from spectral_edge.experiments.config import RunConfig


# ---------------------------------------------------------------------- helpers
def test_kstar_distribution_counts_mode_and_ties():
    d = st.kstar_distribution([2, 2, 3, 3, 1, 0, None, float("nan"), 5])
    assert d["n"] == 6  # 0 (undefined), None and NaN are dropped
    assert d["counts"] == {"1": 1, "2": 2, "3": 2, "5": 1}
    assert d["modal"] == 2  # tie between 2 and 3 goes to the smaller k
    assert d["modal_share"] == pytest.approx(2 / 6)
    assert d["mean"] == pytest.approx((1 + 2 + 2 + 3 + 3 + 5) / 6)
    assert st.kstar_distribution([0, None])["modal"] is None
    thirds = st.kstar_over_training([1, 1, 1, 2, 2, 2, 3, 3, 3])
    assert [t["modal"] for t in thirds] == [1, 2, 3]


def test_modes_above_floor_and_signal_kstar():
    import numpy as np
    import pandas as pd

    from spectral_edge.functional import spectrum as sp

    W = 5
    spectra = [[1, 1, 1, 1, 1], [10, 5, 1, 1, 1], [10, 1, 1, 1, 1], [1.0, 0.9, 0.9, 0.9, 0.9]]
    rows = []
    for sig in spectra:
        st_ = sp.window_stats(np.diag(np.square(sig)).astype(float))
        rows.append(st_.as_row())
    df = pd.DataFrame(rows)
    assert st.modes_above_floor(df, W) == [0, 2, 1, 0]
    d = st.signal_kstar(df, W)
    assert d["signal_share"] == pytest.approx(0.5)
    assert d["n"] == 2 and d["counts"] == {"1": 1, "2": 1}  # k* = 2 for (10, 5, 1…), 1 for (10, 1…)
    assert d["modes_above_floor"] == {"1": 1, "2": 1}


def test_trend_slope_and_rank_correlation():
    steps = [0, 1000, 2000, 3000, 4000]
    t = st.trend(steps, [1.0, 3.0, float("nan"), 7.0, 9.0])
    assert t["n"] == 4
    assert t["slope_per_1k"] == pytest.approx(2.0)
    assert t["spearman"] == pytest.approx(1.0)
    down = st.trend(steps, [5, 4, 3, 2, 1])
    assert down["slope_per_1k"] == pytest.approx(-1.0) and down["spearman"] == pytest.approx(-1.0)
    assert st.trend([0, 1], [1, 2])["slope_per_1k"] is None


# ---------------------------------------------------------------------- plans
@pytest.mark.parametrize("scale", st.SCALES)
def test_plan_shares_runs_and_configs_are_valid(scale):
    plan = st.study_plan(scale)
    names = [r.name for r in plan.runs]
    assert len(names) == len(set(names))
    base = st.lm_name("adamw", 42)
    for study in st.STUDIES:
        assert base in plan.uses[study]  # one LM baseline serves all four studies
    assert st.mod_name("adamw") in plan.uses["jl"] and st.mod_name("adamw") in plan.uses["optimizers"]
    for r in plan.runs:
        cfg = r.config
        assert cfg.threads == 1 and cfg.early_stop is False
        assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # the JL trajectories need checkpoints; the other runs do not write them
    assert plan.run(base).config.checkpoint_every == plan.scale.lm_every
    assert plan.run(st.mod_name("adamw")).config.checkpoint_every == plan.scale.mod_ckpt_every
    assert plan.run(st.lm_name("muon")).config.checkpoint_every == 0
    # the β2 sweep differs from the baseline in β2 only
    b999 = plan.run(st.lm_name("adamw", 42, 0.999)).config
    assert b999.betas == (0.9, 0.999) and plan.run(base).config.betas == (0.9, st.BASE_BETA2)
    assert {**b999.to_dict(), "betas": None, "checkpoint_every": 0} == \
        {**plan.run(base).config.to_dict(), "betas": None, "checkpoint_every": 0}
    assert plan.run(st.lm_name("sgd")).config.optimizer == "sgd"
    assert [s for s in plan.scale.lm_seeds] == [int(n.rsplit("s", 1)[1]) for n in plan.uses["lm"]]


def test_plan_subset_and_errors():
    plan = st.study_plan("tiny", ["optimizers"])
    assert set(plan.uses) == {"optimizers"}
    assert {r.name for r in plan.runs} == {st.lm_name(o) for o in ("adamw", "muon", "sgd")} | \
        {st.mod_name(o) for o in ("adamw", "muon", "sgd")}
    with pytest.raises(Exception, match="unknown studies"):
        st.study_plan("tiny", ["nope"])
    with pytest.raises(Exception, match="unknown study scale"):
        st.study_plan("huge")
    with pytest.raises(Exception, match="SGD"):
        st.lm_config(st.get_scale("tiny"), optimizer="sgd", beta2=0.9)


def test_lm_groups_are_embeddings_and_trunk():
    import torch

    from spectral_edge.experiments.workloads import build_workload
    from spectral_edge.selection import Selection

    cfg = st.study_plan("tiny").run(st.lm_name()).config
    model = build_workload(cfg).model
    names = [(n, p.dtype) for n, p in model.named_parameters()]
    grouped = Selection(preset="all", group_by=cfg.group_by).plan(names).groups
    trunk = Selection(preset="trunk").plan(names).names
    assert set(grouped[st.TRUNK_GROUP]) == set(trunk)
    assert set(grouped["emb"]) == {"tok_emb.weight", "pos_emb.weight"}
    assert isinstance(model, torch.nn.Module)


# ---------------------------------------------------------------------- verdicts
def _opt(mod: dict[str, int], lm: dict[str, int]) -> dict:
    def rec(m):
        return {"floor": {"modal": m, "n": 10, "counts": {str(m): 10}, "modal_share": 1.0}}

    return {"modular": {o: rec(m) for o, m in mod.items()}, "lm": {o: rec(m) for o, m in lm.items()}}


@pytest.mark.parametrize("mod,lm,verdict", [
    ({"adamw": 2, "muon": 1, "sgd": 3}, {"adamw": 2, "muon": 1, "sgd": 1}, st.REPRODUCED),
    ({"adamw": 3, "muon": 1, "sgd": 3}, {"adamw": 2, "muon": 2, "sgd": 1}, st.PARTLY),
    ({"adamw": 1, "muon": 2, "sgd": 3}, {"adamw": 2, "muon": 2, "sgd": 1}, st.NOT_REPRODUCED),
])
def test_optimizer_verdict(mod, lm, verdict):
    claims = {c.key: c for c in st.claims_table({"scale": "tiny", "optimizers": _opt(mod, lm)})}
    assert claims["optimizer"].verdict == verdict
    assert claims["gap_dynamics"].verdict == st.NOT_TESTABLE


def _bb(fracs: dict[str, float]) -> dict:
    return {k: {"fraction": {"median_late": v}} for k, v in fracs.items()}


@pytest.mark.parametrize("fracs,verdict", [
    ({"0.999": 0.9, "0.99": 0.8, "0.95": 0.7, "0.9": 0.6, "sgd": 0.2}, st.REPRODUCED),
    ({"0.999": 0.9, "0.99": 0.8, "0.95": 0.7, "0.9": 0.6, "sgd": 0.95}, st.PARTLY),
    ({"0.999": 0.6, "0.99": 0.7, "0.95": 0.8, "0.9": 0.9, "sgd": 0.95}, st.NOT_REPRODUCED),
])
def test_backbone_verdict(fracs, verdict):
    claims = {c.key: c for c in st.claims_table({"scale": "tiny", "backbone": _bb(fracs)})}
    assert claims["backbone"].verdict == verdict


def test_jl_verdict_uses_median_at_10w():
    def rows(med):
        return {"rows": [{"trajectory": t, "family": st.JL_GAUSSIAN, "d": 100, "R_median_pct": med, "R_p95_pct": 2 * med}
                         for t in ("lm", "modular")], "key": {"seeds": 3}}

    for med, verdict in ((4.0, st.REPRODUCED), (9.0, st.PARTLY), (20.0, st.NOT_REPRODUCED)):
        c = {c.key: c for c in st.claims_table({"scale": "tiny", "jl": rows(med)})}["jl"]
        assert c.verdict == verdict and f"{med:.1f}%" in c.ours


# ---------------------------------------------------------------------- end to end
def test_reproduce_trajectories_tiny_end_to_end(tmp_path):
    from typer.testing import CliRunner

    from spectral_edge.cli import app
    from spectral_edge.cli.reproduce import reproduce

    assert reproduce.registered_commands[0].name == "trajectories"
    out, doc = tmp_path / "runs", tmp_path / "docs" / "trajectories.md"
    args = ["reproduce", "trajectories", "--out", str(out), "--scale", "tiny", "--jobs", "2", "--doc", str(doc),
            "--json", "--quiet"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    claims = json.loads(r.stdout)["claims"]
    assert {c["key"] for c in claims} == {"kstar", "phases", "peak", "phase_r", "lag_flip", "jl", "optimizer",
                                          "backbone", "gap_dynamics"}
    text = doc.read_text()
    assert "## Claims and measurements" in text and "Scale `tiny`" in text
    for c in claims:
        assert c["verdict"] in (st.REPRODUCED, st.PARTLY, st.NOT_REPRODUCED, st.NOT_TESTABLE)
        assert c["ours"] in text
    for name in ("lm", "jl", "optimizers", "backbone"):
        png = doc.parent / "figures" / f"{st.FIG_PREFIX}{name}.png"
        assert png.is_file() and 0 < png.stat().st_size < st.MAX_FIGURE_BYTES
        assert f"figures/{png.name}" in text
    res = json.loads((out / "results.json").read_text())
    # the numbers in the claims come from the runs: the modal k* of the LM run is its most common k*
    lm_run = res["lm"]["runs"][0]
    ks = [k for k in lm_run["series"]["all/W10"]["k_star"] if k > 0]
    assert lm_run["kstar"]["all/W10"]["floor"]["modal"] == max(sorted(set(ks)), key=ks.count)
    jl = res["jl"]["rows"]
    assert {(r["trajectory"], r["family"], r["d"]) for r in jl} == {
        (t, f, d) for t in ("lm", "modular") for f in st.JL_FAMILIES for d in (20, 100)}
    assert all(math.isfinite(r["R_median_pct"]) and r["R_p95_pct"] >= r["R_median_pct"] for r in jl)
    # resumable: nothing is retrained and the JL sweep comes from its cache
    mtimes = {p: p.stat().st_mtime for p in out.glob("*/summary.json")}
    jl_mtime = (out / "jl" / "jl_accuracy.json").stat().st_mtime
    again = st.reproduce_trajectories(out, scale="tiny", studies=["optimizers"], doc=tmp_path / "again.md")
    assert again["claims"][0]["ours"] == next(c["ours"] for c in claims if c["key"] == "optimizer")
    assert {p: p.stat().st_mtime for p in out.glob("*/summary.json")} == mtimes
    assert st.jl_records(out, st.study_plan("tiny"))["rows"] == jl
    assert (out / "jl" / "jl_accuracy.json").stat().st_mtime == jl_mtime


def test_missing_runs_are_reported(tmp_path):
    from spectral_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="did not finish"):
        st.reproduce_trajectories(tmp_path, scale="tiny", studies=["backbone"], train=False)
