"""The streaming analyzer: samples of parameters → sketches → windows → per-window rows.

:class:`TrajectoryAnalyzer` is the core shared by the live monitor, the offline ``analyze``
engine and sharded training (:mod:`.sharding`): push the parameters of each sample (as
``(name, tensor)`` pairs, or pieces with offsets, one at a time) and get back the rows of
every window that the sample completes. Its state is fixed-shape and resumable.

:class:`AnalysisConfig` says what to analyse and how; :func:`default_sketch` is the one
place that fixes the default sketch dimension d = 10·max W.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ConfigError, StateError
from ..functional.sketch import DEFAULT_FOLD_BUCKETS, SketchSpec
from ..functional.spectrum import DEFAULT_KSTAR_RULE, KSTAR_RULES
from ..selection import Selection, normalize_name
from .sampler import GroupSketcher, Item
from .window import STATE_LIMIT_BYTES, SketchWindow, format_bytes, window_state_bytes

Row = dict[str, Any]

#: The default sketch dimension is this many times the largest window size (the papers' d = 10·W).
DIM_PER_WINDOW = 10

__all__ = ["AnalysisConfig", "DIM_PER_WINDOW", "Row", "TrajectoryAnalyzer", "default_dim", "default_sketch"]


def default_dim(windows: Sequence[int]) -> int:
    """The default sketch dimension for these window sizes: d = 10·max W."""
    return DIM_PER_WINDOW * max(int(w) for w in windows)


def default_sketch(windows: Sequence[int], family: str = "fold", *, dim: int | None = None, seed: int = 0,
                   buckets: int | None = None) -> SketchSpec:
    """The sketch used when none is given: ``family`` (fold) with d = 10·max W unless ``dim``
    is given, seed 0 unless ``seed`` is. The CLI, the Monitor and the experiment runner all
    resolve their defaults here, so the same windows give the same d everywhere.

    Only None means "the default": a ``dim`` or ``buckets`` of 0 (or any value that is not a
    whole number ≥ 1) is a ConfigError naming the option, never replaced silently; so is a
    ``dim`` or ``buckets`` given for the exact sketch, which has neither."""
    if family == "exact" and (dim is not None or buckets is not None):
        what = "--sketch-dim" if dim is not None else "--buckets"
        raise ConfigError(f"{what} does not apply to the exact sketch (it keeps every parameter); "
                          "drop it or choose a projection (--sketch fold)")
    return SketchSpec(family, dim=default_dim(windows) if dim is None else dim, seed=int(seed),
                      buckets=DEFAULT_FOLD_BUCKETS if buckets is None else buckets)


@dataclass(frozen=True)
class AnalysisConfig:
    """What to analyse and how.

    ``windows``: window sizes W (all are computed from one pairwise matrix).
    ``sketch``: the projection; None (default) means :func:`default_sketch` of the windows
    (fold, d = 10·max W, seed 0), resolved at construction so ``config.sketch`` is always a
    concrete :class:`SketchSpec`.
    ``selection``: which tensors and groups.
    ``kstar_rule``: ``floor`` (default), ``argmax`` or ``weighted``.
    """

    windows: tuple[int, ...] = (10,)
    sketch: SketchSpec = None  # type: ignore[assignment]  # None → default_sketch(windows)
    selection: Selection = field(default_factory=Selection)
    kstar_rule: str = DEFAULT_KSTAR_RULE

    def __post_init__(self) -> None:
        ws = tuple(sorted({int(w) for w in self.windows}))
        if not ws:
            raise ConfigError("give at least one window size")
        if ws[0] < 2:
            raise ConfigError(f"window sizes must be ≥ 2, got {ws[0]}")
        object.__setattr__(self, "windows", ws)
        if self.sketch is None:
            object.__setattr__(self, "sketch", default_sketch(ws))
        if self.kstar_rule not in KSTAR_RULES:
            raise ConfigError(f"unknown k* rule {self.kstar_rule!r}; choose one of {', '.join(KSTAR_RULES)}")
        self._check_memory()

    def _check_memory(self) -> None:
        """Refuse, before anything is read or allocated, a window whose state alone (one group)
        and the sketch's working memory exceed STATE_LIMIT_BYTES (the exact sketch's d, the
        parameter count, is checked by the analyzer once it is known)."""
        W, sk = self.windows[-1], self.sketch
        d = sk.dim if sk.dim is not None else 1
        state, work = window_state_bytes(W, d), sk.working_bytes()
        if state + work <= STATE_LIMIT_BYTES:
            return
        if sk.dim is None:  # exact: d is the parameter count, not known yet; (W+1)² alone is too much
            raise ConfigError(
                f"W = {W} (--window) would need at least {format_bytes(state)} of memory for the window's "
                f"(W+1)²·8 bytes of inner products alone, before the exact sketch's (W+2)·P·8; the limit is "
                f"{format_bytes(STATE_LIMIT_BYTES)}: use a smaller window")
        what = f"W = {W} (--window) with sketch dimension d = {d} (--sketch-dim)"
        raise ConfigError(
            f"{what} would need {format_bytes(state + work)} of memory ({format_bytes(state)} of window state, "
            f"(W+2)·d·8 + (W+1)²·8 bytes, and {format_bytes(work)} for the {sk.family} sketch); the limit is "
            f"{format_bytes(STATE_LIMIT_BYTES)}: use a smaller window or sketch dimension")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (stored with results)."""
        sel = self.selection
        return {
            "windows": list(self.windows),
            "sketch": self.sketch.to_dict(),
            "selection": {"include": list(sel.include), "exclude": list(sel.exclude), "preset": sel.preset,
                          "group_by": sel.group_by, "include_buffers": sel.include_buffers},
            "kstar_rule": self.kstar_rule,
        }

    def describe(self) -> dict[str, Any]:
        """Deprecated name of :meth:`to_dict`."""
        return self.to_dict()


