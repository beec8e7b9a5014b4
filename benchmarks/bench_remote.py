"""Checkpoints where they live (issue 18), side by side in one run:

1. throughput of ``analyze`` with 1 and 2 workers (local process pool, warmed before timing);
2. the same checkpoints from a local folder (memory-mapped reader), through fsspec
   (``file://``, the range reader every URL uses) and from S3 (a moto server on 127.0.0.1,
   uploaded with boto3: HTTP on loopback, so it measures the reader and the protocol, not a
   network);
3. peak memory of a worker against checkpoint size: checkpoints of k tensors of 16 MB each
   (k = 2, 8, 32: 32 MB to 512 MB) read from S3, each size in a fresh subprocess: its peak
   RSS (``VmHWM``, reset just before) during the analysis minus its RSS before it. It should stay near one tensor (the range
   reader holds one tensor's bytes, plus the library's buffers), not grow with the checkpoint.

Writes ``--n`` float16 checkpoints of a GPT-2-shaped model with ``--layers`` layers (the
dtype of Pythia's checkpoints) into a temporary folder. Prints a JSON record and the ratios.

Usage: python benchmarks/bench_remote.py [--n 8] [--layers 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource  # noqa: F401 - the driver's own peak, below
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_sketch_speed import gpt2_shapes  # noqa: E402
from remote_servers import s3_env, s3_server, upload  # noqa: E402

from spectral_edge.engine import AnalysisConfig, analyze_checkpoints  # noqa: E402
from spectral_edge.parallel import PoolExecutor  # noqa: E402

CONFIG = AnalysisConfig(windows=(5,))


def write_folder(folder: Path, n: int, layers: int) -> int:
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) * 0.02 for k, s in gpt2_shapes(n_layer=layers).items()}
    for i in range(n):
        for t in state.values():
            t.add_(torch.randn(t.shape, generator=g), alpha=1e-3)
        save_file({k: t.half() for k, t in state.items()}, str(folder / f"step_{i * 1000}.safetensors"))
    return sum((folder / f"step_{i * 1000}.safetensors").stat().st_size for i in range(n))


def timed(source: str, repeats: int, **kw) -> tuple[float, list]:
    best, rows = float("inf"), []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = analyze_checkpoints(source, CONFIG, **kw).rows
        best = min(best, time.perf_counter() - t0)
    return best, rows


CHILD = r"""
import json, sys, time
from spectral_edge.engine import AnalysisConfig, analyze_checkpoints

def status(key):  # kB, from this process's own memory map (ru_maxrss survives exec, VmHWM does not)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

cfg = AnalysisConfig(windows=(2,))
analyze_checkpoints(sys.argv[2], cfg)           # warm-up: imports, kernel, projection, S3 client
before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")   # reset the peak (VmHWM) to the current RSS
t0 = time.perf_counter()
analyze_checkpoints(sys.argv[1], cfg)
print(json.dumps({"peak_delta_kb": status("VmHWM") - before, "before_kb": before,
                  "seconds": time.perf_counter() - t0}))
"""


def memory_vs_size(root: Path, endpoint: str, env: dict[str, str]) -> list[dict]:
    """Peak RSS growth of an S3 analysis against checkpoint size, one subprocess per size."""
    g = torch.Generator().manual_seed(1)
    tensor_mb = 16
    elems = tensor_mb * (1 << 20) // 4
    small = root / "mem-small"
    small.mkdir()
    for s in range(3):
        save_file({"t0": torch.randn(1000, generator=g)}, str(small / f"step_{s}.safetensors"))
    upload(endpoint, "mem-small", small, "run")
    out = []
    for k in (2, 8, 32):
        folder = root / f"mem-{k}"
        folder.mkdir()
        for s in range(3):
            save_file({f"t{i}": torch.randn(elems, generator=g) for i in range(k)}, str(folder / f"step_{s}.safetensors"))
        upload(endpoint, f"mem-{k}", folder, "run")
        size = (folder / "step_0.safetensors").stat().st_size
        res = subprocess.run([sys.executable, "-c", CHILD, f"s3://mem-{k}/run/", "s3://mem-small/run/"],
                             env={**os.environ, **env}, capture_output=True, text=True, check=True)
        rec = json.loads(res.stdout.strip().splitlines()[-1])
        rec.update(tensors=k, checkpoint_mb=size / 2**20, tensor_mb=tensor_mb, peak_delta_mb=rec["peak_delta_kb"] / 1024)
        out.append(rec)
        for f in folder.iterdir():
            f.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        folder = root / "run"
        folder.mkdir()
        nbytes = write_folder(folder, args.n, args.layers)
        endpoint = s3_server()
        env = s3_env(endpoint)
        os.environ.update(env)
        upload(endpoint, "bench", folder, "run")
        rec: dict = {"checkpoints": args.n, "bytes": nbytes, "threads": torch.get_num_threads(),
                     "cpus": os.cpu_count()}
        t_local, ref = timed(str(folder), args.repeats)
        t_file, rows = timed(f"file://{folder}", args.repeats)
        assert rows == ref
        t_s3, rows = timed("s3://bench/run/", args.repeats)
        assert rows == ref
        with PoolExecutor(2) as pool:
            analyze_checkpoints(str(folder), CONFIG, executor=pool)  # start the workers (spawn, imports)
            t_local2, rows = timed(str(folder), args.repeats, executor=pool)
            assert rows == ref
            t_s32, rows = timed("s3://bench/run/", args.repeats, executor=pool)
            assert rows == ref
        t0 = time.perf_counter()
        with PoolExecutor(2) as pool:
            analyze_checkpoints(str(folder), CONFIG, executor=pool)
        t_cold2 = time.perf_counter() - t0
        rec["seconds"] = {"local_1": t_local, "file_url_1": t_file, "s3_1": t_s3, "local_2": t_local2, "s3_2": t_s32,
                          "local_2_with_pool_start": t_cold2}
        rec["MB_per_s"] = {k: nbytes / 1e6 / v for k, v in rec["seconds"].items()}
        rec["ratios"] = {"2_workers_vs_1_local": t_local / t_local2, "2_workers_vs_1_s3": t_s3 / t_s32,
                         "s3_vs_local_1": t_s3 / t_local, "file_url_vs_local_1": t_file / t_local}
        rec["memory"] = memory_vs_size(root, endpoint, env)
        rec["peak_rss_kb_driver"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(rec, indent=1))
    print(f"\n{args.n} checkpoints, {nbytes / 1e6:.0f} MB (float16), {rec['cpus']} CPUs, {rec['threads']} torch threads")
    for k, v in rec["seconds"].items():
        print(f"  {k:28s} {v:7.2f} s  {rec['MB_per_s'][k]:7.1f} MB/s")
    for k, v in rec["ratios"].items():
        print(f"  {k:28s} {v:7.2f}x")
    for m in rec["memory"]:
        print(f"  checkpoint {m['checkpoint_mb']:6.0f} MB ({m['tensors']} tensors of {m['tensor_mb']} MB): "
              f"peak RSS +{m['peak_delta_mb']:.0f} MB")


if __name__ == "__main__":
    main()
