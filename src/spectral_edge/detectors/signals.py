"""Signals over recorded rows: series, the grok step, and the Gram-edge summary (METHODS §6).

These read what a :class:`~spectral_edge.monitor.Monitor` records (a list of row dicts, or
the history file as a DataFrame) and never a live model:

- :func:`as_rows` turns a DataFrame (NaN where a column does not apply) back into rows;
- :func:`series` extracts one column of one stream (``sed`` rows of a group and window,
  ``probe`` rows of one probe, ``log`` rows) as step-sorted arrays;
- :func:`grok_step` is the first evaluation with test accuracy ≥ 0.9 (METHODS §6), the
  library's one definition of the grok step;
- :func:`gram_edge_summary` gives the Gram-edge signal: g23 = σ_2² − σ_3² of the update
  window over time, its peak before the grok step, the decline factor
  peak g23 / g23 at the grok step (the last window at or before it), and the gap ratio R.
  The papers: the decline is 15–111× in 12/12 grokking runs with weight decay (1/12
  controls); R = 1.40 ± 0.07 with weight decay 1.0 vs 2.83 ± 0.35 without. Their R was
  taken with the ``weighted`` k* rule; the monitor's rows carry ``k_star_weighted`` and all
  ratios, and :func:`ratio_series` can recompute R under any rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._compat import renamed_kwargs
from ..errors import ConfigError

__all__ = ["as_rows", "series", "ratio_series", "grok_step", "accuracy_key", "GramEdgeSummary", "gram_edge_summary",
           "is_missing", "primary_window", "ACC_KEYS", "GROK_THRESHOLD"]

#: accuracy columns tried, in order, by :func:`grok_step` when none is named
#: (``eval_accuracy``: the Hugging Face Trainer's name for a metric called accuracy).
ACC_KEYS = ("test_acc", "val_acc", "eval_acc", "test_accuracy", "val_accuracy", "eval_accuracy")
#: accuracy at which a run counts as grokked (METHODS §6)
GROK_THRESHOLD = 0.9


def primary_window(windows: Any) -> int | None:
    """The window meant when none is given (``window=None`` everywhere in the library): the
    smallest W recorded, the one the monitor's loggers publish without a ``/W…`` prefix.
    None when there is none."""
    ws = sorted({int(w) for w in windows if not is_missing(w)})
    return ws[0] if ws else None


def is_missing(v: Any) -> bool:
    """True for None and NaN (JSON null and pandas' missing cell)."""
    if v is None:
        return True
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def as_rows(history: Any) -> list[dict[str, Any]]:
    """Rows (dicts) from a list of dicts or a DataFrame; missing cells are dropped per row."""
    if history is None:
        return []
    if hasattr(history, "to_dict") and hasattr(history, "columns"):
        recs = history.to_dict(orient="records")
        return [{k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))} for r in recs]
    return [dict(r) for r in history]


def _stream_filter(kind: str, group: str | None, window: int | None, probe: str | None):
    def keep(r: Mapping[str, Any]) -> bool:
        if r.get("kind") != kind:
            return False
        if kind in ("sed", "grad"):
            if group is not None and r.get("group", "all") != group:
                return False
            if window is not None and (is_missing(r.get("window")) or int(r["window"]) != int(window)):
                return False
        if kind == "probe" and probe is not None and r.get("probe") != probe:
            return False
        return True

    return keep


