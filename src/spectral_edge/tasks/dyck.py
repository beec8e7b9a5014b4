"""Dyck-1 depth prediction: read a bracket string, output the nesting depth at every position.

Setup of the papers (read off the authors' ``dyck/grok_sweep.py``):

* a *pool* of 5,050 sequences is drawn independently; each has ``n ~ Uniform{1..12}``
  bracket pairs and is built left to right: when both moves are legal, "(" is chosen with
  probability 0.55, otherwise the only legal move is taken. The pool is *not*
  deduplicated (short strings such as "()" recur hundreds of times, so train and test
  share strings); pass ``distinct=True`` for a pool of distinct strings instead.
* the pool is shuffled with a data seed and cut into 50 training and 5,000 test sequences;
  the authors keep the data seed fixed (0) across training seeds.
* tokens ``(`` = 0, ``)`` = 1, padding = 2, padded on the right to the context of 24 = 2·12;
* the label at position t is the depth *after* reading token t (count of "(" minus
  count of ")" in tokens 0..t), a class in 0..12 (13 classes); padding positions carry
  ``IGNORE_INDEX`` = −100 so that ``F.cross_entropy`` skips them.

With a causal model the task is a running count. Our generator uses
``numpy.random.default_rng(seed)``; the procedure is the authors' but the strings are not
theirs bit-for-bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError

__all__ = [
    "OPEN",
    "CLOSE",
    "PAD",
    "VOCAB_SIZE",
    "IGNORE_INDEX",
    "DyckData",
    "random_dyck_word",
    "dyck_depths",
    "encode_dyck",
    "make_dyck",
    "dyck_batch",
]

OPEN, CLOSE, PAD = 0, 1, 2  # token ids of "(", ")" and padding
VOCAB_SIZE = 3
IGNORE_INDEX = -100  # label of padding positions (ignored by F.cross_entropy)


def random_dyck_word(max_pairs: int, rng: np.random.Generator, p_open: float = 0.55) -> list[int]:
    """A balanced string with n ~ U{1..max_pairs} pairs; "(" w.p. p_open when both moves are legal."""
    n = int(rng.integers(1, max_pairs + 1))
    seq: list[int] = []
    opened = depth = 0
    for _ in range(2 * n):
        can_open, can_close = opened < n, depth > 0
        if can_open and (not can_close or rng.random() < p_open):
            seq.append(OPEN)
            opened += 1
            depth += 1
        else:
            seq.append(CLOSE)
            depth -= 1
    return seq


def dyck_depths(seq: list[int]) -> list[int]:
    """Depth after each token: d_t = #"(" − #")" among tokens 0..t."""
    out, d = [], 0
    for tok in seq:
        d += 1 if tok == OPEN else -1
        out.append(d)
    return out


def encode_dyck(seqs: list[list[int]], ctx_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens (N, ctx_len) and depth labels (N, ctx_len), IGNORE_INDEX on padding."""
    x = torch.full((len(seqs), ctx_len), PAD, dtype=torch.long)  # (N, ctx_len)
    y = torch.full((len(seqs), ctx_len), IGNORE_INDEX, dtype=torch.long)  # (N, ctx_len)
    for i, s in enumerate(seqs):
        if len(s) > ctx_len:
            raise ConfigError(f"sequence {i} has {len(s)} tokens, more than ctx_len={ctx_len}")
        x[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        y[i, : len(s)] = torch.tensor(dyck_depths(s), dtype=torch.long)
    return x, y


@dataclass(frozen=True)
class DyckData:
    """Train/test split of a Dyck-1 pool: tokens (N, ctx_len), per-position depth labels (N, ctx_len)."""

    train_x: torch.Tensor  # (n_train, ctx_len) int64, PAD on the right
    train_y: torch.Tensor  # (n_train, ctx_len) int64, IGNORE_INDEX on padding
    test_x: torch.Tensor  # (n_pool − n_train, ctx_len)
    test_y: torch.Tensor  # (n_pool − n_train, ctx_len)
    max_pairs: int
    ctx_len: int
    seed: int

    @property
    def n_classes(self) -> int:
        """Depth classes 0..max_pairs."""
        return self.max_pairs + 1


def make_dyck(n_pool: int = 5050, n_train: int = 50, max_pairs: int = 12, ctx_len: int | None = None,
              seed: int = 0, distinct: bool = False, p_open: float = 0.55) -> DyckData:
    """Pool of n_pool random Dyck-1 words (seeded), shuffled, first n_train for training."""
    ctx = 2 * max_pairs if ctx_len is None else ctx_len
    if ctx < 2 * max_pairs:
        raise ConfigError(f"ctx_len={ctx} cannot hold {max_pairs} pairs; use ctx_len >= {2 * max_pairs}")
    if not 0 < n_train < n_pool:
        raise ConfigError(f"need 0 < n_train < n_pool, got n_train={n_train}, n_pool={n_pool}")
    rng = np.random.default_rng(seed)
    seqs: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    tries = 0
    while len(seqs) < n_pool:
        s = random_dyck_word(max_pairs, rng, p_open)
        tries += 1
        if distinct:
            if tuple(s) in seen:
                if tries > 100 * n_pool:
                    raise ConfigError(f"could not draw {n_pool} distinct words with max_pairs={max_pairs}")
                continue
            seen.add(tuple(s))
        seqs.append(s)
    x, y = encode_dyck(seqs, ctx)
    perm = torch.from_numpy(rng.permutation(n_pool))  # shuffle with the same data seed
    x, y = x[perm], y[perm]
    return DyckData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], max_pairs, ctx, seed)


def dyck_batch(n: int, max_pairs: int, ctx_len: int, seed: int,
               p_open: float = 0.55) -> tuple[torch.Tensor, torch.Tensor]:
    """n fresh random words (e.g. longer, out-of-distribution ones): tokens, labels (n, ctx_len)."""
    rng = np.random.default_rng(seed)
    return encode_dyck([random_dyck_word(max_pairs, rng, p_open) for _ in range(n)], ctx_len)