class TrajectoryAnalyzer:
    """Streaming sketch-and-window analysis of a sequence of parameter samples.

    Parameters
    ----------
    config: :class:`AnalysisConfig`.
    tensors: the available tensors as ``name → (shape, dtype)`` (or TensorInfo-like objects
        with ``.shape``/``.dtype``), in a fixed order. The selection is applied to these;
        every later sample must provide exactly the selected ones with the same shapes.
        For sharded parameters, give the GLOBAL shapes.
    difference: True for parameter states (analyse their updates), False for vectors that
        are analysed as they are (gradients).
    """

    def __init__(self, config: AnalysisConfig, tensors: Mapping[str, Any], difference: bool = True):
        self.config = config
        self.difference = difference
        infos: dict[str, tuple[tuple[int, ...], torch.dtype | None]] = {}
        for name, info in tensors.items():
            shape, dtype = (info.shape, info.dtype) if hasattr(info, "shape") else info
            infos[normalize_name(name)] = (tuple(int(s) for s in shape), dtype)
        self.plan = config.selection.plan((n, dt) for n, (_, dt) in infos.items())
        self.shapes = {n: infos[n][0] for n in self.plan.names}
        numels = {n: math.prod(s) for n, s in self.shapes.items()}
        self.sketcher = GroupSketcher(self.plan, config.sketch, numels, self.shapes)
        self.max_window = max(config.windows)
        self.sketcher.check_memory(self.max_window)
        self.windows = {g: SketchWindow(d, self.max_window, difference) for g, d in self.sketcher.dims.items()}

    @property
    def groups(self) -> list[str]:
        return self.sketcher.groups

    @property
    def n_parameters(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())

    def sketch(self, tensors: Iterable[Item], device: torch.device | str | None = None,
               allow_missing: bool = False) -> dict[str, torch.Tensor]:
        """Sketch one whole sample: every selected tensor exactly once (others are ignored).

        ``allow_missing`` treats absent tensors as zero (gradients of unused parameters).
        See :meth:`GroupSketcher.sketch_pieces` for the checks."""
        return self.sketcher.sketch_pieces(tensors, device, complete=not allow_missing)

    def push_sketches(self, step: int, sketches: Mapping[str, torch.Tensor]) -> list[Row]:
        """Add already-computed group sketches (e.g. all-reduced across ranks)."""
        for g, w in self.windows.items():
            w.push(sketches[g], step)
        return self.rows()

    def push(self, step: int, tensors: Iterable[Item]) -> list[Row]:
        """Sketch and add one sample; returns the rows of the windows it completes."""
        return self.push_sketches(step, self.sketch(tensors))

    def rows(self) -> list[Row]:
        """Rows (one per group and W) for the windows ending at the newest sample: ``step``,
        ``step_first`` (the first step the window spans), ``sample_spacing`` (steps since the
        previous sample; samples may be unevenly spaced) and the window's statistics."""
        out: list[Row] = []
        for g, w in self.windows.items():
            for W in self.config.windows:
                if not w.ready(W):
                    continue
                st = w.compute(W, self.config.kstar_rule)
                row: Row = {"step": w.step(0), "step_first": w.step(W if w.difference else W - 1), "group": g,
                            "sample_spacing": w.step(0) - w.step(1) if w.n_samples >= 2 else None}
                row.update(st.to_dict())
                out.append(row)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "names": list(self.plan.names),
                "windows": {g: w.state_dict() for g, w in self.windows.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state.get("names", [])) != list(self.plan.names):
            raise StateError("the saved analyzer state was made for a different parameter set")
        if _comparable(state.get("config")) != _comparable(self.config.to_dict()):
            raise StateError("the saved analyzer state was made with a different configuration")
        for g, w in self.windows.items():
            if g not in state["windows"]:
                raise StateError(f"the saved analyzer state has no window for group {g!r}")
            w.load_state_dict(state["windows"][g])


def _comparable(config: Any) -> Any:
    """A saved analyzer config as it compares: states saved before the exact sketch reported
    ``"dim": None`` said ``"dim": 100`` (which it ignored); both mean the same sketch."""
    if not isinstance(config, Mapping) or not isinstance(config.get("sketch"), Mapping):
        return config
    sketch = dict(config["sketch"])
    if sketch.get("family") == "exact":
        sketch["dim"] = None
    return {**config, "sketch": sketch}
