"""Functional modes, the pure math (METHODS.md §7): class-averaged profiles of a response over
the pairs (a, b) of modular arithmetic, their Fourier power spectra in the task's symmetry
bases, discrete-log tables, and the ridge R² of feature families. numpy only, no torch.

A *response* is one number per pair (a, b), e.g. f_k(a, b) = ‖Δh(a, b)‖² when the model is
nudged along the update direction v_k (:mod:`spectral_edge.analysis.modes` computes it).
Folding it into a spectrum:

1. **classes**: each pair gets a class q in a basis (:func:`basis_classes`): ``add`` q = a+b,
   ``sub`` q = a−b, ``mul`` q = a·b (all mod p, period p), ``dlog`` q = (log_g a + log_g b)
   mod (p−1) with g the smallest primitive root of p (period p−1; pairs with a or b ≡ 0 have
   no class). An "output" basis is just the task's labels, passed in as the classes;
2. **profile** (:func:`class_profile`): the mean response of each class q = 0…period−1. A class
   with no pair (q = 0 of ``mul`` when a, b ≠ 0; a small test split) gets the mean of the
   other classes' means: it adds nothing but DC, which is dropped;
3. **spectrum** (:func:`power_spectrum`): DFT power |Σ_q profile(q)·e^{−2πiωq/period}|² at
   ω = 1…⌊period/2⌋ (no DC), normalised to sum 1 (the authors' convention: for an even
   period the Nyquist term ω = period/2 is one term like the others). :class:`Spectrum`
   holds the shares, the peak ω, the top-1 share F, the uniform level 1/⌊period/2⌋ and F
   over it, and the participation ratio 1/Σ share² (the effective number of modes: 1 for a
   pure mode, ⌊period/2⌋ for white noise). A profile with no power at all (a constant) has
   NaN shares.

**Feature families** (the x² + y² analysis, :func:`feature_families`), for pairs with a, b ≢ 0:
``add`` cos/sin(2πω(a+b)/p) at ω = 1…⌊p/2⌋ (96 features at p = 97); ``dlog`` cos/sin(2πω·q/(p−1))
with q the dlog class, ω = 1…⌊(p−1)/2⌋ (96); ``combined`` both (192); ``cross`` every product
of an additive and a dlog feature at ω = 1…``n_cross`` (20 × 20 = 400 at n_cross = 10);
``full`` combined and cross (592). :func:`ridge_r2` is the in-sample R² of a ridge regression
with an unpenalised intercept (scikit-learn's ``Ridge(alpha)`` with ``fit_intercept=True``; α = 1
by default, as the authors' script). Features are ordered by ω, cosine before sine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["ALGEBRAIC_BASES", "FAMILIES", "Spectrum", "is_prime", "primitive_root", "discrete_log_table",
           "basis_classes", "class_profile", "power_spectrum", "spectra_of", "fourier_features",
           "feature_families", "ridge_r2", "family_r2"]

#: bases whose classes follow from (a, b, p) alone
ALGEBRAIC_BASES = ("add", "sub", "mul", "dlog")
#: feature families of :func:`feature_families`, in order
FAMILIES = ("add", "dlog", "combined", "cross", "full")


def is_prime(n: int) -> bool:
    """True when the integer ``n`` is prime (trial division; n is a modulus, small)."""
    n = int(n)
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def _prime_factors(n: int) -> list[int]:
    out, f = [], 2
    while f * f <= n:
        if n % f == 0:
            out.append(f)
            while n % f == 0:
                n //= f
        f += 1
    if n > 1:
        out.append(n)
    return out


def primitive_root(p: int) -> int:
    """The smallest primitive root g of the prime ``p`` (g^k runs over every nonzero residue);
    ConfigError when p is not prime (the discrete log needs a prime modulus)."""
    p = int(p)
    if not is_prime(p):
        raise ConfigError(f"p = {p} is not prime: the discrete-log basis needs a prime modulus")
    if p == 2:
        return 1
    factors = _prime_factors(p - 1)
    for g in range(2, p):
        if all(pow(g, (p - 1) // q, p) != 1 for q in factors):
            return g
    raise AssertionError("unreachable: every prime has a primitive root")  # pragma: no cover


def discrete_log_table(p: int, root: int | None = None) -> np.ndarray:
    """(p,) int64: ``table[x] = k`` with root^k ≡ x (mod p), k ∈ [0, p−2]; ``table[0] = −1``.
    ``root``: a primitive root of p (default: the smallest); ConfigError if it is not one."""
    p = int(p)
    g = primitive_root(p) if root is None else int(root)
    table = np.full(p, -1, dtype=np.int64)
    x = 1
    for k in range(p - 1):
        if table[x] != -1:
            raise ConfigError(f"{g} is not a primitive root of {p} (its powers repeat after {k} steps)")
        table[x] = k
        x = x * g % p
    return table


def _ints(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"{what} must be a 1-D array of integers, got shape {arr.shape} and dtype {arr.dtype}")
    return arr.astype(np.int64)


def basis_classes(basis: str, a: Any, b: Any, p: int, root: int | None = None) -> tuple[np.ndarray, int, np.ndarray]:
    """(classes (N,), period, mask (N,) bool) of the pairs (a, b) in ``basis`` (see module
    docs); ``mask`` is False where a pair has no class (dlog with a or b ≡ 0; its class is 0)."""
    a, b, p = _ints(a, "a") % int(p), _ints(b, "b") % int(p), int(p)
    if a.shape != b.shape:
        raise ConfigError(f"a and b differ in length: {a.shape[0]} and {b.shape[0]}")
    everywhere = np.ones(a.shape, dtype=bool)
    if basis == "add":
        return (a + b) % p, p, everywhere
    if basis == "sub":
        return (a - b) % p, p, everywhere
    if basis == "mul":
        return (a * b) % p, p, everywhere
    if basis == "dlog":
        table = discrete_log_table(p, root)
        mask = (a != 0) & (b != 0)
        q = np.where(mask, (table[a] + table[b]) % (p - 1), 0)
        return q, p - 1, mask
    raise ConfigError(f"unknown basis {basis!r}; choose one of {', '.join(ALGEBRAIC_BASES)}")


def class_profile(values: Any, classes: Any, period: int) -> tuple[np.ndarray, np.ndarray]:
    """(profile, counts): the mean of ``values`` (N,) or (K, N) over each class q ∈ [0, period)
    → (period,) or (K, period), and the number of pairs per class (period,). Empty classes get
    the mean of the other classes' means (no power beyond DC)."""
    v = np.asarray(values, dtype=np.float64)
    q = _ints(classes, "classes")
    period = int(period)
    if period < 2:
        raise ConfigError(f"period must be ≥ 2, got {period}")
    if v.shape[-1] != q.shape[0] or v.ndim not in (1, 2):
        raise ConfigError(f"values of shape {v.shape} do not match {q.shape[0]} classes")
    if q.size and (q.min() < 0 or q.max() >= period):
        raise ConfigError(f"classes must lie in [0, {period}), got {q.min()}…{q.max()}")
    counts = np.bincount(q, minlength=period)
    if not counts.any():
        raise ConfigError("no pair to average: every class is empty")
    onehot = np.zeros((q.shape[0], period))
    onehot[np.arange(q.shape[0]), q] = 1.0
    sums = v @ onehot  # (period,) or (K, period)
    full = counts > 0
    prof = np.where(full, sums / np.maximum(counts, 1), 0.0)
    fill = prof[..., full].mean(axis=-1, keepdims=True)
    return np.where(full, prof, fill), counts


