"""Commutator-defect probe: how much two SGD steps on different minibatches fail to commute.

METHODS.md §6: at the current θ draw minibatches A, B (``batch_size`` examples each, drawn
with replacement), take plain SGD steps of size η (no optimizer state, no weight decay):
``D = ‖θ_AB − θ_BA‖/(‖ηg_A‖‖ηg_B‖)`` (math: :mod:`spectral_edge.functional.defect`), and
report the median over ``n_samples`` pairs. Its rise is the papers' early warning of
grokking (onset rule: :class:`spectral_edge.detectors.OnsetRule`).

Optionally the commutator vector is projected onto an *execution subspace* (the top PCA
directions of each attention matrix's trajectory, from
:class:`~spectral_edge.probes.manifold.ExecutionManifoldProbe`) and compared with a random
subspace of the same dimension K in R^P (all P trainable parameters), whose expected
fraction is √(K/P).

Side effects: none. Batches come from the probe's own generator, seeded from
(seed, name, step); the loss is evaluated through functional calls on replacement tensors
(parameters, buffers and ``.grad`` are never written); the model is put in eval mode during
the probe (dropout off, so D is a deterministic function of θ and the batches) and every
module's train/eval flag is restored after; the global RNG is forked and restored. With
``deterministic=False`` the model keeps its mode and dropout draws from a forked global RNG
seeded by the probe (D then also measures dropout noise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, StateError
from ..functional.defect import (
    commutator_defect,
    random_subspace_expected,
    random_subspace_fraction,
    subspace_fraction,
)
from ..functional.rng import stable_key
from ._isolation import LossFn, ModelLoss, draw_batch, isolated, probe_generator, resolve_model
from .base import Probe, ProbeContext

__all__ = ["CommutatorDefectProbe"]

SubspaceSource = Any  # an object with .basis(), a callable returning {name: (k, numel)}, or such a dict


class CommutatorDefectProbe(Probe):
    """Median commutator defect of ``n_samples`` minibatch pairs (see module docs).

    Parameters
    ----------
    data: tensors ``(x, y, …)`` of the training set; batches are their rows drawn with
        replacement. Or give ``batch_fn``.
    model: the model (default: the monitor's model).
    loss_fn: ``loss_fn(model, batch) -> scalar`` (default: cross-entropy of ``model(x)``
        against y). It may call any method of the model (e.g. ``model.loss``).
    batch_fn: ``batch_fn(generator) -> batch`` instead of ``data`` (must draw only from the
        generator it is given).
    every: run every this many optimizer steps (the papers: 100).
    eta: SGD step η (1e-3, the papers').
    batch_size: minibatch size (512, the papers').
    n_samples: pairs (A, B) per call; D is their median (5: METHODS; the authors' analysis
        scripts used 9).
    seed: seed of the probe's own generator.
    deterministic: eval mode during the probe (True) or keep the model's mode (False).
    subspace: execution subspace to project the commutator on (an
        ``ExecutionManifoldProbe``, a callable or a dict ``name -> (k, numel)`` of orthonormal
        rows, by normalised parameter name); None: no projection.
    n_random: random-subspace draws per sample for the sampled null (exact Beta law).
    dtype: evaluate on copies of the parameters (and floating buffers) in this dtype, e.g.
        ``torch.float64`` (2–3× slower on CPU; float inputs must be cast by ``loss_fn``).
        Default None: the model's own dtype. float32 is adequate: the defect is formed from
        gradient differences (see :mod:`spectral_edge.functional.defect`) and agrees with
        float64 to ~1% (tested).
    name: probe name (history rows and state keys).

    Cost per call: 4·n_samples forward+backward passes on ``batch_size`` examples (20 at the
    defaults), plus a few parameter-sized vector operations; memory: about 8 parameter-sized
    temporaries. Measured on the reference model (GrokTransformer p = 97, 290k parameters,
    one thread of a shared 2-core CPU): ≈ 0.55 s per call, against ≈ 40 ms per training step,
    so every = 100 adds ≈ 14%. The projection adds < 20 ms.
    """

    name = "defect"

    def __init__(self, data: Sequence[torch.Tensor] | None = None, *, model: torch.nn.Module | None = None,
                 loss_fn: LossFn | None = None, batch_fn: Callable[[torch.Generator], Any] | None = None,
                 every: Any = 100, eta: float = 1e-3, batch_size: int = 512, n_samples: int = 5, seed: int = 0,
                 deterministic: bool = True, subspace: SubspaceSource = None, n_random: int = 20,
                 dtype: torch.dtype | None = None, name: str = "defect"):
        super().__init__(every)
        if (data is None) == (batch_fn is None):
            raise ConfigError("give the training data (tensors x, y, …) or a batch_fn, exactly one of them")
        if not eta > 0:
            raise ConfigError(f"eta must be positive, got {eta}")
        if int(n_samples) < 1 or int(batch_size) < 1:
            raise ConfigError(f"n_samples and batch_size must be ≥ 1, got {n_samples}, {batch_size}")
        self.data = None if data is None else tuple(data)
        self.model = model
        self.loss_fn = loss_fn
        self.batch_fn = batch_fn
        self.eta = float(eta)
        self.batch_size = int(batch_size)
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self.deterministic = bool(deterministic)
        self.subspace = subspace
        self.n_random = int(n_random)
        self.dtype = dtype
        self.name = str(name)

    # ------------------------------------------------------------------ helpers
    def _batch(self, gen: torch.Generator) -> Any:
        if self.batch_fn is not None:
            return self.batch_fn(gen)
        assert self.data is not None
        return draw_batch(self.data, self.batch_size, gen)

    def _basis(self, names: Sequence[str]) -> list[torch.Tensor | None] | None:
        src = self.subspace
        if src is None:
            return None
        if hasattr(src, "basis"):
            src = src.basis()
        elif callable(src):
            src = src()
        if not src:
            return None
        if not isinstance(src, Mapping):
            raise ConfigError("subspace must give a mapping parameter name -> (k, numel) orthonormal rows")
        unknown = [n for n in src if n not in names]
        if unknown:
            raise ConfigError(f"subspace names not among the model's trainable parameters: {unknown[:3]}")
        return [src.get(n) for n in names]

    def measure(self, model: torch.nn.Module, step: int) -> dict[str, float]:
        """The metrics at the model's current parameters (what :meth:`run` records)."""
        ml = ModelLoss(model, self.loss_fn, self.dtype)
        gen = probe_generator(self.seed, self.name, int(step))
        basis = self._basis(ml.names)
        samples = []
        with isolated(model, self.deterministic):
            if not self.deterministic:
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
            theta = ml.theta()
            for _ in range(self.n_samples):
                a, b = self._batch(gen), self._batch(gen)
                samples.append(commutator_defect(ml.closure(a), ml.closure(b), theta, self.eta))
        D = np.array([s.defect for s in samples])
        out: dict[str, float] = {
            "defect": float(np.median(D)),
            "defect_min": float(D.min()),
            "defect_max": float(D.max()),
            "defect_mean": float(D.mean()),
            "grad_cos": float(np.median([s.grad_cos for s in samples])),
            "step_norm": float(np.median([np.sqrt(s.norm_a * s.norm_b) for s in samples])),
            "commutator_norm": float(np.median([s.delta_norm for s in samples])),
        }
        if basis is not None:
            k = sum(0 if B is None else int(B.shape[0]) for B in basis)
            p = sum(int(t.numel()) for t in theta)
            fr = np.array([subspace_fraction(s.delta, basis) for s in samples])
            expected = random_subspace_expected(k, p)
            rng = np.random.default_rng(stable_key(self.seed, self.name, "null", int(step)))
            drawn = random_subspace_fraction(k, p, self.n_random * len(samples), rng) if k > 0 else np.zeros(1)
            out.update({
                "exec_dim": float(k),
                "exec_frac": float(np.median(fr)),
                "exec_random": expected,
                "exec_random_drawn": float(drawn.mean()),
                "exec_ratio": float(np.median(fr)) / expected if expected > 0 else float("nan"),
            })
        return out

    # ------------------------------------------------------------------ Probe protocol
    def run(self, ctx: ProbeContext) -> dict[str, float]:
        return self.measure(resolve_model(self.model, ctx.model), ctx.step)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}  # draws are a pure function of (seed, name, step): nothing else to keep

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise StateError(f"the saved defect probe used seed {state.get('seed')}, this one {self.seed}")
