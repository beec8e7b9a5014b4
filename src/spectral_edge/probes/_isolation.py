"""Shared plumbing of the probes that evaluate the model: side-effect-free loss closures.

A probe must not change the model's parameters, buffers, ``.grad`` fields, train/eval
flags, the optimizer, or any global RNG. The tools here make that structural:

- :func:`loss_closure` evaluates the loss through :func:`torch.func.functional_call` with
  *replacement* tensors for every parameter (and clones of every buffer), so the module's
  own tensors are never written and its ``.grad`` fields are never touched (gradients come
  from :func:`torch.autograd.grad`);
- :func:`isolated` puts the model in eval mode (dropout off: a deterministic loss) and forks
  the global RNG of every device the model lives on; on exit each submodule's ``training``
  flag and the RNG states are restored exactly;
- :func:`probe_generator` gives a probe its own ``torch.Generator``, seeded from
  (seed, purpose, step), so a probe's draws never depend on, or advance, anyone else's RNG,
  and a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..functional.rng import stable_key
from ..selection import Selection, normalize_name

Batch = Any
LossFn = Callable[[torch.nn.Module, Batch], torch.Tensor]


def default_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy of ``model(x)`` against labels y for a batch ``(x, y)``; logits of shape
    (B, C) or (B, T, C) (flattened; label −100 is ignored)."""
    x, y = batch[0], batch[1]
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)


def probe_generator(seed: int, *parts: str | int) -> torch.Generator:
    """A fresh CPU generator seeded from ``(seed, parts…)`` (e.g. probe name and step)."""
    return torch.Generator().manual_seed(stable_key(seed, *parts) & 0x7FFF_FFFF_FFFF_FFFF)


def draw_batch(data: Sequence[torch.Tensor], batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """``batch_size`` rows drawn uniformly WITH replacement (same rows of every tensor)."""
    n = len(data[0])
    if any(len(t) != n for t in data):
        raise ConfigError(f"data tensors disagree in length: {[len(t) for t in data]}")
    idx = torch.randint(0, n, (int(batch_size),), generator=generator)  # (batch_size,)
    return tuple(t[idx.to(t.device)] for t in data)


def trainable(model: torch.nn.Module) -> list[tuple[str, str, torch.nn.Parameter]]:
    """(attribute path, normalised name, parameter) of every trainable parameter, tied ones once."""
    out, seen = [], set()
    for raw, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        out.append((raw, normalize_name(raw), p))
    if not out:
        raise ConfigError("the model has no trainable parameters")
    return out


def selected(model: torch.nn.Module, selection: Selection | None) -> list[tuple[str, torch.nn.Parameter]]:
    """(normalised name, parameter) of the trainable parameters a selection picks, in order."""
    params = trainable(model)
    if selection is None:
        return [(n, p) for _, n, p in params]
    plan = selection.plan((n, p.dtype) for _, n, p in params)
    keep = set(plan.names)
    return [(n, p) for _, n, p in params if n in keep]


class _LossModule(torch.nn.Module):
    """``forward(batch) = loss_fn(model, batch)``: lets functional_call swap the tensors of
    the model for any loss (a method such as ``model.loss`` included)."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def resolve_model(own: torch.nn.Module | None, given: torch.nn.Module | None) -> torch.nn.Module:
    """The probe's own model if it has one, else the one it was given (``ctx.model``)."""
    model = own if own is not None else given
    if not isinstance(model, torch.nn.Module):
        raise ConfigError("this probe needs the model: pass model= to the probe, or build the Monitor from an nn.Module")
    return model


class ModelLoss:
    """Loss closures over the trainable parameters of ``model`` (see module docs).

    ``params`` lists the parameters in closure order; ``closure(batch)(θ)`` is the loss at
    replacement tensors θ (a list shaped like ``params``). Buffers are cloned once per
    instance, so even a module that updates buffers in place (batch norm in train mode)
    leaves the real ones alone.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn | None = None, dtype: torch.dtype | None = None):
        self.model = model
        self.dtype = dtype
        self.wrapper = _LossModule(model, loss_fn or default_loss)
        entries = trainable(model)
        self.raw_names = [raw for raw, _, _ in entries]
        self.names = [n for _, n, _ in entries]
        self.params = [p for _, _, p in entries]
        self.buffers = {f"model.{k}": (b.detach().to(dtype, copy=True) if dtype is not None and b.is_floating_point()
                                       else b.detach().clone()) for k, b in model.named_buffers()}

    def theta(self) -> list[torch.Tensor]:
        """Detached views of the current parameters (never written); copies in ``dtype`` if set."""
        if self.dtype is not None:
            return [p.detach().to(self.dtype) for p in self.params]
        return [p.detach() for p in self.params]

    def closure(self, batch: Batch) -> Callable[[list[torch.Tensor]], torch.Tensor]:
        def loss(theta: list[torch.Tensor]) -> torch.Tensor:
            tensors = {f"model.{raw}": t for raw, t in zip(self.raw_names, theta)}
            tensors.update(self.buffers)
            return torch.func.functional_call(self.wrapper, tensors, (batch,), tie_weights=True, strict=False)

        return loss


def _devices(model: torch.nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


@contextlib.contextmanager
def isolated(model: torch.nn.Module, deterministic: bool = True) -> Iterator[None]:
    """Eval mode (if ``deterministic``) and a forked global RNG for the duration; restores
    every submodule's training flag and the RNG states on exit."""
    flags = [(m, m.training) for m in model.modules()]
    with torch.random.fork_rng(devices=_devices(model)):
        try:
            if deterministic:
                model.eval()
            yield
        finally:
            for m, f in flags:
                m.training = f


def flatten(tensors: Sequence[torch.Tensor], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``vec(t_1, …, t_n)`` on CPU in ``dtype``: (Σ numel,)."""
    if not tensors:
        return torch.zeros(0, dtype=dtype)
    return torch.cat([t.detach().reshape(-1).to(device="cpu", dtype=dtype) for t in tensors])
