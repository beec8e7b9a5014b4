"""Rise, plateau and collapse of the gap ratio R(t) (METHODS.md §4), and collapse events.

Every detector finds a *plateau*, a contiguous run of samples around the peak of R; the
rise is everything before it and the collapse everything after it. Boundaries are reported
as steps: ``plateau_start`` (first plateau step, the end of the rise), ``plateau_end`` (last
plateau step) and ``collapse_start`` (first step after the plateau; None when the plateau
lasts to the end of the run).

Detectors (all thresholds in units of R, derivatives per *sample*, not per optimizer step):

- ``plateau`` (a): the run around the peak with ``R ≥ frac·max R`` (frac = 0.85).
- ``derivative`` (b): R is smoothed by a centred moving average of ``smooth_window`` samples
  (NaN-aware; the window shrinks at the ends), differentiated with central differences
  (``numpy.gradient``, one-sided at the ends); the collapse starts at the first sample after
  the peak of the smoothed series with derivative < −threshold (0.01); symmetrically, scanning
  back from the peak, the first sample with derivative > +threshold is the last of the rise.
- ``threshold`` (c): the run around the peak with ``R ≥ τ`` (τ = 1.30); undefined if R never
  reaches τ.
- ``changepoint``: ``ruptures`` segmentation (Binseg/BottomUp/Dynp/Window with ``n_bkps``
  breakpoints, default 2 → 3 segments, or Pelt with a penalty); the plateau is the segment with
  the highest mean R, extended over adjacent segments whose mean is within ``merge_sd·σ̂``
  (3σ̂) of it (Pelt cuts slopes and long plateaus into pieces). Default cost ``l2``; default
  Pelt penalty ``2·σ̂²·log n`` (BIC for a change in mean) with σ̂ the noise level estimated as
  ``MAD(ΔR)/(0.6745·√2)``.

Collapse event for a threshold τ: the first step after the (raw) peak with R < τ, for
τ ∈ {1.15, 1.20, 1.25, 1.30} (1.20 primary); None when R never reaches τ or never falls back.

Non-finite samples are skipped by the detectors (indices count finite samples only) and get
the label of the phase their step falls in. Too few finite samples give ``valid=False`` with
a reason and the label ``unknown`` everywhere; nothing raises on degenerate series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._deps import require
from ..errors import ConfigError

PHASE_METHODS: tuple[str, ...] = ("plateau", "derivative", "threshold", "changepoint")
CHANGEPOINT_ALGOS: tuple[str, ...] = ("binseg", "bottomup", "dynp", "window", "pelt")
CHANGEPOINT_COSTS: tuple[str, ...] = ("l2", "l1", "rbf", "normal", "clinear", "rank", "cosine", "mahalanobis")
DEFAULT_TAUS: tuple[float, ...] = (1.15, 1.20, 1.25, 1.30)
PRIMARY_TAU = 1.20
LABELS: tuple[str, ...] = ("rise", "plateau", "collapse", "unknown")


@dataclass(frozen=True)
class PhaseConfig:
    """Parameters of the phase detectors (see module docs for their meaning)."""

    method: str = "plateau"  # plateau | derivative | threshold | changepoint
    frac: float = 0.85  # (a) plateau: R ≥ frac·peak
    smooth_window: int = 5  # (b) centred moving-average width in samples (odd)
    deriv_threshold: float = 0.01  # (b) |dR/dsample| threshold
    tau: float = 1.30  # (c) plateau: R ≥ τ
    algo: str = "binseg"  # changepoint: binseg | bottomup | dynp | window | pelt
    cost: str = "l2"  # changepoint: any ruptures cost name (l2, l1, rbf, normal, clinear…)
    penalty: float | None = None  # pelt: None → 2·σ̂²·log n
    n_bkps: int = 2  # changepoint (not pelt): breakpoints → n_bkps + 1 segments
    min_size: int = 3  # changepoint: shortest segment in samples
    merge_sd: float = 3.0  # changepoint: adjacent segments within merge_sd·σ̂ of the top mean join the plateau
    taus: tuple[float, ...] = DEFAULT_TAUS  # collapse-event thresholds
    primary_tau: float = PRIMARY_TAU  # the one reported as `collapse_step`
    min_points: int = 3  # fewer finite samples → valid=False
    #: a plateau whose R trends with |Spearman ρ(step, R)| ≥ flat_rho over ≥ flat_min_points samples is not flat
    flat_rho: float = 0.8
    flat_min_points: int = 4

    def __post_init__(self) -> None:
        if self.method not in PHASE_METHODS:
            raise ConfigError(f"unknown phase method {self.method!r}; choose one of {', '.join(PHASE_METHODS)}")
        if not 0 < self.frac <= 1:
            raise ConfigError(f"frac must be in (0, 1], got {self.frac}")
        if self.smooth_window < 1 or self.smooth_window % 2 == 0:
            raise ConfigError(f"smooth_window must be a positive odd number of samples, got {self.smooth_window}")
        if self.algo not in CHANGEPOINT_ALGOS:
            raise ConfigError(f"unknown change-point algorithm {self.algo!r}; choose one of {', '.join(CHANGEPOINT_ALGOS)}")
        if self.cost not in CHANGEPOINT_COSTS:
            raise ConfigError(f"unknown change-point cost {self.cost!r}; choose one of {', '.join(CHANGEPOINT_COSTS)}")
        if not 0 < self.flat_rho <= 1 or self.flat_min_points < 3:
            raise ConfigError(f"flat_rho must be in (0, 1] and flat_min_points ≥ 3, got {self.flat_rho}, "
                              f"{self.flat_min_points}")
        if self.merge_sd < 0:
            raise ConfigError(f"merge_sd must be ≥ 0, got {self.merge_sd}")
        if self.n_bkps < 1 or self.min_size < 1:
            raise ConfigError("n_bkps and min_size must be ≥ 1")
        taus = tuple(float(t) for t in self.taus)
        object.__setattr__(self, "taus", taus)
        if float(self.primary_tau) not in taus:
            object.__setattr__(self, "taus", tuple(sorted(taus + (float(self.primary_tau),))))


@dataclass(frozen=True)
class CollapseEvent:
    """First step after the peak with R < τ (None: R never reached τ, or never fell below it)."""

    tau: float
    step: int | None
    index: int | None  # row index into the input series


@dataclass(frozen=True, eq=False)
class Phases:
    """Phases of one series found by one detector (see module docs for the boundaries)."""

    method: str
    steps: np.ndarray = field(repr=False)  # (n,) the input steps
    values: np.ndarray = field(repr=False)  # (n,) the input values
    labels: tuple[str, ...] = field(repr=False)  # (n,) rise | plateau | collapse | unknown
    peak_step: int | None
    peak_value: float
    plateau_start: int | None
    plateau_end: int | None
    collapse_start: int | None
    events: tuple[CollapseEvent, ...]
    primary_tau: float = PRIMARY_TAU
    valid: bool = True
    reason: str = ""
    smoothed: np.ndarray | None = field(default=None, repr=False)  # derivative detector only
    derivative: np.ndarray | None = field(default=None, repr=False)
    column: str = "gap_ratio"
    window: int | None = None
    group: str | None = None
    #: Spearman ρ(step, R) over the plateau's finite samples (NaN with fewer than flat_min_points)
    plateau_trend: float = float("nan")
    #: False when the plateau trends (|ρ| ≥ flat_rho): R still rising (ρ > 0) or already falling (ρ < 0)
    #: through the span the rule picked; None when there is no plateau or too few samples to tell
    plateau_flat: bool | None = None

    @property
    def boundaries(self) -> tuple[int | None, int | None]:
        """(end of the rise = first plateau step, first collapse step)."""
        return self.plateau_start, self.collapse_start

    @property
    def collapse_step(self) -> int | None:
        """The collapse event at the primary τ (1.20 by default)."""
        for e in self.events:
            if e.tau == self.primary_tau:
                return e.step
        return None

    def event(self, tau: float) -> CollapseEvent | None:
        for e in self.events:
            if abs(e.tau - tau) < 1e-12:
                return e
        return None

    def to_dict(self) -> dict[str, Any]:
        """Flat record for tables and JSON (events as ``collapse_tau_1.20`` columns)."""
        out: dict[str, Any] = {
            "column": self.column, "window": self.window, "group": self.group, "method": self.method,
            "valid": self.valid, "reason": self.reason, "n": int(self.steps.size),
            "peak_step": self.peak_step, "peak_value": self.peak_value,
            "plateau_start": self.plateau_start, "plateau_end": self.plateau_end,
            "collapse_start": self.collapse_start, "collapse_step": self.collapse_step,
            "primary_tau": self.primary_tau, "plateau_trend": self.plateau_trend, "plateau_flat": self.plateau_flat,
        }
        for e in self.events:
            out[f"collapse_tau_{e.tau:.2f}"] = e.step
        return out

    summary = to_dict  # deprecated name (0.1.0); use to_dict()


# ---------------------------------------------------------------------- helpers
def smooth(values: Any, window: int = 5) -> np.ndarray:
    """Centred moving average ``s_i = mean(x_j : |j − i| ≤ w//2, x_j finite)``; windows shrink at the ends."""
    x = np.asarray(values, dtype=np.float64)
    if window < 1 or window % 2 == 0:
        raise ConfigError(f"the smoothing window must be a positive odd number, got {window}")
    h = window // 2
    ok = np.isfinite(x)
    xs = np.where(ok, x, 0.0)
    cs = np.r_[0.0, np.cumsum(xs)]
    cn = np.r_[0, np.cumsum(ok)]
    n = x.size
    lo = np.clip(np.arange(n) - h, 0, n)
    hi = np.clip(np.arange(n) + h + 1, 0, n)
    cnt = cn[hi] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (cs[hi] - cs[lo]) / np.maximum(cnt, 1), np.nan)


