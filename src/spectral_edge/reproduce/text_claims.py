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
from typing import Any

from .._numbers import finite_or_none as _finite
from .formatting import fmt
from .lm_claims import (ADAMW_KSTAR, MIN_SIGNAL_SHARE, MUON_KSTAR, combine_votes, judge_kstar, judge_lag_flip, judge_peak,
                        judge_phase_r, judge_phases, optimizer_vote)
from .plans import Scale, get_scale
from .verdicts import PARTLY, REPRODUCED, Claim


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


def _judged(res: Mapping[str, Any], judge: Any, key: str, setup_extra: str = "") -> Claim | None:
    """``judge``'s claim (with its strength) on the AdamW arm, keyed ``key`` (None without the study)."""
    lm = _adamw(res)
    return None if lm is None else judge(lm, text_setup(get_scale(res["scale"]), lm) + setup_extra, key)


#: the verdict rule of the real-text rows (they reuse the LM rules)
TEXT_RULE = ("the rules above, applied to the real-text runs of §5; each of their rows also says whether its test "
             "could have refuted the claim (its strength)")
#: the verdict rule of the Muon/AdamW comparison on real text
TEXT_OPTIMIZER_RULE = (f"seed by seed, modal k* Muon {MUON_KSTAR} and AdamW {ADAMW_KSTAR} (Muon below AdamW: partly), "
                       "each read over its windows with a mode above the floor; a seed where either has such a mode in "
                       f"fewer than {MIN_SIGNAL_SHARE:.0%} of its windows is not testable")


def text_kstar_claim(res: Mapping[str, Any]) -> Claim | None:
    """k* = 2 or 3 on the real-text LM (AdamW seeds), with the share of windows that can say."""
    return _judged(res, judge_kstar, "text_kstar")


def text_phases_claim(res: Mapping[str, Any]) -> Claim | None:
    """Three phases on the real-text LM, with where the first window falls on the loss curve."""
    return _judged(res, judge_phases, "text_phases")


def text_peak_claim(res: Mapping[str, Any]) -> Claim | None:
    """The peak gap ratio on the real-text LM against 1.747 and the isotropic null."""
    return _judged(res, judge_peak, "text_peak")


def text_phase_r_claim(res: Mapping[str, Any]) -> Claim | None:
    """Phase-specific r on the real-text LM, with the cells that have enough windows."""
    return _judged(res, judge_phase_r, "text_phase_r")


def text_lag_flip_claim(res: Mapping[str, Any]) -> Claim | None:
    """The lag flip on the real-text LM, with how many seeds' couplings are significant at both W."""
    every = cadence_words(get_scale(res["scale"]).text_every)
    return _judged(res, judge_lag_flip, "text_lag_flip", f"; lags in samples (sampled {every})")


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
    votes, cells = [], []
    for seed, ra, rm in pairs:
        sa, sm = _signal(ra), _signal(rm)
        cells.append(f"s{seed}: AdamW {fmt(sa['modal'], 0)} ({fmt(sa['share'], 2)} of windows), "
                     f"Muon {fmt(sm['modal'], 0)} ({fmt(sm['share'], 2)})")
        if (sa["share"] is None or sm["share"] is None or sa["share"] < MIN_SIGNAL_SHARE
                or sm["share"] < MIN_SIGNAL_SHARE or sa["modal"] is None or sm["modal"] is None):
            continue
        votes.append(optimizer_vote({"adamw": sa["modal"], "muon": sm["modal"]}))
    v = combine_votes(votes)
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

