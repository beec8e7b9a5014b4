"""The run model: the one reader of a run, for every consumer (analyses, report, detectors,
experiments, CLI).

A *source* is any of:

- a run folder holding a monitor history (``history.jsonl``, or ``spectral_edge_history.jsonl``
  as the Hugging Face and Lightning callbacks name it inside the trainer's output folder),
  else an ``analyze`` table (``metrics.parquet``/``.csv``/``.jsonl``), else the history that
  ``summary.json`` points to; plus any of the side files ``eval.csv``, ``summary.json``,
  ``config.json``;
- a history file (JSON lines with ``kind``) or an ``analyze`` table; the side files in the
  same folder are read too (they belong to the same run);
- a side file (``eval.csv``, ``summary.json``, ``config.json``) standing for its folder.

:func:`read_run` reads whatever is there into one :class:`RunData` and never fails because
something optional is missing or broken (that becomes a note). :func:`load_run` is the same
reader with one more demand: the run must have spectral rows (what the analyses need).

Rules settled here, once (each is tested in ``tests/test_run_model.py``):

- **Metrics, one row per step.** Within one file the LAST value logged for a step wins (a
  resumed run logs a step again; the later row is the one training continued from). Across
  files, the monitor history wins where it has a value; ``eval.csv`` fills in what the
  history lacks; an explicit validation file (``val=``, ``--val``) overrides both, because
  the user asked for it. :func:`merge_metrics` is that rule.
- **No window given** (``window=None``) means the run's *primary window*: the smallest W it
  recorded, the one the monitor's loggers publish without a ``/W…`` prefix
  (:func:`~spectral_edge.detectors.signals.primary_window`). Commands that print one row per window take ``--window all``.
- **The grok step** is :func:`spectral_edge.detectors.signals.grok_step` (the first
  evaluation with accuracy ≥ 0.9) unless the run's ``summary.json`` records one;
  :meth:`RunData.grok` says which.
- **Steps and windows are integers.** A history row, a table row or a ``--val`` row whose
  ``step`` is not an integer of at most 2**53 in size (or whose ``window`` is not a
  positive integer below 2**31) is an error naming the file and the line or row; in
  ``eval.csv`` (a side file) it becomes a note and the file is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..detectors.signals import GROK_THRESHOLD, accuracy_key, grok_step, primary_window
from ..errors import ConfigError
from .history import MAX_STEP

#: validation columns tried in order when none is named (``eval_loss``: the HF Trainer's name)
VAL_COLUMNS: tuple[str, ...] = ("val_loss", "test_loss", "eval_loss")
STREAMS: tuple[str, ...] = ("sed", "grad")
#: the kinds of history rows :func:`read_run` keeps (``meta`` goes to :attr:`RunData.meta`)
ROW_KINDS: tuple[str, ...] = ("sed", "grad", "log", "probe", "event")
#: monitor histories looked for in a run folder, in this order (the second: HF/Lightning callbacks)
HISTORY_NAMES: tuple[str, ...] = ("history.jsonl", "spectral_edge_history.jsonl")
#: the ``analyze`` tables looked for in a run folder without a history, in this order
TABLE_NAMES: tuple[str, ...] = ("metrics.parquet", "metrics.csv", "metrics.jsonl")
#: files read beside the history or table: key in :attr:`RunData.files` → file name
SIDE_FILES: tuple[tuple[str, str], ...] = (("eval", "eval.csv"), ("summary", "summary.json"), ("config", "config.json"))
NON_METRIC: frozenset[str] = frozenset({"kind", "step", "step_first", "sample_spacing", "group", "window", "k_star_rule"})


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


def as_series(name: str, steps: Any, values: Any, window: int | None = None, group: str | None = None) -> Series:
    """A :class:`Series` from any steps and values: sorted by step, non-finite steps dropped,
    and where a step repeats the last value wins (a resumed run)."""
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(s)
    s, v = s[keep], v[keep]
    order = np.argsort(s, kind="stable")
    s, v = s[order].astype(np.int64), v[order]
    if s.size:
        last = np.r_[s[1:] != s[:-1], True]
        s, v = s[last], v[last]
    return Series(name, s, v, window, group)


@dataclass(frozen=True)
class RunSetup:
    """How a run's spectra were made, from whichever input recorded it: the one source of truth
    for a reader of the run (the report's header, its "sketch" row, its JL note).

    ``recorded_in`` says where the configuration was read: the history's ``meta`` row, a parquet
    table's ``spectral_edge`` metadata, or nowhere (a CSV/JSONL table carries no metadata, and a
    history written by hand may have no meta row). ``every``: the sampling cadence as recorded
    (an int, or a schedule as the monitor wrote it); for a table, the checkpoints' step spacing.
    ``spacing``: the median step gap between the samples of a window, measured from the rows
    themselves (``(step − step_first) / W``), whatever was recorded. ``selection``: the tensor
    selection (include/exclude/preset/group_by), when recorded.
    """

    recorded_in: str | None
    sketch: Mapping[str, Any] | None = None
    windows: tuple[int, ...] = ()
    kstar_rule: str | None = None
    every: Any = None
    spacing: float | None = None
    n_parameters: int | None = None
    selection: Mapping[str, Any] | None = None
    groups: tuple[str, ...] = ()

    @property
    def sketch_text(self) -> str | None:
        """``exact``, ``fold d=200 seed=0``…, or None when not recorded."""
        if not self.sketch:
            return None
        fam = self.sketch.get("family")
        if fam == "exact":
            return "exact"
        return f"{fam} d={self.sketch.get('dim')} seed={self.sketch.get('seed')}"

    @property
    def selection_text(self) -> str | None:
        """The tensors analysed, in words (None when not recorded)."""
        sel = self.selection
        if not sel:
            return None
        parts = [f"preset {sel.get('preset', 'all')}"]
        if sel.get("include"):
            parts.append("include " + ", ".join(map(str, sel["include"])))
        if sel.get("exclude"):
            parts.append("exclude " + ", ".join(map(str, sel["exclude"])))
        if sel.get("group_by") not in (None, "none"):
            parts.append(f"grouped by {sel['group_by']}")
        if sel.get("include_buffers"):
            parts.append("with buffers")
        return "; ".join(parts)


def _spacing(spectral: Any) -> float | None:
    """Median step gap between the samples of the windows, from ``step``, ``step_first`` and ``window``."""
    if spectral is None or not len(spectral) or not {"step", "step_first", "window"} <= set(spectral.columns):
        return None
    import pandas as pd

    gap = (pd.to_numeric(spectral["step"], errors="coerce") - pd.to_numeric(spectral["step_first"], errors="coerce")) \
        / pd.to_numeric(spectral["window"], errors="coerce")
    gap = gap[np.isfinite(gap.to_numpy(float))]
    return float(np.median(gap)) if len(gap) else None


def _run_setup(kind: str, meta: Mapping[str, Any], spectral: Any, n_parameters: int | None) -> RunSetup:
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    if kind == "history":
        where = "the history's meta row" if meta else None
        every = meta.get("every")
    elif meta:
        where = "the table's parquet metadata"
        steps = [c[0] for c in meta.get("checkpoints") or [] if isinstance(c, (list, tuple)) and c
                 and isinstance(c[0], int)]
        gaps = sorted({b - a for a, b in zip(steps, steps[1:])})
        every = (gaps[0] if len(gaps) == 1 else f"{gaps[0]}–{gaps[-1]} (checkpoint spacing)") if gaps else None
    else:
        where, every = None, None
    windows = tuple(int(w) for w in cfg.get("windows") or () if isinstance(w, int))
    if not windows and spectral is not None and len(spectral) and "window" in spectral.columns:
        windows = tuple(sorted(int(w) for w in spectral["window"].dropna().unique()))
    rule = cfg.get("kstar_rule")
    if rule is None and spectral is not None and "k_star_rule" in getattr(spectral, "columns", ()):
        rules = spectral["k_star_rule"].dropna()
        rule = str(rules.iloc[0]) if len(rules) else None
    groups = meta.get("groups")
    return RunSetup(where, cfg.get("sketch") if isinstance(cfg.get("sketch"), dict) else None, windows, rule, every,
                    _spacing(spectral), n_parameters,
                    cfg.get("selection") if isinstance(cfg.get("selection"), dict) else None,
                    tuple(map(str, groups)) if isinstance(groups, list) else ())


@dataclass(frozen=True, eq=False)
class RunData:
    """Everything read from one run (see module docs).

    ``spectral``: one row per (window, group, step), the columns of ``sed`` (or ``grad``) rows
    (empty when the input has none). ``logs``: one row per step (index ``step``), the numeric
    metrics of the history's ``log`` rows, ``eval.csv`` and ``val`` merged by
    :func:`merge_metrics`. ``meta``: the history's meta row, or a parquet table's
    ``spectral_edge`` metadata. ``n_parameters``: P if known. ``path``: the source as resolved
    (a run folder or a file); ``files``: the inputs read (``history`` or ``table``, ``eval``,
    ``summary``, ``config``, ``val``); ``frames``: the rows as read, before any cleaning — by
    kind (:data:`ROW_KINDS`; a table without a ``kind`` column sits under the stream's name)
    and ``eval.csv`` under ``eval``; ``summary``/``config``: the JSON side files; ``notes``:
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
    def setup(self) -> RunSetup:
        """How the spectra were made (:class:`RunSetup`), from the history's meta row or the table's metadata."""
        return _run_setup(self.kind, self.meta, self.spectral, self.n_parameters)

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
        return tuple(c for c in self.spectral.columns if c not in NON_METRIC and is_numeric(self.spectral[c]))

    @property
    def log_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.logs.columns if is_numeric(self.logs[c]))

    def resolve_window(self, window: int | None) -> int:
        """``window`` if recorded; None → the primary window (:func:`~spectral_edge.detectors.signals.primary_window`)."""
        ws = self.windows
        if not ws:
            raise ConfigError(f"{self.source}: the run records no windows")
        if window is None:
            return int(primary_window(ws))  # type: ignore[arg-type]
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

    # ------------------------------------------------------------------ evenly spaced windows
    def mixed_spacing(self):
        """:func:`mixed_spacing_mask` of the spectral rows (True: a window that mixes spacings)."""
        return mixed_spacing_mask(self.spectral)

    def evenly_spaced(self) -> "RunData":
        """This run without the windows that mix sample spacings (:meth:`mixed_spacing`); a note
        counts what was dropped. A run sampled every N steps has none and comes back as is."""
        mixed = self.mixed_spacing()
        if not mixed.any():
            return self
        note = (f"dropped {int(mixed.sum())} window rows that mix sample spacings (a cadence schedule's boundary "
                "inside the window)")
        return replace(self, spectral=self.spectral[~mixed].reset_index(drop=True), notes=self.notes + (note,))

    # ------------------------------------------------------------------ series
    def rows(self, window: int | None = None, group: str | None = None):
        """The spectral rows of one (W, group), ordered by step, last row per step (a DataFrame)."""
        W, g = self.resolve_window(window), self.resolve_group(group)
        df = self.spectral
        sub = df[(df["window"] == W) & (df["group"] == g)]
        return sub.sort_values("step", kind="stable").drop_duplicates("step", keep="last").reset_index(drop=True)

    def spectral_series(self, column: str = "gap_ratio", window: int | None = None,
                        group: str | None = None) -> Series:
        """Column ``column`` of the spectral rows of one (W, group)."""
        if column not in self.spectral.columns or column in NON_METRIC:
            raise ConfigError(f"{self.source}: unknown spectral column {column!r}; "
                              f"choose one of {', '.join(self.spectral_columns[:12])}…")
        W, g = self.resolve_window(window), self.resolve_group(group)
        sub = self.rows(W, g)
        return as_series(column, sub["step"].to_numpy(), to_float(sub[column]), W, g)

    def metric(self, column: str) -> Series:
        """A logged metric (finite values only)."""
        if column not in self.logs.columns:
            have = ", ".join(self.log_columns) or "none"
            raise ConfigError(f"{self.source}: no logged metric {column!r} (logged: {have})")
        return as_series(column, self.logs.index.to_numpy(), to_float(self.logs[column])).finite()

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

    def grok(self, threshold: float | None = None) -> tuple[int | None, str]:
        """(grok step or None, where it comes from or why there is none): ``summary.json``'s
        ``grok_step`` when recorded, else :func:`~spectral_edge.detectors.signals.grok_step`
        over the merged metrics."""
        if "grok_step" in self.summary:
            g = self.summary["grok_step"]
            if g is None:
                return None, "summary.json records no grok step"
            try:
                return int(g), "summary.json"
            except (TypeError, ValueError):
                raise ConfigError(f"{self.files.get('summary')}: grok_step must be a step or null, got {g!r}") from None
        threshold = GROK_THRESHOLD if threshold is None else float(threshold)
        evals = self.logs.reset_index()
        key = accuracy_key(evals)
        if key is None:
            return None, "no evaluation data" if not len(evals) else "no test accuracy in the evaluations"
        g = grok_step(evals, threshold, key)
        where = "eval.csv" if "eval" in self.files else ("the history" if "history" in self.files else "the input")
        if g is None:
            return None, f"{key} stays below {threshold:g} (max {evals[key].max():.3g})"
        return g, f"first {key} ≥ {threshold:g} in {where}"


