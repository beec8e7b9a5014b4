"""Trajectory studies: run plans, the small analysis helpers, the verdict rules, and the whole
pipeline (runs → analysis → document) at the tiny scale through the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spectral_edge.errors import ConfigError
from spectral_edge.experiments.config import RunConfig
from spectral_edge.reproduce import claims as cl
from spectral_edge.reproduce import lm_claims as lmc
from spectral_edge.reproduce import documents, figures, plans, run
from spectral_edge.reproduce import measures as ms


# ---------------------------------------------------------------------- helpers
def test_kstar_distribution_counts_mode_and_ties():
    d = ms.kstar_distribution([2, 2, 3, 3, 1, 0, None, float("nan"), 5])
    assert d["n"] == 6  # 0 (undefined), None and NaN are dropped
    assert d["counts"] == {"1": 1, "2": 2, "3": 2, "5": 1}
    assert d["modal"] == 2  # tie between 2 and 3 goes to the smaller k
    assert d["modal_share"] == pytest.approx(2 / 6)
    assert d["mean"] == pytest.approx((1 + 2 + 2 + 3 + 3 + 5) / 6)
    assert ms.kstar_distribution([0, None])["modal"] is None
    thirds = ms.kstar_over_training([1, 1, 1, 2, 2, 2, 3, 3, 3])
    assert [t["modal"] for t in thirds] == [1, 2, 3]


def test_modes_above_floor_and_signal_kstar():
    import numpy as np
    import pandas as pd

    from spectral_edge.functional import spectrum as sp

    W = 5
    spectra = [[1, 1, 1, 1, 1], [10, 5, 1, 1, 1], [10, 1, 1, 1, 1], [1.0, 0.9, 0.9, 0.9, 0.9]]
    rows = []
    for sig in spectra:
        ws = sp.window_stats(np.diag(np.square(sig)).astype(float))
        rows.append(ws.as_row())
    df = pd.DataFrame(rows)
    assert ms.modes_above_floor(df, W) == [0, 2, 1, 0]
    d = ms.signal_kstar(df, W)
    assert d["signal_share"] == pytest.approx(0.5)
    assert d["n"] == 2 and d["counts"] == {"1": 1, "2": 1}  # k* = 2 for (10, 5, 1…), 1 for (10, 1…)
    assert d["modes_above_floor"] == {"1": 1, "2": 1}


def test_trend_slope_and_rank_correlation():
    steps = [0, 1000, 2000, 3000, 4000]
    t = ms.trend(steps, [1.0, 3.0, float("nan"), 7.0, 9.0])
    assert t["n"] == 4
    assert t["slope_per_1k"] == pytest.approx(2.0)
    assert t["spearman"] == pytest.approx(1.0)
    down = ms.trend(steps, [5, 4, 3, 2, 1])
    assert down["slope_per_1k"] == pytest.approx(-1.0) and down["spearman"] == pytest.approx(-1.0)
    assert ms.trend([0, 1], [1, 2])["slope_per_1k"] is None


# ---------------------------------------------------------------------- plans
@pytest.mark.parametrize("scale", plans.SCALES)
def test_plan_shares_runs_and_configs_are_valid(scale):
    plan = plans.study_plan(scale)
    names = [r.name for r in plan.runs]
    assert len(names) == len(set(names))
    base = plans.lm_name("adamw", 42)
    for study in ("lm", "jl", "optimizers", "backbone"):
        assert base in plan.uses[study]  # one LM baseline serves these four studies
    assert plans.mod_name("adamw") in plan.uses["jl"] and plans.mod_name("adamw") in plan.uses["optimizers"]
    for r in plan.runs:
        cfg = r.config
        assert cfg.threads == 1 and cfg.early_stop is False
        assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # the JL trajectories need checkpoints; the other runs do not write them
    assert plan.run(base).config.checkpoint_every == plan.scale.lm_every
    assert plan.run(plans.mod_name("adamw")).config.checkpoint_every == plan.scale.mod_ckpt_every
    assert plan.run(plans.lm_name("muon")).config.checkpoint_every == 0
    # the β2 sweep differs from the baseline in β2 only
    b999 = plan.run(plans.lm_name("adamw", 42, 0.999)).config
    assert b999.betas == (0.9, 0.999) and plan.run(base).config.betas == (0.9, plans.BASE_BETA2)
    assert {**b999.to_dict(), "betas": None, "checkpoint_every": 0} == \
        {**plan.run(base).config.to_dict(), "betas": None, "checkpoint_every": 0}
    assert plan.run(plans.lm_name("sgd")).config.optimizer == "sgd"
    assert [s for s in plan.scale.lm_seeds] == [int(n.rsplit("s", 1)[1]) for n in plan.uses["lm"]]


def test_plan_subset_and_errors():
    plan = plans.study_plan("tiny", ["optimizers"])
    assert set(plan.uses) == {"optimizers"}
    assert {r.name for r in plan.runs} == {plans.lm_name(o) for o in ("adamw", "muon", "sgd")} | \
        {plans.mod_name(o) for o in ("adamw", "muon", "sgd")}
    with pytest.raises(ConfigError, match="unknown studies"):
        plans.study_plan("tiny", ["nope"])
    with pytest.raises(ConfigError, match="unknown study scale"):
        plans.study_plan("huge")
    with pytest.raises(ConfigError, match="SGD"):
        plans.lm_config(plans.get_scale("tiny"), optimizer="sgd", beta2=0.9)


def test_lm_groups_are_embeddings_and_trunk():
    import torch

    from spectral_edge.experiments.workloads import build_workload
    from spectral_edge.selection import Selection

    cfg = plans.study_plan("tiny").run(plans.lm_name()).config
    model = build_workload(cfg).model
    names = [(n, p.dtype) for n, p in model.named_parameters()]
    grouped = Selection(preset="all", group_by=cfg.group_by).plan(names).groups
    trunk = Selection(preset="trunk").plan(names).names
    assert set(grouped[plans.TRUNK_GROUP]) == set(trunk)
    assert set(grouped["emb"]) == {"tok_emb.weight", "pos_emb.weight"}
    assert isinstance(model, torch.nn.Module)


# ---------------------------------------------------------------------- verdicts
def _opt(mod: dict[str, int], lm: dict[str, int]) -> dict:
    def rec(m):
        return {"floor": {"modal": m, "n": 10, "counts": {str(m): 10}, "modal_share": 1.0}}

    return {"modular": {o: rec(m) for o, m in mod.items()}, "lm": {o: rec(m) for o, m in lm.items()}}


@pytest.mark.parametrize("mod,lm,verdict", [
    ({"adamw": 2, "muon": 1, "sgd": 3}, {"adamw": 2, "muon": 1, "sgd": 1}, cl.REPRODUCED),
    ({"adamw": 3, "muon": 1, "sgd": 3}, {"adamw": 2, "muon": 2, "sgd": 1}, cl.PARTLY),
    ({"adamw": 1, "muon": 2, "sgd": 3}, {"adamw": 2, "muon": 2, "sgd": 1}, cl.NOT_REPRODUCED),
])
def test_optimizer_verdict(mod, lm, verdict):
    claims = {c.key: c for c in cl.claims_table({"scale": "tiny", "optimizers": _opt(mod, lm)})}
    assert claims["optimizer"].verdict == verdict
    assert claims["gap_dynamics"].verdict == cl.NOT_TESTABLE


def _bb(fracs: dict[str, float], wobble: float = 0.01) -> dict:
    """Backbone records whose late series alternates ±wobble around the late median (late IQR 2·wobble)."""
    def series(v):
        steps = list(range(100, 2100, 100))
        return {"step": steps, "fraction": [0.5] * 10 + [v + (wobble if i % 2 else -wobble) for i in range(10)]}

    return {k: {"fraction": {"median_late": v}, "series": series(v)} for k, v in fracs.items()}


@pytest.mark.parametrize("fracs,wobble,verdict", [
    ({"0.999": 0.9, "0.99": 0.8, "0.95": 0.7, "0.9": 0.6, "sgd": 0.2}, 0.01, cl.REPRODUCED),
    ({"0.999": 0.9, "0.99": 0.8, "0.95": 0.7, "0.9": 0.6, "sgd": 0.95}, 0.01, cl.PARTLY),
    ({"0.999": 0.6, "0.99": 0.7, "0.95": 0.8, "0.9": 0.9, "sgd": 0.95}, 0.01, cl.NOT_REPRODUCED),
    # ordered by β2 (Spearman 1), but by 0.041 while a run's own late IQR is 0.06: not resolved
    ({"0.999": 0.921, "0.99": 0.885, "0.95": 0.882, "0.9": 0.880, "sgd": 0.974}, 0.03, cl.NOT_REPRODUCED),
    ({"0.999": 0.921, "0.99": 0.885, "0.95": 0.882, "0.9": 0.880, "sgd": 0.974}, 0.01, cl.PARTLY),
])
def test_backbone_verdict(fracs, wobble, verdict):
    claims = {c.key: c for c in cl.claims_table({"scale": "tiny", "backbone": _bb(fracs, wobble)})}
    assert claims["backbone"].verdict == verdict
    assert f"{2 * wobble:.3f}" in claims["backbone"].ours  # the noise it was judged against is printed


def test_late_spread_is_the_late_interquartile_range():
    rec = {"series": {"step": [0, 1, 2, 3, 4, 5, 6, 7], "fraction": [9, 9, 9, 9, 1.0, 2.0, 3.0, 4.0]}}
    assert cl.late_spread(rec) == pytest.approx(float(np.percentile([1.0, 2.0, 3.0, 4.0], 75)
                                                      - np.percentile([1.0, 2.0, 3.0, 4.0], 25)))
    assert cl.late_spread({"series": {"step": [1, 2], "fraction": [0.1, 0.2]}}) is None


@pytest.mark.parametrize("fr,null,verdict", [
    ({"0.999": 0.7, "0.99": 0.65, "0.95": 0.62, "0.9": 0.79}, 0.5, cl.REPRODUCED),
    ({"0.999": 0.92, "0.99": 0.7, "0.95": 0.88, "0.9": 0.88}, 0.79, cl.PARTLY),
    ({"0.999": 0.92, "0.99": 0.885, "0.95": 0.882, "0.9": 0.88}, 0.79, cl.NOT_REPRODUCED),
])
def test_backbone_share_verdict_states_the_random_walk(fr, null, verdict):
    bb = {k: {"fraction": {"median_late": v}, "null_fraction_late": null} for k, v in fr.items()}
    c = {c.key: c for c in cl.claims_table({"scale": "tiny", "backbone": bb})}["backbone_share"]
    assert c.verdict == verdict and f"{null:.2f}" in c.ours
    assert ("does not tell a backbone from diffusion" in c.why) == (0.6 <= null <= 0.8)


def test_alignment_verdict():
    def bb(u, g):
        return {k: {"update_align": {"median_late": u}, "grad_align": {"median_late": g},
                    "summary": {"n_parameters_monitored": 806_784}} for k in ("0.999", "0.99", "0.95", "0.9")}

    pick = lambda b: {c.key: c for c in cl.claims_table({"scale": "tiny", "backbone": b})}["alignment"]  # noqa: E731
    assert pick(bb(0.022, 0.005)).verdict == cl.REPRODUCED
    assert pick(bb(0.022, 0.02)).verdict == cl.NOT_REPRODUCED
    assert "0.0009" in pick(bb(0.022, 0.005)).ours  # √(2/(πP)) for a random direction


def test_jl_verdict_uses_median_at_10w():
    def rows(med):
        return {"rows": [{"trajectory": t, "family": plans.JL_GAUSSIAN, "d": 100, "R_median_pct": med,
                          "R_p95_pct": 2 * med} for t in ("lm", "modular")], "key": {"seeds": 3}}

    for med, verdict in ((4.0, cl.REPRODUCED), (9.0, cl.PARTLY), (20.0, cl.NOT_REPRODUCED)):
        c = {c.key: c for c in cl.claims_table({"scale": "tiny", "jl": rows(med)})}["jl"]
        assert c.verdict == verdict and f"{med:.1f}%" in c.ours


# ---------------------------------------------------------------------- one claim at a time
def _rules_in_document() -> str:
    """The document rendered from a record without studies: header, claims section (with the rules), footer."""
    return documents.render_document({"scale": "tiny", "claims": []}, {})


def test_claims_table_calls_every_claim_in_order():
    assert [r.key for r in cl.CLAIMS] == ["kstar", "phases", "peak", "phase_r", "lag_flip", "jl", "optimizer",
                                         "backbone", "backbone_share", "alignment", "gap_dynamics", "text_kstar",
                                         "text_phases", "text_peak", "text_phase_r", "text_lag_flip", "text_optimizer"]
    assert all(r.judge.__doc__ for r in cl.CLAIMS)
    # a claim whose study is absent says nothing; the one that needs no study is always there
    assert [c.key for c in cl.claims_table({"scale": "tiny"})] == ["gap_dynamics"]
    text = _rules_in_document()
    for r in cl.CLAIMS:
        assert r.rule_text is None or r.rule_text in text


def _peak_record(mean: float) -> dict:
    return {"scale": "tiny", "lm": {"aggregate": {"peak_ratio_W10": [mean], "peak_ratio_W10_mean": mean,
                                                  "peak_ratio_W10_sd": None}}}


def test_peak_claim_flips_at_its_thresholds_and_prints_them():
    c0 = cl.CLAIMED_PEAK
    for rel, verdict in ((0.9 * cl.PEAK_REPRODUCED, cl.REPRODUCED), (1.1 * cl.PEAK_REPRODUCED, cl.PARTLY),
                         (0.9 * cl.PEAK_PARTLY, cl.PARTLY), (1.1 * cl.PEAK_PARTLY, cl.NOT_REPRODUCED)):
        for sign in (1, -1):
            c = cl.peak_claim(_peak_record(c0 * (1 + sign * rel)))
            assert c.key == "peak" and c.verdict == verdict, (rel, sign)
    no_peak = {"scale": "tiny", "lm": {"aggregate": {"peak_ratio_W10": [], "peak_ratio_W10_mean": None,
                                                     "peak_ratio_W10_sd": None}}}
    assert cl.peak_claim(no_peak).verdict == cl.NOT_REPRODUCED
    assert cl.peak_claim({"scale": "tiny"}) is None
    # the rule the document prints names the thresholds the code just used
    rule = cl.peak_claim.rule_text
    for part in (f"{cl.PEAK_REPRODUCED:.0%}", f"{cl.PEAK_PARTLY:.0%}", str(c0)):
        assert part in rule
    assert rule in _rules_in_document()


def test_phase_r_claim_flips_at_its_threshold_and_prints_it():
    t = cl.PHASE_R_MIN

    def rec(r):
        return {"scale": "tiny", "lm": {"aggregate": {"phase_r_W10": {"rise": [r], "plateau": [-0.95],
                                                                      "collapse": [None]}}}}

    above, below = cl.phase_r_claim(rec(t + 0.005)), cl.phase_r_claim(rec(t - 0.005))
    assert above.verdict == cl.REPRODUCED and above.why.startswith("2/2")
    assert below.verdict == cl.PARTLY and below.why.startswith("1/2")
    weak = {"scale": "tiny", "lm": {"aggregate": {"phase_r_W10": {"rise": [0.1], "plateau": [0.2], "collapse": []}}}}
    assert cl.phase_r_claim(weak).verdict == cl.NOT_REPRODUCED
    assert f"|r| ≥ {t}" in cl.phase_r_claim.rule_text and f"|r| ≥ {t}" in above.why
    assert cl.phase_r_claim.rule_text in _rules_in_document()


def test_jl_claim_flips_at_the_claim_and_at_twice_the_claim():
    pct, k = cl.CLAIMED_JL_PCT, cl.JL_PARTLY_FACTOR

    def rec(med):
        return {"scale": "tiny", "jl": {"key": {"seeds": 1}, "rows": [
            {"trajectory": t, "family": plans.JL_GAUSSIAN, "d": cl.JL_D_FACTOR * plans.JL_W, "R_median_pct": med}
            for t in ("lm", "modular")]}}

    got = {med: cl.jl_claim(rec(med)).verdict for med in (pct - 0.01, pct + 0.01, k * pct - 0.01, k * pct + 0.01)}
    assert list(got.values()) == [cl.REPRODUCED, cl.PARTLY, cl.PARTLY, cl.NOT_REPRODUCED]
    rule = cl.jl_claim.rule_text
    assert f"≤ {pct:g}%" in rule and f"≤ {k * pct:g}%" in rule and f"d = {cl.JL_D_FACTOR}W" in rule
    assert rule in _rules_in_document()


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
                                          "backbone", "backbone_share", "alignment", "gap_dynamics", "text_kstar",
                                          "text_phases", "text_peak", "text_phase_r", "text_lag_flip", "text_optimizer"}
    text = doc.read_text()
    assert "## Claims and measurements" in text and "Scale `tiny`" in text
    for c in claims:
        assert c["verdict"] in (cl.REPRODUCED, cl.PARTLY, cl.NOT_REPRODUCED, cl.NOT_TESTABLE)
        assert c["ours"] in text
    # every real-text row says whether its test could have refuted the claim, in the table and in §5
    assert all(c["strength"] and c["strength"].replace("|", "\\|") in text for c in claims if c["key"].startswith("text_"))
    assert "## 5. Real text" in text and "every 2 steps to step 20, then every 5" in text
    for name in ("lm", "jl", "optimizers", "backbone", "text"):
        png = doc.parent / "figures" / f"{figures.FIG_PREFIX}{name}.png"
        assert png.is_file() and 0 < png.stat().st_size < figures.MAX_FIGURE_BYTES
        assert f"figures/{png.name}" in text
    res = json.loads((out / "results.json").read_text())
    # the numbers in the claims come from the runs: the modal k* of the LM run is its most common k*
    lm_run = res["lm"]["runs"][0]
    ks = [k for k in lm_run["series"]["all/W10"]["k_star"] if k > 0]
    assert lm_run["kstar"]["all/W10"]["floor"]["modal"] == max(sorted(set(ks)), key=ks.count)
    jl = res["jl"]["rows"]
    assert {(r["trajectory"], r["family"], r["d"]) for r in jl} == {
        (t, f, d) for t in ("lm", "modular") for f in plans.JL_FAMILIES for d in (20, 100)}
    assert all(math.isfinite(r["R_median_pct"]) and r["R_p95_pct"] >= r["R_median_pct"] for r in jl)
    # resumable: nothing is retrained and the JL sweep comes from its cache
    mtimes = {p: p.stat().st_mtime for p in out.glob("*/summary.json")}
    jl_mtime = (out / "jl" / "jl_accuracy.json").stat().st_mtime
    again = run.reproduce_trajectories(out, scale="tiny", studies=["optimizers"], doc=tmp_path / "again.md")
    assert again["claims"][0]["ours"] == next(c["ours"] for c in claims if c["key"] == "optimizer")
    assert {p: p.stat().st_mtime for p in out.glob("*/summary.json")} == mtimes
    assert ms.jl_records(out, plans.study_plan("tiny"))["rows"] == jl
    assert (out / "jl" / "jl_accuracy.json").stat().st_mtime == jl_mtime


def test_missing_runs_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="did not finish"):
        run.reproduce_trajectories(tmp_path, scale="tiny", studies=["backbone"], train=False)


def test_peak_claim_is_not_testable_when_the_null_would_pass():
    rec = _peak_record(1.70)
    rec["lm"]["aggregate"].update(null_peak_ratio_W10=1.002, n_parameters=806_784)
    c = cl.peak_claim(rec)
    assert c.verdict == cl.REPRODUCED and "1.002" in c.ours and "1/63" in c.why and "1.57–1.92" in c.strength
    assert "could refute" in c.strength
    rec["lm"]["aggregate"]["null_peak_ratio_W10"] = 1.60  # a null inside the band: the rule cannot fail
    c = cl.peak_claim(rec)
    assert c.verdict == cl.NOT_TESTABLE and "cannot refute" in c.strength


def test_optimizer_claim_reads_k_star_only_where_a_mode_clears_the_floor():
    def rec(m, share, there):
        return {"floor": {"modal": m}, "signal": {"signal_share": share, "modal": there}}

    def res(muon_share, muon_there):
        t = {"adamw": rec(1, 0.9, 2), "muon": rec(1, muon_share, muon_there), "sgd": rec(1, 0.1, 3)}
        return {"scale": "tiny", "optimizers": {"modular": t, "lm": t}}

    # Muon's windows mostly fall back to k* = 1: no evidence either way
    c = {c.key: c for c in cl.claims_table(res(0.05, 1))}["optimizer"]
    assert c.verdict == cl.NOT_TESTABLE and "0.05" in c.why
    # where Muon's modes clear the floor, its k* there (1) against AdamW's (2) reproduces the claim
    assert {c.key: c for c in cl.claims_table(res(0.8, 1))}["optimizer"].verdict == cl.REPRODUCED
    assert {c.key: c for c in cl.claims_table(res(0.8, 3))}["optimizer"].verdict == cl.NOT_REPRODUCED


def test_isotropic_null_peak_ratio_matches_a_direct_draw():
    from spectral_edge.functional.spectrum import window_stats
    from spectral_edge.reproduce.measures import isotropic_peak_ratio

    # the Bartlett draw against Gaussian matrices drawn whole (P = 400, W = 5): same law of the gap ratio
    rng = np.random.default_rng(3)
    direct = [window_stats((lambda X: X @ X.T)(rng.standard_normal((5, 400)))).gap_ratio for _ in range(1500)]
    peaks_b = [isotropic_peak_ratio(400, 5, 1, seed=s) for s in range(1500)]
    assert np.median(peaks_b) == pytest.approx(np.median(direct), rel=0.01)
    assert np.percentile(peaks_b, 90) == pytest.approx(np.percentile(direct, 90), rel=0.02)
    assert isotropic_peak_ratio(400, 5, 30, seed=1) == isotropic_peak_ratio(400, 5, 30, seed=1)  # seeded
    assert isotropic_peak_ratio(806_784, 10, 51) < 1.01  # no edge at the LM's size
    assert isotropic_peak_ratio(3, 5, 10) is None


def test_random_walk_backbone_fraction_matches_a_simulated_walk():
    from spectral_edge.reproduce.measures import random_walk_fraction

    steps = list(range(1100, 3001, 100))
    rng = np.random.default_rng(0)
    P, gaps = 50_000, np.diff([0] + steps)
    fr = []
    for _ in range(20):  # the walk seen at `steps`: independent Gaussian increments of variance = the gap
        D = np.cumsum(rng.standard_normal((len(steps), P)) * np.sqrt(gaps)[:, None], axis=0)
        Dn = D / np.linalg.norm(D, axis=1, keepdims=True)
        v = np.linalg.svd(Dn, full_matrices=False)[2][0]
        fr.append(float((D[-1] @ v) ** 2 / (D[-1] @ D[-1])))
    assert random_walk_fraction(steps) == pytest.approx(np.mean(fr), abs=0.02)
    assert random_walk_fraction([100]) is None


def test_phase_r_claim_states_its_power():
    import math

    for r in (0.87, 0.5, 0.3):
        n = lmc.min_windows_for_r(r)
        assert math.atanh(r) * math.sqrt(n - 3) > 1.96 >= math.atanh(r) * math.sqrt(n - 4)
    agg = {"phase_r_W10": {"rise": [None], "plateau": [0.2], "collapse": [0.65]},
           "phase_n_W10": {"rise": [0], "plateau": [7], "collapse": [44]}}
    c = cl.phase_r_claim({"scale": "tiny", "lm": {"aggregate": agg}})
    assert c.verdict == cl.NOT_REPRODUCED and "from n ≥ 6 windows" in c.strength and "2/3 (seed, phase) cells" in c.strength
    assert "only those could refute" in c.strength


def test_kstar_claim_reads_k_star_where_a_mode_clears_the_floor():
    def agg(shares, there):
        return {"scale": "tiny", "lm": {"aggregate": {
            "modal_kstar_all/W10": [1, 1, 1], "modal_kstar_trunk/W10": [1, 1, 1],
            "modal_kstar_argmax_all/W10": [8, 8, 8], "signal_share_all/W10": shares, "signal_kstar_all/W10": there}}}

    assert cl.kstar_claim(agg([0.1, 0.2, 0.05], [1, 2, 1])).verdict == cl.NOT_TESTABLE
    assert cl.kstar_claim(agg([0.9, 0.8, 0.7], [2, 3, 2])).verdict == cl.REPRODUCED
    c = cl.kstar_claim(agg([0.9, 0.2, 0.7], [2, 1, 1]))
    assert c.verdict == cl.PARTLY and "1 seed(s) not testable" in c.why and "0.90, 0.20, 0.70" in c.ours
