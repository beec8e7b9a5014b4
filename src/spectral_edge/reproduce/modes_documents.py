"""The functional-modes document (``docs/modes.md``) and its figures (``modes_*.png``), from the
record of :func:`~.modes_measures.modes_study` with its claims (:mod:`.modes_claims`). Every
number comes from the record, every verdict and verdict rule from :mod:`.modes_claims`; the
figures are drawn by the report's :func:`spectral_edge.report.modes_figures.draw_modes` and
captioned from what it drew. matplotlib is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._numbers import finite_or_none as _finite
from .verdicts import Claim
from .figures import save_figure
from .formatting import fmt, fmt_dash, hms, table
from .modes_claims import modes_rules_text
from .modes_measures import CHOICES, MIN_TEST_ACC
from .plans import MODES_QUICK, MULTITASK_OPS, MULTITASK_STEPS

MODES_FIG_PREFIX = "modes_"
#: the order of the operations in tables and figures
OP_ORDER = ("add", "sub", "mul", "x2y2", "multitask")


# ---------------------------------------------------------------------- figures
def _panel_runs(rec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """One run per operation (the choice seed's, else the first), in :data:`OP_ORDER`."""
    out = []
    for op in OP_ORDER:
        runs = [r for r in rec.get("runs", []) if r["op"] == op]
        pick = [r for r in runs if r["seed"] == rec.get("choice_seed")] or runs
        if pick:
            out.append(pick[0])
    return out


def modes_figures(rec: Mapping[str, Any], fig_dir: Path) -> dict[str, dict[str, str]]:
    """``modes_spectra.png`` (the spectra of every direction of one run per operation, in the
    basis its claims are read in) and ``modes_heatmap.png`` (the addition run's spectra and the
    heat map of f_1(a, b)) in ``fig_dir``; returns name → {"file", "caption"}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..report.modes_figures import draw_modes, modes_caption

    fig_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, dict[str, str]] = {}
    panels = _panel_runs(rec)
    if panels:
        cols = min(3, len(panels))
        rows = -(-len(panels) // cols)
        fig = plt.figure(figsize=(4.4 * cols, 3.3 * rows), layout="constrained")
        subs = np.atleast_1d(fig.subfigures(rows, cols)).ravel()
        drawings = []
        for sub, r in zip(subs, panels):
            drawings.append(draw_modes(sub, r["modes"], title=f"{r['run']} ({_finite(r['final_test_acc']) or 0:.2f} "
                                                                 "test acc.)"))
        name = f"{MODES_FIG_PREFIX}spectra.png"
        save_figure(fig, fig_dir / name)
        which = "; ".join(f"{r['run']}: {d.basis} basis" for r, d in zip(panels, drawings) if d.basis)
        made["spectra"] = {"file": name, "caption": f"One panel per operation, in the basis its claims are read in "
                           f"({which}). In each panel: " + modes_caption(drawings[0], panels=True)}
    hm = rec.get("heatmap")
    run = next((r for r in rec.get("runs", []) if hm and r["run"] == hm["run"]), None)
    if hm and run:
        field = np.array([[np.nan if x is None else x for x in row] for row in hm["field"]], dtype=float)
        fig = plt.figure(figsize=(10, 3.8), layout="constrained")
        d = draw_modes(fig, run["modes"], {hm["direction"]: field}, title=f"{run['run']}")
        name = f"{MODES_FIG_PREFIX}heatmap.png"
        save_figure(fig, fig_dir / name)
        made["heatmap"] = {"file": name, "caption": f"{run['run']}. " + modes_caption(d)}
    return made


# ---------------------------------------------------------------------- the document
def _setup(rec: Mapping[str, Any]) -> list[str]:
    if rec.get("quick"):
        q = MODES_QUICK
        runs = (f"p = {q['modulus']}, a d = {q['model']['d_model']} model, seed 42, {q['steps']} steps, a snapshot "
                f"every {q['every']} steps, no early stop")
    else:
        runs = ("p = 97, the papers' reference model (2-layer pre-norm transformer, d = 128, 4 heads, d_ff = 256), "
                "50/50 split, AdamW lr 1e-3, weight decay 1, betas (0.9, 0.98), batch 512, gradient clip 1; the "
                "grokking suite's runs (add, sub, mul, x² + y² × seeds 42, 137, 2024; stop 1000 steps after test "
                "accuracy first reaches 0.9; the same configs as `spectral-edge reproduce grokking`) and the tri-task "
                f"model ({MULTITASK_OPS.replace(',', ', ')}: one shared trunk, one head per task, seed 42, up to "
                f"{MULTITASK_STEPS} steps, stop 1000 steps after every task reaches 0.9)")
    return ["## Setup", "",
            f"Runs: {runs}. Each run keeps the last 21 snapshots of its attention weights (W_Q, W_K, W_V, W_O of both "
            f"layers, one every {MODES_QUICK['every'] if rec.get('quick') else 100} steps) in "
            "`snapshots.safetensors`.", "",
            "Modes (`spectral_edge.analysis.modes.run_modes`, the defaults of METHODS §7): the last W = 20 updates of "
            "the attention block, mean-centred, SVD; v1–v3 are the edge, v4–v8 the bulk, and 5 random unit "
            "directions in the same block (seed 0) are the other null. The model's attention weights move by "
            "ε = 0.005·‖θ_attn‖ along each direction; the response f_k(a, b) = ‖Δh‖² at the read-out state (before "
            "the final LayerNorm) is averaged over the classes of each basis on the test pairs and folded into the "
            "normalised DFT power at ω = 1…⌊period/2⌋. F is the top-1 share (a flat spectrum: 1/48 = 0.021 at "
            "p = 97). Each operation's claims are read in its basis: add, sub, dlog for mul, the answer for "
            "x² + y², add for the tri-task model.", "",
            ("Every run counts for the claims in this quick check (its models never generalise); a reproduction "
             f"counts only models that generalised (final test accuracy ≥ {MIN_TEST_ACC:g}: METHODS §7 reads the modes "
             "of a grokked model). " if rec.get("quick") else
             f"Only models that generalised count for the claims (final test accuracy ≥ {rec.get('min_acc', 0):g}: "
             "METHODS §7 reads the modes of a grokked model). ")
            + f"The alternative choices ({', '.join(label for label, _ in CHOICES.values())}) are computed on the seed "
            f"{rec.get('choice_seed')} run of each operation only: the same trained models, analysed again.", ""]


def _claims(claims: Sequence[Claim]) -> list[str]:
    L = ["## Claims and measurements", ""]
    L += table(["claim (papers)", "papers' setup", "our measurement", "our setup", "verdict"],
               [(c.claim, c.paper_setup, c.ours, c.our_setup, f"**{c.verdict}** — {c.why}") for c in claims])
    return L + ["", modes_rules_text(), ""]


def _choices(rec: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names = list(rec.get("choices") or {})
    labels = [rec["choices"][n]["label"] for n in names]
    L = ["## Where a claim depends on a choice", "",
         f"Each claim judged again on the seed-{rec.get('choice_seed')} runs (one per operation) under each "
         "alternative, beside the default on the same runs (a verdict here can differ from the table above, which "
         "uses every seed).", ""]
    L += table(["claim", "default (W = 20, centred, ε = 0.005)", *labels],
               [(r["key"], *(f"**{r['cells'][n][0]}** — {r['cells'][n][1]}" for n in ["default", *names]))
                for r in rows])
    dep = [(r["key"], [rec["choices"][n]["label"] for n in r["depends"]]) for r in rows if r["depends"]]
    L += ["", ("Claims whose verdict changes with a choice: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in dep)
               + ".") if dep else "No claim's verdict changes with these choices.", ""]
    return L


def _primary_number(r: Mapping[str, Any]) -> str:
    s = r["modes"].get("summary") or {}
    if "addition" in s and r["op"] == "add":
        return "one ω" if s["addition"].get("one_omega") else "several ω"
    if "multiplication" in s and r["op"] == "mul":
        return f"dlog ÷ mul {fmt(s['multiplication'].get('dlog_over_mul'), 1)}×"
    if "subtraction" in s and r["op"] == "sub":
        return f"{fmt(s['subtraction'].get('modes_mean'), 1)} effective modes"
    if r["op"] == "multitask" and "multitask" in s:
        return f"add ω {s['multitask'].get('add_omega')}, share {fmt(s['multitask'].get('add_share_at_omega'))}"
    if "x2y2" in s:
        return f"R² full ÷ combined {fmt(s['x2y2'].get('cross_gain'), 2)}×"
    return "–"


def _runs_table(rec: Mapping[str, Any]) -> list[str]:
    rows = []
    order = {op: i for i, op in enumerate(OP_ORDER)}
    for r in sorted(rec.get("runs", []), key=lambda r: (order.get(r["op"], 9), r["seed"])):
        s = r["modes"].get("summary") or {}
        e, n = s.get("edge") or {}, s.get("nulls") or {}
        rows.append((r["run"], fmt_dash(r.get("grok_step")), fmt_dash(r.get("steps_run")), fmt(r.get("final_test_acc"), 3),
                     s.get("basis"),
                     ", ".join("–" if w is None else str(w) for w in e.get("omega", [])), fmt(e.get("F_mean")),
                     fmt(n.get("bulk_F_mean")), f"{fmt(n.get('random_F_mean'))} ({fmt(n.get('random_F_max'))})",
                     fmt(n.get("edge_over_random"), 2), _primary_number(r)))
    L = ["## Runs", ""]
    L += table(["run", "grok step (≥ 0.9)", "steps", "final test acc", "basis", "ω of v1–v3", "edge F", "bulk F",
                "random F (max)", "edge ÷ random", "the operation's number"], rows)
    return L + ["", f"F: mean top-1 power share in the run's basis; uniform level 1/⌊period/2⌋ "
                f"({fmt(_uniform(rec))} here).", ""]


def _uniform(rec: Mapping[str, Any]) -> float | None:
    for r in rec.get("runs", []):
        u = (r["modes"].get("summary") or {}).get("uniform")
        if u is not None:
            return u
    return None


def _figures(figs: Mapping[str, Mapping[str, str]], fig_rel: str) -> list[str]:
    L = ["## Figures", ""] if figs else []
    for key in ("spectra", "heatmap"):
        if key in figs:
            L += [f"![{key}]({fig_rel}/{figs[key]['file']})", "", figs[key]["caption"], ""]
    return L


def _missing(rec: Mapping[str, Any], missing: Sequence[str]) -> list[str]:
    L: list[str] = []
    if missing:
        L += [f"**Not finished (or holding another config) when this page was written ({len(missing)} runs, left "
              "out of every number here):** "
              + ", ".join(f"`{m}`" for m in missing) + ".", ""]
    if rec.get("failed"):
        L += ["**Modes that could not be computed:** " + "; ".join(f"`{f['run']}` ({f['choice']}): {f['error']}"
                                                                  for f in rec["failed"]) + ".", ""]
    return L


def _timing(rec: Mapping[str, Any]) -> list[str]:
    secs = [_finite(r.get("wall_seconds")) for r in rec.get("runs", [])]
    per = ", ".join(f"{r['run']} {hms(r.get('wall_seconds'))}" for r in rec.get("runs", []))
    return ["## Timing", "",
            f"Training: {hms(sum(s for s in secs if s))} of run time in all ({per}), one torch thread per run "
            "on a CPU shared with other jobs. "
            f"Modes: {hms(rec.get('timing', {}).get('analysis_seconds'))} for the {rec.get('timing', {}).get('analyses')} "
            "analyses of this page (one thread, each computed once and cached with the runs).", ""]


def render_modes_document(rec: Mapping[str, Any], figures: Mapping[str, Mapping[str, str]], *,
                          missing: Sequence[str] = (), env: Mapping[str, Any] | None = None,
                          fig_rel: str = "figures") -> str:
    """The Markdown page (every number from ``rec``, with ``rec["claims"]`` and ``rec["choice_rows"]``)."""
    env = env or {}
    L = ["# Functional modes: what the spectral-edge directions compute", "",
         f"Generated by `spectral-edge reproduce modes{' --quick' if rec.get('quick') else ''}` from the runs in "
         f"`{env.get('out', 'results/modes')}` (torch {env.get('torch', '?')}, no GPU). Every number below was "
         "measured on those runs; the papers' numbers are quoted as claims (METHODS §7). `docs/data/modes` holds "
         "every run's config, summary, evaluation curve and history and the cached mode analyses (no weights or "
         "snapshots); `spectral-edge reproduce modes --out docs/data/modes --no-train` recomputes this page from "
         "them.", ""]
    if rec.get("quick"):
        L += ["> **Quick pipeline check, not a reproduction**: tiny runs that never generalise; the numbers mean "
              "nothing.", ""]
    L += _missing(rec, missing)
    L += _setup(rec)
    L += _claims([Claim(**c) for c in rec["claims"]])
    L += _choices(rec, rec.get("choice_rows", []))
    L += _runs_table(rec)
    L += _figures(figures, fig_rel)
    L += _timing(rec)
    L += ["How to regenerate: `spectral-edge reproduce modes --out <folder>` (trains what is missing, resumable, "
          "then rewrites this page; `--no-train` documents the finished runs only).", ""]
    return "\n".join(L)

