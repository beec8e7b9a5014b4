"""Coupling of a spectral series with validation loss: lagged correlation, lag flip, Granger.

Definitions (METHODS.md §4; the choices the sources leave open are fixed here):

- **Detrending.** Each series is replaced by its residual from a least-squares polynomial of
  degree 3 (``degree``) in the step, fitted on the standardised step ``(s − mean)/std`` for
  conditioning (the residual does not depend on that affine change of variable).
- **Lags** are integers in *sample* units (rows of the aligned series). At lag ℓ,
  ``r(ℓ) = Pearson(x_t, y_{t+ℓ})`` over all t where both exist: **ℓ > 0 means the spectral
  series x leads the loss y** (x now correlates with the loss ℓ samples later).
- **Peak lag** = the lag with the most negative r (a rising gap ratio going with a falling
  loss); the lag of the most positive r is reported beside it. Ties go to the smaller |ℓ|.
  Default lag range ±min(10, ⌊n/4⌋).
- **Lag flip**: the sign of the peak lag (−1, 0, +1) per window size W; a flip is any two
  windows with opposite non-zero signs.
- **Significance.** (i) Circular-shift permutation: the detrended x is rotated by every
  admissible shift s ∈ [L+1, n−L−1] (L = max lag), or by ``n_perm`` of them drawn with
  ``seed`` when there are more, which keeps each series' autocorrelation; the statistic is the
  peak (minimum over lags) r, so the lag search is accounted for;
  ``p = (1 + #{min r_s ≤ min r}) / (1 + N)``. (ii) Effective sample size: Bretherton et al.
  (1999) ``n_eff = n·(1 − ρ_x ρ_y)/(1 + ρ_x ρ_y)`` with lag-1 autocorrelations, or Bartlett's
  ``n_eff = n / (1 + 2 Σ_k ρ_x(k) ρ_y(k))`` summed up to ⌊n/4⌋ and stopped at the first
  non-positive term; then a two-sided t-test of the peak r with ``n_eff − 2`` degrees of
  freedom (this one does not correct for the search over lags).
- **Granger test** (statsmodels OLS and its nested F-test): restricted model
  ``y_t = c + Σ_{i≤p} a_i y_{t−i} + b·lr_t``; unrestricted adds ``Σ_{i≤p} c_i x_{t−i}``.
  The order p ∈ 1…max_lag minimises the AIC of the *unrestricted* model, all orders fitted on
  the same rows t > max_lag so that their AICs are comparable; both models are then refitted
  at that p on rows t > p and compared by ``compare_f_test``. Both series are detrended first;
  the learning rate enters as it is and is left out when it is constant (it would duplicate
  the intercept) or not logged.
- **Phase-specific correlation**: for each phase (from :mod:`.phases`, detected on the
  spectral series), Pearson r at lag 0 of the raw aligned series and of the detrended ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._deps import require
from ..errors import ConfigError
from .series import ALIGN_MODES, Series, align, values_at

ESS_METHODS: tuple[str, ...] = ("bretherton", "bartlett")


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class LagCorrelation:
    """``r(ℓ) = Pearson(x_t, y_{t+ℓ})`` for ℓ in ``lags`` (ℓ > 0: x leads), with pair counts."""

    lags: tuple[int, ...]
    r: tuple[float, ...]
    n: tuple[int, ...]

    def _pick(self, sign: int) -> tuple[int | None, float]:
        r = np.asarray(self.r, dtype=np.float64)
        if not np.any(np.isfinite(r)):
            return None, float("nan")
        order = sorted(range(len(self.lags)), key=lambda i: (abs(self.lags[i]), self.lags[i]))
        best = None
        for i in order:
            if np.isfinite(r[i]) and (best is None or sign * r[i] > sign * r[best]):
                best = i
        assert best is not None
        return self.lags[best], float(r[best])

    @property
    def peak(self) -> tuple[int | None, float]:
        """(lag, r) of the most negative r."""
        return self._pick(-1)

    @property
    def positive_peak(self) -> tuple[int | None, float]:
        """(lag, r) of the most positive r."""
        return self._pick(+1)


@dataclass(frozen=True)
class PhaseCorrelation:
    """Lag-0 correlation of the aligned series inside one phase."""

    phase: str
    n: int
    first_step: int | None
    last_step: int | None
    r_raw: float
    r_detrended: float
    p_raw: float  # naive two-sided t-test of r_raw with n − 2 dof


@dataclass(frozen=True)
class GrangerResult:
    """Nested F-test of 'x's lags add to y's own lags and the learning rate' (see module docs)."""

    cause: str
    effect: str
    lag_order: int
    f_stat: float
    p_value: float
    df_num: int
    df_denom: int
    n_obs: int
    used_lr: bool
    max_lag: int
    aic: tuple[float, ...]  # AIC of the unrestricted model for p = 1…max_lag
    reason: str = ""


@dataclass(frozen=True)
class CouplingResult:
    """Lagged coupling of one spectral series with the validation series (see module docs)."""

    column: str
    target: str
    window: int | None
    group: str | None
    n: int
    how: str
    degree: int
    correlation: LagCorrelation
    peak_lag: int | None
    peak_r: float
    peak_n: int
    positive_lag: int | None
    positive_r: float
    p_naive: float
    n_eff: float
    p_eff: float
    ess_method: str
    p_perm: float
    n_perm: int
    phases: tuple[PhaseCorrelation, ...] = ()
    granger: GrangerResult | None = None
    granger_reverse: GrangerResult | None = None
    steps: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False, compare=False)

    @property
    def sign(self) -> int:
        """Sign of the peak lag: +1 (spectral leads), −1 (loss leads), 0."""
        return 0 if self.peak_lag is None else int(np.sign(self.peak_lag))

    def to_dict(self) -> dict[str, Any]:
        """Flat record (one row per window) for tables and JSON."""
        out: dict[str, Any] = {
            "column": self.column, "target": self.target, "window": self.window, "group": self.group,
            "n": self.n, "align": self.how, "degree": self.degree,
            "max_lag": max((abs(lag) for lag in self.correlation.lags), default=0),
            "peak_lag": self.peak_lag, "peak_r": self.peak_r, "peak_n": self.peak_n, "sign": self.sign,
            "positive_lag": self.positive_lag, "positive_r": self.positive_r,
            "p_naive": self.p_naive, "n_eff": self.n_eff, "p_eff": self.p_eff, "ess_method": self.ess_method,
            "p_perm": self.p_perm, "n_perm": self.n_perm,
        }
        for name, g in (("granger", self.granger), ("granger_reverse", self.granger_reverse)):
            out[f"{name}_p"] = None if g is None else g.p_value
            out[f"{name}_F"] = None if g is None else g.f_stat
            out[f"{name}_lag"] = None if g is None else g.lag_order
        for pc in self.phases:
            out[f"r_{pc.phase}"] = pc.r_raw
            out[f"r_{pc.phase}_detrended"] = pc.r_detrended
            out[f"n_{pc.phase}"] = pc.n
        return out

    summary = to_dict  # deprecated name (0.1.0); use to_dict()

    def lag_rows(self) -> list[dict[str, Any]]:
        """One record per lag: window, group, lag, r, n."""
        c = self.correlation
        return [{"column": self.column, "target": self.target, "window": self.window, "group": self.group,
                 "lag": lag, "r": r, "n": n} for lag, r, n in zip(c.lags, c.r, c.n)]


@dataclass(frozen=True)
class LagFlip:
    """Peak lag and its sign per window size; ``flip`` when two windows disagree in sign."""

    results: tuple[CouplingResult, ...]

    @property
    def windows(self) -> tuple[int | None, ...]:
        return tuple(r.window for r in self.results)

    @property
    def signs(self) -> tuple[int, ...]:
        return tuple(r.sign for r in self.results)

    @property
    def flip(self) -> bool:
        s = {x for x in self.signs if x != 0}
        return len(s) == 2

    @property
    def flips(self) -> tuple[tuple[int | None, int | None], ...]:
        """Consecutive (by W) pairs of windows whose non-zero signs differ (zeros are skipped)."""
        out = []
        last = None
        for r in self.results:
            if r.sign == 0:
                continue
            if last is not None and last.sign != r.sign:
                out.append((last.window, r.window))
            last = r
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {"windows": list(self.windows), "peak_lags": [r.peak_lag for r in self.results],
                "signs": list(self.signs), "flip": self.flip, "flips": [list(f) for f in self.flips]}

    summary = to_dict  # deprecated name (0.1.0); use to_dict()


# ---------------------------------------------------------------------- math
def detrend(steps: Any, values: Any, degree: int = 3) -> np.ndarray:
    """Residual of the least-squares polynomial of ``degree`` in the (standardised) step: ``y − p̂(s)``."""
    s = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if s.shape != y.shape or s.ndim != 1:
        raise ConfigError(f"steps and values must be 1-D of equal length, got {s.shape} and {y.shape}")
    if degree < 0:
        return y.copy()
    if y.size < degree + 2:
        raise ConfigError(f"detrending with a degree-{degree} polynomial needs at least {degree + 2} points, got {y.size}")
    if not np.all(np.isfinite(y)):
        raise ConfigError("detrend() needs finite values (drop NaN first)")
    sd = s.std()
    z = (s - s.mean()) / (sd if sd > 0 else 1.0)
    V = np.vander(z, degree + 1, increasing=True)  # (n, degree+1)
    coef, *_ = np.linalg.lstsq(V, y, rcond=None)
    return y - V @ coef


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / den) if den > 0 else float("nan")


def _pair(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (x_t, y_{t+lag})."""
    n = x.size
    if lag >= 0:
        return x[: n - lag], y[lag:]
    return x[-lag:], y[: n + lag]


