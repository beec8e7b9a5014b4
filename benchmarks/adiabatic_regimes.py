"""Measure the adiabatic parameter A in the three regimes the Spectral Edge Thesis names (issue 17).

A = ‖ΔG‖_F/g² per sample interval, of the Gram of the per-unit-learning-rate updates u = δ/η
(see :mod:`spectral_edge.analysis.thesis`), computed exactly by
:func:`~spectral_edge.analysis.thesis.window_thesis` on the Monitor's (exact) window after every
sample. One tiny modular-addition run per seed (the fast grokking configuration of
tests/test_experiments.py: p = 13, the TINY transformer, AdamW η = 5·10⁻³, wd = 1, batch 32,
train fraction 0.8), trained by a plain loop built from the experiment runner's own parts
(workload, optimizer, clipping, batch order), so that the learning rate can be changed mid-run:

- **plateau**: the memorised-but-not-generalised stretch: windows whose span lies after the
  first evaluation with train accuracy ≥ 0.99 and before the grok step − 100;
- **transition**: windows ending within ±60 steps of the grok step (first test accuracy ≥ 0.9);
- **stable** (a control): windows after grok + 60 up to the spike;
- **forgetting**: 100 steps after grokking the learning rate is multiplied by 30 for 300 steps
  (test accuracy collapses); the windows ending in the spike;
- **forgetting_held**: the same spike with the weight decay divided by 30 meanwhile, so that
  AdamW's decoupled shrink η·wd·θ is unchanged and only the gradient step is amplified (with
  wd = 1 the plain spike shrinks θ by 15 % a step, a steady one-direction update);
- **plateau (wd = 0)**: the same run without weight decay, which memorises and stays on its
  plateau: windows after memorisation (same number of steps as the grokking run).

The regions are fixed before looking at A. Per regime: n windows, median, range, and for
every pair the rank statistic AUC = P(A_x > A_y) (Mann–Whitney U / (n_x n_y)) and whether the
ranges overlap. Prints a table; writes the numbers to ``--out`` (JSON, refused if it exists
unless ``--overwrite``).

    python benchmarks/adiabatic_regimes.py --seeds 42 43 44 --windows 3 5 --out adiabatic_regimes.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectral_edge.analysis.thesis import window_thesis
from spectral_edge.errors import ConfigError
from spectral_edge.experiments.config import RunConfig
from spectral_edge.experiments.optim import build_optimizer
from spectral_edge.experiments.workloads import build_workload
from spectral_edge.monitor import Monitor
from spectral_edge.selection import Selection

TINY = {"d_model": 32, "d_ff": 64, "n_heads": 2}
REGIONS = ("plateau", "transition", "stable", "forgetting", "forgetting_held", "plateau_wd0")
MEMORISED = 0.99  # train accuracy
GROK = 0.9  # test accuracy (the runner's grok_threshold)
PLATEAU_BEFORE = 100  # plateau windows end this many steps before the grok step
AROUND = 60  # transition: windows ending within ± this of the grok step
SPIKE_AFTER, SPIKE_STEPS, SPIKE = 100, 300, 30.0


def _config(seed: int, window: int, weight_decay: float, lr: float) -> RunConfig:
    return RunConfig(op="add", modulus=13, steps=3000, eval_every=20, every=10, windows=(window,), batch_size=32,
                     lr=lr, train_frac=0.8, stop_margin=100, model=TINY, seed=seed, weight_decay=weight_decay,
                     sketch="exact")


def train(cfg: RunConfig, *, spike: bool, max_steps: int | None = None, hold_decay: bool = False) -> dict[str, Any]:
    """Train ``cfg`` (the runner's workload, optimizer, clipping and batch order) with an exact Monitor;
    after every sample, A of the newest window (per-update η). With ``spike``: η × SPIKE for
    SPIKE_STEPS steps from grok + SPIKE_AFTER (a multiple of ``every``), then stop; ``hold_decay``:
    weight decay ÷ SPIKE meanwhile, so that AdamW's decoupled shrink η·wd stays as it was."""
    W, every = cfg.windows[0], cfg.every
    wl = build_workload(cfg)
    model = wl.model
    opt = build_optimizer(cfg, model)
    base = [(g["lr"], g.get("weight_decay", 0.0)) for g in opt.param_groups]
    mon = Monitor(model, windows=(W,), every=every, sketch="exact", selection=Selection(preset=cfg.selection))
    win = next(iter(mon.updates.windows.values()))
    gen = torch.Generator().manual_seed(cfg.effective_data_seed)
    lrs: list[float] = []  # η of each sampled update (constant within one: changes happen on sample steps)
    rows: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    grok = memorised = spike_start = None
    stop = max_steps or cfg.steps
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + 1)
        model.train()
        step = 0
        while step < stop:
            step += 1
            if spike and spike_start is not None:
                f = SPIKE if spike_start < step <= spike_start + SPIKE_STEPS else 1.0
                for g, (lr0, wd0) in zip(opt.param_groups, base):
                    g["lr"] = lr0 * f
                    if hold_decay and "weight_decay" in g:
                        g["weight_decay"] = wd0 / f
            batch = wl.sample_batch(gen, cfg.batch_size)
            loss = wl.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if not math.isfinite(loss.item()):
                raise ConfigError(f"seed {cfg.seed}: training diverged at step {step}")
            if step % every == 0:
                mon.step(step)
                lrs.append(float(opt.param_groups[0]["lr"]))
                if win.ready(W) and win.n_updates >= W + 1:
                    th = window_thesis(win, W, np.asarray(lrs[-(W + 1):]))
                    rows.append({"step": step, "first": step - (W - 1) * every, "A": th.A, "k_star": th.k_star,
                                 "lr": lrs[-1]})
            if step % cfg.eval_every == 0:
                model.eval()
                m = wl.evaluate(model)
                model.train()
                evals.append({"step": step, "train_acc": m["train_acc"], "test_acc": m["test_acc"]})
                if memorised is None and m["train_acc"] >= MEMORISED:
                    memorised = step
                if grok is None and m["test_acc"] >= GROK:
                    grok = step
                    if spike:
                        spike_start = grok + SPIKE_AFTER
                        stop = spike_start + SPIKE_STEPS  # may run past cfg.steps
            if not spike and max_steps is None and grok is not None and step >= grok + cfg.stop_margin:
                break
    return {"rows": rows, "evals": evals, "grok_step": grok, "memorised_step": memorised,
            "spike_start": spike_start, "steps": step}


