"""Synthetic series with a known answer, for testing the analyses and for examples.

Like ``ruptures.datasets``, each generator returns the signal *with* its truth:

- :func:`planted_phases`: a gap-ratio series with a planted rise → plateau → collapse
  (flat low level, linear ramp up, flat plateau, linear ramp down, flat low level) plus
  Gaussian noise; the truth is the first plateau step and the first collapse step, and the
  noiseless curve (for exact collapse events).
- :func:`ar1`: an AR(1) series ``z_t = φ z_{t−1} + scale·ε_t`` (stationary start).
- :func:`planted_lead`: a pair (x, y) with ``y_t = −a·x_{t−lag} + AR(1) noise`` plus smooth
  cubic trends on both, so that after detrending the peak lag is ``lag``.
- :func:`planted_history`: a monitor-style history file whose spectral rows for each window
  W lead (lag > 0) or lag (lag < 0) the logged test loss by a planted number of samples, with
  a smooth rise/plateau/collapse of the gap ratio and a learning-rate schedule. Rows are
  written directly (k* = 2 by construction; σ's are consistent with the gap and gap ratio).

Every generator takes an explicit seed; nothing touches a global RNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)
class PlantedPhases:
    """A noisy gap-ratio series and its planted phase boundaries (steps)."""

    steps: np.ndarray = field(repr=False)  # (n,)
    values: np.ndarray = field(repr=False)  # (n,) noisy
    clean: np.ndarray = field(repr=False)  # (n,) noiseless
    plateau_start: int  # first step at the plateau level
    collapse_start: int  # first step of the downward ramp

    @property
    def truth(self) -> tuple[int, int]:
        return self.plateau_start, self.collapse_start


def planted_phases(n: int = 120, rise_end: int = 30, collapse_at: int = 70, ramp: int = 6, low: float = 1.05,
                   high: float = 1.7, noise: float = 0.01, every: int = 100, seed: int = 0) -> PlantedPhases:
    """``R_i`` = low, then a linear ramp of ``ramp`` samples reaching ``high`` at sample ``rise_end``, flat until
    ``collapse_at``, a linear ramp down of ``ramp`` samples, low again; plus N(0, noise²)."""
    i = np.arange(n, dtype=np.float64)
    up = low + (high - low) * np.clip((i - (rise_end - ramp)) / ramp, 0.0, 1.0)
    down = high - (high - low) * np.clip((i - collapse_at + 1) / ramp, 0.0, 1.0)
    clean = np.where(i < collapse_at, up, down)
    g = np.random.default_rng(seed)
    steps = (np.arange(n) * every).astype(np.int64)
    return PlantedPhases(steps, clean + noise * g.standard_normal(n), clean, int(rise_end * every),
                         int(collapse_at * every))


def ar1(n: int, phi: float, scale: float = 1.0, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``z_t = φ·z_{t−1} + scale·ε_t`` with ``z_0 ~ N(0, scale²/(1 − φ²))``; (n,)."""
    g = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    e = g.standard_normal(n) * scale
    z = np.empty(n)
    z[0] = e[0] / np.sqrt(max(1.0 - phi * phi, 1e-12))
    for t in range(1, n):
        z[t] = phi * z[t - 1] + e[t]
    return z


@dataclass(frozen=True, eq=False)
class PlantedPair:
    """x (spectral) and y (loss) with y responding to x ``lag`` samples later (lag < 0: y leads)."""

    steps: np.ndarray = field(repr=False)
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    lag: int


