"""A run as a report shows it, and assembling the report page.

A *source* is any of:

- a run folder ``RUN_DIR`` holding any subset of ``history.jsonl`` (the monitor's history),
  ``eval.csv`` (``step, train_loss, train_acc, test_loss, test_acc``), ``summary.json``
  (``grok_step``, ``warning_step``, ``final_test_acc``, ``history``…), ``config.json``, or
  an ``analyze`` table ``metrics.{parquet,csv,jsonl}``;
- a history file (JSON lines with ``kind``); the files above beside it are read too;
- an ``analyze`` table (``.parquet``, ``.csv``, ``.jsonl`` without ``kind``).

The files are read by :func:`spectral_edge.analysis.series.read_run` (the library's one
reader of runs). :func:`load_run` turns what it read into a :class:`RunView` (one window
size W and one parameter group), finds the grok step and the early-warning step, and the
phases of the gap ratio (:mod:`spectral_edge.analysis.phases`); the defect onset is the
papers' rule (:mod:`spectral_edge.detectors.onset`). Whatever is missing becomes a note,
never an error, as long as there is something to plot.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.phases import PhaseConfig, detect_phases
from ..analysis.series import RunData, _merge_metrics, _metric_frame, read_run
from ..detectors.onset import OnsetParams, OnsetTracker, onset_index
from ..errors import ConfigError

#: test accuracy at which a run counts as grokked when summary.json gives no grok step (METHODS §6)
GROK_ACC = 0.9
#: the paper's defect onset rule (:class:`~spectral_edge.detectors.onset.OnsetParams` defaults):
#: D > ONSET_FACTOR·baseline and D > ONSET_ABS, baseline ≥ ONSET_FLOOR
ONSET = OnsetParams()
ONSET_FACTOR, ONSET_ABS, ONSET_FLOOR = ONSET.factor, ONSET.min_defect, ONSET.floor
#: the phase rule (:class:`~spectral_edge.analysis.phases.PhaseConfig` defaults): plateau = the
#: contiguous run around the peak with R ≥ 0.85·peak; collapse event: first step after the peak with R < 1.20
PHASES = PhaseConfig()
_TEXT_COLUMNS = {"kind", "group", "k_star_rule", "probe", "event", "detector", "reason", "message", "stream",
                 "sketch", "label", "name"}

#: progress callback: ``cb(done, total, what)``
ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Alarm:
    """An ``event`` row with ``event == "alarm"``."""

    step: int
    detector: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Phases:
    """Rise / plateau / collapse of the gap ratio R(t): the plateau is the closed step range
    ``[plateau_start, plateau_end]``; rise is every window before it, collapse every one after."""

    method: str
    peak_step: int
    peak_ratio: float
    plateau_start: int
    plateau_end: int
    first_step: int
    last_step: int
    threshold: float | None = None  # the R level that bounds the plateau, when the rule has one
    collapse_event_step: int | None = None  # first step after the peak with R < collapse_tau
    collapse_tau: float = 1.20

    @property
    def has_rise(self) -> bool:
        return self.plateau_start > self.first_step

    @property
    def has_collapse(self) -> bool:
        return self.plateau_end < self.last_step

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "peak_step": self.peak_step, "peak_ratio": self.peak_ratio,
                "plateau_start": self.plateau_start, "plateau_end": self.plateau_end,
                "rise": [self.first_step, self.plateau_start] if self.has_rise else None,
                "collapse": [self.plateau_end, self.last_step] if self.has_collapse else None,
                "threshold": self.threshold, "collapse_event_step": self.collapse_event_step,
                "collapse_tau": self.collapse_tau}


@dataclass(frozen=True)
class RunView:
    """One run, ready to plot: the windows of one W and one group, evaluations, probes, events,
    drawn from the :class:`~spectral_edge.analysis.series.RunData` read from the files (``data``).

    Frames (pandas) are sorted by step with numeric columns; any of them may be empty.
    """

    data: RunData                   # what was read (files, raw rows, summary.json, config.json, meta)
    label: str
    sed: Any                        # DataFrame: the windows of (window, group), one row per window
    window: int | None              # W shown (None: the input has no window column)
    windows: tuple[int, ...]        # every W in the input
    group: str
    groups: tuple[str, ...]
    kstar_rule: str | None
    sketch: dict[str, Any] | None   # the projection the spectra come from, when recorded
    evals: Any                      # DataFrame: step + train/test accuracy and loss, lr…
    defect: Any                     # DataFrame: step, defect (the commutator defect per probe)
    alarms: tuple[Alarm, ...]
    nonfinite: int                  # non-finite events recorded by the monitor
    grok_step: int | None
    grok_source: str                # where grok_step comes from, or why there is none
    warning_step: int | None
    warning_source: str
    jl: Any                         # DataFrame step, jl_error (relative error of R), or None
    jl_note: str
    phases: Phases | None
    notes: tuple[str, ...] = ()

    @property
    def source(self) -> Path:
        """The run folder or input file."""
        return self.data.path

    @property
    def files(self) -> Mapping[str, Path]:
        """Which inputs were read: history or table, eval, summary, config."""
        return self.data.files

    @property
    def meta(self) -> Mapping[str, Any]:
        """The history's meta row (empty for tables)."""
        return _shown_meta(self.data)

    @property
    def sigma_columns(self) -> list[str]:
        """``sigma_1 … sigma_W`` present in :attr:`sed` (W = the shown window)."""
        return sigma_columns(self.sed, self.window)

    @property
    def has_anything(self) -> bool:
        return bool(len(self.sed) or len(self.evals) or len(self.defect) or self.alarms)

    def series(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one :attr:`sed` column as float arrays (NaN where missing)."""
        if column not in self.sed.columns or not len(self.sed):
            return np.array([], dtype=float), np.array([], dtype=float)
        return self.sed["step"].to_numpy(float), self.sed[column].to_numpy(float)


# ---------------------------------------------------------------------------- frames
def _shown_meta(data: RunData) -> Mapping[str, Any]:
    """The meta row of a history (a report reads no metadata from tables)."""
    return data.meta if data.kind == "history" else {}


def _numeric(df):
    """Every non-text column as float/int (JSON nulls → NaN); text columns kept."""
    import pandas as pd

    df = df.copy()
    for c in df.columns:
        if c in _TEXT_COLUMNS:
            continue
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def sigma_columns(df, window: int | None) -> list[str]:
    """``sigma_1 … sigma_W`` present in ``df`` (all of them when ``window`` is None)."""
    cols = [c for c in df.columns if c.startswith("sigma_") and c[6:].isdigit()]
    cols.sort(key=lambda c: int(c[6:]))
    if window is not None:
        cols = [c for c in cols if int(c[6:]) <= window]
    return cols


def _empty(columns: Sequence[str] = ("step",)):
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})


def _by_step(df):
    df = df[df["step"].notna()].copy()
    df["step"] = df["step"].astype("int64")
    return df.sort_values("step", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------- windows
def _choose_window(sed, window: int | None) -> tuple[int | None, tuple[int, ...]]:
    if window is not None and int(window) < 2:
        raise ConfigError(f"--window must be a window size W ≥ 2, got {window}")
    if "window" not in sed.columns or not len(sed):
        if window is not None and len(sed):
            raise ConfigError(f"--window {window}: this input records no window sizes")
        return (int(window) if window is not None and len(sed) else None), ()
    ws = tuple(sorted({int(w) for w in sed["window"].dropna()}))
    if window is None:
        return (10 if 10 in ws else (ws[0] if ws else None)), ws
    if int(window) not in ws:
        raise ConfigError(f"--window {window}: not in this input; windows recorded: {', '.join(map(str, ws))}")
    return int(window), ws


def _select(sed, window: int | None, group: str) -> tuple[Any, tuple[str, ...]]:
    groups: tuple[str, ...] = ()
    if "group" in sed.columns and len(sed):
        groups = tuple(dict.fromkeys(str(g) for g in sed["group"].dropna()))
        if group not in groups:
            raise ConfigError(f"--group {group!r}: not in this input; groups: {', '.join(groups)}")
        sed = sed[sed["group"].astype(str) == group]
    if window is not None and "window" in sed.columns:
        sed = sed[sed["window"] == window]
    return sed, groups


# ---------------------------------------------------------------------------- phases
def compute_phases(steps: Sequence[float], ratios: Sequence[float]) -> tuple[Phases | None, str | None]:
    """Phases of the gap ratio by :func:`spectral_edge.analysis.phases.detect_phases` (the plateau
    rule: the contiguous run around the peak with R ≥ 0.85·peak; collapse event: the first step
    after the peak with R < 1.20). With fewer finite values than that detector needs, the same
    rule on what there is, and a note. Returns (phases or None when R is all missing, a note or None)."""
    ph = detect_phases(steps, ratios, PHASES)
    note = None
    if ph.valid:
        method = (f"spectral_edge.analysis.phases.detect_phases (method '{ph.method}': plateau = contiguous run "
                  f"around the peak with R ≥ {PHASES.frac:g} × peak)")
    else:
        if ph.peak_step is None:  # R missing everywhere
            return None, None
        note = f"spectral_edge.analysis.phases: {ph.reason}; phases by the built-in rule"
        ph = detect_phases(steps, ratios, PHASES, min_points=1)
        method = f"built-in rule: plateau = contiguous run around the peak with R ≥ {PHASES.frac:g} × peak"
    finite = ph.steps[np.isfinite(ph.values)]
    return Phases(method=method, peak_step=ph.peak_step, peak_ratio=ph.peak_value, plateau_start=ph.plateau_start,
                  plateau_end=ph.plateau_end, first_step=int(finite[0]), last_step=int(finite[-1]),
                  threshold=PHASES.frac * ph.peak_value, collapse_event_step=ph.collapse_step,
                  collapse_tau=ph.primary_tau), note


# ---------------------------------------------------------------------------- evaluations, probes, events
_DEFECT_VALUE_COLUMNS = ("defect", "defect_median", "median", "value")


def _evals(frames: Mapping[str, Any]):
    """eval.csv and the history's log rows, one row per step (``step`` column): per column,
    eval.csv's value wins on a clash, and the first value of a step within each."""
    logs = _metric_frame(frames.get("log"), keep="first")
    return _merge_metrics(logs, _metric_frame(frames.get("eval"), keep="first")).reset_index()


def _defect(probes, evals):
    """(step, defect) of the commutator-defect probe: rows whose probe name mentions
    'defect' or 'commutator' (value column: defect, defect_median, median or value)."""
    import pandas as pd

    if probes is not None and len(probes) and "probe" in probes.columns:
        names = probes["probe"].astype(str).str.lower()
        rows = _numeric(probes[names.str.contains("defect") | names.str.contains("commutator")])
        for col in _DEFECT_VALUE_COLUMNS:
            if col in rows.columns and rows[col].notna().any():
                return _by_step(pd.DataFrame({"step": rows["step"], "defect": rows[col]}).dropna())
    if probes is not None and len(probes) and "defect" in probes.columns:
        rows = _numeric(probes)
        return _by_step(pd.DataFrame({"step": rows["step"], "defect": rows["defect"]}).dropna())
    if "defect" in evals.columns:
        return _by_step(pd.DataFrame({"step": evals["step"], "defect": evals["defect"]}).dropna())
    return _empty(("step", "defect"))


def defect_onset(steps: Sequence[float], values: Sequence[float]) -> int | None:
    """The step of the paper's defect onset (:func:`~spectral_edge.detectors.onset.onset_index`,
    non-finite values skipped), or None if never."""
    d = np.asarray(values, dtype=float)
    i = onset_index(np.where(np.isfinite(d), d, np.nan), ONSET)
    return None if i is None else int(np.asarray(steps, dtype=float)[i])


def onset_level(values: Sequence[float]) -> float | None:
    """The defect level the onset rule asks for, max(ONSET_FACTOR·baseline, ONSET_ABS), from the
    first finite values; None before the baseline is known."""
    tracker = OnsetTracker(ONSET)
    d = np.asarray(values, dtype=float)
    for v in d[np.isfinite(d)][:ONSET.n_baseline]:
        tracker.push(v)
    base = tracker.baseline
    return None if math.isnan(base) else max(ONSET.factor * base, ONSET.min_defect)


def _alarms(events) -> tuple[tuple[Alarm, ...], int]:
    if events is None or not len(events) or "event" not in events.columns:
        return (), 0
    ev = events[events["step"].notna()]
    alarms = []
    for _, r in ev[ev["event"] == "alarm"].iterrows():
        det, why = r.get("detector"), r.get("reason")
        alarms.append(Alarm(int(r["step"]), None if _missing(det) else str(det), None if _missing(why) else str(why)))
    alarms.sort(key=lambda a: a.step)
    return tuple(alarms), int((events["event"] == "nonfinite").sum())


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _accuracy_column(evals) -> str | None:
    for c in ("test_acc", "val_acc", "eval_acc", "test_accuracy", "val_accuracy"):
        if c in evals.columns and evals[c].notna().any():
            return c
    return None


def _grok(summary: Mapping[str, Any], files: Mapping[str, Path], evals, from_history: bool) -> tuple[int | None, str]:
    if "grok_step" in summary:
        g = summary["grok_step"]
        if g is None:
            return None, "summary.json records no grok step"
        try:
            return int(g), "summary.json"
        except (TypeError, ValueError):
            raise ConfigError(f"{files['summary']}: grok_step must be a step or null, got {g!r}") from None
    col = _accuracy_column(evals)
    if col is None:
        return None, "no evaluation data" if not len(evals) else "no test accuracy in the evaluations"
    hit = evals[evals[col] >= GROK_ACC]
    where = "eval.csv" if "eval" in files else ("the history" if from_history else "the input")
    if not len(hit):
        return None, f"{col} stays below {GROK_ACC:g} (max {evals[col].max():.3g})"
    return int(hit["step"].iloc[0]), f"first {col} ≥ {GROK_ACC:g} in {where}"


def _warning(summary: Mapping[str, Any], files: Mapping[str, Path], alarms: tuple[Alarm, ...]) -> tuple[int | None, str]:
    w = summary.get("warning_step")
    if w is not None:
        try:
            return int(w), "summary.json"
        except (TypeError, ValueError):
            raise ConfigError(f"{files['summary']}: warning_step must be a step or null, got {w!r}") from None
    if alarms:
        a = alarms[0]
        return a.step, "first alarm event" + (f" ({a.detector})" if a.detector else "")
    return None, "no alarm"
def _jl(sed_all, sed, probes, window: int | None, group: str, sketch: dict[str, Any] | None) -> tuple[Any, str]:
    """Relative error of the gap ratio against an exact reference, when the input has one:
    a ``jl_error`` column in the windows or a probe, or an exact and a sketched stream side
    by side (a ``sketch`` column with ``exact`` and another family at the same steps)."""
    import pandas as pd

    if "jl_error" in sed.columns and sed["jl_error"].notna().any():
        return _by_step(sed[["step", "jl_error"]].dropna()), "the jl_error column of the windows"
    if probes is not None and len(probes) and "jl_error" in probes.columns:
        p = _numeric(probes)[["step", "jl_error"]].dropna()
        if len(p):
            return _by_step(p), "the jl_error probe"
    if "sketch" in sed_all.columns and "gap_ratio" in sed_all.columns:
        s = sed_all
        if "group" in s.columns:
            s = s[s["group"].astype(str) == group]
        if window is not None and "window" in s.columns:
            s = s[s["window"] == window]
        fam = s["sketch"].astype(str)
        exact = s[fam == "exact"].groupby("step")["gap_ratio"].first()
        other = s[(fam != "exact") & (fam != "nan")].groupby("step")["gap_ratio"].first()
        both = exact.index.intersection(other.index)
        if len(both):
            err = (other[both] - exact[both]).abs() / exact[both].abs()
            df = pd.DataFrame({"step": both.to_numpy(), "jl_error": err.to_numpy()}).dropna()
            if len(df):
                return _by_step(df), "the exact and sketched streams of this input"
    fam = (sketch or {}).get("family")
    if fam == "exact":
        return None, "The spectra are exact (no random projection), so there is no JL error to measure."
    return None, ("No exact reference in this input (no jl_error column or probe, no exact stream beside "
                  "the sketched one), so the JL error is not shown.")


# ---------------------------------------------------------------------------- load
def load_run(source: str | Path, window: int | None = None, group: str = "all", label: str | None = None) -> RunView:
    """Read a run (see module docs) for window size ``window`` (default: W = 10 when recorded,
    else the smallest W) and parameter group ``group``."""
    data = read_run(source)
    frames, files = data.frames, data.files
    notes: list[str] = []
    grad = frames.get("grad")
    if data.kind == "history" and grad is not None and len(grad):
        notes.append(f"{len(grad)} gradient-stream (gradient-SED) windows are in the history; "
                     "this report shows the update stream")
    sed_all = frames.get("sed", _empty())
    if len(sed_all.columns):
        sed_all = _numeric(sed_all)
    if len(sed_all) and "step" not in sed_all.columns:
        raise ConfigError(f"{files.get('history') or files.get('table')}: the windows have no 'step' column")

    W, windows = _choose_window(sed_all, window)
    sed, groups = _select(sed_all, W, group)
    sed = _by_step(sed) if len(sed) else _empty(("step",))
    if len(windows) > 1:
        notes.append(f"windows recorded: {', '.join(map(str, windows))}; this report shows W = {W} (choose with --window)")
    if len(groups) > 1:
        notes.append(f"groups recorded: {', '.join(groups)}; this report shows '{group}' (choose with --group)")
    notes += data.notes

    meta = _shown_meta(data)
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    rule = cfg.get("kstar_rule")
    if rule is None and "k_star_rule" in sed.columns and sed["k_star_rule"].notna().any():
        rule = str(sed["k_star_rule"].dropna().iloc[0])
    sketch = cfg.get("sketch") if isinstance(cfg.get("sketch"), dict) else None

    evals = _evals(frames)
    probes = frames.get("probe")
    defect = _defect(probes, evals)
    alarms, nonfinite = _alarms(frames.get("event"))
    grok_step, grok_source = _grok(data.summary, files, evals, "history" in files)
    warning_step, warning_source = _warning(data.summary, files, alarms)
    jl, jl_note = _jl(sed_all, sed, probes, W, group, sketch)
    phases, phase_note = (compute_phases(sed["step"], sed["gap_ratio"]) if "gap_ratio" in sed.columns and len(sed)
                          else (None, None))
    if phase_note:
        notes.append(phase_note)
    if label is None:
        named = data.path.resolve()
        label = named.name if named.is_dir() else named.parent.name if named.name == "history.jsonl" else named.stem
    return RunView(data=data, label=label, sed=sed, window=W, windows=windows, group=group, groups=groups,
                   kstar_rule=rule, sketch=sketch, evals=evals, defect=defect, alarms=alarms, nonfinite=nonfinite,
                   grok_step=grok_step, grok_source=grok_source, warning_step=warning_step,
                   warning_source=warning_source, jl=jl, jl_note=jl_note, phases=phases, notes=tuple(notes))


# ---------------------------------------------------------------------------- output
def resolve_out(out: str | Path | None, default: Path) -> Path:
    """The output path (``.html``/``.htm``); ``default`` when None. Parent folders are created."""
    p = Path(default if out is None else out).expanduser()
    if p.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"{p}: the report is an HTML page; give an output path ending in .html")
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder; give a file name ending in .html")
    return p


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never half a page)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ConfigError(f"{path}: cannot write the report here ({e.strerror}); choose another --out") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def default_out(run: RunView) -> Path:
    """``report.html`` in the run folder (or beside the input file)."""
    return (run.source if run.source.is_dir() else run.source.parent) / "report.html"


