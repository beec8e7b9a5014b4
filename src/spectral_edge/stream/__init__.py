"""The streaming stage: parameters → sketch → window, one sample at a time.

Between the pure math of :mod:`spectral_edge.functional` (sketch families and window
spectra: stateless functions on tensors and small arrays) and the consumers (the live
:class:`~spectral_edge.monitor.Monitor`, the offline ``analyze`` engine, the probes), this
stage holds the STATE of a stream:

- :mod:`.sampler`: :class:`GroupSketcher`, the one loop that turns a sample's named tensors
  (or pieces of them) into one sketch per group, with the checks every caller shares;
- :mod:`.window`: :class:`SketchWindow`, the ring of sketched updates and their pairwise
  inner products, from which any W ≤ max_window is analysed;
- :mod:`.analyzer`: :class:`AnalysisConfig`, :class:`TrajectoryAnalyzer` (sketcher + one
  window per group → rows) and :func:`default_sketch` (d = 10·max W);
- :mod:`.sharding`: the shard arithmetic for parameters spread over ranks (pieces at global
  flat offsets, one all-reduce of the sketches).

It is separate so that it stays small and dependable: no framework imports (torch and numpy
only; no Monitor, probes, I/O or training frameworks), fixed-shape state whose size does
not depend on the model, and ``state_dict()`` / ``load_state_dict()`` that resume a stream
bit-identically. Importing the package imports none of its modules.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__, __getattr__, __dir__ = lazy_attributes(__name__, {
    "sampler": ("GroupSketcher",),
    "window": ("SketchWindow",),
    "analyzer": ("AnalysisConfig", "TrajectoryAnalyzer", "default_sketch", "default_dim"),
}, submodules=("analyzer", "sampler", "sharding", "window"))
