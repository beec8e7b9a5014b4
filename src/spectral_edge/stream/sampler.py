"""Parameters → sketch: turn one sample's named tensors into one sketch per group.

The same :class:`GroupSketcher` serves live models (the monitor), saved checkpoints (the
``analyze`` engine) and sharded parameters (:mod:`.sharding`), so all give identical
sketches for identical parameters. Tensors are added one at a time (or shard by shard with
an ``offset``), so nothing is ever held whole.

:meth:`GroupSketcher.sketch_pieces` is the one loop over a sample (begin, add every tensor
or piece, finish) and holds the checks every caller gets: names normalised, unselected
tensors skipped, a whole tensor given at most once with exactly its selected shape, a piece
inside its tensor's flat range, and (``complete=True``) every selected tensor present.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Union

import torch

from ..errors import ConfigError, NonFiniteError, ShapeMismatchError
from ..functional.sketch import Sketch, SketchSpec
from ..selection import Plan, normalize_name
from .window import STATE_LIMIT_BYTES, format_bytes, window_state_bytes

#: One item of a sample: a whole tensor ``(name, values)`` or a piece of one
#: ``(name, values, global flat offset of values[0])``.
Item = Union[tuple[str, torch.Tensor], tuple[str, torch.Tensor, int]]

#: Deprecated name of :data:`.window.STATE_LIMIT_BYTES` (every family is held to it now).
EXACT_STATE_LIMIT_BYTES = STATE_LIMIT_BYTES


class GroupSketcher:
    """Sketches of the selected tensors, one per group plus ``all``.

    Parameters
    ----------
    plan: the selected names and their groups (:meth:`Selection.plan`).
    spec: which sketch (family, dim, seed).
    numels: number of elements of every selected tensor (needed by the exact sketch and
        to check that shapes never change).
    shapes: optional full shape of every selected tensor; whole tensors given to
        :meth:`sketch_pieces` must have exactly it (without it, only the element count is
        checked).
    """

    def __init__(self, plan: Plan, spec: SketchSpec, numels: Mapping[str, int],
                 shapes: Mapping[str, Sequence[int]] | None = None):
        missing = [n for n in plan.names if n not in numels]
        if missing:
            raise ConfigError(f"no element count for selected tensors: {missing[:5]}")
        self.plan = plan
        self.spec = spec
        self.numels = {n: int(numels[n]) for n in plan.names}
        self.shapes: dict[str, tuple[int, ...]] | None = None
        if shapes is not None:
            self.shapes = {n: tuple(int(s) for s in shapes[n]) for n in plan.names}
            bad = [n for n, s in self.shapes.items() if math.prod(s) != self.numels[n]]
            if bad:
                raise ConfigError(f"shape and element count disagree for {bad[:5]}")
        self._group_of = plan.group_of()
        self.groups = plan.group_names()
        self._split = len(self.groups) > 1  # groups besides "all"
        if spec.family == "exact":
            self.sketches: dict[str, Sketch] = {"all": spec.build({n: self.numels[n] for n in plan.names})}
            for g, names in plan.groups.items():
                if g != "all":
                    self.sketches[g] = spec.build({n: self.numels[n] for n in names})
        else:
            shared = spec.build()
            self.sketches = {g: shared for g in self.groups}

    @property
    def dims(self) -> dict[str, int]:
        """Sketch length per group."""
        return {g: s.dim for g, s in self.sketches.items()}

    def state_bytes(self, max_window: int) -> int:
        """Bytes of one window per group (:func:`.window.window_state_bytes`) plus the sketch's
        working memory (:meth:`SketchSpec.working_bytes`, shared by the groups)."""
        return sum(window_state_bytes(max_window, d) for d in self.dims.values()) + self.spec.working_bytes()

    def check_memory(self, max_window: int) -> None:
        """Refuse, before any window is allocated, settings that would need more than
        STATE_LIMIT_BYTES (the message says how much they would take)."""
        need = self.state_bytes(max_window)
        if need <= STATE_LIMIT_BYTES:
            return
        W, n = int(max_window), len(self.sketches)
        limit = format_bytes(STATE_LIMIT_BYTES)
        if self.spec.family == "exact":
            raise ConfigError(
                f"the exact sketch would need {format_bytes(need)} of memory for windows of W = {W} over "
                f"{self.sketches['all'].dim:,} parameters ({n} group(s), (W+2)·P·8 + (W+1)²·8 bytes each); the "
                f"limit is {limit}: use a projection (--sketch fold) or a smaller selection")
        d = self.sketches["all"].dim
        raise ConfigError(
            f"{n} groups with W = {W} (--window) and sketch dimension d = {d} (--sketch-dim) would need "
            f"{format_bytes(need)} of memory ((W+2)·d·8 + (W+1)²·8 bytes per group, and "
            f"{format_bytes(self.spec.working_bytes())} for the {self.spec.family} sketch); the limit is {limit}: "
            f"use a smaller window or sketch dimension, or fewer groups (--group-by)")

    def begin(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Fresh accumulators for one sample."""
        if self.spec.family == "exact":
            return {g: s.new_accumulator(device) for g, s in self.sketches.items()}
        groups = [g for g in self.groups if g != "all"] if self._split else ["all"]
        return {g: self.sketches[g].new_accumulator(device) for g in groups}

    def add(self, accs: dict[str, torch.Tensor], name: str, values: torch.Tensor, offset: int = 0) -> None:
        """Add tensor ``name``, or the piece of it at global flat ``offset`` (a shard); raises
        NonFiniteError if it holds NaN/Inf."""
        g = self._group_of.get(name)
        if g is None:
            raise ConfigError(f"tensor {name!r} is not in the parameter selection")
        n, total = values.numel(), self.numels[name]
        if offset < 0 or offset + n > total:
            raise ConfigError(f"tensor {name!r}: entries [{offset}, {offset + n}) fall outside its {total} elements")
        if self.spec.family == "exact":
            if not bool(torch.isfinite(values).all()):
                raise NonFiniteError(None, f"tensor {name!r} holds NaN or Inf")
            self.sketches["all"].add(accs["all"], name, values, offset)
            if g != "all":
                self.sketches[g].add(accs[g], name, values, offset)
            return
        key = g if self._split else "all"
        acc = accs[key]
        self.sketches[key].add(acc, name, values, offset)
        # NaN/Inf in the input always reaches the accumulator (signs and weights are nonzero),
        # so checking B or d numbers replaces a full extra pass over the tensor; their sum is
        # finite exactly when they all are, unless it overflows (then look at each).
        if not _all_finite(acc):
            raise NonFiniteError(None, f"tensor {name!r} holds NaN or Inf")

    def finish(self, accs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The sketch (d,) float64 of every group, ``all`` first."""
        if self.spec.family == "exact":
            return {g: self.sketches[g].finish(accs[g]) for g in self.groups}
        out: dict[str, torch.Tensor] = {}
        sk = self.sketches["all"]
        if self._split:
            total = torch.stack(list(accs.values())).sum(0)
            out["all"] = sk.finish(total)
            for g, a in accs.items():
                out[g] = sk.finish(a)
        else:
            out["all"] = sk.finish(accs["all"])
        return out

    def sketch_pieces(self, items: Iterable[Item], device: torch.device | str | None = None, *,
                      complete: bool = False) -> dict[str, torch.Tensor]:
        """Sketch one sample: ``{group: (d,) float64}``, ``all`` first. THE loop over a sample.

        ``items`` are whole tensors ``(name, values)`` or pieces ``(name, values, offset)``
        with the global flat offset of ``values[0]`` (shards; many pieces of one tensor are
        fine, and their sum is what is sketched). Names are normalised; tensors outside the
        selection are skipped. A whole tensor must have exactly its selected shape and come
        at most once (and not also as pieces); a piece must lie inside its tensor's flat
        range. ``complete``: every selected tensor must be present, and pieces must hold all
        its elements (a whole sample, e.g. a checkpoint); leave it False for gradients
        (unused parameters have none) and for one rank's shards.

        Raises ConfigError (given twice, piece out of range), ShapeMismatchError (wrong
        shape, missing tensors) and NonFiniteError (NaN/Inf). Runs under ``torch.no_grad()``.
        """
        accs = self.begin(device)
        whole: set[str] = set()
        pieced: dict[str, int] = {}  # name → elements received as pieces
        with torch.no_grad():
            for item in items:
                raw, values = item[0], item[1]
                name = normalize_name(raw)
                if name not in self.numels:
                    continue
                values = values.detach()
                if len(item) == 2:  # a whole tensor
                    if name in whole or name in pieced:
                        raise ConfigError(f"tensor {name!r} was given twice in one sample")
                    self._check_whole(name, values)
                    whole.add(name)
                    if values.numel():
                        self.add(accs, name, values)
                else:
                    if name in whole:
                        raise ConfigError(f"tensor {name!r} was given twice in one sample")
                    flat = values.reshape(-1)
                    pieced[name] = pieced.get(name, 0) + flat.numel()
                    offset = int(item[2])  # type: ignore[misc]
                    if flat.numel():
                        self.add(accs, name, flat, offset)
                    elif not 0 <= offset <= self.numels[name]:
                        raise ConfigError(f"tensor {name!r}: entries [{offset}, {offset}) fall outside its "
                                          f"{self.numels[name]} elements")
            if complete:
                self._check_complete(whole, pieced)
            return self.finish(accs)

    def _check_whole(self, name: str, values: torch.Tensor) -> None:
        got = tuple(int(s) for s in values.shape)
        if self.shapes is not None:
            if got != self.shapes[name]:
                raise ShapeMismatchError(None, f"tensor {name!r} has shape {got}, expected {self.shapes[name]}")
        elif values.numel() != self.numels[name]:
            raise ShapeMismatchError(None, f"tensor {name!r} has {values.numel()} elements, expected {self.numels[name]}")

    def _check_complete(self, whole: set[str], pieced: Mapping[str, int]) -> None:
        missing = [n for n in self.plan.names if n not in whole and n not in pieced]
        if missing:
            raise ShapeMismatchError(None, f"{len(missing)} selected tensor(s) missing, e.g. {missing[:3]}")
        for n, got in pieced.items():
            if got != self.numels[n]:
                raise ShapeMismatchError(None, f"tensor {n!r}: the pieces hold {got} of its {self.numels[n]} elements")

    def sketch(self, tensors: Iterable[tuple[str, torch.Tensor]] | Mapping[str, torch.Tensor],
               device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Convenience: sketch a whole sample of (name, tensor) pairs at once
        (:meth:`sketch_pieces` with ``complete=False``)."""
        items = tensors.items() if isinstance(tensors, Mapping) else tensors
        return self.sketch_pieces(items, device)


def _all_finite(acc: torch.Tensor) -> bool:
    """True if every entry of the accumulator is finite (one reduction in the common case)."""
    if math.isfinite(float(acc.sum())):
        return True
    return bool(torch.isfinite(acc).all())