def series(history: Any, key: str, *, kind: str = "sed", group: str | None = "all", window: int | None = None,
           probe: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of column ``key`` in one stream, sorted by step, missing values dropped.

    ``sed``/``grad`` rows: of ``group`` and ``window`` (default: :func:`primary_window`).
    ``probe`` rows: of probe ``probe``. Later rows win when a step repeats."""
    rows = [r for r in as_rows(history) if _stream_filter(kind, group, None, probe)(r)]
    if kind in ("sed", "grad") and window is None:
        window = primary_window(r.get("window") for r in rows)
    if window is not None and kind in ("sed", "grad"):
        rows = [r for r in rows if not is_missing(r.get("window")) and int(r["window"]) == int(window)]
    by_step: dict[int, float] = {}
    for r in rows:
        v, s = r.get(key), r.get("step")
        if is_missing(v) or is_missing(s):
            continue
        by_step[int(s)] = float(v)
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


@renamed_kwargs(rule="kstar_rule")
def ratio_series(history: Any, kstar_rule: str = "weighted", *, group: str = "all", window: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Gap ratio R = r_{k*} of each ``sed`` window under k* rule ``kstar_rule``, from the rows'
    ``k_star_<kstar_rule>`` and ``ratio_j`` columns."""
    rows = [r for r in as_rows(history) if _stream_filter("sed", group, None, None)(r)]
    if window is None:
        window = primary_window(r.get("window") for r in rows)
    by_step: dict[int, float] = {}
    for r in rows:
        if is_missing(r.get("window")) or int(r["window"]) != window or is_missing(r.get("step")):
            continue
        k = r.get(f"k_star_{kstar_rule}")
        v = None if is_missing(k) or int(k) < 1 else r.get(f"ratio_{int(k)}")
        if not is_missing(v):
            by_step[int(r["step"])] = float(v)
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def accuracy_key(history: Any) -> str | None:
    """The first of :data:`ACC_KEYS` that the rows (or DataFrame) carry a value for, or None."""
    rows = [r for r in as_rows(history) if r.get("kind", "log") == "log"]
    for k in ACC_KEYS:
        if any(not is_missing(r.get(k)) for r in rows):
            return k
    return None


def grok_step(history: Any, threshold: float = GROK_THRESHOLD, key: str | None = None, *,
              consecutive: int = 1) -> int | None:
    """The grok step: the first evaluation step at which accuracy has been ≥ ``threshold`` for
    ``consecutive`` evaluations in a row (METHODS §6: 0.9 once; the papers' stricter variant
    is 0.98 three times); None if never. The library's one definition: the runner, the run
    model (:meth:`spectral_edge.io.run.RunData.grok`), the report and the detectors call it.

    ``history``: rows (dicts) or a DataFrame; rows with a ``kind`` other than ``log`` are
    ignored, rows without one count (an evaluation table). ``key``: the accuracy column
    (default: the first of :data:`ACC_KEYS` present). A step logged twice keeps its last value.
    The evaluation at step 0 (the initial model, before any update) never counts: grokking is
    something training does."""
    if consecutive < 1:
        raise ConfigError(f"consecutive must be ≥ 1, got {consecutive}")
    key = key or accuracy_key(history)
    if key is None:
        return None
    by_step: dict[int, float] = {}
    for r in as_rows(history):
        if r.get("kind", "log") == "log" and not is_missing(r.get(key)) and not is_missing(r.get("step")):
            by_step[int(r["step"])] = float(r[key])
    if not by_step:
        raise ConfigError(f"no evaluation rows carry the accuracy column {key!r}")
    run = 0
    for s in sorted(by_step):
        if s <= 0:
            continue
        run = run + 1 if by_step[s] >= threshold else 0
        if run >= consecutive:
            return s
    return None


@dataclass(frozen=True)
class GramEdgeSummary:
    """The Gram-edge signal of one run (see module docs). Steps are those of the windows."""

    steps: np.ndarray  # (n,) window steps
    g23: np.ndarray  # (n,) σ_2² − σ_3²
    gap_ratio: np.ndarray  # (n,) R (NaN where undefined)
    grok_step: int | None
    peak_step: int | None  # argmax of g23 over windows before the grok step (all if no grok)
    peak_g23: float
    ref_step: int | None  # last window at or before the grok step (the last window if no grok)
    g23_at_ref: float
    decline: float  # peak_g23 / g23_at_ref
    ratio_pre: float  # mean R over windows before the grok step (all windows if no grok)
    ratio_at_ref: float
    ratio_final: float

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("grok_step", "peak_step", "peak_g23", "ref_step", "g23_at_ref",
                                              "decline", "ratio_pre", "ratio_at_ref", "ratio_final")}

    as_dict = to_dict  # deprecated name (0.1.0); use to_dict()


def gram_edge_summary(history: Any, grok: int | None = None, *, group: str = "all", window: int | None = None,
                      ratio_key: str = "gap_ratio") -> GramEdgeSummary:
    """g23 over time, its pre-grok peak, the peak-to-grok decline factor, and R.

    ``grok``: the grok step (default: :func:`grok_step` of the same history). Without one
    (a control run) the reference is the last window, so controls and grokking runs are
    scored by the same number."""
    if grok is None:
        grok = grok_step(history)
    steps, g = series(history, "g23", group=group, window=window)
    rs, rv = series(history, ratio_key, group=group, window=window)
    R = np.full(steps.shape, np.nan)
    pos = {int(s): i for i, s in enumerate(steps)}
    for s, v in zip(rs, rv):
        if int(s) in pos:
            R[pos[int(s)]] = v
    nan = float("nan")
    if steps.size == 0:
        return GramEdgeSummary(steps, g, R, grok, None, nan, None, nan, nan, nan, nan, nan)
    pre = steps < grok if grok is not None else np.ones(steps.shape, bool)
    if not pre.any():
        pre = np.ones(steps.shape, bool)
    i_peak = int(np.flatnonzero(pre)[np.argmax(g[pre])])
    upto = np.flatnonzero(steps <= grok) if grok is not None else np.arange(steps.size)
    i_ref = int(upto[-1]) if upto.size else steps.size - 1
    peak, at = float(g[i_peak]), float(g[i_ref])
    decline = peak / at if at > 0 else (math.inf if peak > 0 else nan)
    Rpre = R[pre]
    return GramEdgeSummary(
        steps=steps, g23=g, gap_ratio=R, grok_step=grok, peak_step=int(steps[i_peak]), peak_g23=peak,
        ref_step=int(steps[i_ref]), g23_at_ref=at, decline=decline,
        ratio_pre=float(np.nanmean(Rpre)) if np.isfinite(Rpre).any() else nan,
        ratio_at_ref=float(R[i_ref]), ratio_final=float(R[-1]),
    )