def lagged_correlation(x: Any, y: Any, max_lag: int) -> LagCorrelation:
    """``r(ℓ) = Pearson(x_t, y_{t+ℓ})`` for ℓ = −max_lag…max_lag (ℓ > 0: x leads y); (n,) arrays."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"x and y must be 1-D of equal length, got {x.shape} and {y.shape}")
    max_lag = int(max_lag)
    if max_lag < 0:
        raise ConfigError(f"max_lag must be ≥ 0, got {max_lag}")
    lags, rs, ns = [], [], []
    for lag in range(-max_lag, max_lag + 1):
        a, b = _pair(x, y, lag)
        lags.append(lag)
        rs.append(_pearson(a, b) if a.size >= 3 else float("nan"))
        ns.append(int(a.size))
    return LagCorrelation(tuple(lags), tuple(rs), tuple(ns))


def _rowwise_pearson(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of A (m, k) with b (k,)."""
    A = A - A.mean(axis=1, keepdims=True)
    b = b - b.mean()
    den = np.sqrt((A * A).sum(axis=1) * (b @ b))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (A @ b) / den, np.nan)


def circular_shift_pvalue(x: Any, y: Any, max_lag: int, n_perm: int = 999, seed: int = 0,
                          statistic: str = "min") -> tuple[float, int]:
    """``p = (1 + #{T(roll(x, s), y) ≤ T(x, y)})/(1 + N)`` with T = min over |ℓ| ≤ L of r(ℓ) (``max``: ≥, max r).

    Shifts s ∈ [L+1, n−L−1]: all of them when there are at most ``n_perm``, else ``n_perm``
    drawn without replacement by ``numpy.random.default_rng(seed)``. Returns (p, N); p is NaN
    when no shift is admissible."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if statistic not in ("min", "max"):
        raise ConfigError(f"statistic must be 'min' or 'max', got {statistic!r}")
    shifts = np.arange(max_lag + 1, n - max_lag)
    if shifts.size == 0 or n < 3:
        return float("nan"), 0
    if shifts.size > n_perm:
        shifts = np.sort(np.random.default_rng(seed).choice(shifts, size=int(n_perm), replace=False))
    obs = np.asarray(lagged_correlation(x, y, max_lag).r)
    idx = (np.arange(n)[None, :] - shifts[:, None]) % n  # row s: x rotated right by s
    X = x[idx]  # (N, n)
    stats = np.full((shifts.size, 2 * max_lag + 1), np.nan)
    for j, lag in enumerate(range(-max_lag, max_lag + 1)):
        if lag >= 0:
            A, b = X[:, : n - lag], y[lag:]
        else:
            A, b = X[:, -lag:], y[: n + lag]
        if b.size >= 3:
            stats[:, j] = _rowwise_pearson(A, b)
    with np.errstate(invalid="ignore"):
        if statistic == "min":
            t_obs = np.nanmin(obs)
            t_perm = np.nanmin(stats, axis=1)
            hits = int(np.sum(t_perm <= t_obs))
        else:
            t_obs = np.nanmax(obs)
            t_perm = np.nanmax(stats, axis=1)
            hits = int(np.sum(t_perm >= t_obs))
    if not np.isfinite(t_obs):
        return float("nan"), int(shifts.size)
    return (1.0 + hits) / (1.0 + shifts.size), int(shifts.size)


def _acf(x: np.ndarray, max_k: int) -> np.ndarray:
    """Sample autocorrelation ρ(k), k = 0…max_k (biased estimator, ρ(0) = 1)."""
    x = x - x.mean()
    den = x @ x
    if den <= 0:
        return np.r_[1.0, np.zeros(max_k)]
    return np.array([1.0] + [float(x[: x.size - k] @ x[k:] / den) for k in range(1, max_k + 1)])


def effective_sample_size(x: Any, y: Any, method: str = "bretherton", max_k: int | None = None) -> float:
    """Bretherton: ``n(1 − ρ_xρ_y)/(1 + ρ_xρ_y)`` (lag-1 ρ); Bartlett: ``n/(1 + 2Σ_k ρ_x(k)ρ_y(k))``; clipped to [2, n]."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if method not in ESS_METHODS:
        raise ConfigError(f"unknown effective-sample-size method {method!r}; choose one of {', '.join(ESS_METHODS)}")
    if n < 4:
        return float(n)
    if method == "bretherton":
        rx, ry = _acf(x, 1)[1], _acf(y, 1)[1]
        prod = rx * ry
        ne = n * (1 - prod) / (1 + prod)
    else:
        K = min(n // 4, n - 2) if max_k is None else int(max_k)
        prods = _acf(x, K)[1:] * _acf(y, K)[1:]
        total = 0.0
        for p in prods:
            if p <= 0:
                break
            total += p
        ne = n / (1 + 2 * total)
    return float(np.clip(ne, 2.0, n))


def ess_pvalue(r: float, n_eff: float) -> float:
    """Two-sided p of Pearson r under H0 with ``t = r·√((n_eff−2)/(1−r²))``, ``n_eff − 2`` dof."""
    stats = require("scipy.stats", "analysis", "the coupling analysis")

    if not np.isfinite(r) or not np.isfinite(n_eff) or n_eff <= 2:
        return float("nan")
    r = float(np.clip(r, -1.0, 1.0))
    if abs(r) >= 1.0:
        return 0.0
    df = n_eff - 2.0
    t = r * np.sqrt(df / (1.0 - r * r))
    return float(2.0 * stats.t.sf(abs(t), df))


def granger_test(y: Any, x: Any, lr: Any = None, max_lag: int = 4, cause: str = "x", effect: str = "y") -> GrangerResult:
    """Nested F-test of ``y_t ~ 1 + y_{t−1…t−p} + lr_t`` against ``+ x_{t−1…t−p}``; p by AIC of the unrestricted model."""
    sm = require("statsmodels.api", "analysis", "the Granger test", "--granger-lag 0 to skip it")
    lagmat = require("statsmodels.tsa.tsatools", "analysis", "the Granger test", "--granger-lag 0 to skip it").lagmat

    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"x and y must be 1-D of equal length, got {x.shape} and {y.shape}")
    n = y.size
    pmax = int(max_lag)
    if pmax < 1:
        raise ConfigError(f"the Granger max lag must be ≥ 1, got {max_lag}")
    use_lr = False
    lr_arr = None
    if lr is not None:
        lr_arr = np.asarray(lr, dtype=np.float64)
        use_lr = lr_arr.shape == y.shape and bool(np.all(np.isfinite(lr_arr))) and float(np.ptp(lr_arr)) > 0
    nan = float("nan")

    def empty(reason: str) -> GrangerResult:
        return GrangerResult(cause, effect, 0, nan, nan, 0, 0, n, use_lr, pmax, (), reason)

    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return empty("non-finite values")
    # smallest sample must leave residual degrees of freedom: n − pmax > 2·pmax + 2 (+1 for lr)
    if n - pmax <= 2 * pmax + 2 + int(use_lr) + 2:
        return empty(f"too few samples ({n}) for max lag {pmax}")

    def design(p: int, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        yl = lagmat(y, maxlag=p, trim="both")[start - p:]  # rows t = start…n−1, columns lag 1…p
        xl = lagmat(x, maxlag=p, trim="both")[start - p:]
        cols = [np.ones((n - start, 1)), yl]
        if use_lr:
            assert lr_arr is not None
            cols.append(lr_arr[start:, None])
        Xr = np.hstack(cols)
        return y[start:], Xr, np.hstack([Xr, xl])

    aics = []
    for p in range(1, pmax + 1):
        Y, _, Xu = design(p, pmax)
        aics.append(float(sm.OLS(Y, Xu).fit().aic))
    p_best = int(np.argmin(aics)) + 1
    Y, Xr, Xu = design(p_best, p_best)
    res_r = sm.OLS(Y, Xr).fit()
    res_u = sm.OLS(Y, Xu).fit()
    f, pval, df_diff = res_u.compare_f_test(res_r)
    return GrangerResult(cause, effect, p_best, float(f), float(pval), int(round(df_diff)), int(round(res_u.df_resid)),
                         int(Y.size), use_lr, pmax, tuple(aics))


def phase_correlations(steps: Any, x: Any, y: Any, phases: Any, degree: int = 3) -> tuple[PhaseCorrelation, ...]:
    """Per phase of ``phases`` (a :class:`~.phases.Phases` on x's steps): lag-0 r of raw and of detrended (x, y)."""
    stats = require("scipy.stats", "analysis", "the coupling analysis")

    steps = np.asarray(steps)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xd = detrend(steps, x, degree) if x.size >= degree + 2 else x - x.mean()
    yd = detrend(steps, y, degree) if y.size >= degree + 2 else y - y.mean()
    label_of = dict(zip(np.asarray(phases.steps).tolist(), phases.labels))
    labels = np.array([label_of.get(int(s), _label_by_bounds(phases, int(s))) for s in steps])
    out = []
    for ph in ("rise", "plateau", "collapse"):
        m = labels == ph
        k = int(m.sum())
        r_raw = _pearson(x[m], y[m]) if k >= 3 else float("nan")
        r_det = _pearson(xd[m], yd[m]) if k >= 3 else float("nan")
        if np.isfinite(r_raw) and k > 3 and abs(r_raw) < 1:
            t = r_raw * np.sqrt((k - 2) / (1 - r_raw**2))
            p = float(2 * stats.t.sf(abs(t), k - 2))
        else:
            p = float("nan")
        out.append(PhaseCorrelation(ph, k, int(steps[m][0]) if k else None, int(steps[m][-1]) if k else None,
                                    r_raw, r_det, p))
    return tuple(out)


def _label_by_bounds(phases: Any, step: int) -> str:
    if not phases.valid or phases.plateau_start is None or phases.plateau_end is None:
        return "unknown"
    if step < phases.plateau_start:
        return "rise"
    return "plateau" if step <= phases.plateau_end else "collapse"


def lag_coupling(x: Series, y: Series, lr: Series | None = None, *, max_lag: int | None = None, degree: int = 3,
                 how: str = "interpolate", n_perm: int = 999, seed: int = 0, ess_method: str = "bretherton",
                 granger_max_lag: int = 4, phases: Any = None) -> CouplingResult:
    """Align x (spectral) and y (loss), detrend both, ``r(ℓ) = Pearson(x_t, y_{t+ℓ})``; peak = argmin_ℓ r(ℓ)."""
    stats = require("scipy.stats", "analysis", "the coupling analysis")

    if how not in ALIGN_MODES:
        raise ConfigError(f"alignment must be one of {', '.join(ALIGN_MODES)}, got {how!r}")
    al = align(x, y, how)
    n = len(al)
    need = max(degree + 2, 6)
    if n < need:
        raise ConfigError(f"only {n} common points between {x.name!r} (W = {x.window}) and {y.name!r} "
                          f"(need ≥ {need}); log the validation loss at more steps or use --align interpolate")
    L = min(10, n // 4) if max_lag is None else int(max_lag)
    if L < 0 or L > n - 3:
        raise ConfigError(f"max lag {L} does not fit {n} aligned samples")
    xd = detrend(al.steps, al.x, degree)
    yd = detrend(al.steps, al.y, degree)
    corr = lagged_correlation(xd, yd, L)
    peak_lag, peak_r = corr.peak
    pos_lag, pos_r = corr.positive_peak
    peak_n = corr.n[corr.lags.index(peak_lag)] if peak_lag is not None else 0
    if peak_lag is not None and peak_n > 2 and abs(peak_r) < 1:
        t = peak_r * np.sqrt((peak_n - 2) / (1 - peak_r**2))
        p_naive = float(2 * stats.t.sf(abs(t), peak_n - 2))
    else:
        p_naive = float("nan")
    if peak_lag is not None:
        a, b = _pair(xd, yd, peak_lag)
        n_eff = effective_sample_size(a, b, ess_method)
    else:
        n_eff = float("nan")
    p_eff = ess_pvalue(peak_r, n_eff)
    p_perm, n_used = circular_shift_pvalue(xd, yd, L, n_perm, seed, "min") if n_perm > 0 else (float("nan"), 0)
    lr_al = values_at(lr, al.steps) if lr is not None and len(lr) else None
    granger = reverse = None
    if granger_max_lag > 0:
        granger = granger_test(yd, xd, lr_al, granger_max_lag, cause=x.name, effect=y.name)
        reverse = granger_test(xd, yd, lr_al, granger_max_lag, cause=y.name, effect=x.name)
    pcs: tuple[PhaseCorrelation, ...] = ()
    if phases is not None:
        pcs = phase_correlations(al.steps, al.x, al.y, phases, degree)
    return CouplingResult(x.name, y.name, x.window, x.group, n, how, degree, corr, peak_lag, peak_r, int(peak_n),
                          pos_lag, pos_r, p_naive, n_eff, p_eff, ess_method, p_perm, n_used, pcs, granger, reverse,
                          al.steps)


# ---------------------------------------------------------------------- runs
def run_coupling(data: Any, window: int | None = None, group: str | None = None, column: str = "gap_ratio",
                 val_column: str | None = None, phase_config: Any = None, with_phases: bool = True,
                 **kwargs: Any) -> CouplingResult:
    """:func:`lag_coupling` for one (W, group) of a run (a :class:`~.series.RunData` or a path); the target is
    ``val_column`` or else ``val_loss``, else ``test_loss``; phases from :func:`~.phases.run_phases`."""
    from .phases import detect_phases
    from ..io.run import RunData, load_run

    if not isinstance(data, RunData):
        data = load_run(data)
    x = data.spectral_series(column, window, group)
    y = data.validation(val_column)
    ph = detect_phases(x.steps, x.values, phase_config) if with_phases else None
    return lag_coupling(x, y, data.learning_rate(), phases=ph, **kwargs)


def lag_flip(data: Any, windows: Sequence[int] | None = None, group: str | None = None, column: str = "gap_ratio",
             val_column: str | None = None, **kwargs: Any) -> LagFlip:
    """Peak lag and its sign for every window size W (default: all W of the run); flip = signs differ."""
    from ..io.run import RunData, load_run

    if not isinstance(data, RunData):
        data = load_run(data)
    ws = tuple(sorted(int(w) for w in windows)) if windows else data.windows
    return LagFlip(tuple(run_coupling(data, W, group, column, val_column, **kwargs) for W in ws))
