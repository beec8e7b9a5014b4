"""Commutator defect of two SGD steps, and projections onto subspaces (METHODS.md §6).

Everything here is stateless and works on *lists of tensors* θ = [θ_1, …, θ_n] (one per
parameter) and on loss closures ``loss(θ) -> scalar``, so the same code serves a toy
quadratic in a test and a transformer through :func:`torch.func.functional_call` in
:class:`~spectral_edge.probes.defect.CommutatorDefectProbe`.

Definition (plain SGD, no optimizer state, no weight decay, step η)::

    θ_AB = θ − η g_A(θ) − η g_B(θ − η g_A(θ))
    θ_BA = θ − η g_B(θ) − η g_A(θ − η g_B(θ))
    D    = ‖θ_AB − θ_BA‖ / (‖η g_A(θ)‖ · ‖η g_B(θ)‖)

To first order in η, θ_AB − θ_BA = η² (H_B g_A − H_A g_B), so D ≈ ‖H_B g_A − H_A g_B‖ /
(‖g_A‖‖g_B‖) does not depend on η; D = 0 exactly when the two gradient fields commute
(e.g. quadratics with commuting Hessians).

Numerics: θ_AB − θ_BA is formed as the algebraically identical
``η[(g_B(θ) − g_B(θ_A)) − (g_A(θ) − g_A(θ_B))]`` with θ_A = θ − ηg_A, θ_B = θ − ηg_B. The
authors subtracted the two full parameter vectors, which cancels all digits of θ (‖θ‖ ≫
η²‖Hg‖): in float32 that leaves a rounding floor of ~1e-7·‖θ‖, comparable to the quantity
itself. Differencing gradients cancels only the O(η‖H‖) relative change of a gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError

LossClosure = Callable[[list[torch.Tensor]], torch.Tensor]

__all__ = [
    "DefectSample",
    "closure_grads",
    "commutator_defect",
    "flat_norm",
    "subspace_fraction",
    "random_subspace_fraction",
    "random_subspace_expected",
    "orthonormal_rows",
]


@dataclass(frozen=True)
class DefectSample:
    """One commutator measurement.

    ``defect``: D (NaN if a gradient is zero). ``delta``: θ_AB − θ_BA per tensor (same
    shapes as θ). ``norm_a``/``norm_b``: ‖ηg_A(θ)‖, ‖ηg_B(θ)‖. ``grad_cos``: cos(g_A, g_B).
    ``delta_norm``: ‖θ_AB − θ_BA‖.
    """

    defect: float
    delta: list[torch.Tensor]
    delta_norm: float
    norm_a: float
    norm_b: float
    grad_cos: float


def flat_norm(tensors: Sequence[torch.Tensor]) -> float:
    """``‖vec(t_1, …, t_n)‖`` accumulated in float64."""
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def _flat_dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    return sum(float((x.detach().double() * y.detach().double()).sum()) for x, y in zip(a, b))


def closure_grads(loss: LossClosure, theta: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``∇_θ loss(θ)`` as a list shaped like θ (zeros for tensors the loss does not use).

    Differentiates fresh leaves that share θ's storage, with :func:`torch.autograd.grad`,
    so no ``.grad`` attribute anywhere is read or written."""
    leaves = [t.detach().requires_grad_(True) for t in theta]
    with torch.enable_grad():
        value = loss(leaves)
        if value.numel() != 1:
            raise ConfigError(f"the loss closure must return a scalar, got shape {tuple(value.shape)}")
        grads = torch.autograd.grad(value, leaves, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g.detach() for t, g in zip(theta, grads)]


