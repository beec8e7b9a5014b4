"""Window spectrum math: pure functions on small float64 arrays (METHODS.md §1–2).

Everything here works from a Gram matrix ``G_ij = <δ_i, δ_j>`` of W updates (oldest first),
never from the updates themselves, so the same code serves the exact window, a sketched
window, and any W cut out of one matrix of all pairwise inner products.

Conventions: σ are sorted descending, indices in results are 1-based like the papers
(k* = 2 means "two signal modes"). ``k_star == 0`` means "undefined" (fewer than two
nonzero σ: an all-zero window, or one with a single nonzero update).

Rank-deficient windows (a duplicated checkpoint, a step where the optimizer changed
nothing) have σ_W = 0 exactly; from the eigenvalues of a Gram matrix it comes out as rounding
noise, so σ below :func:`rank_tolerance` are set to exactly 0, a ratio with a zero
denominator is undefined (NaN) and never the edge, and every rule works on the nonzero part
of the spectrum: a window with one zero update gives the k*, gap ratio and noise floor of
the window of its W−1 nonzero updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from .._compat import renamed_kwargs
from ..errors import ConfigError

KStarRule = Literal["argmax", "floor", "weighted"]
KSTAR_RULES: tuple[str, ...] = ("argmax", "floor", "weighted")
DEFAULT_KSTAR_RULE: KStarRule = "floor"

#: Safety factor over numpy.linalg.matrix_rank's default tolerance (applied to the Gram).
RANK_TOL_FACTOR = 10.0


def rank_tolerance(lam_max: float, W: int) -> float:
    """Eigenvalues of a (W, W) Gram at or below ``tol_λ = 10·W·eps·λ_max`` are zero.

    eigh is backward stable: each computed λ carries an absolute error of order
    ``eps·λ_max`` (times a small function of W), so an exactly zero update comes out as
    |λ_W| ≈ eps·λ_max (measured: at most 4·eps·λ_max for W ≤ 100) and its σ_W = sqrt(λ_W) as
    ~1e-8·σ_1, which made σ_{W−1}/σ_W ~ 1e7. This is numpy.linalg.matrix_rank's default
    ``tol = S.max()·max(M, N)·eps`` applied to the Gram (whose singular values are the λ),
    with a safety factor of 10. On the σ scale: σ_j ≤ σ_1·sqrt(10·W·eps), i.e. 1.5e-7·σ_1
    at W = 10 — far below any ratio of real update windows, and below what the Gram can
    resolve at all.
    """
    return RANK_TOL_FACTOR * int(W) * float(np.finfo(np.float64).eps) * float(lam_max)


def _sigma_tol(s: np.ndarray) -> float:
    """:func:`rank_tolerance` on the σ scale for a descending spectrum ``s``."""
    return float(np.sqrt(rank_tolerance(float(np.max(s)) ** 2, s.size))) if s.size else 0.0


def effective_rank(sigma: np.ndarray) -> int:
    """Number of σ above the rank tolerance (σ_j > σ_1·sqrt(10·W·eps)); 0 for an all-zero
    or non-finite spectrum."""
    s = np.asarray(sigma, dtype=np.float64)
    if s.size == 0 or not np.all(np.isfinite(s)) or np.max(s) <= 0:
        return 0
    return int(np.count_nonzero(s > _sigma_tol(s)))


def gram(deltas: np.ndarray) -> np.ndarray:
    """``G = Δ Δᵀ`` for updates Δ of shape (W, D); returns (W, W) float64."""
    d = np.asarray(deltas, dtype=np.float64)
    if d.ndim != 2:
        raise ConfigError(f"gram() needs a (W, D) array of updates, got shape {d.shape}")
    return d @ d.T


def eig_gram(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a Gram matrix: λ descending, clipped at 0, and eigenvectors.

    Returns ``(lam (W,), U (W, W))`` with ``G ≈ U diag(λ) Uᵀ``; column j of U is the
    coefficient vector of mode j over the window's updates. Each column's sign is fixed so
    that its largest-magnitude entry is positive (deterministic output). Eigenvalues at or
    below :func:`rank_tolerance` (rounding noise of a rank-deficient window) are exactly 0.
    """
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ConfigError(f"a Gram matrix must be square, got shape {G.shape}")
    if not np.all(np.isfinite(G)):
        raise ConfigError("the Gram matrix holds NaN or Inf (a non-finite update)")
    Gs = 0.5 * (G + G.T)
    lam, U = np.linalg.eigh(Gs)
    order = np.argsort(lam)[::-1]
    lam = np.clip(lam[order], 0.0, None)
    lam[lam <= rank_tolerance(lam[0], lam.size)] = 0.0
    U = U[:, order]
    flip = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])])
    flip[flip == 0] = 1.0
    return lam, U * flip


