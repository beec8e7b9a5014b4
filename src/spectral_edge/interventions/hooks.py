"""The :class:`Intervention`: a gradient (or parameter) transform installed on any optimizer.

::

    iv = Intervention(model, "project", basis=basis_from_run("runs/baseline"), strength=0.5)
    iv.attach(optimizer)                  # a step pre-hook: after clipping, before the step
    for batch in loader:
        loss.backward(); clip_grad_norm_(...); optimizer.step()
    iv.remove()                           # plain training again

**Where it acts.** ``attach`` registers a step pre-hook (``optimizer.register_step_pre_hook``,
the mechanism the Monitor uses), so it runs once per real optimizer step, after whatever the
loop did to the gradients (clipping) and before the update: in a plain loop, in a Hugging
Face ``Trainer`` (which clips, then steps; give it the optimizer with ``optimizers=(opt,
None)``) and in Lightning. Lightning calls ``optimizer.step(closure)`` and runs backward and
clipping *inside* the closure; the pre-hook then wraps the closure, and the transform runs when
the closure returns (after backward and clipping, before the update). An optimizer that calls
its closure several times per step (LBFGS) gets the transform on each evaluation.

**What it does** (METHODS.md §8, the authors' scripts; ``step`` counts optimizer steps from 1,
acting on step s means on the gradient about to be applied as step s):

=============== ============================================================ ===================
kind            on each step s ≥ ``start`` with s % ``every`` == 0            default strength
=============== ============================================================ ===================
``project``     g ← g − s·(I − BBᵀ) g (every step)                            0.5 (swept 0.25–1)
``penalty``     the same, every 10th step (a projection, not a loss term)     0.5
``noise``       θ ← θ + ε·n⊥/‖n⊥‖, n Gaussian, n⊥ = n − BBᵀn (every 50)        ε = 0.1
``kick``        once: θ ← θ + α·‖ηg_A‖·c⊥/‖c⊥‖, c the median of 9 commutators   α = 10
``keep-sed``    g ← g − s·(I − VᵀV) g, V = top-3 right singular vectors of     1
                the last 20 (transformed) gradients, raw SVD
``remove-sed``  g ← g − s·VᵀV g, the same V                                   1
``keep-random`` / ``remove-random``: the same with a fresh uniformly random     1
                rank-3 V every step
=============== ============================================================ ===================

Defaults follow the papers: ``start`` 500 (the rank-k kinds: 0, acting from when their window
of 20 gradients is full), the kinds on B act on *all* trainable parameters (B, built on the
attention matrices, is zero elsewhere: with s = 1 the other tensors get no gradient at all, as
in the authors' code), the rank-k kinds on the attention weights (``selection``). Every
constant is a parameter. The kick's commutator is
:func:`spectral_edge.functional.defect.commutator_defect` (plain SGD steps of η = 1e-3 on two
batches of 512 drawn from the intervention's own generator; the model in eval mode, the global
RNG forked): the sample of median defect among ``kick_samples``, its component in span(B)
removed, normalised, scaled by α·‖ηg_A‖ of that same sample (the authors drew one more pair
for the norm).

**Guarantees.** It touches only the selected parameters (others keep their plain gradients
and updates, bit for bit); with ``strength = 0`` it changes nothing (bit-identical to no
intervention); it draws only from its own ``torch.Generator`` (seeded by ``seed``), never from
the global RNG; ``state_dict()`` / ``load_state_dict()`` hold its step counter, generator,
the kick flag, the SED window and a fixed basis, so a resumed run is bit-identical; a
non-finite result (gradient or parameter) is never applied: it is recorded as an ``event`` row
of the given monitor's history and raised as a one-line
:class:`~spectral_edge.errors.NonFiniteError`.

**Basis.** ``basis``: a :class:`~spectral_edge.interventions.bases.Basis` (fixed, e.g.
:func:`~spectral_edge.interventions.bases.basis_from_run`), or an object with a ``basis()``
method returning ``{name: (k, numel) rows}`` such as the
:class:`~spectral_edge.probes.manifold.ExecutionManifoldProbe` the monitor runs (online: read
at every use; until it has a basis the transform waits), or a callable returning either.
Cost per acting step: a few parameter-sized float64 vectors; the rank-k kinds keep 20
gradients of the selection (float32) and take a (20 × P) SVD.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..errors import ConfigError, NonFiniteError, StateError
from ..selection import Selection, normalize_name
from .bases import Basis, basis_from_blocks
from .spec import KINDS, NEEDS_BASIS, RANK_KINDS, InterventionSpec, kind_defaults
from .transforms import keep_span, median_index, random_orthonormal, remove_span, top_right_singular

__all__ = ["Intervention"]

STATE_VERSION = 1


class Intervention:
    """A transform of the gradients (or parameters) of the selected tensors, applied once per
    optimizer step through a step pre-hook (see module docs for the kinds and guarantees).

    Parameters
    ----------
    model: the ``nn.Module`` (or ``(name, parameter)`` pairs) being trained.
    kind: one of :data:`~spectral_edge.interventions.spec.KINDS`.
    strength: s of project/penalty/keep/remove, ε of noise, α of kick (None: the papers' value).
    start: first optimizer step it acts on (None: 500; 0 for the rank-k kinds).
    every: act on steps divisible by this (None: 1; penalty 10, noise 50; kick acts once).
    basis: the basis B of project, penalty, noise and kick (see module docs).
    selection: the parameters it acts on: a :class:`~spectral_edge.selection.Selection` or a
        preset name (None: ``all`` for the kinds on B, ``attention`` for the rank-k kinds).
    rank, window: k and W of the rank-k kinds (3 and 20).
    seed: seed of its own generator (noise, random bases, kick batches).
    loss_fn, batch_fn: the kick's ``loss_fn(model, batch)`` and ``batch_fn(generator)``.
    kick_samples, kick_eta: the kick's number of commutator samples (9) and SGD step η (1e-3).
    monitor: a :class:`~spectral_edge.monitor.Monitor` whose history receives the non-finite
        event (optional).
    start_step: the optimizer steps already taken (a resumed loop without a saved state).
    """

    def __init__(self, model: torch.nn.Module | Any, kind: str, *, strength: float | None = None,
                 start: int | None = None, every: int | None = None, basis: Any = None,
                 selection: Selection | str | None = None, rank: int = 3, window: int = 20, seed: int = 0,
                 loss_fn: Callable[..., torch.Tensor] | None = None,
                 batch_fn: Callable[[torch.Generator], Any] | None = None, kick_samples: int = 9,
                 kick_eta: float = 1e-3, monitor: Any = None, start_step: int = 0):
        if kind not in KINDS:
            raise ConfigError(f"unknown intervention {kind!r}; choose one of {', '.join(KINDS)}")
        d = kind_defaults(kind)
        self.kind = kind
        self.strength = float(d["strength"] if strength is None else strength)
        self.start = int(d["start"] if start is None else start)
        self.every = int(d["every"] if every is None else every)
        if not math.isfinite(self.strength) or self.strength < 0:
            raise ConfigError(f"intervention strength must be a finite number ≥ 0, got {strength}")
        if self.start < 0 or self.every < 1:
            raise ConfigError(f"intervention start must be ≥ 0 and every ≥ 1, got start={start}, every={every}")
        self.rank, self.window = int(rank), int(window)
        if kind in RANK_KINDS and not 1 <= self.rank <= self.window:
            raise ConfigError(f"intervention rank must be between 1 and the window ({self.window}), got {rank}")
        self.seed = int(seed)
        self.kick_samples, self.kick_eta = int(kick_samples), float(kick_eta)
        if self.kick_samples < 1 or not self.kick_eta > 0:
            raise ConfigError(f"kick_samples must be ≥ 1 and kick_eta > 0, got {kick_samples}, {kick_eta}")
        self.loss_fn, self.batch_fn = loss_fn, batch_fn
        if kind == "kick" and batch_fn is None:
            raise ConfigError("the kick intervention needs batch_fn (and loss_fn, default cross-entropy) to draw the "
                              "commutator's batches")
        self.monitor = monitor
        self.model = model if isinstance(model, torch.nn.Module) else None
        sel = selection if selection is not None else d["selection"]
        self.selection = Selection(preset=sel) if isinstance(sel, str) else sel
        self.params = self._select(model)
        self.names = tuple(self.params)
        self.shapes = {n: tuple(p.shape) for n, p in self.params.items()}
        self.offsets: dict[str, tuple[int, int]] = {}
        at = 0
        for n, p in self.params.items():
            self.offsets[n] = (at, at + p.numel())
            at += p.numel()
        self.size = at
        self.generator = torch.Generator().manual_seed(self.seed)
        self.step = int(start_step)
        self.kicked = False
        self.applied = 0  # steps on which it acted
        self.first_applied: int | None = None
        self.seen = 0  # gradients collected by the rank-k kinds
        self.buffer = torch.zeros((self.window, self.size), dtype=torch.float32) if kind in ("keep-sed", "remove-sed") \
            else None
        self._source = None
        self._fixed: Basis | None = None
        self._cache: tuple[Any, Basis] | None = None
        self._rows: dict[int, torch.Tensor] = {}
        self._handles: list[Any] = []
        if kind in NEEDS_BASIS:
            if basis is None:
                raise ConfigError(f"the {kind} intervention needs a basis B (--basis-from RUN, a Basis, or an online "
                                  "source such as the manifold probe)")
            if isinstance(basis, Basis):
                basis.check_against(self.shapes, f"the basis of the {kind} intervention")
                self._fixed = basis
            elif hasattr(basis, "basis") or callable(basis):
                self._source = basis
            else:
                raise ConfigError(f"basis must be a Basis, an object with basis() or a callable, got {type(basis).__name__}")
        elif basis is not None:
            raise ConfigError(f"the {kind} intervention builds its own basis from the gradients; give no basis")

    @classmethod
    def from_spec(cls, model: Any, spec: InterventionSpec, *, basis: Any = None, **kw: Any) -> "Intervention":
        """The intervention a :class:`~spectral_edge.interventions.spec.InterventionSpec` (a run
        config's ``[intervention]`` table) describes; ``basis`` and the kick's functions are given."""
        opts: dict[str, Any] = dict(strength=spec.strength, start=spec.start, every=spec.every,
                                    selection=spec.selection, rank=spec.rank, window=spec.window,
                                    seed=spec.seed or 0, kick_samples=spec.kick_samples, kick_eta=spec.kick_eta)
        opts.update(kw)
        return cls(model, spec.kind, basis=basis, **opts)

    # ------------------------------------------------------------------ parameters
    def _select(self, model: Any) -> dict[str, torch.nn.Parameter]:
        named = model.named_parameters() if isinstance(model, torch.nn.Module) else model
        out: dict[str, torch.nn.Parameter] = {}
        seen: set[int] = set()
        pairs = []
        for raw, p in named:
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            pairs.append((normalize_name(raw), p))
        plan = self.selection.plan((n, p.dtype) for n, p in pairs)
        keep = set(plan.names)
        for n, p in pairs:
            if n in keep:
                out[n] = p
        return out

    def basis(self) -> Basis | None:
        """The basis B in use now (None for the rank-k kinds, or while an online source has none)."""
        if self._fixed is not None or self._source is None:
            return self._fixed
        src = self._source
        got = src.basis() if hasattr(src, "basis") else src()
        if got is None:
            return None
        if self._cache is not None and self._cache[0] is got:
            return self._cache[1]
        b = got if isinstance(got, Basis) else basis_from_blocks(got, self.shapes, "online")
        b.check_against(self.shapes, f"the online basis of the {self.kind} intervention")
        self._cache = (got, b)
        self._rows = {}
        return b

    # ------------------------------------------------------------------ flat vectors
    def _device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def _gather(self, grads: bool) -> torch.Tensor:
        parts = []
        for p in self.params.values():
            t = p.grad if grads else p
            parts.append(torch.zeros(p.numel(), dtype=torch.float64, device=p.device) if t is None
                         else t.detach().reshape(-1).double())
        return torch.cat(parts)

    def _span_part(self, v: torch.Tensor, B: Basis) -> torch.Tensor:
        """``BBᵀ v`` over the flat selection (zero outside the basis's tensors)."""
        out = torch.zeros_like(v)
        for i, (names, rows) in enumerate(B.blocks):
            if not len(rows):
                continue
            V = self._rows.get(i)
            if V is None or V.device != v.device:
                V = self._rows[i] = rows.to(v.device)
            idx = [self.offsets[n] for n in names]
            sub = torch.cat([v[a:b] for a, b in idx])
            proj = V.T @ (V @ sub)
            c = 0
            for a, b in idx:
                out[a:b] = proj[c:c + b - a]
                c += b - a
        return out

    def _write(self, new: torch.Tensor, grads: bool, step: int, before: torch.Tensor) -> None:
        """Check ``new`` is finite (else event + NonFiniteError, nothing written), then copy it into
        the gradients (``grads``) or the parameters of the selection."""
        out = {}
        for n, p in self.params.items():
            if grads and p.grad is None:
                continue
            a, b = self.offsets[n]
            t = new[a:b].view_as(p).to(p.dtype)  # in the tensor's own dtype: an overflow shows here
            if not bool(torch.isfinite(t).all()):
                self._nonfinite(n, before, grads, step)
            out[n] = t
        with torch.no_grad():
            for n, t in out.items():
                p = self.params[n]
                (p.grad if grads else p).copy_(t)

    def _nonfinite(self, name: str, before: torch.Tensor, grads: bool, step: int) -> None:
        what = "gradient" if grads else "parameter"
        a, b = self.offsets[name]
        if not bool(torch.isfinite(before[a:b]).all()):
            msg = (f"step {step}: the {what} of {name} was already NaN or Inf before the {self.kind} intervention "
                   f"(training diverged); nothing applied")
        else:
            msg = (f"step {step}: the {self.kind} intervention (strength {self.strength:g}) made the {what} of "
                   f"{name} NaN or Inf; nothing applied")
        row = {"kind": "event", "step": step, "event": "intervention_nonfinite", "stream": "intervention",
               "intervention": self.kind, "tensor": name, "message": msg}
        if self.monitor is not None:
            self.monitor.record_events([row])  # its own event name: the report counts "nonfinite" as skipped samples
        raise NonFiniteError(None, msg)

    def _applied(self, step: int) -> None:
        self.applied += 1
        if self.first_applied is None:
            self.first_applied = step

    # ------------------------------------------------------------------ the transforms
    def apply(self, step: int | None = None) -> bool:
        """Transform the current gradients (or parameters) as optimizer step ``step`` (default:
        the next one) requires; returns whether it acted. The pre-hook calls it for you."""
        step = self.step + 1 if step is None else int(step)
        if step < self.start or self.strength == 0.0:
            return False
        if self.kind in RANK_KINDS:
            return self._rank_k(step)
        if self.kind == "kick":
            if self.kicked:
                return False
        elif step % self.every:
            return False
        B = self.basis()
        if B is None:
            return False
        if self.kind in ("project", "penalty"):
            g = self._gather(True)
            self._write(_keep(g, self._span_part(g, B), self.strength), True, step, g)
        elif self.kind == "noise":
            n = torch.randn(self.size, generator=self.generator, dtype=torch.float64).to(self._device())
            r = n - self._span_part(n, B)
            norm = float(r.norm())
            if norm <= 1e-15:
                return False
            theta = self._gather(False)
            self._write(theta + (self.strength / norm) * r, False, step, theta)
        else:
            if not self._kick(step, B):
                return False
        self._applied(step)
        return True

    def _rank_k(self, step: int) -> bool:
        g = self._gather(True)
        acted = False
        if self.seen >= self.window and step % self.every == 0:
            if self.buffer is not None:
                order = torch.cat([self.buffer[self.seen % self.window:], self.buffer[: self.seen % self.window]])
                V = top_right_singular(order.to(g.device), self.rank)
            else:
                V = random_orthonormal(self.size, self.rank, self.generator).to(g.device)
            new = keep_span(g, V, self.strength) if self.kind.startswith("keep") else remove_span(g, V, self.strength)
            self._write(new, True, step, g)
            g = new
            acted = True
            self._applied(step)
        if self.buffer is not None:
            self.buffer[self.seen % self.window] = g.to("cpu", torch.float32)
        self.seen += 1
        return acted

    def _kick(self, step: int, B: Basis) -> bool:
        from ..functional.defect import commutator_defect
        from ..probes._isolation import ModelLoss, isolated

        self.kicked = True
        if self.model is None:
            raise ConfigError("the kick intervention needs the model as an nn.Module")
        ml = ModelLoss(self.model, self.loss_fn)
        with isolated(self.model):
            theta = ml.theta()
            samples = []
            for _ in range(self.kick_samples):
                a, b = self.batch_fn(self.generator), self.batch_fn(self.generator)
                samples.append(commutator_defect(ml.closure(a), ml.closure(b), theta, self.kick_eta))
        s = samples[median_index([x.defect for x in samples])]
        by_name = dict(zip(ml.names, s.delta))
        c = torch.cat([by_name[n].detach().reshape(-1).double().to(self._device()) for n in self.names])
        r = c - self._span_part(c, B)
        norm = float(r.norm())
        if norm <= 1e-15 or not math.isfinite(norm) or not math.isfinite(s.norm_a):
            warnings.warn(f"spectral-edge: step {step}: the commutator has no component outside B; no kick",
                          RuntimeWarning, stacklevel=3)
            return False
        unit = r / norm
        theta_sel = self._gather(False)
        self._write(theta_sel + (self.strength * s.norm_a) * unit, False, step, theta_sel)
        return True

    # ------------------------------------------------------------------ hooks
    def _pre_hook(self, optimizer: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        self.step += 1
        step = self.step
        # args: the step's positional arguments, the optimizer first (torch passes them so)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self.apply(step)
            return None

        def wrapped() -> Any:  # Lightning: backward and clipping happen inside the closure
            out = closure()
            self.apply(step)
            return out

        if "closure" in kwargs:
            return args, {**kwargs, "closure": wrapped}
        return (args[0], wrapped, *args[2:]), kwargs

    def attach(self, optimizer: torch.optim.Optimizer) -> "Intervention":
        """Install on ``optimizer`` (a step pre-hook); returns self (``remove()`` undoes it)."""
        self._handles.append(optimizer.register_step_pre_hook(self._pre_hook))
        return self

    def remove(self) -> None:
        """Detach from every optimizer: training is plain again."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # ------------------------------------------------------------------ state
    def describe(self) -> dict[str, Any]:
        """What it is and what it did (JSON-safe; the runner's summary.json records it)."""
        b = self._fixed
        return {"kind": self.kind, "strength": self.strength, "start": self.start, "every": self.every,
                "selection": self.selection.preset, "rank": self.rank if self.kind in RANK_KINDS else None,
                "window": self.window if self.kind in RANK_KINDS else None, "seed": self.seed,
                "basis": b.to_dict() if b is not None else ("online" if self._source is not None else None),
                "steps_applied": self.applied, "first_step_applied": self.first_applied}

    def state_dict(self) -> dict[str, Any]:
        """Everything to resume bit-identically (plain values, loadable with weights_only=True)."""
        return {"version": STATE_VERSION, "kind": self.kind, "size": self.size, "step": self.step,
                "generator": self.generator.get_state(), "kicked": self.kicked, "applied": self.applied,
                "first_applied": self.first_applied, "seen": self.seen,
                "buffer": None if self.buffer is None else self.buffer.clone(),
                "basis": None if self._fixed is None else self._fixed.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; a state of another intervention is a StateError."""
        if state.get("version") != STATE_VERSION:
            raise StateError(f"intervention state version {state.get('version')} is not {STATE_VERSION}")
        if state.get("kind") != self.kind or int(state.get("size", -1)) != self.size:
            raise StateError(f"the saved intervention is {state.get('kind')} over {state.get('size')} numbers, this "
                             f"one {self.kind} over {self.size}")
        buf = state.get("buffer")
        if (buf is None) != (self.buffer is None) or (buf is not None and tuple(buf.shape) != tuple(self.buffer.shape)):
            raise StateError("the saved intervention's gradient window does not fit this one (rank-k window changed)")
        basis = None
        if state.get("basis") is not None:
            basis = Basis.from_state(state["basis"])
            basis.check_against(self.shapes, "the saved basis")
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        self.kicked = bool(state["kicked"])
        self.applied = int(state["applied"])
        self.first_applied = None if state.get("first_applied") is None else int(state["first_applied"])
        self.seen = int(state["seen"])
        if buf is not None and self.buffer is not None:
            self.buffer.copy_(buf)
        if basis is not None:
            self._fixed, self._rows = basis, {}


def _keep(g: torch.Tensor, span_part: torch.Tensor, strength: float) -> torch.Tensor:
    """``g − s·(g − BBᵀg)`` given ``BBᵀg`` (float64): :func:`~.transforms.keep_span` for a blocked basis."""
    return g - float(strength) * (g - span_part)
