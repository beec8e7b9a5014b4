"""spectral-edge: the geometry of neural-network training trajectories.

Data flows one way: parameters → sketch → window → spectrum → signals → detectors →
history → report. The public names below are imported lazily, so ``import spectral_edge``
stays light (torch and numpy only; never transformers, lightning, matplotlib or wandb).

What a user needs, at the top level:

- watch a run: :class:`Monitor`, the probes (:class:`CommutatorDefectProbe`,
  :class:`GradientSEDProbe`, :class:`ExecutionManifoldProbe`, :class:`BackboneProbe`) and the
  alarm (:class:`GrokAlarm`);
- analyse saved checkpoints: :func:`analyze` (with :class:`AnalysisConfig`,
  :class:`SketchSpec`, :class:`Selection`);
- read and show a run: :func:`read_run` / :func:`load_run` (the run model), :func:`grok_step`,
  :func:`build_report`, :func:`read_history`, :func:`read_table`;
- reproduce the papers: :class:`RunConfig`, :func:`run_experiment`.

One spelling per idea, in Python and on the command line:

- ``windows``: the window sizes a monitor or an analysis keeps (``--window 5,10,20``);
  ``window``: the one size a reader picks (``--window 10``); ``None`` means the primary
  window, the smallest W recorded (:func:`spectral_edge.detectors.signals.primary_window`);
  ``W`` is the math symbol, used as a name only in the pure math of ``functional/`` and
  ``stream/``;
- ``kstar_rule`` (``--kstar-rule``): ``floor``, ``argmax`` or ``weighted``; history rows and
  the records that mirror them name their columns ``k_star``, ``k_star_rule``, ``k_star_floor``…;
- ``to_dict()``: the serialiser of every record and config;
- ``grok_step``: :func:`spectral_edge.detectors.signals.grok_step`, the only definition.

Quick start::

    from spectral_edge import AnalysisConfig, analyze
    res = analyze("runs/my-run", AnalysisConfig(windows=(10,)))   # fold sketch, d = 10·W
    df = res.to_frame()          # one row per window: step, k_star, gap_ratio, sigma_1..sigma_W, ...
"""

from __future__ import annotations

from ._lazy import lazy_attributes

__version__ = "0.1.0"

__all__, __getattr__, __dir__ = lazy_attributes(__name__, {
    "errors": ("SpectralEdgeError", "ConfigError", "CheckpointError"),
    "functional.sketch": ("SketchSpec",),
    "functional.spectrum": ("WindowStats", "window_stats", "k_star"),
    "selection": ("Selection",),
    "stream.analyzer": ("AnalysisConfig", "TrajectoryAnalyzer"),
    "engine": ("AnalysisResult", "analyze", "analyze_checkpoints"),
    "monitor": ("Monitor",),
    "probes.defect": ("CommutatorDefectProbe",),
    "probes.gradient_sed": ("GradientSEDProbe",),
    "probes.manifold": ("ExecutionManifoldProbe",),
    "probes.backbone": ("BackboneProbe",),
    "detectors.alarm": ("GrokAlarm",),
    "detectors.signals": ("grok_step",),
    "io.run": ("RunData", "read_run", "load_run"),
    "io.tables": ("read_table", "write_table"),
    "io.history": ("read_history",),
    "report.build": ("build_report",),
    "experiments.config": ("RunConfig",),
    "experiments.runner": ("run_experiment",),
    "analysis.modes": ("ModesConfig", "ModesResult", "analyze_modes", "run_modes"),
}, extra=["__version__"], deprecated={
    # published at the top level in 0.1.0; plumbing, kept importable from here
    "stream.window": ("SketchWindow",),
    "stream.sampler": ("GroupSketcher",),
})
