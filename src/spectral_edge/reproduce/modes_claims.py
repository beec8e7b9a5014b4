"""The functional-modes claims (METHODS §7) beside our measurements, one function per claim.

Each claim is a :class:`~.claims.ClaimRule` in :data:`MODES_CLAIMS`: a function that reads the
record of :func:`~.modes_measures.modes_study` and returns a :class:`~.claims.Claim` with its
verdict, registered with the sentence that states its verdict rule; both are built from the same
constants below, so the document's prose cannot drift from the code that applies it.

Only runs whose model has generalised count (final test accuracy ≥ the record's ``min_acc``,
0.95: METHODS §7 reads the modes of a grokked model); a claim with no such run is *not testable
here*. :func:`choice_rows` judges every claim again on the choice seed's runs under each
alternative choice (uncentred window, W, ε) beside the default on the same runs, which is how
the document says where a claim depends on a choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._numbers import finite_or_none as _finite
from .._numbers import median_or_none
from .claims import ClaimRule
from .verdicts import NOT_REPRODUCED, NOT_TESTABLE, PARTLY, REPRODUCED, Claim
from .formatting import fmt

#: the papers' numbers (METHODS §7)
MUL_CLAIM, X2Y2_CLAIM, MULTITASK_CLAIM = 5.9, 4.0, 2.3
#: a ratio "reproduces" a paper's ratio when within this factor of it (either way)
RATIO_FACTOR = 1.5
#: subtraction: a "small family" has at most this fraction of the frequencies as effective modes
SMALL_FAMILY_FRAC = 0.25
#: the claims, in the order of the table
MODES_CLAIMS: list[ClaimRule] = []

_SETUP = "seeds {seeds}, p = {p}, the defaults of METHODS §7 (W = 20 centred, ε = 0.005·‖θ_attn‖, test pairs)"


def modes_claim(key: str, label: str, rule: str) -> Callable[[Callable[[Mapping[str, Any]], Claim | None]], ClaimRule]:
    """Register the decorated function as the modes claim ``key`` with the rule ``label — rule``."""
    def register(judge: Callable[[Mapping[str, Any]], Claim | None]) -> ClaimRule:
        r = ClaimRule(key, judge, f"{label} — {rule}")
        MODES_CLAIMS.append(r)
        return r

    return register


def modes_claims_table(rec: Mapping[str, Any]) -> list[Claim]:
    """Every modes claim beside our measurement, with its verdict."""
    return [c for r in MODES_CLAIMS if (c := r(rec)) is not None]


def modes_rules_text() -> str:
    """The paragraph of verdict rules printed under the claims table."""
    return "Verdict rules (applied by the code): " + "; ".join(r.rule_text for r in MODES_CLAIMS if r.rule_text) + "."


# ---------------------------------------------------------------------- helpers
def usable(rec: Mapping[str, Any], op: str) -> tuple[list[Mapping[str, Any]], list[str]]:
    """(the runs of ``op`` whose model generalised, the names of the others)."""
    runs = [r for r in rec.get("runs", []) if r["op"] == op]
    lo = rec.get("min_acc", 0.0)
    ok = [r for r in runs if (_finite(r.get("final_test_acc")) or 0.0) >= lo]
    return ok, [r["run"] for r in runs if r not in ok]


def _untestable(key: str, claim: str, paper: str, op: str, rec: Mapping[str, Any], skipped: Sequence[str]) -> Claim:
    why = (f"no run of {op} whose model generalised (final test accuracy ≥ {rec.get('min_acc', 0):g}); "
           + (f"not generalised: {', '.join(skipped)}" if skipped else "no finished run"))
    return Claim(key, claim, paper, "not measured", "—", NOT_TESTABLE, why)


def _setup(runs: Sequence[Mapping[str, Any]], rec: Mapping[str, Any]) -> str:
    return _SETUP.format(seeds=", ".join(str(r["seed"]) for r in runs), p=rec.get("modulus"))


def _s(r: Mapping[str, Any]) -> Mapping[str, Any]:
    return r["modes"].get("summary") or {}


def _near(x: float | None, claim: float) -> bool:
    return x is not None and x > 0 and abs(math.log(x / claim)) <= math.log(RATIO_FACTOR)


def _mean(xs: Sequence[Any]) -> float | None:
    v = [float(x) for x in xs if _finite(x) is not None]
    return sum(v) / len(v) if v else None


def _omegas(xs: Sequence[Any]) -> str:
    return ", ".join("–" if x is None else str(x) for x in xs)


def _edge(r: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [d for d in r["modes"]["directions"] if d["role"] == "edge"]


def _role(r: Mapping[str, Any], role: str) -> list[Mapping[str, Any]]:
    return [d for d in r["modes"]["directions"] if d["role"] == role]


def _all_some(n_ok: int, n: int) -> str:
    return REPRODUCED if n and n_ok == n else PARTLY if n_ok else NOT_REPRODUCED


# ---------------------------------------------------------------------- the claims
@modes_claim("addition", "addition", "v1–v3 peak at one shared ω in the add basis in every seed (in some seeds: "
             "partly)")
def addition_claim(rec: Mapping[str, Any]) -> Claim:
    """Addition: the edge collapses to one Fourier mode, v1–v3 all peak at the same ω."""
    claim, paper = "addition: the edge collapses to one Fourier mode (v1–v3 share one ω, ≈ 25–26 in their run)", \
        "p = 97, one seed, add basis"
    runs, skipped = usable(rec, "add")
    if not runs:
        return _untestable("addition", claim, paper, "add", rec, skipped)
    one = [bool(_s(r).get("addition", {}).get("one_omega")) for r in runs]
    ours = "; ".join(f"s{r['seed']}: ω = {_omegas(_s(r).get('addition', {}).get('omegas', []))}" for r in runs)
    return Claim("addition", claim, paper, ours, _setup(runs, rec), _all_some(sum(one), len(one)),
                 f"{sum(one)}/{len(one)} seeds have one shared ω")


@modes_claim("multiplication", "multiplication", f"the mean over seeds of (mean edge F in the dlog basis ÷ in the "
             f"raw-product basis) within ×/÷ {RATIO_FACTOR} of {MUL_CLAIM} (above 1 in every seed: partly)")
def multiplication_claim(rec: Mapping[str, Any]) -> Claim:
    """Multiplication: the discrete-log basis concentrates the edge 5.9× more than the raw product."""
    claim, paper = f"multiplication: dlog-basis F ÷ raw-product-basis F = {MUL_CLAIM}× (peak ω = 29)", \
        "p = 97, mean F over v1–v3"
    runs, skipped = usable(rec, "mul")
    if not runs:
        return _untestable("multiplication", claim, paper, "mul", rec, skipped)
    ratios = [_s(r).get("multiplication", {}).get("dlog_over_mul") for r in runs]
    m = _mean(ratios)
    v = REPRODUCED if _near(m, MUL_CLAIM) else PARTLY if all((_finite(x) or 0) > 1 for x in ratios) else NOT_REPRODUCED
    ours = "; ".join(f"s{r['seed']}: {fmt(_s(r)['multiplication'].get('dlog_F_mean'))} ÷ "
                     f"{fmt(_s(r)['multiplication'].get('mul_F_mean'))} = {fmt(x, 1)}× (dlog ω "
                     f"{_omegas(_s(r)['multiplication'].get('dlog_omegas', []))})" for r, x in zip(runs, ratios))
    return Claim("multiplication", claim, paper, ours, _setup(runs, rec), v, f"mean ratio {fmt(m, 1)}×")


@modes_claim("subtraction", "subtraction", f"in every seed the edge is several modes (v1–v3 peak at ≥ 2 frequencies, "
             f"or ≥ 2 effective modes per direction) and a small family (≤ {SMALL_FAMILY_FRAC:.0%} of the frequencies "
             "as effective modes, participation ratio 1/Σ share²) (in some seeds: partly)")
def subtraction_claim(rec: Mapping[str, Any]) -> Claim:
    """Subtraction: the edge spreads over a small family of modes."""
    claim, paper = "subtraction: the edge spreads over a small multi-mode family", "p = 97, sub basis"
    runs, skipped = usable(rec, "sub")
    if not runs:
        return _untestable("subtraction", claim, paper, "sub", rec, skipped)
    ok, parts = 0, []
    for r in runs:
        x = _s(r).get("subtraction", {})
        n_freq = (_edge(r)[0]["bases"]["sub"]["period"] // 2) if _edge(r) else 0
        modes = _finite(x.get("modes_mean"))
        multi = (x.get("n_omegas") or 0) >= 2 or (modes or 0) >= 2
        small = modes is not None and modes <= SMALL_FAMILY_FRAC * n_freq
        ok += multi and small
        parts.append(f"s{r['seed']}: ω = {_omegas(x.get('omegas', []))}, {fmt(modes, 1)} effective modes of {n_freq}")
    return Claim("subtraction", claim, paper, "; ".join(parts), _setup(runs, rec), _all_some(ok, len(runs)),
                 f"{ok}/{len(runs)} seeds show a small multi-mode family")


def _cross_added(d: Mapping[str, Any]) -> float | None:
    r2 = d.get("r2") or {}
    full, comb = _finite(r2.get("full")), _finite(r2.get("combined"))
    return None if full is None or comb is None else full - comb


@modes_claim("x2y2", "x² + y²", f"the mean over seeds of R²(full) ÷ R²(combined) within ×/÷ {RATIO_FACTOR} of "
             f"{X2Y2_CLAIM:g} and the edge's R² gain from the cross terms above the random directions' in every seed "
             "(one of the two: partly)")
def x2y2_claim(rec: Mapping[str, Any]) -> Claim:
    """x² + y²: cross terms (additive × dlog) add R² to the combined families (the "4×")."""
    claim, paper = (f"x² + y²: cross terms of the additive and dlog Fourier features add R² (a \"{X2Y2_CLAIM:g}× "
                    "variance boost\")"), "in-sample ridge (α = 1); their script prints R² only"
    runs, skipped = usable(rec, "x2y2")
    if not runs:
        return _untestable("x2y2", claim, paper, "x2y2", rec, skipped)
    gains, above, parts = [], 0, []
    for r in runs:
        x = _s(r).get("x2y2", {})
        r2 = x.get("r2") or {}
        gains.append(x.get("cross_gain"))
        rnd = _mean([_cross_added(d) for d in _role(r, "random")])
        added = _finite(x.get("cross_added"))
        above += added is not None and rnd is not None and added > rnd
        parts.append(f"s{r['seed']}: R² combined {fmt(r2.get('combined'))}, full {fmt(r2.get('full'))} "
                     f"(gain {fmt(x.get('cross_gain'), 2)}×, +{fmt(added)}; random directions +{fmt(rnd)})")
    m = _mean(gains)
    near, beats = _near(m, X2Y2_CLAIM), above == len(runs)
    v = REPRODUCED if near and beats else PARTLY if near or beats else NOT_REPRODUCED
    return Claim("x2y2", claim, paper, "; ".join(parts), _setup(runs, rec) + ", edge v1–v3, pairs with a, b ≠ 0", v,
                 f"mean gain {fmt(m, 2)}×; cross terms add more for the edge than for random directions in "
                 f"{above}/{len(runs)} seeds")


def _share_at(d: Mapping[str, Any], basis: str, omega: int) -> float | None:
    shares = (d["bases"].get(basis) or {}).get("shares")
    return _finite(shares[omega - 1]) if shares and 1 <= omega <= len(shares) else None


@modes_claim("multitask", "multitask", f"tri-task ÷ single-task additive share of x² + y² at the addition frequency "
             f"within ×/÷ {RATIO_FACTOR} of {MULTITASK_CLAIM} (above 1: partly)")
def multitask_claim(rec: Mapping[str, Any]) -> Claim:
    """Multitask: in the tri-task model x² + y² inherits the addition frequency, 2.3× the
    single-task model's additive share at that ω."""
    claim = (f"multitask: x² + y² inherits the addition frequency ({MULTITASK_CLAIM}× the single-task additive "
             "share at it)")
    paper = "tri-task shared trunk (add, mul, x² + y²) vs single-task x² + y²; additive-basis F at the addition ω"
    tri, skipped = usable(rec, "multitask")
    if not tri:
        return _untestable("multitask", claim, paper, "the tri-task model", rec, skipped)
    t = tri[0]
    single = [r for r in usable(rec, "x2y2")[0] if r["seed"] == t["seed"]]
    if not single:
        return Claim("multitask", claim, paper, "not measured", "—", NOT_TESTABLE,
                     f"no single-task x² + y² run of seed {t['seed']} whose model generalised")
    mt = _s(t).get("multitask", {})
    w = mt.get("add_omega")
    tri_share = _finite(mt.get("add_share_at_omega"))
    one = _mean([_share_at(d, "add", w) for d in _edge(single[0])]) if w else None
    ratio = tri_share / one if tri_share is not None and one else None
    v = REPRODUCED if _near(ratio, MULTITASK_CLAIM) else PARTLY if (ratio or 0) > 1 else NOT_REPRODUCED
    rnd = _finite(mt.get("random_share_at_omega"))
    ours = (f"addition ω = {w}; edge additive share there: tri-task {fmt(tri_share)} (random directions "
            f"{fmt(rnd)}), single-task x² + y² {fmt(one)} (its own add-basis ω "
            f"{_omegas(_s(single[0]).get('x2y2', {}).get('add_omegas', []))}): {fmt(ratio, 2)}×")
    return Claim("multitask", claim, paper, ours, f"{t['run']} and {single[0]['run']}, p = {rec.get('modulus')}",
                 v, f"ratio {fmt(ratio, 2)}×")


