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
                 setup + ", W = 10", v, why)


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
                 "W = 10 over the whole run", desc, f"{setup}, W = 10, {PLATEAU_DETECTOR}", v, why)


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
        + ("no null computed" if null is None else
           f"an isotropic trajectory with no edge peaks at {null:.3f} ({null_v}), so the test tells an edge from "
           f"none; it does not tell 1.747 from any value in {lo:.2f}–{hi:.2f}")
        + f"; {len([x for x in a['peak_ratio_W10'] if x is not None])} seeds {scale}")
    return Claim(key, f"peak gap ratio {CLAIMED_PEAK}", "W = 10",
                 f"peak R per seed: {lst(a['peak_ratio_W10'], 3)} "
                 f"(mean {fmt(pk_m)}" + (f" ± {fmt(pk_sd)})" if pk_sd is not None else ")")
                 + ("" if null is None else f"; isotropic null {null:.3f}"),
                 setup + ", W = 10", v, why)


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
    if ns:
        n_min = min_windows_for_r(PHASE_R_MIN)
        able = sum(1 for n in ns if isinstance(n, int) and n >= n_min)
        why += (f"; power: |r| = {PHASE_R_MIN} is significant at 5% from n ≥ {n_min} windows (Fisher z), and "
                f"{able}/{len(ns)} cells have that many (windows per cell: {lst(ns, 0)})")
    return Claim(key, "phase-specific |r| with validation loss 0.87–0.94", "W = 10, per phase",
                 "r per seed — " + "; ".join(cells), setup + ", W = 10, lag 0, raw series", v, why)


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
                 f"(−, +) pattern; {sum(1 for x in anyflip if x)}/{len(anyflip)} show any sign change")


#: the thesis' modal k* under Muon and under AdamW (same model)
MUON_KSTAR, ADAMW_KSTAR = 1, 2


def optimizer_vote(mm: Mapping[str, Any]) -> str:
    if mm["muon"] == MUON_KSTAR and mm["adamw"] == ADAMW_KSTAR:
        return REPRODUCED
    return PARTLY if mm["muon"] < mm["adamw"] else NOT_REPRODUCED
