"""Accuracy of sketched window spectra against the exact window (METHODS.md §3).

Given a trajectory (a list of parameter states), :func:`jl_errors` sketches its updates with
each family at each dimension d over many projection seeds and compares every window's gap
ratio R = σ_k*/σ_k*+1 (each side with its own k*, default rule), r_12 and r_23 with the exact
window.

The dense Gaussian JL is expensive to run (O(P·d) random numbers per update) but its
distribution is known exactly: for updates X (T × P) and S with i.i.d. N(0, 1/d) entries,
``Y = X Sᵀ`` is matrix-normal with row covariance ``G = X Xᵀ``, so ``Y ≐ G^½ Z`` with Z a
T × d matrix of N(0, 1/d). ``gaussian-exact-law`` draws from that law directly (hundreds of
draws in seconds), giving a well-powered reference; the real ``gaussian`` family, run on a
few seeds, checks that the two agree.

Errors are pooled over windows × seeds (median, 95th percentile). Windows of one seed share
a projection and are strongly correlated, so the seed is the unit of replication: the
``seed_median_mean`` ± ``seed_median_se`` columns (mean and standard error over seeds of the
per-seed median error) are the numbers to compare families with.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .._compat import renamed_kwargs
from ..functional import spectrum as sp
from ..functional.debias import debias_eigenvalues
from ..functional.sketch import SketchSpec

EXACT_LAW = "gaussian-exact-law"
FAMILIES = ("gaussian", "fold", "countsketch")


def deltas_of(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Name → (T, numel) float64 updates between consecutive states."""
    return {n: torch.stack([(b[n].double() - a[n].double()).reshape(-1) for a, b in zip(states, states[1:])])
            for n in states[0]}


def window_metrics(G: np.ndarray, W: int, d: int | None = None) -> np.ndarray:
    """(n_windows, 4): R, r12, r23, k* for every right-aligned window of the pairwise Gram G;
    eigenvalues debiased for a d-dimensional sketch when ``d`` is given."""
    out = []
    for t in range(W - 1, G.shape[0]):
        lam, _ = sp.eig_gram(G[t - W + 1 : t + 1, t - W + 1 : t + 1])
        if d is not None:
            lam = debias_eigenvalues(lam, d, n_draws=100, iters=60, tol=1e-5)
        s = np.sqrt(lam)
        k = sp.k_star(s)
        r = sp.ratios(s)
        out.append((r[k - 1] if k > 0 else np.nan, r[0], r[1] if r.size > 1 else np.nan, k))
    return np.array(out, dtype=np.float64)


def exact_law_sketch(G: np.ndarray, d: int, rng: np.random.Generator) -> np.ndarray:
    """Gram of one draw from the exact law of a dense Gaussian sketch: ``L Z (L Z)ᵀ`` with
    ``L Lᵀ = G`` and Z (T × d) i.i.d. N(0, 1/d)."""
    w, V = np.linalg.eigh(G)
    L = V * np.sqrt(np.clip(w, 0, None))
    Y = L @ rng.standard_normal((G.shape[0], d)) / np.sqrt(d)
    return Y @ Y.T


@renamed_kwargs(W="window")
def jl_errors(name: str, states: Sequence[Mapping[str, torch.Tensor]], dims: Sequence[int], *, window: int = 10,
              families: Sequence[str] = (EXACT_LAW, "fold", "countsketch", "gaussian"),
              seeds: Mapping[str, int] | int = 10, debias: bool = True, log: Any = None) -> list[dict[str, Any]]:
    """One row per (family, d): pooled and per-seed error statistics (see module docs).

    ``window``: the window size W. ``seeds``: projection seeds per family (an int for all, or a
    mapping family → count).
    """
    W = int(window)
    D = deltas_of(states)
    X = torch.cat(list(D.values()), dim=1).numpy()
    G0 = X @ X.T
    exact = window_metrics(G0, W)
    rows = []
    for fam in families:
        n_seeds = seeds if isinstance(seeds, int) else int(seeds.get(fam, 10))
        for d in dims:
            t0 = time.perf_counter()
            err = {"R": [], "r12": [], "r23": [], "R_debiased": []}
            agree, seed_medians, seed_medians_deb = [], [], []
            for seed in range(n_seeds):
                if fam == EXACT_LAW:
                    G = exact_law_sketch(G0, d, np.random.default_rng([seed, d]))
                else:
                    Y = SketchSpec(fam, dim=d, seed=seed).build().sketch_rows(D).numpy()  # (T, d)
                    G = Y @ Y.T
                m = window_metrics(G, W)
                e = np.abs(m[:, :3] / exact[:, :3] - 1)
                err["R"].append(e[:, 0])
                err["r12"].append(e[:, 1])
                err["r23"].append(e[:, 2])
                agree.append(m[:, 3] == exact[:, 3])
                seed_medians.append(float(np.nanmedian(e[:, 0])))
                if debias:
                    md = window_metrics(G, W, d)
                    ed = np.abs(md[:, 0] / exact[:, 0] - 1)
                    err["R_debiased"].append(ed)
                    seed_medians_deb.append(float(np.nanmedian(ed)))
            row: dict[str, Any] = {"trajectory": name, "P": X.shape[1], "family": fam, "d": d, "d_over_W": d / W,
                                   "seeds": n_seeds, "windows": len(exact), "seconds": time.perf_counter() - t0,
                                   "kstar_agreement": float(np.mean(np.concatenate(agree)))}
            for key, vals in err.items():
                if vals:
                    v = np.concatenate(vals)
                    row[f"{key}_median_pct"] = 100 * float(np.nanmedian(v))
                    row[f"{key}_p95_pct"] = 100 * float(np.nanpercentile(v, 95))
            for key, sm in (("seed_median", seed_medians), ("seed_median_debiased", seed_medians_deb)):
                if sm:
                    row[f"{key}_mean_pct"] = 100 * float(np.mean(sm))
                    row[f"{key}_se_pct"] = 100 * float(np.std(sm, ddof=1) / np.sqrt(len(sm))) if len(sm) > 1 else np.nan
            rows.append(row)
            if log is not None:
                log(row)
    return rows


def format_row(row: Mapping[str, Any]) -> str:
    """One human line for a :func:`jl_errors` row."""
    s = (f"  {row['trajectory']:<9} {row['family']:<19} d={row['d']:<5} R err median {row['R_median_pct']:5.1f}%  "
         f"p95 {row['R_p95_pct']:5.1f}%  per-seed {row['seed_median_mean_pct']:5.1f} ± "
         f"{row.get('seed_median_se_pct', float('nan')):.1f}%")
    if "R_debiased_median_pct" in row:
        s += f"  | debiased median {row['R_debiased_median_pct']:5.1f}%  p95 {row['R_debiased_p95_pct']:5.1f}%"
    return s + f"  | k* agree {100 * row['kstar_agreement']:3.0f}%  ({row['seconds']:.0f}s, {row['seeds']} seeds)"
