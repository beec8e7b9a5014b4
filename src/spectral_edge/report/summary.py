"""The findings of a report as typed facts (:class:`Facts`, what ``--json`` prints) and as
short plain-language sentences with their caveats (what the page shows at the top).

The sentences are deliberately plain and deterministic (golden-tested): a number, where it
comes from, and what it does *not* show.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .._numbers import finite_or_none as _finite
from .view import GROK_ACC, ONSET_ABS, ONSET_FACTOR, RunView, defect_onset

#: one line per k* rule, for the caveats
RULE_TEXT = {
    "floor": "argmax of σ_j/σ_(j+1) over the modes above a noise floor estimated from the lower half of the spectrum",
    "argmax": "plain argmax of σ_j/σ_(j+1) over all j (it can pick the tail, where the last σ is tiny)",
    "weighted": "argmax of the weighted score (σ_j/Σσ)·(σ_j/σ_(j+1))",
}
#: the language-model paper's bound on the gap-ratio error at d = 10·W (METHODS §3)
JL_CLAIM = 0.057
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)




def _sketch_text(sketch: dict[str, Any] | None) -> str | None:
    if not sketch:
        return None
    fam = sketch.get("family")
    if fam == "exact":
        return "exact"
    return f"{fam} d={sketch.get('dim')} seed={sketch.get('seed')}"


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
        sketch=_sketch_text(run.sketch), nonfinite_events=run.nonfinite, notes=list(run.notes),
    )


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
    else:
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
    if f.jl_windows:
        out.append(f"JL error of the gap ratio against the exact reference: median {100 * f.jl_median:.1f}%, "
                   f"max {100 * f.jl_max:.1f}% over {f.jl_windows} windows.")
    else:
        out.append(f.jl_note)
    if f.nonfinite_events:
        out.append(f"{f.nonfinite_events} non-finite sample(s) were skipped by the monitor.")
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
    if f.g23_peak_step is not None:
        out.append("In the papers, g23 peaks and falls before grokking in 12/12 runs with weight decay but also in "
                   "1/12 controls: a fall is evidence, not proof.")
    if f.grok_step is not None and f.grok_source.startswith("first"):
        out.append(f"The grok step here is the first evaluation with test accuracy ≥ {GROK_ACC:g}; "
                   "the papers' stricter rule (≥ 0.98 three times) gives a later step.")
    if f.sketch and f.sketch != "exact" and not f.jl_windows:
        out.append(f"The spectra come from a random projection ({f.sketch}); its error is not measured in this input.")
    return out