def _fmt(ws: Sequence[int]) -> str:
    return ", ".join(str(w) for w in ws) or "none"


def is_numeric(col: Any) -> bool:
    """True for a numeric, non-boolean pandas column."""
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(col)) and not pd.api.types.is_bool_dtype(col)


def mixed_spacing_mask(df: Any) -> np.ndarray:
    """A boolean mask over window rows: True for a window whose samples are not evenly spaced
    (:func:`~spectral_edge.stream.cadence.mixes_spacings`: a cadence schedule's boundary inside
    the window); rows without ``step_first``/``sample_spacing`` count as even."""
    from ..stream.cadence import mixes_spacings

    cols = ["step", "window", "step_first", "sample_spacing"]
    if len(df) == 0 or not set(cols) <= set(df.columns):
        return np.zeros(len(df), dtype=bool)
    return np.array([mixes_spacings(r) for r in df[cols].to_dict("records")], dtype=bool)


def to_float(col: Any) -> np.ndarray:
    """A column as float64 (anything not a number → NaN)."""
    import pandas as pd

    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)


# ---------------------------------------------------------------------- finding the inputs
def find_inputs(source: str | Path) -> tuple[Path, dict[str, Path]]:
    """(the source as resolved, the input files found): a run folder gives its history
    (:data:`HISTORY_NAMES`), else the first of :data:`TABLE_NAMES`, else the history
    ``summary.json`` points to; a file is a history or a table (:func:`sniff`), or a side
    file standing for its folder. The side files (:data:`SIDE_FILES`) in the folder are
    read in every case."""
    p = Path(source).expanduser()
    if not p.exists():
        raise ConfigError(f"{p}: no such file or folder (give a run folder, a history .jsonl or an analyze table)")
    files: dict[str, Path] = {}
    if p.is_file() and p.name in {name for _, name in SIDE_FILES}:
        p = p.parent
    if p.is_dir():
        folder = p
        for name in HISTORY_NAMES:
            if "history" not in files and (p / name).is_file():
                files["history"] = p / name
        for name in TABLE_NAMES:
            if "history" not in files and "table" not in files and (p / name).is_file():
                files["table"] = p / name
    else:
        folder = p.parent
        files[sniff(p)] = p
    for key, name in SIDE_FILES:
        if (folder / name).is_file():
            files[key] = folder / name
    if "history" not in files and "table" not in files and "summary" in files:
        pointer = read_json(files["summary"], strict=False).get("history")
        if isinstance(pointer, str) and pointer:
            cand = Path(pointer) if Path(pointer).is_absolute() else folder / pointer
            if cand.is_file():
                files["history"] = cand
    if not files:
        raise ConfigError(f"{p}: found none of {', '.join(HISTORY_NAMES)}, eval.csv, summary.json or metrics.* "
                          "(is this a run folder?)")
    return p, files


