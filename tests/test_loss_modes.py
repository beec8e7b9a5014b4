"""The spectral loss decomposition of a finished run (analysis.loss_modes) against a direct
computation: the window's modes and Davis–Kahan weights from numpy, and the first-order
prediction against the measured per-mode change on a real (tiny) run."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_edge.analysis.loss_modes import run_loss_decomposition
from spectral_edge.analysis.modes import read_snapshots
from spectral_edge.errors import ConfigError
from spectral_edge.experiments import RunConfig, run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("lm") / "run"
    cfg = RunConfig(op="add", modulus=13, steps=150, eval_every=50, every=10, windows=(5,), batch_size=64, lr=3e-3,
                    model={"d_model": 32, "d_ff": 64, "n_heads": 2}, snapshots=14, alarm=False, threads=1)
    run_experiment(cfg, out)
    return out


def test_modes_and_weights_match_numpy(tiny_run):
    W = 5
    r = run_loss_decomposition(tiny_run, window=W)
    snaps = read_snapshots(tiny_run / "snapshots.safetensors")
    D = np.diff(snaps.values[-(W + 2):].astype(np.float64), axis=0)
    s = np.linalg.svd(D[1:], compute_uv=False)
    np.testing.assert_allclose(r.sigma, s[: len(r.sigma)], rtol=1e-9)
    # ‖ΔG‖_F of the operator Σδδᵀ between the two windows: it differs by δ_new δ_newᵀ − δ_old δ_oldᵀ,
    # a rank-2 matrix whose norm is read in an orthonormal basis of span(δ_old, δ_new)
    Q, _ = np.linalg.qr(np.stack([D[0], D[-1]], axis=1))
    a, b = Q.T @ D[-1], Q.T @ D[0]
    assert r.delta_norm == pytest.approx(np.linalg.norm(np.outer(a, a) - np.outer(b, b)), rel=1e-9)
    lam = s ** 2
    gaps = np.minimum(np.r_[np.inf, lam[:-1]] - lam, lam - np.r_[lam[1:], 0.0])
    np.testing.assert_allclose(r.alpha, np.maximum(0, 1 - r.delta_norm ** 2 / gaps ** 2)[: len(r.alpha)], atol=1e-9)
    assert r.steps == (snaps.steps[-W - 1], snaps.steps[-1]) and r.val_split == "test"


def test_the_first_order_term_predicts_each_mode_and_alpha_weights_it(tiny_run):
    r = run_loss_decomposition(tiny_run, window=5)
    meas, raw = np.array(r.measured), np.array(r.predicted_raw)
    big = np.abs(meas) > 1e-12
    assert big.any()
    assert np.median(np.abs(raw[big] - meas[big]) / np.abs(meas[big])) < 0.05  # Taylor, one step
    np.testing.assert_allclose(r.predicted, np.array(r.alpha) * raw, rtol=1e-12, atol=1e-300)
    again = run_loss_decomposition(tiny_run, window=5)
    assert again == r  # deterministic: fixed batch from the seed, the run's files untouched


def test_too_few_snapshots_is_one_clear_error(tiny_run):
    with pytest.raises(ConfigError, match="snapshots; the decomposition needs W \\+ 2 = 22"):
        run_loss_decomposition(tiny_run, window=20)
