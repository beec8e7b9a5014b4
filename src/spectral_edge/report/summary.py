"""The findings of a report as typed facts (:class:`Facts`, what ``--json`` prints) and as
short plain-language sentences with their caveats (what the page shows at the top).

The sentences are deliberately plain and deterministic (golden-tested): a number, where it
comes from, and what it does *not* show.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .._numbers import finite_or_none as _finite
from .view import GROK_ACC, ONSET_ABS, ONSET_FACTOR, PHASES, RunView, defect_onset

#: the phase rule's plateau level and flatness test, as the sentences quote them
PHASE_FRAC, PHASE_FLAT_RHO = PHASES.frac, PHASES.flat_rho

#: one line per k* rule, for the caveats
RULE_TEXT = {
    "floor": "argmax of σ_j/σ_(j+1) over the modes above a noise floor estimated from the lower half of the spectrum",
    "argmax": "plain argmax of σ_j/σ_(j+1) over all j (it can pick the tail, where the last σ is tiny)",
    "weighted": "argmax of the weighted score (σ_j/Σσ)·(σ_j/σ_(j+1))",
}
#: the language-model paper's bound on the gap-ratio error at d = 10·W (METHODS §3)
JL_CLAIM = 0.057
#: the papers' backbone share of the displacement for language models with AdamW (METHODS §6)
BACKBONE_CLAIM = "60–80%"
DEFECT_CAVEAT = ("The defect onset is necessary but not sufficient for grokking: in the authors' own runs, "
                 "operations that never grok also cross it (around step 2000), so an alarm means "
                 "'look here', not 'this run will grok'.")


@dataclass(frozen=True)
class Facts:
    """What a report found, as plain values (``to_dict`` is JSON-ready)."""

    label: str
    source: str
    inputs: list[str]
    window: int | None
    windows: list[int]
    group: str
    groups: list[str]
    n_windows: int
    first_step: int | None
    last_step: int | None
    kstar_rule: str | None
    k_star_counts: dict[str, int]
    modal_k_star: int | None
    modal_share: float | None
    peak_ratio: float | None
    peak_step: int | None
    phases: dict[str, Any] | None
    grok_step: int | None
    grok_source: str
    final_test_acc: float | None
    alarm_steps: list[int]
    alarm_detector: str | None
    alarm_reason: str | None
    warning_step: int | None
    warning_source: str
    lead: int | None
    warning_before_grok: bool | None
    defect_records: int
    defect_onset_step: int | None
    defect_max: float | None
    g23_peak_step: int | None
    g23_decline: float | None
    g23_decline_until: int | None
    jl_windows: int
    jl_median: float | None
    jl_max: float | None
    jl_note: str
    sketch: str | None
    nonfinite_events: int
    notes: list[str] = field(default_factory=list)
    modes: dict[str, Any] | None = None  # functional modes (:func:`modes_facts`), None when the run has none
    grokking: bool = True  # the page is about grokking (:attr:`~.view.RunView.grokking`)
    # how the spectra were made (:class:`spectral_edge.io.run.RunSetup`), shown in the page's header
    every: Any = None
    spacing: float | None = None
    n_parameters: int | None = None
    tensors: str | None = None
    config_recorded_in: str | None = None
    # the validation loss and its lag coupling with R (None when the run has no validation loss)
    val_column: str | None = None
    val_first: float | None = None
    val_last: float | None = None
    val_min: float | None = None
    val_min_step: int | None = None
    coupling: dict[str, Any] | None = None
    coupling_note: str | None = None
    # the backbone probe: share of the displacement along the backbone at the last probe, and its range
    backbone_probes: int = 0
    backbone_last: float | None = None
    backbone_last_step: int | None = None
    backbone_min: float | None = None
    backbone_max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)




def summary_facts(run: RunView) -> Facts:
    """The facts of one run (see :class:`Facts`)."""
    sed = run.sed
    steps = sed["step"].to_numpy(float) if len(sed) else np.array([])
    counts: Counter[int] = Counter()
    if "k_star" in sed.columns:
        counts = Counter(int(k) for k in sed["k_star"].dropna())
    modal = counts.most_common(1)[0][0] if counts else None
    share = counts[modal] / sum(counts.values()) if counts else None

    ph = run.phases
    final_acc = _finite(run.data.summary.get("final_test_acc"))
    for col in ("test_acc", "val_acc"):
        if final_acc is None and col in run.evals.columns and run.evals[col].notna().any():
            final_acc = float(run.evals[col].dropna().iloc[-1])

    lead = None if run.grok_step is None or run.warning_step is None else run.grok_step - run.warning_step
    d = run.defect
    onset = defect_onset(d["step"], d["defect"]) if len(d) else None
    dmax = _finite(d["defect"].max()) if len(d) else None

    g_peak = g_decline = g_until = None
    gs, gv = run.series("g23")
    ok = np.isfinite(gv)
    if ok.sum() >= 3:  # a peak and a fall need a few windows
        i = int(np.argmax(np.where(ok, gv, -np.inf)))
        g_peak = int(gs[i])
        after = ok & (gs >= gs[i])
        if run.grok_step is not None:
            after &= gs <= run.grok_step
        if after.sum() > 1:
            j = int(np.nonzero(after)[0][-1])
            g_until = int(gs[j])
            g_decline = float(gv[i] / gv[j]) if gv[j] > 0 else math.inf

    jl = run.jl
    jl_vals = jl["jl_error"].to_numpy(float) if jl is not None and len(jl) else np.array([])
    jl_vals = jl_vals[np.isfinite(jl_vals)]
    return Facts(
        label=run.label, source=str(run.source), inputs=sorted(str(p) for p in run.files.values()),
        window=run.window, windows=list(run.windows), group=run.group, groups=list(run.groups),
        n_windows=int(len(sed)), first_step=int(steps.min()) if len(steps) else None,
        last_step=int(steps.max()) if len(steps) else None, kstar_rule=run.kstar_rule,
        k_star_counts={str(k): v for k, v in sorted(counts.items())}, modal_k_star=modal, modal_share=share,
        peak_ratio=ph.peak_ratio if ph else None, peak_step=ph.peak_step if ph else None,
        phases=ph.to_dict() if ph else None, grok_step=run.grok_step, grok_source=run.grok_source,
        final_test_acc=final_acc, alarm_steps=[a.step for a in run.alarms],
        alarm_detector=run.alarms[0].detector if run.alarms else None,
        alarm_reason=run.alarms[0].reason if run.alarms else None,
        warning_step=run.warning_step, warning_source=run.warning_source, lead=lead,
        warning_before_grok=None if lead is None else lead > 0, defect_records=int(len(d)),
        defect_onset_step=onset, defect_max=dmax, g23_peak_step=g_peak, g23_decline=g_decline,
        g23_decline_until=g_until, jl_windows=int(len(jl_vals)),
        jl_median=float(np.median(jl_vals)) if len(jl_vals) else None,
        jl_max=float(jl_vals.max()) if len(jl_vals) else None, jl_note=run.jl_note,
        sketch=run.setup.sketch_text, nonfinite_events=run.nonfinite, notes=list(run.notes),
        modes=modes_facts(run), grokking=run.grokking, every=_plain(run.setup.every), spacing=run.setup.spacing,
        n_parameters=run.setup.n_parameters, tensors=run.setup.selection_text,
        config_recorded_in=run.setup.recorded_in, **_validation_facts(run), coupling=coupling_facts(run.coupling),
        coupling_note=run.coupling_note, **_backbone_facts(run),
    )


def _backbone_facts(run: RunView) -> dict[str, Any]:
    """The backbone probe's ``fraction`` (a²/‖Δθ‖² of the latest drift): last value and range."""
    b = run.backbone
    if b is None or "fraction" not in b.columns:
        return {}
    f = b[["step", "fraction"]].dropna()
    if not len(f):
        return {}
    v = f["fraction"].to_numpy(float)
    return {"backbone_probes": int(len(f)), "backbone_last": float(v[-1]), "backbone_last_step": int(f["step"].iloc[-1]),
            "backbone_min": float(v.min()), "backbone_max": float(v.max())}


