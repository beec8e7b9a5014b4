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

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SpectralEdgeError": "errors",
    "SketchSpec": "functional.sketch",
    "WindowStats": "functional.spectrum",
    "window_stats": "functional.spectrum",
    "k_star": "functional.spectrum",
    "SketchWindow": "probes.window",
    "GroupSketcher": "probes.sampler",
    "Selection": "selection",
    "AnalysisConfig": "engine",
    "AnalysisResult": "engine",
    "TrajectoryAnalyzer": "engine",
    "analyze_checkpoints": "engine",
    "read_table": "io.tables",
    "write_table": "io.tables",
    "read_history": "io.history",
    "Monitor": "monitor",
    "RunConfig": "experiments.config",
    "run_experiment": "experiments.runner",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'spectral_edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
