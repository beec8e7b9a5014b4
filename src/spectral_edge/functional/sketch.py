"""Seeded linear sketches of flattened parameter vectors (METHODS.md §3).

A sketch maps the selected parameters θ ∈ R^P to y = S θ ∈ R^d. Every family here is

- **exactly linear**: the sketch of an update is the difference of the sketches of the two
  states, so a monitor keeps d numbers per sample and never a copy of θ;
- **split-invariant**: entry S[a, (name, i)] depends only on (seed, parameter name, global
  flat index i), so the sketch of a tensor is the sum of its chunks' or shards' sketches
  (up to floating-point summation order);
- **reproducible**: a pure function of the seed (see :mod:`.rng`), never of a global RNG.

Usage is accumulate-then-finish, so work is shared across all tensors of a sample::

    acc = sk.new_accumulator()
    for name, t in named_tensors:
        sk.add(acc, name, t)            # or add(acc, name, shard, offset=start_of_shard)
    y = sk.finish(acc)                  # (d,) float64

Families
--------
``exact``
    No projection: y is θ itself (float64). For small models; everything is exact.
``fold`` (default)
    Two stages. (1) Fold: cut each tensor's flat index into chunks of B (a prime) and add
    every chunk, times a seeded ±1 per (name, chunk), into B float64 buckets; then multiply
    bucket j by a seeded ±1 per (name, j). That is one GEMV per tensor, ``z += sᵀ X`` with X
    the (chunks, B) view of the tensor (a single streaming read), and an O(B) product.
    (2) Project: ``y = Gᵀ z`` with a fixed seeded Gaussian G (B, d), N(0, 1/d). Overall
    ``S[:, (t, i)] = s_{t, i div B} · R[(i mod B + h_t) mod B] · G[i mod B]`` is a JL-type map
    with E[SᵀS] = I. Chunk signs decorrelate the chunks of one tensor; B prime keeps chunks
    from lining up with the rows of weight matrices (a power-of-two B would fold every row of
    a 512-wide matrix onto the same buckets); the per-tensor bucket signs (a shifted copy of
    one random pattern R) decorrelate different tensors that share buckets, such as the
    query, key and value updates of one layer (same input, same layout), or the many small
    tensors that fit in a single chunk.
``gaussian``
    Dense Gaussian JL, entries N(0, 1/d) generated on the fly, block by block, from a
    generator keyed by (seed, name, block index). The accuracy reference; O(P·d) work per
    sample (the authors' method).
``countsketch``
    Classic CountSketch: each entry goes to one seeded bucket of d with a seeded sign.

Reproducibility: fold's signs and projection come from a counter-based hash (identical on
every platform and version); gaussian and countsketch use torch's CPU generator per block of
entries, which is reproducible for a given torch version.

Precision
---------
States are large compared with updates (‖θ‖/‖δ‖ up to 1e4), and ``S(θ_t) − S(θ_{t−1})``
cancels that many digits. float32 accumulation then leaves ~1e-3..1e-1 relative error in
the update's sketch; float64 accumulation leaves ~1e-12 (``tests/test_sketch.py`` measures
both). So accumulators are float64 by default; inputs stay in their own dtype. fold widens
them in registers in a numba kernel on the CPU (:mod:`.fold_kernel`), or else upcasts them
block by block into a cached buffer before each GEMV.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from . import fold_kernel, rng

SKETCH_FAMILIES: tuple[str, ...] = ("exact", "fold", "gaussian", "countsketch")
DEFAULT_FAMILY = "fold"
DEFAULT_FOLD_BUCKETS = 16381  # prime
#: At most this many fold chunk signs are cached per sketch (32 MB; P/B for P = 68·10⁹).
SIGN_CACHE_ENTRIES = 1 << 22
_KERNEL_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
#: Default blocks: fold's upcast buffer (elements), gaussian's rows of G, countsketch's draws.
_FOLD_BLOCK_ELEMS = 1 << 20
_GAUSSIAN_BLOCK = 4096
_COUNT_BLOCK = 1 << 16


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    r = int(math.isqrt(n))
    return all(n % f for f in range(3, r + 1, 2))


def _dtype(name: str) -> torch.dtype:
    if name == "float64":
        return torch.float64
    if name == "float32":
        return torch.float32
    raise ConfigError(f"accumulation dtype must be 'float64' or 'float32', got {name!r}")


def _rows(named_rows: Mapping[str, torch.Tensor]) -> int:
    sizes = {int(v.shape[0]) for v in named_rows.values()}
    if len(sizes) > 1:
        raise ConfigError(f"sketch_rows: tensors have different numbers of rows {sorted(sizes)}")
    return sizes.pop() if sizes else 0


class Sketch(ABC):
    """A seeded linear map from named parameter tensors to R^dim (see module docs)."""

    family: ClassVar[str]

    def __init__(self, dim: int, seed: int = 0, accum_dtype: str = "float64"):
        if int(dim) < 1:
            raise ConfigError(f"sketch dimension must be ≥ 1, got {dim}")
        self.dim = int(dim)
        self.seed = int(seed)
        self.accum_dtype = accum_dtype
        self._acc_dtype = _dtype(accum_dtype)

    @property
    def acc_size(self) -> int:
        """Length of the accumulator vector (d, or B for ``fold``)."""
        return self.dim

    def new_accumulator(self, device: torch.device | str | None = None) -> torch.Tensor:
        """A zero accumulator, shape (acc_size,), in the accumulation dtype."""
        return torch.zeros(self.acc_size, dtype=self._acc_dtype, device=device)

    @abstractmethod
    def add(self, acc: torch.Tensor, name: str, values: torch.Tensor, offset: int = 0) -> None:
        """``acc += S_name · values`` where ``values`` are the flat entries
        ``[offset, offset + values.numel())`` of tensor ``name``. Any shape; read in place."""

    def finish(self, acc: torch.Tensor) -> torch.Tensor:
        """The sketch y (dim,) float64 from a filled accumulator."""
        return acc.to(torch.float64)

    def __call__(self, named_tensors: Mapping[str, torch.Tensor] | Any) -> torch.Tensor:
        """Sketch a whole mapping (or iterable of pairs) of tensors at once: y (dim,)."""
        items = named_tensors.items() if isinstance(named_tensors, Mapping) else named_tensors
        acc = None
        for name, t in items:
            if acc is None:
                acc = self.new_accumulator(t.device)
            self.add(acc, name, t)
        if acc is None:
            acc = self.new_accumulator()
        return self.finish(acc)

    def sketch_rows(self, named_rows: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Sketch T vectors at once: ``named_rows[name]`` is (T, numel of name) and row t of
        every tensor forms vector t. Returns (T, dim) float64. Same numbers as sketching each
        vector alone; families with costly randomness override it to draw it once."""
        T = _rows(named_rows)
        out = []
        for t in range(T):
            out.append(self({n: v[t] for n, v in named_rows.items()}))
        return torch.stack(out) if out else torch.zeros(0, self.dim, dtype=torch.float64)

    def config(self) -> dict[str, Any]:
        """Everything that defines the map (family, dim, seed, family options)."""
        return {"family": self.family, "dim": self.dim, "seed": self.seed}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "family")
        return f"{type(self).__name__}({opts})"

    @staticmethod
    def _flat(values: torch.Tensor) -> torch.Tensor:
        if values.is_sparse:
            raise ConfigError("sparse tensors are not supported; densify them first")
        if values.is_complex():
            raise ConfigError("complex tensors are not supported")
        return values.detach().reshape(-1)


