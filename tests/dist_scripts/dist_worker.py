"""One rank of a distributed test: ``python dist_worker.py CASE OUTDIR``.

Reads the torchrun-style variables RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, joins a
gloo process group and runs ``CASES[CASE]``. The checks run inside the ranks (they see the
shards); the case's return value goes to ``OUTDIR/result<rank>.pt`` and any exception, with
its traceback, to ``OUTDIR/error<rank>.txt`` for the parent test to report.
"""

from __future__ import annotations

import copy
import os
import sys
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from spectral_edge.stream.analyzer import AnalysisConfig, TrajectoryAnalyzer
from spectral_edge.functional.sketch import SketchSpec
from spectral_edge.integrations import distributed as sd
from spectral_edge.monitor import Monitor
from spectral_edge.selection import Selection

sys.path.insert(0, str(Path(__file__).parent))
from dist_common import assert_rows_close  # noqa: E402

FAMILIES = ("exact", "fold", "gaussian", "countsketch")
REL = 1e-10


# ---------------------------------------------------------------------------- shared helpers
def spec(family: str) -> SketchSpec:
    """Small sketches; ``fold`` with a tiny prime B so shards straddle many chunk boundaries
    (``fold-default``: the default B = 16381)."""
    if family == "fold-default":
        return SketchSpec("fold", dim=12, seed=7)
    return SketchSpec(family, dim=12, seed=7, buckets=13 if family == "fold" else 16381)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ (0 when both are zero)."""
    den = float(b.norm())
    num = float((a - b).norm())
    return num / den if den else num


def assert_sketches_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], what: str,
                          rel: float = REL) -> float:
    """Same groups, every group within ``rel``; returns the worst relative error."""
    assert list(got) == list(want), f"{what}: groups {list(got)} != {list(want)}"
    worst = 0.0
    for g in want:
        e = rel_err(got[g].double().cpu(), want[g].double().cpu())
        assert e <= rel, f"{what}: group {g!r} relative error {e:.3e} > {rel:g}"
        worst = max(worst, e)
    return worst


def odd_mlp() -> torch.nn.Sequential:
    """Linear layers with odd sizes (7×5, 3×7, 13×3, 11×13; biases 7, 3, 13, 11): uneven shards."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3), torch.nn.Tanh(),
        torch.nn.Linear(3, 13), torch.nn.Tanh(), torch.nn.Linear(13, 11),
    ).double()


def full_state(model: torch.nn.Module, grads: bool = False) -> dict[str, torch.Tensor]:
    """Unsharded copies of the parameters (or gradients) of a possibly sharded model (collective)."""
    out = {}
    for n, p in model.named_parameters():
        t = p.grad if grads else p.detach()
        out[n] = t.full_tensor() if sd.is_dtensor(t) else t.clone()
    return out


def checker(mon: Monitor) -> TrajectoryAnalyzer:
    """A single-process analyzer with the monitor's configuration and global shapes."""
    return TrajectoryAnalyzer(mon.config, {n: (tuple(p.shape), p.dtype) for n, p in mon._params.items()})


def last_states(an: TrajectoryAnalyzer) -> dict[str, torch.Tensor]:
    """The newest vector pushed into each group's window."""
    return {g: w.last_state.clone() for g, w in an.windows.items()}


