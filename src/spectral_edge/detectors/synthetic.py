"""Planted streams with a known answer, for scoring grokking detectors.

:func:`planted_run` generates the rows a monitor would record on one run (``probe`` rows of
the defect probe, ``sed`` rows with g23 and the gap ratio, ``log`` rows with test accuracy),
shaped after the papers' numbers (METHODS §6, §9), with a planted grok step and defect
onset:

``grok``        defect baseline ~1, rising past the onset rule 600–1600 steps before the
                grok step (test accuracy ≥ 0.9 from the grok step on); g23 rises to a peak
                early, then declines exponentially by 15–111× at the grok step; R ≈ 1.40 ±
                0.07 (weight decay).
``control_nowd`` the defect crosses the onset rule around step 2000 too (the caveat of the
                papers), but g23 stays on a noisy plateau and R ≈ 2.8 ± 0.35 (no weight decay);
                never groks.
``control_wd``  as above with R ≈ 1.4 (weight decay, an operation that does not grok) and a
                mild g23 drift (< 2×); never groks.

``decline`` overrides the g23 decline factor (at the grok step; for controls over the whole
run), e.g. to plant the rare control whose g23 does decline (1/12 in the papers).

These streams encode the papers' claims (g23 declines before grokking, not in controls);
they test a detector's logic, not the claims themselves (see the status note in
:mod:`spectral_edge.detectors.alarm` for what our own first real runs showed).

All noise is multiplicative log-normal from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["PlantedRun", "planted_run", "KINDS"]

KINDS = ("grok", "control_nowd", "control_wd")


@dataclass(frozen=True)
class PlantedRun:
    """Rows of one planted run and its truth (``grok_step`` None for controls)."""

    rows: list[dict[str, Any]]
    kind: str
    grok_step: int | None
    onset_step: int  # first step at which the planted defect is above the onset rule
    g23_peak_step: int


def planted_run(kind: str = "grok", seed: int = 0, *, steps: int = 6000, every: int = 100, window: int = 10,
                defect_noise: float = 0.3, g23_noise: float = 0.25, decline: float | None = None) -> PlantedRun:
    """One planted run (see module docs); rows sorted by step."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    t = np.arange(every, steps + 1, every)
    n = t.size

    def snap(x: float) -> int:
        return int(round(x / every) * every)

    base = rng.uniform(0.5, 2.0)
    if kind == "grok":
        grok = snap(rng.uniform(2500, 3500))
        onset = grok - snap(rng.uniform(600, 1600))
        peak_step = snap(rng.uniform(500, 1200))
        decline_at_grok = rng.uniform(15, 111)
        R_mean, R_sd = 1.40, 0.07
    else:
        grok = None
        onset = snap(rng.uniform(1700, 2300))
        peak_step = snap(rng.uniform(500, 1200))
        decline_at_grok = rng.uniform(1.0, 2.0)  # a mild drift over the whole run
        R_mean, R_sd = (2.83, 0.35) if kind == "control_nowd" else (1.40, 0.07)

    if decline is not None:
        if not decline >= 1:
            raise ConfigError(f"decline is a factor ≥ 1, got {decline}")
        decline_at_grok = float(decline)

    # defect: baseline noise, then a rise that clears 10x baseline and 20 from the onset on
    level = max(25.0, 12.0 * base)
    D = base * np.exp(defect_noise * rng.standard_normal(n))
    after = t >= onset
    D[after] = level * (1 + (t[after] - onset) / 400.0) * np.exp(0.2 * rng.standard_normal(after.sum()))
    D[after] = np.maximum(D[after], 1.05 * level)  # planted: above the rule at every record after onset

    # g23: linear rise to the peak, then exponential decline (decline_at_grok x at the grok
    # step; controls spread their mild decline over the run)
    g_peak = rng.uniform(1e-3, 1e-2)
    end = grok if grok is not None else steps
    rate = np.log(decline_at_grok) / max(end - peak_step, every)
    g = np.where(t <= peak_step, g_peak * (0.3 + 0.7 * t / peak_step), g_peak * np.exp(-rate * (t - peak_step)))
    g = g * np.exp(g23_noise * rng.standard_normal(n))
    R = np.maximum(1.0, R_mean + R_sd * rng.standard_normal(n))

    rows: list[dict[str, Any]] = []
    for i, s in enumerate(t):
        s = int(s)
        if i >= window - 1:  # the first full window of updates
            rows.append({"kind": "sed", "step": s, "group": "all", "window": window, "g23": float(g[i]),
                         "gap_ratio": float(R[i]), "k_star": 1})
        rows.append({"kind": "probe", "probe": "defect", "step": s, "defect": float(D[i])})
        acc = 0.02 if grok is None or s < grok else 0.95
        rows.append({"kind": "log", "step": s, "test_acc": acc})
    return PlantedRun(rows, kind, grok, onset, peak_step)
