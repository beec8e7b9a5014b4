"""The analysis engine: samples of parameters → sketches → windows → per-window rows.

:class:`TrajectoryAnalyzer` is the streaming core shared by the live monitor and the offline
``analyze`` command: push the parameters of each sample (as (name, tensor) pairs, one at a
time) and get back the rows of every window that the sample completes. Its state is
fixed-shape and resumable.

:func:`analyze_checkpoints` runs it over a folder of checkpoints, reading tensor by tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, ConfigError, NonFiniteError, ShapeMismatchError, StateError
from .functional.sketch import SketchSpec
from .functional.spectrum import DEFAULT_KSTAR_RULE, KSTAR_RULES
from .probes.sampler import GroupSketcher
from .probes.window import SketchWindow
from .selection import Selection, normalize_name

Row = dict[str, Any]


@dataclass(frozen=True)
class AnalysisConfig:
    """What to analyse and how.

    ``windows``: window sizes W (all are computed from one pairwise matrix).
    ``sketch``: the projection (default: fold, d = 100, seed 0).
    ``selection``: which tensors and groups.
    ``kstar_rule``: ``floor`` (default), ``argmax`` or ``weighted``.
    """

    windows: tuple[int, ...] = (10,)
    sketch: SketchSpec = field(default_factory=SketchSpec)
    selection: Selection = field(default_factory=Selection)
    kstar_rule: str = DEFAULT_KSTAR_RULE

    def __post_init__(self) -> None:
        ws = tuple(sorted({int(w) for w in self.windows}))
        if not ws:
            raise ConfigError("give at least one window size")
        if ws[0] < 2:
            raise ConfigError(f"window sizes must be ≥ 2, got {ws[0]}")
        object.__setattr__(self, "windows", ws)
        if self.kstar_rule not in KSTAR_RULES:
            raise ConfigError(f"unknown k* rule {self.kstar_rule!r}; choose one of {', '.join(KSTAR_RULES)}")

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary (stored with results)."""
        sel = self.selection
        return {
            "windows": list(self.windows),
            "sketch": self.sketch.to_dict(),
            "selection": {"include": list(sel.include), "exclude": list(sel.exclude), "preset": sel.preset,
                          "group_by": sel.group_by, "include_buffers": sel.include_buffers},
            "kstar_rule": self.kstar_rule,
        }


class TrajectoryAnalyzer:
    """Streaming sketch-and-window analysis of a sequence of parameter samples.

    Parameters
    ----------
    config: :class:`AnalysisConfig`.
    tensors: the available tensors as ``name → (shape, dtype)`` (or TensorInfo-like objects
        with ``.shape``/``.dtype``), in a fixed order. The selection is applied to these;
        every later sample must provide exactly the selected ones with the same shapes.
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
        numels = {n: _numel(s) for n, s in self.shapes.items()}
        self.sketcher = GroupSketcher(self.plan, config.sketch, numels)
        self.max_window = max(config.windows)
        self.sketcher.check_memory(self.max_window + 1)
        self.windows = {g: SketchWindow(d, self.max_window, difference) for g, d in self.sketcher.dims.items()}

    @property
    def groups(self) -> list[str]:
        return self.sketcher.groups

    @property
    def n_parameters(self) -> int:
        return sum(_numel(s) for s in self.shapes.values())

    def sketch(self, tensors: Iterable[tuple[str, torch.Tensor]], device: torch.device | str | None = None,
               allow_missing: bool = False) -> dict[str, torch.Tensor]:
        """Sketch one sample: every selected tensor exactly once (others are ignored).

        ``allow_missing`` treats absent tensors as zero (gradients of unused parameters)."""
        accs = self.sketcher.begin(device)
        seen: set[str] = set()
        for raw, t in tensors:
            name = normalize_name(raw)
            if name not in self.shapes:
                continue
            if name in seen:
                raise ConfigError(f"tensor {name!r} was given twice in one sample")
            if tuple(t.shape) != self.shapes[name]:
                raise ShapeMismatchError(None, f"tensor {name!r} has shape {tuple(t.shape)}, expected {self.shapes[name]}")
            self.sketcher.add(accs, name, t)
            seen.add(name)
        if len(seen) != len(self.shapes) and not allow_missing:
            missing = [n for n in self.plan.names if n not in seen]
            raise ShapeMismatchError(None, f"{len(missing)} selected tensor(s) missing, e.g. {missing[:3]}")
        return self.sketcher.finish(accs)

    def push_sketches(self, step: int, sketches: Mapping[str, torch.Tensor]) -> list[Row]:
        """Add already-computed group sketches (e.g. all-reduced across ranks)."""
        for g, w in self.windows.items():
            w.push(sketches[g], step)
        return self.rows()

    def push(self, step: int, tensors: Iterable[tuple[str, torch.Tensor]]) -> list[Row]:
        """Sketch and add one sample; returns the rows of the windows it completes."""
        return self.push_sketches(step, self.sketch(tensors))

    def rows(self) -> list[Row]:
        """Rows (one per group and W) for the windows ending at the newest sample."""
        out: list[Row] = []
        for g, w in self.windows.items():
            for W in self.config.windows:
                if not w.ready(W):
                    continue
                st = w.compute(W, self.config.kstar_rule)
                row: Row = {"step": w.step(0), "step_first": w.step(W if w.difference else W - 1), "group": g}
                row.update(st.as_row())
                out.append(row)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config.describe(), "names": list(self.plan.names),
                "windows": {g: w.state_dict() for g, w in self.windows.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state.get("names", [])) != list(self.plan.names):
            raise StateError("the saved analyzer state was made for a different parameter set")
        if state.get("config") != self.config.describe():
            raise StateError("the saved analyzer state was made with a different configuration")
        for g, w in self.windows.items():
            if g not in state["windows"]:
                raise StateError(f"the saved analyzer state has no window for group {g!r}")
            w.load_state_dict(state["windows"][g])


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


@dataclass
class AnalysisResult:
    """Rows of an analysis and what produced them."""

    rows: list[Row]
    config: AnalysisConfig
    checkpoints: list[tuple[int, str]] = field(default_factory=list)
    n_parameters: int = 0
    groups: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)

    def to_frame(self):
        """The rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def metadata(self) -> dict[str, Any]:
        return {"config": self.config.describe(), "checkpoints": self.checkpoints,
                "n_parameters": self.n_parameters, "groups": self.groups,
                "skipped": self.skipped, "aliases": self.aliases}


