"""Backbone probe: the dominant direction of long-horizon drift (METHODS.md §6).

Keep the last ``window`` parameter states θ_t (every ``every`` steps) and form the drifts
d_t = θ_t − θ_ref (θ_ref = θ_0 for ``reference="init"``, the long-horizon backbone, or the
oldest state of the window for ``reference="window"``, the sliding-window rotation curve).
Normalise every drift to unit length and take the uncentered SVD of the T×P matrix of
rows: its top right singular vector is the backbone v_b (sign: ⟨d_latest, v_b⟩ ≥ 0).
Reported (language models with AdamW: v_b holds 60–80% of the displacement):

- ``fraction`` = a²/‖Δθ‖² with a = ⟨Δθ, v_b⟩, Δθ the latest drift; ``mean_fraction`` the
  same averaged over the drifts of the window;
- ``pc1_pct``: 100·σ_1²/Σσ² of the row-normalised matrix;
- ``rotation``: |⟨v_b(now), v_b(previous call)⟩| (1 = the backbone did not turn);
- ``grad_align``: |cos(g, v_b)| with g the gradient in the parameters' ``.grad`` (the last
  batch's; read, never changed);
- ``update_align``: |cos(u, v_b)| with u = θ_t − θ_{t−1} the optimizer's last update. The
  state before the step is captured by an optimizer pre-step hook (installed by
  :meth:`attach`, or at the first call when the monitor was attached to an optimizer), only
  on steps where the probe is due.

Exact mode (``sketch="exact"``) keeps the selected parameters themselves (small models);
sketched mode keeps d-dimensional sketches y = Sθ from :class:`SketchSpec` (the sketch is
linear, so S d_t = y_t − y_ref; norms and inner products are preserved to JL accuracy).

Cost per call: one pass over the selected parameters (copy or sketch), a T×T Gram update
(T dot products of length P or d) and eigendecomposition, and one more pass for the
gradient (and one at the pre-step hook for the update). Memory: (window + 2) states: exact
on the reference model (290k float32 parameters, 1.16 MB each) 25 MB at window = 20;
sketched 8·d bytes each. Measured on the reference model (one thread of a shared 2-core
CPU): exact window 20 ≈ 40–70 ms per call, fold d = 200 ≈ 8 ms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, StateError
from ..functional.pca import explained_fractions, gram_eig, row_normalized_gram
from ..functional.sketch import SketchSpec
from ..selection import Selection
from ._isolation import resolve_model, selected
from .base import Probe, ProbeContext

__all__ = ["BackboneProbe", "backbone_direction"]


def backbone_direction(drifts: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Top right singular vector of the row-normalised drifts (T, P) and its PC1 fraction.

    ``v_b = Σ_i u_1[i] d_i/‖d_i‖ / σ_1``, sign chosen so ⟨d_{T−1}, v_b⟩ ≥ 0; returns
    (v_b (P,) float64, σ_1²/Σσ²)."""
    D = drifts.double()
    G = (D @ D.T).numpy()
    Gn, norms = row_normalized_gram(G)
    lam, U = gram_eig(Gn)
    if lam[0] <= 0:
        return torch.zeros(D.shape[1], dtype=torch.float64), float("nan")
    inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    c = torch.from_numpy(U[:, 0] * inv / np.sqrt(lam[0]))  # (T,)
    v = c @ D
    v = v / v.norm()
    if float(D[-1] @ v) < 0:
        v = -v
    return v, float(explained_fractions(lam)[0])


def _abs_cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    return abs(float(a @ b)) / (na * nb) if na > 0 and nb > 0 else float("nan")


