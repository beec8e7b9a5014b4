"""Orthonormal bases over named parameters, for the interventions (METHODS.md §8).

A :class:`Basis` is a set of orthonormal directions in parameter space, stored in *blocks*:
each block names some tensors and holds rows (k, Σ numel) over their concatenated flat
entries; different blocks touch different tensors, so all rows together are orthonormal.
The papers' execution basis is one block per attention matrix (2 rows each, 16 in all on the
modular model): stored so, it costs 2 × the matrices' entries, not 16 × the whole model.

Where a basis comes from:

- :func:`basis_from_run` — *two-phase, as in the papers*: a finished baseline run folder of
  ``spectral-edge grok``/``run`` (``--basis-from RUN``). For every matrix of the run's
  monitored selection (the attention weights W_Q, W_K, W_V, W_O of every layer), the top
  ``n_components`` (2) principal components of its trajectory ``vec(W_t − W_0)``, centred over
  time (:func:`execution_basis`). The trajectory is read from ``RUN/checkpoints/`` (full-model
  checkpoints, ``checkpoint_every`` > 0: the whole run from step 0, as the authors' scripts)
  when it holds at least 3 of them, else from ``RUN/snapshots.safetensors`` (the last 21
  snapshots, every ``every`` steps: the end of the trajectory only — centring makes W_0
  irrelevant, but the PCs then describe the last ~2000 steps, not the whole run).
- *online, beyond the papers*: any object with a ``basis()`` method returning
  ``{name: (k, numel) orthonormal rows}`` — the :class:`~spectral_edge.probes.manifold.
  ExecutionManifoldProbe` that the monitor runs on its own schedule gives the same per-matrix
  PCA from the run itself, refreshed every ``every`` steps (:func:`basis_from_blocks` turns
  its answer into a :class:`Basis`).
- rank-k *SED* bases from the gradient stream: :func:`~spectral_edge.interventions.transforms.
  top_right_singular` of the last W gradients (the intervention keeps the buffer).
- *random* bases: :func:`random_basis` (one block of k rows over given tensors) and
  :meth:`Basis.random_like` (the same block shapes as another basis: the null of the
  execution basis), from a seeded ``torch.Generator``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, NonFiniteError, ShapeMismatchError, StateError
from ..functional.defect import orthonormal_rows
from ..selection import Selection, normalize_name
from .transforms import random_orthonormal

__all__ = ["Basis", "execution_basis", "basis_from_run", "basis_from_blocks", "random_basis"]

#: rows whose Gram matrix is farther than this from the identity are refused
ORTHONORMAL_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class Basis:
    """Orthonormal directions over named tensors, in blocks (see module docs).

    ``shapes``: name → shape of every tensor a block touches. ``blocks``: (names, rows) with
    rows of shape (k, Σ numel of names), float64, orthonormal. ``description``: where it came
    from (recorded in summaries)."""

    shapes: Mapping[str, tuple[int, ...]]
    blocks: tuple[tuple[tuple[str, ...], torch.Tensor], ...]
    description: str = ""
    _sizes: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shapes = {str(n): tuple(int(d) for d in s) for n, s in self.shapes.items()}
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "_sizes", {n: math.prod(s) for n, s in shapes.items()})
        seen: set[str] = set()
        blocks = []
        for names, rows in self.blocks:
            names = tuple(str(n) for n in names)
            unknown = [n for n in names if n not in shapes]
            if unknown:
                raise ConfigError(f"basis block names tensors without a shape: {unknown[:3]}")
            twice = [n for n in names if n in seen]
            if twice:
                raise ConfigError(f"basis blocks overlap in tensor {twice[0]!r}; each tensor belongs to one block")
            seen.update(names)
            rows = torch.as_tensor(rows).detach().to("cpu", torch.float64)
            width = sum(self._sizes[n] for n in names)
            if rows.ndim != 2 or rows.shape[1] != width:
                raise ConfigError(f"basis block over {list(names)[:3]} has rows of shape {tuple(rows.shape)}, "
                                  f"expected (k, {width})")
            if not bool(torch.isfinite(rows).all()):
                raise ConfigError(f"basis block over {list(names)[:3]} holds NaN or Inf")
            err = float((rows @ rows.T - torch.eye(rows.shape[0], dtype=torch.float64)).abs().max()) if len(rows) else 0.0
            if err > ORTHONORMAL_TOL:
                raise ConfigError(f"basis block over {list(names)[:3]} is not orthonormal (max |VVᵀ − I| = {err:.2e})")
            blocks.append((names, rows.contiguous()))
        object.__setattr__(self, "blocks", tuple(blocks))

    @property
    def dim(self) -> int:
        """k: the number of directions."""
        return sum(int(rows.shape[0]) for _, rows in self.blocks)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for names, _ in self.blocks for n in names)

    def check_against(self, shapes: Mapping[str, Sequence[int]], where: str = "the basis") -> None:
        """Every tensor of the basis must be among ``shapes`` (name → shape, e.g. a model's
        selected parameters) with the same shape; a ShapeMismatchError names the first that is not."""
        for n, s in self.shapes.items():
            if n not in shapes:
                near = ", ".join(list(shapes)[:4])
                raise ShapeMismatchError(None, f"{where}: tensor {n!r} is not among the parameters it acts on "
                                               f"({near}{' …' if len(shapes) > 4 else ''}); the basis was made for "
                                               f"another model or parameter selection")
            if tuple(shapes[n]) != tuple(s):
                raise ShapeMismatchError(None, f"{where}: tensor {n!r} has shape {list(s)} in the basis but "
                                               f"{list(shapes[n])} in the model")

    def dense(self, order: Sequence[str]) -> torch.Tensor:
        """(k, P) float64 over the flat concatenation of the tensors ``order`` (zeros where the
        basis has no support). For tests and small models: dense memory is k × P."""
        offsets, at = {}, 0
        for n in order:
            offsets[n] = at
            at += self._sizes.get(n, 0) if n in self._sizes else 0
        missing = [n for n in self.names if n not in offsets]
        if missing:
            raise ConfigError(f"dense(): the order does not list {missing[:3]}")
        out = torch.zeros(self.dim, at, dtype=torch.float64)
        r = 0
        for names, rows in self.blocks:
            c = 0
            for n in names:
                k = self._sizes[n]
                out[r:r + rows.shape[0], offsets[n]:offsets[n] + k] = rows[:, c:c + k]
                c += k
            r += rows.shape[0]
        return out

    def random_like(self, seed: int) -> "Basis":
        """A random basis with the same blocks and the same number of rows in each (a uniformly
        random subspace of each block's coordinates), from ``torch.Generator().manual_seed(seed)``."""
        gen = torch.Generator().manual_seed(int(seed))
        blocks = tuple((names, random_orthonormal(rows.shape[1], rows.shape[0], gen)) for names, rows in self.blocks)
        return Basis(self.shapes, blocks, f"random, the shape of {self.description or 'a basis'} (seed {seed})")

    def state_dict(self) -> dict[str, Any]:
        """Plain values (tensors, lists, strings) for a checkpoint loaded with weights_only=True."""
        return {"shapes": {n: list(s) for n, s in self.shapes.items()},
                "blocks": [[list(names), rows.clone()] for names, rows in self.blocks],
                "description": self.description}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Basis":
        try:
            return cls({n: tuple(s) for n, s in state["shapes"].items()},
                       tuple((tuple(names), rows) for names, rows in state["blocks"]), str(state.get("description", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise StateError(f"malformed basis state ({e})") from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON summary: dimension, blocks, tensors, description."""
        return {"dim": self.dim, "blocks": len(self.blocks), "tensors": len(self.shapes), "description": self.description}


def basis_from_blocks(blocks: Mapping[str, Any], shapes: Mapping[str, Sequence[int]], description: str = "") -> Basis:
    """A :class:`Basis` from ``{name: (k, numel) orthonormal rows}`` (one block per tensor; what
    :meth:`ExecutionManifoldProbe.basis` returns), the shapes taken from ``shapes``."""
    unknown = [n for n in blocks if n not in shapes]
    if unknown:
        raise ShapeMismatchError(None, f"the basis names tensors that are not among the parameters: {unknown[:3]}")
    return Basis({n: tuple(shapes[n]) for n in blocks},
                 tuple(((n,), torch.as_tensor(v)) for n, v in blocks.items() if v is not None and len(v)), description)


def execution_basis(trajectory: Mapping[str, Any], n_components: int = 2, description: str = "",
                    where: str = "the trajectory") -> Basis:
    """The papers' execution basis from snapshots ``{name: (T, *shape)}`` (oldest first): for
    every matrix (≥ 2 dimensions; vectors are skipped), the top ``n_components`` principal
    components of ``vec(W_t − W_0)``, centred over the T snapshots (SVD, float64), made
    orthonormal by QR; one block per matrix (blocks of different matrices are orthogonal by
    construction, as the authors' joint QR of the embedded columns)."""
    if int(n_components) < 1:
        raise ConfigError(f"n_components must be ≥ 1, got {n_components}")
    shapes, blocks = {}, []
    for name in sorted(trajectory):
        X = torch.as_tensor(trajectory[name]).detach().to("cpu", torch.float64)
        if X.ndim < 3:
            continue  # a vector (bias, norm) has no matrix trajectory to take
        T = X.shape[0]
        if T < 3:
            raise ConfigError(f"{where}: {T} snapshots of {name!r}; the principal components need at least 3")
        X = X.reshape(T, -1)
        X = X - X[0]  # W_t − W_0 (centring below makes this a no-op; kept for the definition)
        X = X - X.mean(0, keepdim=True)
        _, s, Vh = torch.linalg.svd(X, full_matrices=False)
        if float(s[0]) == 0.0:
            raise ConfigError(f"{where}: tensor {name!r} did not move over the snapshots; no principal direction")
        rank = int((s > s[0] * 1e-9).sum())
        rows = orthonormal_rows(Vh[: min(int(n_components), rank)])
        shapes[name] = tuple(int(d) for d in trajectory[name].shape[1:])
        blocks.append(((name,), rows))
    if not blocks:
        raise ConfigError(f"{where}: holds no matrix (tensor with ≥ 2 dimensions) to take principal components of")
    return Basis(shapes, tuple(blocks), description)


def random_basis(shapes: Mapping[str, Sequence[int]], k: int, seed: int) -> Basis:
    """One block of k orthonormal rows over all of ``shapes`` (name → shape), uniformly random,
    from ``torch.Generator().manual_seed(seed)``."""
    names = tuple(shapes)
    p = sum(math.prod(shapes[n]) for n in names)
    rows = random_orthonormal(p, k, torch.Generator().manual_seed(int(seed)))
    return Basis({n: tuple(shapes[n]) for n in names}, ((names, rows),), f"random rank {k} (seed {seed})")


# ---------------------------------------------------------------------- from a run folder
def _selection_of(run: Path) -> Selection:
    """The baseline's monitored selection (its config.json), the attention preset by default."""
    preset = "attention"
    cfg = run / "config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, OSError) as e:
            raise CheckpointError(cfg, f"not a readable run config ({e})") from None
        if isinstance(data, dict) and isinstance(data.get("selection"), str):
            preset = data["selection"]
    try:
        return Selection(preset=preset)
    except ConfigError as e:
        raise CheckpointError(cfg, f"selection: {e}") from None


def _from_checkpoints(folder: Path, selection: Selection) -> tuple[dict[str, torch.Tensor], list[int]]:
    from ..io.checkpoints import discover, open_checkpoint

    refs = discover(folder)
    names: list[str] | None = None
    stacks: dict[str, list[torch.Tensor]] = {}
    steps = []
    for ref in refs:
        with open_checkpoint(ref) as reader:
            info = reader.tensor_info()
            raw = {normalize_name(n): n for n in info}
            chosen = sorted(n for n in raw if selection.selects(n, info[raw[n]].dtype) and len(info[raw[n]].shape) >= 2)
            if names is None:
                if not chosen:
                    raise CheckpointError(ref.path, f"holds no matrix of the selection (preset {selection.preset})")
                names = chosen
            elif chosen != names:
                raise ShapeMismatchError(ref.path, f"selects {len(chosen)} matrices where the first checkpoint "
                                                   f"selected {len(names)}")
            for n, t in reader.iter_tensors([raw[n] for n in names]):
                t = t.detach().to(torch.float64)
                key = normalize_name(n)
                if not bool(torch.isfinite(t).all()):
                    raise NonFiniteError(ref.path, f"tensor {n!r} holds NaN or Inf")
                if stacks.get(key) and stacks[key][0].shape != t.shape:
                    raise ShapeMismatchError(ref.path, f"tensor {n!r} has shape {list(t.shape)}, "
                                                       f"{list(stacks[key][0].shape)} in the first checkpoint")
                stacks.setdefault(key, []).append(t)
        steps.append(ref.step)
    return {n: torch.stack(v) for n, v in stacks.items()}, steps


def basis_from_run(run: str | Path, n_components: int = 2, source: str = "auto") -> Basis:
    """The execution basis of a finished baseline run folder (see module docs).

    ``source``: ``auto`` (``checkpoints/`` when it holds ≥ 3 checkpoints, else
    ``snapshots.safetensors``), ``checkpoints`` or ``snapshots``. A folder that is not a run,
    holds neither, or holds a damaged file is a CheckpointError naming it."""
    from ..experiments.checkpoint import SNAPSHOTS_FILE

    run = Path(run)
    if source not in ("auto", "checkpoints", "snapshots"):
        raise ConfigError(f"basis source must be auto, checkpoints or snapshots, got {source!r}")
    if not run.is_dir():
        raise CheckpointError(run, "--basis-from needs the folder of a finished baseline run (spectral-edge grok/run "
                                   "--out); this is " + ("a file" if run.exists() else "not there"))
    ckpt = run / "checkpoints"
    n_ckpt = len([p for p in ckpt.glob("step_*.safetensors")]) if ckpt.is_dir() else 0
    use = source if source != "auto" else ("checkpoints" if n_ckpt >= 3 else "snapshots")
    if use == "checkpoints":
        if n_ckpt < 3:
            raise CheckpointError(ckpt, f"holds {n_ckpt} checkpoints; the principal components need at least 3")
        traj, steps = _from_checkpoints(ckpt, _selection_of(run))
        what = f"{ckpt}: {len(steps)} checkpoints, steps {steps[0]}–{steps[-1]}"
        return execution_basis(traj, n_components, f"execution basis of {what}", where=str(ckpt))
    snap = run / SNAPSHOTS_FILE
    if not snap.is_file():
        raise CheckpointError(run, f"holds no {SNAPSHOTS_FILE} and no checkpoints/: not a finished baseline run with "
                                   "snapshots (train it with snapshots ≥ 3, the default of the modular tasks, or "
                                   "checkpoint_every > 0)")
    from ..analysis.modes import read_snapshots

    snaps = read_snapshots(snap)
    if len(snaps.steps) < 3:
        raise CheckpointError(snap, f"holds {len(snaps.steps)} snapshots; the principal components need at least 3")
    traj = {}
    at = 0
    for n, s in zip(snaps.names, snaps.shapes):
        k = math.prod(s)
        traj[n] = torch.from_numpy(snaps.values[:, at:at + k].reshape(len(snaps.steps), *s).copy())
        at += k
    what = f"{snap}: {len(snaps.steps)} snapshots, steps {snaps.steps[0]}–{snaps.steps[-1]}"
    return execution_basis(traj, n_components, f"execution basis of {what}", where=str(snap))
