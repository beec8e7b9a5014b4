"""The papers' probe claims, measured on the probe-claims runs
(:func:`spectral_edge.experiments.suite.probe_claims_suite`: add, sub, mul, x²+y² at p = 97 with
the execution-manifold, commutator-defect and gradient-SED probes every 100 steps).

Four claims (METHODS §6), each with a verdict rule fixed before the runs were scored:

- gradient-SED: the top direction of the window of fixed-batch gradients carries 100–650× the
  loss sensitivity of a random direction; the top update-SED direction 3–9×
  (``sens_ratio`` and ``update_sens_ratio`` of the ``grad_sed`` probe);
- the commutator: more than 92% of it lies outside the execution subspace, and early in
  training it is aligned with that subspace up to 10× more than a random subspace of the same
  dimension, less as training converges (``exec_frac`` = ‖Bᵀδ‖/‖δ‖ and ``exec_ratio`` =
  exec_frac / √(K/P) of the ``defect`` probe with ``subspace = "manifold"``);
- the execution manifold has dimension 3–4 (``dim90_mean``: principal components of the
  centred attention trajectory needed for 90% of its variance, mean over the 8 matrices).

Every statistic is over the records up to the grok step (the run's whole pre-grokking
trajectory); "early" and "late" are the first and last third of those records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._numbers import finite_or_none as _finite
from .._numbers import median_or_none
from .formatting import fmt, table, value_range

#: the papers' numbers
GRAD_SED_RANGE = (100.0, 650.0)
UPDATE_SED_RANGE = (3.0, 9.0)
ORTHOGONAL_MIN = 0.92
EXEC_ALIGN_MAX = 10.0
MANIFOLD_DIM = (3, 4)

RULES = {
    "gradient-SED": f"the median top-direction ratio is ≥ {GRAD_SED_RANGE[0]:g}× in every run (≥ 10×: partly)",
    "update-SED": f"the median ratio lies in {UPDATE_SED_RANGE[0]:g}–{UPDATE_SED_RANGE[1]:g}× in every run "
                  "(below the gradient-SED ratio in every run: partly)",
    "orthogonal share": f"the median share of the commutator's squared norm outside the subspace is > "
                        f"{ORTHOGONAL_MIN:.0%} in every run; stated beside the share a random direction has",
    "alignment": "the early median alignment is above a random subspace's (ratio > 1) and above the late one in "
                 "every run (above random only: partly)",
    "dimension": f"the dimension at the grok step is {MANIFOLD_DIM[0]}–{MANIFOLD_DIM[1]} in every run "
                 f"({MANIFOLD_DIM[0] - 1}–{MANIFOLD_DIM[1] + 1}: partly)",
}


def _median(xs: Sequence[Any]) -> float | None:
    return median_or_none(x for x in (_finite(x) for x in xs) if x is not None)


def _series(rows: Sequence[Mapping[str, Any]], probe: str, key: str, until: int | None) -> list[tuple[int, float]]:
    out = []
    for r in rows:
        if r.get("kind") == "probe" and r.get("probe") == probe and (until is None or r["step"] <= until):
            v = _finite(r.get(key))
            if v is not None:
                out.append((int(r["step"]), v))
    return out


def _thirds(pts: Sequence[tuple[int, float]]) -> tuple[float | None, float | None]:
    n = len(pts)
    if n < 3:
        return None, None
    k = max(1, n // 3)
    return _median([v for _, v in pts[:k]]), _median([v for _, v in pts[-k:]])


def probe_run_record(folder: str | Path, name: str, op: str) -> dict[str, Any]:
    """One probe-claims run: its grok step and the statistics the claims read (module docs)."""
    import json

    from ..detectors.signals import as_rows
    from ..io.history import read_history

    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    rows = as_rows(read_history(folder / "history.jsonl"))
    grok = summary.get("grok_step")
    sens = _series(rows, "grad_sed", "sens_ratio", grok)
    upd = _series(rows, "grad_sed", "update_sens_ratio", grok)
    frac = _series(rows, "defect", "exec_frac", grok)
    ratio = _series(rows, "defect", "exec_ratio", grok)
    rand = _series(rows, "defect", "exec_random", grok)
    dim90 = _series(rows, "manifold", "dim90_mean", grok)
    dim95 = _series(rows, "manifold", "dim95_mean", grok)
    early, late = _thirds(ratio)
    K = _median([v for _, v in _series(rows, "defect", "exec_dim", grok)])
    r0 = _median([v for _, v in rand])
    return {"run": name, "op": op, "grok_step": grok, "n_grad_sed": len(sens), "n_defect": len(frac),
            "grad_sed_ratio": _median([v for _, v in sens]), "grad_sed_range": [min((v for _, v in sens), default=None),
                                                                              max((v for _, v in sens), default=None)],
            "update_sed_ratio": _median([v for _, v in upd]),
            "orthogonal_share": _median([1 - v * v for _, v in frac]),
            "random_orthogonal_share": None if r0 is None else 1 - r0 * r0,
            "exec_dim": K, "exec_ratio_early": early, "exec_ratio_late": late,
            "exec_ratio_max": max((v for _, v in ratio), default=None),
            "dim90": dim90[-1][1] if dim90 else None, "dim95": dim95[-1][1] if dim95 else None,
            "dim90_step": dim90[-1][0] if dim90 else None}


def probe_records(out: str | Path, runs: Sequence[Any]) -> list[dict[str, Any]]:
    """:func:`probe_run_record` of every finished run of ``runs`` (SuiteRuns) under ``out``."""
    recs = []
    for r in runs:
        folder = Path(out) / r.name
        if (folder / "summary.json").is_file() and (folder / "history.jsonl").is_file():
            recs.append({**probe_run_record(folder, r.name, r.kind or r.config.op), "seed": r.config.seed})
    return recs


def _all(recs: Sequence[Mapping[str, Any]], key: str, ok: Any) -> bool:
    vals = [r.get(key) for r in recs]
    return bool(vals) and all(v is not None and ok(v) for v in vals)


def _verdict(full: bool, part: bool) -> str:
    return "reproduced" if full else "partly" if part else "not reproduced"


def probe_claims(recs: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Rows (claim, papers, ours, verdict) of the probe claims over ``recs``."""
    if not recs:
        return []
    g = [r["grad_sed_ratio"] for r in recs]
    u = [r["update_sed_ratio"] for r in recs]
    lo, hi = UPDATE_SED_RANGE
    rows = [["gradient-SED top directions carry 100–650× the loss sensitivity of random directions",
             "100–650×", f"median per run {value_range(g, 0)}× (records up to the grok step)",
             _verdict(_all(recs, "grad_sed_ratio", lambda v: v >= GRAD_SED_RANGE[0]),
                      _all(recs, "grad_sed_ratio", lambda v: v >= 10))],
            ["update-SED top directions: 3–9×", "3–9×", f"median per run {value_range(u, 1)}×",
             _verdict(_all(recs, "update_sed_ratio", lambda v: lo <= v <= hi),
                      all(a is not None and b is not None and b < a for a, b in zip(g, u)))]]
    orth = [r["orthogonal_share"] for r in recs]
    null = [r["random_orthogonal_share"] for r in recs if r["random_orthogonal_share"] is not None]
    K = _median([r["exec_dim"] for r in recs])
    rows.append([">92% of the commutator lies orthogonal to the execution subspace", "> 92%",
                 f"{value_range([100 * x for x in orth if x is not None], 2)}% of its squared norm "
                 f"(a random direction: {100 * min(null):.3f}%, K = {fmt(K, 0)} directions: the share holds for "
                 "almost any direction, so the alignment below is the informative test)" if null else
                 f"{value_range([100 * x for x in orth if x is not None], 1)}%",
                 _verdict(_all(recs, "orthogonal_share", lambda v: v > ORTHOGONAL_MIN), False)])
    early = [r["exec_ratio_early"] for r in recs]
    late = [r["exec_ratio_late"] for r in recs]
    above = _all(recs, "exec_ratio_early", lambda v: v > 1)
    falls = all(a is not None and b is not None and b < a for a, b in zip(early, late))
    rows.append(["commutators align with the execution subspace up to 10× a random subspace early, less as "
                 "training converges", "up to 10×, decreasing",
                 f"early median {value_range(early, 1)}×, late {value_range(late, 1)}×, peak "
                 f"{value_range([r['exec_ratio_max'] for r in recs], 1)}× (falls in "
                 f"{sum(1 for a, b in zip(early, late) if a is not None and b is not None and b < a)}/{len(recs)} runs)",
                 _verdict(above and falls, above)])
    d90 = [r["dim90"] for r in recs]
    d95 = [r["dim95"] for r in recs]
    a, b = MANIFOLD_DIM
    rows.append(["execution manifolds of dimension 3–4", "3–4",
                 f"components for 90% of the trajectory's variance at the grok step: {value_range(d90, 2)} "
                 f"(95%: {value_range(d95, 2)}), mean over the 8 attention matrices",
                 _verdict(_all(recs, "dim90", lambda v: a <= v <= b), _all(recs, "dim90", lambda v: a - 1 <= v <= b + 1))])
    return rows