def _regions(run: dict[str, Any], nogrow: dict[str, Any] | None, held: dict[str, Any] | None) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in REGIONS}
    g, m, s = run["grok_step"], run["memorised_step"], run["spike_start"]
    for r in run["rows"]:
        if g is not None and m is not None and r["first"] > m and r["step"] <= g - PLATEAU_BEFORE:
            out["plateau"].append(r["A"])
        if g is not None and abs(r["step"] - g) <= AROUND:
            out["transition"].append(r["A"])
        if g is not None and s is not None and g + AROUND < r["step"] <= s:
            out["stable"].append(r["A"])
        if s is not None and s < r["step"] <= s + SPIKE_STEPS:
            out["forgetting"].append(r["A"])
    if held is not None and held["spike_start"] is not None:
        hs = held["spike_start"]
        out["forgetting_held"] = [r["A"] for r in held["rows"] if hs < r["step"] <= hs + SPIKE_STEPS]
    if nogrow is not None and nogrow["memorised_step"] is not None:
        out["plateau_wd0"] = [r["A"] for r in nogrow["rows"] if r["first"] > nogrow["memorised_step"]]
    return out


def measure(seed: int = 42, window: int = 3, lr: float = 5e-3, wd0: bool = False) -> dict[str, Any]:
    """One seed and window: A per window in each region (lists), grok and spike steps, whether the
    spike collapsed test accuracy (min test accuracy in the spike < 0.5)."""
    torch.set_num_threads(1)
    run = train(_config(seed, window, 1.0, lr), spike=True)
    nogrow = held = None
    if wd0:  # the extra runs of the full study
        nogrow = train(_config(seed, window, 0.0, lr), spike=False, max_steps=run["steps"])
        held = train(_config(seed, window, 1.0, lr), spike=True, hold_decay=True)

    def low(r: dict[str, Any] | None) -> float | None:
        s = None if r is None else r["spike_start"]
        d = [e["test_acc"] for e in r["evals"] if s < e["step"] <= s + SPIKE_STEPS] if s is not None else []
        return min(d) if d else None

    during = low(run)
    return {"seed": seed, "window": window, "grok_step": run["grok_step"], "memorised_step": run["memorised_step"],
            "spike_start": run["spike_start"], "min_test_acc_in_spike": during,
            "collapsed": during is not None and during < 0.5, "min_test_acc_in_held_spike": low(held),
            "wd0_grok_step": None if nogrow is None else nogrow["grok_step"],
            "A": _regions(run, nogrow, held), "rows": run["rows"], "evals": run["evals"]}


