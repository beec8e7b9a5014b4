"""Execution-manifold probe: per-matrix PCA of the weight trajectory (METHODS.md §6).

For every selected matrix W (default: W_Q, W_K, W_V, W_O of every layer, the
``attention`` preset) the probe keeps snapshots ``x_t = vec(W_t − W_0)`` every ``every``
steps (x_0 = 0 at the first snapshot) and runs a PCA *mean-centered over time* on them:
PC1% = 100·λ_1/Σλ of the centered snapshot matrix. In grokking runs PC1 holds 63–83% of
the variance (37–54% in runs that do not grok). The trajectory's dimension: ``dim90`` /
``dim95``, the principal components needed for 90% / 95% of that variance (mean over the
matrices; the papers: execution manifolds of dimension 3–4).

Null: a random walk with the observed increment norms ‖x_t − x_{t−1}‖ in uniformly random
directions of the same dimension (:func:`spectral_edge.functional.pca.random_walk_pc1`,
exact in distribution, O(T²) per trial); its PC1% is the level that T ≪ D alone produces.

:meth:`basis` gives the top ``n_components`` principal directions of every matrix
(orthonormal rows; directions of different matrices live in different coordinates, so
together they are orthonormal): the execution subspace that
:class:`~spectral_edge.probes.defect.CommutatorDefectProbe` projects on.

Cost per call: one copy of the selected matrices, T dot products per matrix for the Gram
update, an eigendecomposition of a T×T matrix per matrix, ``null_trials`` T×T simulations,
and (for the basis) n_components·T·D multiply-adds. Memory: every snapshot is kept, in
``dtype`` (float32 default): the reference model's 8 attention matrices are 131,072 numbers,
0.5 MB per snapshot, 50 MB for 100 snapshots (10k steps at every = 100). Small models only;
``max_snapshots`` bounds it (then the PCA covers the most recent snapshots, W_0 kept).
Measured on the reference model (one thread of a shared 2-core CPU): ≈ 20 ms per call at
30 snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, StateError
from ..functional.defect import orthonormal_rows
from ..functional.pca import (
    centered_gram,
    directions_from_gram,
    explained_fractions,
    gram_eig,
    random_walk_pc1,
    step_norms_from_gram,
)
from ..functional.rng import stable_key
from ..selection import Selection
from ._isolation import resolve_model, selected
from .base import Probe, ProbeContext

__all__ = ["ExecutionManifoldProbe", "ATTENTION"]

ATTENTION = Selection(preset="attention")


class ExecutionManifoldProbe(Probe):
    """Per-matrix PCA of ``vec(W_t − W_0)`` with a random-walk null (see module docs).

    Parameters
    ----------
    model: take W_0 from this model now (at ``start_step``); default: the monitor's model,
        W_0 at the first call.
    every: snapshot every this many optimizer steps.
    selection: which matrices (default ``Selection(preset="attention")``; explicit patterns
        work too, e.g. ``Selection(include=("*q_proj.weight",))``). Only tensors with ≥ 2
        dimensions are used (biases are skipped).
    n_components: principal directions per matrix in :meth:`basis` (2, the papers').
    null_trials: random walks per matrix and call for the null PC1%.
    seed: seed of the null.
    max_snapshots: keep at most this many snapshots besides W_0 (None: all).
    dtype: storage dtype of snapshots (float32 default; float64 doubles the memory).
    per_matrix: also report PC1% and the null of every matrix (keys ``pc1_pct.<name>``).
    start_step: the step of W_0 when ``model`` is given.
    """

    name = "manifold"

    def __init__(self, model: torch.nn.Module | None = None, *, every: Any = 100, selection: Selection | None = None,
                 n_components: int = 2, null_trials: int = 10, seed: int = 0, max_snapshots: int | None = None,
                 dtype: torch.dtype = torch.float32, per_matrix: bool = True, start_step: int = 0,
                 name: str = "manifold"):
        super().__init__(every)
        if int(n_components) < 1:
            raise ConfigError(f"n_components must be ≥ 1, got {n_components}")
        if max_snapshots is not None and int(max_snapshots) < 3:
            raise ConfigError(f"max_snapshots must be ≥ 3 (or None), got {max_snapshots}")
        self.model = model
        self.selection = selection or ATTENTION
        self.n_components = int(n_components)
        self.null_trials = int(null_trials)
        self.seed = int(seed)
        self.max_snapshots = None if max_snapshots is None else int(max_snapshots)
        self.dtype = dtype
        self.per_matrix = bool(per_matrix)
        self.name = str(name)
        self.names: list[str] = []
        self.w0: dict[str, torch.Tensor] = {}
        self.snaps: dict[str, list[torch.Tensor]] = {}  # name -> [x_t (D,)], x_0 = 0 first
        self.steps: list[int] = []
        self._gram: dict[str, np.ndarray] = {}
        self._basis: dict[str, torch.Tensor] | None = None
        if model is not None:
            self._snapshot(model, int(start_step))

    # ------------------------------------------------------------------ snapshots
    def _matrices(self, model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
        mats = [(n, p) for n, p in selected(model, self.selection) if p.ndim >= 2]
        if not mats:
            raise ConfigError("the manifold selection picked no matrices (tensors with ≥ 2 dimensions)")
        return mats

    def _snapshot(self, model: torch.nn.Module, step: int) -> None:
        mats = self._matrices(model)
        if not self.w0:
            self.names = [n for n, _ in mats]
            self.w0 = {n: p.detach().to("cpu", self.dtype).reshape(-1).clone() for n, p in mats}
            self.snaps = {n: [torch.zeros_like(self.w0[n])] for n in self.names}
            self._gram = {n: np.zeros((1, 1)) for n in self.names}
            self.steps = [step]
            return
        if [n for n, _ in mats] != self.names:
            raise StateError("the selected matrices changed since the first snapshot")
        if step <= self.steps[-1]:
            return  # already have this step (e.g. W_0 given at construction and a call at the same step)
        for n, p in mats:
            x = p.detach().to("cpu", torch.float64).reshape(-1) - self.w0[n].double()
            x = x.to(self.dtype)
            self.snaps[n].append(x)
            self._gram[n] = _grow(self._gram[n], self.snaps[n])
        self.steps.append(step)
        if self.max_snapshots is not None and len(self.steps) > self.max_snapshots + 1:
            for n in self.names:  # drop the oldest snapshot after W_0
                del self.snaps[n][1]
                self._gram[n] = np.delete(np.delete(self._gram[n], 1, 0), 1, 1)
            del self.steps[1]

    @property
    def n_snapshots(self) -> int:
        return len(self.steps)

    def nbytes(self) -> int:
        """Bytes of snapshot storage kept."""
        return sum(t.numel() * t.element_size() for v in self.snaps.values() for t in v) + \
            sum(t.numel() * t.element_size() for t in self.w0.values())

    # ------------------------------------------------------------------ analysis
    def analyse(self, step: int | None = None) -> dict[str, float]:
        """PC1% per matrix, the random-walk null, and the refreshed basis."""
        step = self.steps[-1] if step is None else int(step)
        out: dict[str, float] = {"n_snapshots": float(self.n_snapshots)}
        if self.n_snapshots < 3:
            self._basis = None
            return out
        pc1, null, basis, dims = [], [], {}, {0.9: [], 0.95: []}
        for i, n in enumerate(self.names):
            G = self._gram[n]
            lam, U = gram_eig(centered_gram(G))
            frac = explained_fractions(lam)
            X = torch.stack(self.snaps[n]).double()  # (T, D)
            Xc = X - X.mean(0, keepdim=True)
            V = directions_from_gram(Xc, lam, U, self.n_components)  # (k, D)
            basis[n] = orthonormal_rows(V) if V.shape[0] else V
            rng = np.random.default_rng(stable_key(self.seed, self.name, n, step))
            nl = random_walk_pc1(step_norms_from_gram(G), X.shape[1], self.null_trials, rng) if self.null_trials else np.array([np.nan])
            pc1.append(100.0 * frac[0])
            cum = np.cumsum(frac)
            for level in dims:  # the trajectory's dimension: principal components to reach the level
                dims[level].append(int(np.searchsorted(cum, level - 1e-12) + 1))
            null.append(100.0 * float(np.mean(nl)))
            if self.per_matrix:
                out[f"pc1_pct.{n}"] = pc1[-1]
                out[f"null_pc1_pct.{n}"] = null[-1]
        self._basis = basis
        out.update({
            "pc1_pct_mean": float(np.mean(pc1)),
            "pc1_pct_min": float(np.min(pc1)),
            "pc1_pct_max": float(np.max(pc1)),
            "null_pc1_pct_mean": float(np.mean(null)),
            "pc1_excess": float(np.mean(pc1) - np.mean(null)),
            "basis_dim": float(sum(int(b.shape[0]) for b in basis.values())),
            "dim90_mean": float(np.mean(dims[0.9])),
            "dim90_max": float(np.max(dims[0.9])),
            "dim95_mean": float(np.mean(dims[0.95])),
        })
        return out

    def basis(self) -> dict[str, torch.Tensor] | None:
        """Top principal directions per matrix as of the latest call: name -> (k, numel)
        orthonormal float64 rows (None before 3 snapshots)."""
        return self._basis

    # ------------------------------------------------------------------ Probe protocol
    def run(self, ctx: ProbeContext) -> dict[str, float]:
        self._snapshot(resolve_model(self.model, ctx.model), int(ctx.step))
        return self.analyse(ctx.step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "steps": list(self.steps),
            "w0": {n: t.clone() for n, t in self.w0.items()},
            "snaps": {n: torch.stack(v).clone() for n, v in self.snaps.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        names = list(state.get("names", []))
        if self.names and names != self.names:
            raise StateError("the saved manifold probe tracked different matrices")
        self.names = names
        self.steps = [int(s) for s in state["steps"]]
        self.w0 = {n: state["w0"][n].to(self.dtype).clone() for n in names}
        self.snaps = {n: list(state["snaps"][n].to(self.dtype).clone().unbind(0)) for n in names}
        self._gram = {}
        for n in names:  # rebuilt the way it was grown, so a resumed probe is bit-identical
            G = np.zeros((1, 1))
            for t in range(2, len(self.snaps[n]) + 1):
                G = _grow(G, self.snaps[n][:t])
            self._gram[n] = G
        self._basis = None
        if self.n_snapshots >= 3:
            self.analyse()


def _grow(G: np.ndarray, snaps: list[torch.Tensor]) -> np.ndarray:
    """Gram of ``snaps`` from the Gram ``G`` of all but the last: one new row of dot products."""
    x = snaps[-1].double()
    prods = np.array([float(torch.dot(s.double(), x)) for s in snaps])
    T = G.shape[0] + 1
    G2 = np.empty((T, T))
    G2[:-1, :-1] = G
    G2[-1, :] = prods
    G2[:, -1] = prods
    return G2
