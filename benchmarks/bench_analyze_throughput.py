"""Offline throughput: ``analyze`` on a folder of safetensors checkpoints, divided by the time
to merely load the same files (every tensor materialised), both measured in one run.

Writes ``--n`` checkpoints of a GPT-2-shaped model with ``--layers`` layers (default 4 layers,
about 46M float32 parameters with the 50257-token embedding) into a temporary folder, warms
the page cache, then alternates: plain load, analyze (fold, d = 100, W = 10), ``--repeats``
times, and prints the best time of each and their ratio.

Usage: python benchmarks/bench_analyze_throughput.py [--n 12] [--layers 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bench_sketch_speed import gpt2_shapes
from spectral_edge.engine import AnalysisConfig, analyze_checkpoints
from spectral_edge.functional.sketch import SketchSpec


def write_folder(folder: Path, n: int, layers: int) -> int:
    g = torch.Generator().manual_seed(0)
    shapes = gpt2_shapes(n_layer=layers)
    state = {k: torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}
    for i in range(n):
        for t in state.values():
            t.add_(torch.randn(t.shape, generator=g), alpha=1e-4)
        save_file(state, str(folder / f"step_{i * 100:06d}.safetensors"))
    return sum(t.numel() for t in state.values())


def load_plain(folder: Path) -> float:
    """Load every tensor of every checkpoint and touch every element (a sum): what any analysis
    must at least do. ``get_tensor`` alone only maps the file; the sum makes the bytes arrive."""
    acc = 0.0
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                acc += float(h.get_tensor(k).sum())
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="se-bench-") as tmp:
        folder = Path(tmp)
        P = write_folder(folder, args.n, args.layers)
        size = sum(f.stat().st_size for f in folder.iterdir())
        load_plain(folder)  # warm the page cache
        cfg = AnalysisConfig(windows=(10,), sketch=SketchSpec("fold", dim=100))
        t_load, t_an = float("inf"), float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            load_plain(folder)
            t_load = min(t_load, time.perf_counter() - t0)
            t0 = time.perf_counter()
            res = analyze_checkpoints(folder, cfg)
            t_an = min(t_an, time.perf_counter() - t0)
        print(f"{args.n} checkpoints of {P:,} float32 parameters ({size / 2**30:.2f} GiB), {torch.get_num_threads()} threads")
        print(f"plain load (+ a sum)       : {t_load:7.2f} s  ({size / 2**20 / t_load:6.0f} MiB/s)")
        print(f"analyze (fold d=100, W=10) : {t_an:7.2f} s  → {len(res.rows)} rows")
        print(f"ratio analyze / load       : {t_an / t_load:7.2f}   (goal ≤ 2)")


if __name__ == "__main__":
    main()