# ---------------------------------------------------------------------------- cases
def case_fsdp(rank: int, out: Path) -> dict[str, Any]:
    """FSDP2 ``fully_shard`` on a CPU gloo mesh: the sharded Monitor's sketches (parameters and
    gradients) equal single-process sketches of the gathered tensors, and its rows equal
    those of a single-process Monitor on an unsharded twin trained identically."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (2,))
    g = torch.Generator().manual_seed(3)
    X, Y = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randn(16, 11, generator=g, dtype=torch.float64)
    report: dict[str, Any] = {"worst": {}, "local_numel": {}}
    for family in ("exact", "fold", "gaussian"):
        ref = odd_mlp()
        model = copy.deepcopy(ref)
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        assert all(sd.is_dtensor(p) for p in model.parameters())
        report["local_numel"][family] = {n: p.to_local().numel() for n, p in model.named_parameters()}
        kw = dict(windows=(2, 3), every=1, sketch=spec(family), gradients=True,
                  selection=Selection(group_by="matrix" if family == "fold" else "none"))
        mon = Monitor(model, distributed="sharded", history=out / f"{family}-{rank}.jsonl", **kw)
        assert mon.mode == "sharded"
        ref_mon = Monitor(ref, distributed=None, **kw)
        check = checker(mon)
        assert_sketches_close(last_states(mon.updates), check.sketcher.sketch(full_state(model)), f"{family} initial")
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
        mon.attach(opt)
        ref_mon.attach(ref_opt)
        worst = 0.0
        for step in range(6):
            for m, o in ((model, opt), (ref, ref_opt)):  # the same full batch on both ranks
                loss = torch.nn.functional.mse_loss(m(X), Y)
                o.zero_grad()
                loss.backward()
                o.step()
            full, ref_full = full_state(model), {n: p.detach() for n, p in ref.named_parameters()}
            for n in ref_full:
                assert torch.allclose(full[n], ref_full[n], rtol=0, atol=1e-12), f"{family}: FSDP and reference diverged at {n}"
            worst = max(worst, assert_sketches_close(
                last_states(mon.updates), check.sketcher.sketch(full), f"{family} step {step} params"))
            worst = max(worst, assert_sketches_close(
                last_states(mon.grads), check.sketcher.sketch(full_state(model, grads=True)), f"{family} step {step} grads"))
        mon.close()
        report["worst"][family] = worst
        if rank == 0:
            sed = [r for r in mon.rows if r["kind"] in ("sed", "grad")]
            assert_rows_close(sed, [r for r in ref_mon.rows if r["kind"] in ("sed", "grad")], f"{family} rows")
            report[f"rows_{family}"] = mon.rows
        else:
            assert mon.rows == [] and not (out / f"{family}-{rank}.jsonl").exists()
        # every rank holds the same window state (resumable anywhere)
        states = [None, None]
        dist.all_gather_object(states, {g: w.last_state for g, w in mon.updates.windows.items()})
        for gname in states[0]:
            assert torch.equal(states[0][gname], states[1][gname])
    return report


def dtensor_params(mesh: Any) -> tuple[list[tuple[str, torch.nn.Parameter]], dict[str, torch.Tensor]]:
    """DTensor parameters with Shard(0), Shard(1), Shard(2), Replicate and an empty shard,
    plus one plain (replicated) tensor; and their full values."""
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    g = torch.Generator().manual_seed(11)
    layout = {
        "rows": ((7, 5), Shard(0)),
        "cols": ((6, 9), Shard(1)),  # 5 | 4 columns: one run per row
        "cube.mid": ((3, 5, 4), Shard(1)),  # 3 | 2 of the middle dim: one run per leading index
        "cube.last": ((2, 3, 5), Shard(2)),  # 3 | 2 of the last dim: one run per (i, j)
        "rep": ((4, 3), Replicate()),  # every rank holds it all: must count once
        "tiny": ((1, 3), Shard(0)),  # rank 1 holds nothing
    }
    full, params = {}, []
    for name, (shape, pl) in layout.items():
        full[name] = torch.randn(*shape, generator=g, dtype=torch.float64)
        params.append((name, torch.nn.Parameter(distribute_tensor(full[name].clone(), mesh, [pl]))))
    full["plain"] = torch.randn(5, generator=g, dtype=torch.float64)
    params.append(("plain", torch.nn.Parameter(full["plain"].clone())))
    return params, full


def case_dtensor(rank: int, out: Path) -> dict[str, Any]:
    """Hand-made DTensors (Shard(1)/Shard(2) give many runs per shard): the pieces tile every
    tensor exactly once across ranks, and the Monitor ("auto" → sharded) matches a
    single-process Monitor over several deterministic updates, for every family."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import distribute_tensor

    mesh = init_device_mesh("cpu", (2,))
    params, full = dtensor_params(mesh)
    # 1. pieces: disjoint, complete, and holding the right values
    mine = []
    for name, p in params:
        pieces = list(sd.dtensor_pieces(name, p)) if sd.is_dtensor(p) else ([(name, p.detach().reshape(-1), 0)] if rank == 0 else [])
        mine += [(n, off, t.reshape(-1).clone()) for n, t, off in pieces]
    everyone: list[Any] = [None, None]
    dist.all_gather_object(everyone, mine)
    runs = {n: 0 for n in full}
    for name, f in full.items():
        hit = torch.zeros(f.numel(), dtype=torch.int64)
        for n, off, vals in everyone[0] + everyone[1]:
            if n == name:
                hit[off: off + vals.numel()] += 1
                assert torch.equal(vals, f.reshape(-1)[off: off + vals.numel()]), f"{name}: wrong values at {off}"
                runs[name] += 1
        assert bool((hit == 1).all()), f"{name}: elements covered {hit.tolist()} times"
    assert runs["cols"] == 12 and runs["cube.mid"] == 6 and runs["cube.last"] == 12 and runs["rep"] == 1

    # 2. the monitor over a short trajectory, every family
    worst: dict[str, float] = {}
    for family in FAMILIES:
        params, full = dtensor_params(mesh)
        ref = [(n, torch.nn.Parameter(t.clone())) for n, t in full.items()]
        kw = dict(windows=(2, 3), every=1, sketch=spec(family))
        mon = Monitor(params, distributed="auto", **kw)
        assert mon.mode == "sharded", mon.mode
        ref_mon = Monitor(ref, distributed=None, **kw)
        worst[family] = assert_sketches_close(last_states(mon.updates), last_states(ref_mon.updates), f"{family} initial")
        dg = torch.Generator().manual_seed(5)
        for step in range(1, 6):
            with torch.no_grad():
                for (n, p), (_, q) in zip(params, ref):
                    delta = torch.randn(q.shape, generator=dg, dtype=torch.float64) * 0.1 * step
                    q.add_(delta)
                    p.add_(distribute_tensor(delta, mesh, p.placements) if sd.is_dtensor(p) else delta)
            mon.step()
            ref_mon.step()
            worst[family] = max(worst[family], assert_sketches_close(
                last_states(mon.updates), last_states(ref_mon.updates), f"{family} step {step}"))
        if rank == 0:
            assert_rows_close(mon.rows, ref_mon.rows, f"{family} rows")
    return {"worst": worst}


