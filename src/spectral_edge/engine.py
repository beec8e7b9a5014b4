"""The offline analysis engine: a folder of checkpoints → per-window rows.

:func:`analyze_checkpoints` runs a :class:`~spectral_edge.stream.analyzer.TrajectoryAnalyzer`
(the streaming core shared with the live monitor) over a folder of checkpoints, reading
tensor by tensor, and returns an :class:`AnalysisResult`. ``AnalysisConfig`` and
``TrajectoryAnalyzer`` live in :mod:`spectral_edge.stream.analyzer` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError, NonFiniteError, ShapeMismatchError
from .selection import normalize_name
from .stream.analyzer import AnalysisConfig, Row, TrajectoryAnalyzer, default_sketch


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description of the analysis (everything but the rows)."""
        return {"config": self.config.to_dict(), "checkpoints": self.checkpoints,
                "n_parameters": self.n_parameters, "groups": self.groups,
                "skipped": self.skipped, "aliases": self.aliases}

    def metadata(self) -> dict[str, Any]:
        """Deprecated name of :meth:`to_dict`."""
        return self.to_dict()


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


#: the short name exported by ``spectral_edge`` (``from spectral_edge import analyze``)
analyze = analyze_checkpoints

__all__ = ["AnalysisConfig", "AnalysisResult", "Row", "TrajectoryAnalyzer", "analyze", "analyze_checkpoints",
           "default_sketch"]