def write_report(source: str | Path, out: str | Path | None = None, window: int | None = None, group: str = "all",
                 *, label: str | None = None, progress: ProgressFn | None = None):
    """Build the report of one run; returns (path written, :class:`~.summary.Facts`)."""
    from . import figures, html
    from .summary import summary_facts

    cb = progress or (lambda done, total, what: None)
    total = 2 + len(figures.RUN_FIGURES)
    cb(0, total, "reading")
    run = load_run(source, window, group, label)
    if not run.has_anything:
        raise ConfigError(f"{run.source}: nothing to plot (no windows, evaluations, probes or alarms)")
    path = resolve_out(out, default_out(run))
    cb(1, total, "summary")
    facts = summary_facts(run)
    sections = []
    for i, (name, fn) in enumerate(figures.RUN_FIGURES.items()):
        cb(2 + i, total, name)
        sections.append(fn(run, facts))
    page = html.render_run(run, facts, sections)
    write_text_atomic(path, page)
    cb(total, total, "written")
    return path, facts


def build_report(source: str | Path, out: str | Path | None = None, window: int | None = None,
                 group: str = "all", *, label: str | None = None, progress: ProgressFn | None = None) -> Path:
    """Write a self-contained HTML report of one run and return its path.

    ``source``: a run folder, a history ``.jsonl`` or an ``analyze`` table. ``out``: the
    page (default ``report.html`` in the run folder / beside the file). ``window``: W to
    show (default 10 when recorded, else the smallest). ``group``: parameter group.
    Raises :class:`~spectral_edge.errors.ConfigError` for unusable input.
    """
    return write_report(source, out, window, group, label=label, progress=progress)[0]