class ExactSketch(Sketch):
    """No projection: y = θ in float64, laid out by ``layout`` (name → numel, in order)."""

    family = "exact"

    def __init__(self, layout: Mapping[str, int], seed: int = 0, accum_dtype: str = "float64"):
        starts: dict[str, tuple[int, int]] = {}
        pos = 0
        for name, numel in layout.items():
            starts[name] = (pos, int(numel))
            pos += int(numel)
        if pos == 0:
            raise ConfigError("exact sketch: the parameter selection is empty")
        super().__init__(pos, seed, accum_dtype)
        self._starts = starts

    def add(self, acc: torch.Tensor, name: str, values: torch.Tensor, offset: int = 0) -> None:
        try:
            start, numel = self._starts[name]
        except KeyError:
            raise ConfigError(f"exact sketch: tensor {name!r} is not in the layout") from None
        flat = self._flat(values)
        if offset < 0 or offset + flat.numel() > numel:
            raise ConfigError(
                f"exact sketch: {name!r} entries [{offset}, {offset + flat.numel()}) fall "
                f"outside its {numel} elements"
            )
        acc[start + offset : start + offset + flat.numel()] += flat.to(acc.dtype)

    def config(self) -> dict[str, Any]:
        return {"family": self.family, "dim": self.dim, "seed": self.seed}


