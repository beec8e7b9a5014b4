"""Load a run's spectral series and its validation series, and put them on common steps.

:func:`read_run` is the one reader of a run's files (the analyses and the reports both use
it): it finds the inputs (:func:`find_inputs`), reads a history or an ``analyze`` table into
its rows by kind, the meta row, ``eval.csv``, ``summary.json`` and ``config.json``, and
never fails because something is missing. :func:`load_run` is the analyses' stricter view
of it: spectral rows are required, and the logged metrics are merged with ``eval.csv`` and
``val``.

Accepted inputs (:func:`load_run`):

- a monitor history ``history.jsonl`` (rows with ``kind``; ``sed`` or ``grad`` rows are the
  spectral rows, ``log`` rows hold ``lr``, ``train_loss``, ``test_loss``, ``val_loss``…);
- a run folder holding ``history.jsonl`` (and, optionally, ``eval.csv`` whose columns fill
  in metrics the history lacks, and ``summary.json``/``config.json`` for ``n_parameters``);
- a table written by ``spectral-edge analyze`` (``.csv``, ``.parquet``, ``.jsonl``: the same
  columns as ``sed`` rows, no ``kind``), which carries no losses;
- plus, for any of them, ``val=FILE.csv`` with a ``step`` column and metric columns
  (``val_loss``…), merged into the logged metrics.

Each window size W and parameter group has its own rows; a :class:`Series` is one column of
one (W, group), ordered by step. :func:`align` puts two series on common steps, either the
exact common steps or the spectral series' steps with the other series linearly
interpolated (exact where steps coincide).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

#: validation columns tried in order when none is named
VAL_COLUMNS: tuple[str, ...] = ("val_loss", "test_loss")
STREAMS: tuple[str, ...] = ("sed", "grad")
#: the kinds of history rows :func:`read_run` keeps (``meta`` goes to :attr:`RunData.meta`)
ROW_KINDS: tuple[str, ...] = ("sed", "grad", "log", "probe", "event")
#: the ``analyze`` tables looked for in a run folder without a history, in this order
TABLE_NAMES: tuple[str, ...] = ("metrics.parquet", "metrics.csv", "metrics.jsonl")
#: files read beside the history or table: key in :attr:`RunData.files` → file name
SIDE_FILES: tuple[tuple[str, str], ...] = (("eval", "eval.csv"), ("summary", "summary.json"), ("config", "config.json"))
ALIGN_MODES: tuple[str, ...] = ("interpolate", "common")
_NON_METRIC = {"kind", "step", "step_first", "group", "window", "k_star_rule"}


@dataclass(frozen=True, eq=False)
class Series:
    """One scalar series ordered by step: ``values[i]`` at optimizer step ``steps[i]``."""

    name: str
    steps: np.ndarray = field(repr=False)  # (n,) int64, strictly increasing
    values: np.ndarray = field(repr=False)  # (n,) float64, may hold NaN
    window: int | None = None
    group: str | None = None

    def __len__(self) -> int:
        return int(self.steps.size)

    def finite(self) -> "Series":
        """The same series without its non-finite points."""
        keep = np.isfinite(self.values)
        return Series(self.name, self.steps[keep], self.values[keep], self.window, self.group)


@dataclass(frozen=True, eq=False)
class Aligned:
    """Two series on the same steps (non-finite points removed): ``x`` spectral, ``y`` target."""

    steps: np.ndarray = field(repr=False)  # (n,) int64
    x: np.ndarray = field(repr=False)  # (n,)
    y: np.ndarray = field(repr=False)  # (n,)
    x_name: str = "x"
    y_name: str = "y"
    how: str = "interpolate"

    def __len__(self) -> int:
        return int(self.steps.size)


def _as_series(name: str, steps: Any, values: Any, window: int | None = None, group: str | None = None) -> Series:
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(s)
    s, v = s[keep], v[keep]
    order = np.argsort(s, kind="stable")
    s, v = s[order].astype(np.int64), v[order]
    if s.size:  # duplicate steps (a resumed run): the last value wins
        last = np.r_[s[1:] != s[:-1], True]
        s, v = s[last], v[last]
    return Series(name, s, v, window, group)


@dataclass(frozen=True, eq=False)
class RunData:
    """Everything read from one run, for the analyses and the reports (see module docs).

    ``spectral``: one row per (window, group, step), the columns of ``sed`` rows (empty when
    the input has none). ``logs``: one row per step (index ``step``), numeric user metrics,
    last value wins (the history's log rows; :func:`load_run` merges ``eval.csv`` and ``val``).
    ``meta``: the history's meta row, or a parquet table's ``spectral_edge`` metadata.
    ``n_parameters``: P if known. ``path``: the source as resolved (a run folder or a file);
    ``files``: the inputs read (``history`` or ``table``, ``eval``, ``summary``, ``config``);
    ``frames``: the rows as read, before any cleaning — the history's (or a table's) rows by
    kind (:data:`ROW_KINDS`; a table without a ``kind`` column sits under ``stream``) and
    ``eval.csv`` under ``eval``; ``summary``/``config``: the JSON side files; ``notes``:
    side files that could not be used.
    """

    source: str
    kind: str  # "history" | "table" | "none" (side files only)
    stream: str
    spectral: Any = field(repr=False)  # pandas DataFrame
    logs: Any = field(repr=False)  # pandas DataFrame indexed by step
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False)
    n_parameters: int | None = None
    path: Path | None = None
    files: Mapping[str, Path] = field(default_factory=dict, repr=False)
    frames: Mapping[str, Any] = field(default_factory=dict, repr=False)
    summary: Mapping[str, Any] = field(default_factory=dict, repr=False)
    config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    notes: tuple[str, ...] = ()

    # ------------------------------------------------------------------ what is there
    @property
    def windows(self) -> tuple[int, ...]:
        return tuple(sorted(int(w) for w in self.spectral["window"].dropna().unique()))

    @property
    def groups(self) -> tuple[str, ...]:
        gs = [str(g) for g in self.spectral["group"].dropna().unique()]
        return tuple(sorted(gs, key=lambda g: (g != "all", g)))

    @property
    def spectral_columns(self) -> tuple[str, ...]:
        """Numeric columns of the spectral rows (any of them can be analysed)."""
        return tuple(c for c in self.spectral.columns if c not in _NON_METRIC and _numeric(self.spectral[c]))

    @property
    def log_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.logs.columns if _numeric(self.logs[c]))

    def resolve_window(self, window: int | None) -> int:
        """``window`` if present; None → the only window (an error when there are several)."""
        ws = self.windows
        if window is None:
            if len(ws) == 1:
                return ws[0]
            raise ConfigError(f"{self.source}: the run has windows {_fmt(ws)}; choose one (--window)")
        if int(window) not in ws:
            raise ConfigError(f"{self.source}: no rows for window W = {window}; the run has W = {_fmt(ws)}")
        return int(window)

    def resolve_group(self, group: str | None) -> str:
        """``group`` if present; None → ``all`` if present, else the only group."""
        gs = self.groups
        if group is None:
            if "all" in gs or len(gs) == 1:
                return "all" if "all" in gs else gs[0]
            raise ConfigError(f"{self.source}: the run has groups {', '.join(gs)}; choose one (--group)")
        if group not in gs:
            raise ConfigError(f"{self.source}: no rows for group {group!r}; the run has {', '.join(gs)}")
        return group

    # ------------------------------------------------------------------ series
    def rows(self, window: int | None = None, group: str | None = None):
        """The spectral rows of one (W, group), ordered by step (a DataFrame)."""
        W, g = self.resolve_window(window), self.resolve_group(group)
        df = self.spectral
        sub = df[(df["window"] == W) & (df["group"] == g)]
        return sub.sort_values("step", kind="stable").drop_duplicates("step", keep="last").reset_index(drop=True)

    def spectral_series(self, column: str = "gap_ratio", window: int | None = None,
                        group: str | None = None) -> Series:
        """Column ``column`` of the spectral rows of one (W, group)."""
        if column not in self.spectral.columns or column in _NON_METRIC:
            raise ConfigError(f"{self.source}: unknown spectral column {column!r}; "
                              f"choose one of {', '.join(self.spectral_columns[:12])}…")
        W, g = self.resolve_window(window), self.resolve_group(group)
        sub = self.rows(W, g)
        return _as_series(column, sub["step"].to_numpy(), _to_float(sub[column]), W, g)

    def metric(self, column: str) -> Series:
        """A logged metric (finite values only)."""
        if column not in self.logs.columns:
            have = ", ".join(self.log_columns) or "none"
            raise ConfigError(f"{self.source}: no logged metric {column!r} (logged: {have})")
        return _as_series(column, self.logs.index.to_numpy(), _to_float(self.logs[column])).finite()

    def validation(self, column: str | None = None, candidates: Sequence[str] = VAL_COLUMNS) -> Series:
        """The validation series: ``column``, or the first of ``candidates`` with values."""
        if column is not None:
            s = self.metric(column)
            if len(s) == 0:
                raise ConfigError(f"{self.source}: the metric {column!r} holds no finite value")
            return s
        for c in candidates:
            if c in self.logs.columns:
                s = self.metric(c)
                if len(s):
                    return s
        have = ", ".join(self.log_columns) or "none"
        raise ConfigError(f"{self.source}: no validation series (looked for {', '.join(candidates)}; logged: "
                          f"{have}); pass --val FILE.csv with columns step,val_loss or name one with --val-column")

    def learning_rate(self, column: str = "lr") -> Series | None:
        """The logged learning rate, or None when the run logs none."""
        if column not in self.logs.columns:
            return None
        s = self.metric(column)
        return s if len(s) else None


def _fmt(ws: Sequence[int]) -> str:
    return ", ".join(str(w) for w in ws) or "none"


def _numeric(col: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(col)) and not pd.api.types.is_bool_dtype(col)


def _to_float(col: Any) -> np.ndarray:
    import pandas as pd

    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)


# ---------------------------------------------------------------------- loading
def find_inputs(source: str | Path, *, siblings: bool = True) -> tuple[Path, dict[str, Path]]:
    """(the source as resolved, the input files found): a run folder gives its ``history.jsonl``
    (else the first of :data:`TABLE_NAMES`, else the history ``summary.json`` points to); a
    file is a history or a table (:func:`_sniff`), or a side file standing for its folder.
    The side files (:data:`SIDE_FILES`) of a folder are always found, those beside a history
    or table file only with ``siblings``."""
    p = Path(source).expanduser()
    if not p.exists():
        raise ConfigError(f"{p}: no such file or folder (give a run folder, a history .jsonl or an analyze table)")
    files: dict[str, Path] = {}
    if p.is_file() and p.name in {name for _, name in SIDE_FILES}:
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
        files[_sniff(p)] = p
    if p.is_dir() or siblings:
        for key, name in SIDE_FILES:
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


def _read_json(path: Path, strict: bool = True) -> dict[str, Any]:
    """A JSON object; anything else raises (``strict``) or gives ``{}``."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        if not strict:
            return {}
        raise ConfigError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(obj, dict):
        if not strict:
            return {}
        raise ConfigError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _history_meta(path: Path) -> dict[str, Any]:
    """The history's ``meta`` row as written (empty dict if none): what
    :func:`~spectral_edge.io.history.history_meta` returns, but reading stops at the row (the
    writer puts it first) instead of parsing the whole file a second time."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # blank or torn lines; read_history has vetted the file
                continue
            if isinstance(row, dict) and row.get("kind") == "meta":
                return row
    return {}


def _find_n_parameters(*objs: Mapping[str, Any]) -> int | None:
    for o in objs:
        for key in ("n_parameters", "n_params", "parameters"):
            v = o.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return int(v)
    return None


def _parquet_meta(path: Path) -> dict[str, Any]:
    try:
        import pyarrow.parquet as pq

        md = pq.read_schema(path).metadata or {}
        raw = md.get(b"spectral_edge")
        return json.loads(raw) if raw else {}
    except Exception:  # a table without our metadata
        return {}


def _metric_frame(df: Any, keep: str = "last"):
    """Numeric columns of ``df`` indexed by integer step, one row per step (per column, the
    ``last`` or ``first`` value present)."""
    import pandas as pd

    if df is None or len(df) == 0 or "step" not in df.columns:
        return pd.DataFrame(index=pd.Index([], name="step", dtype="int64"))
    df = df[pd.to_numeric(df["step"], errors="coerce").notna()].copy()
    df["step"] = pd.to_numeric(df["step"]).astype("int64")
    cols = [c for c in df.columns if c not in _NON_METRIC and c != "step"]
    num = df[cols].apply(pd.to_numeric, errors="coerce") if cols else df[[]]
    num = num.loc[:, [c for c in num.columns if num[c].notna().any()]]
    num.insert(0, "step", df["step"].to_numpy())
    steps = num.groupby("step", sort=True)
    return steps.first() if keep == "first" else steps.last()


def _merge_metrics(base: Any, extra: Any):
    """``base`` with ``extra``'s columns added on the union of steps; ``extra`` wins where both
    have a value (an explicit --val file overrides the history)."""
    if extra is None:
        return base
    idx = base.index.union(extra.index)
    out = base.reindex(idx)
    ext = extra.reindex(idx)
    for c in ext.columns:
        out[c] = ext[c].combine_first(out[c]) if c in out.columns else ext[c]
    out.index.name = "step"
    return out


def read_val_csv(path: str | Path):
    """A CSV of ``step`` plus metric columns (e.g. ``val_loss``) as a per-step metric frame."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such validation file")
    try:
        df = pd.read_csv(path)
    except Exception as e:  # pandas raises many kinds on garbage
        raise ConfigError(f"{path}: cannot read it as CSV ({e.__class__.__name__}: {e})") from None
    if "step" not in df.columns:
        raise ConfigError(f"{path}: a validation CSV needs a 'step' column (found {', '.join(map(str, df.columns))})")
    return _metric_frame(df)


