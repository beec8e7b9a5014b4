"""Parameters → sketch: turn one sample's named tensors into one sketch per group.

The same :class:`GroupSketcher` serves live models (the monitor) and saved checkpoints (the
``analyze`` engine), so both give identical sketches for identical parameters. Tensors are
added one at a time (or shard by shard with an ``offset``), so nothing is ever held whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from ..errors import ConfigError, NonFiniteError
from ..functional.sketch import Sketch, SketchSpec
from ..selection import Plan

#: Above this many bytes of window state, the exact sketch refuses and asks for a projection.
EXACT_STATE_LIMIT_BYTES = 8 << 30


class GroupSketcher:
    """Sketches of the selected tensors, one per group plus ``all``.

    Parameters
    ----------
    plan: the selected names and their groups (:meth:`Selection.plan`).
    spec: which sketch (family, dim, seed).
    numels: number of elements of every selected tensor (needed by the exact sketch and
        to check that shapes never change).
    """

    def __init__(self, plan: Plan, spec: SketchSpec, numels: Mapping[str, int]):
        missing = [n for n in plan.names if n not in numels]
        if missing:
            raise ConfigError(f"no element count for selected tensors: {missing[:5]}")
        self.plan = plan
        self.spec = spec
        self.numels = {n: int(numels[n]) for n in plan.names}
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

    def check_memory(self, slots: int) -> None:
        """Refuse an exact window that would need more than EXACT_STATE_LIMIT_BYTES."""
        if self.spec.family != "exact":
            return
        total = sum(s.dim for s in self.sketches.values()) * 8 * (slots + 1)
        if total > EXACT_STATE_LIMIT_BYTES:
            raise ConfigError(
                f"the exact sketch would keep {total / 2**30:.1f} GiB of window state for "
                f"{self.sketches['all'].dim:,} parameters; use a projection (--sketch fold)"
            )

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

    def sketch(self, tensors: Iterable[tuple[str, torch.Tensor]] | Mapping[str, torch.Tensor],
               device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Convenience: sketch a whole sample of (name, tensor) pairs at once."""
        items = tensors.items() if isinstance(tensors, Mapping) else tensors
        accs = self.begin(device)
        for name, t in items:
            self.add(accs, name, t)
        return self.finish(accs)


def _all_finite(acc: torch.Tensor) -> bool:
    """True if every entry of the accumulator is finite (one reduction in the common case)."""
    if math.isfinite(float(acc.sum())):
        return True
    return bool(torch.isfinite(acc).all())