def probe_claims_section(recs: Sequence[Mapping[str, Any]], missing: Sequence[str] = ()) -> list[str]:
    """The document's section: the claims table, its rules and the per-run numbers."""
    out = ["## Probe claims", ""]
    if not recs:
        return out + ["No probe-claims run has finished (`probes-<op>-s<seed>`); nothing to report.", ""]
    ops = ", ".join(dict.fromkeys(r["op"] for r in recs))
    seeds = ", ".join(str(x) for x in dict.fromkeys(r.get("seed") for r in recs) if x is not None)
    out += [f"{len(recs)} runs `probes-<op>-s<seed>` ({ops}; seeds {seeds}; p = 97, lr 1e-3, weight decay 1) with the "
            "execution-manifold "
            "probe, the commutator defect projected on its top-2 directions per attention matrix, and the "
            "gradient-SED probe (W = 10 fixed-batch gradients of the attention weights, compared with the monitor's "
            "update window of the same weights), every 100 steps. Statistics over the records up to each run's grok "
            "step. The verdict rules were fixed before these runs were scored.", ""]
    out += table(["claim (papers)", "papers", "ours", "verdict"],
                 [[c, p, o, f"**{v}**"] for c, p, o, v in probe_claims(recs)])
    out += ["", "Rules: " + "; ".join(f"{k} — {v}" for k, v in RULES.items()) + ".", ""]
    per = [[r["run"], fmt(r["grok_step"], 0), r["n_grad_sed"], fmt(r["grad_sed_ratio"], 0),
            fmt(r["update_sed_ratio"], 1), fmt(None if r["orthogonal_share"] is None else 100 * r["orthogonal_share"], 2),
            fmt(r["exec_ratio_early"], 2), fmt(r["exec_ratio_late"], 2), fmt(r["dim90"], 2), fmt(r["dim95"], 2)]
           for r in recs]
    out += table(["run", "grok step", "gradient-SED records", "gradient-SED / random", "update-SED / random",
                  "orthogonal share %", "alignment early", "alignment late", "dim (90%)", "dim (95%)"], per)
    if missing:
        out += ["", "Not finished: " + ", ".join(f"`{m}`" for m in missing) + "."]
    return out + [""]