def sniff(path: Path) -> str:
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
                if not isinstance(first, dict):
                    raise ConfigError(f"{path}: line 1 is not a JSON object; is this a history file?")
                return "history" if "kind" in first else "table"
    raise ConfigError(f"{path}: the file is empty; nothing to read")


def read_json(path: Path, strict: bool = True) -> dict[str, Any]:
    """A JSON object; anything else raises (``strict``) or gives ``{}``."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
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


# ---------------------------------------------------------------------- metrics
def metric_frame(df: Any):
    """Numeric columns of ``df`` indexed by integer step, one row per step: per column, the
    last value present for that step (see module docs)."""
    import pandas as pd

    if df is None or len(df) == 0 or "step" not in df.columns:
        return pd.DataFrame(index=pd.Index([], name="step", dtype="int64"))
    df = df[pd.to_numeric(df["step"], errors="coerce").notna()].copy()
    df["step"] = pd.to_numeric(df["step"]).astype("int64")
    cols = [c for c in df.columns if c not in NON_METRIC and c != "step"]
    num = df[cols].apply(pd.to_numeric, errors="coerce") if cols else df[[]]
    num = num.loc[:, [c for c in num.columns if num[c].notna().any()]]
    num.insert(0, "step", df["step"].to_numpy())
    return num.groupby("step", sort=True).last()


def merge_metrics(base: Any, extra: Any):
    """``base`` with ``extra``'s columns added on the union of steps; ``extra`` wins where both
    have a value. The run model calls it as ``merge_metrics(eval.csv, history)`` (the history
    wins, eval.csv fills in) and then ``merge_metrics(that, val)`` (an explicit file wins)."""
    if extra is None:
        return base
    if base is None:
        return extra
    idx = base.index.union(extra.index)
    out = base.reindex(idx)
    ext = extra.reindex(idx)
    for c in ext.columns:
        out[c] = ext[c].combine_first(out[c]) if c in out.columns else ext[c]
    out.index.name = "step"
    return out


def check_steps(df: Any, path: Path) -> None:
    """ConfigError naming ``path`` and the row when a ``step`` is not an integer of at most
    2**53 in size, or a ``window`` is not an integer from 1 to 2**31 − 1 (missing values pass)."""
    import pandas as pd

    for col, lo, hi in (("step", -MAX_STEP, MAX_STEP), ("window", 1, 2**31 - 1)):
        if col not in df.columns:
            continue
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        with np.errstate(invalid="ignore"):
            bad = (raw.notna() & num.isna()) | (num.notna() & ((num < lo) | (num > hi) | (num % 1 != 0)))
        if bool(bad.any()):
            i = int(np.flatnonzero(bad.to_numpy())[0])
            v = raw.iloc[i]
            v = v.item() if hasattr(v, "item") else v
            what = "a training step (an integer of at most 2**53)" if col == "step" else "a window size (1 to 2**31 - 1)"
            raise ConfigError(f"{path}: row {i + 1}: {col} {v!r} is not {what}")


def read_val_csv(path: str | Path):
    """A CSV of ``step`` plus metric columns (e.g. ``val_loss``) as a per-step metric frame."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such validation file")
    df = _read_csv(path)
    if isinstance(df, str):
        raise ConfigError(f"{path}: cannot read it as CSV ({df})")
    if "step" not in df.columns:
        raise ConfigError(f"{path}: a validation CSV needs a 'step' column (found {', '.join(map(str, df.columns))})")
    check_steps(df, path)
    return metric_frame(df)


