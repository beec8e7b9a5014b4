"""Functional modes, the pure math: brute force on small p, planted profiles, dlog tables checked
by exponentiation, ridge R² against an explicit least-squares solve."""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest

from spectral_edge.errors import ConfigError
from spectral_edge.functional.modes import (
    Spectrum,
    basis_classes,
    class_profile,
    discrete_log_table,
    family_r2,
    feature_families,
    fourier_features,
    is_prime,
    power_spectrum,
    primitive_root,
    ridge_r2,
    spectra_of,
)


def _pairs(p, nonzero=False):
    r = np.arange(1 if nonzero else 0, p)
    a, b = np.meshgrid(r, r, indexing="ij")
    return a.ravel(), b.ravel()


# ---------------------------------------------------------------------- discrete log
@pytest.mark.parametrize("p, g", [(3, 2), (5, 2), (7, 3), (11, 2), (13, 2), (23, 5), (41, 6), (97, 5)])
def test_smallest_primitive_root(p, g):
    assert primitive_root(p) == g
    # brute force: g generates every nonzero residue, and no smaller number does
    assert sorted(pow(g, k, p) for k in range(p - 1)) == list(range(1, p))
    for h in range(2, g):
        assert len({pow(h, k, p) for k in range(p - 1)}) < p - 1


@pytest.mark.parametrize("p", [5, 13, 23, 97])
def test_discrete_log_table_by_exponentiation(p):
    g = primitive_root(p)
    t = discrete_log_table(p)
    assert t[0] == -1
    for x in range(1, p):
        assert 0 <= t[x] < p - 1 and pow(g, int(t[x]), p) == x
    # the log turns products into sums mod p − 1
    for x, y in [(2, 3), (p - 1, p - 1), (5 % p or 1, 7 % p or 1)]:
        assert t[x * y % p] == (t[x] + t[y]) % (p - 1)


def test_non_prime_and_non_root_are_refused():
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    with pytest.raises(ConfigError, match="not prime"):
        primitive_root(91)
    with pytest.raises(ConfigError, match="not a primitive root"):
        discrete_log_table(13, root=3)  # 3 has order 3 mod 13


# ---------------------------------------------------------------------- classes and profiles
@pytest.mark.parametrize("basis", ["add", "sub", "mul", "dlog"])
def test_basis_classes_brute_force(basis):
    p = 13
    a, b = _pairs(p)
    q, period, mask = basis_classes(basis, a, b, p)
    t = discrete_log_table(p)
    for i in range(len(a)):
        x, y = int(a[i]), int(b[i])
        if basis == "dlog":
            assert mask[i] == (x != 0 and y != 0)
            if mask[i]:
                assert q[i] == (t[x] + t[y]) % (p - 1) and pow(2, int(q[i]), p) == x * y % p
        else:
            want = {"add": x + y, "sub": x - y, "mul": x * y}[basis] % p
            assert q[i] == want and mask[i]
    assert period == (p - 1 if basis == "dlog" else p)


def test_class_profile_brute_force_and_empty_classes():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 7, size=200)
    q[q == 3] = 4  # class 3 empty
    v = rng.standard_normal(200)
    prof, counts = class_profile(v, q, 7)
    means = [v[q == c].mean() for c in range(7) if c != 3]
    for c in range(7):
        assert counts[c] == (q == c).sum()
        want = v[q == c].mean() if c != 3 else np.mean(means)
        assert prof[c] == pytest.approx(want, rel=1e-12)
    # rows of a (K, N) matrix are folded independently
    V = np.stack([v, 2 * v + 1])
    prof2, _ = class_profile(V, q, 7)
    assert np.allclose(prof2[0], prof) and np.allclose(prof2[1], 2 * prof + 1)
    with pytest.raises(ConfigError):
        class_profile(v, q, 4)  # classes outside the period


# ---------------------------------------------------------------------- spectra
@pytest.mark.parametrize("period", [13, 12, 97, 96])
def test_power_spectrum_brute_force(period):
    x = np.random.default_rng(period).standard_normal(period)
    shares = power_spectrum(x)
    n = period // 2
    brute = [abs(sum(x[q] * cmath.exp(-2j * math.pi * w * q / period) for q in range(period))) ** 2
             for w in range(1, n + 1)]
    assert shares.shape == (n,)
    assert np.allclose(shares, np.array(brute) / sum(brute), rtol=1e-10)
    assert shares.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("p, omega", [(13, 1), (13, 4), (97, 26), (23, 11)])
