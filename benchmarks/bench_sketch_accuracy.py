"""Accuracy of sketched window spectra against the exact window (METHODS.md §3).

For every sketch family and dimension d, over many projection seeds, and for every window of
a trajectory, the relative error of the gap ratio R = σ_k*/σ_k*+1 (each side with its own k*,
default rule), of r_12 = σ1/σ2 and r_23 = σ2/σ3, and the k* agreement with the exact window.
Also the same numbers after :func:`~spectral_edge.functional.debias.debias_eigenvalues`.

Two trajectories:
(a) planted: matrix-shaped rank-one signal directions plus AR(1) noise and drift on
    power-of-two matrices (the hard case for structured sketches);
(b) real: the reference modular-arithmetic transformer (METHODS §9, ~290k parameters)
    trained on addition mod 97 with AdamW, sampled every 25 steps.

Usage: python benchmarks/bench_sketch_accuracy.py [--quick] [--seeds 10] [--out benchmarks/results]
Prints a table (median and 95th percentile of the relative error, in %) and writes a CSV and,
if matplotlib is installed, a plot of the error against d.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from spectral_edge.functional import spectrum as sp
from spectral_edge.functional.debias import debias_eigenvalues
from spectral_edge.functional.sketch import SketchSpec
from spectral_edge.synthetic import PlantedSpec, planted_trajectory

W = 10
FAMILIES = ("gaussian", "fold", "countsketch")


def planted_states() -> list[dict[str, torch.Tensor]]:
    shapes = {
        "layers.0.attn.q_proj.weight": (256, 256),
        "layers.0.attn.v_proj.weight": (256, 256),
        "layers.0.mlp.fc.weight": (512, 256),
        "layers.1.attn.q_proj.weight": (256, 256),
        "layers.1.mlp.fc.weight": (512, 256),
        "layers.1.norm.weight": (256,),
    }
    spec = PlantedSpec(shapes=shapes, n_samples=51, rank=3, amplitudes=(5.0, 3.5, 2.5), noise_corr=0.5,
                       drift=1.5, seed=11)
    return [st for _, st in planted_trajectory(spec)]


def modular_states(cache: Path, steps: int = 2000, every: int = 25) -> list[dict[str, torch.Tensor]]:
    """Train the reference model on add mod 97 and keep the parameters every ``every`` steps."""
    if cache.exists():
        return torch.load(cache, weights_only=True)
    from spectral_edge.models.transformer import GrokTransformer, TransformerConfig
    from spectral_edge.tasks.modular import make_modular, sample_batch

    data = make_modular("add", p=97, seed=42)
    torch.manual_seed(42)
    model = GrokTransformer(TransformerConfig.modular(97))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(0)
    states = [{n: p.detach().clone() for n, p in model.named_parameters()}]
    for step in range(1, steps + 1):
        x, y = sample_batch(data.train_x, data.train_y, batch_size=512, generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % every == 0:
            states.append({n: p.detach().clone() for n, p in model.named_parameters()})
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(states, cache)
    return states


def deltas_of(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Name → (T, numel) float64 updates between consecutive states."""
    return {n: torch.stack([(b[n].double() - a[n].double()).reshape(-1) for a, b in zip(states, states[1:])])
            for n in states[0]}


def window_metrics(G: np.ndarray, d: int | None) -> list[tuple[float, float, float, int]]:
    """(R, r12, r23, k*) for every window of the pairwise Gram G; debiased when d is given."""
    out = []
    T = G.shape[0]
    for t in range(W - 1, T):
        lam, _ = sp.eig_gram(G[t - W + 1 : t + 1, t - W + 1 : t + 1])
        if d is not None:
            lam = debias_eigenvalues(lam, d, n_draws=100, iters=60, tol=1e-5)
        s = np.sqrt(lam)
        k = sp.k_star(s)
        r = sp.ratios(s)
        out.append((r[k - 1], r[0], r[1], k))
    return out