def _plain(v: Any) -> Any:
    """A recorded value as JSON-ready plain data (a schedule's tuples become lists)."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v if v is None or isinstance(v, (int, float, str, bool)) else str(v)


def _validation_facts(run: RunView) -> dict[str, Any]:
    """First, last and lowest value of the validation loss the coupling reads (the run model's choice)."""
    y = run.validation
    if y is None or not len(y):
        return {}
    i = int(np.argmin(y.values))
    return {"val_column": y.name, "val_first": float(y.values[0]), "val_last": float(y.values[-1]),
            "val_min": float(y.values[i]), "val_min_step": int(y.steps[i])}


def coupling_facts(c: Any) -> dict[str, Any] | None:
    """The lag coupling (:class:`~spectral_edge.analysis.coupling.CouplingResult`) as plain values:
    the record of ``spectral-edge coupling`` plus r(ℓ) for every lag and the per-phase correlations."""
    if c is None:
        return None
    out = {k: v for k, v in c.to_dict().items() if not k.startswith("granger")}
    out["lags"] = list(c.correlation.lags)
    out["r"] = [_finite(float(r)) for r in c.correlation.r]
    out["phases"] = [{"phase": p.phase, "n": p.n, "r": _finite(p.r_raw), "r_detrended": _finite(p.r_detrended),
                      "p": _finite(p.p_raw)} for p in c.phases]
    return out


# ---------------------------------------------------------------------------- functional modes
#: the edge's mean F is "about the same" as the random directions' when within this fraction of it
NULL_SAME = 0.10
#: the papers' numbers the per-run sentences quote (METHODS §7)
PAPER_MUL_RATIO, PAPER_X2Y2_GAIN, PAPER_MULTITASK = 5.9, 4.0, 2.3


def _num(v: Any) -> float | None:
    return _finite(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def modes_facts(run: RunView) -> dict[str, Any] | None:
    """The functional modes of the run as plain values: where they come from, the choices
    (``window``, ``centred``, ``epsilon``), the primary ``basis`` and its ``uniform`` level, one
    row per direction (``direction``, ``role``, ``sigma``, ``best_basis``, its ``omega``, ``F`` and
    ``ratio_to_uniform``, and ``omega_basis``/``F_basis`` in the primary basis) and the ``summary``
    of the analysis (the claims computed for this run); ``{"error": …}`` when they could not be
    computed; None when the run has none."""
    if run.modes is None:
        return {"error": run.modes_error} if run.modes_error else None
    from .view import direction_label

    rec, basis = run.modes.record, run.modes.basis
    cfg = rec.get("config") or {}
    rows = []
    for d in run.modes.directions:
        bases = d.get("bases") or {}
        best = bases.get(d.get("best_basis")) or {}
        prim = bases.get(basis) or {} if basis else {}
        rows.append({"direction": direction_label(d), "role": d.get("role"), "sigma": _num(d.get("sigma")),
                     "best_basis": d.get("best_basis"), "omega": best.get("omega"), "F": _num(best.get("F")),
                     "ratio_to_uniform": _num(best.get("ratio_to_uniform")), "omega_basis": prim.get("omega"),
                     "F_basis": _num(prim.get("F"))})
    return {"origin": run.modes.origin, "op": rec.get("op"), "modulus": rec.get("modulus"), "step": rec.get("step"),
            "window": cfg.get("window"), "centred": cfg.get("centred"), "epsilon": cfg.get("epsilon"),
            "basis": basis, "uniform": _num(run.modes.summary.get("uniform")), "directions": rows,
            "summary": dict(run.modes.summary)}


def _f3(v: Any) -> str:
    f = _num(v)
    return "–" if f is None else f"{f:.3f}"


def _omegas(xs: Any) -> str:
    return ", ".join("–" if x is None else str(x) for x in (xs or []))


def _null_sentence(s: Mapping[str, Any], basis: str) -> list[str]:
    """The edge against its nulls, with the rule of :data:`NULL_SAME`."""
    e, n = s.get("edge") or {}, s.get("nulls") or {}
    eF, bF, rF, rmax = (_num(e.get("F_mean")), _num(n.get("bulk_F_mean")), _num(n.get("random_F_mean")),
                        _num(n.get("random_F_max")))
    if eF is None:
        return []
    out = [f"In the {basis} basis the edge's response puts on average F = {eF:.3f} of its power at one frequency"
           + (f", the bulk's {bF:.3f}" if bF is not None else "")
           + (f", random directions' {rF:.3f} (max {rmax:.3f})" if rF is not None else "")
           + f"; a flat spectrum gives {_f3(s.get('uniform'))}."]
    if rF is None or rF <= 0:
        out.append("No random directions were computed, so nothing says whether this concentration is special to "
                   "the edge.")
    elif rmax is not None and eF > rmax:
        out.append(f"The edge concentrates more than every random direction ({eF / rF:.2f}× their mean): the mode "
                   "belongs to the edge directions, not to any nudge of this model.")
    elif abs(eF / rF - 1) <= NULL_SAME:
        out.append(f"The edge concentrates no more than random directions do ({eF / rF:.2f}× their mean, within "
                   f"{NULL_SAME:.0%}): the peak is a property of the model, which any nudge of its attention weights "
                   "shows, not of the edge directions.")
    elif eF > rF:
        out.append(f"The edge is above the random directions' mean ({eF / rF:.2f}×) but not above every random "
                   f"direction (max {rmax:.3f}): a weak difference.")
    else:
        out.append(f"The edge concentrates less than random directions do ({eF / rF:.2f}× their mean).")
    return out


def modes_sentences(m: Mapping[str, Any] | None) -> list[str]:
    """The functional modes of one run (:func:`modes_facts`) in plain sentences: the edge against
    its nulls, then the claims of METHODS §7 that apply to the run's operations."""
    if not m or m.get("error"):
        return []
    s = m.get("summary") or {}
    basis = m.get("basis") or "primary"
    out = [f"Functional modes at step {m.get('step')}: the last {m.get('window')} attention updates"
           f"{', mean-centred,' if m.get('centred') else ' (not centred)'} give the directions v1, v2, …; the model is "
           f"nudged by ε = {m.get('epsilon')}·‖θ_attn‖ along each and the change of its read-out state over every "
           "pair (a, b) is folded into a Fourier spectrum."]
    out += _null_sentence(s, basis)
    if "addition" in s:
        a = s["addition"]
        out.append(f"Addition: v1–v3 peak at ω = {_omegas(a.get('omegas'))} in the add basis — "
                   + ("one shared frequency, as the paper says." if a.get("one_omega") else
                      "not one shared frequency (the paper: one)."))
    if "multiplication" in s:
        x = s["multiplication"]
        r = _num(x.get("dlog_over_mul"))
        out.append(f"Multiplication: the edge's F is {_f3(x.get('dlog_F_mean'))} in the discrete-log basis and "
                   f"{_f3(x.get('mul_F_mean'))} in the raw-product basis: "
                   + (f"{r:.1f}×" if r is not None else "no ratio") + f" (the paper: {PAPER_MUL_RATIO}×).")
    if "subtraction" in s:
        x = s["subtraction"]
        out.append(f"Subtraction: the edge peaks at ω = {_omegas(x.get('omegas'))} in the sub basis "
                   f"({x.get('n_omegas')} distinct), {_num(x.get('modes_mean')) or 0:.1f} effective frequencies per "
                   "direction (the paper: a small family of modes).")
    x = s.get("x2y2") or {}
    if "r2" in x:
        r2 = x["r2"]
        gain = _num(x.get("cross_gain"))
        out.append(f"x² + y²: ridge R² of the edge's response on additive Fourier features {_f3(r2.get('add'))}, "
                   f"discrete-log {_f3(r2.get('dlog'))}, both {_f3(r2.get('combined'))}, cross terms alone "
                   f"{_f3(r2.get('cross'))}, all {_f3(r2.get('full'))}: the cross terms add "
                   f"{_f3(x.get('cross_added'))}" + (f" ({gain:.2f}× the combined R²)" if gain is not None else "")
                   + f"; the paper speaks of a {PAPER_X2Y2_GAIN:g}× boost (in-sample R², which grows with the number "
                   "of features even for noise).")
    if "multitask" in s:
        t = s["multitask"]
        out.append(f"Multitask ({'+'.join(t.get('ops') or [])}): the edge's additive frequency is "
                   f"ω = {t.get('add_omega')}; the edge's additive share there is {_f3(t.get('add_share_at_omega'))} "
                   f"(bulk {_f3(t.get('bulk_share_at_omega'))}, random {_f3(t.get('random_share_at_omega'))}). The "
                   f"paper's {PAPER_MULTITASK}× compares this share with a single-task x² + y² model's at the same ω "
                   "(spectral-edge reproduce modes computes it).")
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def summary_sentences(f: Facts) -> list[str]:
    """The findings, one plain sentence each, in reading order."""
    out: list[str] = []
    if f.n_windows:
        w = f"W = {f.window} updates" if f.window is not None else "the recorded size"
        span = f"step {f.first_step}" if f.first_step == f.last_step else f"steps {f.first_step} to {f.last_step}"
        out.append(f"{f.n_windows} window{'s' if f.n_windows != 1 else ''} of {w} (group '{f.group}'), {span}.")
        if f.modal_k_star is not None:
            others = ", ".join(f"k* = {k}: {v}" for k, v in f.k_star_counts.items() if int(k) != f.modal_k_star)
            out.append(f"The spectral edge sits at k* = {f.modal_k_star} in {_pct(f.modal_share or 0)} of windows"
                       + (f" ({others})." if others else "."))
        if f.peak_ratio is not None:
            out.append(f"The gap ratio peaks at R = {f.peak_ratio:.3f} at step {f.peak_step}.")
            ph = f.phases or {}
            if f.n_windows >= 3 and ph:
                rise = (f"rise until step {ph['plateau_start']}" if ph["rise"] else "no rise recorded (the plateau starts at the first window)")
                coll = (f"collapse after step {ph['plateau_end']}" if ph["collapse"] else "no collapse recorded (the plateau lasts to the last window)")
                plateau = (f"plateau at step {ph['plateau_start']} only" if ph["plateau_start"] == ph["plateau_end"]
                           else f"plateau from step {ph['plateau_start']} to step {ph['plateau_end']}")
                if ph.get("plateau_flat") is False:
                    way = "rises" if ph["plateau_trend"] > 0 else "falls"
                    out.append(f"Phases: the plateau rule (R ≥ {PHASE_FRAC:g} × peak) picks steps {ph['plateau_start']} "
                               f"to {ph['plateau_end']}, but R {way} steadily through that span (Spearman ρ = "
                               f"{ph['plateau_trend']:.2f}, |ρ| ≥ {PHASE_FLAT_RHO:g}): it is not a plateau, and the "
                               f"page draws it as '{'still rising' if way == 'rises' else 'falling'}'; {rise}; {coll}.")
                else:
                    out.append(f"Phases: {rise}; {plateau}; {coll}.")
            if ph.get("collapse_event_step") is not None:
                out.append(f"After the peak, R first falls below {ph['collapse_tau']:.2f} at step {ph['collapse_event_step']} "
                           "(collapse event).")
        else:
            out.append("The gap ratio is missing in every window, so there is no peak and no phases.")
    else:
        out.append("No spectral windows in this input: the spectrum, edge and g23 panels are empty.")

    if f.grok_step is not None:
        out.append(f"Grokking at step {f.grok_step} ({f.grok_source}).")
    elif not f.grokking:
        pass  # nothing to grok: no accuracy in this run, so no grok sentence
    elif f.grok_source == "no evaluation data":
        out.append("No evaluation data, so no grok step is known.")
    else:
        out.append(f"No grok step: {f.grok_source}.")

    if f.warning_step is not None:
        if f.alarm_steps and f.warning_step == f.alarm_steps[0]:
            what = f"The first alarm fired at step {f.warning_step}"
        else:
            what = f"The early warning ({f.warning_source}) is at step {f.warning_step}"
        if f.lead is None:
            out.append(f"{what}; with no grok step there is no lead to measure.")
        elif f.lead > 0:
            out.append(f"{what}, {f.lead} steps before grokking.")
        elif f.lead == 0:
            out.append(f"{what}, the grok step itself (lead 0): no early warning.")
        else:
            out.append(f"{what}, {-f.lead} steps after grokking: too late to warn.")
        if f.alarm_steps and f.warning_step != f.alarm_steps[0]:
            out.append(f"The first alarm event is at step {f.alarm_steps[0]}.")
        if len(f.alarm_steps) > 1:
            out.append(f"{len(f.alarm_steps)} alarm events in all (steps {', '.join(map(str, f.alarm_steps[:6]))}"
                       + (", …)." if len(f.alarm_steps) > 6 else ")."))
    elif f.grokking:
        out.append("No alarm fired in this run" + (f", so grokking at step {f.grok_step} came without warning."
                                                  if f.grok_step is not None else "."))

    if f.defect_records:
        if f.defect_onset_step is not None:
            out.append(f"The commutator defect crosses the paper's onset rule (D > {ONSET_FACTOR:g} × baseline and "
                       f"D > {ONSET_ABS:g}) at step {f.defect_onset_step}.")
        else:
            out.append(f"The commutator defect never crosses the paper's onset rule (max D = {f.defect_max:.3g}).")
    if f.g23_peak_step is not None:
        if f.g23_decline is not None and f.g23_decline >= 2:
            fall = "more than 1000" if not math.isfinite(f.g23_decline) else f"{f.g23_decline:.0f}"
            out.append(f"g23 = σ_2² − σ_3² peaks at step {f.g23_peak_step}, then falls {fall}× by step {f.g23_decline_until}.")
        else:
            out.append(f"g23 = σ_2² − σ_3² peaks at step {f.g23_peak_step} and does not fall markedly afterwards.")
    out += _validation_sentences(f)
    if f.backbone_last is not None:
        out.append(f"Backbone: the top direction of the drift from the reference holds {_pct(f.backbone_last)} of the "
                   f"displacement at step {f.backbone_last_step} ({_pct(f.backbone_min)}–{_pct(f.backbone_max)} over "
                   f"{f.backbone_probes} probes; the papers: {BACKBONE_CLAIM} for language models trained with AdamW).")
    if f.jl_windows:
        out.append(f"JL error of the gap ratio against the exact reference: median {100 * f.jl_median:.1f}%, "
                   f"max {100 * f.jl_max:.1f}% over {f.jl_windows} windows.")
    else:
        out.append(f.jl_note)
    if f.nonfinite_events:
        out.append(f"{f.nonfinite_events} non-finite sample(s) were skipped by the monitor.")
    if f.modes and f.modes.get("error"):
        out.append(f"Functional modes could not be computed: {f.modes['error']}")
    elif f.modes:
        e = (f.modes["summary"].get("edge") or {}).get("F_mean")
        r = (f.modes["summary"].get("nulls") or {}).get("random_F_mean")
        out.append(f"Functional modes (section below): in the {f.modes['basis']} basis the edge's mean top-1 power "
                   f"share is {_f3(e)}" + (f", random directions' {_f3(r)}." if _num(r) is not None else "."))
    return out


def _validation_sentences(f: Facts) -> list[str]:
    """The validation loss and its lag coupling with R, when the run has them."""
    out: list[str] = []
    if f.val_column is None:
        return out
    out.append(f"Validation loss ({f.val_column}): {f.val_first:.4g} at the first evaluation, {f.val_last:.4g} at the "
               f"last, lowest {f.val_min:.4g} at step {f.val_min_step}.")
    c = f.coupling
    if c is None:
        if f.coupling_note:
            out.append(f.coupling_note[0].upper() + f.coupling_note[1:] + ".")
        return out
    lag, r = c.get("peak_lag"), _num(c.get("peak_r"))
    if lag is None or r is None:
        out.append(f"The lag correlation of R with {f.val_column} could not be computed ({c.get('n')} aligned points).")
        return out
    who = ("R leads the loss" if lag > 0 else "the loss leads R" if lag < 0 else "no lead either way")
    p = _num(c.get("p_perm"))
    steps = f" ≈ {abs(lag) * f.spacing:g} steps" if f.spacing and lag else ""
    out.append(f"Coupling: detrended R and {f.val_column} are most anti-correlated at lag {lag:+d} sample"
               f"{'s' if abs(lag) != 1 else ''} of R{steps} (r = {r:.2f}; {who}; circular-shift p = "
               + (f"{p:.3f}" if p is not None else "–") + f", {c.get('n')} aligned points).")
    ph = [x for x in c.get("phases") or [] if x.get("n", 0) >= 3 and x.get("r") is not None]
    if ph:
        out.append("Lag-0 correlation of R with the loss within each phase: "
                   + ", ".join(f"{x['phase']} r = {x['r']:.2f} (n = {x['n']})" for x in ph) + ".")
    return out


def summary_caveats(f: Facts) -> list[str]:
    """What the findings do not show."""
    out: list[str] = []
    if f.kstar_rule:
        out.append(f"k* rule '{f.kstar_rule}': {RULE_TEXT.get(f.kstar_rule, 'as recorded in the input')}. "
                   "Another rule can put the edge elsewhere.")
    elif f.n_windows:
        out.append("The k* rule is not recorded in this input.")
    if f.n_windows:
        out.append(f"Windows are right-aligned: the value at a step describes the {f.window or 'W'} updates ending there, "
                   "so a change shows up to W samples after it happened.")
    if 0 < f.n_windows < 5:
        out.append(f"Only {f.n_windows} window{'s' if f.n_windows != 1 else ''}: too few to read phases from.")
    if f.phases and f.phases.get("method") and f.n_windows >= 3:
        out.append(f"Phases: {f.phases['method']}.")
    if f.defect_records or f.alarm_steps or f.warning_step is not None:
        out.append(DEFECT_CAVEAT)
    if f.g23_peak_step is not None and f.grokking:
        out.append("In the papers, g23 peaks and falls before grokking in 12/12 runs with weight decay but also in "
                   "1/12 controls: a fall is evidence, not proof.")
    if f.grok_step is not None and f.grok_source.startswith("first"):
        out.append(f"The grok step here is the first evaluation with test accuracy ≥ {GROK_ACC:g}; "
                   "the papers' stricter rule (≥ 0.98 three times) gives a later step.")
    if f.coupling is not None:
        out.append("Coupling lags count samples of R (one window per sample), not optimizer steps; both series are detrended by a "
                   f"degree-{f.coupling.get('degree')} polynomial first, and the p-value is a circular-shift "
                   f"permutation test ({f.coupling.get('n_perm')} shifts). A correlation, not a cause.")
    if f.sketch and f.sketch != "exact" and not f.jl_windows:
        out.append(f"The spectra come from a random projection ({f.sketch}); its error is not measured in this input.")
    return out
