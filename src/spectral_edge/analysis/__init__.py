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
- :mod:`.modes`    functional modes: what each leading update direction computes (METHODS §7);
- :mod:`.datasets` synthetic series with their planted truth (phases, lead/lag, histories).

Names are imported lazily, so ``import spectral_edge.analysis`` costs nothing; scipy,
statsmodels and ruptures are imported only inside the functions that need them.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__, __getattr__, __dir__ = lazy_attributes(__name__, {
    "series": ("RunData", "Series", "Aligned", "load_run", "align", "values_at", "read_val_csv"),
    "phases": ("PhaseConfig", "Phases", "CollapseEvent", "PHASE_METHODS", "smooth", "plateau_phases",
        "derivative_phases", "threshold_phases", "changepoint_phases", "collapse_events", "detect_phases",
        "run_phases", "boundary_errors"),
    "coupling": ("LagCorrelation", "PhaseCorrelation", "GrangerResult", "CouplingResult", "LagFlip", "detrend",
        "lagged_correlation", "circular_shift_pvalue", "effective_sample_size", "ess_pvalue", "granger_test",
        "phase_correlations", "lag_coupling", "run_coupling", "lag_flip"),
    "datasets": ("PlantedPhases", "PlantedPair", "planted_phases", "planted_lead", "planted_history", "ar1"),
    "thesis": ("operator_change", "consecutive_operator_change", "window_operator_changes",
        "sketch_window_change", "WindowThesis", "gram_thesis", "window_thesis", "REGIMES", "eigenvalue_change",
        "eigen_gaps", "davis_kahan_alpha", "half_window_overlap", "adiabatic", "adiabatic_regime",
        "GapDynamics", "gap_dynamics", "BBP", "bbp_threshold", "GapMaximality", "gap_maximality",
        "ModeImportance", "spectral_loss_decomposition", "ThesisReport", "run_thesis", "unit_lr_gram"),
    "modes": ("ModesConfig", "ModesResult", "run_modes", "analyze_modes", "read_snapshots"),
})
