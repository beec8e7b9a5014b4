"""The JL accuracy measurement: the exact law of the dense Gaussian sketch, and error rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectral_edge.analysis.jl import EXACT_LAW, exact_law_sketch, jl_errors


def test_exact_law_has_the_moments_of_a_dense_gaussian_sketch():
    g = np.random.default_rng(0)
    X = g.standard_normal((4, 50)) * np.array([[3.0], [2.0], [1.0], [0.5]])
    G = X @ X.T
    d = 25
    draws = np.stack([exact_law_sketch(G, d, np.random.default_rng(i)) for i in range(4000)])
    # E[Ĝ] = G and Var(Ĝ_ij) = (G_ii G_jj + G_ij²)/d, as for Y = X Sᵀ with S ~ N(0, 1/d)
    np.testing.assert_allclose(draws.mean(0), G, atol=0.1 * np.abs(G).max())
    var_theory = (np.outer(np.diag(G), np.diag(G)) + G**2) / d
    np.testing.assert_allclose(draws.var(0), var_theory, rtol=0.12)
    # and a real dense Gaussian sketch has the same variance
    real = []
    for i in range(400):
        S = np.random.default_rng(10_000 + i).standard_normal((d, 50)) / np.sqrt(d)
        Y = X @ S.T
        real.append(Y @ Y.T)
    np.testing.assert_allclose(np.var(real, axis=0)[0, 1], var_theory[0, 1], rtol=0.25)


def test_jl_error_rows_and_the_law_matches_the_real_family():
    g = torch.Generator().manual_seed(1)
    direction = torch.randn(30, 20, generator=g)
    states = [{"w": torch.zeros(30, 20), "b": torch.zeros(20)}]
    for t in range(16):
        prev = states[-1]
        states.append({"w": prev["w"] + (2 + np.sin(t)) * direction + 0.3 * torch.randn(30, 20, generator=g),
                       "b": prev["b"] + 0.3 * torch.randn(20, generator=g)})
    rows = jl_errors("toy", states, [20], window=5, families=(EXACT_LAW, "gaussian"), seeds=40, debias=False)
    assert [r["family"] for r in rows] == [EXACT_LAW, "gaussian"]
    for r in rows:
        assert r["windows"] == 16 - 5 + 1 and r["P"] == 620 and 0 <= r["kstar_agreement"] <= 1
        assert 0 < r["R_median_pct"] <= r["R_p95_pct"]
    law, real = rows
    gap = abs(law["seed_median_mean_pct"] - real["seed_median_mean_pct"])
    assert gap < 3 * np.hypot(law["seed_median_se_pct"], real["seed_median_se_pct"]) + 0.5
