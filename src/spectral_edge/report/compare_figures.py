"""The figures of a comparison page (several runs overlaid, one colour per run): each returns a
:class:`~.view.Section`, drawn with the plumbing of :mod:`.plotting`. :mod:`.compare` lays them out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .plotting import (any_finite, column, eval_columns, line_style, log_if_positive, new_figure, point_marker, render,
                       run_color, share_x, thin)
from .summary import JL_CLAIM
from .view import GROK_ACC, RunView, Section

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


def _grokked(items: Sequence[tuple[int, RunView]]) -> str:
    """The labels of the runs whose grok step a figure draws ('' when none)."""
    return ", ".join(r.label for _, r in items if r.grok_step is not None)


def compare_spectrum(runs: Sequence[RunView]) -> Section:
    title = "Singular values σ1, σ2 and σ_W, per run"
    usable = [(i, r) for i, r in enumerate(runs) if r.sigma_columns and any_finite(*[r.sed[c].to_numpy(float) for c in r.sigma_columns])]
    if not usable:
        return Section("spectrum", title, note="No run has singular values (no sed rows, or all missing).")

    def draw():
        fig, (ax,) = new_figure(height=3.0)
        for i, r in usable:
            cols = r.sigma_columns
            picks = [(cols[0], "-"), (cols[1], "--")] if len(cols) > 1 else [(cols[0], "-")]
            if len(cols) > 2:
                picks.append((cols[-1], ":"))
            for c, ls in picks:
                x, y = thin(*column(r.sed, c))
                y = np.where(y > 0, y, np.nan)
                ax.plot(x, y, color=run_color(i), ls=ls, lw=1.3, **point_marker(len(x)))
        ax.set_yscale("log")
        ax.set_ylabel("σ (log)")
        ax.set_xlabel("step")
        _run_legend(fig, runs)
        _style_legend(ax, [("-", "σ1"), ("--", "σ2"), (":", "σ_W")])
        share_x(fig.axes, runs)
        return fig

    caption = ("σ1 (solid), σ2 (dashed) and the smallest σ_W (dotted) of each run's windows, log scale, one colour per "
               "run. A larger distance between the top lines and the rest means updates concentrated in fewer directions.")
    return Section("spectrum", title, caption=caption, svg=render(draw, title, "spectrum"))


def compare_edge(runs: Sequence[RunView]) -> Section:
    title = "Spectral edge k* and gap ratio R, per run"
    usable = [(i, r) for i, r in enumerate(runs) if any_finite(r.series("gap_ratio")[1], r.series("k_star")[1])]
    if not usable:
        return Section("edge", title, note="No run has k* or gap-ratio values.")

    def draw():
        fig, (ax1, ax2) = new_figure(2, heights=(1.0, 1.8), height=1.6)
        kmin, kmax = math.inf, -math.inf
        for i, r in usable:
            ks, kv = r.series("k_star")
            if any_finite(kv):
                x, y = thin(ks, kv)
                ax1.plot(x, y, drawstyle="steps-post", color=run_color(i), lw=1.2, alpha=0.85, **point_marker(len(x)))
                kmin, kmax = min(kmin, np.nanmin(kv)), max(kmax, np.nanmax(kv))
            rs, rv = r.series("gap_ratio")
            if any_finite(rv):
                x, y = thin(rs, rv)
                ax2.plot(x, y, color=run_color(i), lw=1.4, **point_marker(len(x)))
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
        share_x(fig.axes, runs)
        return fig

    grokked = _grokked(usable)
    caption = ("Top: k* of each run. Bottom: the gap ratio R; stars mark each run's peak"
               + (f", dashed lines the grok step of {grokked}" if grokked else "") + ". In the papers R sits lower with "
               "weight decay (≈1.4) than without (≈2.8), and k* depends on the optimizer (Muon 1, AdamW 2).")
    return Section("edge", title, caption=caption, svg=render(draw, title, "edge"))


def compare_eval(runs: Sequence[RunView]) -> Section:
    title = "Evaluation, per run"
    cols = [(i, r, *eval_columns(r.evals)) for i, r in enumerate(runs)]
    has_acc = any(a for _, _, a, _ in cols)
    has_loss = any(lo for _, _, _, lo in cols)
    if not has_acc and not has_loss:
        return Section("eval", title, note="No run has evaluation data.")

    def draw():
        kinds = [k for k, ok in (("acc", has_acc), ("loss", has_loss)) if ok]
        fig, axes = new_figure(len(kinds), height=2.3)
        for ax, kind in zip(axes, kinds):
            arrays = []
            for i, r, acc, loss in cols:
                chosen = acc if kind == "acc" else loss
                for j, c in enumerate(chosen[:2] if kind == "acc" else [c for c in chosen if c != "loss"][:2] or chosen[:1]):
                    x, y = thin(*column(r.evals, c))
                    ok = np.isfinite(y)
                    ax.plot(x[ok], y[ok], color=run_color(i), lw=1.3, **line_style(c), **point_marker(int(ok.sum())))
                    arrays.append(y)
                if r.grok_step is not None:
                    ax.axvline(r.grok_step, color=run_color(i), ls="--", lw=0.9, alpha=0.7)
            if kind == "acc":
                if any(r.grokking for r in runs):
                    ax.axhline(GROK_ACC, color="#999", ls=":", lw=0.9)
                ax.set_ylabel("accuracy")
            else:
                log_if_positive(ax, *arrays)
                ax.set_ylabel("loss")
            _style_legend(ax, [("--", "train"), ("-", "evaluation")])
        _run_legend(fig, runs)
        axes[-1].set_xlabel("step")
        share_x(fig.axes, runs)
        return fig

    grokked = _grokked([(i, r) for i, r, _, _ in cols])
    what = " and ".join(k for k, ok in (("accuracy", has_acc), ("loss", has_loss)) if ok)
    caption = (f"Training (dashed) and evaluation (solid) {what}, one colour per run"
               + (f"; vertical dashed lines: the grok step of {grokked}" if grokked else "")
               + (f"; dotted: accuracy {GROK_ACC:g}" if has_acc and any(r.grokking for r in runs) else "") + ".")
    return Section("eval", title, caption=caption, svg=render(draw, title, "eval"))


def compare_warning(runs: Sequence[RunView]) -> Section:
    title = "Early-warning signals, per run"
    have_d = [(i, r) for i, r in enumerate(runs) if any_finite(column(r.defect, "defect")[1])]
    have_g = [(i, r) for i, r in enumerate(runs) if any_finite(r.series("g23")[1])]
    if not have_d and not have_g:
        return Section("warning", title, note="No run has a commutator-defect probe or g23 values.")

    def draw():
        panels = [(p, n) for p, n in ((have_d, "defect"), (have_g, "g23")) if p]
        fig, axes = new_figure(len(panels), height=2.3)
        for ax, (items, name) in zip(axes, panels):
            arrays = []
            for i, r in items:
                s, v = column(r.defect, "defect") if name == "defect" else r.series("g23")
                x, y = thin(s, v)
                ok = np.isfinite(y)
                ax.plot(x[ok], y[ok], color=run_color(i), lw=1.3, **point_marker(int(ok.sum())))
                arrays.append(y)
                for a in r.alarms[:50]:
                    ax.plot([a.step], [1.0], marker="v", ms=8, color=run_color(i), ls="none",
                            transform=ax.get_xaxis_transform(), clip_on=False)
                if r.grok_step is not None:
                    ax.axvline(r.grok_step, color=run_color(i), ls="--", lw=0.9, alpha=0.7)
            log_if_positive(ax, *arrays)
            ax.set_ylabel("commutator defect" if name == "defect" else "g23 = σ2² − σ3²")
        _run_legend(fig, runs)
        axes[-1].set_xlabel("step")
        share_x(fig.axes, runs)
        return fig

    shown = {i: r for i, r in have_d + have_g}
    grokked = _grokked(list(shown.items()))
    alarmed = [r.label for r in shown.values() if r.alarms]
    caption = (" and ".join(n for n, ok in (("The commutator defect", have_d), ("g23", have_g)) if ok)
               + " of each run, one colour per run"
               + (f"; triangles at the top: the alarms of {', '.join(alarmed)}" if alarmed else "")
               + (f"; dashed lines: the grok step of {grokked}" if grokked else "") + "."
               + (" The defect onset is necessary, not sufficient: non-grokking runs also cross it." if have_d else ""))
    return Section("warning", title, caption=caption, svg=render(draw, title, "warning"))


def compare_jl(runs: Sequence[RunView]) -> Section:
    title = "Random-projection (JL) error, per run"
    have = [(i, r) for i, r in enumerate(runs) if r.jl is not None and len(r.jl)]
    if not have:
        return Section("jl", title, note="No run has an exact reference, so no JL error is shown.")

    def draw():
        fig, (ax,) = new_figure(height=2.3)
        for i, r in have:
            x, y = thin(*column(r.jl, "jl_error"))
            ax.plot(x, 100 * y, color=run_color(i), lw=1.3, **point_marker(len(x)))
        ax.axhline(100 * JL_CLAIM, color="#999", ls="--", lw=0.9)
        ax.set_ylabel("relative error of R (%)")
        ax.set_xlabel("step")
        ax.set_ylim(bottom=0)
        _run_legend(fig, runs)
        share_x(fig.axes, runs)
        return fig

    missing = [r.label for r in runs if r.jl is None or not len(r.jl)]
    caption = (f"Relative error of the gap ratio against the exact windows; dashed: {100 * JL_CLAIM:.1f}%."
               + (f" Not available for: {', '.join(missing)}." if missing else ""))
    return Section("jl", title, caption=caption, svg=render(draw, title, "jl"))


COMPARE_FIGURES: dict[str, Callable[[Sequence[RunView]], Section]] = {
    "spectrum": compare_spectrum,
    "edge": compare_edge,
    "eval": compare_eval,
    "warning": compare_warning,
    "jl": compare_jl,
}
