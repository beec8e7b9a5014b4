"""Trajectory PCA through Gram matrices, and its random-walk null (METHODS.md §6).

A trajectory of T snapshots x_0 … x_{T−1} ∈ R^D (D up to millions, T up to hundreds) is
analysed through its T×T Gram matrix ``G = X Xᵀ``: centering is ``Gc = H G H`` with
``H = I − 11ᵀ/T``, the PCA variances are the eigenvalues of Gc (up to 1/(T−1)), and the
principal directions are ``v_j = X_cᵀ u_j / σ_j``. Nothing of size D×D is ever formed.

The random-walk null (the authors' control for the T ≪ D bias of PC1%): increments with
the observed norms s_t = ‖x_t − x_{t−1}‖ but independent uniformly random directions. The
Gram of n independent uniform unit vectors in R^D is simulated exactly, in O(n²) numbers,
from the Bartlett decomposition of a Wishart matrix, so the null costs nothing even for
D = 10⁶.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "centering",
    "centered_gram",
    "gram_eig",
    "explained_fractions",
    "directions_from_gram",
    "step_norms_from_gram",
    "random_unit_gram",
    "random_walk_pc1",
    "row_normalized_gram",
]


def centering(T: int) -> np.ndarray:
    """``H = I − 11ᵀ/T``, (T, T)."""
    return np.eye(T) - np.full((T, T), 1.0 / T)


def centered_gram(G: np.ndarray) -> np.ndarray:
    """``Gc = H G H``: the Gram matrix of the mean-centered rows, (T, T)."""
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ConfigError(f"a Gram matrix must be square, got shape {G.shape}")
    H = centering(G.shape[0])
    return H @ G @ H


def gram_eig(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues λ (descending, clipped at 0) and eigenvectors U (columns) of a Gram matrix;
    each column's sign makes its largest-magnitude entry positive."""
    G = np.asarray(G, dtype=np.float64)
    if not np.all(np.isfinite(G)):
        raise ConfigError("the Gram matrix holds NaN or Inf")
    lam, U = np.linalg.eigh(0.5 * (G + G.T))
    order = np.argsort(lam)[::-1]
    lam, U = np.clip(lam[order], 0.0, None), U[:, order]
    flip = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])])
    flip[flip == 0] = 1.0
    return lam, U * flip


def explained_fractions(lam: np.ndarray) -> np.ndarray:
    """``λ_j / Σλ`` (all NaN for an all-zero spectrum)."""
    lam = np.asarray(lam, dtype=np.float64)
    total = lam.sum()
    return lam / total if total > 0 else np.full_like(lam, np.nan)


def directions_from_gram(X: "np.ndarray | torch.Tensor", lam: np.ndarray, U: np.ndarray, k: int):
    """Unit directions ``v_j = Xᵀ u_j / σ_j`` for j = 1…k with σ_j > 0: (k', D), same type as X.

    X (T, D) must be the matrix whose Gram gave (λ, U) (centered rows for PCA)."""
    sig = np.sqrt(np.asarray(lam[:k], dtype=np.float64))
    keep = sig > 1e-12 * max(float(sig[0]) if sig.size else 0.0, 1e-300)
    C = (U[:, :k] / np.where(sig > 0, sig, 1.0))[:, keep].T  # (k', T)
    if isinstance(X, np.ndarray):
        return C @ X
    import torch

    return torch.from_numpy(C).to(dtype=torch.float64) @ X.to(torch.float64)


def step_norms_from_gram(G: np.ndarray) -> np.ndarray:
    """``s_t = ‖x_t − x_{t−1}‖`` for t = 1…T−1 from the Gram of the snapshots: (T−1,)."""
    G = np.asarray(G, dtype=np.float64)
    d = np.diag(G)
    sq = d[1:] + d[:-1] - 2.0 * np.diag(G, 1)
    return np.sqrt(np.clip(sq, 0.0, None))


def random_unit_gram(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Gram (n, n) of n independent uniform unit vectors in R^dim, exact in distribution.

    Bartlett: for Z (n, dim) standard Gaussian, ``ZZᵀ = LLᵀ`` in distribution with L lower
    triangular, ``L_ii = √χ²_{dim−i}`` (i = 0…n−1), ``L_ij ~ N(0, 1)`` below the diagonal;
    normalising rows gives unit vectors. Needs n ≤ dim; otherwise Z is drawn explicitly."""
    if n <= 0:
        return np.zeros((0, 0))
    if n > dim:
        Z = rng.standard_normal((n, dim))
        Z /= np.linalg.norm(Z, axis=1, keepdims=True)
        return Z @ Z.T
    L = np.tril(rng.standard_normal((n, n)), -1)
    L[np.diag_indices(n)] = np.sqrt(rng.chisquare(dim - np.arange(n)))
    W = L @ L.T
    s = np.sqrt(np.diag(W))
    return W / np.outer(s, s)


def random_walk_pc1(step_norms: np.ndarray, dim: int, n_trials: int, seed: int | np.random.Generator,
                    centered: bool = True) -> np.ndarray:
    """PC1 fraction of random walks x_0 = 0, x_t = Σ_{i≤t} s_i u_i with the given step norms
    and uniform random unit directions u_i in R^dim: shape (n_trials,)."""
    s = np.asarray(step_norms, dtype=np.float64)
    n = s.size
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if n == 0:
        return np.full(n_trials, np.nan)
    A = np.tril(np.ones((n + 1, n)), -1) * s  # (T, n): row t sums increments 1..t
    out = np.empty(n_trials)
    for k in range(n_trials):
        G = A @ random_unit_gram(n, dim, rng) @ A.T
        lam = gram_eig(centered_gram(G) if centered else G)[0]
        out[k] = explained_fractions(lam)[0]
    return out


def row_normalized_gram(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gram of the unit-normalised rows, ``G_ij/(‖x_i‖‖x_j‖)``, and the row norms ‖x_i‖.
    Zero rows stay zero."""
    G = np.asarray(G, dtype=np.float64)
    n = np.sqrt(np.clip(np.diag(G), 0.0, None))
    inv = np.where(n > 0, 1.0 / np.where(n > 0, n, 1.0), 0.0)
    return G * np.outer(inv, inv), n