def manual_pieces(full: dict[str, torch.Tensor], rank: int) -> list[sd.Piece]:
    """Each tensor cut at seeded points into segments dealt alternately to the ranks
    (rank 0 always starts at offset 0 with a partial piece); ``whole`` all on rank 1;
    ``flat`` by :func:`flat_shard`."""
    g = torch.Generator().manual_seed(99)
    pieces: list[sd.Piece] = []
    for name, t in full.items():
        flat = t.reshape(-1)
        n = flat.numel()
        if name == "whole":
            if rank == 1:
                pieces.append((name, t, 0))
            continue
        if name == "flat":
            local, off = sd.flat_shard(t, rank, 2)
            pieces.append((name, local, off))
            continue
        cuts = sorted(set(torch.randint(1, n, (5,), generator=g).tolist()))
        bounds = [0, *cuts, n]
        for j in range(len(bounds) - 1):
            if j % 2 == rank:
                pieces.append((name, flat[bounds[j]: bounds[j + 1]], bounds[j]))
    return pieces


def case_manual(rank: int, out: Path) -> dict[str, Any]:
    """Manual flat shards at arbitrary offsets: per-rank sketches sum (one all-reduce) to the
    single-process sketch, for every family and with groups; pushes give identical rows."""
    g = torch.Generator().manual_seed(2)
    shapes = {"a.weight": (7, 5), "b.weight": (13, 3), "b.bias": (11,), "whole": (4, 4), "flat": (37,)}
    worst: dict[str, float] = {}
    for family in (*FAMILIES, "fold-default"):
        for group_by in ("none", "matrix"):
            cfg = AnalysisConfig(windows=(2,), sketch=spec(family), selection=Selection(group_by=group_by))
            infos = {n: (s, torch.float64) for n, s in shapes.items()}
            sharded, single = TrajectoryAnalyzer(cfg, infos), TrajectoryAnalyzer(cfg, infos)
            rows_sh, rows_1 = [], []
            for step in range(4):
                full = {n: torch.randn(*s, generator=g, dtype=torch.float64) for n, s in shapes.items()}
                pieces = manual_pieces(full, rank)
                local = sd.sketch_shards(sharded, pieces)
                want = single.sketcher.sketch(full)
                got = sd.sketch_sharded(sharded, pieces)
                key = f"{family}/{group_by}"
                worst[key] = max(worst.get(key, 0.0), assert_sketches_close(got, want, f"{key} step {step}"))
                assert rel_err(local["all"], want["all"]) > 1e-3, "one rank's share should not be the whole sketch"
                rows_sh += sd.push_sharded(sharded, step, pieces)
                rows_1 += single.push(step, full.items())
            assert_rows_close(rows_sh, rows_1, f"{family}/{group_by} rows")
    return {"worst": worst}


