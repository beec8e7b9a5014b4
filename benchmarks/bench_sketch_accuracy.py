"""Accuracy of sketched window spectra against the exact window (METHODS.md §3).

For every sketch family and dimension d, over many projection seeds, and for every window of
a trajectory: the relative error of the gap ratio R = σ_k*/σ_k*+1 (each side with its own k*,
default rule), of r_12 and r_23, and the k* agreement with the exact window; also after
eigenvalue debiasing (:mod:`spectral_edge.functional.debias`). The measurement itself lives in
:mod:`spectral_edge.analysis.jl`; the reference is the exact law of the dense Gaussian JL
(hundreds of draws), checked against the real ``gaussian`` family on fewer seeds.

Two trajectories:
(a) planted: matrix-shaped rank-one signal directions plus AR(1) noise and drift on
    power-of-two matrices (the hard case for structured sketches);
(b) real: the reference modular-arithmetic transformer (METHODS §9, ~290k parameters)
    trained on addition mod 97 with AdamW, sampled every 25 steps.

Usage: python benchmarks/bench_sketch_accuracy.py [--quick] [--out benchmarks/results]
Prints a table, writes a CSV and (with matplotlib) a plot of the error against d.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from spectral_edge.analysis.jl import EXACT_LAW, format_row, jl_errors
from spectral_edge.synthetic import PlantedSpec, planted_trajectory

W = 10


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="d = 10W only, fewer seeds")
    ap.add_argument("--no-debias", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    dims = [10 * W] if args.quick else [2 * W, 5 * W, 10 * W, 20 * W, 50 * W, 100 * W]
    seeds = ({EXACT_LAW: 50, "fold": 10, "countsketch": 5, "gaussian": 3} if args.quick else
             {EXACT_LAW: 200, "fold": 40, "countsketch": 15, "gaussian": 6})
    families = (EXACT_LAW, "fold", "countsketch", "gaussian")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"gap-ratio error against the exact window, W = {W}; seeds per family {seeds}")
    rows = []
    for name, states in (("planted", planted_states()),
                         ("modular", modular_states(args.out / "cache_modular_states.pt"))):
        rows += jl_errors(name, states, dims, W=W, families=families, seeds=seeds, debias=not args.no_debias,
                          log=lambda r: print(format_row(r), flush=True))
    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(args.out / "sketch_accuracy.csv", index=False)
    print()
    for traj in df["trajectory"].unique():
        sub = df[(df.trajectory == traj) & (df.d == 10 * W)].set_index("family")
        ref = sub.loc[EXACT_LAW]
        for fam in ("fold", "countsketch", "gaussian"):
            r = sub.loc[fam]
            print(f"{traj}: d = 10W, {fam} per-seed median error {r['seed_median_mean_pct']:.1f} ± "
                  f"{r['seed_median_se_pct']:.1f}% vs dense Gaussian (exact law) {ref['seed_median_mean_pct']:.1f} ± "
                  f"{ref['seed_median_se_pct']:.1f}%: ratio {r['seed_median_mean_pct'] / ref['seed_median_mean_pct']:.2f}")
        if "seed_median_debiased_mean_pct" in sub:
            r = sub.loc["fold"]
            print(f"{traj}: d = 10W, fold debiased {r['seed_median_debiased_mean_pct']:.1f} ± "
                  f"{r['seed_median_debiased_se_pct']:.1f}% (ratio to raw dense Gaussian "
                  f"{r['seed_median_debiased_mean_pct'] / ref['seed_median_mean_pct']:.2f})")
    plot(df, args.out / "sketch_accuracy.png")


def plot(df, path: Path) -> None:
    """Error against d, one panel per trajectory (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    trajs = list(df["trajectory"].unique())
    fig, axes = plt.subplots(1, len(trajs), figsize=(6 * len(trajs), 4), squeeze=False)
    for ax, traj in zip(axes[0], trajs):
        for fam in (EXACT_LAW, "fold", "countsketch", "gaussian"):
            sub = df[(df.trajectory == traj) & (df.family == fam)].sort_values("d")
            if sub.empty:
                continue
            line, = ax.plot(sub["d"], sub["R_median_pct"], "o-", label=f"{fam} median")
            ax.plot(sub["d"], sub["R_p95_pct"], "o:", color=line.get_color(), alpha=0.6, label=f"{fam} p95")
            if fam == "fold" and "R_debiased_median_pct" in sub:
                ax.plot(sub["d"], sub["R_debiased_median_pct"], "s--", color="k", label="fold debiased median")
        ax.axvline(10 * W, color="grey", lw=0.8)
        ax.axhline(5.7, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sketch dimension d")
        ax.set_ylabel("gap-ratio relative error (%)")
        ax.set_title(f"{traj} trajectory, W = {W} (dashed: the papers' 5.7%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path.with_suffix('.csv')} and {path}")


if __name__ == "__main__":
    main()
