"""Time a plain training loop of the reference transformer until it groks modular arithmetic.

Setup of the papers (METHODS §9): p = 97, 50/50 split, AdamW lr 1e-3, wd 1.0, betas
(0.9, 0.98), batch 512 drawn with replacement, gradient clip 1.0; evaluation every 100
steps. Prints the first step with test accuracy ≥ 0.9 and the step where test accuracy is
≥ 0.98 three evaluations in a row (the authors' stopping rule), with wall times.

    python benchmarks/grok_modular.py --op add --seed 42
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from spectral_edge.models import GrokTransformer, TransformerConfig
from spectral_edge.tasks.modular import make_modular, sample_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", default="add")
    ap.add_argument("--p", type=int, default=97)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-steps", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = make_modular(args.op, args.p, 0.5, args.seed)
    with torch.random.fork_rng():  # model init from the seed, global RNG left as it was
        torch.manual_seed(args.seed)
        model = GrokTransformer(TransformerConfig.modular(args.p))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(args.seed)

    t0 = time.perf_counter()
    first_90 = None
    streak = 0
    for step in range(1, args.max_steps + 1):
        x, y = sample_batch(data.train_x, data.train_y, batch_size=512, generator=gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100:
            continue
        with torch.no_grad():
            test_acc = (model(data.test_x).argmax(-1) == data.test_y).float().mean().item()
        wall = time.perf_counter() - t0
        if step % 500 == 0:
            print(f"step {step:5d}  loss {loss.item():.4f}  test acc {test_acc:.3f}  {wall:6.1f}s", flush=True)
        if first_90 is None and test_acc >= 0.9:
            first_90 = step
            print(f"test acc >= 0.9 first at step {step} ({wall:.1f}s)", flush=True)
        streak = streak + 1 if test_acc >= 0.98 else 0
        if streak == 3:
            print(f"grokked (test acc >= 0.98 three times) at step {step} ({wall:.1f}s)")
            return
    print(f"did not grok in {args.max_steps} steps")


if __name__ == "__main__":
    main()
