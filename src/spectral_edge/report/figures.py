"""The figures of one run's report: each returns a :class:`~.view.Section`, an SVG with its
caption, or a one-line note saying why the panel is missing (drawn with the plumbing of
:mod:`.plotting`; the functional-modes drawing lives in :mod:`.modes_figures`).

Every caption is made from what its figure contains: the drawing functions note each element
as they draw it (a grok line, an alarm, the accuracy-0.9 line, a phase span), and the caption
is composed from those notes after drawing, so a caption never describes a line that is not
there. The pages of runs without an accuracy (language models, regressions) get no grokking
lines or words; the coupling section appears where the run logs a validation loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .modes_figures import draw_modes, modes_caption
from .plotting import (PHASE_COLORS, any_finite, column, draw_marks, eval_columns, line_style, log_if_positive,
                       marks_sentence, new_figure, note_in, point_marker, render, share_x, thin)
from .summary import JL_CLAIM, Facts, modes_sentences
from .view import GROK_ACC, ONSET_ABS, ONSET_FACTOR, PHASES, RunView, Section, onset_level


def spectrum_section(run: RunView, facts: Facts) -> Section:
    title = "Singular values of the update window"
    if not len(run.sed):
        return Section("spectrum", title, note="No spectral windows in this input (no sed rows), so no singular values.")
    cols = run.sigma_columns
    steps = run.sed["step"].to_numpy(float)
    vals = [run.sed[c].to_numpy(float) for c in cols]
    vals = [np.where(v > 0, v, np.nan) for v in vals]
    if not cols or not any_finite(*vals):
        return Section("spectrum", title, note="The singular values σ_j are missing (NaN) in every window.")
    said: list[str] = []

    def draw():
        import matplotlib

        fig, (ax,) = new_figure(height=3.0)
        cmap = matplotlib.colormaps["viridis"]
        n = len(cols)
        for j, (c, v) in enumerate(zip(cols, vals)):
            x, y = thin(steps, v)
            ax.plot(x, y, color=cmap(0.9 * j / max(1, n - 1)), lw=1.6 if j < 3 else 1.0, label=f"σ{j + 1}",
                    **point_marker(len(x)))
        ax.set_yscale("log")
        said.extend(draw_marks(ax, run))
        ax.set_ylabel("σ_j (log)")
        ax.set_xlabel("step")
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=min(n + 3, 8))
        share_x(fig.axes, [run])
        return fig

    svg = render(draw, title, "spectrum")
    last = cols[-1].replace("sigma_", "σ")
    caption = (f"Each line is one singular value (σ1 … {last}) of the window of the last {run.window or 'W'} updates, "
               f"on a log scale (dark: σ1, light: {last}). The spectral edge is the widest relative gap between "
               "neighbouring lines: when a few lines sit far above the rest, a few directions carry the updates."
               + marks_sentence(said))
    return Section("spectrum", title, caption=caption, svg=svg)


def _phase_spans(ph: Any) -> list[tuple[str, int, int, str]]:
    """(name, from, to, text) of the phase spans to shade: a plateau that is not flat is drawn as
    what it is (R still rising, or already falling), not as a plateau."""
    mid = "plateau"
    if ph.flat is False:
        mid = "still rising" if (ph.trend or 0) > 0 else "falling"
    spans = [("rise", ph.first_step, ph.plateau_start, "rise (blue)", ph.has_rise),
             (mid, ph.plateau_start, ph.plateau_end, {"plateau": "plateau (yellow)",
                                                      "still rising": "still rising, hatched: the plateau rule's span, "
                                                      "where R keeps rising",
                                                      "falling": "falling, hatched: the plateau rule's span, where R "
                                                      "keeps falling"}[mid], True),
             ("collapse", ph.plateau_end, ph.last_step, "collapse (red)", ph.has_collapse)]
    return [(name, a, b, text) for name, a, b, text, present in spans if present and b > a]


def edge_section(run: RunView, facts: Facts) -> Section:
    title = "Spectral edge k* and gap ratio R, with phases"
    ks, kv = run.series("k_star")
    rs, rv = run.series("gap_ratio")
    if not len(run.sed):
        return Section("edge", title, note="No spectral windows in this input, so no k* and no gap ratio.")
    if not any_finite(kv, rv):
        return Section("edge", title, note="k* and the gap ratio are missing (NaN) in every window.")
    ph = run.phases
    shaded: list[str] = []
    said: list[str] = []
    extra: list[str] = []

    def draw():
        fig, (ax1, ax2) = new_figure(2, heights=(1.0, 1.8), height=1.6)
        if any_finite(kv):
            x, y = thin(ks, kv)
            ax1.plot(x, y, drawstyle="steps-post", color="#444", lw=1.3, **point_marker(len(x)))
            lo, hi = np.nanmin(kv), np.nanmax(kv)
            ax1.set_yticks(range(int(lo), int(hi) + 1))
            ax1.set_ylim(lo - 0.5, hi + 0.5)
        else:
            note_in(ax1, "k* missing in every window")
        ax1.set_ylabel("k*")
        if ph is not None and any_finite(rv):
            for name, a, b, text in _phase_spans(ph):
                color = PHASE_COLORS.get(name, PHASE_COLORS["rise"] if name == "still rising" else PHASE_COLORS["collapse"])
                hatch = None if name in PHASE_COLORS else "//"
                for ax in (ax1, ax2):
                    ax.axvspan(a, b, facecolor=color, edgecolor="#9ab" if hatch else None, hatch=hatch, zorder=0, lw=0)
                ax2.text((a + b) / 2, 1.0, name, transform=ax2.get_xaxis_transform(), ha="center", va="bottom",
                         fontsize=8, color="#555")
                shaded.append(text)
            ax1.text(0.0, 1.02, f"phases: {ph.method.split(' (')[0]}", transform=ax1.transAxes, fontsize=7,
                     color="#777", va="bottom")
        if any_finite(rv):
            x, y = thin(rs, rv)
            ax2.plot(x, y, color="#1f4e79", lw=1.5, label="gap ratio R", **point_marker(len(x)))
            if ph is not None:
                ax2.plot([ph.peak_step], [ph.peak_ratio], marker="*", ms=11, color="#e07b00", ls="none",
                         label=f"peak R = {ph.peak_ratio:.3f} at step {ph.peak_step}")
                extra.append(f"the star marks the peak R = {ph.peak_ratio:.3f}")
                if ph.threshold is not None:
                    ax2.axhline(ph.threshold, color="#888", ls="--", lw=0.9, label=f"{PHASES.frac:g} × peak")
                    extra.append(f"the grey dashed line is {PHASES.frac:g} × peak, the plateau rule's level")
        else:
            note_in(ax2, "gap ratio missing in every window")
        said.extend(draw_marks(ax2, run))
        draw_marks(ax1, run, label=False)
        ax2.set_ylabel("R = σ_k*/σ_k*+1")
        ax2.set_xlabel("step")
        ax2.legend(loc="best", fontsize=7)
        share_x(fig.axes, [run])
        return fig

    svg = render(draw, title, "edge")
    rule = f"the '{run.kstar_rule}' rule" if run.kstar_rule else "the rule recorded in the input"
    caption = f"Top: the spectral edge k* = argmax_j σ_j/σ_(j+1) by {rule}. Bottom: the gap ratio R at the edge"
    caption += ("; " + "; ".join(extra) + "." if extra else ".")
    if shaded:
        caption += f" Shading: {', '.join(shaded)}; phases by {ph.method}."
        if ph.flat is False:
            caption += (f" The span the plateau rule picks is not flat (Spearman ρ = {ph.trend:.2f} between step and R, "
                        f"|ρ| ≥ {PHASES.flat_rho:g}), so it is not called a plateau.")
        elif ph.flat is not None:
            caption += " A long high plateau means one stable set of directions dominates training; its collapse marks a reorganisation."
    caption += marks_sentence(said)
    return Section("edge", title, caption=caption, svg=svg)


def _series_words(cols: list[str]) -> str:
    """'train loss (dashed), eval loss (solid)' for the columns drawn."""
    return ", ".join(f"{c.replace('_', ' ')} ({'dashed' if line_style(c)['ls'] == '--' else 'solid'})" for c in cols)


def eval_section(run: RunView, facts: Facts) -> Section:
    title = "Evaluation: accuracy and loss" if run.grokking else "Training and validation loss"
    acc, loss = eval_columns(run.evals)
    if not acc and not loss:
        return Section("eval", title, note="No evaluation data (no eval.csv, and no accuracy or loss in the history's log rows).")
    said: list[str] = []
    level: list[str] = []

    def draw():
        panels = [p for p in (acc, loss) if p]
        fig, axes = new_figure(len(panels), height=2.3)
        for ax, cols in zip(axes, panels):
            arrays = []
            for c in cols:
                x, y = thin(*column(run.evals, c))
                ok = np.isfinite(y)
                ax.plot(x[ok], y[ok], lw=1.4, label=c.replace("_", " "), **line_style(c), **point_marker(int(ok.sum())))
                arrays.append(y)
            if cols is acc:
                if run.grokking:
                    ax.axhline(GROK_ACC, color="#999", ls=":", lw=0.9)
                    level.append(f"the dotted line is accuracy {GROK_ACC:g}, the grok threshold")
                ax.set_ylabel("accuracy")
            else:
                log_if_positive(ax, *arrays)
                ax.set_ylabel("loss" + (" (log)" if ax.get_yscale() == "log" else ""))
            said.extend(draw_marks(ax, run, label=ax is axes[0]))
            ax.legend(loc="best")
        axes[-1].set_xlabel("step")
        share_x(fig.axes, [run])
        return fig

    svg = render(draw, title, "eval")
    parts = [f"accuracy: {_series_words(acc)}" if acc else None, f"loss: {_series_words(loss)}" if loss else None]
    caption = ("On the same step axis as the spectra; " + "; ".join(p for p in parts if p) + "."
               + (" " + level[0][0].upper() + level[0][1:] + "." if level else "") + marks_sentence(said))
    if run.grok_step is not None:
        caption += " Grokking shows as test accuracy jumping long after training accuracy saturated."
    return Section("eval", title, caption=caption, svg=svg)


def warning_section(run: RunView, facts: Facts) -> Section | None:
    """The early-warning signals of a grokking run (defect, g23 and the alarms); for a run with
    nothing to grok and no defect probe or alarm, g23 alone (or nothing)."""
    ds, dv = column(run.defect, "defect")
    gs, gv = run.series("g23")
    have_d, have_g = any_finite(dv), any_finite(gv)
    warning = run.grokking or have_d or bool(run.alarms) or run.warning_step is not None
    title = "Early-warning signals: commutator defect and g23" if warning else "The gap below the edge: g23 = σ2² − σ3²"
    key = "warning" if warning else "g23"
    if not have_d and not have_g:
        if not warning:
            return None
        extra = f" Alarms at steps {', '.join(str(a.step) for a in run.alarms[:8])}." if run.alarms else ""
        return Section(key, title, note="No commutator-defect probe and no g23 values in this input." + extra)
    said: list[str] = []
    onset: list[bool] = []

    def draw():
        n = int(have_d) + int(have_g)
        fig, axes = new_figure(n, height=2.3)
        i = 0
        if have_d:
            ax = axes[i]
            i += 1
            x, y = thin(ds, dv)
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], color="#6a3d9a", lw=1.4, label="defect D (median)", **point_marker(int(ok.sum())))
            log_if_positive(ax, y)
            lvl = onset_level(dv)
            if lvl is not None:
                ax.axhline(lvl, color="#999", ls=":", lw=0.9, label="onset level")
                onset.append(True)
            ax.set_ylabel("commutator defect")
            said.extend(draw_marks(ax, run))
            ax.legend(loc="best")
        if have_g:
            ax = axes[i]
            x, y = thin(gs, gv)
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], color="#b15928", lw=1.4, label="g23 = σ2² − σ3²", **point_marker(int(ok.sum())))
            log_if_positive(ax, y)
            ax.set_ylabel("g23")
            said.extend(draw_marks(ax, run, label=not have_d))
            ax.legend(loc="best")
        axes[-1].set_xlabel("step")
        share_x(fig.axes, [run])
        return fig

    svg = render(draw, title, key)
    parts = []
    if have_d:
        parts.append("the commutator defect D (median over probe samples"
                     + (f"; dotted: the paper's onset level, max({ONSET_FACTOR:g} × baseline, {ONSET_ABS:g})" if onset
                        else "; too few samples for the onset baseline") + ")")
    elif warning:
        parts.append("no commutator-defect probe in this input")
    if have_g:
        parts.append("g23 = σ2² − σ3², the squared gap between the second and third singular values"
                     + (", which in the papers peaks and then falls before grokking with weight decay" if run.grokking
                        else ""))
    caption = ("Panels: " if have_d and have_g else "Panel: ") + "; ".join(parts) + "." + marks_sentence(said)
    if run.grok_step is not None and (run.alarms or run.warning_step is not None):
        caption += " The lead is grok step − warning step."
    if have_d:
        caption += " Necessary, not sufficient: non-grokking runs also cross the defect onset."
    return Section(key, title, caption=caption, svg=svg)


def coupling_section(run: RunView, facts: Facts) -> Section | None:
    """r(ℓ) of the detrended gap ratio against the validation loss (a run that logs one)."""
    title = "Coupling of the gap ratio with the validation loss"
    c = run.coupling
    if c is None:
        return Section("coupling", title, note=run.coupling_note[0].upper() + run.coupling_note[1:] + ".") \
            if run.coupling_note and facts.val_column else None
    lags = np.asarray(c.correlation.lags, dtype=float)
    r = np.asarray(c.correlation.r, dtype=float)
    if not any_finite(r):
        return Section("coupling", title, note=f"The lag correlation is undefined ({c.n} aligned points).")

    def draw():
        fig, (ax,) = new_figure(height=2.3)
        colors = ["#c0392b" if lag == c.peak_lag else "#7f9fbf" for lag in lags]
        ax.bar(lags, np.where(np.isfinite(r), r, 0.0), color=colors, width=0.8)
        ax.axhline(0, color="#555", lw=0.8)
        ax.set_xlabel("lag ℓ (samples of R; ℓ > 0: R leads the loss)")
        ax.set_ylabel(f"r(R_t, {c.target}_t+ℓ)")
        ax.set_ylim(-1.05, 1.05)
        return fig

    svg = render(draw, title, "coupling")
    caption = (f"Pearson correlation r(ℓ) of the gap ratio R (W = {c.window}) with {c.target} ℓ samples later, both "
               f"detrended by a degree-{c.degree} polynomial, over {c.n} aligned points ({c.how} alignment); "
               f"ℓ from {int(lags.min())} to {int(lags.max())}. ")
    if c.peak_lag is not None:
        caption += (f"Red: the most negative r, {c.peak_r:.2f} at ℓ = {c.peak_lag:+d} (circular-shift permutation "
                    f"p = {c.p_perm:.3f} over {c.n_perm} shifts; effective n = {c.n_eff:.1f}).")
    table = None
    if c.phases:
        table = (("phase", "steps", "n", "r (raw)", "r (detrended)"),
                 tuple((p.phase, "–" if p.first_step is None else f"{p.first_step} … {p.last_step}", str(p.n),
                        _cell(p.r_raw, 2), _cell(p.r_detrended, 2)) for p in c.phases))
    return Section("coupling", title, caption=caption, svg=svg, table=table)


_BACKBONE_LINES = {"fraction": "share of the latest drift along the backbone",
                   "mean_fraction": "the same, averaged over the window's drifts",
                   "update_align": "|cos| of the last update with the backbone",
                   "grad_align": "|cos| of the gradient with the backbone",
                   "rotation": "|cos| of the backbone with the previous probe's"}


def backbone_section(run: RunView, facts: Facts) -> Section | None:
    """The backbone probe (METHODS §6): how much of the displacement lies along one direction,
    and how the updates and gradients align with it (a run with the probe)."""
    b = run.backbone
    if b is None:
        return None
    title = "Backbone: the dominant direction of the drift"
    top = [c for c in ("fraction", "mean_fraction") if c in b.columns and any_finite(b[c].to_numpy(float))]
    low = [c for c in ("update_align", "grad_align", "rotation") if c in b.columns and any_finite(b[c].to_numpy(float))]
    if not top and not low:
        return Section("backbone", title, note="The backbone probe recorded no value yet (it needs two states).")
    said: list[str] = []
    band: list[bool] = []

    def draw():
        panels = [p for p in (top, low) if p]
        fig, axes = new_figure(len(panels), height=2.1)
        for ax, cols in zip(axes, panels):
            for c in cols:
                x, y = thin(*column(b, c))
                ok = np.isfinite(y)
                ax.plot(x[ok], y[ok], lw=1.4, ls="-" if c in ("fraction", "update_align") else "--",
                        label=c.replace("_", " "), **point_marker(int(ok.sum())))
            if cols is top:
                ax.axhspan(0.6, 0.8, color="#e8f1e4", zorder=0, lw=0, label="papers: 60–80%")
                band.append(True)
                ax.set_ylabel("share")
            else:
                ax.set_ylabel("|cos|")
            ax.set_ylim(0, 1.05)
            said.extend(draw_marks(ax, run, label=ax is axes[0]))
            ax.legend(loc="best", fontsize=7)
        axes[-1].set_xlabel("step")
        share_x(fig.axes, [run])
        return fig

    svg = render(draw, title, "backbone")
    caption = ("The backbone is the top singular direction of the (unit-normalised) drifts θ_t − θ_ref kept by the "
               "probe. Lines: " + "; ".join(f"{c.replace('_', ' ')} ({_BACKBONE_LINES[c]})" for c in top + low) + "."
               + (" The green band is the papers' 60–80% for language models trained with AdamW." if band else "")
               + marks_sentence(said))
    return Section("backbone", title, caption=caption, svg=svg)


def jl_section(run: RunView, facts: Facts) -> Section:
    title = "Random-projection (JL) error of the gap ratio"
    if run.jl is None or not len(run.jl):
        return Section("jl", title, note=run.jl_note)
    s, e = column(run.jl, "jl_error")

    def draw():
        fig, (ax,) = new_figure(height=2.3)
        x, y = thin(s, 100 * e)
        ax.plot(x, y, color="#33658a", lw=1.3, label="|R_sketch − R_exact| / R_exact", **point_marker(len(x)))
        ax.axhline(100 * JL_CLAIM, color="#999", ls="--", lw=0.9, label=f"{100 * JL_CLAIM:.1f}% (paper, d = 10W)")
        ax.set_ylabel("relative error (%)")
        ax.set_xlabel("step")
        ax.set_ylim(bottom=0)
        ax.legend(loc="best")
        share_x(fig.axes, [run])
        return fig

    caption = ("Relative error of the gap ratio of the sketched windows against the exact ones, per window "
               f"(from {run.jl_note}). The dashed line is the language-model paper's bound for d = 10W.")
    return Section("jl", title, caption=caption, svg=render(draw, title, "jl"))


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

    svg = render(draw, title, "modes")
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
    "coupling": coupling_section,
    "backbone": backbone_section,
    "jl": jl_section,
    "modes": modes_section,
}