def run(name: str, states, dims, seeds, debias: bool) -> list[dict]:
    D = deltas_of(states)
    X = torch.cat(list(D.values()), dim=1).numpy()
    exact = window_metrics(X @ X.T, None)
    P = X.shape[1]
    rows = []
    for fam in FAMILIES:
        for d in dims:
            t0 = time.perf_counter()
            errs = {"R": [], "r12": [], "r23": [], "agree": [], "R_debiased": []}
            for seed in seeds:
                Y = SketchSpec(fam, dim=d, seed=seed).build().sketch_rows(D).numpy()  # (T, d)
                G = Y @ Y.T
                for (R, r12, r23, k), (R0, r120, r230, k0) in zip(window_metrics(G, None), exact):
                    errs["R"].append(abs(R / R0 - 1))
                    errs["r12"].append(abs(r12 / r120 - 1))
                    errs["r23"].append(abs(r23 / r230 - 1))
                    errs["agree"].append(k == k0)
                if debias:
                    for (R, *_), (R0, *_) in zip(window_metrics(G, d), exact):
                        errs["R_debiased"].append(abs(R / R0 - 1))
            row = {"trajectory": name, "P": P, "family": fam, "d": d, "d_over_W": d / W, "seeds": len(seeds),
                   "windows": len(exact), "seconds": time.perf_counter() - t0,
                   "kstar_agreement": float(np.mean(errs["agree"]))}
            for key in ("R", "r12", "r23", "R_debiased"):
                if errs[key]:
                    row[f"{key}_median_pct"] = 100 * float(np.median(errs[key]))
                    row[f"{key}_p95_pct"] = 100 * float(np.percentile(errs[key], 95))
            rows.append(row)
            print(f"  {name:<9} {fam:<12} d={d:<4} R err median {row['R_median_pct']:5.1f}%  p95 {row['R_p95_pct']:5.1f}%"
                  + (f"  | debiased median {row['R_debiased_median_pct']:5.1f}%  p95 {row['R_debiased_p95_pct']:5.1f}%"
                     if debias else "")
                  + f"  | k* agree {100 * row['kstar_agreement']:4.0f}%  ({row['seconds']:.0f}s)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="d = 10W only, 4 seeds")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--no-debias", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    dims = [10 * W] if args.quick else [2 * W, 5 * W, 10 * W, 20 * W, 50 * W]
    seeds = list(range(4 if args.quick else args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"gap-ratio error against the exact window, W = {W}, seeds {len(seeds)}")
    rows += run("planted", planted_states(), dims, seeds, not args.no_debias)
    rows += run("modular", modular_states(args.out / "cache_modular_states.pt"), dims, seeds, not args.no_debias)
    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(args.out / "sketch_accuracy.csv", index=False)
    print()
    for traj in df["trajectory"].unique():
        sub = df[(df.trajectory == traj) & (df.d == 10 * W)].set_index("family")
        ref = sub.loc["gaussian", "R_median_pct"]
        print(f"{traj}: at d = 10W, median R error fold/gaussian = {sub.loc['fold', 'R_median_pct'] / ref:.2f}, "
              f"countsketch/gaussian = {sub.loc['countsketch', 'R_median_pct'] / ref:.2f}"
              + (f"; debiased fold/gaussian = {sub.loc['fold', 'R_debiased_median_pct'] / ref:.2f}"
                 if "R_debiased_median_pct" in sub else ""))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    trajs = list(df["trajectory"].unique())
    fig, axes = plt.subplots(1, len(trajs), figsize=(6 * len(trajs), 4), squeeze=False)
    for ax, traj in zip(axes[0], trajs):
        for fam in FAMILIES:
            sub = df[(df.trajectory == traj) & (df.family == fam)].sort_values("d")
            line, = ax.plot(sub["d"], sub["R_median_pct"], "o-", label=f"{fam} median")
            ax.plot(sub["d"], sub["R_p95_pct"], "o:", color=line.get_color(), alpha=0.6, label=f"{fam} p95")
            if "R_debiased_median_pct" in sub and fam == "fold":
                ax.plot(sub["d"], sub["R_debiased_median_pct"], "s--", color="k", label="fold debiased median")
        ax.axvline(10 * W, color="grey", lw=0.8)
        ax.axhline(5.7, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sketch dimension d")
        ax.set_ylabel("gap-ratio relative error (%)")
        ax.set_title(f"{traj} trajectory, W = {W}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "sketch_accuracy.png", dpi=120)
    print(f"wrote {args.out / 'sketch_accuracy.csv'} and {args.out / 'sketch_accuracy.png'}")


if __name__ == "__main__":
    main()
