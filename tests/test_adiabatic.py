"""The adiabatic parameter A (issue 17 part 2): its normalisation (invariant under a change of
learning-rate units with the parameter path held fixed, and under a rescaling of the
parameters), a brute-force numpy check on planted Gram sequences, the CLI's bad cut-offs, and a
fast version of the regime measurement of ``benchmarks/adiabatic_regimes.py`` on one tiny run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from badinput import Case, check

from spectral_edge.analysis.thesis import adiabatic, adiabatic_regime, gram_thesis, run_thesis, window_thesis
from spectral_edge.errors import ConfigError
from spectral_edge.functional import spectrum as sp
from spectral_edge.io.history import HistoryWriter
from spectral_edge.stream.window import SketchWindow


def _planted(seed: int, T: int = 12, dim: int = 30, W: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Raw updates δ (T, dim) with two strong directions (one slowly turning) plus noise, and a
    learning-rate schedule η (T,) (a warm-up then a step down)."""
    g = np.random.default_rng(seed)
    a, b = g.standard_normal(dim), g.standard_normal(dim)
    c = g.standard_normal(dim)
    t = np.arange(T)[:, None]
    eta = np.where(np.arange(T) < T // 2, 1e-3 * (1 + np.arange(T)) / (T // 2), 5e-4)
    u = (6.0 * (a + 0.05 * t * c) * g.choice([-1, 1], (T, 1)) + 4.0 * b * g.choice([-1, 1], (T, 1))
         + 0.3 * g.standard_normal((T, dim)))
    return u * eta[:, None], eta  # δ = η·u


# ---------------------------------------------------------------------- brute force
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gram_thesis_against_brute_force_numpy(seed):
    D, eta = _planted(seed)
    W = 5
    P = D @ D.T
    for t in range(W, D.shape[0]):
        U = D[t - W: t + 1] / eta[t - W: t + 1, None]  # per-unit-learning-rate updates u = δ/η
        cur, prev = U[1:], U[:-1]
        dG = np.linalg.norm(cur.T @ cur - prev.T @ prev)  # the window operators Σ uuᵀ, dim × dim
        sig = np.sqrt(np.clip(np.linalg.eigvalsh(cur @ cur.T)[::-1], 0, None))
        k = int(np.argmax(sig[:-1] / sig[1:])) + 1
        A = dG / (sig[k - 1] - sig[k]) ** 2
        th = gram_thesis(P[t - W: t + 1, t - W: t + 1], eta[t - W: t + 1], kstar_rule="argmax")
        assert th.k_star == k
        assert th.delta_g == pytest.approx(dG, rel=1e-9)
        assert th.gap == pytest.approx(sig[k - 1] - sig[k], rel=1e-9)
        assert th.A == pytest.approx(A, rel=1e-9)
        assert float(adiabatic(dG, sig[k - 1] - sig[k])) == pytest.approx(A, rel=1e-12)


def test_adiabatic_closed_form_edge_cases():
    np.testing.assert_allclose(adiabatic([2e-6, 1e-6, 0.0], [0.1, 0.01, 0.01]), [2e-4, 1e-2, 0.0])
    assert np.isinf(adiabatic(1.0, 0.0)) and np.isnan(adiabatic(0.0, 0.0))
    assert np.isnan(adiabatic(np.nan, 1.0)) and np.isnan(adiabatic(1.0, np.nan))
    with pytest.raises(TypeError):  # the old (delta, lr, gap) signature is refused, not misread
        adiabatic(1.0, 1e-3, 0.1)


# ---------------------------------------------------------------------- units
@pytest.mark.parametrize("c", [1e-3, 0.5, 30.0])
def test_A_is_invariant_when_eta_is_rescaled_with_the_path_fixed(c):
    """The same parameter path written as η·u and as (cη)·(u/c) (e.g. the loss divided by c):
    the raw updates δ, hence the path, are identical; A must not change."""
    D, eta = _planted(3)
    W = 5
    P = D @ D.T
    win = SketchWindow(dim=D.shape[1], max_window=W)
    for i, s in enumerate(np.vstack([np.zeros(D.shape[1]), np.cumsum(D, axis=0)])):
        win.push(torch.from_numpy(s), step=i)
    for t in range(W, D.shape[0]):
        sl = slice(t - W, t + 1)
        a, b = gram_thesis(P[sl, sl], eta[sl]), gram_thesis(P[sl, sl], c * eta[sl])
        assert b.A == pytest.approx(a.A, rel=1e-9) and math.isfinite(a.A) and a.A > 0
        np.testing.assert_allclose(b.alpha, a.alpha, rtol=1e-9, atol=1e-12)
    # a constant η: A does not depend on it at all, and needs none
    sl = slice(-(W + 1), None)
    const = [gram_thesis(P[sl, sl], e).A for e in (None, 1e-4, 1.0, 7.0)]
    np.testing.assert_allclose(const, const[0], rtol=1e-9)
    assert window_thesis(win, W, 3e-3).A == pytest.approx(const[0], rel=1e-9)


@pytest.mark.parametrize("s", [1e-2, 10.0])
def test_A_is_invariant_under_a_rescaling_of_the_parameters(s):
    """θ → sθ with η → s²η is the same gradient descent in other units: δ → sδ; A unchanged."""
    D, eta = _planted(4)
    W = 5
    sl = slice(-(W + 1), None)
    a = gram_thesis((D @ D.T)[sl, sl], eta[sl])
    Ds = s * D
    b = gram_thesis((Ds @ Ds.T)[sl, sl], s * s * eta[sl])
    assert b.A == pytest.approx(a.A, rel=1e-9)


def _history(path, sigmas, steps, lrs):
    rows = [{"kind": "sed", "step": st, "group": "all", **sp.window_stats(np.diag(np.square(s))).as_row()}
            for st, s in zip(steps, sigmas)]
    rows += [{"kind": "log", "step": st, "lr": lr} for st, lr in zip(steps, lrs)]
    with HistoryWriter(path, {"n_parameters": 1000}, fsync=False) as w:
        w.write(rows)
    return path


def test_run_thesis_A_uses_per_unit_lr_spectra_and_is_invariant(tmp_path):
    eta = np.array([1e-3, 2e-3, 2e-3, 1e-3, 1e-3])
    u = np.array([[4.0, 2.0, 1.0, 0.9], [4.2, 1.9, 1.0, 0.9], [4.4, 1.5, 1.1, 0.8], [3.0, 2.5, 1.0, 0.9],
                  [3.1, 2.4, 1.0, 0.9]])  # σ of the per-unit-lr updates
    steps = [100, 200, 300, 400, 500]
    rep = run_thesis(_history(tmp_path / "a.jsonl", u * eta[:, None], steps, eta))
    rep_c = run_thesis(_history(tmp_path / "b.jsonl", u * eta[:, None], steps, 40 * eta))
    for i in range(1, 5):
        lam_p, lam_c = u[i - 1] ** 2, u[i] ** 2
        k = sp.window_stats(np.diag(lam_c)).k_star
        A = np.linalg.norm(lam_c - lam_p) / (u[i][k - 1] - u[i][k]) ** 2
        assert rep.rows[i]["A"] == pytest.approx(A, rel=1e-9)
        assert rep_c.rows[i]["A"] == pytest.approx(A, rel=1e-9)
        assert "regime" not in rep.rows[i]
    assert np.isnan(rep.rows[0]["A"])
    assert rep.to_dict()["A_median"] == pytest.approx(np.median([r["A"] for r in rep.rows[1:]]))
    assert rep.regime_counts == {} and rep.to_dict()["regimes"] is None


# ---------------------------------------------------------------------- labels: only with explicit cut-offs
def test_regime_labels_need_explicit_cut_offs(tmp_path):
    with pytest.raises(TypeError):
        adiabatic_regime([1.0])  # no default cut-offs
    assert list(adiabatic_regime([0.5, 1.0, 2.0, np.nan], 0.7, 1.5)) == ["plateau", "transition", "forgetting",
                                                                         "unknown"]
    with pytest.raises(ConfigError):
        adiabatic_regime([1.0], 2.0, 1.0)
    D, eta = _planted(5)
    sl = slice(-6, None)
    th = gram_thesis((D @ D.T)[sl, sl], eta[sl])
    assert th.regime is None
    assert gram_thesis((D @ D.T)[sl, sl], eta[sl], low=th.A / 2, high=th.A * 2).regime == "transition"
    with pytest.raises(ConfigError, match="both"):
        gram_thesis((D @ D.T)[sl, sl], eta[sl], low=0.1)
    path = _history(tmp_path / "h.jsonl", [[4.0, 2.0, 1.0], [4.1, 2.0, 1.0], [4.0, 1.0, 0.9]], [10, 20, 30],
                    [1e-3] * 3)
    rep = run_thesis(path, low=1e-3, high=1e3)
    assert [r["regime"] for r in rep.rows] == ["unknown", "transition", "transition"]
    assert rep.regime_counts == {"transition": 2, "unknown": 1}
    with pytest.raises(ConfigError, match="--high"):
        run_thesis(path, low=0.1)


def _thesis_history(d):
    return _history(d / "h.jsonl", [[4.0, 2.0, 1.0], [4.1, 2.0, 1.0], [4.0, 1.0, 0.9]], [10, 20, 30], [1e-3] * 3)


CASES = [
    Case("thesis-low-without-high", make=lambda d: ["thesis", str(_thesis_history(d)), "--low", "0.1"],
         expect=["--low", "--high"]),
    Case("thesis-low-above-high", make=lambda d: ["thesis", str(_thesis_history(d)), "--low", "5", "--high", "1"],
         expect=["cut-offs", "low=5", "high=1"]),
    Case("thesis-negative-low", make=lambda d: ["thesis", str(_thesis_history(d)), "--low", "-1", "--high", "1"],
         expect=["cut-offs", "low=-1"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path):
    check(case, tmp_path)


def test_cli_reports_A_without_labels_by_default(tmp_path):
    from badinput import run

    path = _thesis_history(tmp_path)
    res = run(["thesis", str(path), "--json"])
    assert res.exit_code == 0, res.output
    import json

    doc = json.loads(res.stdout)
    r = doc["results"][0]
    assert r["regimes"] is None and r["A_low"] is None and math.isfinite(r["A_median"])
    res = run(["thesis", str(path)])
    assert res.exit_code == 0 and "plateau" not in res.output and "forgetting" not in res.output
    res = run(["thesis", str(path), "--low", "1e-3", "--high", "1e3", "--json"])
    assert json.loads(res.stdout)["results"][0]["regimes"] == {"transition": 2, "unknown": 1}


# ---------------------------------------------------------------------- the regimes on one tiny real run
def test_regimes_on_a_tiny_grokking_run_with_an_lr_spike():
    """Fast version of benchmarks/adiabatic_regimes.py (seed 42, W = 3, ~5 s): asserts only what is
    robust there: A finite and > 0 in every window, the spike collapses test accuracy, and the
    spike's A lies *below* the memorisation plateau's (the direction the data shows; the thesis
    would have it above)."""
    import importlib.util
    import pathlib

    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location(
        "adiabatic_regimes", pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "adiabatic_regimes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.measure(seed=42, window=3)
    A = {k: np.array(v) for k, v in res["A"].items()}
    assert res["grok_step"] is not None and res["collapsed"]
    for name in ("plateau", "transition", "forgetting"):
        assert A[name].size >= 3, name
        assert np.all(np.isfinite(A[name])) and np.all(A[name] > 0), name
    assert np.all([np.isfinite(r["A"]) and r["A"] > 0 for r in res["rows"]])
    assert np.median(A["forgetting"]) < np.median(A["plateau"])