class BackboneProbe(Probe):
    """Backbone direction of the drift, its share of displacement, rotation and alignment.

    Parameters
    ----------
    model: the model (default: the monitor's). When given, θ_0 is taken now.
    every: take a state every this many optimizer steps.
    window: number of drifts in the SVD (the most recent ones).
    reference: ``"init"`` (drifts from θ_0) or ``"window"`` (from the oldest kept state).
    sketch: ``"exact"`` or a :class:`SketchSpec` (e.g. ``SketchSpec("fold", dim=200)``).
    selection: which parameters (default: all trainable ones; the papers: the trunk,
        ``Selection(preset="trunk")``).
    optimizer: install the pre-step hook for ``update_align`` now (see :meth:`attach`).
    start_step: the optimizer step of the model's current parameters.
    """

    name = "backbone"

    def __init__(self, model: torch.nn.Module | None = None, *, every: Any = 100, window: int = 20,
                 reference: str = "init", sketch: SketchSpec | str = "exact", selection: Selection | None = None,
                 optimizer: torch.optim.Optimizer | None = None, start_step: int = 0, name: str = "backbone"):
        super().__init__(every)
        if reference not in ("init", "window"):
            raise ConfigError(f"reference must be 'init' or 'window', got {reference!r}")
        if int(window) < 2:
            raise ConfigError(f"window must be ≥ 2 drifts, got {window}")
        self.spec = sketch if isinstance(sketch, SketchSpec) else SketchSpec(str(sketch))
        self.model = model
        self.window = int(window)
        self.reference = reference
        self.selection = selection
        self.name = str(name)
        self._sketch = None
        self.ref: torch.Tensor | None = None
        self.states: list[torch.Tensor] = []
        self.steps: list[int] = []
        self.prev_v: torch.Tensor | None = None
        self._pre: tuple[int, torch.Tensor] | None = None
        self._handles: list[Any] = []
        self._opt_step = int(start_step)
        if model is not None:
            self.ref = self._state(model)
            self._ref_step = int(start_step)
            if optimizer is not None:
                self.attach(optimizer, model)
        elif optimizer is not None:
            raise ConfigError("give the model together with the optimizer")

    # ------------------------------------------------------------------ states
    def _tensors(self, model: torch.nn.Module, grads: bool = False) -> list[tuple[str, torch.Tensor]] | None:
        pairs = selected(model, self.selection)
        if not grads:
            return [(n, p.detach()) for n, p in pairs]
        if all(p.grad is None for _, p in pairs):
            return None
        return [(n, p.grad.detach() if p.grad is not None else torch.zeros_like(p)) for n, p in pairs]

    def _vector(self, pairs: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        if self.spec.family == "exact":
            dtypes = {t.dtype for _, t in pairs}
            dt = torch.float32 if dtypes == {torch.float32} else torch.float64  # exact for float32/bf16/fp16
            return torch.cat([t.reshape(-1).to("cpu", dt) for _, t in pairs])
        if self._sketch is None:
            self._sketch = self.spec.build()
        return self._sketch(pairs).to(torch.float64)

    def _state(self, model: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return self._vector(self._tensors(model))

    # ------------------------------------------------------------------ optimizer hook
    def attach(self, optimizer: torch.optim.Optimizer, model: torch.nn.Module | None = None,
               step: int | None = None) -> None:
        """Capture the state before every due optimizer step (for ``update_align``).
        ``step``: the optimizer step already taken (default: what the probe knows)."""
        model = model if model is not None else self.model
        if model is None:
            raise ConfigError("attach needs the model")
        self.detach()
        if step is not None:
            self._opt_step = int(step)

        def pre(opt: Any, args: Any, kwargs: Any) -> None:
            # count steps here: a post-hook could not be added from inside the monitor's own
            # post-hook (the optimizer is iterating over its post-hooks at that moment)
            self._opt_step += 1
            if self.should_run(self._opt_step):
                self._pre = (self._opt_step, self._state(model))

        self._handles = [optimizer.register_step_pre_hook(pre)]

    def detach(self) -> None:
        """Remove the optimizer hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    # ------------------------------------------------------------------ analysis
    def push(self, model: torch.nn.Module, step: int) -> None:
        """Add the model's current state as the sample at ``step``."""
        state = self._state(model)
        if self.ref is None:
            self.ref, self._ref_step = state, int(step)
            return
        self.states.append(state)
        self.steps.append(int(step))
        keep = self.window + (1 if self.reference == "window" else 0)
        if len(self.states) > keep:
            del self.states[0], self.steps[0]

    def analyse(self, model: torch.nn.Module | None, step: int) -> dict[str, float]:
        """Backbone metrics of the kept states (see module docs)."""
        if self.reference == "init":
            rows, ref = self.states, self.ref
        else:
            rows, ref = self.states[1:], (self.states[0] if self.states else None)
        if ref is None or len(rows) < 2:
            return {"n_drifts": float(len(rows))}
        D = torch.stack([s.double() - ref.double() for s in rows])  # (T, dim)
        v, pc1 = backbone_direction(D)
        d_last = D[-1]
        a = float(d_last @ v)
        dn2 = float(d_last @ d_last)
        row_n2 = (D * D).sum(1)
        proj2 = (D @ v) ** 2
        out = {
            "n_drifts": float(len(rows)),
            "fraction": a * a / dn2 if dn2 > 0 else float("nan"),
            "mean_fraction": float((proj2[row_n2 > 0] / row_n2[row_n2 > 0]).mean()),
            "pc1_pct": 100.0 * pc1,
            "drift_norm": float(np.sqrt(dn2)),
            "rotation": float("nan") if self.prev_v is None else abs(float(v @ self.prev_v)),
            "grad_align": float("nan"),
            "update_align": float("nan"),
        }
        self.prev_v = v
        if model is not None:
            with torch.no_grad():
                g = self._tensors(model, grads=True)
                if g is not None:
                    out["grad_align"] = _abs_cos(self._vector(g).double(), v)
            if self._pre is not None and self._pre[0] == step:
                out["update_align"] = _abs_cos(self.states[-1].double() - self._pre[1].double(), v)
        self._pre = None
        return out

    # ------------------------------------------------------------------ Probe protocol
    def run(self, ctx: ProbeContext) -> dict[str, float]:
        model = resolve_model(self.model, ctx.model)
        step = ctx.step
        if not self._handles and ctx.optimizer is not None:
            self.attach(ctx.optimizer, model, step=step)  # update_align from the next due step on
        self.push(model, step)
        return self.analyse(model, step)

    def nbytes(self) -> int:
        ts = [t for t in (self.ref, self.prev_v) if t is not None] + self.states
        return sum(t.numel() * t.element_size() for t in ts)

    def state_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "reference": self.reference,
            "ref": None if self.ref is None else self.ref.clone(),
            "ref_step": getattr(self, "_ref_step", None),
            "states": [s.clone() for s in self.states],
            "steps": list(self.steps),
            "prev_v": None if self.prev_v is None else self.prev_v.clone(),
            "opt_step": self._opt_step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("spec") != self.spec.to_dict() or state.get("reference") != self.reference:
            raise StateError("the saved backbone probe used a different sketch or reference")
        self.ref = None if state["ref"] is None else state["ref"].clone()
        self._ref_step = state.get("ref_step")
        self.states = [s.clone() for s in state["states"]]
        self.steps = [int(s) for s in state["steps"]]
        self.prev_v = None if state["prev_v"] is None else state["prev_v"].clone()
        self._opt_step = int(state.get("opt_step", self._opt_step))
        self._pre = None
