"""The language-model claims' judges: one function per claim that reads a study's LM record
(:func:`~.measures.lm_aggregate` over seeds) and returns a :class:`~.verdicts.Claim`. The LM study
(:mod:`.claims`) and the real-text study (:mod:`.text_claims`) judge by the same functions and
constants, so one rule reads both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._numbers import finite_or_none as _finite
from .formatting import fmt, lst
from .measures import MIN_PHASE_WINDOWS
from .verdicts import NOT_REPRODUCED, NOT_TESTABLE, PARTLY, REPRODUCED, Claim

LM_SETUP = "tiny LM of §1, all parameters"
#: the papers' k* (2 for the 51M model, 3 for GPT-2): a seed agrees when its modal k* is one of them
CLAIMED_KSTAR = (2, 3)
CLAIMED_PEAK = 1.747
#: relative difference of the mean peak ratio from the claim: reproduced / partly
PEAK_REPRODUCED, PEAK_PARTLY = 0.10, 0.30
#: the papers' smallest phase-specific |r|
PHASE_R_MIN = 0.87
PLATEAU_DETECTOR = "plateau detector (R ≥ 0.85·peak)"


#: a run's modal k* is read only when at least this share of its windows has a mode above the
#: noise floor (otherwise the floor rule's k* = 1 is its default, not a mode), and then over those windows
MIN_SIGNAL_SHARE = 0.5


def kstar_words(sep: str) -> str:
    return sep.join(map(str, CLAIMED_KSTAR))


def judge_kstar(lm: Mapping[str, Any], setup: str, key: str) -> Claim:
    a = lm["aggregate"]
    modal = a["modal_kstar_all/W10"]
    shares = a.get("signal_share_all/W10") or [None] * len(modal)
    there = a.get("signal_kstar_all/W10") or [None] * len(modal)
    read = [t if t is not None else m for m, t, sh in zip(modal, there, shares)
            if m is not None and (_finite(sh) is None or sh >= MIN_SIGNAL_SHARE)]
    hits = [m in CLAIMED_KSTAR for m in read]
    untestable = len([m for m in modal if m is not None]) - len(read)
    v = (NOT_TESTABLE if not read else REPRODUCED if all(hits) else PARTLY if any(hits) else NOT_REPRODUCED)
    why = (f"modal k* of every testable seed is {kstar_words(' or ')}" if v == REPRODUCED else
           f"modal k* is {kstar_words(' or ')} in some seeds only" if v == PARTLY else
           f"the modal k* is neither {kstar_words(' nor ')} at this scale" if v == NOT_REPRODUCED else
           "no seed has a mode above the noise floor in most windows, so k* = 1 is the floor rule's default")
    if untestable and read:
        why += f"; {untestable} seed(s) not testable (most windows without a mode above the floor)"
    return Claim(key, "k* = 2 (8-layer 51M, TinyStories) and k* = 3 (GPT-2 124M)",
                 "W = 10, checkpoints every 200 steps", f"modal k* (floor rule) per seed: {lst(modal, 0)}; "
                 f"trunk: {lst(a['modal_kstar_trunk/W10'], 0)}; "
                 f"plain argmax: {lst(a['modal_kstar_argmax_all/W10'], 0)}; windows with a mode above the floor: "
                 f"{lst(shares, 2)} (modal k* there: {lst(there, 0)})",
                 setup + ", W = 10", v, why, kstar_strength(lm))


def kstar_strength(lm: Mapping[str, Any]) -> str:
    """Whether the k* test could refute the claim: only in seeds with a mode above the floor in
    most windows (elsewhere k* = 1 is the floor rule's default)."""
    shares = lm["aggregate"].get("signal_share_all/W10") or []
    n_read = sum(1 for s in shares if _finite(s) is not None and s >= MIN_SIGNAL_SHARE)
    return (f"{n_read}/{len(shares)} seeds have a mode above the noise floor in ≥ {MIN_SIGNAL_SHARE:.0%} of their "
            "windows" + ("; there any modal k* could have come out, so the test could refute the claim" if n_read else
                         "; elsewhere k* = 1 is the floor rule's default, so the test cannot refute the claim here"))


def judge_phases(lm: Mapping[str, Any], setup: str, key: str) -> Claim:
    tp = lm["aggregate"]["three_phases_W10"]
    n_ok = sum(1 for x in tp if x)
    ph = [r["phases"].get("all/W10", {}).get("plateau", {}) for r in lm["runs"]]
    rises = [bool(p.get("valid")) and (p.get("n_rise") or 0) >= MIN_PHASE_WINDOWS for p in ph]
    falls = [bool(p.get("valid")) and (p.get("n_collapse") or 0) >= MIN_PHASE_WINDOWS for p in ph]
    two = sum(1 for a_, b_ in zip(rises, falls) if a_ != b_)  # plateau plus one of rise/collapse
    no_rise = sum(1 for a_, b_ in zip(rises, falls) if b_ and not a_)
    v = REPRODUCED if tp and n_ok == len(tp) else PARTLY if n_ok or two else NOT_REPRODUCED
    desc = "; ".join(f"s{r['summary'].get('seed')}: rise {p.get('n_rise')}, plateau {p.get('n_plateau')}, "
                     f"collapse {p.get('n_collapse')} windows" for r, p in zip(lm["runs"], ph))
    first = [r.get("first_window", {}).get("10", {}) for r in lm["runs"]]
    why = (f"{n_ok}/{len(tp)} seeds show ≥ {MIN_PHASE_WINDOWS} windows of rise and ≥ {MIN_PHASE_WINDOWS} of "
           "collapse around the plateau")
    if no_rise:
        why += (f"; {no_rise} show plateau and collapse but no rise: the first full window ends at step "
                f"{lst([f.get('step') for f in first], 0)}, when validation loss is already down to "
                f"{lst([f.get('val_loss') for f in first], 2)} "
                f"(from {lst([f.get('initial') for f in first], 2)})")
    return Claim(key, "the gap ratio rises, plateaus and collapses (three phases)",
                 "W = 10 over the whole run", desc, f"{setup}, W = 10, {PLATEAU_DETECTOR}", v, why, phases_strength(lm))


#: a seed's rise is inside the windows when its first full W = 10 window ends before the validation
#: loss has fallen this share of the way from its initial to its final value (fixed before the
#: real-text runs were scored)
RISE_VISIBLE = 0.5


def loss_fall_done(run: Mapping[str, Any]) -> float | None:
    """How far (0–1) a run's validation loss has fallen from its initial to its final value when
    its first full W = 10 window ends (None when unknown)."""
    f = (run.get("first_window") or {}).get("10") or {}
    v0, v1 = _finite(f.get("initial")), _finite(f.get("val_loss"))
    final = _finite((run.get("val_convergence") or {}).get("final"))
    if v0 is None or v1 is None or final is None or v0 == final:
        return None
    return (v0 - v1) / (v0 - final)


def phases_strength(lm: Mapping[str, Any]) -> str:
    """Whether the phases test could refute the claim: a rise can be seen only where the first
    window comes early on the loss curve, and a collapse only if the run goes on learning."""
    fallen = [loss_fall_done(r) for r in lm["runs"]]
    early = sum(1 for f in fallen if f is not None and f <= RISE_VISIBLE)
    mid = [(m or {}).get("drop") for m in lm["aggregate"].get("val_mid") or []]
    falling = sum(1 for d in mid if _finite(d) is not None and d > 0)
    pct = lst([100 * f if f is not None else None for f in fallen], 0)
    drops = lst([100 * d if _finite(d) is not None else None for d in mid], 1)
    return (f"the first full window ends when validation loss has fallen {pct}% of the way to its final value (a rise "
            f"can be seen where ≤ {RISE_VISIBLE:.0%}: {early}/{len(fallen)} seeds); validation loss still falls by "
            f"{drops}% from mid-run to the end ({falling}/{len(mid)} seeds). "
            + ("The test could refute the claim" if fallen and early == len(fallen) and falling == len(mid) else
               "The test could refute it in some seeds only" if early else
               "The rise is over before the first window, so the test cannot refute its rise here"))


#: the papers' model for the peak ratio (8 layers, d = 512)
PAPER_LM_PARAMETERS = 51_000_000


def _peak_verdict(value: float | None) -> tuple[str, float | None]:
    rel = abs(value - CLAIMED_PEAK) / CLAIMED_PEAK if value is not None else None
    v = (NOT_REPRODUCED if rel is None else REPRODUCED if rel <= PEAK_REPRODUCED else PARTLY if rel <= PEAK_PARTLY
         else NOT_REPRODUCED)
    return v, rel


def judge_peak(lm: Mapping[str, Any], setup: str, key: str) -> Claim:
    a = lm["aggregate"]
    pk_m, pk_sd = a["peak_ratio_W10_mean"], a["peak_ratio_W10_sd"]
    v, rel = _peak_verdict(pk_m)
    null = _finite(a.get("null_peak_ratio_W10"))
    null_v, _ = _peak_verdict(null)
    lo, hi = CLAIMED_PEAK * (1 - PEAK_REPRODUCED), CLAIMED_PEAK * (1 + PEAK_REPRODUCED)
    n_par = a.get("n_parameters")
    scale = (f"at 1/{PAPER_LM_PARAMETERS / n_par:.0f} of the papers' 51M parameters" if n_par else
             "at a much smaller scale than the papers'")
    if null is not None and null_v != NOT_REPRODUCED:
        v = NOT_TESTABLE
    why = "n/a" if rel is None else (
        f"mean peak differs by {100 * rel:.0f}% (≤ {PEAK_REPRODUCED:.0%}: reproduced, ≤ {PEAK_PARTLY:.0%}: partly); "
        f"{len([x for x in a['peak_ratio_W10'] if x is not None])} seeds {scale}")
    strength = ("no null computed, so the test's strength is unknown" if null is None else
                f"an isotropic trajectory with no edge peaks at {null:.3f} ({null_v}), so the rule would pass without "
                "an edge and the test cannot refute the claim" if null_v != NOT_REPRODUCED else
                f"an isotropic trajectory with no edge peaks at {null:.3f} ({null_v}), so the test tells an edge from "
                f"none and could refute the claim; it does not tell 1.747 from any value in {lo:.2f}–{hi:.2f}")
    return Claim(key, f"peak gap ratio {CLAIMED_PEAK}", "W = 10",
                 f"peak R per seed: {lst(a['peak_ratio_W10'], 3)} "
                 f"(mean {fmt(pk_m)}" + (f" ± {fmt(pk_sd)})" if pk_sd is not None else ")")
                 + ("" if null is None else f"; isotropic null {null:.3f}"),
                 setup + ", W = 10", v, why, strength)


def judge_phase_r(lm: Mapping[str, Any], setup: str, key: str) -> Claim:
    pr = lm["aggregate"]["phase_r_W10"]
    cells, hits_n, tot = [], 0, 0
    for p in ("rise", "plateau", "collapse"):
        vals = pr[p]
        cells.append(f"{p} {lst(vals, 2)}")
        for x in vals:
            if _finite(x) is not None:
                tot += 1
                hits_n += abs(float(x)) >= PHASE_R_MIN
    v = REPRODUCED if tot and hits_n == tot else PARTLY if hits_n else NOT_REPRODUCED
    why = f"{hits_n}/{tot} (seed, phase) cells reach |r| ≥ {PHASE_R_MIN}"
    ns = [n for p in ("rise", "plateau", "collapse") for n in (lm["aggregate"].get("phase_n_W10") or {}).get(p, [])]
    n_min = min_windows_for_r(PHASE_R_MIN)
    able = sum(1 for n in ns if isinstance(n, int) and n >= n_min)
    strength = (f"|r| = {PHASE_R_MIN} is significant at 5% from n ≥ {n_min} windows (Fisher z), and {able}/{len(ns)} "
                f"(seed, phase) cells have that many (windows per cell: {lst(ns, 0)}): "
                + ("only those could refute the claim" if able else "none can, so the test cannot refute it here"))
    return Claim(key, "phase-specific |r| with validation loss 0.87–0.94", "W = 10, per phase",
                 "r per seed — " + "; ".join(cells), setup + ", W = 10, lag 0, raw series", v, why, strength)


def min_windows_for_r(r: float, z: float = 1.96) -> int:
    """The fewest points at which a correlation of ``r`` is significant (two-sided 5% with z =
    1.96), by Fisher's transform: atanh(r)·√(n − 3) > z."""
    import math

    return int(math.floor((z / math.atanh(abs(r))) ** 2 + 3)) + 1


def judge_lag_flip(lm: Mapping[str, Any], setup: str, key: str) -> Claim:
    fl = lm["aggregate"]["flip"]
    lags = [(f.get("peak_lags", {}).get("10"), f.get("peak_lags", {}).get("20")) for f in fl]
    pat = [f.get("paper_pattern") for f in fl]
    anyflip = [f.get("flip_10_20") for f in fl]
    v = (REPRODUCED if pat and all(pat) else PARTLY if any(pat) or any(anyflip) else NOT_REPRODUCED)
    return Claim(key, "peak lag negative at W = 10, positive at W = 20 (lag flip)", "gap ratio vs "
                 "validation loss, cubic detrend", "peak lag (W = 10, W = 20) per seed: "
                 + "; ".join(f"({a_}, {b_})" for a_, b_ in lags), setup, v,
                 f"{sum(1 for x in pat if x)}/{len(pat)} seeds show the paper's "
                 f"(−, +) pattern; {sum(1 for x in anyflip if x)}/{len(anyflip)} show any sign change",
                 lag_flip_strength(lm))


#: a coupling whose circular-shift p is below this has a peak lag whose sign means something
COUPLING_P = 0.05


def lag_flip_strength(lm: Mapping[str, Any]) -> str:
    """Whether the lag-flip test could refute the claim: only in seeds whose couplings at W = 10
    and W = 20 are both significant (elsewhere the peak lag's sign is noise)."""
    p = lm["aggregate"].get("coupling_p_perm") or {}
    p10, p20 = p.get("10") or [], p.get("20") or []
    both = sum(1 for a, b in zip(p10, p20) if _finite(a) is not None and _finite(b) is not None
               and a < COUPLING_P and b < COUPLING_P)
    return (f"a peak lag's sign means something where the coupling is significant; circular-shift p per seed "
            f"W = 10: {lst(p10, 3)}, W = 20: {lst(p20, 3)}; {both}/{len(p10)} seeds are below {COUPLING_P} at both W, "
            + ("so those seeds could refute the flip" if both else "so the test cannot refute the claim here"))


#: the thesis' modal k* under Muon and under AdamW (same model)
MUON_KSTAR, ADAMW_KSTAR = 1, 2


def optimizer_vote(mm: Mapping[str, Any]) -> str:
    if mm["muon"] == MUON_KSTAR and mm["adamw"] == ADAMW_KSTAR:
        return REPRODUCED
    return PARTLY if mm["muon"] < mm["adamw"] else NOT_REPRODUCED


def combine_votes(votes: list[str]) -> str:
    """One verdict from the per-task (or per-seed) optimizer votes: not testable without a vote,
    reproduced when every vote is, partly when one is at least partly, else not reproduced."""
    if not votes:
        return NOT_TESTABLE
    if all(x == REPRODUCED for x in votes):
        return REPRODUCED
    return PARTLY if any(x in (REPRODUCED, PARTLY) for x in votes) else NOT_REPRODUCED
