"""Modular arithmetic: the grokking benchmark of Power et al. (2022), as the papers use it.

Every example is a pair (a, b) of residues mod p and its label is ``op(a, b) mod p``.

Token layout: the input is the two-token sequence ``[a, b]``; token ids are the residues
themselves (vocabulary size p, no operator or "=" token) and the model reads its answer out
at the first position. This is what the authors' scripts do (two learned position
embeddings, read-out ``h[:, 0]``), and it keeps the reference model at about 290k
parameters.

Split: all admissible pairs (``mul`` drops a = 0 and b = 0, so that every a has an
inverse) are shuffled by a generator seeded with ``seed`` and the first
``int(train_frac · N)`` go to training. ``val_frac`` > 0 makes it a three-way split: the next
``int(val_frac · N)`` pairs are a validation split and the rest the test split, so that an
alarm can read a validation loss that is disjoint from the pairs whose accuracy defines the
grok step. The training pairs (and so the training trajectory) do not depend on ``val_frac``. The authors shuffled with Python's ``random``; we
use ``numpy.random.default_rng(seed)``, so the split is deterministic but not theirs
bit-for-bit.

Multitask (shared trunk, one head per operation): the same pairs carry one label per
operation; when any operation is ``mul`` all pairs are nonzero, as in the authors'
dual-task (add + mul) and tri-task (add + mul + x²+y²) runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ConfigError

__all__ = [
    "OPERATIONS",
    "NONZERO_OPERATIONS",
    "GROKKING_OPERATIONS",
    "ModularData",
    "MultitaskModularData",
    "canonical_op",
    "modular_label",
    "modular_labels",
    "modular_pairs",
    "make_modular",
    "make_multitask_modular",
    "sample_batch",
]

#: op name -> f(a, b, p) = label, on Python ints or integer tensors alike.
OPERATIONS: dict[str, Callable] = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "x2y2": lambda a, b, p: (a * a + b * b) % p,
    "x2xyy2": lambda a, b, p: (a * a + a * b + b * b) % p,
    "x3xy": lambda a, b, p: (a * a * a + a * b) % p,
}
#: Operations whose pairs exclude a = 0 and b = 0.
NONZERO_OPERATIONS: frozenset[str] = frozenset({"mul"})
#: Operations that grok at p = 97 in the papers (x2xyy2 and x3xy never do in 200k steps).
GROKKING_OPERATIONS: tuple[str, ...] = ("add", "sub", "mul", "x2y2")

_ALIASES = {
    "x2_y2": "x2y2",
    "sq": "x2y2",
    "x2_xy_y2": "x2xyy2",
    "x3_xy": "x3xy",
    "+": "add",
    "-": "sub",
    "*": "mul",
}


def canonical_op(op: str) -> str:
    """Canonical operation name for ``op`` (accepts the authors' spellings, e.g. ``x2_y2``)."""
    name = _ALIASES.get(op, op)
    if name not in OPERATIONS:
        raise ConfigError(f"unknown modular operation {op!r}; choose one of {sorted(OPERATIONS)}")
    return name


def modular_label(op: str, a: int, b: int, p: int) -> int:
    """op(a, b) mod p for Python ints."""
    return int(OPERATIONS[canonical_op(op)](a, b, p))


def modular_labels(op: str, ab: torch.Tensor, p: int) -> torch.Tensor:
    """op(a, b) mod p for every row of ``ab`` (N, 2) int64 -> (N,) int64."""
    a, b = ab[:, 0].long(), ab[:, 1].long()  # (N,), (N,)
    return OPERATIONS[canonical_op(op)](a, b, p)  # (N,)


def modular_pairs(p: int, nonzero: bool = False) -> torch.Tensor:
    """All pairs (a, b) in row-major order, a, b ∈ [0, p) or [1, p) if ``nonzero``: (N, 2) int64."""
    if p < 2:
        raise ConfigError(f"modulus p must be >= 2, got {p}")
    lo = 1 if nonzero else 0
    r = torch.arange(lo, p, dtype=torch.long)  # (p - lo,)
    a, b = torch.meshgrid(r, r, indexing="ij")  # (p - lo, p - lo) each
    return torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)  # (N, 2)


