"""Load a run's spectral series and its validation series, and put them on common steps.

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
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

#: validation columns tried in order when none is named
VAL_COLUMNS: tuple[str, ...] = ("val_loss", "test_loss")
STREAMS: tuple[str, ...] = ("sed", "grad")
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
    """Everything the analyses read from one run (see module docs).

    ``spectral``: one row per (window, group, step), the columns of ``sed`` rows.
    ``logs``: one row per step (index ``step``), numeric user metrics, last value wins.
    ``meta``: the history's meta row (empty for tables). ``n_parameters``: P if known.
    """

    source: str
    kind: str  # "history" | "table"
    stream: str
    spectral: Any = field(repr=False)  # pandas DataFrame
    logs: Any = field(repr=False)  # pandas DataFrame indexed by step
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False)
    n_parameters: int | None = None

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
def _is_history_file(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(first, dict) and "kind" in first
    return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        return obj if isinstance(obj, dict) else {}
    except (OSError, json.JSONDecodeError):
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


def _metric_frame(df: Any):
    """Numeric columns of ``df`` indexed by integer step, one row per step (last value wins)."""
    import pandas as pd

    if df is None or len(df) == 0 or "step" not in df.columns:
        return pd.DataFrame(index=pd.Index([], name="step", dtype="int64"))
    df = df[pd.to_numeric(df["step"], errors="coerce").notna()].copy()
    df["step"] = pd.to_numeric(df["step"]).astype("int64")
    cols = [c for c in df.columns if c not in _NON_METRIC and c != "step"]
    num = df[cols].apply(pd.to_numeric, errors="coerce") if cols else df[[]]
    num = num.loc[:, [c for c in num.columns if num[c].notna().any()]]
    num.insert(0, "step", df["step"].to_numpy())
    return num.groupby("step", sort=True).last()


def _merge_metrics(base: Any, extra: Any):
    """``base`` with ``extra``'s columns added on the union of steps; ``extra`` wins where both
    have a value (an explicit --val file overrides the history)."""
    if extra is None or len(extra.columns) == 0:
        return base
    if len(base.columns) == 0:
        return extra
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


def load_run(source: str | Path, *, val: str | Path | None = None, stream: str = "sed") -> RunData:
    """Read a history, a run folder or an ``analyze`` table (+ optional ``val`` CSV) into a :class:`RunData`."""
    import pandas as pd

    from ..io.history import read_history
    from ..io.tables import read_table

    if stream not in STREAMS:
        raise ConfigError(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
    path = Path(source)
    extras: list[Mapping[str, Any]] = []
    eval_csv: Path | None = None
    if path.is_dir():
        folder = path
        path = folder / "history.jsonl"
        if not path.is_file():
            raise ConfigError(f"{folder}: not a run folder (no history.jsonl in it)")
        extras = [_read_json(folder / "summary.json"), _read_json(folder / "config.json")]
        eval_csv = folder / "eval.csv" if (folder / "eval.csv").is_file() else None
    elif not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    if path.suffix.lower() in (".jsonl", ".json") and _is_history_file(path):
        kind = "history"
        df = read_history(path)
        if "kind" not in df.columns:
            df["kind"] = pd.Series(dtype=object)
        meta_rows = df[df["kind"] == "meta"]
        meta = {k: v for k, v in meta_rows.iloc[0].items() if _present(v)} if len(meta_rows) else {}
        spectral = df[df["kind"] == stream].copy()
        logs = _metric_frame(df[df["kind"] == "log"])
    else:
        kind = "table"
        df = read_table(path)
        if "kind" in df.columns:
            df = df[df["kind"] == stream]
        meta = _parquet_meta(path) if path.suffix.lower() in (".parquet", ".pq") else {}
        spectral = df.copy()
        logs = _metric_frame(None)
    if eval_csv is not None:  # the history's own values win over eval.csv
        logs = _merge_metrics(read_val_csv(eval_csv), logs)
    if val is not None:
        logs = _merge_metrics(logs, read_val_csv(val))
    spectral = spectral.dropna(axis=1, how="all")
    if len(spectral) == 0 or "window" not in spectral.columns or "step" not in spectral.columns:
        what = f"no '{stream}' rows" if kind == "history" else "no spectral rows (columns step, window, …)"
        raise ConfigError(f"{path}: {what}; nothing to analyse (a history needs at least one full window)")
    if "group" not in spectral.columns:
        spectral["group"] = "all"
    spectral["group"] = spectral["group"].fillna("all").astype(str)
    spectral = spectral[pd.to_numeric(spectral["window"], errors="coerce").notna()
                        & pd.to_numeric(spectral["step"], errors="coerce").notna()]
    spectral["window"] = pd.to_numeric(spectral["window"]).astype("int64")
    spectral["step"] = pd.to_numeric(spectral["step"]).astype("int64")
    spectral = spectral.sort_values(["window", "group", "step"], kind="stable").reset_index(drop=True)
    n_params = _find_n_parameters(meta, *extras)
    return RunData(str(source), kind, stream, spectral, logs, meta, n_params)


def _present(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, float) and math.isnan(v):
        return False
    return True


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
