"""Offline throughput: ``analyze`` on a folder of safetensors checkpoints, divided by the time
to merely load the same files (every tensor materialised), both measured in one run.

Writes ``--n`` checkpoints of a GPT-2-shaped model with ``--layers`` layers (default 4 layers,
about 68M float32 parameters with the 50257-token embedding) into a temporary folder, warms
the page cache, then alternates ``--repeats`` times: plain load, analyze (fold, d = 100,
W = 10) with the numba kernel, and analyze on the torch path (``SPECTRAL_EDGE_FOLD_KERNEL=torch``).
Prints the best time of each, their ratios, and the once-per-process costs (imports, loading
the kernel, drawing the projection) measured in a fresh interpreter.

Usage: python benchmarks/bench_analyze_throughput.py [--n 12] [--layers 4] [--repeats 5] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bench_sketch_speed import gpt2_shapes
from spectral_edge.engine import AnalysisConfig, analyze_checkpoints
from spectral_edge.functional import fold_kernel
from spectral_edge.functional.sketch import SketchSpec


def write_folder(folder: Path, n: int, layers: int, dtype: torch.dtype = torch.float32) -> int:
    g = torch.Generator().manual_seed(0)
    shapes = gpt2_shapes(n_layer=layers)
    state = {k: torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}
    for i in range(n):
        for t in state.values():
            t.add_(torch.randn(t.shape, generator=g), alpha=1e-4)
        save_file({k: t.to(dtype) for k, t in state.items()}, str(folder / f"step_{i * 100:06d}.safetensors"))
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


def one_off_costs() -> dict[str, float]:
    """Per-process costs outside the per-checkpoint rate, measured in a fresh interpreter:
    importing the package, loading the numba kernel, drawing fold's projection."""
    code = (
        "import time, json; t0 = time.perf_counter()\n"
        "import spectral_edge.engine\n"
        "from spectral_edge.functional import fold_kernel\n"
        "from spectral_edge.functional.sketch import _fold_projection\n"
        "t1 = time.perf_counter(); k = fold_kernel.kernel(); t2 = time.perf_counter()\n"
        "_fold_projection(0, 16381, 100); t3 = time.perf_counter()\n"
        "print(json.dumps({'import': t1 - t0, 'kernel': t2 - t1, 'projection': t3 - t2, 'numba': k is not None}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                    help="dtype the checkpoints are saved in")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="se-bench-") as tmp:
        folder = Path(tmp)
        P = write_folder(folder, args.n, args.layers, getattr(torch, args.dtype))
        size = sum(f.stat().st_size for f in folder.iterdir())
        cfg = AnalysisConfig(windows=(10,), sketch=SketchSpec("fold", dim=100))
        kernel = "numba" if fold_kernel.kernel() is not None else "torch"

        def analyze(path: str) -> float:
            os.environ[fold_kernel.ENV] = path
            try:
                t0 = time.perf_counter()
                res = analyze_checkpoints(folder, cfg)
                assert len(res.rows) == max(0, args.n - 10)
                return time.perf_counter() - t0
            finally:
                os.environ.pop(fold_kernel.ENV)

        load_plain(folder)  # warm the page cache, the kernel and the projection
        analyze("auto")
        rounds = []
        for _ in range(args.repeats):  # interleaved, so machine noise hits all three alike
            t_load = time.perf_counter()
            load_plain(folder)
            t_load = time.perf_counter() - t_load
            rounds.append((t_load, analyze("auto"), analyze("torch")))
        cold = one_off_costs()
    best = [min(r[i] for r in rounds) for i in range(3)]
    med = [statistics.median(r[i] / r[0] for r in rounds) for i in (1, 2)]
    print(f"{args.n} checkpoints of {P:,} {args.dtype} parameters ({size / 2**30:.2f} GiB), {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved rounds (best time; median of the per-round ratios)")
    print(f"plain load (+ a sum)            : {best[0]:6.3f} s  ({size / 2**20 / best[0]:6.0f} MiB/s)")
    print(f"analyze, fold kernel = {kernel:<6}   : {best[1]:6.3f} s  ratio {best[1] / best[0]:5.2f} (median {med[0]:5.2f})   goal ≤ 2")
    print(f"analyze, fold kernel = torch    : {best[2]:6.3f} s  ratio {best[2] / best[0]:5.2f} (median {med[1]:5.2f})")
    print(f"once per process (not in the rates above): import {cold['import']:.2f} s, numba kernel load "
          f"{cold['kernel']:.2f} s, fold projection {cold['projection']:.3f} s")


if __name__ == "__main__":
    main()