def commutator_defect(loss_a: LossClosure, loss_b: LossClosure, theta: Sequence[torch.Tensor],
                      eta: float = 1e-3) -> DefectSample:
    """``D = ‖θ_AB − θ_BA‖ / (‖ηg_A‖‖ηg_B‖)`` for two loss closures at θ (see module docs).

    Costs four gradient evaluations: g_A(θ), g_B(θ), g_B(θ − ηg_A), g_A(θ − ηg_B).
    θ is read, never modified. Returns a :class:`DefectSample`.
    """
    if not eta > 0:
        raise ConfigError(f"the SGD step eta must be positive, got {eta}")
    theta = [t.detach() for t in theta]
    g_a = closure_grads(loss_a, theta)
    g_b = closure_grads(loss_b, theta)
    theta_a = [t - eta * g for t, g in zip(theta, g_a)]  # θ − ηg_A
    theta_b = [t - eta * g for t, g in zip(theta, g_b)]  # θ − ηg_B
    g_b_at_a = closure_grads(loss_b, theta_a)
    g_a_at_b = closure_grads(loss_a, theta_b)
    delta = [eta * ((gb - gba) - (ga - gab)) for ga, gb, gba, gab in zip(g_a, g_b, g_b_at_a, g_a_at_b)]
    na, nb = eta * flat_norm(g_a), eta * flat_norm(g_b)
    dn = flat_norm(delta)
    denom = na * nb
    defect = dn / denom if denom > 0 else float("nan")
    gcos = _flat_dot(g_a, g_b) * eta * eta / denom if denom > 0 else float("nan")
    return DefectSample(defect=defect, delta=delta, delta_norm=dn, norm_a=na, norm_b=nb, grad_cos=gcos)


def subspace_fraction(delta: Sequence[torch.Tensor], basis: Sequence[torch.Tensor | None]) -> float:
    """``‖Bᵀδ‖ / ‖δ‖``: the fraction of δ's norm inside span(B).

    ``basis[i]`` is (k_i, numel of δ_i) with orthonormal rows, or None (no directions in that
    tensor); directions of different tensors are orthogonal by construction, so the blocks
    together form one orthonormal basis of Σk_i directions."""
    total = flat_norm(delta)
    if total == 0:
        return float("nan")
    sq = 0.0
    for d, B in zip(delta, basis):
        if B is None or B.numel() == 0:
            continue
        c = B.double() @ d.detach().double().reshape(-1)  # (k_i,)
        sq += float(c.pow(2).sum())
    return math.sqrt(sq) / total


def random_subspace_expected(k: int, p: int) -> float:
    """``√(k/p)``: the typical fraction of a fixed vector inside a random k-dim subspace of R^p
    (``E‖Qᵀδ‖²/‖δ‖² = k/p`` exactly)."""
    if p <= 0 or k < 0:
        raise ConfigError(f"need p > 0 and k ≥ 0, got k={k}, p={p}")
    return math.sqrt(min(k, p) / p)


def random_subspace_fraction(k: int, p: int, n: int, seed: int | np.random.Generator) -> np.ndarray:
    """n draws of ``‖Qᵀδ‖/‖δ‖`` for Q a uniformly random k-dim subspace of R^p: shape (n,).

    Exact in distribution without forming Q: ``‖Qᵀδ‖²/‖δ‖² ~ Beta(k/2, (p−k)/2)``."""
    if not 0 < k <= p:
        raise ConfigError(f"need 0 < k ≤ p, got k={k}, p={p}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if k == p:
        return np.ones(n)
    return np.sqrt(rng.beta(k / 2.0, (p - k) / 2.0, size=n))


def orthonormal_rows(vectors: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """Orthonormal rows spanning the rows of ``vectors`` (k, n), via QR in float64;
    directions with a relative R diagonal below ``rtol`` (dependent rows) are dropped."""
    v = vectors.detach().double()
    if v.ndim != 2:
        raise ConfigError(f"orthonormal_rows needs a (k, n) matrix, got shape {tuple(v.shape)}")
    if v.shape[0] == 0:
        return v
    Q, R = torch.linalg.qr(v.T, mode="reduced")  # Q (n, k)
    diag = R.diagonal().abs()
    keep = diag > rtol * max(float(diag.max()), 1e-300)
    return Q[:, keep].T.contiguous()
