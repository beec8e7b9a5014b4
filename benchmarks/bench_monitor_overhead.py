"""Monitor cost on the reference modular-arithmetic training loop, state size, communication.

Prints, from one run:

1. Overhead: wall time of N training steps of the papers' model (add mod 97, AdamW, batch 512)
   with the monitor attached at the default cadence (every 100 steps, W = 10) divided by the
   time without it. The two loops alternate ``--repeats`` times (best of each), so machine
   noise hits both. Monitors: ``auto`` (exact on this model), and ``fold`` d = 100; on the
   attention weights (the papers' grokking selection) and on all parameters.
2. Cost of one sampled step: the time of ``monitor.step()`` on a sampling step, against the
   time of one training step.
3. Bytes of monitor state (``state_dict``) at 124M parameters (GPT-2 shapes, fold d = 100,
   W = 10) and at 12M: equal, so it does not grow with the parameter count.
4. Bytes communicated per sample in the sharded mode: a 2-process gloo run with the model's
   tensors split between the ranks, read from ``Monitor.bytes_communicated``.

Usage: python benchmarks/bench_monitor_overhead.py [--steps 1000] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import tempfile
import time

import torch
import torch.nn.functional as F

from spectral_edge.functional.sketch import SketchSpec
from spectral_edge.models.transformer import GrokTransformer, TransformerConfig
from spectral_edge.monitor import Monitor
from spectral_edge.selection import Selection
from spectral_edge.tasks.modular import make_modular, sample_batch


def train(steps: int, monitor_kw: dict | None, seed: int = 0) -> tuple[float, list[float]]:
    """Seconds for ``steps`` steps (model built outside the timed region) and the monitor's
    per-sample times."""
    data = make_modular("add", 97, seed=42)
    torch.manual_seed(seed)
    model = GrokTransformer(TransformerConfig.modular(97))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    g = torch.Generator().manual_seed(seed)
    mon = Monitor(model, **monitor_kw) if monitor_kw is not None else None
    sample_times: list[float] = []
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = sample_batch(data.train_x, data.train_y, batch_size=512, generator=g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if mon is not None:
            ts = time.perf_counter()
            mon.step()
            if mon.global_step % mon.every == 0:
                sample_times.append(time.perf_counter() - ts)
    return time.perf_counter() - t0, sample_times


def state_bytes(width: int) -> tuple[int, int]:
    """(parameters, bytes of the monitor's serialised state) for GPT-2 shapes of this width
    (12 layers, so the same tensor names at every width)."""
    from bench_sketch_speed import gpt2_shapes

    shapes = gpt2_shapes(d=width)
    params = [(n, torch.nn.Parameter(torch.zeros(s))) for n, s in shapes.items()]
    mon = Monitor(params, windows=(10,), every=100, sketch=SketchSpec("fold", dim=100))
    buf = io.BytesIO()
    torch.save(mon.state_dict(), buf)
    return sum(p.numel() for _, p in params), buf.tell()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, samples: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (2,))
    torch.manual_seed(0)
    full = GrokTransformer(TransformerConfig.modular(97))
    params = [(n, torch.nn.Parameter(distribute_tensor(p.detach(), mesh, [Shard(0)])))
              for n, p in full.named_parameters()]
    mon = Monitor(params, windows=(10,), every=1, sketch=SketchSpec("fold", dim=100), distributed="sharded")
    for _ in range(samples - 1):
        mon.step()
    if rank == 0:
        with open(out, "w") as f:
            f.write(str(mon.bytes_communicated))
    dist.destroy_process_group()
    os._exit(0)  # torch 2.13's gloo can abort at interpreter exit (see integrations/distributed.py)


def sharded_bytes(samples: int = 5) -> int:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bytes")
        mp.spawn(_rank, args=(_free_port(), samples, out), nprocs=2, join=True)
        return int(open(out).read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = {
        "auto (exact), attention": dict(every=100, windows=(10,), sketch="auto", selection=Selection(preset="attention")),
        "auto (exact), all params": dict(every=100, windows=(10,), sketch="auto"),
        "fold d=100, all params": dict(every=100, windows=(10,), sketch=SketchSpec("fold", dim=100)),
    }
    best = {"none": float("inf"), **{k: float("inf") for k in variants}}
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        best["none"] = min(best["none"], train(args.steps, None)[0])
        for k, kw in variants.items():
            t, st = train(args.steps, kw)
            best[k] = min(best[k], t)
            samples[k] += st
    per_step = best["none"] / args.steps
    print(f"reference loop: add mod 97, batch 512, {args.steps} steps, {torch.get_num_threads()} threads; "
          f"best of {args.repeats}")
    print(f"  without monitor                 : {best['none']:7.2f} s   ({per_step * 1e3:.1f} ms/step)")
    for k in variants:
        s = sorted(samples[k])
        med = s[len(s) // 2] if s else float("nan")
        print(f"  with monitor, {k:<18}: {best[k]:7.2f} s   ratio {best[k] / best['none']:.3f}   "
              f"one sampled step costs {med * 1e3:6.1f} ms = {med / per_step:.2f} training steps")
    p124, b124 = state_bytes(768)
    p12, b12 = state_bytes(192)
    print(f"monitor state (fold d=100, W=10): {b124:,} bytes at {p124:,} parameters; {b12:,} bytes at {p12:,}")
    print(f"sharded mode, 2 gloo ranks, fold d=100: {sharded_bytes(5) / 5:.0f} bytes all-reduced per sample")


if __name__ == "__main__":
    main()