@modes_claim("nulls", "nulls", "the edge's mean F (v1–v3, the run's claim basis) above every random direction's in "
             "every run (above the random mean in at least half of the runs: partly)")
def nulls_claim(rec: Mapping[str, Any]) -> Claim:
    """The nulls the library adds: is the edge more concentrated than random directions and the bulk?"""
    claim = "the edge's concentration is special to the edge (implicit: the papers read v1–v3 and no null)"
    paper = "no null in the papers; METHODS §7: random unit directions and the bulk v4–v8 through the same pipeline"
    runs = [r for op in dict.fromkeys(x["op"] for x in rec.get("runs", [])) for r in usable(rec, op)[0]]
    if not runs:
        return Claim("nulls", claim, paper, "not measured", "—", NOT_TESTABLE, "no run whose model generalised")
    above_max = above_mean = 0
    parts = []
    for r in runs:
        s = _s(r)
        e, n = (s.get("edge") or {}).get("F_mean"), s.get("nulls") or {}
        e, rm, rx, bm = _finite(e), _finite(n.get("random_F_mean")), _finite(n.get("random_F_max")), \
            _finite(n.get("bulk_F_mean"))
        above_max += e is not None and rx is not None and e > rx
        above_mean += e is not None and rm is not None and e > rm
        parts.append(f"{r['run']} ({s.get('basis')}): edge {fmt(e)}, bulk {fmt(bm)}, random {fmt(rm)} (max {fmt(rx)})")
    v = REPRODUCED if above_max == len(runs) else PARTLY if 2 * above_mean >= len(runs) else NOT_REPRODUCED
    return Claim("nulls", claim, paper, "; ".join(parts), "every run whose model generalised, in its claims' basis; "
                 "5 random directions (seed 0)", v,
                 f"edge above every random direction in {above_max}/{len(runs)} runs, above their mean in "
                 f"{above_mean}/{len(runs)}")


