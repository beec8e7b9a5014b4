"""§5 of the trajectory document: the real-text study (a larger LM on a packaged English text,
AdamW and Muon, dense-early sampling). Every number comes from the results record
(:func:`~.measures.text_study`) and every verdict and strength from :mod:`.text_claims`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._numbers import finite_or_none as _finite
from .formatting import dist, fmt, fmt_p, hms, table
from .lm_claims import RISE_VISIBLE, loss_fall_done
from .plans import OPTIMIZER_SETTINGS, TEXT_OPTIMIZERS, TEXT_SIZE_PROBE, Scale
from .text_claims import cadence_words

_NAMES = {"adamw": "AdamW", "muon": "Muon"}


def text_section(text: Mapping[str, Any], sc: Scale, claims: Sequence[Mapping[str, Any]], figures: Mapping[str, str],
                 fig_rel: str) -> list[str]:
    """§5: setup and why this size, the runs, k*, phases, coupling, backbone, and what the tests can say."""
    return (_setup(text, sc, figures, fig_rel) + _runs(text) + _kstar(text) + _phases(text) + _coupling(text)
            + _backbone(text) + _strengths(claims))


def _arms(text: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(optimizer, run record) for every run of the study, AdamW first."""
    return [(o, r) for o in TEXT_OPTIMIZERS for r in (text.get(o) or {}).get("runs", [])]


def _setup(text: Mapping[str, Any], sc: Scale, figures: Mapping[str, str], fig_rel: str) -> list[str]:
    from ..tasks.lm import PACKAGED_CORPORA

    m, corpus = sc.text_model, str(sc.text_task.get("corpus"))
    n_par = next((r["summary"].get("n_parameters_monitored") for _, r in _arms(text)), None)
    about = PACKAGED_CORPORA[corpus][3] if corpus in PACKAGED_CORPORA else corpus
    opt = OPTIMIZER_SETTINGS["lm"]
    probe = "; ".join(f"{k}: {v} s a step" for k, v in TEXT_SIZE_PROBE.items())
    L = ["## 5. Real text: a larger language model, AdamW and Muon, sampled densely early", "",
         f"Setup: char-level GPT (n_layer = {m.get('n_layer')}, d_model = {m.get('d_model')}, {m.get('n_head')} heads, "
         f"context {sc.text_task.get('block_size')}; {n_par:,} parameters, all monitored) on {about}. "
         "10% of the paragraphs (seeded) are held out for validation. "
         f"Batch {sc.text_batch}, {sc.text_warmup}-step linear warm-up then constant lr, gradient clip 1.0, "
         f"{sc.text_steps} steps; AdamW lr {opt['adamw']['lr']:g}, β = {tuple(opt['adamw']['betas'])}, weight decay "
         f"{opt['adamw']['weight_decay']:g}; Muon lr {opt['muon']['lr']:g} on the 2-D weights (AdamW on the rest), "
         f"weight decay {opt['muon']['weight_decay']:g}; the same seeds for both. Updates are sampled and validation "
         f"loss is measured {cadence_words(sc.text_every)} (a window is W consecutive samples, so a window across "
         "the change of cadence mixes spacings; each history row records its `sample_spacing`). "
         f"Windows W ∈ {{{', '.join(map(str, sc.windows))}}}, exact.", "", _mixed_words(text), "",
         "Why this size: the largest model for which 2 optimizers × 3 seeds fit in about 2 hours on this machine's 2 "
         f"cores. Time per training step measured before choosing (one thread, the other core busy): {probe}. "
         "The wall times below are these runs' own.", ""]
    if "text" in figures:
        L += [f"![Real-text study]({fig_rel}/{figures['text']})", ""]
    return L


def _mixed_words(text: Mapping[str, Any]) -> str:
    """What the dropped windows were and which windows are left (from the first run's record)."""
    arms = _arms(text)
    if not arms:
        return ""
    r = arms[0][1]
    n = (r.get("mixed") or {}).get("n") or {}
    segs = r.get("segments") or {}
    left = "; ".join(f"W = {w[1:]}: " + ", ".join(f"{a}–{b}" for a, b in v) for w, v in sorted(segs.items(),
                                                                                            key=lambda kv: int(kv[0][1:])))
    if not any(n.values()):
        return f"Every window's samples are evenly spaced (windows end at steps {left})."
    return ("**Windows that mix sample spacings are dropped.** A window across the change of cadence holds updates over "
            "10 and over 80 steps; the long ones dominate its spectrum, so R jumps at the boundary and k* counts the "
            "long updates as they enter (2, 3, …; the faint line in the figure's first and third panels). Every measure "
            "below reads only the evenly spaced windows: per run "
            + ", ".join(f"{v} of W = {w}" for w, v in sorted(n.items(), key=lambda kv: int(kv[0]))) + " are dropped, "
            f"and the windows left end at steps {left}. The phase detectors and the coupling read each W's windows as "
            "one sequence across that gap, and W = 20 has windows in the dense part only, so the lag flip compares a "
            "W = 10 series that spans the run with a W = 20 series that does not.")