def auc(x: Any, y: Any) -> float:
    """P(X > Y) + ½P(X = Y) over all pairs (the Mann–Whitney U statistic / (n_x n_y))."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not x.size or not y.size:
        return float("nan")
    return float(((x[:, None] > y[None, :]).sum() + 0.5 * (x[:, None] == y[None, :]).sum()) / (x.size * y.size))


def summarise(pooled: dict[str, list[float]]) -> dict[str, Any]:
    stats = {k: {"n": len(v), "median": float(np.median(v)) if v else None, "min": float(np.min(v)) if v else None,
                 "max": float(np.max(v)) if v else None,
                 "q25": float(np.quantile(v, 0.25)) if v else None, "q75": float(np.quantile(v, 0.75)) if v else None}
             for k, v in pooled.items()}
    pairs = {}
    keys = [k for k in REGIONS if pooled.get(k)]
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            overlap = not (stats[a]["max"] < stats[b]["min"] or stats[b]["max"] < stats[a]["min"])
            pairs[f"{a}>{b}"] = {"auc": auc(pooled[a], pooled[b]), "ranges_overlap": overlap}
    return {"regions": stats, "pairs": pairs}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def _write_json(path: Path, doc: Any, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists; pass --overwrite to replace it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--windows", type=int, nargs="+", default=[3, 5])
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--out", type=Path, default=None, help="JSON with every number (default: none written)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    if args.out is not None and args.out.exists() and not args.overwrite:
        print(f"error: {args.out}: already exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    doc: dict[str, Any] = {"config": {"seeds": args.seeds, "windows": args.windows, "lr": args.lr,
                                      "memorised": MEMORISED, "grok": GROK, "plateau_before": PLATEAU_BEFORE,
                                      "around": AROUND, "spike": SPIKE, "spike_after": SPIKE_AFTER,
                                      "spike_steps": SPIKE_STEPS}, "windows": {}}
    for W in args.windows:
        runs = [measure(seed, W, args.lr, wd0=True) for seed in args.seeds]
        pooled = {k: [a for r in runs for a in r["A"][k]] for k in REGIONS}
        summ = summarise(pooled)
        summ["runs"] = [{k: r[k] for k in ("seed", "grok_step", "memorised_step", "spike_start",
                                           "min_test_acc_in_spike", "collapsed", "min_test_acc_in_held_spike",
                                           "wd0_grok_step")}
                        | {"A": r["A"]} for r in runs]
        doc["windows"][str(W)] = summ
        print(f"\nW = {W}, seeds {args.seeds} (grok steps {[r['grok_step'] for r in runs]}, "
              f"min test acc in the spike {[_r(r['min_test_acc_in_spike']) for r in runs]}, "
              f"with wd held {[_r(r['min_test_acc_in_held_spike']) for r in runs]})")
        print(f"{'regime':<16} {'n':>4} {'median':>9} {'q25':>9} {'q75':>9} {'min':>9} {'max':>9}")
        for k in REGIONS:
            s = summ["regions"][k]
            if s["n"]:
                print(f"{k:<16} {s['n']:>4} {s['median']:>9.3g} {s['q25']:>9.3g} {s['q75']:>9.3g} "
                      f"{s['min']:>9.3g} {s['max']:>9.3g}")
        for name, p in summ["pairs"].items():
            print(f"  AUC P({name.replace('>', ' > ')}) = {p['auc']:.2f}, ranges overlap: {p['ranges_overlap']}")
    doc["seconds"] = time.perf_counter() - t0
    print(f"\n{doc['seconds']:.0f} s")
    if args.out is not None:
        _write_json(args.out, doc, args.overwrite)
        print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
