"""Reports: one self-contained HTML page per run (``build_report``), or several runs
overlaid (``build_comparison``), made from files only: a history, an ``analyze`` table or a
run folder (``history.jsonl``, ``eval.csv``, ``summary.json``, ``config.json``, any subset).
A report never touches a live model.

Pipeline: :mod:`.build` takes a run as :func:`spectral_edge.analysis.series.read_run` reads it
and aligns what a report shows (:class:`~.build.RunView`, phases, grok and warning steps),
:mod:`.summary` turns it into facts and plain sentences, :mod:`.figures` draws the figures,
:mod:`.html` lays out the page, :mod:`.compare` does the same for several runs.

Why matplotlib rendered to inline SVG (and not a JavaScript plotting library, or PNGs):

- the page must open offline, from a ``file://`` URL, years later, and be mailed around as
  one file: inline SVG needs no CDN, no bundled JavaScript library (a plotting library
  inlined would weigh megabytes and still need a trusted runtime) and no side files;
- SVG is vector: crisp at any zoom and in print, and text stays searchable/selectable;
- the files stay small: a figure of a few thousand points is tens of kilobytes, smaller
  than a PNG of the same sharpness, and we thin long series before drawing;
- matplotlib is already the plotting dependency (``spectral-edge[plot]``) and renders
  headless; we use its object API (no pyplot global state) so building a report is safe in
  any process. It is imported only inside the report functions, so ``import spectral_edge``
  stays light.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__, __getattr__, __dir__ = lazy_attributes(__name__, {
    "build": ("build_report", "load_run", "RunView", "Phases", "compute_phases"),
    "compare": ("build_comparison",),
    "summary": ("Facts", "summary_facts", "summary_sentences"),
})
