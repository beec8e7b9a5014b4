"""The report's figures: matplotlib drawn headless (object API, no pyplot state) and
serialised to SVG text that is inlined in the page (see the package docs for why).

Every figure function returns a :class:`~.view.Section`: an SVG with a caption saying how to
read it, or a one-line note saying why the panel is missing. All figures of a run share the
step axis and mark the grok step (green) and alarms / the warning step (red).

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

from .modes_figures import draw_modes, modes_caption
from .summary import JL_CLAIM, Facts, modes_sentences
from .view import GROK_ACC, ONSET_ABS, ONSET_FACTOR, RunView, Section, onset_level

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


# ---------------------------------------------------------------------------- plumbing
def _figure(rows: int = 1, heights: Sequence[float] | None = None, height: float = 2.4):
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


def _render(draw: Callable[[], Any], alt: str, key: str) -> str:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = draw()
        return to_svg(fig, alt, f"{key}-")


def _thin(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    if len(x) <= MAX_POINTS:
        return (x, *ys)
    idx = np.unique(np.linspace(0, len(x) - 1, MAX_POINTS).round().astype(int))
    return (x[idx], *(y[idx] for y in ys))


def _marker(n: int) -> dict[str, Any]:
    return {"marker": "o", "markersize": 4} if n <= 5 else {}


def _any_finite(*arrays: np.ndarray) -> bool:
    return any(bool(np.isfinite(a).any()) for a in arrays if len(a))


def _col(df: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in df.columns or not len(df):
        return np.array([]), np.array([])
    return df["step"].to_numpy(float), df[name].to_numpy(float)


def _log_if_positive(ax: Any, *arrays: np.ndarray) -> None:
    vals = np.concatenate([a[np.isfinite(a)] for a in arrays if len(a)] or [np.array([])])
    if len(vals) and (vals > 0).all() and vals.max() / max(vals.min(), 1e-300) > 20:
        ax.set_yscale("log")


def _marks(ax: Any, run: RunView, color: str | None = None, label: bool = True) -> None:
    """Grok step (green) and alarms / warning step (red) as vertical lines."""
    if run.grok_step is not None:
        ax.axvline(run.grok_step, color=color or GROK_COLOR, lw=1.2, ls="--",
                   label=f"grok step {run.grok_step}" if label else None)
    steps = [a.step for a in run.alarms]
    for i, s in enumerate(steps[:50]):
        ax.axvline(s, color=color or ALARM_COLOR, lw=1.0, alpha=0.8,
                   label=(f"alarm {s}" if len(steps) == 1 else f"alarms ({len(steps)})") if label and i == 0 else None)
    if run.warning_step is not None and run.warning_step not in steps:
        ax.axvline(run.warning_step, color=color or ALARM_COLOR, lw=1.0, ls=":",
                   label=f"warning {run.warning_step}" if label else None)


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


def _share_x(axes: Sequence[Any], runs: Sequence[RunView]) -> None:
    """Every panel on the common step axis, with integer step ticks."""
    from matplotlib.ticker import MaxNLocator

    lim = step_range(runs)
    for ax in axes:
        if lim is not None:
            ax.set_xlim(*lim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _note_in(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777")


# ---------------------------------------------------------------------------- one run
def spectrum_section(run: RunView, facts: Facts) -> Section:
    title = "Singular values of the update window"
    if not len(run.sed):
        return Section("spectrum", title, note="No spectral windows in this input (no sed rows), so no singular values.")
    cols = run.sigma_columns
    steps = run.sed["step"].to_numpy(float)
    vals = [run.sed[c].to_numpy(float) for c in cols]
    vals = [np.where(v > 0, v, np.nan) for v in vals]
    if not cols or not _any_finite(*vals):
        return Section("spectrum", title, note="The singular values σ_j are missing (NaN) in every window.")

    def draw():
        import matplotlib

        fig, (ax,) = _figure(height=3.0)
        cmap = matplotlib.colormaps["viridis"]
        n = len(cols)
        for j, (c, v) in enumerate(zip(cols, vals)):
            x, y = _thin(steps, v)
            ax.plot(x, y, color=cmap(0.9 * j / max(1, n - 1)), lw=1.6 if j < 3 else 1.0, label=f"σ{j + 1}",
                    **_marker(len(x)))
        ax.set_yscale("log")
        _marks(ax, run)
        ax.set_ylabel("σ_j (log)")
        ax.set_xlabel("step")
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=min(n + 3, 8))
        _share_x(fig.axes, [run])
        return fig

    caption = (f"Each line is one singular value σ_j of the window of the last {run.window or 'W'} updates, on a log "
               "scale (dark: σ1, light: σ_W). The spectral edge is the widest relative gap between neighbouring lines: "
               "when a few lines sit far above the rest, a few directions carry the updates. Green dashed: grok "
               "step; red: alarms.")
    return Section("spectrum", title, caption=caption, svg=_render(draw, title, "spectrum"))


def edge_section(run: RunView, facts: Facts) -> Section:
    title = "Spectral edge k* and gap ratio R, with phases"
    ks, kv = run.series("k_star")
    rs, rv = run.series("gap_ratio")
    if not len(run.sed):
        return Section("edge", title, note="No spectral windows in this input, so no k* and no gap ratio.")
    if not _any_finite(kv, rv):
        return Section("edge", title, note="k* and the gap ratio are missing (NaN) in every window.")
    ph = run.phases

    def draw():
        fig, (ax1, ax2) = _figure(2, heights=(1.0, 1.8), height=1.6)
        if _any_finite(kv):
            x, y = _thin(ks, kv)
            ax1.plot(x, y, drawstyle="steps-post", color="#444", lw=1.3, **_marker(len(x)))
            lo, hi = np.nanmin(kv), np.nanmax(kv)
            ax1.set_yticks(range(int(lo), int(hi) + 1))
            ax1.set_ylim(lo - 0.5, hi + 0.5)
        else:
            _note_in(ax1, "k* missing in every window")
        ax1.set_ylabel("k*")
        if ph is not None:
            spans = [("rise", ph.first_step, ph.plateau_start, ph.has_rise),
                     ("plateau", ph.plateau_start, ph.plateau_end, True),
                     ("collapse", ph.plateau_end, ph.last_step, ph.has_collapse)]
            for name, a, b, present in spans:
                if present and b > a:
                    for ax in (ax1, ax2):
                        ax.axvspan(a, b, color=PHASE_COLORS[name], zorder=0, lw=0)
                    ax2.text((a + b) / 2, 1.0, name, transform=ax2.get_xaxis_transform(), ha="center", va="bottom",
                             fontsize=8, color="#555")
        if _any_finite(rv):
            x, y = _thin(rs, rv)
            ax2.plot(x, y, color="#1f4e79", lw=1.5, label="gap ratio R", **_marker(len(x)))
            if ph is not None:
                ax2.plot([ph.peak_step], [ph.peak_ratio], marker="*", ms=11, color="#e07b00", ls="none",
                         label=f"peak R = {ph.peak_ratio:.3f} at step {ph.peak_step}")
                if ph.threshold is not None:
                    ax2.axhline(ph.threshold, color="#888", ls="--", lw=0.9, label="0.85 × peak")
        else:
            _note_in(ax2, "gap ratio missing in every window")
        _marks(ax2, run)
        _marks(ax1, run, label=False)
        ax2.set_ylabel("R = σ_k*/σ_k*+1")
        ax2.set_xlabel("step")
        ax2.legend(loc="best", fontsize=7)
        _share_x(fig.axes, [run])
        return fig

    rule = f"the '{run.kstar_rule}' rule" if run.kstar_rule else "the rule recorded in the input"
    method = ph.method if ph is not None else "none (no gap ratio)"
    caption = (f"Top: the spectral edge k* = argmax_j σ_j/σ_(j+1) by {rule}. Bottom: the gap ratio R at the edge. "
               f"Shading: rise (blue), plateau (yellow), collapse (red); phases by {method}. A long high plateau "
               "means one stable set of directions dominates training; its collapse marks a reorganisation.")
    return Section("edge", title, caption=caption, svg=_render(draw, title, "edge"))


_ACC = ("train_acc", "test_acc", "val_acc", "eval_acc", "train_accuracy", "test_accuracy", "val_accuracy")
_LOSS = ("train_loss", "test_loss", "val_loss", "eval_loss", "loss")


def _eval_columns(evals: Any) -> tuple[list[str], list[str]]:
    acc = [c for c in _ACC if c in evals.columns and evals[c].notna().any()]
    loss = [c for c in _LOSS if c in evals.columns and evals[c].notna().any()]
    return acc, loss


def _style(col: str) -> dict[str, Any]:
    return {"ls": "--" if col.startswith("train") or col == "loss" else "-"}


def eval_section(run: RunView, facts: Facts) -> Section:
    title = "Evaluation: accuracy and loss"
    acc, loss = _eval_columns(run.evals)
    if not acc and not loss:
        return Section("eval", title, note="No evaluation data (no eval.csv, and no accuracy or loss in the history's log rows).")

    def draw():
        panels = [p for p in (acc, loss) if p]
        fig, axes = _figure(len(panels), height=2.3)
        for ax, cols in zip(axes, panels):
            arrays = []
            for c in cols:
                x, y = _thin(*_col(run.evals, c))
                ok = np.isfinite(y)
                ax.plot(x[ok], y[ok], lw=1.4, label=c.replace("_", " "), **_style(c), **_marker(int(ok.sum())))
                arrays.append(y)
            if cols is acc:
                ax.axhline(GROK_ACC, color="#999", ls=":", lw=0.9)
                ax.set_ylabel("accuracy")
            else:
                _log_if_positive(ax, *arrays)
                ax.set_ylabel("loss")
            _marks(ax, run, label=ax is axes[0])
            ax.legend(loc="best")
        axes[-1].set_xlabel("step")
        _share_x(fig.axes, [run])
        return fig

    caption = ("Accuracy and loss on the same step axis as the spectra (dashed: training, solid: test). The dotted line "
               f"is accuracy {GROK_ACC:g}; the green dashed line is the grok step ({run.grok_source}). Grokking shows "
               "as test accuracy jumping long after training accuracy saturated.")
    return Section("eval", title, caption=caption, svg=_render(draw, title, "eval"))


def warning_section(run: RunView, facts: Facts) -> Section:
    title = "Early-warning signals: commutator defect and g23"
    ds, dv = _col(run.defect, "defect")
    gs, gv = run.series("g23")
    have_d, have_g = _any_finite(dv), _any_finite(gv)
    if not have_d and not have_g:
        extra = f" Alarms at steps {', '.join(str(a.step) for a in run.alarms[:8])}." if run.alarms else ""
        return Section("warning", title, note="No commutator-defect probe and no g23 values in this input." + extra)

    def draw():
        n = int(have_d) + int(have_g)
        fig, axes = _figure(n, height=2.3)
        i = 0
        if have_d:
            ax = axes[i]
            i += 1
            x, y = _thin(ds, dv)
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], color="#6a3d9a", lw=1.4, label="defect D (median)", **_marker(int(ok.sum())))
            _log_if_positive(ax, y)
            level = onset_level(dv)
            if level is not None:
                ax.axhline(level, color="#999", ls=":", lw=0.9, label="onset level")
            ax.set_ylabel("commutator defect")
            _marks(ax, run)
            ax.legend(loc="best")
        if have_g:
            ax = axes[i]
            x, y = _thin(gs, gv)
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], color="#b15928", lw=1.4, label="g23 = σ2² − σ3²", **_marker(int(ok.sum())))
            _log_if_positive(ax, y)
            ax.set_ylabel("g23")
            _marks(ax, run, label=not have_d)
            ax.legend(loc="best")
        axes[-1].set_xlabel("step")
        _share_x(fig.axes, [run])
        return fig

    parts = []
    if have_d:
        parts.append("the commutator defect D (median over probe samples; dotted: the paper's onset level, "
                     f"max({ONSET_FACTOR:g} × baseline, {ONSET_ABS:g}))")
    else:
        parts.append("no commutator-defect probe in this input")
    if have_g:
        parts.append("g23 = σ2² − σ3², which in the papers peaks and then falls before grokking with weight decay")
    caption = ("Panels: " + "; ".join(parts) + ". Red lines: alarms (event rows), dotted red: the warning step when it "
               "is not an alarm; green dashed: grok step. The lead is grok step − warning step. Necessary, not "
               "sufficient: non-grokking runs also cross the defect onset.")
    return Section("warning", title, caption=caption, svg=_render(draw, title, "warning"))


def jl_section(run: RunView, facts: Facts) -> Section:
    title = "Random-projection (JL) error of the gap ratio"
    if run.jl is None or not len(run.jl):
        return Section("jl", title, note=run.jl_note)
    s, e = _col(run.jl, "jl_error")

    def draw():
        fig, (ax,) = _figure(height=2.3)
        x, y = _thin(s, 100 * e)
        ax.plot(x, y, color="#33658a", lw=1.3, label="|R_sketch − R_exact| / R_exact", **_marker(len(x)))
        ax.axhline(100 * JL_CLAIM, color="#999", ls="--", lw=0.9, label=f"{100 * JL_CLAIM:.1f}% (paper, d = 10W)")
        ax.set_ylabel("relative error (%)")
        ax.set_xlabel("step")
        ax.set_ylim(bottom=0)
        ax.legend(loc="best")
        _share_x(fig.axes, [run])
        return fig

    caption = ("Relative error of the gap ratio of the sketched windows against the exact ones, per window "
               f"(from {run.jl_note}). The dashed line is the language-model paper's bound for d = 10W.")
    return Section("jl", title, caption=caption, svg=_render(draw, title, "jl"))


def _cell(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def modes_table(m: dict[str, Any]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """(header, rows) of the functional-modes table: one row per direction, edge then its nulls
    (bulk, random), from :func:`~.summary.modes_facts`."""
    basis = m.get("basis") or "primary"
    header = ("direction", "role", "σ", "best basis", "ω", "F", "F / uniform", f"ω ({basis})", f"F ({basis})")
    rows = tuple((r["direction"], r["role"], _cell(r["sigma"], 4), r["best_basis"] or "–", _cell(r["omega"]),
                  _cell(r["F"]), _cell(r["ratio_to_uniform"], 1), _cell(r["omega_basis"]), _cell(r["F_basis"]))
                 for r in m["directions"])
    return header, rows


def modes_section(run: RunView, facts: Facts) -> Section | None:
    """The functional modes of a modular run (None for a run without them: no section)."""
    title = "Functional modes: what the update directions compute"
    m = facts.modes
    if not m:
        return None
    if m.get("error"):
        return Section("modes", title, note=f"Functional modes could not be computed: {m['error']}")
    view = run.modes
    heat = tuple(lab for lab in ("v1",) if lab in view.fields)
    drawn: list[Any] = []

    def draw():
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8.0, 3.4), layout="constrained")
        drawn.append(draw_modes(fig, view.record, view.fields, heatmaps=heat))
        return fig

    svg = _render(draw, title, "modes")
    drawing = drawn[0]
    caption = modes_caption(drawing)
    caption += (" The table lists every direction: its singular value σ in the window, the basis where its spectrum "
                "is most concentrated (best basis) with that peak ω, F (the top-1 share) and F over the flat level, "
                f"then ω and F in the {m.get('basis')} basis, where this run's claims are read. Source: {view.origin}.")
    return Section("modes", title, caption=caption, svg=svg if drawing.basis or drawing.heatmaps else None,
                   note=None if drawing.basis or drawing.heatmaps else "No spectrum or response field to draw.",
                   table=modes_table(m), points=tuple(modes_sentences(m)))


RUN_FIGURES: dict[str, Callable[[RunView, Facts], Section | None]] = {
    "spectrum": spectrum_section,
    "edge": edge_section,
    "eval": eval_section,
    "warning": warning_section,
    "jl": jl_section,
    "modes": modes_section,
}


# ---------------------------------------------------------------------------- several runs
def run_color(i: int) -> str:
    """The colour of the ``i``-th run on a comparison page (figures, legend and summary table)."""
    return RUN_COLORS[i % len(RUN_COLORS)]


def _run_legend(fig: Any, runs: Sequence[RunView]) -> None:
    """One legend entry per run (its colour, solid), above the panels."""
    from matplotlib.lines import Line2D

    handles = [Line2D([0, 1], [0, 0], color=run_color(i), lw=2) for i in range(len(runs))]
    fig.legend(handles, [r.label for r in runs], loc="outside upper left", ncol=min(len(runs), 6))


def _style_legend(ax: Any, styles: Sequence[tuple[str, str]]) -> None:
    """A legend explaining line styles (solid/dashed…), inside the panel."""
    from matplotlib.lines import Line2D

    handles = [Line2D([0, 1], [0, 0], color="#555", ls=ls) for ls, _ in styles]
    ax.legend(handles, [t for _, t in styles], loc="best", fontsize=7)


def compare_spectrum(runs: Sequence[RunView]) -> Section:
    title = "Singular values σ1, σ2 and σ_W, per run"
    usable = [(i, r) for i, r in enumerate(runs) if r.sigma_columns and _any_finite(*[r.sed[c].to_numpy(float) for c in r.sigma_columns])]
    if not usable:
        return Section("spectrum", title, note="No run has singular values (no sed rows, or all missing).")

    def draw():
        fig, (ax,) = _figure(height=3.0)
        for i, r in usable:
            cols = r.sigma_columns
            picks = [(cols[0], "-"), (cols[1], "--")] if len(cols) > 1 else [(cols[0], "-")]
            if len(cols) > 2:
                picks.append((cols[-1], ":"))
            for c, ls in picks:
                x, y = _thin(*_col(r.sed, c))
                y = np.where(y > 0, y, np.nan)
                ax.plot(x, y, color=run_color(i), ls=ls, lw=1.3, **_marker(len(x)))
        ax.set_yscale("log")
        ax.set_ylabel("σ (log)")
        ax.set_xlabel("step")
        _run_legend(fig, runs)
        _style_legend(ax, [("-", "σ1"), ("--", "σ2"), (":", "σ_W")])
        _share_x(fig.axes, runs)
        return fig

    caption = ("σ1 (solid), σ2 (dashed) and the smallest σ_W (dotted) of each run's windows, log scale, one colour per "
               "run. A larger distance between the top lines and the rest means updates concentrated in fewer directions.")
    return Section("spectrum", title, caption=caption, svg=_render(draw, title, "spectrum"))


def compare_edge(runs: Sequence[RunView]) -> Section:
    title = "Spectral edge k* and gap ratio R, per run"
    usable = [(i, r) for i, r in enumerate(runs) if _any_finite(r.series("gap_ratio")[1], r.series("k_star")[1])]
    if not usable:
        return Section("edge", title, note="No run has k* or gap-ratio values.")

    def draw():
        fig, (ax1, ax2) = _figure(2, heights=(1.0, 1.8), height=1.6)
        kmin, kmax = math.inf, -math.inf
        for i, r in usable:
            ks, kv = r.series("k_star")
            if _any_finite(kv):
                x, y = _thin(ks, kv)
                ax1.plot(x, y, drawstyle="steps-post", color=run_color(i), lw=1.2, alpha=0.85, **_marker(len(x)))
                kmin, kmax = min(kmin, np.nanmin(kv)), max(kmax, np.nanmax(kv))
            rs, rv = r.series("gap_ratio")
            if _any_finite(rv):
                x, y = _thin(rs, rv)
                ax2.plot(x, y, color=run_color(i), lw=1.4, **_marker(len(x)))
            if r.phases is not None:
                ax2.plot([r.phases.peak_step], [r.phases.peak_ratio], marker="*", ms=10, color=run_color(i), ls="none")
            if r.grok_step is not None:
                ax2.axvline(r.grok_step, color=run_color(i), ls="--", lw=1.0)
        if math.isfinite(kmin):
            ax1.set_yticks(range(int(kmin), int(kmax) + 1))
            ax1.set_ylim(kmin - 0.5, kmax + 0.5)
        ax1.set_ylabel("k*")
        ax2.set_ylabel("gap ratio R")
        ax2.set_xlabel("step")
        _run_legend(fig, runs)
        _share_x(fig.axes, runs)
        return fig

    caption = ("Top: k* of each run. Bottom: the gap ratio R; stars mark each run's peak, dashed lines each run's grok "
               "step. In the papers R sits lower with weight decay (≈1.4) than without (≈2.8), and k* depends on the "
               "optimizer (Muon 1, AdamW 2).")
    return Section("edge", title, caption=caption, svg=_render(draw, title, "edge"))


def compare_eval(runs: Sequence[RunView]) -> Section:
    title = "Evaluation, per run"
    cols = [(i, r, *_eval_columns(r.evals)) for i, r in enumerate(runs)]
    has_acc = any(a for _, _, a, _ in cols)
    has_loss = any(lo for _, _, _, lo in cols)
    if not has_acc and not has_loss:
        return Section("eval", title, note="No run has evaluation data.")

    def draw():
        kinds = [k for k, ok in (("acc", has_acc), ("loss", has_loss)) if ok]
        fig, axes = _figure(len(kinds), height=2.3)
        for ax, kind in zip(axes, kinds):
            arrays = []
            for i, r, acc, loss in cols:
                chosen = acc if kind == "acc" else loss
                for j, c in enumerate(chosen[:2] if kind == "acc" else [c for c in chosen if c != "loss"][:2] or chosen[:1]):
                    x, y = _thin(*_col(r.evals, c))
                    ok = np.isfinite(y)
                    ax.plot(x[ok], y[ok], color=run_color(i), lw=1.3, **_style(c), **_marker(int(ok.sum())))
                    arrays.append(y)
                if r.grok_step is not None:
                    ax.axvline(r.grok_step, color=run_color(i), ls="--", lw=0.9, alpha=0.7)
            if kind == "acc":
                ax.axhline(GROK_ACC, color="#999", ls=":", lw=0.9)
                ax.set_ylabel("accuracy")
            else:
                _log_if_positive(ax, *arrays)
                ax.set_ylabel("loss")
            _style_legend(ax, [("--", "train"), ("-", "test")])
        _run_legend(fig, runs)
        axes[-1].set_xlabel("step")
        _share_x(fig.axes, runs)
        return fig

    caption = ("Training (dashed) and test (solid) accuracy and loss, one colour per run; vertical dashed lines: each "
               f"run's grok step; dotted: accuracy {GROK_ACC:g}.")
    return Section("eval", title, caption=caption, svg=_render(draw, title, "eval"))


def compare_warning(runs: Sequence[RunView]) -> Section:
    title = "Early-warning signals, per run"
    have_d = [(i, r) for i, r in enumerate(runs) if _any_finite(_col(r.defect, "defect")[1])]
    have_g = [(i, r) for i, r in enumerate(runs) if _any_finite(r.series("g23")[1])]
    if not have_d and not have_g:
        return Section("warning", title, note="No run has a commutator-defect probe or g23 values.")

    def draw():
        panels = [(p, n) for p, n in ((have_d, "defect"), (have_g, "g23")) if p]
        fig, axes = _figure(len(panels), height=2.3)
        for ax, (items, name) in zip(axes, panels):
            arrays = []
            for i, r in items:
                s, v = _col(r.defect, "defect") if name == "defect" else r.series("g23")
                x, y = _thin(s, v)
                ok = np.isfinite(y)
                ax.plot(x[ok], y[ok], color=run_color(i), lw=1.3, **_marker(int(ok.sum())))
                arrays.append(y)
                for a in r.alarms[:50]:
                    ax.plot([a.step], [1.0], marker="v", ms=8, color=run_color(i), ls="none",
                            transform=ax.get_xaxis_transform(), clip_on=False)
                if r.grok_step is not None:
                    ax.axvline(r.grok_step, color=run_color(i), ls="--", lw=0.9, alpha=0.7)
            _log_if_positive(ax, *arrays)
            ax.set_ylabel("commutator defect" if name == "defect" else "g23 = σ2² − σ3²")
        _run_legend(fig, runs)
        axes[-1].set_xlabel("step")
        _share_x(fig.axes, runs)
        return fig

    caption = ("The commutator defect and g23 of each run; triangles at the top: alarms, dashed lines: grok steps, one "
               "colour per run. The defect onset is necessary, not sufficient: non-grokking runs also cross it.")
    return Section("warning", title, caption=caption, svg=_render(draw, title, "warning"))


def compare_jl(runs: Sequence[RunView]) -> Section:
    title = "Random-projection (JL) error, per run"
    have = [(i, r) for i, r in enumerate(runs) if r.jl is not None and len(r.jl)]
    if not have:
        return Section("jl", title, note="No run has an exact reference, so no JL error is shown.")

    def draw():
        fig, (ax,) = _figure(height=2.3)
        for i, r in have:
            x, y = _thin(*_col(r.jl, "jl_error"))
            ax.plot(x, 100 * y, color=run_color(i), lw=1.3, **_marker(len(x)))
        ax.axhline(100 * JL_CLAIM, color="#999", ls="--", lw=0.9)
        ax.set_ylabel("relative error of R (%)")
        ax.set_xlabel("step")
        ax.set_ylim(bottom=0)
        _run_legend(fig, runs)
        _share_x(fig.axes, runs)
        return fig

    missing = [r.label for r in runs if r.jl is None or not len(r.jl)]
    caption = (f"Relative error of the gap ratio against the exact windows; dashed: {100 * JL_CLAIM:.1f}%."
               + (f" Not available for: {', '.join(missing)}." if missing else ""))
    return Section("jl", title, caption=caption, svg=_render(draw, title, "jl"))


COMPARE_FIGURES: dict[str, Callable[[Sequence[RunView]], Section]] = {
    "spectrum": compare_spectrum,
    "edge": compare_edge,
    "eval": compare_eval,
    "warning": compare_warning,
    "jl": compare_jl,
}