@functools.lru_cache(maxsize=4)
def _fold_projection(seed: int, buckets: int, dim: int) -> torch.Tensor:
    """Fold's Gaussian G (B, d) in float64 on the CPU. Shared by every fold sketch of the
    process with the same (seed, B, d): 13 MB and ~30 ms to draw at B = 16381, d = 100.
    Callers must not modify it."""
    k = rng.stable_key(seed, "fold-proj", buckets, dim)
    g = rng.normals(k, 0, buckets * dim).reshape(buckets, dim)
    g /= math.sqrt(dim)
    return torch.from_numpy(g)


class FoldSketch(Sketch):
    """Chunk-signed fold into B prime buckets, then a seeded Gaussian B → d (see module docs).

    Cost per sample: one read of every tensor plus a (chunks×B) float64 GEMV done in
    cache-sized blocks; the B×d projection (13 MB at B = 16381, d = 100) is built once.
    """

    family = "fold"

    def __init__(
        self,
        dim: int = 100,
        seed: int = 0,
        buckets: int = DEFAULT_FOLD_BUCKETS,
        accum_dtype: str = "float64",
        block_elems: int = _FOLD_BLOCK_ELEMS,
    ):
        super().__init__(dim, seed, accum_dtype)
        if int(buckets) < 2:
            raise ConfigError(f"fold sketch: buckets must be ≥ 2, got {buckets}")
        self.buckets = int(buckets)
        self.block_rows = max(1, int(block_elems) // self.buckets)
        self._proj: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self._bufs: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._rsign: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self._rsign_np: np.ndarray | None = None
        # chunk signs and shifts depend only on (name, chunks), so every sample of a stream
        # reuses them: about P/B floats in all (60 KB at 124M parameters), capped below
        self._sign_cache: dict[tuple[str, int, int], np.ndarray] = {}
        self._sign_cached = 0
        self._shift_cache: dict[str, int] = {}

    @property
    def acc_size(self) -> int:
        return self.buckets

    def projection(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The fixed Gaussian G, shape (B, d), entries N(0, 1/d); cached per device."""
        dev = torch.device(device)
        key = (str(dev), self._acc_dtype)
        if key not in self._proj:
            self._proj[key] = _fold_projection(self.seed, self.buckets, self.dim).to(device=dev, dtype=self._acc_dtype)
        return self._proj[key]

    def chunk_signs(self, name: str, first: int, count: int) -> np.ndarray:
        """The ±1 of chunks [first, first+count) of tensor ``name``: shape (count,), float64
        (read-only: it may be shared with later calls)."""
        key = (name, int(first), int(count))
        got = self._sign_cache.get(key)
        if got is None:
            got = rng.signs(rng.stable_key(self.seed, "fold-sign", name), first, count)
            got.flags.writeable = False
            if self._sign_cached + count <= SIGN_CACHE_ENTRIES:
                self._sign_cache[key] = got
                self._sign_cached += count
        return got

    def bucket_signs(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The fixed ±1 pattern R over buckets, stored twice, shape (2B,): tensor ``name`` uses
        ``R[(j + h_name) mod B]`` at bucket j, i.e. the slice ``[h_name, h_name + B)``."""
        dev = torch.device(device)
        key = (str(dev), self._acc_dtype)
        if key not in self._rsign:
            self._rsign[key] = torch.from_numpy(self._bucket_signs_np().copy()).to(device=dev, dtype=self._acc_dtype)
        return self._rsign[key]

    def shift(self, name: str) -> int:
        """h_name ∈ [0, B): where tensor ``name`` starts reading the bucket-sign pattern."""
        h = self._shift_cache.get(name)
        if h is None:
            h = self._shift_cache[name] = rng.stable_key(self.seed, "fold-shift", name) % self.buckets
        return h

    def _buffer(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reusable buffers: (block_rows, B) upcast, (1, B) product, (B,) per-piece fold.
        Allocating them per block would cost a fresh mmap and page faults every megabyte."""
        key = (str(device), dtype)
        if key not in self._bufs:
            self._bufs[key] = (torch.empty(self.block_rows, self.buckets, dtype=dtype, device=device),
                               torch.empty(1, self.buckets, dtype=dtype, device=device),
                               torch.empty(self.buckets, dtype=dtype, device=device))
        return self._bufs[key]

    def add(self, acc: torch.Tensor, name: str, values: torch.Tensor, offset: int = 0) -> None:
        flat = self._flat(values)
        n = flat.numel()
        if n == 0:
            return
        B = self.buckets
        i0 = int(offset)
        c0 = i0 // B  # first chunk touched
        signs = self.chunk_signs(name, c0, (i0 + n - 1) // B - c0 + 1)
        j0 = i0 % B
        head = min(n, B - j0) if j0 else 0  # a partial first chunk, from bucket j0
        full = (n - head) // B  # whole chunks
        tail = n - head - full * B  # a partial last chunk, from bucket 0
        h = self.shift(name)
        if self._use_kernel(flat, acc):
            self._add_kernel(acc, flat, signs, h, j0, head, full, tail)
        else:
            self._add_torch(acc, flat, signs, h, j0, head, full, tail)

    def _add_kernel(self, acc: torch.Tensor, flat: torch.Tensor, signs: np.ndarray, h: int,
                    j0: int, head: int, full: int, tail: int) -> None:
        """The numba path: each piece goes straight into the accumulator, in one read."""
        B, n = self.buckets, flat.numel()
        x = flat.view(torch.int16).numpy().view(np.uint16) if flat.dtype == torch.bfloat16 else flat.numpy()
        a, R = acc.numpy(), self._bucket_signs_np()
        if head:
            fold_kernel.fold_rows(x[:head].reshape(1, head), signs[:1], R[j0 + h : j0 + h + head], a[j0 : j0 + head])
        if full:
            fold_kernel.fold_rows(x[head : head + full * B].reshape(full, B), signs[1 if head else 0 :][:full],
                                  R[h : h + B], a, threads=torch.get_num_threads())
        if tail:
            fold_kernel.fold_rows(x[n - tail :].reshape(1, tail), signs[-1:], R[h : h + tail], a[:tail])

    def _add_torch(self, acc: torch.Tensor, flat: torch.Tensor, signs: np.ndarray, h: int,
                   j0: int, head: int, full: int, tail: int) -> None:
        """The torch path (any device and dtype): fold into z block by block, then ``acc += R ⊙ z``."""
        B, n = self.buckets, flat.numel()
        dt = acc.dtype
        buf, prod, z = self._buffer(acc.device, dt)
        # buckets this piece touches: [j0, j0+head) ∪ [0, B) if full ∪ [0, tail)
        lo, hi = (j0, j0 + head) if head else (B, 0)
        if full:
            lo, hi = 0, B
        if tail:
            lo, hi = 0, max(hi, tail)
        z[lo:hi].zero_()
        if head:
            z[j0 : j0 + head].add_(flat[:head].to(dt), alpha=float(signs[0]))
        if full:  # the (rows, B) view folded block by block: z += sᵀ X, upcast in a cached buffer
            s = torch.tensor(signs[1 if head else 0 :][:full], device=acc.device, dtype=dt)
            X = flat[head : head + full * B].view(full, B)
            for r in range(0, full, self.block_rows):
                rows = min(self.block_rows, full - r)
                if X.dtype == dt:
                    blk = X[r : r + rows]
                else:
                    blk = buf[:rows]
                    blk.copy_(X[r : r + rows])
                torch.mm(s[r : r + rows].view(1, rows), blk, out=prod)  # (1, B)
                z.add_(prod[0])
        if tail:
            z[:tail].add_(flat[n - tail :].to(dt), alpha=float(signs[-1]))
        acc[lo:hi].addcmul_(z[lo:hi], self.bucket_signs(acc.device)[lo + h : hi + h])

    def _bucket_signs_np(self) -> np.ndarray:
        """R stored twice (2B,), float64 numpy, read-only."""
        if self._rsign_np is None:
            r = rng.signs(rng.stable_key(self.seed, "fold-bucket-sign", self.buckets), 0, self.buckets)
            self._rsign_np = np.concatenate([r, r])
            self._rsign_np.flags.writeable = False
        return self._rsign_np

    @staticmethod
    def _use_kernel(flat: torch.Tensor, acc: torch.Tensor) -> bool:
        """The numba kernel takes CPU float32/float64/bfloat16 values into a float64 accumulator; it
        is loaded (~0.5 s once per process) at the first tensor large enough to gain from it,
        so small models never import numba."""
        return (flat.numel() >= fold_kernel.MIN_ELEMS and flat.device.type == "cpu"
                and acc.device.type == "cpu" and acc.dtype == torch.float64
                and flat.dtype in _KERNEL_DTYPES and flat.is_contiguous() and acc.is_contiguous()
                and fold_kernel.kernel() is not None)

    def finish(self, acc: torch.Tensor) -> torch.Tensor:
        G = self.projection(acc.device)
        return (acc.to(G.dtype) @ G).to(torch.float64)

    def config(self) -> dict[str, Any]:
        return {"family": self.family, "dim": self.dim, "seed": self.seed, "buckets": self.buckets}


def _block_generator(seed: int, label: str, name: str, block: int) -> torch.Generator:
    """A CPU generator seeded by hash(seed, label, name, block): position-addressable
    randomness at block granularity (torch's generators cannot skip ahead)."""
    g = torch.Generator()
    g.manual_seed(rng.stable_key(seed, label, name, block) & ((1 << 63) - 1))
    return g


class _BlockedSketch(Sketch):
    """Families whose randomness comes in blocks of ``block`` consecutive entries of a tensor.

    Entry (name, i) belongs to block i // block and draws from that block's own generator,
    so any chunk or shard reproduces exactly the entries it covers.
    """

    label: ClassVar[str]

    def __init__(self, dim: int, seed: int, accum_dtype: str, block: int):
        super().__init__(dim, seed, accum_dtype)
        self.block = int(block)

    @abstractmethod
    def _draw(self, gen: torch.Generator, count: int) -> Any:
        """The random structure of the first ``count`` entries of a block (or all of it)."""

    @abstractmethod
    def _apply(self, acc: torch.Tensor, x: torch.Tensor, drawn: Any, lo: int, hi: int) -> None:
        """acc += contribution of x, the entries [lo, hi) of a block."""

    def add(self, acc: torch.Tensor, name: str, values: torch.Tensor, offset: int = 0) -> None:
        flat = self._flat(values)
        n, L = flat.numel(), self.block
        pos = 0
        while pos < n:
            i = int(offset) + pos
            b, lo = divmod(i, L)
            hi = min(L, lo + (n - pos))
            drawn = self._draw(_block_generator(self.seed, self.label, name, b), hi)
            self._apply(acc, flat[pos : pos + hi - lo].to(acc.dtype), drawn, lo, hi)
            pos += hi - lo


class GaussianSketch(_BlockedSketch):
    """Dense Gaussian JL: ``S[a, (name, i)] ~ N(0, 1/d)``, drawn block by block.

    O(P·d) random numbers per sample: the accuracy reference, not for large models (the
    authors' method; about as fast as theirs here).
    """

    family = "gaussian"
    label = "gaussian"

    def __init__(self, dim: int = 100, seed: int = 0, accum_dtype: str = "float64", block: int = _GAUSSIAN_BLOCK):
        super().__init__(dim, seed, accum_dtype, block)
        self._scale = 1.0 / math.sqrt(self.dim)

    def _draw(self, gen: torch.Generator, count: int) -> torch.Tensor:
        # always the whole block: torch.randn's output is not prefix-stable in its length
        return torch.randn(self.block, self.dim, generator=gen, dtype=torch.float32)  # (L, d)

    def _apply(self, acc: torch.Tensor, x: torch.Tensor, drawn: torch.Tensor, lo: int, hi: int) -> None:
        G = drawn[lo:hi].to(device=acc.device, dtype=acc.dtype)
        acc.add_(x @ G, alpha=self._scale)

    def sketch_rows(self, named_rows: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(T, dim) sketches of T vectors, drawing each block of G once for all rows."""
        T = _rows(named_rows)
        out = torch.zeros(T, self.dim, dtype=self._acc_dtype)
        for name, v in named_rows.items():
            X = v.detach().reshape(T, -1)
            for b, lo in enumerate(range(0, X.shape[1], self.block)):
                G = self._draw(_block_generator(self.seed, self.label, name, b), self.block)
                hi = min(X.shape[1], lo + self.block)
                out.add_(X[:, lo:hi].to(out.dtype) @ G[: hi - lo].to(out.dtype), alpha=self._scale)
        return out.to(torch.float64)


class CountSketch(_BlockedSketch):
    """CountSketch: entry (name, i) goes to a seeded bucket h(i) ∈ [0, d) with a seeded sign."""

    family = "countsketch"
    label = "countsketch"

    def __init__(self, dim: int = 100, seed: int = 0, accum_dtype: str = "float64", block: int = _COUNT_BLOCK):
        super().__init__(dim, seed, accum_dtype, block)

    def _draw(self, gen: torch.Generator, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        # randint fills sequentially, so the first `count` draws equal those of the whole block
        h = torch.randint(0, 2 * self.dim, (count,), generator=gen)  # bucket and sign in one draw
        return h % self.dim, 1.0 - 2.0 * (h // self.dim).to(torch.float64)

    def _apply(self, acc: torch.Tensor, x: torch.Tensor, drawn: Any, lo: int, hi: int) -> None:
        buckets, signs = drawn
        acc.index_add_(0, buckets[lo:hi].to(acc.device), x * signs[lo:hi].to(device=acc.device, dtype=acc.dtype))


def _whole(value: Any, what: str) -> int:
    """``value`` as an int ≥ 1, or a ConfigError naming ``what`` (no truncation, no default)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ConfigError(f"{what} must be a whole number ≥ 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SketchSpec:
    """A serialisable description of a sketch; ``build(layout)`` makes the object.

    ``family``: one of ``exact``, ``fold`` (default), ``gaussian``, ``countsketch``.
    ``dim``: output dimension d, a whole number ≥ 1 (the papers use d = 10·W). The exact
    sketch has no projection: its d is the parameter count of the layout it is built for,
    so its ``dim`` is None (a value given is checked, then dropped).
    ``buckets``: fold's B (a prime; default 16381), ≥ 1 for every family.
    ``accum_dtype``: ``float64`` (default). Values are never truncated or replaced by a
    default: 0, negatives, fractions and strings are a ConfigError naming the option.
    """

    family: str = DEFAULT_FAMILY
    dim: int | None = 100
    seed: int = 0
    buckets: int = DEFAULT_FOLD_BUCKETS
    accum_dtype: str = "float64"

    def __post_init__(self) -> None:
        if self.family not in SKETCH_FAMILIES:
            raise ConfigError(
                f"unknown sketch family {self.family!r}; choose one of {', '.join(SKETCH_FAMILIES)}"
            )
        if self.family == "exact":
            if self.dim is not None:
                _whole(self.dim, "the sketch dimension (dim, --sketch-dim)")
            object.__setattr__(self, "dim", None)
        else:
            object.__setattr__(self, "dim", _whole(self.dim, "the sketch dimension (dim, --sketch-dim)"))
        object.__setattr__(self, "buckets", _whole(self.buckets, "the number of fold buckets (buckets, --buckets)"))
        if self.family == "fold" and not _is_prime(self.buckets):
            raise ConfigError(f"fold sketch: buckets (--buckets) must be a prime number, got {self.buckets}")
        _dtype(self.accum_dtype)

    def build(self, layout: Mapping[str, int] | None = None) -> Sketch:
        """Instantiate; ``layout`` (name → numel) is required for ``exact`` only."""
        if self.family == "exact":
            if layout is None:
                raise ConfigError("the exact sketch needs the parameter layout")
            return ExactSketch(layout, self.seed, self.accum_dtype)
        assert self.dim is not None
        if self.family == "fold":
            return FoldSketch(self.dim, self.seed, self.buckets, self.accum_dtype)
        if self.family == "gaussian":
            return GaussianSketch(self.dim, self.seed, self.accum_dtype)
        return CountSketch(self.dim, self.seed, self.accum_dtype)

    def working_bytes(self) -> int:
        """Bytes the built sketch allocates besides its accumulator and the window: fold's
        B×d float64 projection (13 MB at B = 16381, d = 100) and its block buffers;
        gaussian's block of G (4096×d float32, and its float64 copy); countsketch's block of
        draws; nothing for exact (its accumulator is the parameter count, counted with the
        window). For refusing absurd settings before anything is allocated."""
        if self.family == "exact":
            return 0
        d = int(self.dim or 0)
        if self.family == "fold":
            return self.buckets * d * 8 + _FOLD_BLOCK_ELEMS * 8 + 3 * self.buckets * 8
        if self.family == "gaussian":
            return _GAUSSIAN_BLOCK * d * (4 + 8)
        return _COUNT_BLOCK * 3 * 8

    def to_dict(self) -> dict[str, Any]:
        """Plain fields; the exact sketch's ``dim`` is None (no projection)."""
        return asdict(self)