def _read_csv(path: Path):
    """The CSV as a DataFrame, or a string saying why it cannot be read."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except Exception as e:  # pandas raises many kinds on garbage
        return f"{e.__class__.__name__}: {e}"


def _read_eval_csv(path: Path, notes: list[str]):
    """``eval.csv`` as read, or None with a note when it is unreadable or has no ``step``."""
    df = _read_csv(path)
    if isinstance(df, str):
        notes.append(f"{path.name} is not a readable CSV ({df.split(':')[0]}); ignored")
        return None
    if "step" not in df.columns:
        notes.append(f"{path.name} has no 'step' column; ignored")
        return None
    try:
        check_steps(df, path)
    except ConfigError as e:
        notes.append(f"{path.name}: {str(e).removeprefix(f'{path}: ')}; ignored")
        return None
    return df


# ---------------------------------------------------------------------- reading
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


def _read_rows(files: Mapping[str, Path], stream: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(kind, rows by kind, meta) of the history or table among ``files``."""
    from .history import read_history
    from .tables import read_table

    if "history" in files:
        return "history", _by_kind(read_history(files["history"]), stream), _history_meta(files["history"])
    if "table" in files:
        try:
            table = read_table(files["table"])
        except ConfigError:
            raise
        except Exception as e:  # a corrupt parquet/csv: say which file
            raise ConfigError(f"{files['table']}: not readable as a table ({type(e).__name__}: {e})") from None
        check_steps(table, files["table"])
        frames = _by_kind(table, stream)
        meta = _parquet_meta(files["table"]) if files["table"].suffix.lower() in (".parquet", ".pq") else {}
        return "table", frames, meta
    return "none", {}, {}


