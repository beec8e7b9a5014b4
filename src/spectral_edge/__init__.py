"""spectral-edge: the geometry of neural-network training trajectories.

Data flows one way: parameters → sketch → window → spectrum → signals → detectors →
history → report. The public names below are imported lazily, so ``import spectral_edge``
stays light (torch and numpy only; never transformers, lightning, matplotlib or wandb).

Quick start::

    from spectral_edge import AnalysisConfig, SketchSpec, analyze_checkpoints
    res = analyze_checkpoints("runs/my-run", AnalysisConfig(windows=(10,), sketch=SketchSpec("fold", dim=100)))
    df = res.to_frame()          # one row per window: step, k_star, gap_ratio, sigma_1..sigma_W, ...
"""

from __future__ import annotations

from ._lazy import lazy_attributes

__version__ = "0.1.0"

__all__, __getattr__, __dir__ = lazy_attributes(__name__, {
    "errors": ("SpectralEdgeError",),
    "functional.sketch": ("SketchSpec",),
    "functional.spectrum": ("WindowStats", "window_stats", "k_star"),
    "probes.window": ("SketchWindow",),
    "probes.sampler": ("GroupSketcher",),
    "selection": ("Selection",),
    "engine": ("AnalysisConfig", "AnalysisResult", "TrajectoryAnalyzer", "analyze_checkpoints"),
    "io.tables": ("read_table", "write_table"),
    "io.history": ("read_history",),
    "monitor": ("Monitor",),
    "experiments.config": ("RunConfig",),
    "experiments.runner": ("run_experiment",),
}, extra=["__version__"])
