"""Coupling with validation loss: detrending, the lag sign convention, planted lead/lag,
calibrated significance under autocorrelation, Granger through statsmodels, the lag flip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectral_edge.analysis.coupling import (LagFlip, circular_shift_pvalue, detrend, effective_sample_size,
                                             ess_pvalue, granger_test, lag_coupling, lag_flip, lagged_correlation,
                                             phase_correlations, run_coupling)
from spectral_edge.analysis.datasets import ar1, planted_history, planted_lead
from spectral_edge.analysis.phases import PhaseConfig, detect_phases
from spectral_edge.analysis.series import Series, align, load_run, values_at
from spectral_edge.errors import ConfigError


def _series(pair, lr=None):
    x = Series("gap_ratio", pair.steps, pair.x, 10, "all")
    y = Series("val_loss", pair.steps, pair.y)
    return x, y


# ---------------------------------------------------------------------- building blocks
def test_detrend_removes_a_cubic_and_matches_polyfit():
    s = np.arange(50) * 200.0
    u = s / 1e4
    cubic = 3 - 2 * u + 0.5 * u**2 - 0.1 * u**3
    np.testing.assert_allclose(detrend(s, cubic), 0.0, atol=1e-10)
    y = cubic + np.random.default_rng(0).standard_normal(50)
    ref = y - np.polyval(np.polyfit(u, y, 3), u)
    np.testing.assert_allclose(detrend(s, y), ref, atol=1e-9)
    np.testing.assert_allclose(detrend(s, y, degree=1), y - np.polyval(np.polyfit(u, y, 1), u), atol=1e-9)
    assert not np.allclose(detrend(s, y, degree=1), ref)  # degree matters
    with pytest.raises(ConfigError):
        detrend(s[:4], y[:4], degree=3)


def test_lag_sign_convention_against_brute_force():
    g = np.random.default_rng(1)
    x = g.standard_normal(60)
    y = np.r_[g.standard_normal(2), x[:-2]]  # y_t = x_{t−2}: x leads by 2
    lc = lagged_correlation(x, y, 5)
    assert lc.lags == tuple(range(-5, 6))
    i = lc.lags.index(2)
    assert lc.r[i] == pytest.approx(1.0) and lc.n[i] == 58
    for lag, r, n in zip(lc.lags, lc.r, lc.n):
        a, b = (x[: 60 - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[: 60 + lag])
        assert n == a.size and r == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    neg = lagged_correlation(x, -y, 5)
    assert neg.peak == (2, pytest.approx(-1.0))  # most negative r
    assert lagged_correlation(x, y, 5).positive_peak[0] == 2


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_planted_lead_is_recovered(seed):
    pair = planted_lead(n=200, lag=3, seed=seed)
    lr = Series("lr", pair.steps, 1e-3 * np.where(pair.steps < 10_000, 1.0, 0.3))
    res = lag_coupling(*_series(pair), lr)
    assert res.peak_lag == 3 and res.sign == 1 and res.peak_r < -0.5
    assert res.p_perm <= 0.01 and res.p_eff < 1e-3 and res.p_naive < 1e-6
    assert res.granger is not None and res.granger.p_value < 1e-3 and res.granger.used_lr
    assert res.granger.lag_order >= 3  # the planted lag needs at least 3 lags of x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_lag_is_recovered_reversed(seed):
    pair = planted_lead(n=200, lag=-3, seed=seed)
    res = lag_coupling(*_series(pair))
    assert res.peak_lag == -3 and res.sign == -1
    assert res.granger_reverse is not None and res.granger_reverse.p_value < 1e-3  # the loss leads


def test_without_detrending_a_shared_trend_dominates_every_lag():
    pair = planted_lead(n=200, lag=3, a=0.3, seed=0)
    u = pair.steps / pair.steps.max()
    x = Series("x", pair.steps, pair.x + 30 * np.sin(3 * u))
    y = Series("y", pair.steps, pair.y - 30 * np.sin(3 * u))
    raw = np.array(lag_coupling(x, y, degree=-1, n_perm=0, granger_max_lag=0).correlation.r)
    det = lag_coupling(x, y, degree=3, n_perm=0, granger_max_lag=0)
    assert np.all(raw < -0.8) and np.ptp(raw) < 0.1  # the trend makes every lag look the same
    assert det.peak_lag == 3 and np.ptp(det.correlation.r) > 0.3


def test_independent_autocorrelated_series_are_not_significant():
    perm_small = naive_small = eff_small = 0
    for seed in range(20):
        g = np.random.default_rng(100 + seed)
        n = 200
        steps = np.arange(n) * 10
        x = Series("x", steps, ar1(n, 0.9, 1.0, g))
        y = Series("y", steps, ar1(n, 0.9, 1.0, g))
        res = lag_coupling(x, y, n_perm=999, granger_max_lag=0)
        perm_small += res.p_perm < 0.05
        eff_small += res.p_eff < 0.01
        naive_small += res.p_naive < 0.05
    assert perm_small <= 5  # calibrated: about 1 in 20 expected
    assert eff_small <= 5
    assert naive_small >= 10  # the naive test ignores autocorrelation and the lag search


def test_granger_not_significant_for_independent_series():
    small = 0
    for seed in range(10):
        g = np.random.default_rng(500 + seed)
        small += granger_test(ar1(150, 0.7, 1.0, g), ar1(150, 0.7, 1.0, g), max_lag=4).p_value < 0.05
    assert small <= 2


def test_granger_restricted_model_includes_the_learning_rate():
    # loss driven by the learning rate; x is a noisy copy of the previous lr, so x's lags carry
    # information only about lr: significant without lr in the restricted model, not with it
    g = np.random.default_rng(3)
    n = 200
    lr = 1e-3 * (1 + 0.5 * np.sign(np.sin(np.arange(n) / 7.0))) + 1e-4 * g.standard_normal(n)
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = 0.4 * y[t - 1] - 800 * lr[t] + 0.2 * g.standard_normal()
    x = np.r_[lr[1:], lr[-1]] * 1000 + 0.01 * g.standard_normal(n)  # x_{t−1} ≈ lr_t
    with_lr = granger_test(y, x, lr, max_lag=3)
    without = granger_test(y, x, None, max_lag=3)
    assert without.p_value < 1e-6 and not without.used_lr
    assert with_lr.used_lr and with_lr.p_value > 1e-3
    assert len(with_lr.aic) == 3 and with_lr.lag_order == int(np.argmin(with_lr.aic)) + 1


def test_granger_matches_statsmodels_grangercausalitytests_without_lr():
    from statsmodels.tsa.stattools import grangercausalitytests

    pair = planted_lead(n=120, lag=2, trend=False, seed=4)
    res = granger_test(pair.y, pair.x, None, max_lag=2)
    ref = grangercausalitytests(np.column_stack([pair.y, pair.x]), maxlag=[res.lag_order])
    F, p, dfd, dfn = ref[res.lag_order][0]["ssr_ftest"]
    assert res.f_stat == pytest.approx(F, rel=1e-8) and res.p_value == pytest.approx(p, rel=1e-6, abs=1e-300)
    assert (res.df_num, res.df_denom) == (dfn, dfd)


def test_granger_too_short():
    r = granger_test(np.arange(8.0), np.arange(8.0), max_lag=4)
    assert np.isnan(r.p_value) and "too few" in r.reason


# ---------------------------------------------------------------------- significance helpers
def test_ess_formulas():
    g = np.random.default_rng(0)
    x, y = ar1(400, 0.8, 1.0, g), ar1(400, 0.6, 1.0, g)

    def rho1(z):
        z = z - z.mean()
        return (z[:-1] @ z[1:]) / (z @ z)

    p = rho1(x) * rho1(y)
    assert effective_sample_size(x, y, "bretherton") == pytest.approx(400 * (1 - p) / (1 + p))
    white = effective_sample_size(g.standard_normal(400), g.standard_normal(400), "bartlett")
    assert 300 < white <= 400
    assert effective_sample_size(x, y, "bartlett") < 0.6 * 400
    with pytest.raises(ConfigError):
        effective_sample_size(x, y, "magic")


def test_ess_pvalue_equals_pearson_test_at_full_n():
    g = np.random.default_rng(2)
    a = g.standard_normal(40)
    b = 0.3 * a + g.standard_normal(40)
    r, p = stats.pearsonr(a, b)
    assert ess_pvalue(r, 40) == pytest.approx(p, rel=1e-9)
    assert ess_pvalue(r, 10) > p  # fewer effective samples → larger p
    assert np.isnan(ess_pvalue(r, 2))


def test_circular_shift_pvalue_against_brute_force():
    g = np.random.default_rng(5)
    n, L = 30, 3
    x, y = g.standard_normal(n), g.standard_normal(n)
    p, N = circular_shift_pvalue(x, y, L, n_perm=10_000)
    shifts = range(L + 1, n - L)
    assert N == len(shifts)
    t_obs = min(lagged_correlation(x, y, L).r)
    hits = sum(min(lagged_correlation(np.roll(x, s), y, L).r) <= t_obs for s in shifts)
    assert p == pytest.approx((1 + hits) / (1 + N))
    # sampled shifts: reproducible with a seed
    big = g.standard_normal(400), g.standard_normal(400)
    a = circular_shift_pvalue(*big, 5, n_perm=50, seed=1)
    assert a == circular_shift_pvalue(*big, 5, n_perm=50, seed=1) and a[1] == 50


# ---------------------------------------------------------------------- runs, alignment, phases
def test_align_interpolate_and_common():
    x = Series("x", np.array([0, 10, 20, 30, 40]), np.array([1.0, 2.0, np.nan, 4.0, 5.0]))
    y = Series("y", np.array([10, 30, 50]), np.array([0.0, 2.0, 4.0]))
    a = align(x, y, "interpolate")
    np.testing.assert_array_equal(a.steps, [10, 30, 40])
    np.testing.assert_allclose(a.y, [0.0, 2.0, 3.0])
    c = align(x, y, "common")
    np.testing.assert_array_equal(c.steps, [10, 30])
    lr = Series("lr", np.array([0, 25]), np.array([1.0, 0.5]))
    np.testing.assert_allclose(values_at(lr, np.array([-5, 0, 24, 25, 99])), [1.0, 1.0, 1.0, 0.5, 0.5])


def test_phase_correlations_match_subsets():
    pair = planted_lead(n=120, lag=0, seed=2)
    ph = detect_phases(pair.steps, np.r_[np.linspace(1, 2, 30), np.full(50, 2.0), np.linspace(2, 1, 40)],
                       PhaseConfig(method="plateau"))
    pcs = phase_correlations(pair.steps, pair.x, pair.y, ph)
    assert [p.phase for p in pcs] == ["rise", "plateau", "collapse"]
    assert sum(p.n for p in pcs) == 120
    labels = np.array(ph.labels)
    xd, yd = detrend(pair.steps, pair.x), detrend(pair.steps, pair.y)
    for pc in pcs:
        m = labels == pc.phase
        assert pc.r_raw == pytest.approx(np.corrcoef(pair.x[m], pair.y[m])[0, 1])
        assert pc.r_detrended == pytest.approx(np.corrcoef(xd[m], yd[m])[0, 1])
        assert pc.first_step == pair.steps[m][0]


def test_lag_flip_on_a_planted_history(tmp_path):
    path = planted_history(tmp_path / "h.jsonl", windows=(5, 10), lags={5: -2, 10: 3}, n=160, seed=0)
    flip = lag_flip(path, n_perm=199, granger_max_lag=2)
    assert isinstance(flip, LagFlip)
    assert flip.windows == (5, 10)
    assert [r.peak_lag for r in flip.results] == [-2, 3]
    assert flip.signs == (-1, 1) and flip.flip and flip.flips == ((5, 10),)
    assert all(r.target == "test_loss" for r in flip.results)
    same = lag_flip(planted_history(tmp_path / "s.jsonl", lags={5: 2, 10: 3}, seed=0), n_perm=0, granger_max_lag=0)
    assert same.signs == (1, 1) and not same.flip and same.flips == ()


def test_table_plus_val_csv_equals_history(tmp_path):
    path = planted_history(tmp_path / "h.jsonl", windows=(10,), n=100, seed=3, loss_column="val_loss")
    data = load_run(path)
    data.spectral.to_csv(tmp_path / "metrics.csv", index=False)
    logs = data.logs.reset_index()[["step", "val_loss", "lr"]]
    logs.to_csv(tmp_path / "val_lr.csv", index=False)
    logs[["step", "val_loss"]].to_csv(tmp_path / "val.csv", index=False)
    a = run_coupling(path, n_perm=99, granger_max_lag=2)
    b = run_coupling(load_run(tmp_path / "metrics.csv", val=tmp_path / "val_lr.csv"), n_perm=99, granger_max_lag=2)
    assert a.target == b.target == "val_loss"
    assert a.peak_lag == b.peak_lag and a.peak_r == pytest.approx(b.peak_r) and a.p_perm == b.p_perm
    assert a.granger.used_lr and b.granger.used_lr
    assert a.granger.p_value == pytest.approx(b.granger.p_value)
    c = run_coupling(load_run(tmp_path / "metrics.csv", val=tmp_path / "val.csv"), n_perm=99, granger_max_lag=2)
    assert c.peak_r == pytest.approx(a.peak_r) and not c.granger.used_lr  # no lr anywhere: own lags only
    with pytest.raises(ConfigError, match="no validation series"):
        run_coupling(tmp_path / "metrics.csv")
    # an explicit column; val_loss is preferred over test_loss when both exist
    pd.DataFrame({"step": logs["step"], "test_loss": logs["val_loss"][::-1].to_numpy()}).to_csv(
        tmp_path / "test.csv", index=False)
    both = load_run(path, val=tmp_path / "test.csv")
    assert both.validation().name == "val_loss" and both.validation("test_loss").name == "test_loss"


def test_errors():
    s = np.arange(5)
    with pytest.raises(ConfigError, match="common points"):
        lag_coupling(Series("x", s, s * 1.0), Series("y", s, s * 2.0))
    with pytest.raises(ConfigError):
        lagged_correlation(np.zeros(5), np.zeros(4), 1)
