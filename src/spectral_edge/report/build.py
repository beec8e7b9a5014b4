"""Loading a run for a report, and assembling the report page.

A *source* is any of:

- a run folder ``RUN_DIR`` holding any subset of ``history.jsonl`` (the monitor's history),
  ``eval.csv`` (``step, train_loss, train_acc, test_loss, test_acc``), ``summary.json``
  (``grok_step``, ``warning_step``, ``final_test_acc``, ``history``…), ``config.json``, or
  an ``analyze`` table ``metrics.{parquet,csv,jsonl}``;
- a history file (JSON lines with ``kind``); the files above beside it are read too;
- an ``analyze`` table (``.parquet``, ``.csv``, ``.jsonl`` without ``kind``).

:func:`load_run` reads what is there into a :class:`RunData` (one window size W and one
parameter group), finds the grok step and the early-warning step, and computes the phases of
the gap ratio. Whatever is missing becomes a note, never an error, as long as there is
something to plot.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

#: test accuracy at which a run counts as grokked when summary.json gives no grok step (METHODS §6)
GROK_ACC = 0.9
#: plateau of the built-in phase rule: the contiguous run around the peak with R ≥ 0.85·peak (METHODS §4a)
PLATEAU_FRACTION = 0.85
#: collapse event: the first step after the peak with R < τ (METHODS §4, primary τ)
COLLAPSE_TAU = 1.20
#: the paper's defect onset rule: D > ONSET_FACTOR·baseline and D > ONSET_ABS, baseline ≥ ONSET_FLOOR
ONSET_FACTOR, ONSET_ABS, ONSET_FLOOR = 10.0, 20.0, 0.1
TABLE_NAMES = ("metrics.parquet", "metrics.csv", "metrics.jsonl")
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
class RunData:
    """One run, ready to plot: the windows of one W and one group, evaluations, probes, events.

    Frames (pandas) are sorted by step with numeric columns; any of them may be empty.
    """

    label: str
    source: Path
    files: dict[str, Path]          # which inputs were read: history, table, eval, summary, config
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
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

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


# ---------------------------------------------------------------------------- sources
def _resolve(source: str | Path) -> tuple[Path, dict[str, Path]]:
    """(the source as given, the input files found) — see module docs."""
    p = Path(source).expanduser()
    if not p.exists():
        raise ConfigError(f"{p}: no such file or folder (give a run folder, a history .jsonl or an analyze table)")
    files: dict[str, Path] = {}
    if p.is_file() and p.name in ("summary.json", "config.json", "eval.csv"):
        p = p.parent
    if p.is_dir():
        folder = p
        if (p / "history.jsonl").is_file():
            files["history"] = p / "history.jsonl"
        for name in TABLE_NAMES:
            if "history" not in files and (p / name).is_file():
                files["table"] = p / name
                break
    else:
        folder = p.parent
        kind = _sniff(p)
        files[kind] = p
    for key, name in (("eval", "eval.csv"), ("summary", "summary.json"), ("config", "config.json")):
        if (folder / name).is_file():
            files[key] = folder / name
    if "history" not in files and "table" not in files and "summary" in files:
        pointer = _read_json(files["summary"]).get("history")
        if isinstance(pointer, str) and pointer:
            cand = Path(pointer) if Path(pointer).is_absolute() else folder / pointer
            if cand.is_file():
                files["history"] = cand
    if not files:
        raise ConfigError(f"{p}: found none of history.jsonl, eval.csv, summary.json or metrics.* "
                          "(is this a run folder?)")
    return p, files


def _sniff(path: Path) -> str:
    """``history`` (JSON lines with ``kind``) or ``table`` (an analyze output)."""
    ext = path.suffix.lower()
    if ext in (".csv", ".parquet", ".pq"):
        return "table"
    if ext not in (".jsonl", ".json"):
        raise ConfigError(f"{path}: unknown input format {ext or '(no extension)'!r}; give a run folder, "
                          "a history .jsonl or an analyze table (.parquet, .csv, .jsonl)")
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    raise ConfigError(f"{path}: the first line is not JSON; is this a history file?") from None
                return "history" if isinstance(first, dict) and "kind" in first else "table"
    raise ConfigError(f"{path}: the file is empty; nothing to plot")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


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
def plateau_phases(steps: Sequence[float], ratios: Sequence[float], fraction: float = PLATEAU_FRACTION,
                   tau: float = COLLAPSE_TAU) -> Phases | None:
    """Built-in phase rule (METHODS §4a): plateau = the contiguous run of windows around the
    peak of R with R ≥ fraction·peak (missing values are skipped); rise before, collapse
    after. Collapse event: the first step after the peak with R < τ (1.20). None when R is
    missing everywhere."""
    s = np.asarray(steps, dtype=float)
    r = np.asarray(ratios, dtype=float)
    ok = np.isfinite(r) & np.isfinite(s)
    if not ok.any():
        return None
    s, r = s[ok], r[ok]
    i = int(np.argmax(r))
    peak = float(r[i])
    thr = fraction * peak
    lo = hi = i
    while lo - 1 >= 0 and r[lo - 1] >= thr:
        lo -= 1
    while hi + 1 < len(r) and r[hi + 1] >= thr:
        hi += 1
    below = np.nonzero(r[i + 1:] < tau)[0] if peak >= tau else np.array([], dtype=int)
    return Phases(method=f"built-in rule: plateau = contiguous run around the peak with R ≥ {fraction:g} × peak",
                  peak_step=int(s[i]), peak_ratio=peak, plateau_start=int(s[lo]), plateau_end=int(s[hi]),
                  first_step=int(s[0]), last_step=int(s[-1]), threshold=thr,
                  collapse_event_step=int(s[i + 1 + below[0]]) if len(below) else None, collapse_tau=tau)


def _external_phases(steps: np.ndarray, ratios: np.ndarray, builtin: Phases) -> tuple[Phases | None, str | None]:
    """Phases from :func:`spectral_edge.analysis.phases.detect_phases` when that module exists
    (it is preferred: it is the library's own, configurable detector). Its answer is read
    defensively (``valid``, ``plateau_start``/``plateau_end`` in steps, ``peak_step``,
    ``collapse_step``); anything unusable falls back to the built-in rule with a note."""
    try:
        mod = importlib.import_module("spectral_edge.analysis.phases")
    except ImportError:
        return None, None
    except Exception as e:  # a module that fails to import must not break the report
        return None, f"spectral_edge.analysis.phases failed to import ({type(e).__name__}); phases by the built-in rule"
    fn = getattr(mod, "detect_phases", None)
    if not callable(fn):
        return None, "spectral_edge.analysis.phases has no detect_phases; phases by the built-in rule"
    try:
        res = fn(steps, ratios)
    except Exception as e:
        return None, f"spectral_edge.analysis.phases.detect_phases failed ({type(e).__name__}: {e}); phases by the built-in rule"
    if not getattr(res, "valid", True):
        why = getattr(res, "reason", "") or "no valid plateau"
        return None, f"spectral_edge.analysis.phases: {why}; phases by the built-in rule"
    start, end = getattr(res, "plateau_start", None), getattr(res, "plateau_end", None)
    if start is None or end is None or not int(start) <= builtin.peak_step <= int(end):
        return None, "spectral_edge.analysis.phases gave a plateau without the peak; phases by the built-in rule"
    name = getattr(res, "method", "plateau")
    method = f"spectral_edge.analysis.phases.detect_phases (method '{name}'"
    method += f": plateau = contiguous run around the peak with R ≥ {PLATEAU_FRACTION:g} × peak)" if name == "plateau" else ")"
    collapse = getattr(res, "collapse_step", None)
    return Phases(method=method, peak_step=builtin.peak_step, peak_ratio=builtin.peak_ratio,
                  plateau_start=int(start), plateau_end=int(end), first_step=builtin.first_step,
                  last_step=builtin.last_step, threshold=builtin.threshold if name == "plateau" else None,
                  collapse_event_step=None if collapse is None else int(collapse),
                  collapse_tau=float(getattr(res, "primary_tau", COLLAPSE_TAU))), None


def compute_phases(steps: Sequence[float], ratios: Sequence[float]) -> tuple[Phases | None, str | None]:
    """Phases of the gap ratio: :mod:`spectral_edge.analysis.phases` when it exists and answers,
    else :func:`plateau_phases`. Returns (phases or None when R is all missing, a note or None)."""
    s, r = np.asarray(steps, dtype=float), np.asarray(ratios, dtype=float)
    builtin = plateau_phases(s, r)
    if builtin is None:
        return None, None
    ext, note = _external_phases(s.astype(np.int64), r, builtin)
    return (ext or builtin), note


# ---------------------------------------------------------------------------- evaluations, probes, events
_DEFECT_VALUE_COLUMNS = ("defect", "defect_median", "median", "value")


def _evals(files: dict[str, Path], logs, notes: list[str]):
    import pandas as pd

    parts = []
    if "eval" in files:
        try:
            ev = pd.read_csv(files["eval"])
        except Exception as e:  # a broken side file should not stop the report
            notes.append(f"{files['eval'].name} is not a readable CSV ({type(e).__name__}); ignored")
            ev = None
        if ev is not None:
            if "step" not in ev.columns:
                notes.append(f"{files['eval'].name} has no 'step' column; ignored")
            else:
                parts.append(_numeric(ev))
    if logs is not None and len(logs):
        parts.append(_numeric(logs.drop(columns=[c for c in ("kind",) if c in logs.columns])))
    if not parts:
        return _empty()
    ev = _by_step(pd.concat(parts, ignore_index=True, sort=False))
    ev = ev.groupby("step", sort=True).first().reset_index()  # eval.csv first: it wins on a clash
    keep = ["step"] + [c for c in ev.columns if c != "step" and c not in _TEXT_COLUMNS
                       and pd.api.types.is_numeric_dtype(ev[c]) and ev[c].notna().any()]
    return ev[keep]


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
    """The paper's onset rule (METHODS §6): baseline = max(median of the first 3 values, 0.1);
    onset = the first record (index ≥ 2) with D > 10·baseline and D > 20. None if never."""
    d = np.asarray(values, dtype=float)
    s = np.asarray(steps, dtype=float)
    ok = np.isfinite(d)
    d, s = d[ok], s[ok]
    if len(d) < 3:
        return None
    base = max(float(np.median(d[:3])), ONSET_FLOOR)
    hits = np.nonzero((np.arange(len(d)) >= 2) & (d > ONSET_FACTOR * base) & (d > ONSET_ABS))[0]
    return int(s[hits[0]]) if len(hits) else None


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


def _grok(summary: dict[str, Any], files: dict[str, Path], evals, from_history: bool) -> tuple[int | None, str]:
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


def _warning(summary: dict[str, Any], files: dict[str, Path], alarms: tuple[Alarm, ...]) -> tuple[int | None, str]:
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
def load_run(source: str | Path, window: int | None = None, group: str = "all", label: str | None = None) -> RunData:
    """Read a run (see module docs) for window size ``window`` (default: W = 10 when recorded,
    else the smallest W) and parameter group ``group``."""
    import pandas as pd

    from ..io.history import history_meta, read_history
    from ..io.tables import read_table

    src, files = _resolve(source)
    notes: list[str] = []
    meta: dict[str, Any] = {}
    logs = probes = events = None
    sed_all = _empty()
    if "history" in files:
        hist = read_history(files["history"])
        meta = history_meta(files["history"])
        if len(hist) and "kind" in hist.columns:
            kinds = hist["kind"].astype(str)
            sed_all = hist[kinds == "sed"]
            logs = hist[kinds == "log"]
            probes = hist[kinds == "probe"]
            events = hist[kinds == "event"]
            if (kinds == "grad").any():
                notes.append(f"{int((kinds == 'grad').sum())} gradient-stream (gradient-SED) windows are in the history; "
                             "this report shows the update stream")
    elif "table" in files:
        try:
            tab = read_table(files["table"])
        except ConfigError:
            raise
        except Exception as e:  # a corrupt parquet/csv: say which file
            raise ConfigError(f"{files['table']}: not readable as a table ({type(e).__name__}: {e})") from None
        if "kind" in tab.columns:
            kinds = tab["kind"].astype(str)
            tab, logs, probes, events = (tab[kinds == "sed"], tab[kinds == "log"], tab[kinds == "probe"],
                                         tab[kinds == "event"])
        sed_all = tab
    sed_all = _numeric(sed_all) if len(sed_all.columns) else sed_all
    if len(sed_all) and "step" not in sed_all.columns:
        raise ConfigError(f"{files.get('history') or files.get('table')}: the windows have no 'step' column")

    W, windows = _choose_window(sed_all, window)
    sed, groups = _select(sed_all, W, group)
    sed = _by_step(sed) if len(sed) else _empty(("step",))
    if len(windows) > 1:
        notes.append(f"windows recorded: {', '.join(map(str, windows))}; this report shows W = {W} (choose with --window)")
    if len(groups) > 1:
        notes.append(f"groups recorded: {', '.join(groups)}; this report shows '{group}' (choose with --group)")

    summary = _read_json(files["summary"]) if "summary" in files else {}
    config = _read_json(files["config"]) if "config" in files else {}
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    rule = cfg.get("kstar_rule")
    if rule is None and "k_star_rule" in sed.columns and sed["k_star_rule"].notna().any():
        rule = str(sed["k_star_rule"].dropna().iloc[0])
    sketch = cfg.get("sketch") if isinstance(cfg.get("sketch"), dict) else None

    evals = _evals(files, logs, notes)
    defect = _defect(probes, evals)
    alarms, nonfinite = _alarms(events)
    grok_step, grok_source = _grok(summary, files, evals, "history" in files)
    warning_step, warning_source = _warning(summary, files, alarms)
    jl, jl_note = _jl(sed_all, sed, probes, W, group, sketch)
    phases, phase_note = (compute_phases(sed["step"], sed["gap_ratio"]) if "gap_ratio" in sed.columns and len(sed)
                          else (None, None))
    if phase_note:
        notes.append(phase_note)
    if label is None:
        named = src.resolve()
        label = named.name if named.is_dir() else named.parent.name if named.name == "history.jsonl" else named.stem
    return RunData(label=label, source=src, files=files, sed=sed, window=W, windows=windows, group=group,
                   groups=groups, kstar_rule=rule, sketch=sketch, evals=evals, defect=defect, alarms=alarms,
                   nonfinite=nonfinite, grok_step=grok_step, grok_source=grok_source, warning_step=warning_step,
                   warning_source=warning_source, jl=jl, jl_note=jl_note, phases=phases, summary=summary,
                   config=config, meta=meta, notes=tuple(notes))


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


def default_out(run: RunData) -> Path:
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