def singular_values(G: np.ndarray) -> np.ndarray:
    """``σ_j = sqrt(λ_j(G))``, descending: the singular values of the update matrix, (W,)."""
    return np.sqrt(eig_gram(G)[0])


def ratios(sigma: np.ndarray) -> np.ndarray:
    """``r_j = σ_j / σ_{j+1}`` for j = 1…W−1, shape (W−1,).

    A ratio whose denominator is zero (σ_{j+1} at or below the rank tolerance, see
    :func:`effective_rank`) is undefined: NaN. An all-zero or non-finite spectrum gives
    all-NaN ratios.
    """
    s = np.asarray(sigma, dtype=np.float64)
    if s.size < 2:
        return np.empty(0)
    out = np.full(s.size - 1, np.nan)
    if effective_rank(s) >= 2:
        den = s[1:]
        np.divide(s[:-1], den, out=out, where=den > _sigma_tol(s))
    return out


def noise_floor(sigma: np.ndarray) -> float:
    """Noise level ``σ_noise = sqrt(mean λ_j over the lower half j > ⌊r/2⌋)`` of the r
    nonzero σ (r = W for a full-rank window): a zero update adds no noise mode."""
    s = np.asarray(sigma, dtype=np.float64)
    r = effective_rank(s) if s.size and np.all(np.isfinite(s)) else s.size
    lower = s[r // 2 : r]
    return float(np.sqrt(np.mean(lower**2))) if lower.size else 0.0


def ratio_floor(W: int) -> float:
    """Marchenko–Pastur/Tracy–Widom scale of adjacent ratios in pure noise: ``1 + 2·W^(−2/3)``."""
    return 1.0 + 2.0 * float(W) ** (-2.0 / 3.0)


def floor_threshold(sigma: np.ndarray) -> float:
    """The floor rule's threshold ``ρ_r·σ_noise`` over the r nonzero σ (r = W when full rank)."""
    s = np.asarray(sigma, dtype=np.float64)
    r = effective_rank(s)
    return ratio_floor(r) * noise_floor(s) if r else 0.0


@renamed_kwargs(rule="kstar_rule")
def k_star(sigma: np.ndarray, kstar_rule: str = DEFAULT_KSTAR_RULE) -> int:
    """Spectral edge position (1-based) under one of three rules; 0 if undefined.

    - ``argmax``:   ``k* = argmax_j σ_j/σ_{j+1}`` over all j (often picks the tail).
    - ``floor``:    the same argmax restricted to modes above the noise floor,
      ``{j : σ_j > ρ_W·σ_noise} ∪ {1}`` with ``ρ_W = 1 + 2W^(−2/3)`` and ``σ_noise`` from
      :func:`noise_floor`. The last candidate's ratio is the signal/noise boundary itself.
    - ``weighted``: ``k* = argmax_j (σ_j/Σσ)·(σ_j/σ_{j+1})``.

    Every rule looks only at the defined ratios, those of the r nonzero σ (see
    :func:`ratios`), with W replaced by r in ρ_W: a window with a zero update gets the edge
    of its nonzero updates, never the rank boundary σ_r/0. Fewer than two nonzero σ: 0.
    """
    s = np.asarray(sigma, dtype=np.float64)
    r = ratios(s)
    ok = np.isfinite(r)
    if r.size == 0 or not ok.any():
        return 0
    if kstar_rule == "argmax":
        score = r
    elif kstar_rule == "floor":
        cand = s[:-1] > floor_threshold(s)
        cand[0] = True
        score = np.where(cand, r, -np.inf)
    elif kstar_rule == "weighted":
        score = (s[:-1] / s.sum()) * r
    else:
        raise ConfigError(f"unknown k* rule {kstar_rule!r}; choose one of {', '.join(KSTAR_RULES)}")
    return int(np.argmax(np.where(ok, score, -np.inf))) + 1


def k95(lam: np.ndarray, fraction: float = 0.95) -> int:
    """Fewest leading modes holding at least ``fraction`` of Σλ (0 for an all-zero window)."""
    lam = np.asarray(lam, dtype=np.float64)
    total = lam.sum()
    if total <= 0:
        return 0
    c = np.cumsum(lam) / total
    return int(np.searchsorted(c, fraction - 1e-12) + 1)


def drift_speed(G: np.ndarray) -> float:
    """``‖mean_i δ_i‖ = sqrt(1ᵀG1)/W``."""
    G = np.asarray(G, dtype=np.float64)
    W = G.shape[0]
    return float(np.sqrt(max(G.sum(), 0.0)) / W)


def top_coefficients(lam: np.ndarray, U: np.ndarray, j: int = 1) -> np.ndarray:
    """Coefficients c with ``v_j = Σ_i c_i δ_i`` (unit norm): ``c = u_j / σ_j``; zeros if σ_j = 0."""
    sig = np.sqrt(lam[j - 1])
    if sig <= 0:
        return np.zeros(U.shape[0])
    return U[:, j - 1] / sig


def turning(G_union: np.ndarray, c_prev: np.ndarray, c_cur: np.ndarray) -> float:
    """``|<v_1(t−1), v_1(t)>|`` for two windows that overlap by all but one update.

    ``G_union`` is the (W+1)×(W+1) Gram of updates t−W … t (oldest first); ``c_prev`` gives
    v_1(t−1) over the first W of them, ``c_cur`` gives v_1(t) over the last W.
    """
    W = c_cur.shape[0]
    cross = np.asarray(G_union, dtype=np.float64)[:W, 1 : W + 1]
    return float(abs(c_prev @ cross @ c_cur))


@dataclass(frozen=True)
class WindowStats:
    """Everything METHODS.md §1–2 defines for one window of W updates.

    ``sigma`` (W,) and ``ratios`` (W−1,) are arrays; ``k_star`` follows ``k_star_rule``
    while the ``k_star_<rule>`` fields keep all three rules side by side. ``turning`` is
    NaN until a previous window exists.
    """

    window: int
    sigma: np.ndarray = field(repr=False)
    ratios: np.ndarray = field(repr=False)
    k_star: int
    k_star_rule: str
    gap_ratio: float  # r_{k*}
    gap: float  # σ_{k*} − σ_{k*+1}
    g23: float  # σ_2² − σ_3²
    pc1_pct: float  # 100·λ_1/Σλ
    k95: int
    drift_speed: float  # ‖mean δ‖
    noise_floor: float  # σ_noise
    k_star_argmax: int
    k_star_floor: int
    k_star_weighted: int
    top_coeffs: np.ndarray = field(repr=False)  # (W,), v_1 = Σ c_i δ_i
    turning: float = float("nan")

    def to_dict(self) -> dict[str, float | int | str]:
        """Flat record: scalars plus ``sigma_1…sigma_W`` and ``ratio_1…ratio_{W−1}``."""
        row: dict[str, float | int | str] = {
            "window": self.window,
            "k_star": self.k_star,
            "k_star_rule": self.k_star_rule,
            "gap_ratio": self.gap_ratio,
            "gap": self.gap,
            "g23": self.g23,
            "pc1_pct": self.pc1_pct,
            "k95": self.k95,
            "drift_speed": self.drift_speed,
            "turning": self.turning,
            "noise_floor": self.noise_floor,
            "k_star_argmax": self.k_star_argmax,
            "k_star_floor": self.k_star_floor,
            "k_star_weighted": self.k_star_weighted,
        }
        for j, s in enumerate(self.sigma, 1):
            row[f"sigma_{j}"] = float(s)
        for j, r in enumerate(self.ratios, 1):
            row[f"ratio_{j}"] = float(r)
        return row

    def as_row(self) -> dict[str, float | int | str]:
        """Deprecated name of :meth:`to_dict`."""
        return self.to_dict()


@renamed_kwargs(rule="kstar_rule")
def window_stats(G: np.ndarray, kstar_rule: str = DEFAULT_KSTAR_RULE) -> WindowStats:
    """All per-window quantities from the (W, W) Gram matrix of one window (W ≥ 2)."""
    if kstar_rule not in KSTAR_RULES:
        raise ConfigError(f"unknown k* rule {kstar_rule!r}; choose one of {', '.join(KSTAR_RULES)}")
    G = np.asarray(G, dtype=np.float64)
    W = G.shape[0]
    if W < 2:
        raise ConfigError(f"a window needs at least 2 updates, got {W}")
    lam, U = eig_gram(G)
    sigma = np.sqrt(lam)
    r = ratios(sigma)
    ks = {name: k_star(sigma, name) for name in KSTAR_RULES}
    k = ks[kstar_rule]
    total = lam.sum()
    if k > 0:
        gap_ratio = float(r[k - 1])
        gap = float(sigma[k - 1] - sigma[k])
    else:
        gap_ratio = gap = float("nan")
    return WindowStats(
        window=W,
        sigma=sigma,
        ratios=r,
        k_star=k,
        k_star_rule=kstar_rule,
        gap_ratio=gap_ratio,
        gap=gap,
        g23=float(lam[1] - lam[2]) if W >= 3 else float("nan"),
        pc1_pct=float(100.0 * lam[0] / total) if total > 0 else float("nan"),
        k95=k95(lam),
        drift_speed=drift_speed(G),
        noise_floor=noise_floor(sigma),
        k_star_argmax=ks["argmax"],
        k_star_floor=ks["floor"],
        k_star_weighted=ks["weighted"],
        top_coeffs=top_coefficients(lam, U, 1),
    )


@renamed_kwargs(rule="kstar_rule")
def window_series(
    pairwise: np.ndarray, window: int, kstar_rule: str = DEFAULT_KSTAR_RULE
) -> list[tuple[int, WindowStats]]:
    """Batch analysis of every right-aligned window of W updates from one pairwise matrix.

    ``pairwise`` is the (T, T) matrix of all inner products of T consecutive updates. Returns
    ``[(t, stats)]`` for t = W−1 … T−1 (index of the newest update). Any W costs only
    submatrix views of the same matrix, so W = 5, 10, 20 need one pass over the data.
    """
    P = np.asarray(pairwise, dtype=np.float64)
    T = P.shape[0]
    out: list[tuple[int, WindowStats]] = []
    prev: WindowStats | None = None
    for t in range(window - 1, T):
        lo = t - window + 1
        st = window_stats(P[lo : t + 1, lo : t + 1], kstar_rule)
        if prev is not None:
            tv = turning(P[lo - 1 : t + 1, lo - 1 : t + 1], prev.top_coeffs, st.top_coeffs)
            st = _with_turning(st, tv)
        out.append((t, st))
        prev = st
    return out


def _with_turning(st: WindowStats, value: float) -> WindowStats:
    return replace(st, turning=value)
