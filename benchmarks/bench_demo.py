"""Wall time of ``spectral-edge demo`` against a plain training loop of the same model over the same steps.

Each round runs, one after the other (the order alternates between rounds, so machine noise
hits both):

1. the demo, as a user runs it: ``python -m spectral_edge.cli demo --out DIR --overwrite
   --quiet`` in a fresh process (imports, training with the monitor, the defect probe and the
   alarm, evaluations, run files, snapshots, the report);
2. a plain loop in a fresh process: the same model, data, optimizer and batches (the runner's
   workload and optimizer builders, so the same initialisation), for the number of steps the
   demo ran, with the one evaluation such a loop needs to know when it has grokked (test-set
   accuracy every ``eval_every`` = 100 steps, as ``benchmarks/grok_modular.py``); no monitor,
   no probes, no train-set evaluation, no files. The loop also times its evaluations, so the
   bare loop (no evaluation at all) is reported too.

It prints the best wall time of each over ``--repeats`` rounds, the ratio demo / plain loop
(and demo / bare loop) and the median of the per-round ratios, the demo's own account
(training wall time from summary.json; the rest is start-up, the report and anything the
demo does after the run), and the load average before and after. Goal (issue 14): ratio ≤ 1.3
and the demo ≤ 120 s on the 2-core machine, idle.

``--threads N`` runs both with N torch threads (``OMP_NUM_THREADS``); the default leaves
torch's choice (2 here). On a shared machine one thread each gives steadier numbers: torch's
two threads spin-wait when the other core is busy.

Usage: python benchmarks/bench_demo.py [--repeats 3] [--threads N] [--op add] [--modulus 97] [--seed 42]
       python benchmarks/bench_demo.py --plain STEPS      # the plain loop alone (what a round runs)
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


def plain_loop(steps: int, op: str, modulus: int, seed: int) -> tuple[float, float]:
    """Train ``steps`` steps of the demo's model with a test-set accuracy every ``eval_every``
    steps and nothing else; returns (the loop's seconds, of which evaluating)."""
    import torch

    from spectral_edge.experiments import RunConfig
    from spectral_edge.experiments.optim import build_optimizer
    from spectral_edge.experiments.workloads import build_workload

    cfg = RunConfig(task="modular", op=op, modulus=modulus, seed=seed)
    wl = build_workload(cfg)
    model, opt = wl.model, build_optimizer(cfg, wl.model)
    gen = torch.Generator().manual_seed(cfg.effective_data_seed)
    test_x, test_y = _test_set(cfg)
    model.train()
    t_eval = 0.0
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        batch = wl.sample_batch(gen, cfg.batch_size)
        loss = wl.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if step % cfg.eval_every == 0:
            te = time.perf_counter()
            model.eval()
            with torch.no_grad():
                float((model(test_x).argmax(-1) == test_y).float().mean())
            model.train()
            t_eval += time.perf_counter() - te
    float(loss.detach())
    return time.perf_counter() - t0, t_eval


def _test_set(cfg):
    from spectral_edge.tasks.modular import make_modular

    data = make_modular(cfg.op, p=cfg.modulus, train_frac=cfg.train_frac, seed=cfg.effective_data_seed)
    return data.test_x, data.test_y


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return time.perf_counter() - t0, res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--op", default="add")
    ap.add_argument("--modulus", type=int, default=97)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=None, help="torch threads of both (default: torch's choice)")
    ap.add_argument("--plain", type=int, default=None, metavar="STEPS", help="run the plain loop alone")
    args = ap.parse_args()
    if args.plain is not None:
        loop, ev = plain_loop(args.plain, args.op, args.modulus, args.seed)
        print(json.dumps({"loop": loop, "eval": ev}))
        return
    env = None if args.threads is None else {**os.environ, "OMP_NUM_THREADS": str(args.threads),
                                              "MKL_NUM_THREADS": str(args.threads)}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        demo_cmd = [sys.executable, "-m", "spectral_edge.cli", "demo", "--out", str(out), "--op", args.op,
                    "--modulus", str(args.modulus), "--seed", str(args.seed), "--overwrite", "--quiet"]
        rounds: list[tuple[float, float, float, dict]] = []  # demo, plain, bare, summary
        for r in range(args.repeats):
            if r % 2 == 0:
                t_demo = timed(demo_cmd, env)[0]
                summary = json.loads((out / "summary.json").read_text())
                plain_cmd = [sys.executable, __file__, "--plain", str(summary["steps_run"]), "--op", args.op,
                             "--modulus", str(args.modulus), "--seed", str(args.seed)]
                t_plain, printed = timed(plain_cmd, env)
            else:
                t_plain, printed = timed(plain_cmd, env)
                t_demo = timed(demo_cmd, env)[0]
                summary = json.loads((out / "summary.json").read_text())
            t_bare = t_plain - json.loads(printed.strip().splitlines()[-1])["eval"]
            rounds.append((t_demo, t_plain, t_bare, summary))
            print(f"round {r + 1}: demo {t_demo:6.1f} s (training {summary['wall_seconds']:.1f} s, "
                  f"{summary['steps_run']} steps, grok {summary['grok_step']}, alarm {summary['warning_step']})"
                  f"   plain {t_plain:6.1f} s (bare {t_bare:.1f} s)   ratio {t_demo / t_plain:.3f} "
                  f"(to bare {t_demo / t_bare:.3f})", flush=True)
    load_after = os.getloadavg()
    best_demo = min(r[0] for r in rounds)
    best_plain = min(r[1] for r in rounds)
    best_bare = min(r[2] for r in rounds)
    s = min(rounds, key=lambda r: r[0])[3]
    print(f"demo ({args.op} mod {args.modulus}, seed {args.seed}) against a plain loop of the same model over the same "
          f"{s['steps_run']} steps; fresh processes, best of {args.repeats} interleaved rounds")
    print(f"  demo      : {best_demo:6.1f} s  (training with monitor, defect probe, alarm and evaluations "
          f"{s['wall_seconds']:.1f} s; start-up, report and the rest {best_demo - s['wall_seconds']:.1f} s)")
    print(f"  plain loop: {best_plain:6.1f} s  ({best_plain / s['steps_run'] * 1e3:.1f} ms/step with start-up and "
          f"its test-set accuracy every 100 steps); bare loop without it {best_bare:.1f} s")
    print(f"  ratio     : {best_demo / best_plain:.3f}   (median of the per-round ratios "
          f"{statistics.median(r[0] / r[1] for r in rounds):.3f}; goal ≤ 1.3, demo ≤ 120 s); "
          f"to the bare loop {best_demo / best_bare:.3f}")
    print(f"  grok {s['grok_step']}, alarm {s['warning_step']}, lead {s['lead']}")
    print(f"  load average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1 min), "
          f"{os.cpu_count()} cores, torch threads: {args.threads or 'default'}")


if __name__ == "__main__":
    main()