def test_planted_cosine_gives_F_one_at_its_frequency(p, omega):
    a, b = _pairs(p)
    f = 3.0 + np.cos(2 * np.pi * omega * (a + b) / p + 0.7)  # a pure mode in the add basis
    q, period, _ = basis_classes("add", a, b, p)
    s = spectra_of(f, q, period)[0]
    assert s.omega == omega and s.F == pytest.approx(1.0, abs=1e-12)
    assert s.ratio_to_uniform == pytest.approx(p // 2) and s.modes == pytest.approx(1.0)
    # the same response is spread out in the sub basis (no single mode)
    qs, _, _ = basis_classes("sub", a, b, p)
    assert spectra_of(f, qs, p)[0].F < 0.99 or np.isnan(spectra_of(f, qs, p)[0].F)


def test_planted_dlog_mode_is_concentrated_in_dlog_not_mul():
    p, omega = 23, 3
    a, b = _pairs(p, nonzero=True)
    qd, period, mask = basis_classes("dlog", a, b, p)
    assert mask.all() and period == 22
    f = np.cos(2 * np.pi * omega * qd / 22)
    sd = spectra_of(f, qd, 22)[0]
    assert sd.omega == omega and sd.F == pytest.approx(1.0)
    qm, _, _ = basis_classes("mul", a, b, p)
    sm = spectra_of(f, qm, p)[0]
    assert sm.F < 0.5  # the raw product basis spreads a dlog mode


def test_two_modes_and_white_noise():
    p = 97
    x = np.arange(p)
    s = Spectrum(p, power_spectrum(np.cos(2 * np.pi * 5 * x / p) + 0.5 * np.sin(2 * np.pi * 9 * x / p)))
    assert s.omega == 5 and s.F == pytest.approx(1 / 1.25) and s.share_at(9) == pytest.approx(0.25 / 1.25)
    assert s.modes == pytest.approx(1 / (0.8 ** 2 + 0.2 ** 2))
    noise = Spectrum(p, power_spectrum(np.random.default_rng(1).standard_normal(p)))
    assert noise.uniform == pytest.approx(1 / 48) and noise.F < 0.2
    flat = Spectrum(p, power_spectrum(np.full(p, 2.0)))
    assert flat.omega is None and math.isnan(flat.F)
    with pytest.raises(ConfigError):
        s.share_at(49)


# ---------------------------------------------------------------------- feature families and ridge
def test_feature_families_shapes_and_values():
    p = 97
    a, b = _pairs(p, nonzero=True)
    fam = feature_families(a, b, p)
    assert {k: v.shape[1] for k, v in fam.items()} == {"add": 96, "dlog": 96, "combined": 192, "cross": 400,
                                                        "full": 592}
    t = discrete_log_table(p)
    i = 1234
    x, y = int(a[i]), int(b[i])
    assert fam["add"][i, 2 * 4] == pytest.approx(math.cos(2 * math.pi * 5 * (x + y) / p))  # ω = 5, cosine
    assert fam["dlog"][i, 2 * 2 + 1] == pytest.approx(math.sin(2 * math.pi * 3 * (t[x] + t[y]) / 96))  # ω = 3, sine
    assert fam["cross"][i, 3 * 20 + 7] == pytest.approx(fam["add"][i, 3] * fam["dlog"][i, 7])
    assert np.array_equal(fam["full"], np.hstack([fam["add"], fam["dlog"], fam["cross"]]))
    with pytest.raises(ConfigError, match="discrete log"):
        feature_families(*_pairs(13), 13)  # pairs with a zero


def test_ridge_r2_matches_an_explicit_solve():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 12))
    y = X @ rng.standard_normal(12) + 0.5 * rng.standard_normal(300) + 4.0
    for alpha in (0.0, 1.0, 50.0):
        # augmented least squares on centred data = ridge with an unpenalised intercept
        Xc, yc = X - X.mean(0), y - y.mean()
        A = np.vstack([Xc, math.sqrt(alpha) * np.eye(12)])
        w = np.linalg.lstsq(A, np.concatenate([yc, np.zeros(12)]), rcond=None)[0]
        want = 1 - ((yc - Xc @ w) ** 2).sum() / (yc ** 2).sum()
        assert ridge_r2(X, y, alpha) == pytest.approx(want, rel=1e-10)
    # scale of y does not matter; several columns at once; a perfect fit gives 1
    Y = np.stack([y, 1e-9 * y, X[:, 0] * 2 + 1], axis=1)
    r = ridge_r2(X, Y, 0.0)
    assert r[0] == pytest.approx(r[1]) and r[2] == pytest.approx(1.0)
    assert math.isnan(ridge_r2(X, np.ones(300)))


def test_cross_terms_explain_a_planted_product():
    # a response that is a product of an additive and a dlog mode: only the cross family explains it
    p = 23
    a, b = _pairs(p, nonzero=True)
    qa, _, _ = basis_classes("add", a, b, p)
    qd, _, _ = basis_classes("dlog", a, b, p)
    f = np.cos(2 * np.pi * 2 * qa / p) * np.sin(2 * np.pi * 3 * qd / (p - 1))
    r2 = family_r2(np.stack([f, np.cos(2 * np.pi * 2 * qa / p)]), a, b, p, n_cross=5)
    assert r2["cross"][0] > 0.99 and r2["full"][0] > 0.99
    assert r2["add"][0] < 0.2 and r2["dlog"][0] < 0.2 and r2["combined"][0] < 0.3
    assert r2["add"][1] > 0.99  # a pure additive mode is explained by the additive family


def test_fourier_features_order():
    F = fourier_features(np.array([0, 1, 2]), 8, [1, 2])
    assert F.shape == (3, 4)
    assert np.allclose(F[1], [math.cos(2 * math.pi / 8), math.sin(2 * math.pi / 8),
                              math.cos(4 * math.pi / 8), math.sin(4 * math.pi / 8)])
