"""Rank-deficient windows (issue 13, item 7): a zero update (a duplicated checkpoint, a step
where the optimizer changed nothing) has σ_W = 0 exactly, so σ_{W−1}/σ_W is undefined and
must never be the spectral edge.

The reference for a window with one zero update is the window without it: the zero carries
no information, so k* (every rule), the gap ratio and the noise floor must be those of the
W−1 nonzero updates, and σ must be numpy's SVD of the deltas (with σ_W = 0 exactly). The
oracles below are written out from the definitions (METHODS §1–2), not taken from the
module under test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_ckpt import write_safetensors

from spectral_edge.engine import AnalysisConfig, analyze_checkpoints
from spectral_edge.functional import spectrum as sp
from spectral_edge.functional.sketch import SketchSpec
from spectral_edge.monitor import Monitor
from spectral_edge.synthetic import planted_window

RULES = ("argmax", "floor", "weighted")


# ---------------------------------------------------------------------- oracles
def _oracle(s: np.ndarray, rule: str) -> tuple[int, float, float]:
    """(k*, gap ratio, noise floor) of a spectrum with no zero, straight from the definitions."""
    s = np.asarray(s, dtype=np.float64)
    assert np.all(s > 0)
    n = s.size
    r = s[:-1] / s[1:]
    noise = float(np.sqrt(np.mean(s[n // 2 :] ** 2)))
    if rule == "argmax":
        j = int(np.argmax(r))
    elif rule == "weighted":
        j = int(np.argmax(s[:-1] / s.sum() * r))
    else:
        thr = (1 + 2 * n ** (-2 / 3)) * noise
        cand = s[:-1] > thr
        cand[0] = True
        j = int(np.argmax(np.where(cand, r, -np.inf)))
    return j + 1, float(r[j]), noise


def _svd(X: np.ndarray) -> np.ndarray:
    return np.linalg.svd(np.asarray(X, dtype=np.float64), compute_uv=False)


def _realistic(k: int, n: int, seed: int) -> np.ndarray:
    """k strong modes, a decaying bulk and one small last value (as in test_spectrum)."""
    g = np.random.default_rng(seed)
    signal = 10.0 * np.cumprod(np.full(k, 0.6)) * (1 + 0.05 * g.random(k))
    bulk = signal[-1] / (2.2 + 0.3 * g.random()) * np.linspace(1.0, 0.55, n - k - 1) * (1 + 0.02 * g.random(n - k - 1))
    tail = bulk[-1] / (4.0 + 2.0 * g.random())
    return np.sort(np.concatenate([signal, bulk, [tail]]))[::-1]


def _check_against_reduced(st: sp.WindowStats, nonzero_rows: np.ndarray, rule: str) -> None:
    """``st`` (a window with one zero update) against the oracle of its nonzero updates."""
    ref = _svd(nonzero_rows)
    W = st.window
    assert st.sigma[-1] == 0.0, f"σ_W = {st.sigma[-1]!r} should be exactly 0"
    np.testing.assert_allclose(st.sigma[:-1], ref, rtol=1e-10)
    assert np.isnan(st.ratios[-1]), "σ_{W−1}/σ_W is undefined"
    np.testing.assert_allclose(st.ratios[:-1], ref[:-1] / ref[1:], rtol=1e-10)
    k, gr, noise = _oracle(ref, rule)
    assert st.k_star == k, (rule, st.k_star, k)
    assert st.gap_ratio == pytest.approx(gr, rel=1e-10)
    assert st.noise_floor == pytest.approx(noise, rel=1e-10)
    assert getattr(st, f"k_star_{rule}") == k


# ---------------------------------------------------------------------- pure spectra
@pytest.mark.parametrize("W", [4, 5, 10, 20])
@pytest.mark.parametrize("rule", RULES)
def test_a_zero_update_is_ignored_by_every_rule_planted(W, rule):
    for seed in range(8):
        g = np.random.default_rng(seed)
        k = 1 + seed % min(3, W - 3) if W > 3 else 1
        X = planted_window(_realistic(k, W - 1, seed), dim=6 * W, seed=seed)  # W−1 nonzero updates
        at = int(g.integers(W))
        X0 = np.insert(X, at, 0.0, axis=0)  # the duplicate checkpoint's zero update
        st = sp.window_stats(sp.gram(X0), kstar_rule=rule)
        _check_against_reduced(st, X, rule)
        # the same numbers as the window of the W−1 nonzero updates alone
        alone = sp.window_stats(sp.gram(X), kstar_rule=rule)
        assert (st.k_star, st.k_star_argmax, st.k_star_floor, st.k_star_weighted) == (
            alone.k_star, alone.k_star_argmax, alone.k_star_floor, alone.k_star_weighted)
        assert st.gap_ratio == pytest.approx(alone.gap_ratio, rel=1e-10)
        assert st.noise_floor == pytest.approx(alone.noise_floor, rel=1e-10)


def test_floor_rule_is_not_fooled_by_the_zero_in_its_noise_estimate():
    # seven nonzero updates: noise at 1.0 and σ_2 = 1.5 under the threshold ρ_7·1.0 = 1.55.
    # A zero in the lower half would pull its RMS down to 0.87 (threshold 1.30), lift σ_2
    # over it and make the noise ratio σ_2/σ_3 = 1.5 the edge; measured on the nonzero
    # spectrum, the floor stays at 1.0 and the edge is σ_1/σ_2
    s = np.array([2.1, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0])
    X0 = np.insert(planted_window(s, dim=40, seed=1), 3, 0.0, axis=0)
    st = sp.window_stats(sp.gram(X0))
    assert st.noise_floor == pytest.approx(1.0, rel=1e-10)
    assert st.k_star == 1 and st.gap_ratio == pytest.approx(2.1 / 1.5, rel=1e-10)


def test_a_zero_singular_value_without_a_zero_row_is_undefined_too():
    # rank W−1 through a linear dependence (rounding makes λ_W ~ eps·λ_1, not 0)
    s = np.array([9.0, 4.0, 3.0, 2.5, 2.0, 1.7, 1.5, 0.0])
    st = sp.window_stats(sp.gram(planted_window(s, dim=50, seed=5)), kstar_rule="argmax")
    assert st.sigma[-1] == 0.0 and np.isnan(st.ratios[-1])
    assert st.k_star == 1 and st.gap_ratio == pytest.approx(9.0 / 4.0, rel=1e-9)


def test_two_zero_updates_and_rank_one_and_all_zero_windows():
    g = np.random.default_rng(3)
    X = g.standard_normal((6, 30)) * np.array([5.0, 3.0, 1.2, 1.1, 1.0, 0.9])[:, None]
    X0 = np.insert(np.insert(X, 2, 0.0, axis=0), 5, 0.0, axis=0)  # W = 8, rank 6
    for rule in RULES:
        st = sp.window_stats(sp.gram(X0), kstar_rule=rule)
        assert np.all(st.sigma[-2:] == 0.0) and np.all(np.isnan(st.ratios[-2:]))
        k, gr, _ = _oracle(_svd(X), rule)
        assert st.k_star == k and st.gap_ratio == pytest.approx(gr, rel=1e-10)
    # one nonzero update: no ratio is defined, so no edge
    one = np.zeros((5, 20))
    one[2] = g.standard_normal(20)
    for rule in RULES:
        st = sp.window_stats(sp.gram(one), kstar_rule=rule)
        assert st.k_star == 0 and np.isnan(st.gap_ratio) and np.all(np.isnan(st.ratios))
        assert st.sigma[0] == pytest.approx(np.linalg.norm(one[2]), rel=1e-12) and np.all(st.sigma[1:] == 0)
    st = sp.window_stats(np.zeros((5, 5)))
    assert st.k_star == 0 and np.isnan(st.gap_ratio)


def test_the_tolerance_is_the_noise_level_of_the_eigensolver():
    W = 10
    eps = np.finfo(np.float64).eps
    assert sp.rank_tolerance(4.0, W) == pytest.approx(10 * W * eps * 4.0)
    # σ just above sqrt(tol_λ) is a value, just below it is zero
    tol_sigma = np.sqrt(sp.rank_tolerance(1.0, W))
    above = np.r_[1.0, np.full(W - 2, 0.5), 1.01 * tol_sigma]
    below = np.r_[1.0, np.full(W - 2, 0.5), 0.99 * tol_sigma]
    assert np.isfinite(sp.ratios(above)[-1]) and np.isnan(sp.ratios(below)[-1])
    # what eigh leaves of an exact zero update is far below it (measured: ≤ 4·eps·λ_1)
    g = np.random.default_rng(0)
    for seed in range(50):
        X = g.standard_normal((W, 3 * W)) * np.exp(g.uniform(-6, 0, W))[:, None]
        X[seed % W] = 0.0
        lam, _ = np.linalg.eigh(sp.gram(X))
        assert abs(lam[0]) < sp.rank_tolerance(lam[-1], W) / 10


def test_full_rank_windows_keep_every_number_bit_for_bit():
    # windows without a zero update: k* and R under every rule are those of the plain
    # definitions (the tolerance never fires), exactly
    g = np.random.default_rng(11)
    for trial in range(200):
        W = int(g.integers(3, 21))
        X = g.standard_normal((W, 4 * W)) * np.exp(g.uniform(-5, 0, W))[:, None]
        st = sp.window_stats(sp.gram(X))
        s = st.sigma
        assert np.all(s > 0)
        np.testing.assert_array_equal(st.ratios, s[:-1] / s[1:])
        for rule in RULES:
            k, gr, noise = _oracle(s, rule)
            assert getattr(st, f"k_star_{rule}") == k
            assert st.noise_floor == noise
        assert st.gap_ratio == _oracle(s, "floor")[1]


# ---------------------------------------------------------------------- through analyze
SHAPES = {"a.weight": (8, 6), "a.bias": (8,), "b.weight": (5, 8)}


def _states(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """A trajectory with two strong directions and noise (float32, like real checkpoints)."""
    g = torch.Generator().manual_seed(seed)
    P = sum(int(np.prod(s)) for s in SHAPES.values())
    dirs = torch.randn(2, P, generator=g, dtype=torch.float64)
    theta = torch.randn(P, generator=g, dtype=torch.float64)
    out = []
    for t in range(n):
        out.append(theta.clone())
        theta = theta + 0.3 * (t % 3 + 1) * dirs[0] + 0.15 * dirs[1] + 0.02 * torch.randn(P, generator=g, dtype=torch.float64)
    res = []
    for v in out:
        sd, pos = {}, 0
        for name, shape in SHAPES.items():
            k = int(np.prod(shape))
            sd[name] = v[pos : pos + k].reshape(shape).float()
            pos += k
        res.append(sd)
    return res


def _flat(sd: dict[str, torch.Tensor]) -> np.ndarray:
    return torch.cat([sd[n].reshape(-1).double() for n in SHAPES]).numpy()


@pytest.mark.parametrize("family", ["exact", "fold"])
def test_a_duplicated_checkpoint_through_analyze(tmp_path: Path, family: str):
    states = _states(12)
    states[6] = states[5]  # step 600 was saved again as it was at step 500
    run = tmp_path / "run"
    for i, sd in enumerate(states):
        write_safetensors(run / f"step_{100 * i}.safetensors", sd)
    W = 6
    deltas = np.diff(np.stack([_flat(s) for s in states]), axis=0)
    assert np.all(deltas[5] == 0) and np.count_nonzero(np.all(deltas == 0, axis=1)) == 1
    spec = SketchSpec("exact") if family == "exact" else SketchSpec("fold", dim=60, buckets=101)
    for rule in RULES:
        res = analyze_checkpoints(run, AnalysisConfig(windows=(W,), sketch=spec, kstar_rule=rule))
        rows = [r for r in res.rows if r["group"] == "all"]
        assert len(rows) == len(states) - W
        hit = 0
        for r in rows:
            t = r["step"] // 100  # the newest checkpoint; the window holds deltas t−W … t−1
            D = deltas[t - W : t]
            if not np.any(np.all(D == 0, axis=1)):
                continue
            hit += 1
            assert r[f"sigma_{W}"] == 0.0 and np.isnan(r[f"ratio_{W - 1}"])
            assert r["k_star"] != W - 1 and r["k_star_argmax"] != W - 1 and r["k_star_weighted"] != W - 1
            assert np.isfinite(r["gap_ratio"]) and r["gap_ratio"] < 1e3
            if family == "exact":  # the oracle: numpy's SVD of the nonzero deltas
                nz = D[~np.all(D == 0, axis=1)]
                k, gr, noise = _oracle(_svd(nz), rule)
                np.testing.assert_allclose([r[f"sigma_{j}"] for j in range(1, W)], _svd(nz), rtol=1e-9)
                assert r["k_star"] == k and r["gap_ratio"] == pytest.approx(gr, rel=1e-9)
                assert r["noise_floor"] == pytest.approx(noise, rel=1e-9)
        assert hit == W


def test_a_duplicated_checkpoint_through_the_cli(tmp_path: Path):
    from typer.testing import CliRunner

    from spectral_edge.cli import app

    states = _states(10, seed=2)
    run = tmp_path / "run"
    for i, sd in enumerate(states):
        write_safetensors(run / f"step_{100 * i}.safetensors", sd)
    shutil.copyfile(run / "step_400.safetensors", run / "step_450.safetensors")  # saved twice
    out = tmp_path / "m.csv"
    res = CliRunner().invoke(app, ["analyze", str(run), "-w", "5", "--kstar-rule", "argmax", "--sketch", "exact",
                                   "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    import pandas as pd

    df = pd.read_csv(out)
    with_zero = df[(df["step_first"] <= 400) & (df["step"] >= 450)]
    assert len(with_zero) == 5
    assert (with_zero["sigma_5"] == 0).all() and with_zero["ratio_4"].isna().all()
    assert (with_zero["k_star"] != 4).all() and (df["gap_ratio"] < 1e3).all()


# ---------------------------------------------------------------------- through the monitor
@pytest.mark.parametrize("sketch", ["exact", "fold"])
def test_a_step_that_changes_nothing_through_the_monitor(sketch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    spec = "exact" if sketch == "exact" else SketchSpec("fold", dim=50)
    W = 5
    mon = Monitor(model, windows=(W,), every=1, sketch=spec, kstar_rule="argmax")
    mon.attach(opt)
    states = [torch.cat([p.detach().reshape(-1).double() for p in model.parameters()]).numpy()]
    for i in range(1, 13):
        opt.param_groups[0]["lr"] = 0.0 if i == 7 else 0.2  # step 7 changes nothing
        loss = torch.nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        states.append(torch.cat([p.detach().reshape(-1).double() for p in model.parameters()]).numpy())
    deltas = np.diff(np.stack(states), axis=0)
    assert np.all(deltas[6] == 0)
    rows = [r for r in mon.rows if r["kind"] == "sed"]
    with_zero = [r for r in rows if r["step"] - W < 7 <= r["step"]]
    assert len(with_zero) == W
    for r in with_zero:
        assert r[f"sigma_{W}"] == 0.0, r[f"sigma_{W}"]
        assert np.isnan(r[f"ratio_{W - 1}"]) and r["k_star"] != W - 1 and r["k_star_weighted"] != W - 1
        if sketch == "exact":
            D = deltas[r["step"] - W : r["step"]]
            nz = D[~np.all(D == 0, axis=1)]
            k, gr, _ = _oracle(_svd(nz), "argmax")
            # (through the Gram, a small σ_j carries a relative error ~ eps·(σ_1/σ_j)²)
            assert r["k_star"] == k and r["gap_ratio"] == pytest.approx(gr, rel=1e-6)
