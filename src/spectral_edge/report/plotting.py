"""Plotting plumbing shared by the report's figures (:mod:`.figures` for one run,
:mod:`.compare_figures` for several): matplotlib drawn headless (object API, no pyplot state)
and serialised to SVG text that is inlined in the page (see the package docs for why).

The SVG is cleaned for inlining: no XML prolog or DOCTYPE (which names a network DTD), no
RDF metadata, no namespace declarations (HTML parses inline ``<svg>`` into the SVG namespace
by itself), fixed width/height replaced by CSS scaling, and every id prefixed per figure so
that several figures can live in one document.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .view import RunView

MAX_POINTS = 1500
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
              "#7f7f7f", "#bcbd22")
GROK_COLOR, ALARM_COLOR = "#2a9d3c", "#c0392b"
PHASE_COLORS = {"rise": "#dbe9f6", "plateau": "#fdf1c7", "collapse": "#f6dcdc"}
_RC = {
    "svg.fonttype": "none",          # text stays text: small, crisp and searchable
    "svg.hashsalt": "spectral-edge",  # deterministic ids
    "font.size": 9,
    "font.family": "DejaVu Sans",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def new_figure(rows: int = 1, heights: Sequence[float] | None = None, height: float = 2.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, height * rows if heights is None else height * sum(heights)), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": list(heights)} if heights else None)[:, 0]
    return fig, list(axes)


def to_svg(fig: Any, alt: str, prefix: str) -> str:
    """The figure as inline-ready SVG text (see module docs); ids start with ``prefix``, which
    must be unique within the page."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    s = buf.getvalue()
    s = re.sub(r"<\?xml[^>]*\?>\s*", "", s)
    s = re.sub(r"<!DOCTYPE[^>]*>\s*", "", s)
    s = re.sub(r"<metadata>.*?</metadata>\s*", "", s, flags=re.S)
    s = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", s)
    s = re.sub(r'<style type="text/css">[^<]*</style>', "", s)
    s = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', s)
    s = s.replace('xlink:href="#', f'xlink:href="#{prefix}').replace("url(#", f"url(#{prefix}")
    alt = alt.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    s = re.sub(r'<svg\s+width="[^"]*"\s+height="[^"]*"', f'<svg role="img" aria-label="{alt}"', s, count=1)
    return s.strip()


def render(draw: Callable[[], Any], alt: str, key: str) -> str:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = draw()
        return to_svg(fig, alt, f"{key}-")


def thin(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    if len(x) <= MAX_POINTS:
        return (x, *ys)
    idx = np.unique(np.linspace(0, len(x) - 1, MAX_POINTS).round().astype(int))
    return (x[idx], *(y[idx] for y in ys))


def point_marker(n: int) -> dict[str, Any]:
    return {"marker": "o", "markersize": 4} if n <= 5 else {}


def any_finite(*arrays: np.ndarray) -> bool:
    return any(bool(np.isfinite(a).any()) for a in arrays if len(a))


def column(df: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in df.columns or not len(df):
        return np.array([]), np.array([])
    return df["step"].to_numpy(float), df[name].to_numpy(float)


def log_if_positive(ax: Any, *arrays: np.ndarray) -> None:
    vals = np.concatenate([a[np.isfinite(a)] for a in arrays if len(a)] or [np.array([])])
    if len(vals) and (vals > 0).all() and vals.max() / max(vals.min(), 1e-300) > 20:
        ax.set_yscale("log")


def draw_marks(ax: Any, run: RunView, color: str | None = None, label: bool = True) -> list[str]:
    """Grok step (green dashed), alarms (red) and the warning step when it is not an alarm (red
    dotted) as vertical lines; returns what it drew, in words, for the caption (nothing drawn:
    an empty list)."""
    said: list[str] = []
    if run.grok_step is not None:
        ax.axvline(run.grok_step, color=color or GROK_COLOR, lw=1.2, ls="--",
                   label=f"grok step {run.grok_step}" if label else None)
        said.append(f"green dashed: the grok step {run.grok_step} ({run.grok_source})")
    steps = [a.step for a in run.alarms]
    for i, s in enumerate(steps[:50]):
        ax.axvline(s, color=color or ALARM_COLOR, lw=1.0, alpha=0.8,
                   label=(f"alarm {s}" if len(steps) == 1 else f"alarms ({len(steps)})") if label and i == 0 else None)
    if steps:
        said.append(f"red: the alarm at step {steps[0]}" if len(steps) == 1 else
                    f"red: the {len(steps)} alarms" + (" (the first 50 drawn)" if len(steps) > 50 else ""))
    if run.warning_step is not None and run.warning_step not in steps:
        ax.axvline(run.warning_step, color=color or ALARM_COLOR, lw=1.0, ls=":",
                   label=f"warning {run.warning_step}" if label else None)
        said.append(f"red dotted: the warning step {run.warning_step} ({run.warning_source})")
    return said


def marks_sentence(said: list[str]) -> str:
    """The caption's sentence for :func:`draw_marks`'s lines ('' when none was drawn)."""
    if not said:
        return ""
    text = "; ".join(dict.fromkeys(said))
    return " " + text[0].upper() + text[1:] + "."


def step_range(runs: Sequence[RunView]) -> tuple[float, float] | None:
    """The common step axis: from the first to the last step of any series of any run."""
    lo, hi = math.inf, -math.inf
    for r in runs:
        for df in (r.sed, r.evals, r.defect, r.jl):
            if df is not None and len(df) and "step" in df.columns:
                st = df["step"].to_numpy(float)
                st = st[np.isfinite(st)]
                if len(st):
                    lo, hi = min(lo, st.min()), max(hi, st.max())
        for st in [a.step for a in r.alarms] + [v for v in (r.grok_step, r.warning_step) if v is not None]:
            lo, hi = min(lo, st), max(hi, st)
    if not math.isfinite(lo):
        return None
    pad = max(1.0, 0.02 * (hi - lo))
    return lo - pad, hi + pad


def share_x(axes: Sequence[Any], runs: Sequence[RunView]) -> None:
    """Every panel on the common step axis, with integer step ticks."""
    from matplotlib.ticker import MaxNLocator

    lim = step_range(runs)
    for ax in axes:
        if lim is not None:
            ax.set_xlim(*lim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def note_in(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777")


def run_color(i: int) -> str:
    """The colour of the ``i``-th run on a comparison page (figures, legend and summary table)."""
    return RUN_COLORS[i % len(RUN_COLORS)]


def line_style(col: str) -> dict[str, Any]:
    """Dashed for training series, solid for evaluation ones."""
    return {"ls": "--" if col.startswith("train") or col == "loss" else "-"}


EVAL_ACC = ("train_acc", "test_acc", "val_acc", "eval_acc", "train_accuracy", "test_accuracy", "val_accuracy")
EVAL_LOSS = ("train_loss", "test_loss", "val_loss", "eval_loss", "loss")


def eval_columns(evals: Any) -> tuple[list[str], list[str]]:
    """(accuracy columns, loss columns) of ``evals`` that hold a value, in drawing order."""
    acc = [c for c in EVAL_ACC if c in evals.columns and evals[c].notna().any()]
    loss = [c for c in EVAL_LOSS if c in evals.columns and evals[c].notna().any()]
    return acc, loss