@dataclass(frozen=True)
class Spectrum:
    """Normalised Fourier power of one profile at ω = 1…⌊period/2⌋ (see module docs)."""

    period: int
    shares: np.ndarray  # (⌊period/2⌋,) share of ω = index + 1; NaN when the profile had no power

    @property
    def n_freq(self) -> int:
        return int(self.shares.shape[0])

    @property
    def omega(self) -> int | None:
        """The peak frequency (the smallest on ties); None without power."""
        return None if not np.isfinite(self.shares).all() else int(np.argmax(self.shares)) + 1

    @property
    def F(self) -> float:
        """Top-1 share: the largest fraction of the power at one frequency."""
        return float(np.max(self.shares)) if np.isfinite(self.shares).all() else float("nan")

    @property
    def uniform(self) -> float:
        """The share of every frequency under a flat spectrum: 1/⌊period/2⌋."""
        return 1.0 / self.n_freq

    @property
    def ratio_to_uniform(self) -> float:
        return self.F / self.uniform

    @property
    def modes(self) -> float:
        """Participation ratio 1/Σ share²: the effective number of frequencies."""
        return float(1.0 / np.sum(self.shares ** 2)) if np.isfinite(self.shares).all() else float("nan")

    def share_at(self, omega: int) -> float:
        """The share of frequency ``omega`` (1…⌊period/2⌋)."""
        if not 1 <= int(omega) <= self.n_freq:
            raise ConfigError(f"omega must lie in 1…{self.n_freq} for period {self.period}, got {omega}")
        return float(self.shares[int(omega) - 1])

    def to_dict(self, shares: bool = False) -> dict[str, Any]:
        """``omega``, ``F``, ``ratio_to_uniform``, ``modes`` (and every share with ``shares``)."""
        out: dict[str, Any] = {"omega": self.omega, "F": self.F, "ratio_to_uniform": self.ratio_to_uniform,
                               "modes": self.modes, "period": self.period}
        if shares:
            out["shares"] = [float(s) for s in self.shares]
        return out


