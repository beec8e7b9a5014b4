"""Whole-series analyses of a run: phases of the gap ratio, coupling with validation loss
(lag, lag flip, Granger), and the Spectral Edge Thesis quantities (METHODS.md §4–5).

Inputs are a monitor history (``history.jsonl``), a run folder holding one, or a table
written by ``spectral-edge analyze`` (plus an optional CSV of ``step,val_loss``);
:func:`load_run` reads any of them into one :class:`RunData`.

Modules:

- :mod:`.series`   loading and aligning a spectral series with the validation series;
- :mod:`.phases`   rise / plateau / collapse detectors and collapse events;
- :mod:`.coupling` detrended lagged correlation, lag flip, significance, Granger test;
- :mod:`.thesis`   Davis–Kahan stability, adiabatic parameter, gap dynamics, BBP, and the
  spectral loss decomposition on a live model;
- :mod:`.datasets` synthetic series with their planted truth (phases, lead/lag, histories).

Names are imported lazily, so ``import spectral_edge.analysis`` costs nothing; scipy,
statsmodels and ruptures are imported only inside the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # series
    "RunData": "series",
    "Series": "series",
    "Aligned": "series",
    "load_run": "series",
    "align": "series",
    "values_at": "series",
    "read_val_csv": "series",
    # phases
    "PhaseConfig": "phases",
    "Phases": "phases",
    "CollapseEvent": "phases",
    "PHASE_METHODS": "phases",
    "smooth": "phases",
    "plateau_phases": "phases",
    "derivative_phases": "phases",
    "threshold_phases": "phases",
    "changepoint_phases": "phases",
    "collapse_events": "phases",
    "detect_phases": "phases",
    "run_phases": "phases",
    "boundary_errors": "phases",
    # coupling
    "LagCorrelation": "coupling",
    "PhaseCorrelation": "coupling",
    "GrangerResult": "coupling",
    "CouplingResult": "coupling",
    "LagFlip": "coupling",
    "detrend": "coupling",
    "lagged_correlation": "coupling",
    "circular_shift_pvalue": "coupling",
    "effective_sample_size": "coupling",
    "ess_pvalue": "coupling",
    "granger_test": "coupling",
    "phase_correlations": "coupling",
    "lag_coupling": "coupling",
    "run_coupling": "coupling",
    "lag_flip": "coupling",
    # datasets (synthetic series with their truth)
    "PlantedPhases": "datasets",
    "PlantedPair": "datasets",
    "planted_phases": "datasets",
    "planted_lead": "datasets",
    "planted_history": "datasets",
    "ar1": "datasets",
    # thesis
    "operator_change": "thesis",
    "consecutive_operator_change": "thesis",
    "window_operator_changes": "thesis",
    "sketch_window_change": "thesis",
    "WindowThesis": "thesis",
    "gram_thesis": "thesis",
    "window_thesis": "thesis",
    "REGIMES": "thesis",
    "eigenvalue_change": "thesis",
    "eigen_gaps": "thesis",
    "davis_kahan_alpha": "thesis",
    "half_window_overlap": "thesis",
    "adiabatic": "thesis",
    "adiabatic_regime": "thesis",
    "GapDynamics": "thesis",
    "gap_dynamics": "thesis",
    "BBP": "thesis",
    "bbp_threshold": "thesis",
    "GapMaximality": "thesis",
    "gap_maximality": "thesis",
    "ModeImportance": "thesis",
    "spectral_loss_decomposition": "thesis",
    "ThesisReport": "thesis",
    "run_thesis": "thesis",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'spectral_edge.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