def _read_eval_csv(path: Path, notes: list[str]):
    """``eval.csv`` as read, or None with a note when it is unreadable or has no ``step``."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as e:  # a broken side file should not stop the reading
        notes.append(f"{path.name} is not a readable CSV ({type(e).__name__}); ignored")
        return None
    if "step" not in df.columns:
        notes.append(f"{path.name} has no 'step' column; ignored")
        return None
    return df


def _by_kind(df: Any, stream: str) -> dict[str, Any]:
    """Rows by kind (:data:`ROW_KINDS`); rows without a ``kind`` column are ``stream`` rows."""
    if "kind" not in df.columns:
        return {stream: df}
    if not len(df):
        return {}
    kinds = df["kind"].astype(str)
    return {k: df[kinds == k] for k in ROW_KINDS}


def _spectral(rows: Any):
    """Spectral rows with a window and a step, ``group`` filled in (``all``), ordered by
    (window, group, step); None when there are none."""
    import pandas as pd

    spectral = rows.dropna(axis=1, how="all") if rows is not None else None
    if spectral is None or len(spectral) == 0 or "window" not in spectral.columns or "step" not in spectral.columns:
        return None
    if "group" not in spectral.columns:
        spectral["group"] = "all"
    spectral["group"] = spectral["group"].fillna("all").astype(str)
    spectral = spectral[pd.to_numeric(spectral["window"], errors="coerce").notna()
                        & pd.to_numeric(spectral["step"], errors="coerce").notna()]
    spectral["window"] = pd.to_numeric(spectral["window"]).astype("int64")
    spectral["step"] = pd.to_numeric(spectral["step"]).astype("int64")
    return spectral.sort_values(["window", "group", "step"], kind="stable").reset_index(drop=True)


def read_run(source: str | Path, stream: str = "sed", *, siblings: bool = True, strict_json: bool = True) -> RunData:
    """Read whatever a run has (see :func:`find_inputs`) into a :class:`RunData`; nothing but an
    unusable source raises. ``siblings``: read the side files beside a history or table file
    (a folder's are always read); ``strict_json``: an unreadable ``summary.json`` or
    ``config.json`` raises (else it counts as empty)."""
    import pandas as pd

    from ..io.history import read_history
    from ..io.tables import read_table

    if stream not in STREAMS:
        raise ConfigError(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
    path, files = find_inputs(source, siblings=siblings)
    kind, frames, meta = "none", {}, {}
    if "history" in files:
        kind = "history"
        frames = _by_kind(read_history(files["history"]), stream)
        meta = _history_meta(files["history"])
    elif "table" in files:
        kind = "table"
        try:
            frames = _by_kind(read_table(files["table"]), stream)
        except ConfigError:
            raise
        except Exception as e:  # a corrupt parquet/csv: say which file
            raise ConfigError(f"{files['table']}: not readable as a table ({type(e).__name__}: {e})") from None
        if files["table"].suffix.lower() in (".parquet", ".pq"):
            meta = _parquet_meta(files["table"])
    notes: list[str] = []
    if "eval" in files:
        ev = _read_eval_csv(files["eval"], notes)
        if ev is not None:
            frames["eval"] = ev
    summary = _read_json(files["summary"], strict_json) if "summary" in files else {}
    config = _read_json(files["config"], strict_json) if "config" in files else {}
    spectral = _spectral(frames.get(stream))
    if spectral is None:
        spectral = pd.DataFrame({"window": pd.Series(dtype="int64"), "group": pd.Series(dtype=object),
                                 "step": pd.Series(dtype="int64")})
    return RunData(str(source), kind, stream, spectral, _metric_frame(frames.get("log")), meta,
                   _find_n_parameters(meta, summary, config), path, files, frames, summary, config, tuple(notes))


def load_run(source: str | Path, *, val: str | Path | None = None, stream: str = "sed") -> RunData:
    """Read a history, a run folder or an ``analyze`` table (+ optional ``val`` CSV) into a
    :class:`RunData` with spectral rows (else ConfigError). A run folder must hold a
    ``history.jsonl``; its ``eval.csv`` fills in metrics the history lacks, its
    ``summary.json``/``config.json`` give P; files beside a history or table file are not read."""
    folder = Path(source)
    if folder.is_dir() and not (folder / "history.jsonl").is_file():
        raise ConfigError(f"{folder}: not a run folder (no history.jsonl in it)")
    data = read_run(source, stream, siblings=False, strict_json=False)
    logs = data.logs
    if "eval" in data.files:  # read strictly (an unusable eval.csv is an error here); the history's values win
        logs = _merge_metrics(read_val_csv(data.files["eval"]), logs)
    if val is not None:
        logs = _merge_metrics(logs, read_val_csv(val))
    if len(data.spectral) == 0:
        what = f"no '{stream}' rows" if data.kind == "history" else "no spectral rows (columns step, window, …)"
        where = data.files.get("history") or data.files.get("table") or data.path
        raise ConfigError(f"{where}: {what}; nothing to analyse (a history needs at least one full window)")
    return replace(data, logs=logs)


# ---------------------------------------------------------------------- alignment
def align(x: Series, y: Series, how: str = "interpolate") -> Aligned:
    """Put ``y`` on ``x``'s steps: exact common steps (``common``) or ``y`` linearly
    interpolated at ``x``'s steps inside ``y``'s step range (``interpolate``); points where
    either is non-finite are dropped, so lags later count retained samples."""
    if how not in ALIGN_MODES:
        raise ConfigError(f"alignment must be one of {', '.join(ALIGN_MODES)}, got {how!r}")
    xf, yf = x.finite(), y.finite()
    if len(xf) == 0 or len(yf) == 0:
        return Aligned(np.empty(0, np.int64), np.empty(0), np.empty(0), x.name, y.name, how)
    if how == "common":
        steps, ix, iy = np.intersect1d(xf.steps, yf.steps, assume_unique=True, return_indices=True)
        return Aligned(steps, xf.values[ix], yf.values[iy], x.name, y.name, how)
    keep = (xf.steps >= yf.steps[0]) & (xf.steps <= yf.steps[-1])
    steps = xf.steps[keep]
    yv = np.interp(steps.astype(np.float64), yf.steps.astype(np.float64), yf.values)
    return Aligned(steps, xf.values[keep], yv, x.name, y.name, how)


def values_at(series: Series, steps: np.ndarray) -> np.ndarray:
    """Step-function reading of ``series`` at ``steps``: the last value logged at or before each
    step (the first value before the first log). For piecewise-constant schedules such as lr."""
    s = series.finite()
    steps = np.asarray(steps)
    if len(s) == 0:
        return np.full(steps.shape, np.nan)
    idx = np.searchsorted(s.steps, steps, side="right") - 1
    return s.values[np.clip(idx, 0, len(s) - 1)]
