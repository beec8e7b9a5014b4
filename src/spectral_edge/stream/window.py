"""Streaming window of sketched updates with fixed-shape, resumable state.

``SketchWindow`` receives one sketched *state* y(θ_t) per sample and keeps

- the last state (to difference the next one against),
- a ring of the last ``max_window + 1`` updates δ = y_t − y_{t−1} (one extra for turning),
- the matrix of all pairwise inner products of the updates in the ring,
- the step of each sample.

Pushing a sample costs one d-vector difference and ``max_window + 1`` dot products. Any
W ≤ max_window is then a submatrix of the pairwise matrix, so analysing W = 5, 10 and 20
together costs the same pass. All state is a fixed-shape tensor; ``state_dict()`` /
``load_state_dict()`` resume a stream with bit-identical results.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .._compat import renamed_kwargs
from ..errors import ConfigError, StateError
from ..functional.spectrum import DEFAULT_KSTAR_RULE, WindowStats, turning, window_stats

#: An analysis (its windows and the sketch's working memory) may keep at most this many
#: bytes; larger settings are refused, with their cost, before anything is allocated.
STATE_LIMIT_BYTES = 8 << 30


def window_state_bytes(max_window: int, dim: int) -> int:
    """Bytes a :class:`SketchWindow` keeps: ``(W+2)·d·8 + (W+1)²·8`` (the last state, the
    ring of W+1 updates and their inner products, float64) ``+ (W+2)·8`` (the steps)."""
    W, d = int(max_window), int(dim)
    return (W + 2) * d * 8 + (W + 1) ** 2 * 8 + (W + 2) * 8


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``13 MiB``, ``7.3e+08 GiB``: a byte count for a message."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.3g} {unit}" if v < 1e6 else f"{v:.2e} {unit}"
    return f"{int(n)} B"


class SketchWindow:
    """Rolling window over sketched parameter states (see module docs).

    Parameters
    ----------
    dim: sketch dimension d (length of every pushed vector).
    max_window: the largest W that will be analysed.
    difference: True (default) when pushed vectors are parameter *states*, whose
        consecutive differences are the updates; False when they already are the vectors to
        analyse (gradients for gradient-SED).
    """

    def __init__(self, dim: int, max_window: int, difference: bool = True):
        if int(max_window) < 2:
            raise ConfigError(f"the window must hold at least 2 updates, got W = {max_window}")
        if int(dim) < 1:
            raise ConfigError(f"the sketch dimension must be ≥ 1, got d = {dim}")
        need = window_state_bytes(max_window, dim)
        if need > STATE_LIMIT_BYTES:
            raise ConfigError(
                f"a window of W = {int(max_window)} updates of dimension d = {int(dim)} would need "
                f"{format_bytes(need)} of memory ((W+2)·d·8 + (W+1)²·8 bytes); the limit is "
                f"{format_bytes(STATE_LIMIT_BYTES)}: use a smaller window (--window) or sketch dimension (--sketch-dim)")
        self.difference = bool(difference)
        self.dim = int(dim)
        self.max_window = int(max_window)
        cap = self.max_window + 1
        self._cap = cap
        self.last_state = torch.zeros(self.dim, dtype=torch.float64)  # (d,)
        self.deltas = torch.zeros(cap, self.dim, dtype=torch.float64)  # (cap, d) ring
        self.inner = torch.zeros(cap, cap, dtype=torch.float64)  # (cap, cap) ring-indexed
        self.steps = torch.zeros(cap + 1, dtype=torch.int64)  # steps of the last cap+1 samples
        self.n_samples = 0  # samples pushed so far

    # ------------------------------------------------------------------ streaming
    @property
    def n_updates(self) -> int:
        """Vectors in the analysis so far (samples − 1 for states, samples for vectors)."""
        return max(0, self.n_samples - 1) if self.difference else self.n_samples

    def push(self, state: torch.Tensor, step: int) -> None:
        """Add the sketch of the parameters at optimizer step ``step``; shape (d,)."""
        y = torch.as_tensor(state).detach().to(device="cpu", dtype=torch.float64).reshape(-1)
        if y.numel() != self.dim:
            raise ConfigError(f"pushed a sketch of length {y.numel()} into a window of dim {self.dim}")
        if not bool(torch.isfinite(y).all()):
            raise ConfigError(f"the sketch at step {step} holds NaN or Inf")
        if self.n_samples > 0 and int(step) <= int(self.steps[(self.n_samples - 1) % (self._cap + 1)]):
            prev = int(self.steps[(self.n_samples - 1) % (self._cap + 1)])
            raise ConfigError(f"steps must increase: got step {step} after step {prev}")
        if self.n_samples > 0 or not self.difference:
            slot = (self.n_updates) % self._cap  # slot of the new update
            delta = y - self.last_state if self.difference else y
            self.deltas[slot] = delta
            products = self.deltas @ delta  # (cap,)
            self.inner[slot, :] = products
            self.inner[:, slot] = products
        self.last_state = y.clone()
        self.steps[self.n_samples % (self._cap + 1)] = int(step)
        self.n_samples += 1

    def ready(self, W: int) -> bool:
        """True when at least W updates are available."""
        return self.n_updates >= W

    def _order(self, count: int) -> list[int]:
        """Ring slots of the last ``count`` updates, oldest first."""
        n = self.n_updates
        return [(n - count + i) % self._cap for i in range(count)]

    def _pairwise(self, count: int) -> np.ndarray:
        """(count, count) inner products of the last ``count`` updates, oldest first (a copy)."""
        idx = self._order(count)
        return self.inner[idx][:, idx].numpy().copy()

    def gram(self, W: int) -> np.ndarray:
        """(W, W) Gram matrix of the last W updates, oldest first."""
        self._check_W(W)
        return self._pairwise(W)

    def union_gram(self, W: int) -> np.ndarray:
        """(W+1, W+1) Gram matrix of the last W + 1 updates, oldest first: the newest window
        of W updates (``[1:, 1:]``) and the one before it (``[:W, :W]``), as turning and ΔG
        need them. Requires W + 1 updates."""
        W = int(W)
        if W < 2 or W > self.max_window:
            raise ConfigError(f"window size must be in [2, {self.max_window}], got {W}")
        if self.n_updates < W + 1:
            raise ConfigError(f"only {self.n_updates} updates so far; two consecutive windows of W = {W} need {W + 1}")
        return self._pairwise(W + 1)

    def updates(self, W: int) -> torch.Tensor:
        """(W, d) sketched updates of the last window, oldest first."""
        self._check_W(W)
        return self.deltas[self._order(W)].clone()

    def step(self, back: int = 0) -> int:
        """Step of the newest sample (``back`` = 0) or of an earlier one."""
        if back >= min(self.n_samples, self._cap + 1):
            raise ConfigError("no sample that far back in the window")
        return int(self.steps[(self.n_samples - 1 - back) % (self._cap + 1)])

    @renamed_kwargs(rule="kstar_rule")
    def compute(self, W: int | None = None, kstar_rule: str = DEFAULT_KSTAR_RULE) -> WindowStats:
        """Stats of the last W updates (default ``max_window``), with turning when one more
        update is available."""
        W = self.max_window if W is None else int(W)
        self._check_W(W)
        st = window_stats(self.gram(W), kstar_rule)
        if self.n_updates >= W + 1:
            union = self.union_gram(W)
            prev = window_stats(union[:W, :W], kstar_rule)
            st = replace(st, turning=turning(union, prev.top_coeffs, st.top_coeffs))
        return st

    def top_direction(self, W: int | None = None, j: int = 1) -> torch.Tensor:
        """Sketch of the unit top direction ``v_j = Σ_i u_j[i] δ_i / σ_j``, shape (d,)."""
        from ..functional.spectrum import eig_gram, top_coefficients

        W = self.max_window if W is None else int(W)
        lam, U = eig_gram(self.gram(W))
        c = torch.from_numpy(top_coefficients(lam, U, j))
        return c @ self.updates(W)

    def _check_W(self, W: int) -> None:
        if W < 2 or W > self.max_window:
            raise ConfigError(f"window size must be in [2, {self.max_window}], got {W}")
        if not self.ready(W):
            raise ConfigError(f"only {self.n_updates} updates so far; W = {W} needs {W}")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Fixed-shape tensors plus counters; enough to resume bit-identically."""
        return {
            "dim": self.dim,
            "max_window": self.max_window,
            "difference": self.difference,
            "n_samples": self.n_samples,
            "last_state": self.last_state.clone(),
            "deltas": self.deltas.clone(),
            "inner": self.inner.clone(),
            "steps": self.steps.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (int(state.get("dim", -1)) != self.dim or int(state.get("max_window", -1)) != self.max_window
                or bool(state.get("difference", True)) != self.difference):
            raise StateError(
                f"window state is for dim={state.get('dim')}, max_window={state.get('max_window')}; "
                f"this window has dim={self.dim}, max_window={self.max_window}"
            )
        for key, ref in (("last_state", self.last_state), ("deltas", self.deltas),
                         ("inner", self.inner), ("steps", self.steps)):
            t = state[key]
            if tuple(t.shape) != tuple(ref.shape):
                raise StateError(f"window state {key!r} has shape {tuple(t.shape)}, expected {tuple(ref.shape)}")
        self.last_state = state["last_state"].to(torch.float64).clone()
        self.deltas = state["deltas"].to(torch.float64).clone()
        self.inner = state["inner"].to(torch.float64).clone()
        self.steps = state["steps"].to(torch.int64).clone()
        self.n_samples = int(state["n_samples"])

    def nbytes(self) -> int:
        """Bytes of state kept (independent of the parameter count)."""
        return sum(t.numel() * t.element_size() for t in (self.last_state, self.deltas, self.inner, self.steps))