def planted_lead(n: int = 200, lag: int = 3, a: float = 1.0, phi: float = 0.6, noise_phi: float = 0.5,
                 noise_scale: float = 0.5, trend: bool = True, every: int = 100, seed: int = 0) -> PlantedPair:
    """``y_t = −a·x_{t−lag} + AR(1)(noise_phi, noise_scale)`` with x ~ AR(1)(phi), plus cubic trends if ``trend``."""
    g = np.random.default_rng(seed)
    pad = abs(lag) + 1
    x_full = ar1(n + 2 * pad, phi, 1.0, g)
    noise = ar1(n, noise_phi, noise_scale, g)
    x = x_full[pad: pad + n]
    y = -a * x_full[pad - lag: pad - lag + n] + noise
    steps = (np.arange(n) * every).astype(np.int64)
    if trend:
        u = np.linspace(0.0, 1.0, n)
        x = x + 2.0 * u**3 - u + 1.5
        y = y + 4.0 - 3.0 * u + u**2 - 0.5 * u**3
    return PlantedPair(steps, x, y, int(lag))


def planted_history(path: str | Path, windows: Sequence[int] = (5, 10), lags: Mapping[int, int] | None = None,
                    n: int = 160, every: int = 100, n_parameters: int = 50_000, amplitude: float = 0.08,
                    lr: float = 1e-3, loss_column: str = "test_loss", seed: int = 0) -> Path:
    """Write a history whose gap ratio at window W leads the loss by ``lags[W]`` samples (default
    {5: −2, 10: +3}: a lag flip) on top of a smooth rise/plateau/collapse; returns the path."""
    from ..io.history import HistoryWriter

    lags = dict(lags) if lags is not None else {5: -2, 10: 3}
    g = np.random.default_rng(seed)
    pad = max([abs(v) for v in lags.values()] + [1]) + 1
    z = ar1(n + 2 * pad, 0.5, 1.0, g)  # common driver
    u = np.linspace(0.0, 1.0, n)
    bump = 1.1 + 0.55 * np.exp(-(((u - 0.45) / 0.22) ** 2))  # smooth rise, plateau, collapse
    loss = 0.3 + 2.0 * np.exp(-3.0 * u) - amplitude * z[pad: pad + n] + 0.005 * g.standard_normal(n)
    eta = lr * np.where(u < 0.1, (u + 0.01) / 0.11, 0.5 * (1 + np.cos(np.pi * np.clip((u - 0.1) / 0.9, 0, 1))) + 0.05)
    steps = (np.arange(1, n + 1) * every).astype(np.int64)
    rows: list[dict] = []
    for i, st in enumerate(steps.tolist()):
        for W in windows:
            lag = lags.get(W, 0)
            R = float(bump[i] + amplitude * z[pad + lag + i])
            scale = 1e-3 * (1.0 + 0.3 * u[i])
            tail = scale * (1.0 - 0.03 * np.arange(W - 2))  # σ_3…σ_W
            sig = np.r_[1.1 * R * tail[0], R * tail[0], tail]
            row = {"kind": "sed", "step": st, "step_first": st - W * every, "group": "all", "window": W,
                   "k_star": 2, "k_star_rule": "floor", "gap_ratio": R, "gap": float(sig[1] - sig[2]),
                   "g23": float(sig[1] ** 2 - sig[2] ** 2), "pc1_pct": float(100 * sig[0] ** 2 / np.sum(sig**2)),
                   "k95": int(W), "drift_speed": float(scale / 3), "turning": 0.9}
            row.update({f"sigma_{j + 1}": float(s) for j, s in enumerate(sig)})
            row.update({f"ratio_{j + 1}": float(sig[j] / sig[j + 1]) for j in range(W - 1)})
            rows.append(row)
        rows.append({"kind": "log", "step": st, "lr": float(eta[i])})
        rows.append({"kind": "log", "step": st, loss_column: float(loss[i]), "train_loss": float(0.8 * loss[i])})
    path = Path(path)
    meta = {"library": "spectral-edge", "n_parameters": int(n_parameters), "every": every,
            "config": {"windows": list(windows)}, "groups": ["all"], "planted_lags": {str(k): v for k, v in lags.items()}}
    with HistoryWriter(path, meta, fsync=False) as w:
        w.write(rows)
    return path
