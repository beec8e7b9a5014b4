"""Several runs on one page: the report's views overlaid (one colour and one legend entry per
run) and a summary table (peak R, modal k*, grok step, warning step, lead).

Typical use: the same model trained with AdamW and with Muon, or with weight decay 1 and 0.
Each run is read exactly as :func:`~.load.load_view` reads it; runs need not share steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError
from . import compare_figures, html
from .plotting import run_color
from .build import ProgressFn, resolve_out, write_text_atomic
from .load import load_view
from .summary import summary_facts
from .view import RunView


def parse_labels(labels: str | Sequence[str] | None, n: int) -> list[str] | None:
    """``"a,b,c"`` or a sequence → n labels (None: use the runs' own names)."""
    if labels is None:
        return None
    parts = [p.strip() for p in labels.split(",")] if isinstance(labels, str) else [str(p) for p in labels]
    if len(parts) != n or any(not p for p in parts):
        raise ConfigError(f"--labels: give {n} non-empty comma-separated labels, one per run (got {len(parts)})")
    return parts


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out


def write_comparison(sources: Sequence[str | Path], labels: str | Sequence[str] | None = None,
                     out: str | Path | None = None, window: int | None = None, group: str = "all",
                     *, progress: ProgressFn | None = None):
    """Build the comparison page; returns (path written, list of :class:`~.summary.Facts`)."""
    sources = list(sources)
    if len(sources) < 2:
        raise ConfigError(f"compare needs at least two runs, got {len(sources)} (for one run use `spectral-edge report`)")
    names = parse_labels(labels, len(sources))
    path = resolve_out(out, Path("compare.html"))
    cb = progress or (lambda done, total, what: None)
    total = len(sources) + len(compare_figures.COMPARE_FIGURES) + 1
    runs = []
    for i, src in enumerate(sources):
        cb(i, total, f"reading {Path(src).name}")
        runs.append(load_view(src, window, group, None if names is None else names[i], modes=False))
    empty = [str(r.source) for r in runs if not r.has_anything]
    if empty:
        raise ConfigError(f"nothing to plot in {', '.join(empty)} (no windows, evaluations, probes or alarms)")
    if names is None:
        fixed = _unique([r.label for r in runs])
        runs = [r if r.label == lab else _relabel(r, lab) for r, lab in zip(runs, fixed)]
    facts = [summary_facts(r) for r in runs]
    sections = []
    for j, (name, fn) in enumerate(compare_figures.COMPARE_FIGURES.items()):
        cb(len(sources) + j, total, name)
        sections.append(fn(runs))
    colors = [run_color(i) for i in range(len(runs))]
    write_text_atomic(path, html.render_compare(runs, facts, sections, colors))
    cb(total, total, "written")
    return path, facts


def _relabel(run: RunView, label: str) -> RunView:
    return replace(run, label=label)


def build_comparison(sources: Sequence[str | Path], labels: str | Sequence[str] | None = None,
                     out: str | Path | None = None, window: int | None = None, group: str = "all",
                     *, progress: ProgressFn | None = None) -> Path:
    """Write one HTML page comparing several runs and return its path.

    ``sources``: run folders, histories or tables (at least two). ``labels``: one per run
    (a sequence or ``"a,b,c"``; default: the folder/file names). ``out``: the page (default
    ``compare.html`` in the current folder). ``window``/``group`` as in
    :func:`~.build.build_report` (each run's default W when None).
    """
    return write_comparison(sources, labels, out, window, group, progress=progress)[0]
