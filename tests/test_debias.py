"""Debiasing sketched window spectra: a fixed point of the Gaussian-sketch spectrum map."""

from __future__ import annotations

import numpy as np

from spectral_edge.functional.debias import debias_eigenvalues, expected_sketched_eigenvalues
from spectral_edge.synthetic import planted_window


def test_debiased_eigenvalues_reproduce_the_observed_ones_under_the_model():
    lam_true = np.array([900.0, 324.0, 25.0, 23.0, 21.0, 19.0, 18.0, 17.0])
    d = 80
    Z = np.random.default_rng(5).standard_normal((300, lam_true.size, d)) / np.sqrt(d)
    observed = expected_sketched_eigenvalues(lam_true, d, Z)  # exact expectation under the model
    assert observed[2] > lam_true[2] * 1.1  # the projection spreads the flat bulk upwards…
    est = debias_eigenvalues(observed, d, n_draws=300, seed=5)
    np.testing.assert_allclose(est, lam_true, rtol=2e-2)  # …and debiasing takes it back (to MC accuracy)


def test_debiasing_reduces_the_gap_ratio_error_of_gaussian_sketches():
    sig = np.array([30.0, 18.0] + list(np.linspace(5.0, 4.2, 8)))
    R = sig[1] / sig[2]
    g = np.random.default_rng(0)
    raw, deb = [], []
    for trial in range(25):
        X = planted_window(sig, 3000, seed=trial)
        S = g.standard_normal((100, 3000)) / 10.0
        Y = X @ S.T
        lam = np.linalg.eigvalsh(Y @ Y.T)[::-1]
        raw.append(abs(np.sqrt(lam[1] / lam[2]) / R - 1))
        lb = debias_eigenvalues(lam, 100)
        deb.append(abs(np.sqrt(lb[1] / lb[2]) / R - 1))
    assert np.median(deb) < 0.75 * np.median(raw)


def test_debias_edge_cases():
    assert np.array_equal(debias_eigenvalues(np.zeros(4), 10), np.zeros(4))
    out = debias_eigenvalues(np.array([5.0, 1.0, 0.0]), 30)
    assert out[2] == 0.0 and out[0] > out[1] > 0
