"""The functional-modes figure, drawn once for everyone who shows it: the run's report
(:func:`spectral_edge.report.figures.modes_section`), ``spectral-edge modes --plot`` and the
``reproduce modes`` document all call :func:`draw_modes` on a matplotlib ``Figure`` they made
(object API, no pyplot state), and :func:`modes_caption` describes what it drew.

The input is the JSON form of a modes result (``ModesResult.to_dict(spectra=True)``, which is
also what ``spectral-edge modes --out`` writes), so a result computed now and one read back from
a file draw the same, plus the response fields f_k(a, b) that are known (label → (p, p)).

What is drawn is returned as a :class:`ModesDrawing` and the caption is made from it only: a
direction whose spectrum has no power is not drawn and not mentioned, random directions are
mentioned only when there are some, the heat map only when a field was given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .view import direction_label

#: how the classes q of each basis are made (the caption's words)
BASIS_WORDS = {
    "add": "q = a + b mod p",
    "sub": "q = a − b mod p",
    "mul": "q = a·b mod p",
    "dlog": "q = log_g a + log_g b mod (p − 1), g the smallest primitive root",
    "output": "q = the task's answer",
}
ROLE_STYLE = {"edge": "-", "bulk": "--", "random": ":"}
ROLE_COLOR = {"bulk": "0.5", "random": "0.72"}
EDGE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def basis_words(basis: str) -> str:
    """How the classes of ``basis`` are made, in words (``output:<op>``: that task's answer)."""
    if basis.startswith("output:"):
        return f"q = the answer of the {basis.partition(':')[2]} task"
    return BASIS_WORDS.get(basis, basis)


@dataclass(frozen=True)
class ModesDrawing:
    """What :func:`draw_modes` drew: the ``basis`` of the spectra, the labels of the drawn
    spectra by role (``edge``, ``bulk``, ``random``), whether the uniform level is drawn, the
    labels whose heat map is drawn and where (``layout``: ``side`` — spectra left, one heat map
    right — or ``rows`` — spectra on top, heat maps below)."""

    basis: str | None
    lines: Mapping[str, tuple[str, ...]]
    uniform: float | None
    heatmaps: tuple[str, ...]
    layout: str
    modulus: int | None = None

    @property
    def n_lines(self) -> int:
        return sum(len(v) for v in self.lines.values())


def _spectrum(d: Mapping[str, Any], basis: str) -> list[float] | None:
    s = (d.get("bases") or {}).get(basis) or {}
    shares = s.get("shares")
    if not shares or s.get("omega") is None:
        return None
    vals = [np.nan if x is None else float(x) for x in shares]
    return vals if np.isfinite(vals).all() else None


def _span(labels: Sequence[str]) -> str:
    """``v1–v3`` for a run of consecutive labels, else ``v1, v3``."""
    if not labels:
        return ""
    ks = [int(x[1:]) for x in labels]
    if len(ks) > 2 and ks == list(range(ks[0], ks[0] + len(ks))):
        return f"{labels[0]}–{labels[-1]}"
    return ", ".join(labels)


def draw_modes(fig: Any, record: Mapping[str, Any], fields: Mapping[str, np.ndarray] | None = None, *,
               basis: str | None = None, heatmaps: Sequence[str] | None = None,
               title: str | None = None) -> ModesDrawing:
    """Draw on ``fig`` (an empty matplotlib Figure): the normalised power spectrum of every
    direction of ``record`` in ``basis`` (default: the summary's basis) — edge solid and coloured,
    bulk dashed grey, random dotted light grey — with the uniform level, and the heat maps of
    f_k(a, b) for ``heatmaps`` (labels; default: every label in ``fields``) that have a field.
    Returns what was drawn."""
    dirs = list(record.get("directions") or [])
    if basis is None:
        basis = (record.get("summary") or {}).get("basis")
    if basis is None and dirs:
        basis = next(iter(dirs[0].get("bases") or {}), None)
    fields = fields or {}
    maps = tuple(lab for lab in (heatmaps if heatmaps is not None else list(fields)) if lab in fields)
    drawn: dict[str, list[str]] = {"edge": [], "bulk": [], "random": []}
    spectra = []
    for d in dirs:
        sh = _spectrum(d, basis) if basis else None
        if sh is not None and d.get("role") in drawn:
            drawn[d["role"]].append(direction_label(d))
            spectra.append((d, sh))
    layout = "side" if len(maps) <= 1 else "rows"
    n_maps = len(maps)
    if spectra and n_maps:
        if layout == "side":
            grid = fig.add_gridspec(1, 2, width_ratios=(1.9, 1))
            ax = fig.add_subplot(grid[0, 0])
            map_axes = [fig.add_subplot(grid[0, 1])]
        else:
            grid = fig.add_gridspec(2, n_maps)
            ax = fig.add_subplot(grid[0, :])
            map_axes = [fig.add_subplot(grid[1, i]) for i in range(n_maps)]
    elif spectra:
        ax, map_axes = fig.add_subplot(1, 1, 1), []
    else:
        ax, map_axes = None, [fig.add_subplot(1, n_maps, i + 1) for i in range(n_maps)]
    uniform = None
    if ax is not None:
        seen: set[str] = set()
        n_edge = 0
        for d, sh in spectra:
            role = d["role"]
            lab = direction_label(d)
            if role == "edge":
                color, legend = EDGE_COLORS[n_edge % len(EDGE_COLORS)], lab
                n_edge += 1
            else:
                color = ROLE_COLOR[role]
                legend = None if role in seen else f"{role} ({_span(drawn[role])})"
            seen.add(role)
            ax.plot(np.arange(1, len(sh) + 1), sh, ls=ROLE_STYLE[role], color=color, lw=1.7 if role == "edge" else 0.9,
                    label=legend, zorder=3 if role == "edge" else 2)
        uniform = 1.0 / len(spectra[0][1])
        ax.axhline(uniform, color="k", lw=0.7, ls="-.", label=f"uniform 1/{len(spectra[0][1])}")
        ax.set_xlabel(f"frequency ω ({basis} basis)")
        ax.set_ylabel("share of the power")
        ax.set_xlim(0.5, len(spectra[0][1]) + 0.5)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, ncol=2, loc="upper right")
        if title:
            ax.set_title(title, fontsize=9)
    for a, lab in zip(map_axes, maps):
        f = np.asarray(fields[lab], dtype=float)
        im = a.imshow(np.ma.masked_invalid(f), origin="lower", cmap="viridis", interpolation="nearest")
        a.set_title(f"f_{lab[1:]}(a, b) = ‖Δh‖² along {lab}", fontsize=8)
        a.set_xlabel("b")
        a.set_ylabel("a")
        a.grid(False)
        fig.colorbar(im, ax=a, fraction=0.046, pad=0.03)
    return ModesDrawing(basis if spectra else None, {k: tuple(v) for k, v in drawn.items()}, uniform, maps,
                        layout, record.get("modulus"))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def modes_caption(drawing: ModesDrawing, *, panels: bool = False) -> str:
    """A caption that says what ``drawing`` holds and nothing else (``panels``: the same
    drawing repeated per panel, each in its own basis: the basis is not named)."""
    parts = []
    where_lines = where_map = ""
    if drawing.basis is not None and drawing.heatmaps:
        where_lines, where_map = ("Left: ", "Right: ") if drawing.layout == "side" else ("Top: ", "Bottom: ")
    if drawing.basis is not None:
        roles = []
        for role in ("edge", "bulk", "random"):
            labs = drawing.lines.get(role, ())
            if not labs:
                continue
            if role == "edge":
                roles.append(f"the edge {_span(list(labs))} (solid, coloured)")
            elif role == "bulk":
                roles.append(f"the bulk {_span(list(labs))} (dashed grey)")
            else:
                roles.append(f"{len(labs)} random unit direction{'s' if len(labs) != 1 else ''} in the same block "
                             "(dotted, light grey)")
        n = round(1 / drawing.uniform) if drawing.uniform else None
        basis = "the panel's basis" if panels else f"the {drawing.basis} basis ({basis_words(drawing.basis)})"
        freqs = "each frequency ω" if panels else f"each frequency ω = 1…{n}"
        flat = "1/⌊period/2⌋" if panels else f"1/{n}"
        parts.append(where_lines + _cap(
            f"the power spectrum of each direction's response f_k(a, b), averaged over the classes of {basis}: the "
            f"share of the power at {freqs}, one line per direction — " + "; ".join(roles) + ". The dash-dot line is "
            f"the share of every frequency in a flat spectrum ({flat}); a line far above it at one ω is a direction "
            "whose effect is one Fourier mode of that basis."))
    if drawing.heatmaps:
        one = len(drawing.heatmaps) == 1
        which = (f"f_{drawing.heatmaps[0][1:]}(a, b) = ‖Δh(a, b)‖², the squared change of the read-out state (before "
                 f"the final LayerNorm) when the attention weights move by ε along {drawing.heatmaps[0]}") if one else (
                 f"f_k(a, b) = ‖Δh(a, b)‖² for {', '.join(drawing.heatmaps)}, the squared change of the read-out state "
                 "(before the final LayerNorm) when the attention weights move by ε along v_k")
        parts.append(where_map + _cap(f"heat map{'' if one else 's'} of {which}, over every pair (a up, b across; "
                                      "blank: pairs outside the task)."))
        if drawing.basis == "add":
            parts.append("Stripes along the anti-diagonals a + b = const are a function of a + b, an additive mode.")
    return " ".join(parts)