def analyze_checkpoints(
    folder: str | Path,
    config: AnalysisConfig | None = None,
    *,
    state_key: str | None = None,
    skip_bad: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> AnalysisResult:
    """Analyse every checkpoint in ``folder`` in step order (see :class:`AnalysisConfig`).

    Headers of all checkpoints are checked first, so most bad input fails before any work.
    ``skip_bad``: warn and skip unreadable checkpoints instead of stopping. ``progress`` is
    called as ``progress(done, total, step)``. A bad checkpoint mid-way raises its
    :class:`~spectral_edge.errors.CheckpointError` with a ``partial`` attribute: the
    :class:`AnalysisResult` of the rows computed before it.
    """
    from .io.checkpoints import discover, open_checkpoint

    config = config or AnalysisConfig()
    warn = on_warning or (lambda msg: None)
    refs = discover(folder)
    # -- validate headers up front and fix the tensor set from the first good checkpoint
    good = []
    infos0 = None
    skipped: list[str] = []
    aliases: dict[str, str] = {}
    for ref in refs:
        try:
            with open_checkpoint(ref, state_key=state_key) as rd:
                info = rd.tensor_info()
                if infos0 is None:
                    aliases = rd.aliases()
                    infos0 = {n: i for n, i in info.items() if n not in aliases}
                    analyzer = TrajectoryAnalyzer(config, infos0)
                else:
                    _check_same(ref.path, analyzer, info)
            good.append(ref)
        except CheckpointError as e:
            if not skip_bad or isinstance(e, ShapeMismatchError):
                raise
            skipped.append(str(ref.path))
            warn(f"skipping {e}")
    if infos0 is None:
        raise CheckpointError(Path(folder), "no readable checkpoint")
    if len(good) < 2:
        raise CheckpointError(Path(folder), f"found {len(good)} usable checkpoint(s); at least 2 are needed for one update")
    if len(good) - 1 < config.windows[0]:
        warn(f"{len(good)} checkpoints give {len(good) - 1} updates, fewer than the smallest window W = {config.windows[0]}: no rows")
    if aliases:
        warn(f"tied weights counted once: {', '.join(f'{a} = {b}' for a, b in aliases.items())}")
    result = AnalysisResult(rows=[], config=config, n_parameters=analyzer.n_parameters,
                            groups=analyzer.groups, skipped=skipped, aliases=aliases)
    for done, ref in enumerate(good):
        try:
            with open_checkpoint(ref, state_key=state_key) as rd:
                wanted = [n for n in rd.tensor_info() if normalize_name(n) in analyzer.shapes]
                try:
                    rows = analyzer.push(ref.step, rd.iter_tensors(wanted))
                except (NonFiniteError, ShapeMismatchError) as e:
                    raise type(e)(ref.path, e.problem) from None
        except CheckpointError as e:
            if skip_bad and not isinstance(e, (ShapeMismatchError,)) and _fresh(analyzer, ref.step):
                skipped.append(str(ref.path))
                warn(f"skipping {e}")
                continue
            e.partial = result  # type: ignore[attr-defined]
            raise
        result.checkpoints.append((ref.step, str(ref.path)))
        result.rows.extend(rows)
        if progress is not None:
            progress(done + 1, len(good), ref.step)
    return result


def _fresh(analyzer: TrajectoryAnalyzer, step: int) -> bool:
    """True if no window has taken a sample at ``step`` yet (safe to skip it)."""
    w = next(iter(analyzer.windows.values()))
    return w.n_samples == 0 or w.step(0) < step


def _check_same(path: Path, analyzer: TrajectoryAnalyzer, info: Mapping[str, Any]) -> None:
    """Every selected tensor is present with the same shape; raise ShapeMismatchError otherwise."""
    norm = {normalize_name(n): i for n, i in info.items()}
    for name, shape in analyzer.shapes.items():
        if name not in norm:
            raise ShapeMismatchError(path, f"tensor {name!r} is missing (present in the first checkpoint)")
        got = tuple(int(s) for s in norm[name].shape)
        if got != shape:
            raise ShapeMismatchError(path, f"tensor {name!r} has shape {got}, but {shape} in the first checkpoint")


__all__ = ["AnalysisConfig", "AnalysisResult", "TrajectoryAnalyzer", "analyze_checkpoints"]
