"""Shard arithmetic: sketching parameters that live on several processes.

Protocol
--------
Every sketch family is linear and *split-invariant*: entry ``S[a, (name, i)]`` depends only
on the seed, the tensor name and the GLOBAL flat index ``i`` (row-major over the full,
unsharded shape). So if the ranks hold disjoint pieces of the flattened parameters, each
piece given as ``(name, values, global_flat_offset)``::

    y = S θ = Σ_ranks Σ_pieces S[:, (name, offset … offset + n)] · values

Each rank sketches only what it holds (no gather of parameters, no extra memory), calls
``finish`` (linear: for ``fold`` it is the fixed B → d projection) and ONE all-reduce (sum)
of the per-group float64 sketches gives every rank the full sketch: ``groups × d × 8`` bytes
per sample and stream, whatever the model size. All ranks then push the same vector into
their windows, so every rank holds the same, resumable state; rank 0 records.

Rules the pieces must follow (the caller's responsibility):

- every element of every selected tensor is held by exactly one rank (replicated values
  must be given by one rank only, or they are counted once per holder);
- every rank joins every all-reduce, also with no pieces at all (it sends zeros);
- offsets are flat indices into the full tensor, ``0 ≤ offset``, ``offset + n ≤ numel``
  (checked by :meth:`~spectral_edge.stream.sampler.GroupSketcher.sketch_pieces`, the one
  loop every sample goes through).

What produces the pieces:

- :func:`dtensor_pieces` turns a ``DTensor`` (FSDP2 ``fully_shard``, tensor parallel,
  ``distribute_tensor``) into runs of the global flat index: a ``Shard(0)`` shard is one run,
  a ``Shard(1)`` shard of a matrix is one run per row. Mesh dimensions with a ``Replicate``
  placement contribute from their coordinate-0 ranks only; ``Partial`` (sum) values add up
  as they should. ``_StridedShard`` (FSDP2 + TP on one mesh) is not supported.
- :func:`flat_shard` / :func:`shard_range` cut a tensor's flat index into contiguous slices
  for hand-written sharding (ZeRO-style flat buffers); any other disjoint cover works too.

The functions here take a :class:`~spectral_edge.stream.analyzer.TrajectoryAnalyzer` built
with the GLOBAL shapes on every rank (for a Monitor: ``monitor.updates`` or
``monitor.grads``); they know nothing of the Monitor, which follows the same protocol itself.
Everything imports without a process group; only :func:`allreduce_sketches` and the
functions that call it need one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import product
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .analyzer import Row, TrajectoryAnalyzer
    from .sampler import GroupSketcher

#: One piece of a tensor held by this rank: (name, values, global flat offset of values[0]).
Piece = tuple[str, torch.Tensor, int]

__all__ = [
    "Piece",
    "add_piece",
    "allreduce_sketches",
    "block_runs",
    "bytes_per_sample",
    "dtensor_pieces",
    "flat_shard",
    "is_dtensor",
    "push_sharded",
    "shard_range",
    "sketch_shards",
    "sketch_sharded",
]


# ---------------------------------------------------------------------------- pieces
def is_dtensor(t: Any) -> bool:
    """True for a ``torch.distributed.tensor.DTensor``."""
    try:
        from torch.distributed.tensor import DTensor
    except Exception:  # pragma: no cover - torch without distributed
        return False
    return isinstance(t, DTensor)


def shard_range(numel: int, rank: int, world_size: int) -> tuple[int, int]:
    """Flat slice ``[start, stop)`` of rank ``rank`` when ``numel`` elements are cut like
    ``torch.chunk`` (ceil-sized chunks first; trailing ranks may get less or nothing)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in a world of {world_size}")
    size = -(-int(numel) // world_size) if numel else 0
    start = min(rank * size, numel)
    return start, min(start + size, numel)


def flat_shard(t: torch.Tensor, rank: int, world_size: int) -> tuple[torch.Tensor, int]:
    """This rank's contiguous slice of ``t.reshape(-1)`` and its global flat offset."""
    start, stop = shard_range(t.numel(), rank, world_size)
    return t.reshape(-1)[start:stop], start


def dtensor_pieces(name: str, t: Any) -> Iterator[Piece]:
    """The local shard of a DTensor as runs of the global flat index (see module docs).

    Yields nothing on ranks that hold no elements, or whose copy duplicates one on a lower
    coordinate of a replicated mesh dimension."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    mesh = t.device_mesh
    coord = mesh.get_coordinate()
    if coord is None:  # this rank is not part of the mesh
        return
    for mesh_dim, pl in enumerate(t.placements):
        if type(pl).__name__ == "_StridedShard":
            raise ConfigError(f"{name!r}: strided sharding (FSDP2 + tensor parallel on one mesh) is not supported")
        if pl.is_replicate() and coord[mesh_dim] != 0:
            return
        if pl.is_partial() and getattr(pl, "reduce_op", "sum") != "sum":
            raise ConfigError(f"{name!r}: a Partial({pl.reduce_op}) DTensor is not a sum of its shards")
    local = t.to_local()
    if local.numel() == 0:
        return
    shape = tuple(int(s) for s in t.shape)
    lshape, goff = compute_local_shape_and_global_offset(shape, mesh, t.placements)
    yield from block_runs(name, local.reshape(lshape), shape, goff)


def block_runs(name: str, block: torch.Tensor, shape: Sequence[int], offset: Sequence[int]) -> Iterator[Piece]:
    """A dense block ``block`` placed at multi-index ``offset`` in a tensor of ``shape``, as
    contiguous runs of the flat index. Trailing dimensions the block spans fully merge
    with the last partial one, so a dim-0 shard is one run."""
    shape, offset, lshape = tuple(shape), tuple(offset), tuple(block.shape)
    if len(shape) != len(lshape) or len(offset) != len(shape):
        raise ConfigError(f"{name!r}: block of shape {lshape} at {offset} does not fit shape {shape}")
    if any(o < 0 or o + n > m for o, n, m in zip(offset, lshape, shape)):
        raise ConfigError(f"{name!r}: block of shape {lshape} at {offset} does not fit shape {shape}")
    if block.numel() == 0:
        return
    if not shape:  # a scalar
        yield name, block.reshape(-1), 0
        return
    strides = [math.prod(shape[i + 1:]) for i in range(len(shape))]
    k = len(shape)  # dims k.. are spanned fully; dim k-1 is the last partial one
    while k > 1 and lshape[k - 1] == shape[k - 1]:
        k -= 1
    tail = offset[k - 1] * strides[k - 1]
    if k == 1:
        yield name, block.reshape(-1), tail
        return
    for idx in product(*(range(n) for n in lshape[: k - 1])):
        base = sum((i + o) * s for i, o, s in zip(idx, offset, strides))
        yield name, block[idx].reshape(-1), base + tail


# ---------------------------------------------------------------------------- sketching
def add_piece(sketcher: GroupSketcher, accs: dict[str, torch.Tensor], name: str, values: torch.Tensor,
              offset: int = 0) -> None:
    """``accs += S · piece`` for ``values`` at global flat ``offset`` of tensor ``name``
    (any piece, including a partial first shard at offset 0). Raises NonFiniteError on NaN/Inf.
    A building block for custom loops; :func:`sketch_shards` is the usual entry point."""
    if name not in sketcher.numels:
        raise ConfigError(f"tensor {name!r} is not in the parameter selection")
    if values.numel():
        sketcher.add(accs, name, values.reshape(-1), int(offset))


def sketch_shards(analyzer: TrajectoryAnalyzer, pieces: Iterable[Piece], *,
                  device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """This rank's share of the sketch of one sample: ``{group: (d,) float64}``.

    ``analyzer`` is built with the GLOBAL shapes; ``pieces`` are ``(name, local values,
    global flat offset)``; names are normalised and unselected tensors skipped (the checks
    of :meth:`~spectral_edge.stream.sampler.GroupSketcher.sketch_pieces`). No
    communication: summing the results of all ranks gives the full sketch
    (:func:`allreduce_sketches`)."""
    return analyzer.sketcher.sketch_pieces(pieces, device)


def allreduce_sketches(sketches: Mapping[str, torch.Tensor], group: Any = None) -> dict[str, torch.Tensor]:
    """Sum per-rank sketches over ``group`` with ONE all-reduce of their concatenation
    (float64, on the GPU when the backend is NCCL); returns CPU tensors in the same order."""
    import torch.distributed as dist

    keys = list(sketches)
    flat = torch.cat([sketches[k].detach().reshape(-1).to(torch.float64) for k in keys])
    device = flat.device
    if dist.get_backend(group) == "nccl" and device.type == "cpu":
        flat = flat.cuda()
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    flat = flat.cpu()
    out: dict[str, torch.Tensor] = {}
    pos = 0
    for k in keys:
        n = sketches[k].numel()
        out[k] = flat[pos: pos + n]
        pos += n
    return out


def sketch_sharded(analyzer: TrajectoryAnalyzer, pieces: Iterable[Piece], *, group: Any = None,
                   device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The FULL sketch of a sharded sample on every rank: :func:`sketch_shards`, then one
    all-reduce. Collective: every rank of ``group`` must call it (with its own pieces)."""
    return allreduce_sketches(sketch_shards(analyzer, pieces, device=device), group)


def push_sharded(analyzer: TrajectoryAnalyzer, step: int, pieces: Iterable[Piece], *, group: Any = None,
                 device: torch.device | str | None = None) -> list[Row]:
    """Sketch a sharded sample (collective) and push it into ``analyzer``'s windows; every
    rank gets the same rows (record them on one rank)."""
    return analyzer.push_sketches(int(step), sketch_sharded(analyzer, pieces, group=group, device=device))


def bytes_per_sample(analyzer: TrajectoryAnalyzer) -> int:
    """Bytes one sharded sample all-reduces: the float64 sketches of all groups."""
    return 8 * sum(analyzer.sketcher.dims.values())
