"""Gradient transforms: pure math on flat vectors and on orthonormal bases (METHODS.md §8).

Every function here is stateless, takes and returns ``torch`` tensors, computes in float64
and never touches an RNG it is not given. A basis is a matrix ``V`` of shape (k, P) with
orthonormal rows; ``P_V = VᵀV`` is the orthogonal projector onto its span.

- :func:`remove_span` ``g − s·P_V g``: removes (a fraction s of) the part of g inside
  span(V) (``remove-sed``, ``remove-random``);
- :func:`keep_span` ``g − s·(I − P_V) g``: removes (a fraction s of) the part of g outside
  span(V) (the papers' ``project`` and ``penalty`` with V = the execution basis B, and
  ``keep-sed``, ``keep-random``);
- :func:`orthogonal_unit` ``(v − P_V v)/‖v − P_V v‖``: the direction of the kick and of the
  noise;
- :func:`top_right_singular` the top-k right singular vectors of a stack of gradients (raw
  SVD, no centring: the SED basis of the authors' rank-k restriction);
- :func:`random_orthonormal` k orthonormal rows from a seeded Gaussian (QR).

At s = 1, :func:`remove_span` and :func:`keep_span` are the projectors ``I − P_V`` and
``P_V`` (idempotent, symmetric, complementary); at s = 0 they return g unchanged.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError

__all__ = ["remove_span", "keep_span", "orthogonal_unit", "top_right_singular", "random_orthonormal",
           "median_index"]


def _check(g: torch.Tensor, V: torch.Tensor) -> None:
    if V.ndim != 2 or g.ndim != 1 or V.shape[1] != g.shape[0]:
        raise ConfigError(f"a basis of shape {tuple(V.shape)} does not act on a vector of shape {tuple(g.shape)}")


def _span_part(g: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``P_V g = Vᵀ(V g)`` in float64."""
    _check(g, V)
    V = V.double()
    return V.T @ (V @ g.double())


def remove_span(g: torch.Tensor, V: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """``g − s·VᵀV g`` (float64): the component of g inside span(V), scaled by 1 − s."""
    return g.double() - float(strength) * _span_part(g, V)


def keep_span(g: torch.Tensor, V: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """``g − s·(I − VᵀV) g`` (float64): the component of g outside span(V), scaled by 1 − s."""
    g64 = g.double()
    return g64 - float(strength) * (g64 - _span_part(g, V))


def orthogonal_unit(v: torch.Tensor, V: torch.Tensor | None) -> torch.Tensor | None:
    """``(v − VᵀVv) / ‖v − VᵀVv‖`` (float64), or None when that part of v is (numerically) zero."""
    r = v.double() if V is None else v.double() - _span_part(v, V)
    n = float(r.norm())
    if not math.isfinite(n) or n <= 1e-15 * max(float(v.double().norm()), 1e-300):
        return None
    return r / n


def top_right_singular(G: torch.Tensor, k: int) -> torch.Tensor:
    """(k, P) float64: the top-k right singular vectors of the rows of ``G`` (W, P), raw SVD
    (no centring), as the authors' rank-k SED basis. Needs k ≤ W."""
    if G.ndim != 2:
        raise ConfigError(f"top_right_singular needs a (W, P) matrix, got shape {tuple(G.shape)}")
    if not 1 <= int(k) <= min(G.shape):
        raise ConfigError(f"rank k = {k} must be between 1 and min(W, P) = {min(G.shape)}")
    _, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    return Vh[: int(k)].contiguous()


def random_orthonormal(p: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """(k, p) float64 orthonormal rows: QR of a (p, k) standard Gaussian drawn from ``generator``
    (a uniformly random k-dimensional subspace of R^p)."""
    if not 1 <= int(k) <= int(p):
        raise ConfigError(f"a random basis needs 1 ≤ k ≤ p, got k = {k}, p = {p}")
    G = torch.randn(int(p), int(k), generator=generator, dtype=torch.float64)
    Q, _ = torch.linalg.qr(G, mode="reduced")
    return Q.T.contiguous()


def median_index(values: list[float]) -> int:
    """Index of the sample the authors call the median: ``argsort(values)[len // 2]`` (the upper
    median for an even count), NaN sorted last."""
    order = sorted(range(len(values)), key=lambda i: (math.isnan(values[i]), values[i]))
    return order[len(values) // 2]
