"""The GPU suite of issue 19 (part 3): one command, under 8 minutes on one H200.

    python benchmarks/gpu_suite.py --out DIR [--smoke] [--device cuda|cpu] [--time-budget 420] [--overwrite]

Parts (each one's numbers go into ``DIR/results.json``; a table into ``DIR/summary.md``):

A. **Sketch against an HBM read.** Parameter states of GPT-2 124M shapes and of a 1B GPT-style
   model (18 layers, d = 2048, vocabulary 50257, context 2048), filled on the device with
   seeded N(0, 0.02) values, in float32 and bfloat16. Timed (CUDA events, warm-up, median of
   the repeats, the three interleaved): a plain read pass (``t.sum()`` per tensor, the
   reference of ``bench_sketch_speed.py``), a fused read of the same bytes (one ``sum`` over
   the flat buffer the tensors are views of), and the library's fold sketch of the same tensors
   through the Monitor's path (``TrajectoryAnalyzer(...).sketcher.sketch_pieces``, fold with
   d = 10·W at W = 10). Ratio sketch / read; goal ≤ 2. The first state is also sketched on the
   CPU: the two sketches must agree (the map is the same on every device).
B. **Monitor overhead.** The papers' 51M language model (TinyGPT, 8 layers, d = 512, 8 heads,
   the 50257-token GPT-2 vocabulary size, tied read-out: 51.0M parameters) trained with AdamW,
   bf16 autocast on CUDA, with and without ``Monitor(windows=(10,), every=10)`` (default
   sketch, history file written), two identical models from one seed, timed in alternating
   chunks of steps (the order flips every round) so that machine noise hits both. Ratio
   with / without; goal ≤ 1.02.
C. **The 51M architecture on the LM corpus.** 8 layers, d = 512 on the character-level story
   corpus of ``configs/lm-tiny.toml`` (the same data path as ``spectral-edge run``: the model
   initialised from the seed, ``make_story_corpus(seed)``, ``lm_batch`` from a generator seeded
   with the seed, the runner's evaluation batches; with the corpus's character vocabulary the
   model has ~25M parameters, the papers' 51M count includes a 50257-token embedding), AdamW
   as lm-tiny (wd 0.1, betas 0.9/0.95, linear warm-up, clip 1.0), the Monitor at W = 5, 10, 20
   (primary W = 10) every 10 steps, embeddings as their own group, as many steps and seeds
   (42, 43, 44) as fit the budget. Each seed is a run folder ``DIR/lm_seed<s>/`` (history,
   eval.csv, summary.json, config.json) that ``spectral-edge phases|coupling|report`` read;
   the suite runs k*, phases (``run_phases``) and coupling (``run_coupling``, every W, the lag
   flip and the phase-specific r) on it.

The experiment runner has no device option, so part C is a plain loop around the Monitor; it
uses only modules that need torch, numpy and pandas (not ``experiments``, whose config needs
msgspec), so that it runs with the packages of a bare GPU image. The repository's ``src`` is
put first on ``sys.path``.

Budget: ``--time-budget`` (default 420 s, counted from the start) is split: A gets 22%, B 20%,
analysis and figures a reserve, C the rest. A part running late skips what is left with a
printed note (recorded in ``notes``). ``results.partial.json`` is rewritten as each part
finishes (a killed run leaves it), ``results.json`` is written once at the end; both
atomically. A missing matplotlib only skips the figures.

``--smoke``: tiny sizes (1M-parameter states, a 2-layer d = 32 model, a few hundred steps)
through the same code, under a minute on a 2-core CPU (``tests/test_gpu_suite.py``).
Exit status: 0, 1 when a part failed (its error is in results.json), 2 on bad arguments.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # the budget counts from here, imports included

import argparse  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import asdict, dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

_HERE = Path(__file__).resolve().parent
_SRC = _HERE.parent / "src"
if (_SRC / "spectral_edge").is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

#: files and folders this suite writes into --out (what --overwrite replaces)
OUTPUTS = ("results.json", "results.partial.json", "summary.md", "sketch_vs_read.png", "monitor_overhead.png",
           "lm_trajectory.png", "lm_coupling.png", "part_b_history.jsonl")
LM_GROUP_BY = r"re:(?:tok|pos)_(emb)\..*"  # configs/lm-tiny.toml: embeddings as their own group
GPT2_VOCAB = 50257
UMASK = os.umask(0o022)
os.umask(UMASK)


class UsageError(Exception):
    """Bad arguments: one line on stderr, exit status 2."""


@dataclass
class Plan:
    """Every size of the suite (full or smoke)."""

    # part A: (label, n_layer, d, vocab, ctx) of GPT-style states
    states: list[tuple[str, int, int, int, int]]
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    warmup: int = 2
    repeats: int = 10
    check_elems: int = 8_000_000  # part A: elements sketched on both devices for the cross-check
    # part B
    b_layers: int = 8
    b_d: int = 512
    b_heads: int = 8
    b_vocab: int | None = GPT2_VOCAB  # None: the corpus's characters
    b_block: int = 256
    b_batch: int = 32
    b_every: int = 10
    b_chunk: int = 50  # steps per timed chunk (a multiple of b_every)
    b_warm: int = 120  # steps before timing (a multiple of b_every; fills the W = 10 window)
    b_rounds: int = 10  # at most; at least 2 when time allows
    # part C
    c_layers: int = 8
    c_d: int = 512
    c_heads: int = 8
    c_block: int = 256
    c_batch: int = 32
    c_steps: int = 4000
    c_every: int = 10
    c_windows: tuple[int, ...] = (5, 10, 20)
    c_eval_every: int = 50
    c_seeds: tuple[int, ...] = (42, 43, 44)
    c_lr: float = 6e-4
    c_warmup: int = 200
    c_min_steps: int = 400  # below this a seed is not started
    n_perm: int = 999
    # budget shares
    share_a: float = 0.22
    share_b: float = 0.20
    reserve: float = 40.0  # seconds kept for the analyses, figures and files


FULL = Plan(states=[("GPT-2 124M", 12, 768, GPT2_VOCAB, 1024), ("GPT 1B", 18, 2048, GPT2_VOCAB, 2048)])
SMOKE = Plan(states=[("GPT 0.25M", 2, 64, 1024, 64), ("GPT 1M", 2, 128, 4096, 128)], repeats=3, warmup=1,
             check_elems=300_000, b_layers=2, b_d=32, b_heads=2, b_vocab=None, b_block=32, b_batch=8, b_chunk=10,
             b_warm=110, b_rounds=4, c_layers=2, c_d=32, c_heads=2, c_block=32, c_batch=8, c_steps=240, c_every=2,
             c_eval_every=4, c_seeds=(42, 43), c_lr=1e-3, c_warmup=20, c_min_steps=100, n_perm=199, reserve=10.0)


# ---------------------------------------------------------------------- small helpers
class Clock:
    """Seconds since the start, and the deadlines of the parts."""

    def __init__(self, budget: float):
        self.budget = budget

    def now(self) -> float:
        return time.perf_counter() - T0

    def left(self) -> float:
        return self.budget - self.now()


def say(msg: str) -> None:
    print(msg, flush=True)


def note(results: dict[str, Any], msg: str) -> None:
    results["notes"].append(msg)
    say(f"note: {msg}")


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # what open() would give, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    from spectral_edge.io.history import json_safe

    atomic_write(path, (json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n").encode("utf-8"))


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def gpt_shapes(n_layer: int, d: int, vocab: int, ctx: int) -> dict[str, tuple[int, ...]]:
    """GPT-2-style parameter shapes (read-out tied to the token embedding, counted once)."""
    from bench_sketch_speed import gpt2_shapes

    return gpt2_shapes(n_layer=n_layer, d=d, vocab=vocab, ctx=ctx)


def free_bytes(device: Any) -> int | None:
    import torch

    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (OSError, ValueError, RuntimeError, AttributeError):
        return None


def release(device: Any) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e))


# ---------------------------------------------------------------------- part A
def time_interleaved(fns: dict[str, Callable[[], Any]], device: Any, warmup: int, repeats: int) -> dict[str, dict]:
    """Median seconds of each function, the functions taking turns in every repeat (CUDA events on
    a GPU, which also count the host time between them when the GPU waits; perf_counter on a CPU)."""
    import torch

    for _ in range(warmup):
        for fn in fns.values():
            fn()
        sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync(device)
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times[k].append(start.elapsed_time(end) / 1e3)
            else:
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    return {k: {"median_s": median(v), "min_s": min(v), "all_s": v} for k, v in times.items()}


def part_a(plan: Plan, device: Any, clock: Clock, deadline: float, results: dict[str, Any]) -> dict[str, Any]:
    import torch

    from spectral_edge.selection import Selection
    from spectral_edge.stream.analyzer import AnalysisConfig, TrajectoryAnalyzer, default_sketch

    spec = default_sketch((10,))  # what the Monitor uses at W = 10: fold, d = 100
    cfg = AnalysisConfig(windows=(10,), sketch=spec, selection=Selection())
    out: dict[str, Any] = {"sketch": spec.to_dict(), "path": "TrajectoryAnalyzer.sketcher.sketch_pieces (the Monitor's)",
                           "read_pass": "t.sum() per tensor", "fused_read": "one sum over the flat buffer",
                           "warmup": plan.warmup, "repeats": plan.repeats, "goal_ratio": 2.0, "runs": []}
    order = [(s, dt) for s in plan.states[:1] for dt in plan.dtypes[:1]]
    order += [(s, plan.dtypes[0]) for s in plan.states[1:]]
    order += [(s, dt) for dt in plan.dtypes[1:] for s in plan.states]
    last_rate = None  # seconds per element of the previous configuration (all repeats)
    for k, ((label, n_layer, d, vocab, ctx), dtname) in enumerate(order):
        shapes = gpt_shapes(n_layer, d, vocab, ctx)
        P = sum(math.prod(s) for s in shapes.values())
        dtype = getattr(torch, dtname)
        esize = torch.empty((), dtype=dtype).element_size()
        need = P * esize + (256 << 20)
        free = free_bytes(device)
        if free is not None and need > 0.85 * free:
            note(results, f"part A: {label} {dtname} skipped: needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free")
            continue
        if last_rate is not None and clock.now() + last_rate * P > deadline:
            note(results, f"part A: {label} {dtname} skipped: the part's time is used up "
                          f"({clock.now():.0f} s of the budget spent)")
            continue
        try:
            rec = _measure_state(label, shapes, P, dtype, device, cfg, plan, check=(k == 0))
        except Exception as e:  # noqa: BLE001 - an OOM or a failure of one size must not end the suite
            if not is_oom(e):
                raise
            release(device)
            note(results, f"part A: {label} {dtname} skipped: out of memory ({str(e).splitlines()[0][:120]})")
            continue
        last_rate = rec["wall_s"] / P
        out["runs"].append(rec)
        say(f"  A {label:<11} {dtname:<8} P={P:>13,}  read {rec['read_s'] * 1e3:8.2f} ms  fused "
            f"{rec['fused_read_s'] * 1e3:8.2f} ms  sketch {rec['sketch_s'] * 1e3:8.2f} ms  "
            f"ratio {rec['ratio']:.2f} (fused {rec['ratio_fused']:.2f})  {rec['read_GBps']:.0f} GB/s read")
        release(device)
    return out


def _measure_state(label: str, shapes: dict[str, tuple[int, ...]], P: int, dtype: Any, device: Any, cfg: Any,
                   plan: Plan, check: bool) -> dict[str, Any]:
    import torch

    from spectral_edge.stream.analyzer import TrajectoryAnalyzer

    t_wall = time.perf_counter()
    gen = torch.Generator(device=device).manual_seed(1234)
    flat = torch.empty(P, dtype=dtype, device=device)
    flat.normal_(0.0, 0.02, generator=gen)
    state: dict[str, torch.Tensor] = {}
    off = 0
    for name, s in shapes.items():
        n = math.prod(s)
        state[name] = flat[off : off + n].view(s)
        off += n
    items = list(state.items())
    an = TrajectoryAnalyzer(cfg, {n: (tuple(t.shape), t.dtype) for n, t in items})
    sk = an.sketcher

    def read() -> Any:
        return torch.stack([t.sum() for t in state.values()]).sum()

    def fused() -> Any:
        return flat.sum()

    def sketch() -> Any:
        return sk.sketch_pieces(items, device)

    t = time_interleaved({"read": read, "fused": fused, "sketch": sketch}, device, plan.warmup, plan.repeats)
    wall = time.perf_counter() - t_wall  # filling and timing (not the CPU cross-check): for the budget
    nbytes = P * flat.element_size()
    rec = {"state": label, "dtype": str(dtype).removeprefix("torch."), "parameters": P, "tensors": len(state),
           "bytes": nbytes, "read_s": t["read"]["median_s"], "fused_read_s": t["fused"]["median_s"],
           "sketch_s": t["sketch"]["median_s"], "timings": t, "wall_s": wall}
    rec["ratio"] = rec["sketch_s"] / rec["read_s"]
    rec["ratio_fused"] = rec["sketch_s"] / rec["fused_read_s"]
    rec["read_GBps"] = nbytes / rec["read_s"] / 1e9
    rec["fused_read_GBps"] = nbytes / rec["fused_read_s"] / 1e9
    rec["sketch_GBps"] = nbytes / rec["sketch_s"] / 1e9
    finite = all(bool(torch.isfinite(v).all()) for v in sketch().values())
    rec["sketch_finite"] = finite
    if check:  # the same map on the device and on the CPU (a prefix of the tensors)
        sub, n = [], 0
        for name, tt in items:
            sub.append((name, tt))
            n += tt.numel()
            if n >= plan.check_elems:
                break
        an_sub = TrajectoryAnalyzer(cfg, {nm: (tuple(tt.shape), tt.dtype) for nm, tt in sub})
        dev = an_sub.sketcher.sketch_pieces(sub, device)["all"].cpu()
        cpu = an_sub.sketcher.sketch_pieces([(nm, tt.cpu()) for nm, tt in sub], torch.device("cpu"))["all"]
        rec["cpu_check"] = {"elements": n, "tensors": len(sub),
                            "rel_diff": float((dev - cpu).norm() / cpu.norm().clamp_min(1e-300))}
    del flat, state, items
    return rec


# ---------------------------------------------------------------------- parts B and C: the LM
def lm_corpus(seed: int) -> Any:
    from spectral_edge.tasks.lm import make_story_corpus

    return make_story_corpus(seed=seed)  # what task = "lm" builds (configs/lm-tiny.toml)


def build_model(seed: int, vocab: int, block: int, n_layer: int, d: int, heads: int, device: Any) -> Any:
    """TinyGPT initialised from ``seed`` as the experiment workload does (the global RNG is restored)."""
    import torch

    from spectral_edge.models.gpt import GPTConfig, TinyGPT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyGPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, d_model=d, n_head=heads))
    return model.to(device)


def autocast(device: Any) -> Any:
    import torch

    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model: Any, opt: Any, x: Any, y: Any, device: Any, clip: float = 1.0) -> Any:
    import torch

    with autocast(device):
        loss = model.loss(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()  # an attached monitor samples in the optimizer's post-step hook
    return loss


def n_params(model: Any) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def part_b(plan: Plan, device: Any, clock: Clock, deadline: float, out_dir: Path, results: dict[str, Any]) -> dict:
    import torch

    from spectral_edge.monitor import Monitor
    from spectral_edge.tasks.lm import lm_batch

    corpus = lm_corpus(0)
    vocab = plan.b_vocab or corpus.vocab_size
    arms = {}
    for arm in ("without", "with"):
        model = build_model(0, vocab, plan.b_block, plan.b_layers, plan.b_d, plan.b_heads, device)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95))
        arms[arm] = [model, opt, None, None]
    hist = out_dir / "part_b_history.jsonl"
    mon = Monitor(arms["with"][0], windows=(10,), every=plan.b_every, history=hist)
    arms["with"][2], arms["with"][3] = mon, mon.attach(arms["with"][1])
    g = torch.Generator().manual_seed(0)
    pool = [tuple(t.to(device) for t in lm_batch(corpus.train, plan.b_batch, plan.b_block, g)) for _ in range(8)]
    P = n_params(arms["with"][0])
    if plan.b_chunk % plan.b_every or plan.b_warm % plan.b_every:
        raise ValueError("part B: chunk and warm-up must be multiples of the monitor's cadence")
    rec: dict[str, Any] = {"model": f"TinyGPT {plan.b_layers} layers, d = {plan.b_d}, {plan.b_heads} heads, "
                                    f"vocabulary {vocab}, context {plan.b_block}, tied read-out",
                           "parameters": P, "batch": plan.b_batch, "block": plan.b_block, "optimizer": "AdamW",
                           "amp": "bf16 autocast" if device.type == "cuda" else "none (float32)",
                           "monitor": {"windows": [10], "every": plan.b_every, "sketch": mon.config.sketch.to_dict(),
                                       "history": hist.name, "state_bytes": mon.state_bytes},
                           "chunk_steps": plan.b_chunk, "warmup_steps": plan.b_warm, "goal_ratio": 1.02}
    counters = {"with": 0, "without": 0}

    def run(arm: str, steps: int) -> float:
        model, opt, _, _ = arms[arm]
        sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            x, y = pool[counters[arm] % len(pool)]
            counters[arm] += 1
            train_step(model, opt, x, y, device)
        sync(device)
        return time.perf_counter() - t

    warm = 0
    while warm < plan.b_warm:  # in pieces of b_every steps, so that a slow device stops early
        t_piece = run("without", plan.b_every) + run("with", plan.b_every)
        warm += plan.b_every
        if warm < plan.b_warm and clock.now() + t_piece * plan.b_chunk / plan.b_every > deadline:
            note(results, f"part B: warm-up cut to {warm} steps (the part's time is running out)")
            break
    rounds: list[dict[str, float]] = []
    t_round = None
    for r in range(plan.b_rounds):  # at least one round, so that there is a number
        if t_round is not None and clock.now() + t_round > deadline:
            note(results, f"part B: stopped after {r} round(s) (the part's time is used up)")
            break
        t0 = time.perf_counter()
        order = ("without", "with") if r % 2 == 0 else ("with", "without")
        rr = {arm: run(arm, plan.b_chunk) for arm in order}
        rounds.append(rr)
        t_round = time.perf_counter() - t0
    arms["with"][3].remove()
    mon.close()
    tw = sum(r["with"] for r in rounds)
    tn = sum(r["without"] for r in rounds)
    n_steps = len(rounds) * plan.b_chunk
    samples = n_steps // plan.b_every
    rec.update({
        "rounds": len(rounds), "steps_per_arm": n_steps, "samples_timed": samples,
        "seconds_with": tw, "seconds_without": tn, "ratio": tw / tn if tn > 0 else float("nan"),
        "round_ratios": [r["with"] / r["without"] for r in rounds],
        "median_round_ratio": median([r["with"] / r["without"] for r in rounds]),
        "warmup_steps": warm,
        "step_ms_without": 1e3 * tn / n_steps if n_steps else float("nan"),
        "step_ms_with": 1e3 * tw / n_steps if n_steps else float("nan"),
        "ms_per_sample": 1e3 * (tw - tn) / samples if samples else float("nan"),
        "rounds_s": rounds,
    })
    say(f"  B {P:,} parameters: {rec['step_ms_without']:.2f} ms/step without, {rec['step_ms_with']:.2f} with "
        f"-> ratio {rec['ratio']:.4f} over {len(rounds)} rounds (median round {rec['median_round_ratio']:.4f}); "
        f"one sample costs {rec['ms_per_sample']:.1f} ms")
    del arms, pool, mon
    release(device)
    return rec


def part_c(plan: Plan, device: Any, clock: Clock, deadline: float, out_dir: Path, results: dict[str, Any]) -> dict:
    runs: list[dict[str, Any]] = []
    rec: dict[str, Any] = {
        "model": f"TinyGPT {plan.c_layers} layers, d = {plan.c_d}, {plan.c_heads} heads, character vocabulary, "
                 f"context {plan.c_block}, tied read-out",
        "corpus": "make_story_corpus(seed) (the generated story corpus of configs/lm-tiny.toml)",
        "optimizer": {"name": "AdamW", "lr": plan.c_lr, "weight_decay": 0.1, "betas": [0.9, 0.95],
                      "warmup_steps": plan.c_warmup, "grad_clip": 1.0},
        "amp": "bf16 autocast" if device.type == "cuda" else "none (float32)",
        "batch": plan.c_batch, "block": plan.c_block, "every": plan.c_every, "windows": list(plan.c_windows),
        "primary_window": 10 if 10 in plan.c_windows else min(plan.c_windows),
        "eval_every": plan.c_eval_every, "target_steps": plan.c_steps, "runs": runs}
    steps = plan.c_steps
    per_step = None  # seconds per step, measured on the first seed
    for i, seed in enumerate(plan.c_seeds):
        left = deadline - clock.now()
        if per_step is not None:
            if left < per_step * steps * 1.05:
                note(results, f"part C: seed {seed} not run ({left:.0f} s left, a seed of {steps} steps takes "
                              f"~{per_step * steps:.0f} s)")
                break
        elif left < 5:
            note(results, "part C: no time left for the language model")
            break

        def plan_steps(rate: float, left_now: float, done: int) -> int:
            """Seed 0, after its first steps: its total steps (later seeds run as many)."""
            fit = int((left_now * 0.97) / rate) + done
            if fit >= steps:
                return steps
            say(f"  C seed {seed}: {steps} steps do not fit at ~{rate * 1e3:.1f} ms per step; "
                f"planning {max(fit, done)}")
            return max(fit, done)

        first = per_step is None
        run = None
        try:
            run = _train_lm(plan, seed, steps, device, clock, deadline, out_dir / f"lm_seed{seed}",
                            plan_steps if first else None, results)
        except Exception as e:  # noqa: BLE001 - a diverged or out-of-memory seed must not cost the others
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            note(results, f"part C: seed {seed} failed ({msg})")
            rec.setdefault("failed_seeds", []).append({"seed": seed, "error": msg, "traceback": traceback.format_exc()})
        if run is None:
            release(device)  # outside the except block: its traceback no longer holds the model
            continue
        runs.append(run)
        if first:
            per_step = run["wall_s"] / max(run["steps_run"], 1)
            if run["steps_run"] < steps:
                note(results, f"part C: {steps} steps did not fit; every seed runs {run['steps_run']} "
                              f"(~{1e3 * per_step:.1f} ms per step)")
            steps = run["steps_run"]
            if steps < plan.c_min_steps:
                note(results, f"part C: seed {seed} ran only {steps} steps; no further seeds")
                break
    rec["seeds_run"] = [r["seed"] for r in runs]
    if not runs and rec.get("failed_seeds"):
        raise RuntimeError(f"part C: every seed failed ({rec['failed_seeds'][0]['error']})")
    return rec


def _train_lm(plan: Plan, seed: int, steps: int, device: Any, clock: Clock, deadline: float, run_dir: Path,
              plan_steps: Callable[[float, float, int], int] | None, results: dict[str, Any]) -> dict[str, Any]:
    import torch

    from spectral_edge.monitor import Monitor
    from spectral_edge.selection import Selection
    from spectral_edge.stream.analyzer import default_sketch

    corpus = lm_corpus(seed)
    model = build_model(seed, corpus.vocab_size, plan.c_block, plan.c_layers, plan.c_d, plan.c_heads, device)
    opt = torch.optim.AdamW(model.parameters(), lr=plan.c_lr, weight_decay=0.1, betas=(0.9, 0.95))
    run_dir.mkdir(parents=True, exist_ok=True)
    mon = Monitor(model, windows=plan.c_windows, every=plan.c_every, sketch=default_sketch(plan.c_windows),
                  selection=Selection(preset="all", group_by=LM_GROUP_BY), history=run_dir / "history.jsonl")
    handle = mon.attach(opt)
    try:
        return _train_loop(plan, seed, steps, device, clock, deadline, run_dir, plan_steps, results, corpus, model,
                           opt, mon)
    finally:
        handle.remove()
        mon.close()
        del model, opt, mon
        release(device)


def _train_loop(plan: Plan, seed: int, steps: int, device: Any, clock: Clock, deadline: float, run_dir: Path,
                plan_steps: Callable[[float, float, int], int] | None, results: dict[str, Any], corpus: Any,
                model: Any, opt: Any, mon: Any) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from spectral_edge.tasks.lm import lm_batch

    base_lr = plan.c_lr
    eval_batches = {}
    for split, toks in (("train", corpus.train), ("test", corpus.val)):
        g = torch.Generator().manual_seed(seed + 1)  # the runner's evaluation batches (data seed + 1)
        eval_batches[split] = tuple(t.to(device) for t in lm_batch(toks, 64, plan.c_block, g))

    @torch.no_grad()
    def evaluate(step: int) -> dict[str, float]:
        model.eval()
        res: dict[str, float] = {}
        for split, (x, y) in eval_batches.items():
            with autocast(device):
                logits = model(x)
            logits = logits.float()
            res[f"{split}_loss"] = float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)))
            res[f"{split}_acc"] = float((logits.argmax(-1) == y).float().mean())
        res["val_loss"] = res["test_loss"]
        model.train()
        mon.log(step, **res)
        evals.append({"step": step, **res})
        return res

    evals: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(seed)  # data seed = seed, as the runner
    config = {"task": "lm", "seed": seed, "data_seed": seed, "model": {"n_layer": plan.c_layers, "d_model": plan.c_d,
              "n_head": plan.c_heads, "vocab_size": corpus.vocab_size}, "task_options": {"block_size": plan.c_block},
              "optimizer": "adamw", "lr": plan.c_lr, "weight_decay": 0.1, "betas": [0.9, 0.95],
              "batch_size": plan.c_batch, "grad_clip": 1.0, "warmup_steps": plan.c_warmup, "steps": steps,
              "eval_every": plan.c_eval_every, "every": plan.c_every, "windows": list(plan.c_windows),
              "sketch": "fold", "selection": "all", "group_by": LM_GROUP_BY, "device": str(device)}
    t_start = time.perf_counter()
    evaluate(0)
    model.train()
    step, stop, loss_v, truncated = 0, steps, float("nan"), False
    replan_at = {min(50, steps // 4), min(300, steps // 2)}
    while step < stop:
        step += 1
        if plan.c_warmup and step <= plan.c_warmup:
            for grp in opt.param_groups:
                grp["lr"] = base_lr * step / plan.c_warmup
        x, y = (t.to(device, non_blocking=True) for t in lm_batch(corpus.train, plan.c_batch, plan.c_block, gen))
        loss = train_step(model, opt, x, y, device)
        if step % plan.c_every == 0:
            loss_v = float(loss.detach())
            if not math.isfinite(loss_v):
                mon.log(step, loss=loss_v)
                raise RuntimeError(f"part C: seed {seed} diverged at step {step} (loss {loss_v})")
            mon.log(step, loss=loss_v)
        if step % plan.c_eval_every == 0:
            evaluate(step)
        if plan_steps is not None and step in replan_at:  # seed 0: fit its length to the budget
            sync(device)
            rate = (time.perf_counter() - t_start) / step
            stop = plan_steps(rate, deadline - clock.now(), step)
        if step % 10 == 0 and clock.now() > deadline and step < stop:
            note(results, f"part C: seed {seed} stopped at step {step} of {stop} (the budget is spent)")
            truncated = True
            break
    if evals[-1]["step"] != step:
        evaluate(step)
    sync(device)
    wall = time.perf_counter() - t_start
    mon.close()
    P = n_params(model)
    summary = {"task": "lm", "seed": seed, "optimizer": "adamw", "lr": plan.c_lr, "weight_decay": 0.1,
               "steps_run": step, "stopped_early": truncated, "parameters": P, "wall_seconds": wall,
               "device": str(device), "final_val_loss": evals[-1]["val_loss"], "final_train_loss": evals[-1]["train_loss"],
               "grok_step": None, "warning_step": None}
    config["steps"] = step
    write_json(run_dir / "summary.json", summary)
    write_json(run_dir / "config.json", config)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=["step", "train_loss", "train_acc", "test_loss", "test_acc", "val_loss"])
    w.writeheader()
    w.writerows(evals)
    atomic_write(run_dir / "eval.csv", buf.getvalue().encode("utf-8"))
    say(f"  C seed {seed}: {step} steps in {wall:.1f} s ({1e3 * wall / max(step, 1):.1f} ms/step), {P:,} parameters, "
        f"val loss {evals[0]['val_loss']:.3f} -> {evals[-1]['val_loss']:.3f}")
    return {"seed": seed, "folder": run_dir.name, "steps_run": step, "truncated": truncated, "parameters": P,
            "wall_s": wall, "ms_per_step": 1e3 * wall / max(step, 1), "evals": len(evals),
            "val_loss_first": evals[0]["val_loss"], "val_loss_final": evals[-1]["val_loss"]}


# ---------------------------------------------------------------------- analyses of part C
def kstar_counts(values: Any) -> dict[str, Any]:
    ks = [int(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) >= 1]
    if not ks:
        return {"n": 0, "counts": {}, "modal": None, "modal_share": None}
    c = Counter(ks)
    top = max(c.values())
    modal = min(k for k, n in c.items() if n == top)
    return {"n": len(ks), "counts": {str(k): c[k] for k in sorted(c)}, "modal": modal, "modal_share": top / len(ks)}


def convergence(steps: list[int], loss: list[float], within: float = 0.10) -> dict[str, Any]:
    """First step from which the loss stays within ``within`` of its final value (fraction of the run)."""
    pts = [(s, v) for s, v in zip(steps, loss) if v is not None and math.isfinite(v)]
    if len(pts) < 2:
        return {"step": None, "fraction_of_run": None}
    final = pts[-1][1]
    k = len(pts) - 1
    while k > 0 and abs(pts[k - 1][1] - final) <= within * abs(final):
        k -= 1
    span = pts[-1][0] - pts[0][0]
    return {"step": pts[k][0], "fraction_of_run": (pts[k][0] - pts[0][0]) / span if span else None}


def _guard(rec: dict[str, Any], key: str, fn: Callable[[], Any]) -> Any:
    from spectral_edge.errors import SpectralEdgeError

    try:
        rec[key] = fn()
        return rec[key]
    except (SpectralEdgeError, ImportError, ValueError) as e:
        rec[key] = {"error": f"{type(e).__name__}: {e}"}
        return None


def analyse_run(folder: Path, windows: tuple[int, ...], primary: int, n_perm: int) -> dict[str, Any]:
    """k*, phases (three detectors) and coupling (every W, lag flip, phase-specific r) of one run."""
    from spectral_edge.analysis.coupling import run_coupling
    from spectral_edge.analysis.phases import run_phases
    from spectral_edge.errors import SpectralEdgeError
    from spectral_edge.io.run import load_run

    data = load_run(folder)
    rec: dict[str, Any] = {"run": folder.name, "windows": list(data.windows), "groups": list(data.groups),
                           "kstar": {}, "phases": {}, "coupling": {}, "series": {}}
    for g in ("all", "other"):
        if g not in data.groups:
            continue
        for W in windows:
            if W not in data.windows:
                continue
            rows = data.rows(W, g)
            rec["kstar"][f"{g}/W{W}"] = {r: kstar_counts(rows[f"k_star_{r}"].tolist())
                                        for r in ("floor", "argmax", "weighted") if f"k_star_{r}" in rows}
    if primary in data.windows:
        for m in ("plateau", "derivative", "threshold"):
            _guard(rec["phases"], m, lambda m=m: run_phases(data, window=primary, group="all", method=m).to_dict())
        rows = data.rows(primary, "all")
        try:
            labels = list(run_phases(data, window=primary, group="all", method="plateau").labels)
        except (SpectralEdgeError, ValueError):
            labels = ["unknown"] * len(rows)
        rec["series"] = {"step": rows["step"].tolist(), "gap_ratio": rows["gap_ratio"].tolist(),
                         "k_star": rows["k_star"].tolist(), "labels": labels}
    for W in windows:
        if W not in data.windows:
            continue

        def coupling(W: int = W) -> dict[str, Any]:
            res = run_coupling(data, window=W, group="all", n_perm=n_perm, seed=0)
            d = res.to_dict()
            d["lags"] = list(res.correlation.lags)
            d["r"] = [float(v) for v in res.correlation.r]
            return d

        _guard(rec["coupling"], f"W{W}", coupling)
    signs = {W: c.get("sign") for W, c in ((int(k[1:]), v) for k, v in rec["coupling"].items()) if "error" not in c}
    rec["coupling"]["lag_flip"] = {"signs": {str(k): v for k, v in signs.items()},
                                   "flip": len({s for s in signs.values() if s}) == 2}
    val = data.validation("val_loss")
    rec["val"] = {"step": [int(s) for s in val.steps], "loss": [float(v) for v in val.values]}
    rec["val_convergence"] = convergence(rec["val"]["step"], rec["val"]["loss"])
    return rec


def analyses(part: dict[str, Any], out_dir: Path, plan: Plan, results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": []}
    for run in part.get("runs", []):
        try:
            a = analyse_run(out_dir / run["folder"], plan.c_windows, part["primary_window"], plan.n_perm)
        except Exception as e:  # noqa: BLE001 - one run's analysis must not hide the others
            note(results, f"part C: the analysis of {run['folder']} failed: {type(e).__name__}: {e}")
            a = {"run": run["folder"], "error": f"{type(e).__name__}: {e}"}
        out["runs"].append(a)
        k = a.get("kstar", {}).get(f"all/W{part['primary_window']}", {}).get("floor", {})
        ph = a.get("phases", {}).get("plateau", {})
        say(f"  C {run['folder']}: modal k* {k.get('modal')} ({k.get('counts')}), plateau "
            f"{ph.get('plateau_start')}..{ph.get('plateau_end')}, lag flip {a.get('coupling', {}).get('lag_flip')}")
    return out


# ---------------------------------------------------------------------- figures and summary
def figures(results: dict[str, Any], out_dir: Path) -> list[str]:
    """PNG figures (matplotlib's object API, Agg); [] with a note when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        note(results, "matplotlib is not installed: no figures (pip install matplotlib)")
        return []
    dev = results["device"]["name"]
    made = []

    def save(fig: Any, name: str) -> None:
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        atomic_write(out_dir / name, buf.getvalue())
        made.append(name)

    A = results["parts"].get("A", {}).get("result", {})
    if A.get("runs"):
        fig = Figure(figsize=(7, 3.6))
        ax = fig.add_subplot()
        labels = [f"{r['state']}\n{r['dtype']}" for r in A["runs"]]
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], [r["ratio"] for r in A["runs"]], 0.4, label="sketch / read (t.sum() per tensor)")
        ax.bar([x + 0.2 for x in xs], [r["ratio_fused"] for r in A["runs"]], 0.4, label="sketch / fused read")
        ax.axhline(A["goal_ratio"], color="k", ls="--", lw=1, label=f"goal ≤ {A['goal_ratio']:g}")
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("time ratio")
        if max(max(r["ratio"], r["ratio_fused"]) for r in A["runs"]) > 10:
            ax.set_yscale("log")
        ax.set_title(f"Fold sketch (d = 100) against a read pass — {dev}")
        ax.legend(fontsize=8)
        save(fig, "sketch_vs_read.png")
    B = results["parts"].get("B", {}).get("result", {})
    if B.get("round_ratios"):
        fig = Figure(figsize=(6, 3.2))
        ax = fig.add_subplot()
        rr = B["round_ratios"]
        ax.plot(range(1, len(rr) + 1), rr, "o-", label="per round")
        ax.axhline(B["ratio"], color="C1", lw=1.5, label=f"all rounds: {B['ratio']:.3f}")
        ax.axhline(B["goal_ratio"], color="k", ls="--", lw=1, label=f"goal ≤ {B['goal_ratio']:g}")
        ax.set_xlabel("round")
        ax.set_ylabel("time with / without monitor")
        ax.set_title(f"Monitor overhead, {B['parameters'] / 1e6:.1f}M-parameter LM — {dev}")
        ax.legend(fontsize=8)
        save(fig, "monitor_overhead.png")
    C = results["parts"].get("C", {}).get("result", {})
    an = [a for a in C.get("analysis", {}).get("runs", []) if a.get("series")]
    if an:
        W = C["primary_window"]
        fig = Figure(figsize=(7.5, 7))
        ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True)
        for i, a in enumerate(an):
            s = a["series"]
            ax1.step(s["step"], s["k_star"], where="post", color=f"C{i}", lw=1, label=a["run"])
            ax2.plot(s["step"], s["gap_ratio"], color=f"C{i}", lw=1, label=a["run"])
            if i == 0:
                colors = {"rise": "#d8e8f8", "plateau": "#f8ecd0", "collapse": "#f0d8d8"}
                steps, labs = s["step"], s["labels"]
                j = 0
                while j < len(steps):  # one band per run of equal labels
                    k = j
                    while k + 1 < len(steps) and labs[k + 1] == labs[j]:
                        k += 1
                    if labs[j] in colors:
                        ax2.axvspan(steps[j], steps[min(k + 1, len(steps) - 1)], color=colors[labs[j]], lw=0)
                    j = k + 1
            ax3.plot(a["val"]["step"], a["val"]["loss"], color=f"C{i}", lw=1, label=a["run"])
        ax1.set_ylabel(f"k* (W = {W})")
        ax2.set_ylabel(f"gap ratio (W = {W})")
        ax3.set_ylabel("validation loss")
        ax3.set_xlabel("step")
        ax1.set_title(f"{C['model']} — {dev}\n(phases of the first seed shaded: rise, plateau, collapse)", fontsize=9)
        ax1.legend(fontsize=7)
        save(fig, "lm_trajectory.png")
        fig = Figure(figsize=(6, 3.4))
        ax = fig.add_subplot()
        for i, a in enumerate(an):
            for j, (k, c) in enumerate(a["coupling"].items()):
                if k.startswith("W") and "r" in c:
                    ax.plot(c["lags"], c["r"], color=f"C{j}", ls=("-", "--", ":")[i % 3], lw=1,
                            label=f"{k} ({a['run']})")
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel("lag (samples; > 0: gap ratio leads validation loss)")
        ax.set_ylabel("r (detrended)")
        ax.set_title(f"Gap ratio and validation loss — {dev}", fontsize=9)
        ax.legend(fontsize=6)
        save(fig, "lm_coupling.png")
    return made


