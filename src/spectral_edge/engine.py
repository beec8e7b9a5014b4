"""The offline analysis engine: a folder of checkpoints → per-window rows.

:func:`analyze_checkpoints` runs a :class:`~spectral_edge.stream.analyzer.TrajectoryAnalyzer`
(the streaming core shared with the live monitor) over a folder of checkpoints, reading
tensor by tensor, and returns an :class:`AnalysisResult`. ``AnalysisConfig`` and
``TrajectoryAnalyzer`` live in :mod:`spectral_edge.stream.analyzer` and are re-exported here.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, ConfigError, NonFiniteError, ShapeMismatchError, SpectralEdgeError
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
    workers: int = 1,
    scheduler: str | None = None,
    executor: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    revisions: Sequence[str] | None = None,
    resume: Sequence[int] | None = None,
    on_sketch: Callable[[Mapping[str, Any]], None] | None = None,
) -> AnalysisResult:
    """Analyse every checkpoint in ``folder`` in step order (see :class:`AnalysisConfig`).

    Headers of all checkpoints are checked first, so most bad input fails before any work:
    every checkpoint must hold the same tensors with the same shapes (none missing, none
    appearing later), no two names may be one once wrapper prefixes are removed, and there
    must be floating-point elements to analyse. Tied weights are counted once (the rule is in
    :mod:`spectral_edge.io.checkpoints`) and reported through ``on_warning``.
    ``skip_bad``: warn and skip unreadable checkpoints instead of stopping. ``progress`` is
    called as ``progress(done, total, step)``. ``refs``: the folder's checkpoints as
    :func:`list_checkpoints` already listed them (a caller that has looked, like the CLI,
    saves a second look). A bad checkpoint mid-way raises its
    :class:`~spectral_edge.errors.CheckpointError` with a ``partial`` attribute: the
    :class:`AnalysisResult` of the rows computed before it.

    ``folder`` may be a URL (``s3://…``, ``hf://org/name``, …; :mod:`spectral_edge.io.remote`)
    with ``storage_options`` for its filesystem, and ``revisions`` selects Hub revisions
    (:mod:`spectral_edge.io.hub`). Each checkpoint's sketch is computed by
    :func:`sketch_checkpoint` on ``executor`` (or one made from ``workers`` / ``scheduler``,
    :mod:`spectral_edge.parallel`) and pushed here in step order: the rows are bit-identical
    whoever computed the sketches (each job runs with this process's torch thread count, which
    fixes the order of the sketch's additions). Torch pickles in a store have no cheap header:
    they are checked by the job that reads them. ``resume``: the steps of the checkpoints a
    previous run with the same settings already analysed; they are skipped, except the last
    max W + 1 of them, which are sketched again to fill the windows (their rows are not returned).
    ``on_sketch`` gets each job's report (``step``, ``bytes``, ``seconds``) as it is pushed.
    """
    from .io.remote import open_source, source_label
    from .parallel import SerialExecutor, WorkerLost, make_executor

    config = config or AnalysisConfig()
    warn = on_warning or (lambda msg: None)
    refs = list_checkpoints(folder, revisions=revisions, storage_options=storage_options) if refs is None else list(refs)
    check_distributable(config, workers if executor is None or type(executor) is SerialExecutor else 2, scheduler)
    # -- validate headers up front (torch pickles in a store: in their job)
    good: list[tuple[Any, dict[str, Any] | None]] = []
    skipped: list[str] = []
    for i, ref in enumerate(refs):
        if i and _fetched_whole(ref):
            good.append((ref, None))
            continue
        try:
            with open_source(ref, state_key=state_key) as rd:
                good.append((ref, rd.tensor_info()))
        except CheckpointError as e:
            if not skip_bad:
                raise
            skipped.append(source_label(ref))
            warn(f"skipping {e}")
    if not any(info is not None for _, info in good):
        raise _in(folder, "no readable checkpoint")
    ties = _ties(good, state_key, skip_bad, skipped, warn) if len(good) >= 2 else {}
    if len(good) < 2:
        raise _in(folder, f"found {len(good)} usable checkpoint(s); at least 2 are needed for one update")
    # -- fix the tensor set from the first checkpoint; every other one must match it
    first, info0 = good[0]
    assert info0 is not None
    analyzer = _analyzer(first, config, info0, ties, warn)
    known = {normalize_name(n) for n in info0}
    for ref, info in good[1:]:
        if info is not None:
            _check_same(ref, analyzer, info, ties, known, first.path.name)
    if len(good) - 1 < config.windows[0]:
        warn(f"{len(good)} checkpoints give {len(good) - 1} updates, fewer than the smallest window W = {config.windows[0]}: no rows")
    if ties:
        warn(f"tied weights counted once: {', '.join(f'{a} = {b}' for a, b in ties.items())}")
    checked = {a: c for a, c in ties.items() if config.selection.selects(normalize_name(a), info0[a].dtype)}
    result = AnalysisResult(rows=[], config=config, n_parameters=analyzer.n_parameters,
                            groups=analyzer.groups, skipped=skipped, aliases=ties)
    todo, context = _resume_plan([ref for ref, _ in good], resume, analyzer.max_window)
    plan = SketchPlan(config, {n: (i.shape, i.dtype) for n, i in info0.items()}, ties, checked, state_key,
                      first.path.name, _threads())
    jobs = [(plan, ref) for ref in todo]
    own = executor is None
    executor = make_executor(workers, scheduler) if own else executor
    fn = functools.partial(sketch_checkpoint, sketcher=analyzer.sketcher) if type(executor) is SerialExecutor \
        else sketch_checkpoint
    done = 0
    try:
        results = executor.imap(fn, jobs)
        for k, ref in enumerate(todo):
            try:
                out = next(results)
            except WorkerLost as e:  # not the data's fault, so never skipped: the run stops, rows kept
                lost = todo[e.index] if 0 <= e.index < len(todo) else ref
                err = CheckpointError(None, f"{source_label(lost)}: the worker sketching it was lost {e.attempts} "
                                      f"time(s) ({e.detail}); out of memory or preempted?")
                err.partial = result  # type: ignore[attr-defined]
                raise err from None
            try:
                if "error" in out:
                    raise _rebuilt(out["error"])
                rows = analyzer.push_sketches(ref.step, {g: torch.from_numpy(v) for g, v in out["sketches"].items()})
            except CheckpointError as e:
                if skip_bad and not isinstance(e, (ShapeMismatchError,)) and _fresh(analyzer, ref.step):
                    skipped.append(source_label(ref))
                    warn(f"skipping {e}")
                    continue
                e.partial = result  # type: ignore[attr-defined]
                raise
            if k < context:
                continue
            result.checkpoints.append((ref.step, source_label(ref)))
            result.rows.extend(rows)
            done += 1
            if on_sketch is not None:
                on_sketch(out)
            if progress is not None:
                progress(done, len(todo) - context, ref.step)
    finally:
        close = getattr(results, "close", None) if "results" in locals() else None
        if close is not None:
            close()
        if own:
            executor.close()
    return result


def check_distributable(config: AnalysisConfig, workers: int = 1, scheduler: str | None = None) -> None:
    """ConfigError for the exact sketch on workers: its "sketch" is the whole checkpoint, so there
    is nothing small to ship back (it runs in one process)."""
    if config.sketch.family == "exact" and (int(workers) != 1 or scheduler):
        raise ConfigError("--sketch exact keeps every parameter, so a checkpoint's sketch is as large as the "
                          "checkpoint and there is nothing to gain from workers; run it with --workers 1, or "
                          "choose a projection (--sketch fold)")


@dataclass(frozen=True)
class SketchPlan:
    """What every job of one analysis needs besides its checkpoint: the settings, the first
    checkpoint's tensors (name → (shape, dtype)), the tied weights, and the torch thread count."""

    config: AnalysisConfig
    tensors: dict[str, tuple[tuple[int, ...], Any]]
    ties: dict[str, str]
    checked: dict[str, str]
    state_key: str | None
    first: str
    threads: int


_PLAN_CACHE: dict[int, tuple[SketchPlan, TrajectoryAnalyzer]] = {}


def sketch_checkpoint(job: tuple[SketchPlan, Any], sketcher: Any = None) -> dict[str, Any]:
    """One job: read checkpoint ``job[1]`` where it lives and sketch it → ``{"step", "sketches":
    {group: (d,) float64 array}, "bytes", "seconds"}``, or ``{"error": …}`` for a user error (a
    bad checkpoint is the data's fault, not the worker's: it is returned, not raised, so it is
    not retried). ``sketcher``: the driver's own (serial runs); a worker builds one from the plan
    once per process. Runs with the plan's torch thread count, so the sketch is bit-identical."""
    import time

    from .io.checkpoints import iter_untied
    from .io.remote import open_source

    plan, ref = job
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if threads != plan.threads:  # a worker keeps it (its other jobs, on other threads, want the same)
        torch.set_num_threads(plan.threads)
    try:
        if sketcher is None:
            analyzer = _plan_analyzer(plan)
        else:
            analyzer = None
        with open_source(ref, state_key=plan.state_key) as rd:
            info = rd.tensor_info()
            if analyzer is not None:
                _check_same(ref, analyzer, info, plan.ties, {normalize_name(n) for n in plan.tensors}, plan.first)
                sketcher = analyzer.sketcher
            shapes = sketcher.numels
            wanted = [n for n in info if n not in plan.ties and normalize_name(n) in shapes]
            try:
                sketches = sketcher.sketch_pieces(iter_untied(rd, wanted, plan.checked), None, complete=True)
            except (NonFiniteError, ShapeMismatchError) as e:
                raise _at(type(e), ref, e.problem) from None
            nbytes = int(getattr(rd, "bytes_read", 0) or _local_bytes(ref, info, wanted))
        return {"step": ref.step, "sketches": {g: t.numpy() for g, t in sketches.items()}, "bytes": nbytes,
                "seconds": time.perf_counter() - t0}
    except SpectralEdgeError as e:
        return {"step": ref.step, "error": _payload(e)}
    finally:
        if sketcher is not None and threads != plan.threads:  # in the driver's process: put it back
            torch.set_num_threads(threads)


def _plan_analyzer(plan: SketchPlan) -> TrajectoryAnalyzer:
    """This thread's analyzer for ``plan``, built once per plan and thread (a sketcher reuses
    buffers, so two jobs on two threads of one Dask worker must not share one)."""
    key = threading.get_ident()
    hit = _PLAN_CACHE.get(key)
    if hit is not None and (hit[0] is plan or hit[0] == plan):
        return hit[1]
    analyzer = TrajectoryAnalyzer(plan.config, {n: plan.tensors[n] for n in plan.tensors if n not in plan.ties})
    _PLAN_CACHE[key] = (plan, analyzer)
    return analyzer


def _payload(e: SpectralEdgeError) -> tuple[Any, ...]:
    if isinstance(e, CheckpointError):
        return (type(e), None if e.path is None else str(e.path), e.problem)
    return (type(e), None, str(e))


def _rebuilt(payload: tuple[Any, ...]) -> SpectralEdgeError:
    cls, path, problem = payload
    if issubclass(cls, CheckpointError):
        return cls(path, problem)
    return cls(problem)


def _local_bytes(ref: Any, info: Mapping[str, Any], names: Sequence[str]) -> int:
    return sum(info[n].numel * info[n].dtype.itemsize for n in names)


def _threads() -> int:
    return torch.get_num_threads()


def _in(folder: Any, problem: str) -> CheckpointError:
    """A CheckpointError about the whole source ``folder`` (a local folder or a URL)."""
    from .io.remote import is_url

    return CheckpointError(None, f"{folder}: {problem}") if is_url(folder) else CheckpointError(Path(folder), problem)


def _fetched_whole(ref: Any) -> bool:
    """True for a checkpoint whose header can only be read by fetching it whole (torch
    pickles in a store): checked by its job rather than up front."""
    from .io.remote import needs_fetch

    return needs_fetch(ref)


def _at(cls: type[CheckpointError], ref: Any, problem: str) -> CheckpointError:
    """``cls`` naming checkpoint ``ref`` (a local path, or a URL in the message)."""
    from .io.remote import RemoteRef

    if isinstance(ref, RemoteRef):
        return cls(None, f"{ref.where}: {problem}")
    return cls(ref.path, problem)


def _resume_plan(refs: list[Any], resume: Sequence[int] | None, max_window: int) -> tuple[list[Any], int]:
    """(checkpoints to sketch, how many of them only fill the windows) when resuming after the
    steps ``resume``; ConfigError when the new checkpoints are not all after the old ones."""
    if not resume:
        return refs, 0
    old = set(int(s) for s in resume)
    steps = [r.step for r in refs]
    new = [i for i, s in enumerate(steps) if s not in old]
    if not new:
        return [], 0
    last_old = max(old)
    inside = [steps[i] for i in new if steps[i] < last_old]
    if inside:
        raise ConfigError(f"--resume: step {inside[0]} is new but comes before step {last_old}, the last one already "
                          "analysed; the windows after it would change: rerun with --overwrite")
    gone = sorted(old - set(steps))
    if gone:
        raise ConfigError(f"--resume: step {gone[0]} was analysed before but is not among the checkpoints now; the "
                          "windows would change: rerun with --overwrite")
    k = new[0]
    begin = max(0, k - max_window - 1)  # the ring holds max W + 1 updates (turning needs the one before)
    return refs[begin:], k - begin


def list_checkpoints(folder: str | Path, *, revisions: Sequence[str] | None = None,
                     storage_options: Mapping[str, Any] | None = None) -> list[Any]:
    """The checkpoints of a local folder, a store URL, or the ``revisions`` of ``hf://org/name``,
    sorted by step (ConfigError / CheckpointError naming the source otherwise)."""
    from .io.checkpoints import discover
    from .io.remote import discover_url, is_url

    text = str(folder) if isinstance(folder, Path) else folder
    if revisions:
        if not (is_url(text) and text.lower().startswith("hf://")):
            raise ConfigError(f"--revisions selects revisions of a Hugging Face repository (hf://org/name), "
                              f"not of {folder}")
        from .io.hub import revision_refs

        return revision_refs(text, revisions, storage_options)
    if is_url(text):
        if text.lower().startswith("hf://"):
            from .io.hub import local_revision_folder

            local = local_revision_folder(text)
            if local is not None:
                return discover(local)
        return discover_url(text, storage_options)
    if storage_options:
        raise ConfigError(f"--storage-option applies to URLs (s3://, hf://, …), not to the local folder {folder}")
    return discover(folder)


def _ties(good: list[tuple[Any, dict[str, Any] | None]], state_key: str | None, skip_bad: bool, skipped: list[str],
          warn: Callable[[str], None]) -> dict[str, str]:
    """The run's tied weights, from its first and last readable checkpoints (``skip_bad``: a
    checkpoint whose data cannot be read is dropped from ``good`` and the next one tried)."""
    from .io.checkpoints import tied_names
    from .io.remote import open_source, source_label

    while len(good) >= 2:
        (a, _), (b, _) = good[0], good[-1]
        try:
            with open_source(a, state_key=state_key) as first, open_source(b, state_key=state_key) as last:
                return tied_names(first, last)
        except CheckpointError as e:
            bad = next((i for i in (0, len(good) - 1) if _names(e, good[i][0])), None)
            if not skip_bad or bad is None:
                raise
            skipped.append(source_label(good[bad][0]))
            warn(f"skipping {e}")
            del good[bad]
    return {}


def _names(e: CheckpointError, ref: Any) -> bool:
    """True if error ``e`` is about checkpoint ``ref`` (its path, a file inside it, or its URL)."""
    from .io.remote import RemoteRef

    if isinstance(ref, RemoteRef):
        return e.path is None and str(e).startswith(ref.where)
    where = Path(e.path) if e.path is not None else None
    return where is not None and (where == ref.path or ref.path in where.parents)


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _listed(items: list[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def _unique_names(ref: Any, info: Mapping[str, Any], ties: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """normalised name -> (name in the file, info) of the tensors that are not tied copies;
    two names that are one once wrapper prefixes are removed raise CheckpointError naming both."""
    out: dict[str, tuple[str, Any]] = {}
    for name, i in info.items():
        if name in ties:
            continue
        key = normalize_name(name)
        if key in out:
            raise _at(CheckpointError, ref, f"tensors {out[key][0]!r} and {name!r} are one name ({key!r}) once "
                      "wrapper prefixes (module., _orig_mod., …) are removed; keep one of them")
        out[key] = (name, i)
    return out


def _analyzer(ref: Any, config: AnalysisConfig, info: Mapping[str, Any], ties: Mapping[str, str],
              warn: Callable[[str], None]) -> TrajectoryAnalyzer:
    """The analyzer for the tensors of the first checkpoint (``ref``), or an error naming it."""
    from .io.remote import source_label

    kept = _unique_names(ref, info, ties)
    if not any(i.dtype.is_floating_point for _, i in kept.values()):
        listed = _listed([f"{n!r} ({_dtype_name(i.dtype)})" for n, i in kept.values()])
        raise _at(CheckpointError, ref, f"no floating-point tensor to analyse: {listed}; only floating-point "
                  "parameters are analysed")
    complex_ = [n for key, (n, i) in kept.items() if i.dtype.is_complex and config.selection.selects(key)]
    if complex_:
        warn(f"{ref.path.name}: complex tensor(s) skipped, only real floating-point parameters are analysed: "
             f"{_listed([repr(n) for n in complex_])}")
    try:
        analyzer = TrajectoryAnalyzer(config, {n: i for n, i in kept.values()})
    except ConfigError as e:
        if "matches none" not in str(e):
            raise
        raise ConfigError(f"{e}, in {source_label(ref)}") from None
    if analyzer.n_parameters == 0:
        listed = _listed([f"{n!r} {tuple(s)}" for n, s in analyzer.shapes.items()])
        raise _at(CheckpointError, ref, f"the selected tensors hold no elements ({listed}): nothing to analyse")
    return analyzer


def _fresh(analyzer: TrajectoryAnalyzer, step: int) -> bool:
    """True if no window has taken a sample at ``step`` yet (safe to skip it)."""
    w = next(iter(analyzer.windows.values()))
    return w.n_samples == 0 or w.step(0) < step


def _check_same(ref: Any, analyzer: TrajectoryAnalyzer, info: Mapping[str, Any], ties: Mapping[str, str],
                known: set[str], first: str) -> None:
    """Every selected tensor is present with the same shape, and no tensor that would be
    analysed appears that the first checkpoint (``first``, whose normalised names are
    ``known``) lacks; raise ShapeMismatchError otherwise."""
    norm = _unique_names(ref, info, ties)
    for name, shape in analyzer.shapes.items():
        if name not in norm:
            raise _at(ShapeMismatchError, ref, f"tensor {name!r} is missing (present in the first checkpoint)")
        got = tuple(int(s) for s in norm[name][1].shape)
        if got != shape:
            raise _at(ShapeMismatchError, ref, f"tensor {name!r} has shape {got}, but {shape} in the first checkpoint")
    for key, (name, i) in norm.items():
        if key not in known and analyzer.config.selection.selects(key, i.dtype):
            raise _at(ShapeMismatchError, ref, f"tensor {name!r} appears here but is not in the first checkpoint "
                      f"({first}); every checkpoint must hold the same tensors")


#: the short name exported by ``spectral_edge`` (``from spectral_edge import analyze``)
analyze = analyze_checkpoints

__all__ = ["AnalysisConfig", "AnalysisResult", "Row", "SketchPlan", "TrajectoryAnalyzer", "analyze",
           "analyze_checkpoints", "check_distributable", "default_sketch", "list_checkpoints", "sketch_checkpoint"]