def _runs(text: Mapping[str, Any]) -> list[str]:
    rows = []
    for o, r in _arms(text):
        s, cv = r["summary"], r.get("val_convergence", {})
        f = (r.get("first_window") or {}).get("10") or {}
        mid, fallen = r.get("val_mid") or {}, loss_fall_done(r)
        steps = s.get("steps_run")
        per_step = (s.get("wall_seconds") / steps) if s.get("wall_seconds") and steps else None
        rows.append((_NAMES[o], s.get("seed"), fmt(cv.get("initial")), fmt(mid.get("mid")), fmt(cv.get("final")),
                     fmt(100 * mid["drop"], 1) + "%" if _finite(mid.get("drop")) is not None else "—",
                     fmt(mid.get("slope_per_1k")), f"{f.get('step')} ({fmt(100 * fallen, 0) if fallen is not None else '—'}%)",
                     hms(s.get("wall_seconds")), fmt(per_step, 2)))
    return table(["optimizer", "seed", "initial val loss", "val loss mid-run", "final val loss", "drop mid → end",
                  "slope per 1k steps (40–60% of the run)", "first W = 10 window ends at step (share of the loss "
                  "fall done)", "wall time", "s / step"], rows) + [
        "", f"A rise of the gap ratio can be seen where the first full window ends before {RISE_VISIBLE:.0%} of the "
        "validation loss's fall is done.", ""]


def _kstar(text: Mapping[str, Any]) -> list[str]:
    rows = []
    for o, r in _arms(text):
        k = r["kstar"].get("all/W10")
        if k:
            rows.append((_NAMES[o], r["summary"].get("seed"), k["floor"]["n"], k["floor"]["modal"], dist(k["floor"]),
                         fmt(k["signal"]["signal_share"], 2), k["signal"]["modal"], dist(k["signal"]),
                         " / ".join(str(t["modal"]) for t in k["thirds"])))
    return ["### k* (W = 10, all parameters)", ""] + table(
        ["optimizer", "seed", "windows", "modal k* (floor rule)", "k* counts", "windows with a mode above the floor",
         "modal k* there", "k* counts there", "modal by thirds of training"], rows) + [""]


def _phases(text: Mapping[str, Any]) -> list[str]:
    rows = []
    for o, r in _arms(text):
        p = r["phases"].get("all/W10", {}).get("plateau", {})
        rows.append((_NAMES[o], r["summary"].get("seed"), p.get("valid"), fmt(p.get("peak_value")), p.get("peak_step"),
                     p.get("plateau_start"), p.get("plateau_end"), p.get("collapse_start"),
                     f"{p.get('n_rise')}/{p.get('n_plateau')}/{p.get('n_collapse')}", fmt(p.get("rise_factor"), 2),
                     fmt(p.get("collapse_factor"), 2)))
    return ["### Phases of the gap ratio (W = 10, plateau detector)", ""] + table(
        ["optimizer", "seed", "valid", "peak R", "peak step", "plateau start", "plateau end", "collapse start",
         "windows rise/plateau/collapse", "peak / first R", "last R / peak"], rows) + [""]


def _coupling(text: Mapping[str, Any]) -> list[str]:
    rows = []
    for o, r in _arms(text):
        for W in r["windows"]:
            c = r["coupling"].get(f"all/W{W}") or {}
            if "error" in c or not c:
                rows.append((_NAMES[o], r["summary"].get("seed"), W, "—", c.get("error", "—"), "", "", ""))
                continue
            ph = c.get("phases", {})
            rows.append((_NAMES[o], r["summary"].get("seed"), W, c["n"], c["peak_lag"], fmt(c["peak_r"]),
                         fmt_p(c["p_perm"]), "; ".join(f"{p} {fmt(v.get('r'), 2)} (n {v.get('n')})"
                                                        for p, v in ph.items()) if W == 10 else ""))
    return ["### Coupling with validation loss", ""] + table(
        ["optimizer", "seed", "W", "n", "peak lag (samples)", "peak r", "p (circular shift)",
         "phase-specific r at lag 0 (W = 10)"], rows) + [
        "", "Detrended by a cubic in the step as in §1; lags count samples, so a lag spans 10 steps in the "
        "dense part and more after it.", ""]


def _backbone(text: Mapping[str, Any]) -> list[str]:
    rows = []
    for o in TEXT_OPTIMIZERS:
        for b in (text.get(o) or {}).get("backbone", []):
            fr = b.get("fraction") or {}
            rows.append((_NAMES[o], (b.get("summary") or {}).get("seed"), b.get("n"), fmt(fr.get("last")),
                         fmt(b.get("null_fraction_late"))))
    if not any(r[2] for r in rows):
        return []
    return ["### Backbone share at the end", ""] + table(
        ["optimizer", "seed", "probe records", "share of the drift on v_b (last)", "a random walk's share"], rows) + [
        "", "The backbone probe of §4 (drifts from θ_0, a window of 20); the random walk's share at the same steps "
        "is its null.", ""]


def _strengths(claims: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [(c["claim"], f"**{c['verdict']}**", c.get("strength") or "—") for c in claims
            if str(c.get("key", "")).startswith("text_")]
    if not rows:
        return []
    return ["### What these tests can say", ""] + table(["claim", "verdict", "could this test refute it?"], rows) + [""]