def power_spectrum(profile: Any) -> np.ndarray:
    """Shares of the DFT power of ``profile`` (…, period) at ω = 1…⌊period/2⌋, summing to 1
    along the last axis (NaN where the profile is constant)."""
    x = np.asarray(profile, dtype=np.float64)
    period = x.shape[-1]
    if period < 2:
        raise ConfigError(f"a profile needs a period ≥ 2, got {period}")
    power = np.abs(np.fft.rfft(x, axis=-1)[..., 1:period // 2 + 1]) ** 2
    total = power.sum(axis=-1, keepdims=True)
    scale = np.abs(x).max(axis=-1, keepdims=True) ** 2 * period  # rounding level of a constant profile
    ok = total > 1e-24 * np.maximum(scale, 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, power / np.where(ok, total, 1.0), np.nan)


def spectra_of(values: Any, classes: Any, period: int) -> list[Spectrum]:
    """One :class:`Spectrum` per row of ``values`` (K, N) (or one for (N,)), folded by ``classes``."""
    v = np.asarray(values, dtype=np.float64)
    rows = v[None] if v.ndim == 1 else v
    prof, _ = class_profile(rows, classes, period)
    return [Spectrum(int(period), s) for s in power_spectrum(prof)]


def fourier_features(q: Any, period: int, omegas: Sequence[int]) -> np.ndarray:
    """(N, 2·len(omegas)): cos(2πωq/period), sin(2πωq/period) for each ω in order."""
    q = _ints(q, "q").astype(np.float64)
    w = np.asarray(list(omegas), dtype=np.float64)
    ang = 2.0 * np.pi * q[:, None] * w[None, :] / float(period)  # (N, n)
    out = np.empty((q.shape[0], 2 * w.shape[0]))
    out[:, 0::2] = np.cos(ang)
    out[:, 1::2] = np.sin(ang)
    return out


def feature_families(a: Any, b: Any, p: int, n_cross: int = 10, root: int | None = None) -> dict[str, np.ndarray]:
    """The five feature families of the module docs for pairs (a, b), all with a, b ≢ 0 (mod p):
    name → (N, n_features)."""
    p = int(p)
    qa, _, _ = basis_classes("add", a, b, p)
    qd, _, mask = basis_classes("dlog", a, b, p, root)
    if not mask.all():
        raise ConfigError("the feature families need a, b ≢ 0 (mod p): the discrete log of 0 does not exist")
    n_add, n_dlog = p // 2, (p - 1) // 2
    if not 1 <= int(n_cross) <= min(n_add, n_dlog):
        raise ConfigError(f"n_cross must lie in 1…{min(n_add, n_dlog)} at p = {p}, got {n_cross}")
    add = fourier_features(qa, p, range(1, n_add + 1))
    dlog = fourier_features(qd, p - 1, range(1, n_dlog + 1))
    m = 2 * int(n_cross)
    cross = (add[:, :m, None] * dlog[:, None, :m]).reshape(add.shape[0], m * m)
    combined = np.hstack([add, dlog])
    return {"add": add, "dlog": dlog, "combined": combined, "cross": cross, "full": np.hstack([combined, cross])}


def ridge_r2(X: Any, y: Any, alpha: float = 1.0) -> np.ndarray | float:
    """In-sample R² of ridge regression of ``y`` (N,) or (N, K) on ``X`` (N, d) with an
    unpenalised intercept and penalty ``alpha``·‖w‖²: a float, or (K,). NaN for a constant y."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(y, dtype=np.float64)
    one = Y.ndim == 1
    Y = Y[:, None] if one else Y
    if X.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ConfigError(f"X of shape {X.shape} and y of shape {np.shape(y)} do not match")
    if not (alpha >= 0 and np.isfinite(alpha)):
        raise ConfigError(f"alpha must be a finite number ≥ 0, got {alpha}")
    Xc = X - X.mean(axis=0)
    Yc = Y - Y.mean(axis=0)
    A = Xc.T @ Xc + float(alpha) * np.eye(X.shape[1])
    w = np.linalg.lstsq(A, Xc.T @ Yc, rcond=None)[0] if alpha == 0 else np.linalg.solve(A, Xc.T @ Yc)
    ss_res = ((Yc - Xc @ w) ** 2).sum(axis=0)
    ss_tot = (Yc ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    return float(r2[0]) if one else r2


def family_r2(values: Any, a: Any, b: Any, p: int, alpha: float = 1.0, n_cross: int = 10,
              root: int | None = None, families: Sequence[str] = FAMILIES) -> dict[str, Any]:
    """family → in-sample ridge R² of ``values`` (N,) or (K, N) on that family's features
    (a float, or (K,) per row)."""
    feats = feature_families(a, b, p, n_cross, root)
    v = np.asarray(values, dtype=np.float64)
    Y = v if v.ndim == 1 else v.T
    unknown = [f for f in families if f not in feats]
    if unknown:
        raise ConfigError(f"unknown feature families {unknown}; choose from {', '.join(FAMILIES)}")
    return {f: ridge_r2(feats[f], Y, alpha) for f in families}

