"""Speed and memory of sketching one GPT-2-sized (124M float32) parameter state.

Prints, from one run (so the machine's noise cancels in the ratios):

- the time of a plain read pass over the tensors (``t.sum()`` per tensor), the reference;
- the time to sketch the same state with each family, and its ratio to the read pass;
- the bytes of window state kept at W = 10, d = 100 (and that it does not grow with P).

The dense Gaussian JL is timed on the first ``--gaussian-params`` parameters and scaled
linearly (its cost is exactly linear in P); every other number is measured in full.

Usage: python benchmarks/bench_sketch_speed.py [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from spectral_edge.functional import fold_kernel
from spectral_edge.functional.sketch import SketchSpec
from spectral_edge.stream.window import SketchWindow


def gpt2_shapes(n_layer: int = 12, d: int = 768, vocab: int = 50257, ctx: int = 1024) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of GPT-2 small (124M, lm_head tied to wte so counted once)."""
    s: dict[str, tuple[int, ...]] = {"wte.weight": (vocab, d), "wpe.weight": (ctx, d)}
    for i in range(n_layer):
        p = f"h.{i}."
        s.update({
            p + "ln_1.weight": (d,), p + "ln_1.bias": (d,),
            p + "attn.c_attn.weight": (d, 3 * d), p + "attn.c_attn.bias": (3 * d,),
            p + "attn.c_proj.weight": (d, d), p + "attn.c_proj.bias": (d,),
            p + "ln_2.weight": (d,), p + "ln_2.bias": (d,),
            p + "mlp.c_fc.weight": (d, 4 * d), p + "mlp.c_fc.bias": (4 * d,),
            p + "mlp.c_proj.weight": (4 * d, d), p + "mlp.c_proj.bias": (d,),
        })
    s.update({"ln_f.weight": (d,), "ln_f.bias": (d,)})
    return s


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (caches, projection matrices, page faults)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--gaussian-params", type=int, default=2_000_000)
    ap.add_argument("--json", action="store_true", help="print a JSON record instead of a table")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    shapes = gpt2_shapes()
    state = {n: torch.randn(s, generator=g) * 0.02 for n, s in shapes.items()}
    P = sum(t.numel() for t in state.values())

    def read_pass():
        acc = 0.0
        for t in state.values():
            acc += float(t.sum())
        return acc

    t_read = best_time(read_pass, args.repeats)
    results = {"parameters": P, "threads": torch.get_num_threads(), "read_pass_s": t_read, "families": {}}
    for fam in ("fold", "countsketch"):
        sk = SketchSpec(fam, dim=100, seed=0).build()
        t = best_time(lambda: sk(state.items()), args.repeats)
        results["families"][fam] = {"seconds": t, "ratio_to_read": t / t_read}
        if fam == "fold":  # the same map without the numba kernel (torch: upcast copy + GEMV)
            results["families"][fam]["note"] = f"kernel: {'numba' if fold_kernel.kernel() else 'torch'}"
            os.environ[fold_kernel.ENV] = "torch"
            try:
                t = best_time(lambda: sk(state.items()), args.repeats)
            finally:
                os.environ.pop(fold_kernel.ENV)
            results["families"]["fold (torch)"] = {"seconds": t, "ratio_to_read": t / t_read,
                                                   "note": "SPECTRAL_EDGE_FOLD_KERNEL=torch"}
    # dense Gaussian: time a prefix of the parameters, scale by P (exactly linear work)
    sk = SketchSpec("gaussian", dim=100, seed=0).build()
    sub = torch.randn(args.gaussian_params, generator=g)
    t_sub = best_time(lambda: sk({"x": sub}), 1)
    t_g = t_sub * P / sub.numel()
    results["families"]["gaussian"] = {"seconds": t_g, "ratio_to_read": t_g / t_read,
                                       "note": f"timed on {sub.numel():,} params, scaled linearly"}
    # exact: a float64 copy of the whole state (what the exact window differences)
    t_ex = best_time(lambda: torch.cat([t.reshape(-1).double() for t in state.values()]), args.repeats)
    results["families"]["exact"] = {"seconds": t_ex, "ratio_to_read": t_ex / t_read}
    # memory kept by the window at W = 10, d = 100, for two model sizes
    win = SketchWindow(dim=100, max_window=10)
    fold = SketchSpec("fold", dim=100).build()
    results["window_state_bytes_W10_d100"] = win.nbytes()
    results["fold_projection_bytes"] = fold.projection().numel() * 8
    results["exact_window_state_bytes_W10"] = (10 + 2) * P * 8
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"state: GPT-2 small shapes, {P:,} float32 parameters, {results['threads']} threads")
    print(f"read pass (sum of every tensor): {t_read * 1e3:8.1f} ms   (ratio 1.00)")
    for fam, r in results["families"].items():
        note = f"   [{r['note']}]" if "note" in r else ""
        print(f"sketch {fam:<12} d=100:     {r['seconds'] * 1e3:8.1f} ms   ratio {r['ratio_to_read']:7.2f}{note}")
    print(f"window state kept (W=10, d=100): {results['window_state_bytes_W10_d100']:,} bytes "
          f"(independent of P); fold projection cache: {results['fold_projection_bytes'] / 2**20:.1f} MiB "
          f"(independent of P); an exact window would keep {results['exact_window_state_bytes_W10'] / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