def case_ddp(rank: int, out: Path) -> dict[str, Any]:
    """DDP with the Monitor on both ranks: rank 0 sketches and writes history, rank 1 neither
    sketches nor communicates; losses are bit-identical with and without the monitor."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from dist_common import MONITOR_KW, STEPS, batch, make_model

    def run(with_monitor: bool) -> dict[str, Any]:
        model = DDP(make_model())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        X, Y = batch()
        lo, hi = rank * len(X) // 2, (rank + 1) * len(X) // 2  # this rank's half of the global batch
        calls = {"sketch": 0, "all_reduce": 0}
        mon = None
        if with_monitor:
            mon = Monitor(model, history=out / f"history-{rank}.jsonl", **MONITOR_KW)
            inner = mon._sketch

            def counted(*a: Any, **k: Any) -> Any:
                calls["sketch"] += 1
                return inner(*a, **k)

            mon._sketch = counted  # type: ignore[method-assign]
            mon.attach(opt)
        real_all_reduce = dist.all_reduce

        def spy(*a: Any, **k: Any) -> Any:
            calls["all_reduce"] += 1
            return real_all_reduce(*a, **k)

        dist.all_reduce = spy  # the monitor's only collective; DDP reduces in C++
        try:
            losses = []
            for _ in range(STEPS):
                loss = torch.nn.functional.mse_loss(model(X[lo:hi]), Y[lo:hi])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        finally:
            dist.all_reduce = real_all_reduce
        res = {"losses": losses, "params": {n: p.detach().clone() for n, p in model.module.named_parameters()},
               "calls": calls}
        if mon is not None:
            mon.close()
            res.update(mode=mon.mode, rows=mon.rows, bytes=mon.bytes_communicated,
                       samples=mon.updates.windows["all"].n_samples, grad_samples=mon.grads.windows["all"].n_samples)
        return res

    plain, watched = run(False), run(True)
    assert watched["mode"] == "replicated"
    assert plain["losses"] == watched["losses"], "the monitor changed training"
    for n in plain["params"]:
        assert torch.equal(plain["params"][n], watched["params"][n]), n
    return {"plain": plain, "watched": watched}


def case_bytes(rank: int, out: Path) -> dict[str, Any]:
    """bytes_communicated after N samples is N × Σ_groups d × 8 (one float64 per group and dim)."""
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (2,))
    res: dict[str, Any] = {}
    for family, group_by, gradients in (("fold", "matrix", False), ("gaussian", "none", False),
                                        ("fold", "none", True), ("exact", "matrix", False)):
        params, _ = dtensor_params(mesh)
        mon = Monitor(params, windows=(2,), every=2, sketch=spec(family), gradients=gradients,
                      selection=Selection(group_by=group_by), distributed="sharded")
        after_init = mon.bytes_communicated
        steps = 7
        for _ in range(steps):
            if gradients:
                for _, p in params:
                    p.grad = torch.ones_like(p)
                mon.pre_step()
            mon.step()
        n_samples = 1 + steps // 2 + (steps // 2 if gradients else 0)
        dims = mon.updates.sketcher.dims
        res[f"{family}/{group_by}/grad={gradients}"] = {
            "bytes": mon.bytes_communicated, "after_init": after_init, "n_samples": n_samples,
            "groups": len(dims), "dims": dims, "per_sample": sd.bytes_per_sample(mon.updates),
        }
    return res


CASES: dict[str, Callable[[int, Path], Any]] = {
    "fsdp": case_fsdp, "dtensor": case_dtensor, "manual": case_manual, "ddp": case_ddp, "bytes": case_bytes,
}


def main() -> None:
    case, out = sys.argv[1], Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", timeout=timedelta(seconds=60))
        result = CASES[case](rank, out)
        dist.barrier()
        torch.save(result, out / f"result{rank}.pt")
        dist.destroy_process_group()
    except BaseException:
        (out / f"error{rank}.txt").write_text(traceback.format_exc())
        sys.stderr.flush()
        os._exit(1)  # do not linger in a collective the other rank will never join
    # Skip interpreter teardown: with torch 2.13, a process that used FSDP2 over gloo on CPU
    # aborts at exit ("terminate called without an active exception") in about 1 run in 20,
    # after destroy_process_group has returned. A 25-line script without spectral_edge
    # (fully_shard, six SGD steps, barrier, destroy) reproduces it 2 times in 40, so the
    # abort is torch's, and it comes after the result is on disk.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
