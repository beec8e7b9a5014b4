"""Window spectrum math against numpy/scipy references and planted spectra."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from spectral_edge.errors import ConfigError
from spectral_edge.functional import spectrum as sp
from spectral_edge.synthetic import planted_window


def _rand_deltas(W=10, D=300, seed=0):
    return np.random.default_rng(seed).standard_normal((W, D))


def test_gram_and_singular_values_match_scipy_svd():
    for seed in range(5):
        X = _rand_deltas(W=7 + seed, D=50 + 13 * seed, seed=seed)
        G = sp.gram(X)
        np.testing.assert_allclose(G, X @ X.T, rtol=1e-12)
        ref = scipy.linalg.svdvals(X)
        np.testing.assert_allclose(sp.singular_values(G), ref, rtol=1e-10, atol=1e-10 * ref[0])


def test_planted_singular_values_recovered_to_high_precision():
    sigma = np.array([50.0, 20.0, 5.0, 4.0, 3.5, 3.0, 2.5, 2.0, 1.5, 1.0])
    X = planted_window(sigma, dim=400, seed=3)
    st = sp.window_stats(sp.gram(X))
    np.testing.assert_allclose(st.sigma, sigma, rtol=1e-11)
    # planted gap after mode 2: σ2/σ3 = 4 is the largest ratio above the floor
    assert st.k_star == 2
    assert st.gap_ratio == pytest.approx(4.0, rel=1e-10)
    assert st.gap == pytest.approx(15.0, rel=1e-10)


def test_all_window_quantities_against_direct_definitions():
    X = _rand_deltas(W=8, D=120, seed=11) * np.linspace(3, 0.5, 8)[:, None]
    st = sp.window_stats(sp.gram(X), kstar_rule="argmax")
    s = scipy.linalg.svdvals(X)
    lam = s**2
    np.testing.assert_allclose(st.ratios, s[:-1] / s[1:], rtol=1e-9)
    j = int(np.argmax(s[:-1] / s[1:]))
    assert st.k_star == j + 1
    assert st.gap_ratio == pytest.approx(s[j] / s[j + 1], rel=1e-9)
    assert st.gap == pytest.approx(s[j] - s[j + 1], rel=1e-9)
    assert st.g23 == pytest.approx(lam[1] - lam[2], rel=1e-9)
    assert st.pc1_pct == pytest.approx(100 * lam[0] / lam.sum(), rel=1e-9)
    k95 = int(np.argmax(np.cumsum(lam) / lam.sum() >= 0.95)) + 1
    assert st.k95 == k95
    assert st.drift_speed == pytest.approx(np.linalg.norm(X.mean(0)), rel=1e-9)
    # top direction: v1 = Σ c_i δ_i is the unit top right-singular vector (up to sign)
    v1 = st.top_coeffs @ X
    _, _, Vt = np.linalg.svd(X, full_matrices=False)
    assert abs(v1 @ Vt[0]) == pytest.approx(1.0, abs=1e-9)
    assert np.linalg.norm(v1) == pytest.approx(1.0, abs=1e-9)


def test_turning_matches_direct_top_vectors():
    g = np.random.default_rng(5)
    X = g.standard_normal((11, 60)) + 4 * np.outer(np.linspace(1, 2, 11), g.standard_normal(60))
    W = 10
    a, b = sp.window_stats(sp.gram(X[:W])), sp.window_stats(sp.gram(X[1:]))
    tv = sp.turning(sp.gram(X), a.top_coeffs, b.top_coeffs)
    v_prev = np.linalg.svd(X[:W], full_matrices=False)[2][0]
    v_cur = np.linalg.svd(X[1:], full_matrices=False)[2][0]
    assert tv == pytest.approx(abs(v_prev @ v_cur), rel=1e-9)


def _realistic_spectrum(k: int, W: int = 10, seed: int = 0) -> np.ndarray:
    """k strong modes, a slowly decaying noise bulk and one tiny last value (the shape of
    real update windows, where momentum makes the last update nearly dependent)."""
    g = np.random.default_rng(seed)
    signal = 10.0 * np.cumprod(np.full(k, 0.6)) * (1 + 0.05 * g.random(k))
    bulk = signal[-1] / (2.2 + 0.3 * g.random()) * np.linspace(1.0, 0.55, W - k - 1) * (1 + 0.02 * g.random(W - k - 1))
    tail = bulk[-1] / (4.0 + 2.0 * g.random())
    return np.sort(np.concatenate([signal, bulk, [tail]]))[::-1]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_default_rule_gives_planted_edge_where_plain_argmax_picks_the_tail(k):
    for seed in range(20):
        s = _realistic_spectrum(k, seed=seed)
        assert sp.k_star(s, "argmax") == len(s) - 1, "plain argmax should be fooled by the tail"
        assert sp.k_star(s) == k, f"default rule missed the planted edge on {np.round(s, 3)}"


def test_floor_rule_on_planted_windows_through_the_gram():
    # through the whole pipeline: updates → Gram → σ → k*
    for k in (2, 3):
        s = _realistic_spectrum(k, seed=7)
        st = sp.window_stats(sp.gram(planted_window(s, dim=200, seed=1)))
        assert st.k_star == k and st.k_star_floor == k
        assert st.k_star_argmax == len(s) - 1


def test_noise_floor_and_ratio_floor_definitions():
    s = np.array([9.0, 5.0, 2.0, 1.9, 1.5, 1.2, 1.0, 0.8])
    assert sp.noise_floor(s) == pytest.approx(np.sqrt(np.mean(s[4:] ** 2)))
    assert sp.ratio_floor(8) == pytest.approx(1 + 2 * 8 ** (-2 / 3))


def _noise_then_signal(W: int, seed: int) -> np.ndarray:
    """Lower half (indices ≥ W//2) noise around 1, upper half signal well above it; descending."""
    g = np.random.default_rng(seed)
    lower = np.sort(0.6 + 0.4 * g.random(W - W // 2))[::-1]
    upper = np.sort(3.0 + 5.0 * g.random(W // 2))[::-1]
    return np.concatenate([upper, lower])


@pytest.mark.parametrize("W", [5, 6, 7, 8, 9, 10, 20])
def test_noise_floor_is_the_rms_of_exactly_the_lower_half(W):
    # behaviour, not the formula: the floor ignores every upper-half mode (j ≤ ⌊W/2⌋), moves
    # with every lower-half mode (j > ⌊W/2⌋, the first of them included), and a flat lower
    # half at level c gives exactly c
    for seed in range(5):
        s = _noise_then_signal(W, seed)
        h = W // 2
        base = sp.noise_floor(s)
        louder = s.copy()
        louder[:h] *= 7.0  # any other signal: same floor
        assert sp.noise_floor(louder) == base
        for j in range(h, W):  # nudge each noise mode within its neighbours: the floor moves
            t = s.copy()
            t[j] = 0.5 * (t[j] + (t[j - 1] if j > h else 2.0))
            assert sp.noise_floor(t) > base, f"mode {j + 1} of W = {W} is not in the noise floor"
        flat = np.concatenate([s[:h], np.full(W - h, 0.8)])
        assert sp.noise_floor(flat) == pytest.approx(0.8, rel=1e-12)
    assert sp.ratio_floor(8) == pytest.approx(1.5)  # ρ_W = 1 + 2·W^(−2/3): 1 + 2/4 at W = 8


@pytest.mark.parametrize("s, edge", [
    # a weak last signal mode just above ρ_W·σ_noise: found (a floor that took in one more
    # mode from above would rise over it and put the edge one mode early)
    ([2.6, 2.2, 1.85, 1.4, 1.0, 1.0, 1.0, 0.1], 4),
    ([2.7, 2.2, 1.9, 1.65, 1.35, 1.0, 1.0, 1.0, 1.0, 0.1], 5),
    # the top noise mode stands out of the rest of the noise: it is part of the floor, so its
    # large ratio to the next is never the edge (a floor that left it out would pick it)
    ([4.5, 3.0, 1.85, 1.85, 1.8, 1.0, 1.0, 1.0], 2),
    ([3.4, 2.4, 1.6, 1.6, 1.6, 1.55, 1.0, 1.0, 1.0, 1.0], 2),
])
def test_floor_rule_uses_exactly_the_lower_half_as_noise(s, edge):
    s = np.array(s)
    st = sp.window_stats(sp.gram(planted_window(s, dim=200, seed=2)))
    assert st.k_star_floor == edge and st.k_star == edge
    assert st.k_star_argmax != edge  # plain argmax is fooled by the tail or the outlier
    # the edge is the last mode above the threshold, or the outlier just below it
    thr = sp.ratio_floor(len(s)) * sp.noise_floor(s)
    assert s[edge - 1] > thr
    if s[-1] >= 0.5:  # the outlier cases: the outlier sits under the threshold
        assert 0.9 * thr < s[len(s) // 2] < thr


def test_degenerate_windows():
    # all-zero window: undefined edge, no crash
    st = sp.window_stats(np.zeros((5, 5)))
    assert st.k_star == 0 and np.isnan(st.gap_ratio) and st.k95 == 0
    # rank-deficient window: σ_4 = 0 exactly, the ratio at the rank boundary is undefined
    # and never the edge (tests/test_rank_deficient.py has the full story)
    X = planted_window(np.array([3.0, 2.0, 1.0, 0.0]), dim=10)
    st = sp.window_stats(sp.gram(X), kstar_rule="argmax")
    assert st.sigma[3] == 0.0 and np.isnan(st.ratios[2])
    assert st.k_star == 2 and st.gap_ratio == pytest.approx(2.0, rel=1e-12)
    # flat spectrum: floor rule falls back to mode 1
    assert sp.k_star(np.ones(6)) == 1


def test_bad_inputs_raise_config_errors():
    with pytest.raises(ConfigError, match="unknown k\\* rule"):
        sp.window_stats(np.eye(3), kstar_rule="nope")
    with pytest.raises(ConfigError, match="at least 2"):
        sp.window_stats(np.eye(1))
    with pytest.raises(ConfigError, match="square"):
        sp.eig_gram(np.ones((2, 3)))
    with pytest.raises(ConfigError, match="NaN"):
        sp.eig_gram(np.array([[1.0, np.nan], [np.nan, 1.0]]))


def test_multi_window_series_from_one_pairwise_matrix():
    X = _rand_deltas(W=30, D=80, seed=2)
    P = sp.gram(X)
    for W in (5, 10, 20):
        series = sp.window_series(P, W)
        assert [t for t, _ in series] == list(range(W - 1, 30))
        for t, st in series[:: 7]:
            direct = sp.window_stats(sp.gram(X[t - W + 1 : t + 1]))
            np.testing.assert_allclose(st.sigma, direct.sigma, rtol=1e-10)
            assert st.k_star == direct.k_star
        assert np.isnan(series[0][1].turning) and np.isfinite(series[1][1].turning)


def test_the_old_rule_keyword_still_works_with_a_deprecation_warning():
    G = sp.gram(np.random.default_rng(0).standard_normal((5, 12)))
    with pytest.warns(DeprecationWarning, match="'rule' is now called 'kstar_rule'"):
        old = sp.window_stats(G, rule="argmax")
    assert old.k_star == sp.window_stats(G, kstar_rule="argmax").k_star and old.k_star_rule == "argmax"
    with pytest.raises(TypeError, match="got both"):
        sp.window_stats(G, rule="argmax", kstar_rule="floor")
