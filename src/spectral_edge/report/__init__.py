"""Reports: one self-contained HTML page per run (``build_report``), or several runs
overlaid (``build_comparison``), made from files only: a history, an ``analyze`` table or a
run folder (``history.jsonl``, ``eval.csv``, ``summary.json``, ``config.json``, any subset).
A report never touches a live model.

Pipeline, one way (each module imports only the ones before it, never one after):

1. :mod:`.view`: what a report shows and nothing that reads or renders: :class:`~.view.RunView`,
   :class:`~.view.PhaseSpans`, the report's rules (grok accuracy, the paper's defect onset, the
   phase rule) and :class:`~.view.Section`, the neutral record of one figure;
2. :mod:`.load`: :func:`~.load.load_view` reads a run (through
   :func:`spectral_edge.analysis.series.read_run`) into a ``RunView``: window and group, grok and
   warning steps, phases, and the functional modes of a modular run that kept snapshots
   (:func:`~.load.load_modes`);
3. :mod:`.summary`: the facts (:class:`~.summary.Facts`) and plain sentences;
4. :mod:`.figures`: the figures, as ``Section`` records; the functional-modes drawing lives in
   :mod:`.modes_figures` (at the same stage), shared with ``spectral-edge modes --plot`` and
   ``spectral-edge reproduce modes``;
5. :mod:`.html`: the page layout (it knows sections and facts, never how they are drawn);
6. :mod:`.build` writes one run's page, :mod:`.compare` several runs overlaid.

The order is one way so that each layer can be read, tested and replaced on its own: the
data a report shows does not depend on how it is loaded, drawn or laid out, and changing the
page never reaches back into the reading of runs.

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
    "build": ("build_report",),
    "compare": ("build_comparison",),
    "load": ("load_view", "compute_phases"),
    "summary": ("Facts", "summary_facts", "summary_sentences"),
    "view": ("PhaseSpans", "RunView"),
})