def _run_around(v: np.ndarray, peak: int, thr: float) -> tuple[int, int]:
    """Largest index interval [lo, hi] ∋ peak with v ≥ thr throughout."""
    lo = peak
    while lo > 0 and v[lo - 1] >= thr:
        lo -= 1
    hi = peak
    while hi < v.size - 1 and v[hi + 1] >= thr:
        hi += 1
    return lo, hi


def collapse_events(steps: Any, values: Any, taus: Sequence[float] = DEFAULT_TAUS) -> tuple[CollapseEvent, ...]:
    """For each τ: the first step after ``argmax R`` with ``R < τ`` (None if max R < τ or no such step)."""
    s = np.asarray(steps)
    v = np.asarray(values, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(v))
    out = []
    for tau in taus:
        step = index = None
        if ok.size:
            p = ok[int(np.argmax(v[ok]))]
            if v[p] >= tau:
                after = ok[(ok > p) & (v[ok] < tau)]
                if after.size:
                    index = int(after[0])
                    step = int(s[index])
        out.append(CollapseEvent(float(tau), step, index))
    return tuple(out)


def _finalize(method: str, steps: np.ndarray, values: np.ndarray, ok: np.ndarray, bounds: tuple[int, int, int] | None,
              cfg: PhaseConfig, reason: str = "", **extra: Any) -> Phases:
    """Turn (plateau lo, plateau hi, peak) in finite-sample indices into a :class:`Phases`."""
    events = collapse_events(steps, values, cfg.taus)
    if bounds is None:
        peak_val = float(np.max(values[ok])) if ok.size else float("nan")
        peak_step = int(steps[ok[int(np.argmax(values[ok]))]]) if ok.size else None
        return Phases(method, steps, values, ("unknown",) * steps.size, peak_step, peak_val, None, None, None,
                      events, cfg.primary_tau, False, reason, **extra)
    lo, hi, peak = bounds
    p_start, p_end = int(steps[ok[lo]]), int(steps[ok[hi]])
    c_start = int(steps[ok[hi + 1]]) if hi + 1 < ok.size else None
    labels = tuple("rise" if st < p_start else "plateau" if st <= p_end else "collapse" for st in steps.tolist())
    inside = ok[lo:hi + 1]
    trend = spearman(steps[inside], values[inside]) if inside.size >= cfg.flat_min_points else float("nan")
    flat = None if not np.isfinite(trend) else bool(abs(trend) < cfg.flat_rho)
    return Phases(method, steps, values, labels, int(steps[ok[peak]]), float(values[ok[peak]]), p_start, p_end,
                  c_start, events, cfg.primary_tau, True, reason, **extra, plateau_trend=trend, plateau_flat=flat)


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation of two equal-length finite samples (average ranks for ties;
    NaN when either is constant)."""
    def ranks(a: np.ndarray) -> np.ndarray:
        order = np.argsort(a, kind="stable")
        r = np.empty(a.size)
        r[order] = np.arange(a.size, dtype=np.float64)
        _, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return (sums / counts)[inv]

    rx, ry = ranks(np.asarray(x, dtype=np.float64)), ranks(np.asarray(y, dtype=np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def _prepare(steps: Any, values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(steps)
    v = np.asarray(values, dtype=np.float64)
    if s.shape != v.shape or s.ndim != 1:
        raise ConfigError(f"steps and values must be 1-D and of equal length, got {s.shape} and {v.shape}")
    if s.size and np.any(np.diff(s) <= 0):
        order = np.argsort(s, kind="stable")
        s, v = s[order], v[order]
    return s.astype(np.int64), v, np.flatnonzero(np.isfinite(v))


# ---------------------------------------------------------------------- detectors
def _run_phases(method: str, steps: Any, values: Any, cfg: PhaseConfig, tau: float | None = None) -> Phases:
    """Plateau = contiguous run around ``argmax R`` with ``R ≥ tau`` (None: ``R ≥ frac·max R``);
    undefined when ``max R < tau``."""
    s, v, ok = _prepare(steps, values)
    if ok.size < cfg.min_points:
        return _finalize(method, s, v, ok, None, cfg, f"only {ok.size} finite values (need {cfg.min_points})")
    f = v[ok]
    p = int(np.argmax(f))
    if tau is not None and f[p] < tau:
        return _finalize(method, s, v, ok, None, cfg, f"the series never reaches τ = {tau:g} (max {f[p]:.4g})")
    lo, hi = _run_around(f, p, cfg.frac * f[p] if tau is None else tau)
    return _finalize(method, s, v, ok, (lo, hi, p), cfg)


def plateau_phases(steps: Any, values: Any, frac: float = 0.85, config: PhaseConfig | None = None) -> Phases:
    """Plateau = contiguous run around ``argmax R`` with ``R ≥ frac·max R``; rise before, collapse after."""
    return _run_phases("plateau", steps, values, config or PhaseConfig(method="plateau", frac=frac))


def derivative_phases(steps: Any, values: Any, window: int = 5, threshold: float = 0.01,
                      config: PhaseConfig | None = None) -> Phases:
    """Collapse = first sample after the smoothed peak with ``d(MA_w R)/dsample < −threshold``; rise ends at
    the first sample before the peak (scanning back) with derivative ``> +threshold``."""
    cfg = config or PhaseConfig(method="derivative", smooth_window=window, deriv_threshold=threshold)
    s, v, ok = _prepare(steps, values)
    if ok.size < cfg.min_points:
        return _finalize("derivative", s, v, ok, None, cfg, f"only {ok.size} finite values (need {cfg.min_points})")
    sm = smooth(v[ok], cfg.smooth_window)
    d = np.gradient(sm)
    p = int(np.argmax(sm))
    after = np.flatnonzero(d[p + 1:] < -cfg.deriv_threshold)
    hi = p + int(after[0]) if after.size else ok.size - 1  # last plateau sample
    before = np.flatnonzero(d[:p] > cfg.deriv_threshold)
    lo = int(before[-1]) + 1 if before.size else 0
    full_s = np.full(v.shape, np.nan)
    full_d = np.full(v.shape, np.nan)
    full_s[ok], full_d[ok] = sm, d
    return _finalize("derivative", s, v, ok, (lo, hi, p), cfg, smoothed=full_s, derivative=full_d)


def threshold_phases(steps: Any, values: Any, tau: float = 1.30, config: PhaseConfig | None = None) -> Phases:
    """Plateau = contiguous run around ``argmax R`` with ``R ≥ τ``; undefined when ``max R < τ``."""
    cfg = config or PhaseConfig(method="threshold", tau=tau)
    return _run_phases("threshold", steps, values, cfg, cfg.tau)


def _noise_sigma(f: np.ndarray) -> float:
    d = np.diff(f)
    if d.size == 0:
        return 0.0
    return float(np.median(np.abs(d - np.median(d))) / 0.6745 / np.sqrt(2.0))


def changepoint_phases(steps: Any, values: Any, algo: str = "binseg", cost: str = "l2", penalty: float | None = None,
                       n_bkps: int = 2, min_size: int = 3, config: PhaseConfig | None = None) -> Phases:
    """``ruptures`` segmentation into ``n_bkps + 1`` segments (or Pelt with ``penalty``); plateau = highest-mean segment."""
    rpt = require("ruptures", "analysis", "the changepoint phase detector (--method changepoint, part of --method all)",
                  "choose --method plateau, derivative or threshold")

    cfg = config or PhaseConfig(method="changepoint", algo=algo, cost=cost, penalty=penalty, n_bkps=n_bkps,
                                min_size=min_size)
    s, v, ok = _prepare(steps, values)
    n = ok.size
    need = max(cfg.min_points, cfg.min_size * (2 if cfg.algo == "pelt" else cfg.n_bkps + 1))
    if n < need:
        return _finalize("changepoint", s, v, ok, None, cfg, f"only {n} finite values (need {need})")
    f = v[ok]
    signal = f.reshape(-1, 1)
    classes = {"binseg": rpt.Binseg, "bottomup": rpt.BottomUp, "dynp": rpt.Dynp, "window": rpt.Window, "pelt": rpt.Pelt}
    try:
        kw: dict[str, Any] = {"model": cfg.cost, "min_size": cfg.min_size, "jump": 1}
        if cfg.algo == "window":
            kw["width"] = max(2 * cfg.min_size, 4)
        est = classes[cfg.algo](**kw).fit(signal)
        if cfg.algo == "pelt":
            pen = cfg.penalty if cfg.penalty is not None else 2.0 * max(_noise_sigma(f), 1e-12) ** 2 * np.log(n)
            bkps = est.predict(pen=pen)
        else:
            bkps = est.predict(n_bkps=cfg.n_bkps)
    except Exception as e:  # ruptures raises BadSegmentationParameters, NotEnoughPoints, LinAlgError…
        return _finalize("changepoint", s, v, ok, None, cfg, f"ruptures failed: {e.__class__.__name__}: {e}")
    edges = [0] + [int(b) for b in bkps]
    segs = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    means = [float(np.mean(f[a:b])) for a, b in segs]
    top = int(np.argmax(means))
    tol = cfg.merge_sd * _noise_sigma(f)
    first = last = top
    while first > 0 and means[first - 1] >= means[top] - tol:
        first -= 1
    while last < len(segs) - 1 and means[last + 1] >= means[top] - tol:
        last += 1
    a, b = segs[first][0], segs[last][1]
    p = a + int(np.argmax(f[a:b]))
    return _finalize("changepoint", s, v, ok, (a, b - 1, p), cfg)


def detect_phases(steps: Any, values: Any, config: PhaseConfig | None = None, **overrides: Any) -> Phases:
    """Run the detector ``config.method`` (keyword overrides update the config) on (steps, R)."""
    from dataclasses import replace

    cfg = config or PhaseConfig()
    if overrides:
        cfg = replace(cfg, **overrides)
    if cfg.method == "plateau":
        return plateau_phases(steps, values, config=cfg)
    if cfg.method == "derivative":
        return derivative_phases(steps, values, config=cfg)
    if cfg.method == "threshold":
        return threshold_phases(steps, values, config=cfg)
    return changepoint_phases(steps, values, config=cfg)


def run_phases(data: Any, window: int | None = None, group: str | None = None, column: str = "gap_ratio",
               config: PhaseConfig | None = None, **overrides: Any) -> Phases:
    """:func:`detect_phases` on column ``column`` of one (W, group) of a :class:`~.series.RunData` (or a path)."""
    from dataclasses import replace

    from ..io.run import RunData, load_run

    if not isinstance(data, RunData):
        data = load_run(data)
    ser = data.spectral_series(column, window, group)
    ph = detect_phases(ser.steps, ser.values, config, **overrides)
    return replace(ph, column=column, window=ser.window, group=ser.group)


def boundary_errors(found: Phases, truth: tuple[int | None, int | None]) -> tuple[float, float]:
    """``|found − true|`` in steps for (plateau start, collapse start); inf when one side is missing
    and the other is not, 0 when both are None."""
    out = []
    for f, t in zip(found.boundaries, truth):
        if f is None and t is None:
            out.append(0.0)
        elif f is None or t is None:
            out.append(float("inf"))
        else:
            out.append(float(abs(f - t)))
    return out[0], out[1]
