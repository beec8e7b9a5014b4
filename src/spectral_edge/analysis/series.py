"""Put a run's spectral series and its validation series on common steps.

The run itself is read by the run model, :mod:`spectral_edge.io.run` (``RunData``,
``load_run``, ``read_run``, ``Series``: re-exported here for the analyses); this module
only aligns series: :func:`align` puts two series on common steps, either the exact common
steps or the spectral series' steps with the other series linearly interpolated (exact where
steps coincide), and :func:`values_at` reads a step function (a learning-rate schedule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..io.run import VAL_COLUMNS, RunData, Series, load_run, read_run, read_val_csv

__all__ = ["ALIGN_MODES", "Aligned", "RunData", "Series", "VAL_COLUMNS", "align", "load_run", "read_run",
           "read_val_csv", "values_at"]

ALIGN_MODES: tuple[str, ...] = ("interpolate", "common")


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
