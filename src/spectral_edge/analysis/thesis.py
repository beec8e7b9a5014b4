"""Spectral Edge Thesis quantities (METHODS.md §5), with every definition made explicit.

**ΔG between consecutive windows.** The W×W Gram matrices of two consecutive windows are
indexed by *different* updates (window t holds δ_{t−W+1…t}, window t−1 holds δ_{t−W…t−1}), so
their entrywise difference compares unrelated numbers and is not used. Instead ΔG is the
change of the window operator in parameter space, ``C_t = Σ_{i∈window t} δ_i δ_iᵀ = Δ_tᵀΔ_t``,
whose non-zero eigenvalues are exactly the λ_j of the Gram matrix ``G_t = Δ_tΔ_tᵀ`` and whose
eigenvectors are the modes v_j. The W−1 updates the windows share cancel exactly, so

    ‖ΔG‖_F = ‖C_t − C_{t−1}‖_F = sqrt(‖δ_t‖⁴ + ‖δ_{t−W}‖⁴ − 2⟨δ_t, δ_{t−W}⟩²)

(the entering and the leaving update; from the (W+1)×(W+1) Gram of δ_{t−W…t}). For windows
k samples apart, ``‖ΔG‖_F² = ‖G_in‖_F² + ‖G_out‖_F² − 2‖G_in,out‖_F²`` with the k×k Grams of
the entering and leaving updates and their cross-Gram (:func:`operator_change`).

**From a history** only σ's are stored, so ‖ΔG‖_F is replaced by the eigenvalue change
``‖λ(t) − λ(t−1)‖_2`` (the approximation the sources use). By the Hoffman–Wielandt
inequality it is a *lower bound* of the exact ‖ΔG‖_F, so α computed from it is optimistic
and A is underestimated. Results say which one they used (``delta_g_method``).

**Davis–Kahan stability** of mode j: ``α_j = max(0, 1 − ‖ΔG‖_F²/gap_j²)`` with
``gap_j = min(λ_{j−1} − λ_j, λ_j − λ_{j+1})`` in the eigenvalues λ = σ² of the current window
(λ_0 = +∞; beyond the window the operator has eigenvalue 0, so λ_{W+1} = 0 when
``include_zero``); gap_j = 0 gives α_j = 0.

**Adiabatic parameter** (issue 17). The thesis defines ``A = ‖ΔG‖_F/(η·g²)`` with A ≪ 1
plateau, A ~ 1 transition, A ≫ 1 forgetting, and fixes nothing else. Choices, and why:

- *G is the Gram of the per-unit-learning-rate updates* ``u_i = δ_i/η_i`` (η_i the learning
  rate in force at update i; for SGD u is minus the minibatch gradient, for Adam the
  preconditioned step). Then a schedule (warm-up, decay, a spike) that rescales the steps
  without turning them does not register as a change of the operator: only what u does
  counts. With a constant η, G_u = G_δ/η² and nothing below depends on the choice.
- *ΔG* is the exact change of the window operator Σ_{i∈window} u_i u_iᵀ between the two
  consecutive windows (one sample apart; see above), g = σ_{k*} − σ_{k*+1} the singular-value
  gap of the same G at the edge (so g² has the units of G; this is the row's ``gap`` divided by
  η), and A is reported per *sample interval* (``every`` optimizer steps; a history's rows).
- *Where η goes.* Write τ = Σ η (gradient-flow time: the path θ(τ) does not depend on how a
  step is split into η and u). One sample interval advances τ by Δτ = η·Δt and changes G_u by
  ΔG = (dG_u/dτ)·Δτ, so the thesis' ``‖ΔG‖/(η g²)`` with ΔG per step is ``‖dG_u/dτ‖/g_u²``: a
  rate per unit of τ, which carries the units of 1/η. It is *not* dimensionless: with the path
  held fixed and η → cη (the loss divided by c, u → u/c) it changes to A/c — exactly the
  ``A ∝ 1/η`` of the earlier implementation (a clean grokking run had A ≈ 400–10⁴ at
  η = 10⁻³, "forgetting" in 29 of 30 windows). The dimensionless adiabatic ratio is that rate
  times the time step the discrete dynamics actually takes, Δτ = ηΔt:

      A = ‖dG_u/dτ‖_F·Δτ / g_u² = ‖ΔG_u‖_F / g_u²  (= ‖ΔG_δ‖_F / g_δ² when η is constant),

  i.e. the thesis' formula with η measured in units of the step taken. It is unchanged when
  η is rescaled with the path fixed, and when the parameters are rescaled (θ → sθ with
  η → s²η, δ → sδ); tests/test_adiabatic.py checks both and a brute-force numpy version.
- *Meaning.* The Davis–Kahan bound on the rotation of the edge subspace between consecutive
  windows is ``sin∠ ≤ ‖ΔG‖/gap_λ`` with the eigenvalue gap gap_λ = g·(σ_{k*} + σ_{k*+1}) ≥ g²,
  so A ≥ that bound: A ≪ 1 guarantees that the edge subspace is carried along (adiabatic),
  A ≳ 1 gives no guarantee. This is the only scale A has; no cut-off is derived from it.

**Measured** (benchmarks/adiabatic_regimes.py; modular addition p = 13, the TINY transformer,
AdamW η = 5·10⁻³, wd = 1, batch 32, every = 10 steps, exact sketch, seeds 42–44, of which 42 and
44 grok (steps 460, 2380) and 43 not within 3000; regions fixed before looking at A): median
[25 %–75 %] (n windows), W = 3 | W = 5:

- plateau (memorised, not generalised):  118 [63–216] (192)  |  143 [70–310] (188)
- grokking transition (grok ± 60 steps): 67 [39–144] (26)    |  50 [41–68] (26)
- after grokking, before the spike:      25 [17–103] (8)     |  26 [18–32] (8)
- forgetting (η × 30 for 300 steps after grokking; test accuracy falls to ≤ 0.03):
                                         5.4 [2.0–11] (60)   |  3.7 [2.2–10] (60)
  (the same with wd ÷ 30 during the spike: 5.3 | 4.0, indistinguishable)
- plateau without weight decay (never groks): 2.0 [0.9–3.5] (616) | 1.6 [0.7–2.7] (610)

The ranges overlap for every pair (each regime spans ~0.2–10³ or more: g² in the denominator
makes A heavy-tailed). Ranked, the order is the *reverse* of the thesis' (A ≪ 1 plateau,
A ≫ 1 forgetting): P(A_plateau > A_forgetting) = 0.96 | 0.99, P(A_transition > A_forgetting)
= 0.94 | 0.96, P(A_plateau > A_transition) = 0.64 | 0.79; and the two plateaus (wd = 1 and
wd = 0) differ by ~60× (AUC 0.99 | 0.98), more than any two of the thesis' regimes. No value
of A separates the three regimes, let alone at 0.1 / 1 / 10. **So the labels are not reported
by default**: :func:`adiabatic_regime` labels A only from cut-offs the caller gives;
``gram_thesis`` and ``run_thesis`` (and the CLI's ``--low/--high``) add labels only when both
are given. (Small runs, two grokking seeds, one task: a statement about these runs.)

**Gap dynamics**: midpoint finite differences ``ġ_{i+½} = (g_{i+1} − g_i)/(t_{i+1} − t_i)``
(per optimizer step) against ``ḡ_{i+½} = (g_i + g_{i+1})/2``, least-squares line
``ġ = a + b·ḡ`` with R².

**BBP threshold** at the current aspect ratio: ``σ_noise`` from
:func:`~spectral_edge.functional.spectrum.noise_floor`, per-entry noise variance
``ν² = σ_noise²/P``, ``d_crit = ν·(P(W−1))^{1/4}``; a mode's signal strength is estimated as
``s_j = sqrt(max(λ_j − σ_noise², 0))`` and counted detectable when ``s_j > d_crit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._compat import renamed_kwargs
from ..errors import ConfigError
from ..functional import spectrum as sp

REGIMES: tuple[str, ...] = ("plateau", "transition", "forgetting", "unknown")
DELTA_G_EXACT = "operator (exact)"
DELTA_G_APPROX = "eigenvalue change (lower bound)"


# ---------------------------------------------------------------------- ΔG
def operator_change(G_in: Any, G_out: Any, G_cross: Any) -> float:
    """``‖Σ_in δδᵀ − Σ_out δδᵀ‖_F = sqrt(‖G_in‖_F² + ‖G_out‖_F² − 2‖G_cross‖_F²)``; G_in (k,k), G_out (k,k), G_cross = ⟨in, out⟩ (k,k)."""
    a = np.atleast_2d(np.asarray(G_in, dtype=np.float64))
    b = np.atleast_2d(np.asarray(G_out, dtype=np.float64))
    c = np.atleast_2d(np.asarray(G_cross, dtype=np.float64))
    if a.shape[0] != a.shape[1] or b.shape[0] != b.shape[1] or c.shape != (a.shape[0], b.shape[0]):
        raise ConfigError(f"operator_change needs square G_in, G_out and a matching cross Gram, got "
                          f"{a.shape}, {b.shape}, {c.shape}")
    sq = (a * a).sum() + (b * b).sum() - 2.0 * (c * c).sum()
    return float(np.sqrt(max(sq, 0.0)))


def consecutive_operator_change(G_union: Any) -> float:
    """``‖ΔG‖_F = sqrt(‖δ_t‖⁴ + ‖δ_{t−W}‖⁴ − 2⟨δ_t, δ_{t−W}⟩²)`` from the (W+1, W+1) Gram of δ_{t−W…t} (oldest first)."""
    U = np.asarray(G_union, dtype=np.float64)
    if U.ndim != 2 or U.shape[0] != U.shape[1] or U.shape[0] < 2:
        raise ConfigError(f"need the (W+1, W+1) Gram of two consecutive windows, got shape {U.shape}")
    a, b, c = U[-1, -1], U[0, 0], U[-1, 0]
    return float(np.sqrt(max(a * a + b * b - 2.0 * c * c, 0.0)))


def window_operator_changes(pairwise: Any, window: int) -> np.ndarray:
    """Exact ‖ΔG‖_F between the windows ending at t−1 and t, for t = W…T−1, from the (T, T) matrix of all update inner products."""
    P = np.asarray(pairwise, dtype=np.float64)
    W = int(window)
    T = P.shape[0]
    if P.ndim != 2 or P.shape[1] != T:
        raise ConfigError(f"pairwise must be a square (T, T) matrix, got {P.shape}")
    if W < 1 or T < W + 1:
        return np.empty(0)
    t = np.arange(W, T)
    a, b, c = P[t, t], P[t - W, t - W], P[t, t - W]
    return np.sqrt(np.maximum(a * a + b * b - 2.0 * c * c, 0.0))


def sketch_window_change(win: Any, W: int) -> float:
    """Exact ‖ΔG‖_F of the newest two windows of W updates held by a :class:`~spectral_edge.stream.window.SketchWindow`
    (the per-group windows of a ``TrajectoryAnalyzer`` are such objects); needs W + 1 updates."""
    return consecutive_operator_change(win.union_gram(W))


@dataclass(frozen=True, eq=False)
class WindowThesis:
    """Exact thesis quantities of the newest window (from Gram matrices, not σ's), all of the Gram
    of the per-unit-learning-rate updates u = δ/η (the raw updates' when no η is given)."""

    window: int
    k_star: int
    gap: float  # σ_{k*} − σ_{k*+1} of G_u
    delta_g: float  # exact ‖ΔG_u‖_F to the previous window
    lam: np.ndarray = field(repr=False)  # (W,) λ of the current window of G_u
    alpha: np.ndarray = field(repr=False)  # (W,) Davis–Kahan α_j
    A: float  # ‖ΔG_u‖_F / g²: dimensionless, per sample interval (module docs)
    regime: str | None = None  # only with caller-given cut-offs (low, high)
    delta_g_method: str = DELTA_G_EXACT


def unit_lr_gram(G: Any, lr: Any = None) -> np.ndarray:
    """The Gram of the per-unit-learning-rate updates ``u_i = δ_i/η_i``: ``G_ij/(η_i η_j)`` from the
    Gram of the raw updates; ``lr`` None (G unchanged), a constant η, or one η per update."""
    G = np.asarray(G, dtype=np.float64)
    if lr is None:
        return G
    eta = np.asarray(lr, dtype=np.float64)
    if eta.ndim == 0:
        eta = np.full(G.shape[0], float(eta))
    if eta.shape != (G.shape[0],):
        raise ConfigError(f"give one learning rate, or one per update ({G.shape[0]}), got shape {eta.shape}")
    if not np.all(np.isfinite(eta) & (eta > 0)):
        raise ConfigError(f"learning rates must be finite and > 0, got {eta.tolist()}")
    return G / np.outer(eta, eta)


def _check_cuts(low: float | None, high: float | None, flags: tuple[str, str] = ("low", "high")) -> bool:
    if (low is None) != (high is None):
        raise ConfigError(f"regime labels need both cut-offs: give {flags[0]} and {flags[1]}, or neither "
                          "(no default is supported)")
    return low is not None


@renamed_kwargs(rule="kstar_rule")
def gram_thesis(G_union: Any, lr: Any = None, kstar_rule: str = sp.DEFAULT_KSTAR_RULE, low: float | None = None,
                high: float | None = None, include_zero: bool = True) -> WindowThesis:
    """From the (W+1, W+1) Gram of the raw updates δ_{t−W…t} and their learning rates ``lr`` (a
    constant, one per update, or None): window t = the last W, on the Gram of u = δ/η: exact
    ‖ΔG‖_F, α_j, ``A = ‖ΔG‖_F/g²``; a regime label only when both cut-offs are given."""
    U = np.asarray(G_union, dtype=np.float64)
    if U.ndim != 2 or U.shape[0] != U.shape[1] or U.shape[0] < 3:
        raise ConfigError(f"need the (W+1, W+1) Gram of two consecutive windows (W ≥ 2), got shape {U.shape}")
    labels = _check_cuts(low, high)
    U = unit_lr_gram(U, lr)
    st = sp.window_stats(U[1:, 1:], kstar_rule)
    lam = st.sigma**2
    dg = consecutive_operator_change(U)
    A = float(adiabatic(dg, st.gap))
    return WindowThesis(st.window, st.k_star, st.gap, dg, lam, davis_kahan_alpha(dg, lam, include_zero), A,
                        str(adiabatic_regime(A, low, high)) if labels else None)


@renamed_kwargs(rule="kstar_rule")
def window_thesis(win: Any, W: int, lr: Any = None, kstar_rule: str = sp.DEFAULT_KSTAR_RULE,
                  low: float | None = None, high: float | None = None) -> WindowThesis:
    """:func:`gram_thesis` of the newest window of W updates held by a
    :class:`~spectral_edge.stream.window.SketchWindow` (e.g. ``analyzer.windows[group]``); ``lr``
    a constant or the W + 1 learning rates of δ_{t−W…t}."""
    return gram_thesis(win.union_gram(W), lr, kstar_rule, low, high)


def eigenvalue_change(lam_prev: Any, lam_cur: Any) -> float:
    """``‖λ(t) − λ(t−1)‖_2`` (both sorted descending, zero-padded): Hoffman–Wielandt lower bound of ‖ΔG‖_F."""
    a = np.sort(np.asarray(lam_prev, dtype=np.float64))[::-1]
    b = np.sort(np.asarray(lam_cur, dtype=np.float64))[::-1]
    n = max(a.size, b.size)
    a = np.pad(a, (0, n - a.size))
    b = np.pad(b, (0, n - b.size))
    return float(np.linalg.norm(b - a))


# ---------------------------------------------------------------------- Davis–Kahan
def eigen_gaps(lam: Any, include_zero: bool = True) -> np.ndarray:
    """``gap_j = min(λ_{j−1} − λ_j, λ_j − λ_{j+1})`` with λ_0 = +∞ and λ_{W+1} = 0 (``include_zero``) or +∞; (W,)."""
    lam = np.sort(np.asarray(lam, dtype=np.float64))[::-1]
    above = np.r_[np.inf, lam[:-1]] - lam
    below = lam - np.r_[lam[1:], 0.0 if include_zero else -np.inf]
    return np.minimum(above, below)


def davis_kahan_alpha(delta_norm: float, lam: Any, include_zero: bool = True) -> np.ndarray:
    """``α_j = max(0, 1 − ‖ΔG‖_F²/gap_j²)`` per mode j (0 where gap_j = 0); (W,)."""
    gaps = eigen_gaps(lam, include_zero)
    d2 = float(delta_norm) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(gaps > 0, np.maximum(0.0, 1.0 - d2 / np.where(gaps > 0, gaps, 1.0) ** 2), 0.0)
    return alpha if np.isfinite(d2) else np.full(gaps.shape, np.nan)


def half_window_overlap(G: Any, j: int = 1) -> float:
    """``|⟨v_j(first ⌊W/2⌋ updates), v_j(last ⌈W/2⌉ updates)⟩|`` from a window's (W, W) Gram (NaN if a half has σ_j = 0)."""
    G = np.asarray(G, dtype=np.float64)
    W = G.shape[0]
    h = W // 2
    if h < j or W - h < j:
        raise ConfigError(f"a window of {W} updates has halves too small for mode {j}")
    a, b = np.arange(h), np.arange(h, W)
    la, Ua = sp.eig_gram(G[np.ix_(a, a)])
    lb, Ub = sp.eig_gram(G[np.ix_(b, b)])
    if la[j - 1] <= 0 or lb[j - 1] <= 0:
        return float("nan")
    ca, cb = sp.top_coefficients(la, Ua, j), sp.top_coefficients(lb, Ub, j)
    return float(abs(ca @ G[np.ix_(a, b)] @ cb))


# ---------------------------------------------------------------------- adiabatic parameter
def adiabatic(delta_norm: Any, gap: Any) -> np.ndarray:
    """``A = ‖ΔG‖_F / g²`` elementwise, ΔG and g of the same (per-unit-lr) Gram, per sample interval
    (module docs: the thesis' ‖ΔG‖/(η g²) with η in units of the step taken); inf where
    g = 0 < ‖ΔG‖, NaN where an input is NaN or 0/0. (Until issue 17 this was
    ``adiabatic(delta_norm, lr, gap)`` = ‖ΔG‖/(η g²), which scaled as 1/η.)"""
    d = np.asarray(delta_norm, dtype=np.float64)
    den = np.asarray(gap, dtype=np.float64) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, d / np.where(den > 0, den, 1.0), np.where(d > 0, np.inf, np.nan))
    return np.where(np.isnan(den) | np.isnan(d), np.nan, out)


def adiabatic_regime(A: Any, low: float, high: float) -> np.ndarray:
    """``plateau`` if A < low, ``transition`` if low ≤ A ≤ high, ``forgetting`` if A > high, ``unknown``
    if NaN. The cut-offs are required: no default is supported by the sources or by our
    measurements (module docs), so a label is only as good as the caller's cut-offs."""
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ConfigError(f"regime cut-offs need 0 < low ≤ high, got low={low:g}, high={high:g}")
    a = np.asarray(A, dtype=np.float64)
    out = np.where(a < low, "plateau", np.where(a <= high, "transition", "forgetting")).astype(object)
    out[np.isnan(a)] = "unknown"
    return out


# ---------------------------------------------------------------------- gap dynamics
@dataclass(frozen=True, eq=False)
class GapDynamics:
    """Least-squares fit ``dg/dt = intercept + slope·g`` over midpoint finite differences."""

    slope: float
    intercept: float
    r2: float
    n: int
    t_mid: np.ndarray = field(repr=False)  # (n,) midpoint steps
    g_mid: np.ndarray = field(repr=False)  # (n,) ḡ
    dgdt: np.ndarray = field(repr=False)  # (n,) per optimizer step


def gap_dynamics(steps: Any, gap: Any) -> GapDynamics:
    """``ġ_{i+½} = Δg/Δt`` vs ``ḡ_{i+½}``, fitted by ``ġ = a + b·ḡ`` (least squares; R² = 1 − SS_res/SS_tot)."""
    t = np.asarray(steps, dtype=np.float64)
    g = np.asarray(gap, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(g)
    t, g = t[ok], g[ok]
    nan = float("nan")
    if t.size < 2:
        return GapDynamics(nan, nan, nan, 0, np.empty(0), np.empty(0), np.empty(0))
    dt = np.diff(t)
    if np.any(dt <= 0):
        raise ConfigError("gap_dynamics needs strictly increasing steps")
    dg = np.diff(g) / dt
    gm = 0.5 * (g[1:] + g[:-1])
    tm = 0.5 * (t[1:] + t[:-1])
    n = dg.size
    if n < 2 or np.ptp(gm) == 0:
        return GapDynamics(nan, float(dg.mean()), nan, n, tm, gm, dg)
    X = np.column_stack([np.ones(n), gm])
    (a, b), *_ = np.linalg.lstsq(X, dg, rcond=None)
    res = dg - (a + b * gm)
    ss_tot = float(((dg - dg.mean()) ** 2).sum())
    r2 = 1.0 - float(res @ res) / ss_tot if ss_tot > 0 else (1.0 if float(res @ res) == 0 else nan)
    return GapDynamics(float(b), float(a), r2, n, tm, gm, dg)


# ---------------------------------------------------------------------- BBP and gap maximality
@dataclass(frozen=True)
class BBP:
    """Noise floor and BBP detection threshold of one window (see module docs)."""

    n_parameters: int
    window: int
    noise_floor: float  # σ_noise
    nu: float  # per-entry noise standard deviation ν = σ_noise/√P
    d_crit: float  # ν·(P(W−1))^{1/4}
    d_crit_over_noise: float  # d_crit/σ_noise = ((W−1)/P)^{1/4}: ≪ 1 means the threshold is vacuous
    signal: tuple[float, ...]  # s_j = sqrt(max(λ_j − σ_noise², 0))
    n_detectable: int  # #{j : s_j > d_crit}


def bbp_threshold(sigma: Any, n_parameters: int) -> BBP:
    """``ν² = σ_noise²/P``, ``d_crit = ν·(P(W−1))^{1/4}``, detectable modes ``sqrt(λ_j − σ_noise²) > d_crit``; σ (W,)."""
    s = np.sort(np.asarray(sigma, dtype=np.float64))[::-1]
    W = s.size
    P = int(n_parameters)
    if P < 1:
        raise ConfigError(f"the number of parameters P must be ≥ 1, got {n_parameters}")
    if W < 2:
        raise ConfigError(f"a window needs at least 2 singular values, got {W}")
    noise = sp.noise_floor(s)
    nu = noise / np.sqrt(P)
    d_crit = nu * (P * (W - 1)) ** 0.25
    sig = np.sqrt(np.maximum(s**2 - noise**2, 0.0))
    ratio = d_crit / noise if noise > 0 else float("nan")
    return BBP(P, W, float(noise), float(nu), float(d_crit), float(ratio), tuple(float(x) for x in sig),
               int(np.sum(sig > d_crit)))


@dataclass(frozen=True)
class GapMaximality:
    """Is the ratio at k* the largest among the candidate (above-noise-floor) positions?"""

    k_star: int
    ratio: float  # r_{k*}
    runner_up: int | None  # the candidate j ≠ k* with the largest r_j
    runner_up_ratio: float
    margin: float  # r_{k*}/r_{runner_up} (inf if no other candidate)
    is_maximal: bool
    n_candidates: int


def gap_maximality(sigma: Any, k: int | None = None, candidates: str = "floor") -> GapMaximality:
    """``r_{k*} ≥ r_j`` for all candidates j (``floor``: σ_j > ρ_r·σ_noise over the r nonzero σ,
    plus j = 1; ``all``: j ≤ W−1); ratios with a zero denominator are undefined and never candidates."""
    s = np.sort(np.asarray(sigma, dtype=np.float64))[::-1]
    r = sp.ratios(s)  # NaN where σ_{j+1} is zero (a rank-deficient window): never a candidate
    defined = np.isfinite(r)
    if r.size == 0 or not np.all(np.isfinite(s)) or not defined.any():
        return GapMaximality(0, float("nan"), None, float("nan"), float("nan"), False, 0)
    if candidates == "floor":
        cand = s[:-1] > sp.floor_threshold(s)
        cand[0] = True
    elif candidates == "all":
        cand = np.ones(r.size, dtype=bool)
    else:
        raise ConfigError(f"candidates must be 'floor' or 'all', got {candidates!r}")
    cand &= defined
    kk = sp.k_star(s, "floor" if candidates == "floor" else "argmax") if k is None else int(k)
    if not 1 <= kk <= r.size:
        raise ConfigError(f"k* = {kk} is outside 1…{r.size}")
    cand[kk - 1] = True
    others = [j for j in np.flatnonzero(cand) if j != kk - 1]
    if not others:
        return GapMaximality(kk, float(r[kk - 1]), None, float("nan"), float("inf"), True, int(cand.sum()))
    j = max(others, key=lambda i: r[i])
    return GapMaximality(kk, float(r[kk - 1]), int(j) + 1, float(r[j]), float(r[kk - 1] / r[j]),
                         bool(r[kk - 1] >= r[j]), int(cand.sum()))


# ---------------------------------------------------------------------- live model
@dataclass(frozen=True)
class ModeImportance:
    """One mode's gradient projections, predicted importance and measured ablation effect."""

    mode: int  # 1-based
    g_train: float  # G_j^train = ⟨v_j, ∇L_train⟩
    g_val: float  # G_j^val = ⟨v_j, ∇L_val⟩
    alpha: float
    predicted: float  # α_j·η·G_j^train·G_j^val
    measured: float  # L_val(θ + η·G_j^train·v_j) − L_val(θ)
    shift: float  # η·G_j^train, the distance moved along v_j by the ablation


def spectral_loss_decomposition(
    model: Any,
    directions: Sequence[Mapping[str, Any]],
    train_loss: Callable[[], Any],
    val_loss: Callable[[], Any],
    *,
    lr: float,
    alphas: Sequence[float] | None = None,
    normalize: bool = True,
) -> tuple[ModeImportance, ...]:
    """Per mode j: ``G_j = ⟨v_j, ∇L⟩`` (train, val), predicted ``α_j·η·G_j^tr·G_j^val`` vs measured
    ``L_val(θ + η·G_j^tr·v_j) − L_val(θ)`` (the mode's share of one gradient step undone).

    ``directions[j]`` maps parameter names (as in ``model.named_parameters()``) to tensors of the
    parameters' shapes; absent parameters count as zero. With ``normalize`` each direction is
    scaled to unit norm over all its tensors. ``train_loss``/``val_loss`` are closures returning a
    scalar loss of the model's current parameters; they run under ``torch.random.fork_rng`` so the
    caller's RNG streams are not consumed. The model's parameters are restored bit-exactly and its
    ``.grad`` fields are left untouched (gradients come from ``torch.autograd.grad``).
    """
    import torch

    params = dict(model.named_parameters())
    if not directions:
        raise ConfigError("give at least one direction")
    names: list[str] = []
    for d in directions:
        for n, t in d.items():
            if n not in params:
                raise ConfigError(f"direction names parameter {n!r}, which the model does not have")
            if tuple(t.shape) != tuple(params[n].shape):
                raise ConfigError(f"direction tensor {n!r} has shape {tuple(t.shape)}, the parameter {tuple(params[n].shape)}")
            if n not in names:
                names.append(n)
    if alphas is not None and len(alphas) != len(directions):
        raise ConfigError(f"got {len(alphas)} alphas for {len(directions)} directions")
    plist = [params[n] for n in names]
    devices = sorted({p.device.index or 0 for p in plist if p.device.type == "cuda"})

    vecs: list[dict[str, Any]] = []
    for d in directions:
        v = {n: d[n].detach().to(device=params[n].device, dtype=torch.float64) for n in d}
        norm = float(torch.sqrt(sum((t * t).sum() for t in v.values())))
        if normalize:
            if norm == 0:
                raise ConfigError("a direction is all zeros")
            v = {n: t / norm for n, t in v.items()}
        vecs.append(v)

    def grads(closure: Callable[[], Any]) -> dict[str, Any]:
        with torch.random.fork_rng(devices=devices):
            loss = closure()
        gs = torch.autograd.grad(loss, plist, allow_unused=True)
        return {n: (torch.zeros_like(p) if g is None else g).detach().double() for n, p, g in zip(names, plist, gs)}

    def value(closure: Callable[[], Any]) -> float:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            return float(closure())

    def dot(v: Mapping[str, Any], g: Mapping[str, Any]) -> float:
        return float(sum((v[n] * g[n]).sum() for n in v))

    g_tr, g_val = grads(train_loss), grads(val_loss)
    saved = {n: p.detach().clone() for n, p in zip(names, plist)}
    base = value(val_loss)
    out = []
    try:
        for j, v in enumerate(vecs):
            gt, gv = dot(v, g_tr), dot(v, g_val)
            a = 1.0 if alphas is None else float(alphas[j])
            shift = float(lr) * gt
            with torch.no_grad():
                for n, t in v.items():
                    params[n].add_((shift * t).to(params[n].dtype))
            measured = value(val_loss) - base
            with torch.no_grad():
                for n in v:
                    params[n].copy_(saved[n])
            out.append(ModeImportance(j + 1, gt, gv, a, a * float(lr) * gt * gv, measured, shift))
    finally:
        with torch.no_grad():
            for n, p in zip(names, plist):
                p.copy_(saved[n])
    return tuple(out)


# ---------------------------------------------------------------------- run-level report
@dataclass(frozen=True)
class ThesisReport:
    """Per-window thesis quantities of one (W, group) and their summaries. ``low``/``high`` and
    ``regime_counts`` are set only when the caller gave both cut-offs (no default is supported)."""

    window: int
    group: str
    rows: tuple[dict[str, Any], ...] = field(repr=False)
    delta_g_method: str
    low: float | None
    high: float | None
    regime_counts: Mapping[str, int]
    a_median: float
    alpha_kstar_median: float
    gap: GapDynamics
    bbp: BBP | None
    maximal_fraction: float
    lr_source: str
    notes: tuple[str, ...] = ()
    a_quantiles: tuple[float, float, float, float] = (math.nan,) * 4  # min, 25 %, 75 %, max of the finite A

    def to_dict(self) -> dict[str, Any]:
        b = self.bbp
        q = self.a_quantiles
        return {
            "window": self.window, "group": self.group, "rows": len(self.rows),
            "delta_g_method": self.delta_g_method, "lr_source": self.lr_source,
            "A_median": self.a_median, "A_min": q[0], "A_q25": q[1], "A_q75": q[2], "A_max": q[3],
            "A_low": self.low, "A_high": self.high,
            "regimes": dict(self.regime_counts) if self.low is not None else None,
            "alpha_kstar_median": self.alpha_kstar_median,
            "gap_slope": self.gap.slope, "gap_intercept": self.gap.intercept, "gap_r2": self.gap.r2, "gap_n": self.gap.n,
            "n_parameters": None if b is None else b.n_parameters,
            "noise_floor": None if b is None else b.noise_floor,
            "nu": None if b is None else b.nu,
            "d_crit": None if b is None else b.d_crit,
            "d_crit_over_noise": None if b is None else b.d_crit_over_noise,
            "n_detectable": None if b is None else b.n_detectable,
            "maximal_fraction": self.maximal_fraction, "notes": list(self.notes),
        }

    summary = to_dict  # deprecated name (0.1.0); use to_dict()


def run_thesis(data: Any, window: int | None = None, group: str | None = None, *, lr: float | None = None,
               n_parameters: int | None = None, low: float | None = None, high: float | None = None,
               include_zero: bool = True) -> ThesisReport:
    """Thesis quantities per window of one (W, group) of a run (a :class:`~.series.RunData` or a path),
    with ‖ΔG‖_F from eigenvalue changes (the only option from stored σ's; see module docs).

    A = ‖Δλ_u‖/g_u² uses the spectra per unit learning rate (σ/η with η in force at the row; a
    constant η cancels, so A needs no η then); the rows' ``delta_g``, ``gap`` and α are of the raw
    updates. Regime labels (``regime``) only when both ``low`` and ``high`` are given."""
    from ..io.run import RunData, load_run
    from .series import values_at

    labels = _check_cuts(low, high, ("--low", "--high"))
    if labels:
        adiabatic_regime(np.nan, low, high)  # type: ignore[arg-type]  # checks the cut-offs before loading
    if not isinstance(data, RunData):
        data = load_run(data)
    df = data.rows(window, group)
    W, g = int(df["window"].iloc[0]), str(df["group"].iloc[0])
    scols = [f"sigma_{j}" for j in range(1, W + 1)]
    missing = [c for c in scols if c not in df.columns]
    if missing:
        raise ConfigError(f"{data.source}: the rows for W = {W} lack {', '.join(missing[:3])}; "
                          "the thesis quantities need every singular value")
    S = df[scols].to_numpy(dtype=np.float64)  # (n, W)
    steps = df["step"].to_numpy(dtype=np.int64)
    notes: list[str] = []
    if lr is not None:
        if not (math.isfinite(float(lr)) and float(lr) > 0):
            raise ConfigError(f"--lr must be a finite learning rate > 0, got {lr}")
        eta = np.full(steps.size, float(lr))
        lr_source = "flag"
    else:
        lrs = data.learning_rate()
        if lrs is None:
            eta = np.full(steps.size, np.nan)
            lr_source = "none"
            notes.append("no learning rate logged: A assumes a constant η (--lr changes nothing then; a schedule "
                         "would count as a change of G): give the schedule with --val FILE.csv (columns step,lr) "
                         "or log it in the history (Monitor.log(lr=...))")
        else:
            eta = values_at(lrs, steps)
            lr_source = "log"
    # per-unit-lr spectra: σ_u = σ/η (η ≡ 1 where unknown: a constant η cancels in A)
    scale = np.where(np.isfinite(eta) & (eta > 0), eta, 1.0)
    if n_parameters is not None and int(n_parameters) < 1:
        raise ConfigError(f"--n-parameters must be a parameter count ≥ 1, got {n_parameters}")
    P = data.n_parameters if n_parameters is None else int(n_parameters)
    if P is None:
        notes.append("number of parameters unknown: BBP threshold skipped (pass --n-parameters)")
    elif g != "all" and n_parameters is None:
        notes.append(f"P = {P} is the whole selection, not group {g!r}; pass --n-parameters for the group")
    gaps = _col(df, "gap", S)
    ks = df["k_star"].to_numpy() if "k_star" in df.columns else np.array([sp.k_star(s) for s in S])
    rows: list[dict[str, Any]] = []
    alpha_k = []
    maximal = []
    for i in range(steps.size):
        s = S[i]
        lam = s**2
        ok = bool(np.all(np.isfinite(s)))
        prev_ok = i > 0 and ok and bool(np.all(np.isfinite(S[i - 1])))
        dg = eigenvalue_change(S[i - 1] ** 2, lam) if prev_ok else np.nan
        dg_u = eigenvalue_change((S[i - 1] / scale[i - 1]) ** 2, (s / scale[i]) ** 2) if prev_ok else np.nan
        k = int(ks[i]) if np.isfinite(ks[i]) else 0
        alphas = davis_kahan_alpha(dg, lam, include_zero) if ok and np.isfinite(dg) else np.full(W, np.nan)
        A = float(adiabatic(dg_u, gaps[i] / scale[i]))
        row: dict[str, Any] = {"step": int(steps[i]), "window": W, "group": g, "k_star": k, "gap": float(gaps[i]),
                               "gap_ratio": float(df["gap_ratio"].iloc[i]) if "gap_ratio" in df.columns else np.nan,
                               "lr": float(eta[i]), "delta_g": float(dg), "A": A,
                               "alpha_kstar": float(alphas[k - 1]) if 1 <= k <= W else np.nan}
        if labels:
            row["regime"] = str(adiabatic_regime(A, low, high))  # type: ignore[arg-type]
        if 1 <= k <= W:
            alpha_k.append(row["alpha_kstar"])
        for j in range(W):
            row[f"alpha_{j + 1}"] = float(alphas[j])
        if ok and P is not None:
            b = bbp_threshold(s, P)
            row.update(noise_floor=b.noise_floor, d_crit=b.d_crit, n_detectable=b.n_detectable)
        if ok and 1 <= k < W:
            gm = gap_maximality(s, k)
            row.update(gap_maximal=gm.is_maximal, gap_margin=gm.margin)
            maximal.append(gm.is_maximal)
        rows.append(row)
    counts: dict[str, int] = {}
    if labels:
        regimes = [r["regime"] for r in rows]
        counts = {name: regimes.count(name) for name in REGIMES if regimes.count(name)}
    a_vals = np.array([r["A"] for r in rows], dtype=np.float64)
    finite_a = a_vals[np.isfinite(a_vals)]
    quant = tuple(float(x) for x in np.quantile(finite_a, [0, 0.25, 0.75, 1])) if finite_a.size else (math.nan,) * 4
    last_ok = [i for i in range(steps.size) if np.all(np.isfinite(S[i]))]
    bbp = bbp_threshold(S[last_ok[-1]], P) if (P is not None and last_ok) else None
    ak = np.asarray(alpha_k, dtype=np.float64)
    return ThesisReport(
        window=W, group=g, rows=tuple(rows), delta_g_method=DELTA_G_APPROX, low=low, high=high,
        regime_counts=counts, a_median=float(np.median(finite_a)) if finite_a.size else float("nan"),
        alpha_kstar_median=float(np.nanmedian(ak)) if np.any(np.isfinite(ak)) else float("nan"),
        gap=gap_dynamics(steps, gaps), bbp=bbp,
        maximal_fraction=float(np.mean(maximal)) if maximal else float("nan"),
        lr_source=lr_source, notes=tuple(notes), a_quantiles=quant)  # type: ignore[arg-type]


def _col(df: Any, name: str, S: np.ndarray) -> np.ndarray:
    if name in df.columns:
        return df[name].to_numpy(dtype=np.float64)
    ks = [sp.k_star(s) for s in S]
    return np.array([s[k - 1] - s[k] if k > 0 else np.nan for s, k in zip(S, ks)])
