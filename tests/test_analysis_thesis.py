"""Spectral Edge Thesis quantities against brute force and closed forms: ΔG of the window
operator, Davis–Kahan α, the adiabatic parameter, gap dynamics, BBP, gap maximality, the
spectral loss decomposition on a quadratic model, and the run-level report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectral_edge.analysis.thesis import (BBP, DELTA_G_APPROX, adiabatic, adiabatic_regime, bbp_threshold,
                                           consecutive_operator_change, davis_kahan_alpha, eigen_gaps,
                                           eigenvalue_change, gap_dynamics, gap_maximality, gram_thesis,
                                           half_window_overlap, operator_change, run_thesis, sketch_window_change,
                                           spectral_loss_decomposition, window_operator_changes, window_thesis)
from spectral_edge.errors import ConfigError
from spectral_edge.functional import spectrum as sp
from spectral_edge.io.history import HistoryWriter
from spectral_edge.stream.window import SketchWindow


def _op(D: np.ndarray) -> np.ndarray:
    """The window operator Σ δδᵀ (D, D) of updates D (k, dim)."""
    return D.T @ D


# ---------------------------------------------------------------------- ΔG
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_operator_change_equals_brute_force(seed):
    g = np.random.default_rng(seed)
    T, W, dim = 14, 5, 9
    deltas = g.standard_normal((T, dim)) * np.linspace(1, 3, T)[:, None]
    P = deltas @ deltas.T
    for t in range(W, T):
        brute = np.linalg.norm(_op(deltas[t - W + 1: t + 1]) - _op(deltas[t - W: t]))
        assert consecutive_operator_change(P[t - W: t + 1, t - W: t + 1]) == pytest.approx(brute, rel=1e-10)
    exact = window_operator_changes(P, W)
    ref = [np.linalg.norm(_op(deltas[t - W + 1: t + 1]) - _op(deltas[t - W: t])) for t in range(W, T)]
    np.testing.assert_allclose(exact, ref, rtol=1e-10)
    # windows k = 2 samples apart: entering {t−1, t}, leaving {t−W−1, t−W}
    t, k = 10, 2
    new, old = deltas[t - k + 1: t + 1], deltas[t - W - k + 1: t - W + 1]
    brute = np.linalg.norm(_op(deltas[t - W + 1: t + 1]) - _op(deltas[t - W - k + 1: t - k + 1]))
    assert operator_change(new @ new.T, old @ old.T, new @ old.T) == pytest.approx(brute, rel=1e-10)


def test_operator_change_rank_two_closed_form():
    u = np.array([3.0, 0.0, 0.0])
    v = np.array([0.0, 4.0, 0.0])
    U = np.vstack([v, u])  # oldest (leaving) first, newest (entering) last
    # ‖uuᵀ − vvᵀ‖_F² = |u|⁴ + |v|⁴ − 2(u·v)² = 81 + 256
    assert consecutive_operator_change(U @ U.T) == pytest.approx(np.sqrt(337.0))
    assert consecutive_operator_change(np.vstack([u, u]) @ np.vstack([u, u]).T) == 0.0  # same update in and out


def test_sketch_window_change_equals_brute_force():
    g = np.random.default_rng(4)
    win = SketchWindow(dim=12, max_window=6)
    states = np.cumsum(g.standard_normal((10, 12)), axis=0)
    for i, s in enumerate(states):
        win.push(torch.from_numpy(s), step=10 * i)
    deltas = np.diff(states, axis=0)  # (9, 12)
    for W in (3, 6):
        brute = np.linalg.norm(_op(deltas[-W:]) - _op(deltas[-W - 1: -1]))
        assert sketch_window_change(win, W) == pytest.approx(brute, rel=1e-10)
    with pytest.raises(ConfigError):
        sketch_window_change(win, 7)


def test_exact_window_thesis_from_grams_and_a_sketch_window():
    g = np.random.default_rng(8)
    dim, W, eta = 15, 5, 2e-3
    states = np.cumsum(g.standard_normal((W + 3, dim)) * 1e-2, axis=0)
    deltas = np.diff(states, axis=0)  # (W+2, dim)
    last = deltas[-(W + 1):]
    th = gram_thesis(last @ last.T, eta)
    cur = deltas[-W:]
    st = sp.window_stats(cur @ cur.T)
    brute = np.linalg.norm(_op(cur) - _op(deltas[-W - 1: -1]))
    # everything of the per-unit-lr Gram G/η² (a constant η): gap/η, ΔG/η², α and A unchanged
    assert th.window == W and th.k_star == st.k_star and th.gap == pytest.approx(st.gap / eta)
    assert th.delta_g == pytest.approx(brute / eta**2, rel=1e-10) and th.delta_g_method.startswith("operator")
    np.testing.assert_allclose(th.alpha, davis_kahan_alpha(brute, st.sigma**2), rtol=1e-9, atol=1e-12)
    assert th.A == pytest.approx(brute / st.gap**2, rel=1e-9)
    assert th.regime is None  # no label without caller-given cut-offs
    win = SketchWindow(dim=dim, max_window=W)
    for i, s in enumerate(states):
        win.push(torch.from_numpy(s), step=i)
    wt = window_thesis(win, W, eta)
    assert wt.delta_g == pytest.approx(th.delta_g, rel=1e-10) and wt.A == pytest.approx(th.A, rel=1e-9)


def test_every_public_name_resolves():
    import spectral_edge.analysis as an

    for name in an.__all__:
        assert getattr(an, name) is not None


@pytest.mark.parametrize("seed", range(5))
def test_eigenvalue_change_is_a_lower_bound(seed):
    g = np.random.default_rng(seed)
    W, dim = 6, 20
    deltas = g.standard_normal((W + 1, dim)) * g.uniform(0.5, 3, (W + 1, 1))
    prev, cur = deltas[:-1], deltas[1:]
    lam_prev = sp.eig_gram(prev @ prev.T)[0]
    lam_cur = sp.eig_gram(cur @ cur.T)[0]
    approx = eigenvalue_change(lam_prev, lam_cur)
    assert approx == pytest.approx(np.linalg.norm(lam_cur - lam_prev))
    exact = consecutive_operator_change(deltas @ deltas.T)
    assert approx <= exact * (1 + 1e-12)


# ---------------------------------------------------------------------- Davis–Kahan, adiabatic
def test_gaps_and_alpha_closed_form():
    lam = np.array([10.0, 6.0, 5.0, 1.0])
    np.testing.assert_allclose(eigen_gaps(lam), [4, 1, 1, 1])
    np.testing.assert_allclose(eigen_gaps(lam, include_zero=False), [4, 1, 1, 4])
    np.testing.assert_allclose(davis_kahan_alpha(0.5, lam), [1 - 0.25 / 16, 0.75, 0.75, 0.75])
    np.testing.assert_allclose(davis_kahan_alpha(2.0, lam), [0.75, 0, 0, 0])
    np.testing.assert_allclose(davis_kahan_alpha(0.0, lam), [1, 1, 1, 1])
    np.testing.assert_allclose(davis_kahan_alpha(0.1, [3.0, 3.0, 1.0]), [0, 0, 1 - 0.01])  # degenerate pair


def test_half_window_overlap_against_explicit_directions():
    g = np.random.default_rng(1)
    dim, W = 30, 8
    D = g.standard_normal((W, dim))
    G = D @ D.T
    h = W // 2

    def top(M):
        return np.linalg.svd(M, full_matrices=False)[2][0]

    assert half_window_overlap(G) == pytest.approx(abs(top(D[:h]) @ top(D[h:])), rel=1e-9)
    # one shared dominant direction → overlap ≈ 1
    v = g.standard_normal(dim)
    D2 = 50 * np.outer(g.choice([-1, 1], W), v) + g.standard_normal((W, dim))
    assert half_window_overlap(D2 @ D2.T) > 0.99


def test_adiabatic_closed_form_and_regimes():
    A = adiabatic([2e-6, 1e-6, 0.0], [0.1, 0.01, 0.01])
    np.testing.assert_allclose(A, [2e-6 / 0.01, 1e-6 / 1e-4, 0.0])
    assert np.isinf(adiabatic(1.0, 0.0)) and np.isnan(adiabatic(0.0, 0.0))
    assert np.isnan(adiabatic(1.0, np.nan)) and np.isnan(adiabatic(np.nan, 1.0))
    labels = adiabatic_regime([0.05, 0.1, 1.0, 10.0, 10.5, np.nan], 0.1, 10.0)  # cut-offs are required
    assert list(labels) == ["plateau", "transition", "transition", "transition", "forgetting", "unknown"]
    assert list(adiabatic_regime([0.5, 2.0], low=1.0, high=1.5)) == ["plateau", "forgetting"]
    with pytest.raises(ConfigError):
        adiabatic_regime([1.0], low=2.0, high=1.0)
    with pytest.raises(TypeError):
        adiabatic_regime([1.0])


# ---------------------------------------------------------------------- gap dynamics, BBP, maximality
def test_gap_dynamics_exponential_exact():
    h, k = 50.0, 2e-3
    t = np.arange(40) * h
    g = 3.0 * np.exp(-k * t)
    gd = gap_dynamics(t, g)
    # (g_{i+1} − g_i)/h = −(2/h)·tanh(kh/2)·(g_i + g_{i+1})/2 exactly
    assert gd.slope == pytest.approx(-2.0 / h * np.tanh(k * h / 2), rel=1e-9)
    assert gd.intercept == pytest.approx(0.0, abs=1e-12) and gd.r2 == pytest.approx(1.0)
    assert gd.n == 39 and gd.t_mid[0] == pytest.approx(h / 2)
    lin = gap_dynamics(t, 1.0 + 0.01 * t)
    assert lin.intercept == pytest.approx(0.01) and lin.slope == pytest.approx(0.0, abs=1e-12)
    noisy = gap_dynamics(t, g + np.random.default_rng(0).normal(0, 0.05, t.size))
    assert noisy.r2 < 0.9
    assert gap_dynamics([0], [1.0]).n == 0


def test_bbp_closed_form():
    b = bbp_threshold([10.0, 5.0, 1.0, 1.0, 1.0, 1.0], 10_000)
    assert isinstance(b, BBP) and b.window == 6
    assert b.noise_floor == pytest.approx(1.0) and b.nu == pytest.approx(0.01)
    assert b.d_crit == pytest.approx(0.01 * (10_000 * 5) ** 0.25)
    assert b.d_crit_over_noise == pytest.approx((5 / 10_000) ** 0.25)
    np.testing.assert_allclose(b.signal, [np.sqrt(99), np.sqrt(24), 0, 0, 0, 0])
    assert b.n_detectable == 2
    assert sp.noise_floor(np.array([10.0, 5.0, 1.0, 1.0, 1.0, 1.0])) == b.noise_floor  # the shared floor
    with pytest.raises(ConfigError):
        bbp_threshold([1.0, 0.5], 0)


def test_gap_maximality():
    # σ: two signal modes, then a noise bulk whose last value is tiny (huge tail ratio)
    s = np.array([10.0, 8.0, 2.0, 1.9, 1.8, 1.7, 1.6, 0.01])
    gm = gap_maximality(s)
    assert gm.k_star == 2 and gm.is_maximal and gm.runner_up == 1
    assert gm.ratio == pytest.approx(4.0) and gm.margin == pytest.approx(4.0 / 1.25)
    tail = gap_maximality(s, k=2, candidates="all")
    assert not tail.is_maximal and tail.runner_up == 7
    forced = gap_maximality(s, k=1)
    assert not forced.is_maximal and forced.runner_up == 2


# ---------------------------------------------------------------------- live model
class _Quad(torch.nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.tensor(b, dtype=torch.float64))

    def theta(self):
        return torch.cat([self.w, self.b])


def test_spectral_loss_decomposition_quadratic_closed_form():
    torch.manual_seed(0)
    model = _Quad([0.5, -1.0, 2.0], [0.3])
    c_tr = torch.tensor([1.0, 0.0, 1.0, -1.0], dtype=torch.float64)
    c_val = torch.tensor([0.0, 1.0, 2.0, 0.0], dtype=torch.float64)
    H = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))

    def train_loss():
        torch.rand(3)  # a closure that draws random numbers must not move the caller's RNG
        d = model.theta() - c_tr
        return 0.5 * (d @ d)

    def val_loss():
        d = model.theta() - c_val
        return 0.5 * d @ H @ d

    dirs_np = [np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.0, 0.0, 3.0, 4.0])]
    dirs = [{"w": torch.tensor(d[:3]), "b": torch.tensor(d[3:])} for d in dirs_np]
    theta0 = model.theta().detach().numpy().copy()
    rng_before = torch.get_rng_state()
    eta = 0.1
    res = spectral_loss_decomposition(model, dirs, train_loss, val_loss, lr=eta, alphas=[1.0, 0.5])
    assert torch.equal(torch.get_rng_state(), rng_before)
    np.testing.assert_array_equal(model.theta().detach().numpy(), theta0)  # restored exactly
    assert model.w.grad is None and model.b.grad is None  # .grad untouched
    Hn = np.diag([1.0, 2.0, 3.0, 4.0])
    for m, d, alpha in zip(res, dirs_np, [1.0, 0.5]):
        v = d / np.linalg.norm(d)
        g_tr = v @ (theta0 - c_tr.numpy())
        g_val = v @ Hn @ (theta0 - c_val.numpy())
        assert m.g_train == pytest.approx(g_tr) and m.g_val == pytest.approx(g_val)
        assert m.predicted == pytest.approx(alpha * eta * g_tr * g_val)
        # L_val(θ + s v) − L_val(θ) = s·G_val + ½ s²·vᵀHv with s = η·G_train
        s = eta * g_tr
        assert m.measured == pytest.approx(s * g_val + 0.5 * s * s * (v @ Hn @ v), rel=1e-10)
        assert m.shift == pytest.approx(s)


def test_spectral_loss_decomposition_errors():
    model = _Quad([0.0], [0.0])

    def loss():
        return (model.theta() ** 2).sum()

    with pytest.raises(ConfigError, match="does not have"):
        spectral_loss_decomposition(model, [{"nope": torch.zeros(1)}], loss, loss, lr=0.1)
    with pytest.raises(ConfigError, match="all zeros"):
        spectral_loss_decomposition(model, [{"w": torch.zeros(1)}], loss, loss, lr=0.1)
    with pytest.raises(ConfigError, match="shape"):
        spectral_loss_decomposition(model, [{"w": torch.zeros(2)}], loss, loss, lr=0.1)


# ---------------------------------------------------------------------- run level
def _history(path, sigmas, steps, lr_rows, n_parameters=1000, W=4):
    rows = []
    for st, s in zip(steps, sigmas):
        r = sp.window_stats(np.diag(np.asarray(s) ** 2)).as_row()
        rows.append({"kind": "sed", "step": st, "group": "all", **r})
    rows += [{"kind": "log", "step": st, "lr": lr} for st, lr in lr_rows]
    with HistoryWriter(path, {"n_parameters": n_parameters}, fsync=False) as w:
        w.write(rows)
    return path


def test_run_thesis_against_manual_computation(tmp_path):
    sig = [[4.0, 2.0, 1.0, 0.9], [4.2, 1.9, 1.0, 0.9], [4.4, 1.5, 1.1, 0.8], [3.0, 2.5, 1.0, 0.9]]
    steps = [100, 200, 300, 400]
    path = _history(tmp_path / "h.jsonl", sig, steps, [(100, 1e-2), (300, 5e-3)])
    rep = run_thesis(path)
    assert rep.delta_g_method == DELTA_G_APPROX and rep.lr_source == "log"
    rows = rep.rows
    assert np.isnan(rows[0]["delta_g"]) and np.isnan(rows[0]["A"]) and "regime" not in rows[0]
    eta = [1e-2, 1e-2, 5e-3, 5e-3]  # lr at or before each step
    for i in range(1, 4):
        lam_p, lam_c = np.square(sig[i - 1]), np.square(sig[i])
        dg = np.linalg.norm(lam_c - lam_p)
        st = sp.window_stats(np.diag(lam_c))
        assert rows[i]["delta_g"] == pytest.approx(dg)
        assert rows[i]["lr"] == eta[i]
        # A of the per-unit-lr spectra σ/η (η in force at each row; it changes between rows 1 and 2)
        dg_u = np.linalg.norm(lam_c / eta[i] ** 2 - lam_p / eta[i - 1] ** 2)
        assert rows[i]["A"] == pytest.approx(dg_u / (st.gap / eta[i]) ** 2)
        if eta[i] == eta[i - 1]:
            assert rows[i]["A"] == pytest.approx(dg / st.gap**2)
        alpha = davis_kahan_alpha(dg, lam_c)
        assert rows[i]["alpha_kstar"] == pytest.approx(alpha[st.k_star - 1])
    assert rep.bbp is not None and rep.bbp.n_parameters == 1000
    assert rep.bbp.d_crit == pytest.approx(bbp_threshold(sig[-1], 1000).d_crit)
    assert rep.regime_counts == {} and rep.low is None
    labelled = run_thesis(path, low=0.1, high=10.0)
    assert [r["regime"] for r in labelled.rows] == list(adiabatic_regime([r["A"] for r in rows], 0.1, 10.0))
    assert sum(labelled.regime_counts.values()) == 4
    gd = gap_dynamics(steps, [r["gap"] for r in rows])
    assert rep.gap.slope == pytest.approx(gd.slope)
    # flags override the history
    over = run_thesis(path, lr=1.0, n_parameters=50)
    assert over.lr_source == "flag" and over.rows[1]["A"] == pytest.approx(rows[1]["A"])  # constant η: same A
    assert over.bbp.n_parameters == 50


def test_run_thesis_without_lr_or_parameters(tmp_path):
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path, {}, fsync=False) as w:
        w.write([{"kind": "sed", "step": 10 * (i + 1), "group": "all",
                  **sp.window_stats(np.diag([9.0, 4.0 + i, 1.0])).as_row()} for i in range(5)])
    rep = run_thesis(path)
    assert rep.lr_source == "none" and rep.bbp is None
    assert rep.regime_counts == {} and len(rep.notes) == 2
    assert all(np.isfinite(r["A"]) for r in rep.rows[1:])  # a constant η cancels: A needs none


def test_gap_maximality_on_a_rank_deficient_window_ignores_the_undefined_ratio():
    s = np.array([10.0, 9.0, 3.0, 2.9, 2.8, 0.0])  # one zero update: σ_6 = 0, r_5 undefined
    g = gap_maximality(s)
    assert g.k_star == 2 and g.is_maximal and np.isclose(g.ratio, 3.0)
    full = gap_maximality(np.array([10.0, 9.0, 3.0, 2.9, 2.8]))
    assert (g.k_star, g.ratio) == (full.k_star, full.ratio)