def _f(v: Any, fmt: str = ".2f") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def summary_md(results: dict[str, Any]) -> str:
    d = results["device"]
    kind = "CPU smoke run: tiny sizes, a check that the suite runs, not a benchmark" if results["smoke"] else "full run"
    lines = [f"### GPU suite on {d['name']} — {kind}", "",
             f"Device: **{d['name']}** ({d['type']}; torch {d['torch']}"
             + (f", CUDA {d['cuda']}" if d.get("cuda") else "") + f"); `python benchmarks/gpu_suite.py "
             f"{' '.join(results['argv'])}`; {results['elapsed_s']:.0f} s of a {results['budget_s']:.0f} s budget.", ""]
    A = results["parts"].get("A", {})
    lines += ["**A. Fold sketch (d = 100) against a read pass of the same tensors** (median of "
              f"{A.get('result', {}).get('repeats', '–')}; goal ≤ 2)", ""]
    if A.get("result", {}).get("runs"):
        lines += ["| state | dtype | parameters | read, t.sum() per tensor | fused read | sketch | ratio | ratio to fused |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in A["result"]["runs"]:
            lines.append(f"| {r['state']} | {r['dtype']} | {r['parameters']:,} | {r['read_s'] * 1e3:.2f} ms "
                         f"({r['read_GBps']:.0f} GB/s) | {r['fused_read_s'] * 1e3:.2f} ms ({r['fused_read_GBps']:.0f} GB/s) | "
                         f"{r['sketch_s'] * 1e3:.2f} ms | **{r['ratio']:.2f}** | {r['ratio_fused']:.2f} |")
        chk = next((r["cpu_check"] for r in A["result"]["runs"] if "cpu_check" in r), None)
        if chk:
            what = "CPU against CPU here, a check of the code path" if d["type"] == "cpu" else "the same map on both"
            lines += ["", f"Device sketch against CPU sketch of the same {chk['elements']:,} elements ({what}): "
                          f"relative difference {chk['rel_diff']:.1e}."]
    else:
        why = A.get("status", "not run")
        lines.append(f"Not measured ({'see the notes' if why == 'ok' else why}).")
    B = results["parts"].get("B", {})
    lines += ["", "**B. Monitor overhead** (W = 10, every 10 steps, default sketch; alternating chunks; goal ≤ 1.02)", ""]
    b = B.get("result", {})
    if b.get("rounds"):
        lines += ["| model | parameters | amp | step without | step with | one sample | ratio (rounds) |",
                  "|---|---|---|---|---|---|---|",
                  f"| {b['model']} | {b['parameters']:,} | {b['amp']} | {b['step_ms_without']:.2f} ms | "
                  f"{b['step_ms_with']:.2f} ms | {b['ms_per_sample']:.1f} ms | **{b['ratio']:.3f}** "
                  f"({', '.join(f'{x:.3f}' for x in b['round_ratios'])}) |"]
    else:
        why = B.get("status", "not run")
        lines.append(f"Not measured ({'see the notes' if why == 'ok' else why}).")
    C = results["parts"].get("C", {})
    c = C.get("result", {})
    lines += ["", f"**C. Language model with the monitor** ({c.get('model', '–')}; {c.get('corpus', '')}; every "
                  f"{c.get('every', '–')} steps, W = {', '.join(map(str, c.get('windows', [])))})", ""]
    an = {a.get("run"): a for a in c.get("analysis", {}).get("runs", [])}
    if c.get("runs"):
        W = c["primary_window"]
        lines += [f"| seed | steps | parameters | val loss first → last | within 10% of final at | modal k* (W = {W}, "
                  f"all / trunk) | phases (plateau rule): rise end, collapse start | peak lag per W | lag flip | "
                  f"phase r (W = {W}) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in c["runs"]:
            a = an.get(r["folder"], {})
            ks = a.get("kstar", {})
            k_all = ks.get(f"all/W{W}", {}).get("floor", {})
            k_tr = ks.get(f"other/W{W}", {}).get("floor", {})
            ph = a.get("phases", {}).get("plateau", {})
            cp = a.get("coupling", {})
            lags = ", ".join(f"{k}: {v.get('peak_lag')}" for k, v in cp.items()
                             if k.startswith("W") and "error" not in v) or "–"
            prim = cp.get(f"W{W}", {})
            pr = ", ".join(f"{p} {_f(prim.get(f'r_{p}'))}" for p in ("rise", "plateau", "collapse")
                           if prim.get(f"r_{p}") is not None) or "–"
            conv = a.get("val_convergence", {})
            lines.append(
                f"| {r['seed']} | {r['steps_run']}{' (cut)' if r['truncated'] else ''} | {r['parameters']:,} | "
                f"{r['val_loss_first']:.3f} → {r['val_loss_final']:.3f} | step {conv.get('step')} "
                f"({_f(conv.get('fraction_of_run'), '.0%')}) | {k_all.get('modal')} / {k_tr.get('modal')} | "
                f"{ph.get('plateau_start')}, {ph.get('collapse_start')} | {lags} | "
                f"{cp.get('lag_flip', {}).get('flip')} | {pr} |")
    else:
        why = C.get("status", "not run")
        lines.append(f"Not run ({'see the notes' if why == 'ok' else why}).")
    if results["notes"]:
        lines += ["", "Notes: " + "; ".join(results["notes"]) + "."]
    if results.get("figures"):
        lines += ["", "Figures: " + ", ".join(f"`{f}`" for f in results["figures"]) + "."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- driver
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"gpu_suite: {message} (see --help)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = _Parser(prog="gpu_suite.py", description=__doc__.split("\n\n")[0],
                 formatter_class=argparse.RawDescriptionHelpFormatter,
                 epilog="Example: python benchmarks/gpu_suite.py --out runs/gpu-suite")
    ap.add_argument("--out", required=True, help="folder for results.json, summary.md, figures and runs")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU check that everything runs)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--time-budget", type=float, default=420.0, help="seconds for the whole suite (default 420)")
    ap.add_argument("--lm-steps", type=int, default=None, help="part C: steps per seed (default 4000; smoke 240)")
    ap.add_argument("--lm-seeds", type=int, default=None, help="part C: at most this many seeds (default 3; smoke 2)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's; with --smoke 1, steady on a shared machine)")
    ap.add_argument("--overwrite", action="store_true", help="replace this suite's files in a non-empty --out")
    args = ap.parse_args(argv)
    if not (math.isfinite(args.time_budget) and args.time_budget > 0):
        raise UsageError(f"gpu_suite: --time-budget must be a positive number of seconds, got {args.time_budget}")
    if args.lm_steps is not None and args.lm_steps < 1:
        raise UsageError(f"gpu_suite: --lm-steps must be ≥ 1, got {args.lm_steps}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"gpu_suite: --threads must be ≥ 1, got {args.threads}")
    if args.lm_seeds is not None and not 1 <= args.lm_seeds <= 3:
        raise UsageError(f"gpu_suite: --lm-seeds must be 1, 2 or 3, got {args.lm_seeds}")
    return args


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, or a non-empty folder without --overwrite (before any write)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"gpu_suite: --out {out} exists and is not a folder")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        if entries and not overwrite:
            raise UsageError(f"gpu_suite: --out {out} is not empty ({len(entries)} entries, e.g. {entries[0]!r}); "
                             "pass --overwrite to replace this suite's files there, or choose another folder")


def clear_outputs(out: Path) -> None:
    """With --overwrite: remove what an earlier run of this suite wrote (nothing else)."""
    import shutil

    for name in OUTPUTS:
        p = out / name
        if p.is_file() or p.is_symlink():
            p.unlink()
    for p in out.glob("lm_seed*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)


def device_info(device: Any) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"type": device.type, "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                    memory_bytes=int(p.total_memory), multiprocessors=int(p.multi_processor_count))
    else:
        info.update(name=f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"{torch.get_num_threads()} torch threads)", cuda=None)
    return info


def run_part(results: dict[str, Any], key: str, fn: Callable[[], dict[str, Any]]) -> None:
    t = time.perf_counter()
    say(f"part {key} (at {time.perf_counter() - T0:.0f} s)")
    try:
        results["parts"][key] = {"status": "ok", "result": fn()}
    except Exception as e:  # noqa: BLE001 - the other parts still run; the error is recorded
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        results["parts"][key] = {"status": f"failed: {msg}", "traceback": traceback.format_exc()}
        print(f"gpu_suite: part {key} failed: {msg}", file=sys.stderr, flush=True)
    results["parts"][key]["seconds"] = time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        out = Path(args.out)
        check_out(out, args.overwrite)
        import torch

        if args.device == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"gpu_suite: --device cuda, but torch {torch.__version__} sees no CUDA device")
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    threads = args.threads or (1 if args.smoke else None)
    if threads:
        torch.set_num_threads(threads)
    name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device("cuda", torch.cuda.current_device()) if name == "cuda" else torch.device("cpu")
    say(f"device: {name}" + ("" if args.device else " (cuda if available, else cpu)"))
    plan = SMOKE if args.smoke else FULL
    if args.lm_steps is not None:
        plan = replace(plan, c_steps=args.lm_steps, c_min_steps=min(plan.c_min_steps, args.lm_steps))
    if args.lm_seeds is not None:
        plan = replace(plan, c_seeds=(42, 43, 44)[: args.lm_seeds])
    out.mkdir(parents=True, exist_ok=True)
    if args.overwrite:
        clear_outputs(out)
    clock = Clock(args.time_budget)
    results: dict[str, Any] = {"suite": "benchmarks/gpu_suite.py", "version": 1, "smoke": args.smoke,
                               "argv": argv, "budget_s": args.time_budget, "device": device_info(device),
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "plan": asdict(plan),
                               "notes": [], "parts": {}, "complete": False}
    say(f"  {results['device']['name']}, torch {results['device']['torch']}")
    partial = out / "results.partial.json"
    write_json(partial, results)
    budget = args.time_budget
    end_a = clock.now() + plan.share_a * budget
    run_part(results, "A", lambda: part_a(plan, device, clock, end_a, results))
    write_json(partial, {**results, "elapsed_s": clock.now()})
    end_b = max(clock.now(), plan.share_a * budget) + plan.share_b * budget
    run_part(results, "B", lambda: part_b(plan, device, clock, end_b, out, results))
    write_json(partial, {**results, "elapsed_s": clock.now()})
    end_c = budget - plan.reserve

    def c() -> dict[str, Any]:
        rec = part_c(plan, device, clock, end_c, out, results)
        write_json(partial, {**results, "parts": {**results["parts"], "C": {"status": "analysing", "result": rec}}})
        rec["analysis"] = analyses(rec, out, plan, results)
        return rec

    run_part(results, "C", c)
    results["figures"] = []
    try:
        results["figures"] = figures(results, out)
    except Exception as e:  # noqa: BLE001 - a figure must not cost the numbers
        note(results, f"figures failed: {type(e).__name__}: {e}")
    results["elapsed_s"] = clock.now()
    results["complete"] = True
    atomic_write(out / "summary.md", summary_md(results).encode("utf-8"))
    write_json(out / "results.json", results)
    partial.unlink(missing_ok=True)
    failed = [k for k, p in results["parts"].items() if p["status"] != "ok"]
    say(f"done in {results['elapsed_s']:.0f} s: {out / 'results.json'}, {out / 'summary.md'}"
        + (f", figures {', '.join(results['figures'])}" if results["figures"] else "")
        + (f"; FAILED parts: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
