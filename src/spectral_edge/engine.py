"""The offline analysis engine: a folder of checkpoints → per-window rows.

:func:`analyze_checkpoints` runs a :class:`~spectral_edge.stream.analyzer.TrajectoryAnalyzer`
(the streaming core shared with the live monitor) over a folder of checkpoints, reading
tensor by tensor, and returns an :class:`AnalysisResult`. ``AnalysisConfig`` and
``TrajectoryAnalyzer`` live in :mod:`spectral_edge.stream.analyzer` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ConfigError, NonFiniteError, ShapeMismatchError
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
    refs: Sequence[Any] | None = None,
) -> AnalysisResult:
    """Analyse every checkpoint in ``folder`` in step order (see :class:`AnalysisConfig`).

    Headers of all checkpoints are checked first, so most bad input fails before any work:
    every checkpoint must hold the same tensors with the same shapes (none missing, none
    appearing later), no two names may be one once wrapper prefixes are removed, and there
    must be floating-point elements to analyse. Tied weights are counted once (the rule is in
    :mod:`spectral_edge.io.checkpoints`) and reported through ``on_warning``.
    ``skip_bad``: warn and skip unreadable checkpoints instead of stopping. ``progress`` is
    called as ``progress(done, total, step)``. ``refs``: the folder's checkpoints as
    :func:`~spectral_edge.io.checkpoints.discover` already listed them (a caller that has
    looked, like the CLI, saves a second look). A bad checkpoint mid-way raises its
    :class:`~spectral_edge.errors.CheckpointError` with a ``partial`` attribute: the
    :class:`AnalysisResult` of the rows computed before it.
    """
    from .io.checkpoints import discover, iter_untied, open_checkpoint

    config = config or AnalysisConfig()
    warn = on_warning or (lambda msg: None)
    refs = discover(folder) if refs is None else list(refs)
    # -- validate headers up front
    good: list[tuple[Any, dict[str, Any]]] = []
    skipped: list[str] = []
    for ref in refs:
        try:
            with open_checkpoint(ref, state_key=state_key) as rd:
                good.append((ref, rd.tensor_info()))
        except CheckpointError as e:
            if not skip_bad:
                raise
            skipped.append(str(ref.path))
            warn(f"skipping {e}")
    if not good:
        raise CheckpointError(Path(folder), "no readable checkpoint")
    ties = _ties(good, state_key, skip_bad, skipped, warn) if len(good) >= 2 else {}
    if len(good) < 2:
        raise CheckpointError(Path(folder), f"found {len(good)} usable checkpoint(s); at least 2 are needed for one update")
    # -- fix the tensor set from the first checkpoint; every other one must match it
    first, info0 = good[0]
    analyzer = _analyzer(first.path, config, info0, ties, warn)
    known = {normalize_name(n) for n in info0}
    for ref, info in good[1:]:
        _check_same(ref.path, analyzer, info, ties, known, first.path.name)
    if len(good) - 1 < config.windows[0]:
        warn(f"{len(good)} checkpoints give {len(good) - 1} updates, fewer than the smallest window W = {config.windows[0]}: no rows")
    if ties:
        warn(f"tied weights counted once: {', '.join(f'{a} = {b}' for a, b in ties.items())}")
    checked = {a: c for a, c in ties.items() if config.selection.selects(normalize_name(a), info0[a].dtype)}
    result = AnalysisResult(rows=[], config=config, n_parameters=analyzer.n_parameters,
                            groups=analyzer.groups, skipped=skipped, aliases=ties)
    for done, (ref, _) in enumerate(good):
        try:
            with open_checkpoint(ref, state_key=state_key) as rd:
                wanted = [n for n in rd.tensor_info() if n not in ties and normalize_name(n) in analyzer.shapes]
                try:
                    rows = analyzer.push(ref.step, iter_untied(rd, wanted, checked))
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


def _ties(good: list[tuple[Any, dict[str, Any]]], state_key: str | None, skip_bad: bool, skipped: list[str],
          warn: Callable[[str], None]) -> dict[str, str]:
    """The run's tied weights, from its first and last readable checkpoints (``skip_bad``: a
    checkpoint whose data cannot be read is dropped from ``good`` and the next one tried)."""
    from .io.checkpoints import open_checkpoint, tied_names

    while len(good) >= 2:
        (a, _), (b, _) = good[0], good[-1]
        try:
            with open_checkpoint(a, state_key=state_key) as first, open_checkpoint(b, state_key=state_key) as last:
                return tied_names(first, last)
        except CheckpointError as e:
            where = Path(e.path) if e.path is not None else None
            bad = next((i for i in (0, len(good) - 1) if where is not None
                        and (where == good[i][0].path or good[i][0].path in where.parents)), None)
            if not skip_bad or bad is None:
                raise
            skipped.append(str(good[bad][0].path))
            warn(f"skipping {e}")
            del good[bad]
    return {}


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _listed(items: list[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def _unique_names(path: Path, info: Mapping[str, Any], ties: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """normalised name -> (name in the file, info) of the tensors that are not tied copies;
    two names that are one once wrapper prefixes are removed raise CheckpointError naming both."""
    out: dict[str, tuple[str, Any]] = {}
    for name, i in info.items():
        if name in ties:
            continue
        key = normalize_name(name)
        if key in out:
            raise CheckpointError(path, f"tensors {out[key][0]!r} and {name!r} are one name ({key!r}) once wrapper "
                                  "prefixes (module., _orig_mod., …) are removed; keep one of them")
        out[key] = (name, i)
    return out


def _analyzer(path: Path, config: AnalysisConfig, info: Mapping[str, Any], ties: Mapping[str, str],
              warn: Callable[[str], None]) -> TrajectoryAnalyzer:
    """The analyzer for the tensors of the first checkpoint (``path``), or an error naming it."""
    kept = _unique_names(path, info, ties)
    if not any(i.dtype.is_floating_point for _, i in kept.values()):
        listed = _listed([f"{n!r} ({_dtype_name(i.dtype)})" for n, i in kept.values()])
        raise CheckpointError(path, f"no floating-point tensor to analyse: {listed}; only floating-point parameters "
                              "are analysed")
    complex_ = [n for key, (n, i) in kept.items() if i.dtype.is_complex and config.selection.selects(key)]
    if complex_:
        warn(f"{path.name}: complex tensor(s) skipped, only real floating-point parameters are analysed: "
             f"{_listed([repr(n) for n in complex_])}")
    try:
        analyzer = TrajectoryAnalyzer(config, {n: i for n, i in kept.values()})
    except ConfigError as e:
        if "matches none" not in str(e):
            raise
        raise ConfigError(f"{e}, in {path}") from None
    if analyzer.n_parameters == 0:
        listed = _listed([f"{n!r} {tuple(s)}" for n, s in analyzer.shapes.items()])
        raise CheckpointError(path, f"the selected tensors hold no elements ({listed}): nothing to analyse")
    return analyzer


def _fresh(analyzer: TrajectoryAnalyzer, step: int) -> bool:
    """True if no window has taken a sample at ``step`` yet (safe to skip it)."""
    w = next(iter(analyzer.windows.values()))
    return w.n_samples == 0 or w.step(0) < step


def _check_same(path: Path, analyzer: TrajectoryAnalyzer, info: Mapping[str, Any], ties: Mapping[str, str],
                known: set[str], first: str) -> None:
    """Every selected tensor is present with the same shape, and no tensor that would be
    analysed appears that the first checkpoint (``first``, whose normalised names are
    ``known``) lacks; raise ShapeMismatchError otherwise."""
    norm = _unique_names(path, info, ties)
    for name, shape in analyzer.shapes.items():
        if name not in norm:
            raise ShapeMismatchError(path, f"tensor {name!r} is missing (present in the first checkpoint)")
        got = tuple(int(s) for s in norm[name][1].shape)
        if got != shape:
            raise ShapeMismatchError(path, f"tensor {name!r} has shape {got}, but {shape} in the first checkpoint")
    for key, (name, i) in norm.items():
        if key not in known and analyzer.config.selection.selects(key, i.dtype):
            raise ShapeMismatchError(path, f"tensor {name!r} appears here but is not in the first checkpoint ({first}); "
                                     "every checkpoint must hold the same tensors")


#: the short name exported by ``spectral_edge`` (``from spectral_edge import analyze``)
analyze = analyze_checkpoints

__all__ = ["AnalysisConfig", "AnalysisResult", "Row", "TrajectoryAnalyzer", "analyze", "analyze_checkpoints",
           "default_sketch"]