def _split(n: int, train_frac: float, seed: int, val_frac: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded permutation of range(n) cut at int(train_frac · n) and int(val_frac · n) after it:
    (train idx, validation idx (empty when val_frac = 0), test idx)."""
    if not 0.0 < train_frac < 1.0:
        raise ConfigError(f"train_frac must lie in (0, 1), got {train_frac}")
    if not 0.0 <= val_frac < 1.0 or train_frac + val_frac >= 1.0:
        raise ConfigError(f"val_frac must lie in [0, 1 − train_frac) = [0, {1 - train_frac:g}), got {val_frac}")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(train_frac * n)
    n_val = int(val_frac * n)
    if n_train == 0 or n_train + n_val >= n or (val_frac > 0 and n_val == 0):
        raise ConfigError(f"train_frac={train_frac}, val_frac={val_frac} leave an empty split of {n} examples")
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


@dataclass(frozen=True)
class ModularData:
    """One operation's train/(validation/)test split. Inputs are ``[a, b]`` token ids; labels
    op(a, b) mod p. ``val_x``/``val_y`` are empty (0 rows) without a validation split."""

    train_x: torch.Tensor  # (N_train, 2) int64
    train_y: torch.Tensor  # (N_train,) int64
    test_x: torch.Tensor  # (N_test, 2) int64
    test_y: torch.Tensor  # (N_test,) int64
    op: str
    p: int
    train_frac: float
    seed: int
    val_x: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.long))  # (N_val, 2) int64
    val_y: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # (N_val,) int64
    val_frac: float = 0.0

    @property
    def vocab_size(self) -> int:
        """Number of input token ids (= p)."""
        return self.p

    @property
    def n_classes(self) -> int:
        """Number of label classes (= p)."""
        return self.p


@dataclass(frozen=True)
class MultitaskModularData:
    """Several operations on shared pairs; column k of the labels belongs to ``ops[k]``."""

    train_x: torch.Tensor  # (N_train, 2) int64
    train_y: torch.Tensor  # (N_train, K) int64
    test_x: torch.Tensor  # (N_test, 2) int64
    test_y: torch.Tensor  # (N_test, K) int64
    ops: tuple[str, ...]
    p: int
    train_frac: float
    seed: int


def make_modular(op: str = "add", p: int = 97, train_frac: float = 0.5, seed: int = 42,
                 val_frac: float = 0.0) -> ModularData:
    """Seeded train/test split of all pairs with labels op(a, b) mod p (mul: a, b ≠ 0);
    ``val_frac`` > 0 carves a validation split out of the held-out pairs (see the module docs)."""
    name = canonical_op(op)
    pairs = modular_pairs(p, nonzero=name in NONZERO_OPERATIONS)  # (N, 2)
    tr, va, te = _split(len(pairs), train_frac, seed, val_frac)
    x_tr, x_va, x_te = (pairs[torch.from_numpy(i)] for i in (tr, va, te))
    return ModularData(x_tr, modular_labels(name, x_tr, p), x_te, modular_labels(name, x_te, p),
                       name, p, train_frac, seed, x_va, modular_labels(name, x_va, p), float(val_frac))


def make_multitask_modular(ops: Sequence[str] = ("add", "mul"), p: int = 97, train_frac: float = 0.5,
                           seed: int = 42) -> MultitaskModularData:
    """Seeded split of shared pairs with one label column per op (pairs nonzero if any op is mul)."""
    names = tuple(canonical_op(o) for o in ops)
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"ops must be a non-empty list of distinct operations, got {list(ops)}")
    pairs = modular_pairs(p, nonzero=any(n in NONZERO_OPERATIONS for n in names))  # (N, 2)
    tr, _, te = _split(len(pairs), train_frac, seed)
    x_tr, x_te = pairs[torch.from_numpy(tr)], pairs[torch.from_numpy(te)]
    y_tr = torch.stack([modular_labels(n, x_tr, p) for n in names], dim=1)  # (N_train, K)
    y_te = torch.stack([modular_labels(n, x_te, p) for n in names], dim=1)  # (N_test, K)
    return MultitaskModularData(x_tr, y_tr, x_te, y_te, names, p, train_frac, seed)


def sample_batch(*tensors: torch.Tensor, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Rows idx ~ Uniform{0..N−1}^batch_size (with replacement) of every tensor, same idx for all."""
    if not tensors:
        raise ConfigError("sample_batch needs at least one tensor")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ConfigError(f"sample_batch: tensors disagree in length: {[len(t) for t in tensors]}")
    idx = torch.randint(0, n, (batch_size,), generator=generator)  # (batch_size,)
    return tuple(t[idx] for t in tensors)
