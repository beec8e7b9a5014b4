"""The real-text study's claims (study 5): the language-model claims of :mod:`.claims`, judged
again by the same functions on the larger LM trained on a packaged real text, plus Muon against
AdamW seed by seed. Every row carries its *strength*: whether this test could have refuted the
claim, measured from the runs (windows with a mode above the noise floor, where the first window
falls on the loss curve, the isotropic null, the windows per phase, the coupling's permutation p).

:mod:`.claims` registers these functions after its own claims, with :data:`TEXT_RULE` and
:data:`TEXT_OPTIMIZER_RULE` as their verdict rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .._numbers import finite_or_none as _finite
from .lm_claims import (ADAMW_KSTAR, CLAIMED_PEAK, MIN_SIGNAL_SHARE, MUON_KSTAR, PEAK_REPRODUCED, PHASE_R_MIN,
                        judge_kstar, judge_lag_flip, judge_peak, judge_phase_r, judge_phases, min_windows_for_r,
                        optimizer_vote)
from .verdicts import NOT_REPRODUCED, NOT_TESTABLE, PARTLY, REPRODUCED, Claim
from .formatting import fmt, lst
from .plans import Scale, get_scale

#: a seed's rise is inside the windows when its first full W = 10 window ends before the validation
#: loss has fallen this share of the way from its initial to its final value
RISE_VISIBLE = 0.5
#: a coupling whose circular-shift p is below this has a peak lag whose sign means something
COUPLING_P = 0.05


def text_setup(sc: Scale, lm: Mapping[str, Any]) -> str:
    """The real-text runs in a few words (for the claims table's "our setup" column)."""
    m, n = sc.text_model, lm["aggregate"].get("n_parameters")
    size = f"{n / 1e6:.1f}M" if n else "?"
    return (f"{m.get('n_layer')}×{m.get('d_model')} char LM ({size} parameters) on the {sc.text_task.get('corpus')} "
            f"text, {len(lm['runs'])} seeds (§5)")


def _adamw(res: Mapping[str, Any]) -> Mapping[str, Any] | None:
    text = res.get("text") or {}
    a = text.get("adamw")
    return a if a and a.get("runs") else None


def _judged(res: Mapping[str, Any], judge: Any, key: str, setup_extra: str = ""
            ) -> tuple[Mapping[str, Any], Claim] | None:
    """The AdamW arm's record and ``judge``'s claim on it, keyed ``key`` (None without the study)."""
    lm = _adamw(res)
    if lm is None:
        return None
    return lm, judge(lm, text_setup(get_scale(res["scale"]), lm) + setup_extra, key)


def _share_read(lm: Mapping[str, Any]) -> tuple[int, int]:
    shares = lm["aggregate"].get("signal_share_all/W10") or []
    ok = [s for s in shares if _finite(s) is not None]
    return sum(1 for s in ok if s >= MIN_SIGNAL_SHARE), len(shares)


#: the verdict rule of the real-text rows (they reuse the LM rules)
TEXT_RULE = ("the rules above, applied to the real-text runs of §5; each of their rows also says whether its test "
             "could have refuted the claim (its strength)")
#: the verdict rule of the Muon/AdamW comparison on real text
TEXT_OPTIMIZER_RULE = (f"seed by seed, modal k* Muon {MUON_KSTAR} and AdamW {ADAMW_KSTAR} (Muon below AdamW: partly), "
                       "each read over its windows with a mode above the floor; a seed where either has such a mode in "
                       f"fewer than {MIN_SIGNAL_SHARE:.0%} of its windows is not testable")


def text_kstar_claim(res: Mapping[str, Any]) -> Claim | None:
    """k* = 2 or 3 on the real-text LM (AdamW seeds), with the share of windows that can say."""
    if (got := _judged(res, judge_kstar, "text_kstar")) is None:
        return None
    lm, c = got
    n_read, n = _share_read(lm)
    strength = (f"{n_read}/{n} seeds have a mode above the noise floor in ≥ {MIN_SIGNAL_SHARE:.0%} of their windows"
                + ("; there any modal k* could have come out, so the test could refute the claim" if n_read else
                   "; elsewhere k* = 1 is the floor rule's default, so the test cannot refute the claim here"))
    return replace(c, strength=strength)


def _fallen(r: Mapping[str, Any]) -> float | None:
    """How far (0–1) the validation loss has fallen from its initial to its final value when the
    run's first full W = 10 window ends."""
    f = (r.get("first_window") or {}).get("10") or {}
    v0, v1 = _finite(f.get("initial")), _finite(f.get("val_loss"))
    final = _finite((r.get("val_convergence") or {}).get("final"))
    if v0 is None or v1 is None or final is None or v0 == final:
        return None
    return (v0 - v1) / (v0 - final)


def text_phases_claim(res: Mapping[str, Any]) -> Claim | None:
    """Three phases on the real-text LM, with where the first window falls on the loss curve."""
    if (got := _judged(res, judge_phases, "text_phases")) is None:
        return None
    lm, c = got
    fallen = [_fallen(r) for r in lm["runs"]]
    early = sum(1 for f in fallen if f is not None and f <= RISE_VISIBLE)
    mid = [(m or {}).get("drop") for m in lm["aggregate"].get("val_mid") or []]
    falling = sum(1 for d in mid if _finite(d) is not None and d > 0)
    strength = (f"the first full window ends when validation loss has fallen {lst([100 * f if f is not None else None for f in fallen], 0)}% "
                f"of the way to its final value (a rise can be seen where ≤ {RISE_VISIBLE:.0%}: {early}/{len(fallen)} "
                f"seeds); validation loss still falls by {lst([100 * d if _finite(d) is not None else None for d in mid], 1)}% "
                f"from mid-run to the end ({falling}/{len(mid)} seeds), so the run lasts past any early plateau. "
                + ("The test could refute the claim" if early == len(fallen) and falling == len(mid) else
                   "The test could refute it in some seeds only" if early or falling else
                   "The test cannot refute the claim here"))
    return replace(c, strength=strength)


def text_peak_claim(res: Mapping[str, Any]) -> Claim | None:
    """The peak gap ratio on the real-text LM against 1.747 and the isotropic null."""
    if (got := _judged(res, judge_peak, "text_peak")) is None:
        return None
    lm, c = got
    null = _finite(lm["aggregate"].get("null_peak_ratio_W10"))
    lo, hi = CLAIMED_PEAK * (1 - PEAK_REPRODUCED), CLAIMED_PEAK * (1 + PEAK_REPRODUCED)
    strength = ("no null computed" if null is None else
                f"an isotropic trajectory peaks at {null:.3f}: the test can refute 'an edge at {CLAIMED_PEAK}' when "
                f"the measured peak is far from it, and cannot tell {CLAIMED_PEAK} from {lo:.2f}–{hi:.2f}")
    return replace(c, strength=strength)


def text_phase_r_claim(res: Mapping[str, Any]) -> Claim | None:
    """Phase-specific r on the real-text LM, with the cells that have enough windows."""
    if (got := _judged(res, judge_phase_r, "text_phase_r")) is None:
        return None
    lm, c = got
    ns = [n for p in ("rise", "plateau", "collapse") for n in (lm["aggregate"].get("phase_n_W10") or {}).get(p, [])]
    n_min = min_windows_for_r(PHASE_R_MIN)
    able = sum(1 for n in ns if isinstance(n, int) and n >= n_min)
    strength = (f"{able}/{len(ns)} (seed, phase) cells have the {n_min} windows at which |r| = {PHASE_R_MIN} is "
                "significant at 5%: " + ("only those could refute the claim" if able else
                                         "none can, so the test cannot refute the claim here"))
    return replace(c, strength=strength)


def text_lag_flip_claim(res: Mapping[str, Any]) -> Claim | None:
    """The lag flip on the real-text LM, with how many seeds' couplings are significant at both W."""
    every = get_scale(res["scale"]).text_every
    if (got := _judged(res, judge_lag_flip, "text_lag_flip", f"; lags in samples (sampled {cadence_words(every)})")) is None:
        return None
    lm, c = got
    p = lm["aggregate"].get("coupling_p_perm") or {}
    p10, p20 = p.get("10") or [], p.get("20") or []
    both = sum(1 for a, b in zip(p10, p20) if _finite(a) is not None and _finite(b) is not None
               and a < COUPLING_P and b < COUPLING_P)
    strength = (f"a peak lag's sign means something where the coupling is significant; circular-shift p per seed "
                f"W = 10: {lst(p10, 3)}, W = 20: {lst(p20, 3)}; {both}/{len(p10)} seeds are below {COUPLING_P} at "
                "both W, " + ("so those seeds could refute the flip" if both else
                              "so the test cannot refute the claim here"))
    return replace(c, strength=strength)


def cadence_words(every: Any) -> str:
    """A cadence in words: ``every 50 steps`` or ``every 10 steps to step 320, then every 80``."""
    if isinstance(every, int):
        return f"every {every} steps"
    parts = [(f"every {step} steps" if i == 0 else f"then every {step}") + (f" to step {until}" if until is not None else "")
             for i, (until, step) in enumerate(every)]
    return ", ".join(parts)


def text_optimizer_claim(res: Mapping[str, Any]) -> Claim | None:
    """Muon's k* = 1 against AdamW's 2 on the real-text LM, compared within each seed."""
    text = res.get("text") or {}
    a, m = text.get("adamw"), text.get("muon")
    if not a or not m or not a.get("runs") or not m.get("runs"):
        return None
    sc = get_scale(res["scale"])
    pairs = _seed_pairs(a, m)
    votes, cells, untestable = [], [], 0
    for seed, ra, rm in pairs:
        sa, sm = _signal(ra), _signal(rm)
        cells.append(f"s{seed}: AdamW {fmt(sa['modal'], 0)} ({fmt(sa['share'], 2)} of windows), "
                     f"Muon {fmt(sm['modal'], 0)} ({fmt(sm['share'], 2)})")
        if (sa["share"] is None or sm["share"] is None or sa["share"] < MIN_SIGNAL_SHARE
                or sm["share"] < MIN_SIGNAL_SHARE or sa["modal"] is None or sm["modal"] is None):
            untestable += 1
            continue
        votes.append(optimizer_vote({"adamw": sa["modal"], "muon": sm["modal"]}))
    v = (NOT_TESTABLE if not votes else REPRODUCED if all(x == REPRODUCED for x in votes) else
         PARTLY if any(x in (REPRODUCED, PARTLY) for x in votes) else NOT_REPRODUCED)
    why = (f"{sum(1 for x in votes if x == REPRODUCED)}/{len(votes)} testable seeds show Muon {MUON_KSTAR} and AdamW "
           f"{ADAMW_KSTAR}, {sum(1 for x in votes if x == PARTLY)} show Muon below AdamW otherwise"
           if votes else "no seed has modes above the floor in most windows under both optimizers")
    strength = (f"{len(votes)}/{len(pairs)} seeds have a mode above the floor in ≥ {MIN_SIGNAL_SHARE:.0%} of the "
                "windows under both optimizers; " + ("there the comparison could come out either way, so the test "
                                                    "could refute the claim" if votes else
                                                    "k* = 1 would be the floor rule's default, so the test cannot "
                                                    "refute the claim here"))
    return Claim("text_optimizer", f"k* depends on the optimizer: Muon k* = {MUON_KSTAR}, AdamW k* = {ADAMW_KSTAR}",
                 "Spectral Edge Thesis", "modal k* over the windows with a mode above the floor (W = 10) — "
                 + "; ".join(cells), text_setup(sc, a) + ", AdamW and Muon with the same seeds", v, why, strength)


def _seed_pairs(a: Mapping[str, Any], m: Mapping[str, Any]) -> list[tuple[Any, Mapping[str, Any], Mapping[str, Any]]]:
    by_seed = {r["summary"].get("seed"): r for r in m["runs"]}
    return [(r["summary"].get("seed"), r, by_seed[r["summary"].get("seed")]) for r in a["runs"]
            if r["summary"].get("seed") in by_seed]


def _signal(run: Mapping[str, Any]) -> dict[str, Any]:
    sig = (run.get("kstar", {}).get("all/W10") or {}).get("signal") or {}
    return {"share": _finite(sig.get("signal_share")), "modal": sig.get("modal")}