def read_run(source: str | Path, stream: str = "sed", *, val: str | Path | None = None) -> RunData:
    """Read whatever a run has (see module docs) into a :class:`RunData`. Only an unusable
    source or ``val`` file raises; a broken side file becomes a note."""
    import pandas as pd

    if stream not in STREAMS:
        raise ConfigError(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
    path, files = find_inputs(source)
    kind, frames, meta = _read_rows(files, stream)
    notes: list[str] = []
    summary = _side_json(files, "summary", notes)
    config = _side_json(files, "config", notes)
    logs = metric_frame(frames.get("log"))
    if "eval" in files:
        ev = _read_eval_csv(files["eval"], notes)
        if ev is not None:
            frames["eval"] = ev
            logs = merge_metrics(metric_frame(ev), logs)
    if val is not None:
        logs = merge_metrics(logs, read_val_csv(val))
        files["val"] = Path(val)
    spectral = _spectral(frames.get(stream))
    if spectral is None:
        spectral = pd.DataFrame({"window": pd.Series(dtype="int64"), "group": pd.Series(dtype=object),
                                 "step": pd.Series(dtype="int64")})
    return RunData(str(source), kind, stream, spectral, logs, meta, _find_n_parameters(meta, summary, config),
                   path, files, frames, summary, config, tuple(notes))


def _side_json(files: Mapping[str, Path], key: str, notes: list[str]) -> dict[str, Any]:
    if key not in files:
        return {}
    obj = read_json(files[key], strict=False)
    if not obj:
        try:
            read_json(files[key])
        except ConfigError:
            notes.append(f"{files[key].name} is not a readable JSON object; ignored")
    return obj


def load_run(source: str | Path, *, val: str | Path | None = None, stream: str = "sed") -> RunData:
    """:func:`read_run`, demanding spectral rows (what the analyses need; else ConfigError)."""
    data = read_run(source, stream, val=val)
    if len(data.spectral) == 0:
        what = f"no '{stream}' rows" if data.kind == "history" else "no spectral rows (columns step, window, …)"
        where = data.files.get("history") or data.files.get("table") or data.path
        raise ConfigError(f"{where}: {what}; nothing to analyse (a history needs at least one full window)")
    return data


__all__ = ["HISTORY_NAMES", "RunData", "RunSetup", "Series", "VAL_COLUMNS", "as_series", "check_steps", "find_inputs", "is_numeric",
           "load_run", "merge_metrics", "mixed_spacing_mask", "metric_frame", "read_json", "read_run", "read_val_csv", "sniff", "to_float"]