#: the first-order decomposition "predicts" the measured per-mode change when the median relative
#: error over every mode of every run is at most this (partly: LOSS_PARTLY)
LOSS_REPRODUCED, LOSS_PARTLY = 0.05, 0.25
#: claims computed once per run, not per choice of window/centring/ε (left out of the choice table)
NOT_PER_CHOICE = ("loss_decomposition",)


def _rel_errors(pred: Sequence[Any], meas: Sequence[Any]) -> list[float]:
    out = []
    for p_, m in zip(pred, meas):
        p_, m = _finite(p_), _finite(m)
        if p_ is not None and m is not None and m != 0:
            out.append(abs(p_ - m) / abs(m))
    return out




@modes_claim("loss_decomposition", "loss decomposition",
             f"the median relative error of η·G_tr·G_val against the measured per-mode change, over every mode of every "
             f"run, is ≤ {LOSS_REPRODUCED:.0%} ({LOSS_PARTLY:.0%}: partly); the Davis–Kahan weighting is reproduced when "
             "the α-weighted prediction's median error is no larger")
def loss_decomposition_claim(rec: Mapping[str, Any]) -> Claim | None:
    """The spectral loss decomposition and its Davis–Kahan weights against the measured loss change
    of undoing each mode's share of one gradient step (:mod:`spectral_edge.analysis.loss_modes`)."""
    lms = rec.get("loss_modes") or []
    if not lms:
        return None
    claim = "the loss change decomposes over the window's modes, each weighted by its Davis–Kahan stability α_j"
    paper = "ΔL_j = α_j·η·G_j^tr·G_j^val, α_j = max(0, 1 − ‖ΔG‖²/gap_j²) (METHODS §5)"
    raw = [e for r in lms for e in _rel_errors(r["predicted_raw"], r["measured"])]
    wtd = [e for r in lms for e in _rel_errors(r["predicted"], r["measured"])]
    n_modes = sum(len(r["measured"]) for r in lms)
    total = sum(abs(m) for r in lms for m in r["measured"])
    dropped = sum(abs(m) for r in lms for a, m in zip(r["alpha"], r["measured"]) if a == 0)
    zero = sum(1 for r in lms for a in r["alpha"] if a == 0)
    e_raw, e_wtd = median_or_none(raw), median_or_none(wtd)
    first = (NOT_TESTABLE if e_raw is None else REPRODUCED if e_raw <= LOSS_REPRODUCED else
             PARTLY if e_raw <= LOSS_PARTLY else NOT_REPRODUCED)
    dk_ok = e_raw is not None and e_wtd is not None and e_wtd <= e_raw
    v = first if first in (NOT_TESTABLE, NOT_REPRODUCED) else (first if dk_ok else PARTLY)
    ours = (f"{len(lms)} runs, {n_modes} modes: first-order prediction median error {fmt(100 * (e_raw or 0), 2)}%; "
            f"α-weighted {fmt(100 * (e_wtd or 0), 1)}% — α = 0 for {zero}/{n_modes} modes, which carry "
            f"{fmt(100 * dropped / total if total else 0, 1)}% of the measured change")
    setup = (f"last window (W = {lms[0]['window']}) of each single-operation run, model at its last snapshot, float64; "
             "validation = the run's held-out pairs")
    why = (f"median errors {fmt(100 * (e_raw or 0), 2)}% (α = 1) and {fmt(100 * (e_wtd or 0), 1)}% (α-weighted); "
           "the ablation undoes one step's share of a mode, which a first-order term predicts whatever the mode's "
           "stability, so this test can confirm the decomposition and can only count against α as a per-step weight")
    return Claim("loss_decomposition", claim, paper, ours, setup, v, why)


# ---------------------------------------------------------------------- where a claim depends on a choice
def choice_rows(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per claim: its verdict and headline on the choice seed's runs under the default choices
    and under each alternative (``cells``: choice name → (verdict, why)), and ``depends``: the
    alternatives whose verdict differs from the default's."""
    seed = rec.get("choice_seed")
    base = {**rec, "runs": [r for r in rec.get("runs", []) if r["seed"] == seed]}
    rows = []
    for rule in MODES_CLAIMS:
        if rule.key in NOT_PER_CHOICE:
            continue
        d = rule(base)
        cells = {"default": (d.verdict, d.why)}
        for name, ch in (rec.get("choices") or {}).items():
            c = rule({**rec, "runs": ch["runs"]})
            cells[name] = (c.verdict, c.why)
        depends = [n for n, (v, _) in cells.items() if n != "default" and v != d.verdict]
        rows.append({"key": rule.key, "cells": cells, "depends": depends})
    return rows
