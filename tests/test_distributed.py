"""Distributed sketching on 2 CPU processes (gloo): FSDP2, DTensor shards, manual shards, DDP,
and the bytes each sharded sample communicates.

Each test starts two ranks of ``tests/dist_scripts/dist_worker.py`` with torchrun-style
environment variables on a fresh port; the ranks run the checks, and their tracebacks (or a
hang, after a timeout) become this test's failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from spectral_edge.integrations import distributed as sd

SCRIPTS = Path(__file__).parent / "dist_scripts"
WORKER = SCRIPTS / "dist_worker.py"
WORLD = 2
TIMEOUT_S = 300  # generous: under pytest-xdist on a loaded 2-core machine a case can take minutes

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(case: str, tmp_path: Path, timeout: float = TIMEOUT_S) -> list[Any]:
    """Run ``case`` on WORLD ranks; return each rank's result or fail with their tracebacks.

    A free port can be taken by another process (another xdist worker's ranks) between
    ``_free_port`` and rank 0's bind; that one failure is retried once on a new port."""
    try:
        return _run_ranks(case, tmp_path / case, timeout)
    except pytest.fail.Exception as e:
        if "address already in use" not in str(e).lower():
            raise
    shutil.rmtree(tmp_path / case)
    return _run_ranks(case, tmp_path / case, timeout)


def _run_ranks(case: str, out: Path, timeout: float) -> list[Any]:
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHELASTIC", "GROUP_", "LOCAL_WORLD"))}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(WORLD),
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs, logs = [], []
    for rank in range(WORLD):
        log = open(out / f"log{rank}.txt", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, str(WORKER), case, str(out)], stdout=log,
                                      stderr=subprocess.STDOUT, env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}))
    deadline = time.monotonic() + timeout
    hung = False
    try:
        while any(p.poll() is None for p in procs):
            if any(p.returncode not in (None, 0) for p in procs):  # one failed: give the other a moment
                deadline = min(deadline, time.monotonic() + 10)
            if time.monotonic() > deadline:
                hung = True
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    problems = []
    for rank, p in enumerate(procs):
        err = out / f"error{rank}.txt"
        if err.exists():
            problems.append(f"--- rank {rank} raised:\n{err.read_text()}")
        elif p.returncode != 0:
            tail = (out / f"log{rank}.txt").read_text(errors="replace")[-3000:]
            problems.append(f"--- rank {rank} exited with {p.returncode}{' (killed after a hang)' if hung else ''}:\n{tail}")
    if problems:
        pytest.fail(f"distributed case {case!r} failed\n" + "\n".join(problems), pytrace=False)
    return [torch.load(out / f"result{rank}.pt", weights_only=False) for rank in range(WORLD)]


# ---------------------------------------------------------------------------- tests
def test_fsdp2_sharded_monitor_equals_single_process(tmp_path: Path) -> None:
    """FSDP2 (fully_shard, CPU gloo): full sketches to 1e-10 relative, identical rows."""
    res = run_ranks("fsdp", tmp_path)
    for family in ("exact", "fold", "gaussian"):
        assert res[0]["worst"][family] <= 1e-10 and res[1]["worst"][family] <= 1e-10
        sizes = [res[r]["local_numel"][family] for r in range(WORLD)]
        assert sizes[0]["0.weight"] == 20 and sizes[1]["0.weight"] == 15  # 7 rows cut 4 | 3
        assert sizes[0]["6.bias"] == 6 and sizes[1]["6.bias"] == 5
        # rank 0's history file holds exactly its rows
        lines = [json.loads(s) for s in (tmp_path / "fsdp" / f"{family}-0.jsonl").read_text().splitlines()]
        assert lines[0]["kind"] == "meta" and lines[0]["distributed"] == "sharded"
        assert len(lines) - 1 == len(res[0][f"rows_{family}"]) > 0
    assert not list((tmp_path / "fsdp").glob("*-1.jsonl"))


def test_dtensor_shards_along_any_dim_tile_and_sketch_exactly(tmp_path: Path) -> None:
    """Shard(0)/(1)/(2), Replicate, an empty shard and a plain tensor: pieces tile each tensor
    once; the sharded Monitor equals a single-process one for every family."""
    res = run_ranks("dtensor", tmp_path)
    for r in range(WORLD):
        assert set(res[r]["worst"]) == {"exact", "fold", "gaussian", "countsketch"}
        assert max(res[r]["worst"].values()) <= 1e-10


def test_manual_shards_at_arbitrary_offsets_sum_to_the_full_sketch(tmp_path: Path) -> None:
    """Hand-cut flat shards, one all-reduce: the single-process sketch and rows."""
    res = run_ranks("manual", tmp_path)
    assert len(res[0]["worst"]) == 10  # 5 sketches × 2 groupings
    assert max(res[0]["worst"].values()) <= 1e-10


def test_ddp_replicated_rank0_records_rank1_idle(tmp_path: Path) -> None:
    """DDP: rank 0 alone sketches and writes history; no monitor communication; rows equal a
    single-process run on the global batch; training unchanged by the monitor."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        from dist_common import MONITOR_KW, STEPS, assert_rows_close, batch, make_model
    finally:
        sys.path.remove(str(SCRIPTS))
    from spectral_edge.monitor import Monitor

    res = run_ranks("ddp", tmp_path)
    r0, r1 = res[0]["watched"], res[1]["watched"]
    # after set-up (which took the initial sample) rank 0 sketched STEPS/every params + as many grads; rank 1 never
    per_stream = STEPS // MONITOR_KW["every"]
    assert r0["calls"]["sketch"] == 2 * per_stream and r0["samples"] == 1 + per_stream
    assert r1["calls"]["sketch"] == 0 and r1["rows"] == [] and r1["samples"] == 0 and r1["grad_samples"] == 0
    assert r0["calls"]["all_reduce"] == r1["calls"]["all_reduce"] == 0 and r0["bytes"] == r1["bytes"] == 0
    assert (tmp_path / "ddp" / "history-0.jsonl").exists() and not (tmp_path / "ddp" / "history-1.jsonl").exists()
    for r in range(WORLD):
        assert res[r]["plain"]["losses"] == res[r]["watched"]["losses"]

    # single-process reference on the global batch
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    mon = Monitor(model, distributed=None, **MONITOR_KW)
    mon.attach(opt)
    X, Y = batch()
    losses = []
    for _ in range(STEPS):
        loss = torch.nn.functional.mse_loss(model(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    ddp_mean = [(a + b) / 2 for a, b in zip(res[0]["watched"]["losses"], res[1]["watched"]["losses"])]
    assert ddp_mean == pytest.approx(losses, rel=1e-12)
    for n, p in model.named_parameters():
        assert torch.allclose(r0["params"][n], p.detach(), rtol=0, atol=1e-12), n
    want = [r for r in mon.rows if r["kind"] in ("sed", "grad")]
    got = [r for r in r0["rows"] if r["kind"] in ("sed", "grad")]
    assert_rows_close(got, want, "DDP rank 0 vs single process")
    hist = [json.loads(s) for s in (tmp_path / "ddp" / "history-0.jsonl").read_text().splitlines()]
    assert hist[0]["kind"] == "meta" and hist[0]["distributed"] == "replicated"
    assert len([h for h in hist if h["kind"] in ("sed", "grad")]) == len(got)


def test_sharded_bytes_per_sample_are_groups_times_d_floats(tmp_path: Path) -> None:
    """bytes_communicated = samples × Σ_groups d × 8, from the first (initial) sample on."""
    res = run_ranks("bytes", tmp_path)
    for r in range(WORLD):
        for key, m in res[r].items():
            assert m["per_sample"] == 8 * sum(m["dims"].values())
            assert m["after_init"] == m["per_sample"], key
            assert m["bytes"] == m["n_samples"] * m["per_sample"], key
    fold = res[0]["fold/matrix/grad=False"]
    assert fold["groups"] == 8 and set(fold["dims"].values()) == {12}  # all + 7 tensors, d = 12
    assert fold["bytes"] == 4 * 8 * 12 * 8  # 4 samples × 8 groups × d × 8 bytes
    assert res[0]["fold/none/grad=True"]["bytes"] == 7 * 12 * 8  # 4 parameter + 3 gradient samples


# ---------------------------------------------------------------------------- single-process helpers
def test_block_runs_cover_each_element_once() -> None:
    """A block at an offset, cut into flat runs, holds exactly its own elements."""
    full = torch.arange(3 * 5 * 4).reshape(3, 5, 4)
    for off, size in (((1, 0, 0), (2, 5, 4)), ((0, 2, 0), (3, 2, 4)), ((0, 1, 1), (3, 3, 2)), ((2, 4, 3), (1, 1, 1))):
        block = full[tuple(slice(o, o + s) for o, s in zip(off, size))]
        runs = list(sd.block_runs("t", block, full.shape, off))
        got = torch.cat([v for _, v, _ in runs])
        assert torch.equal(torch.sort(got).values, torch.sort(block.reshape(-1)).values)
        for _, v, o in runs:
            assert torch.equal(v, full.reshape(-1)[o: o + v.numel()])
    assert len(list(sd.block_runs("t", full[1:], full.shape, (1, 0, 0)))) == 1


def test_shard_range_and_first_piece_at_offset_zero() -> None:
    """torch.chunk-style slices; a partial first piece (offset 0) is accepted by add_piece."""
    assert [sd.shard_range(11, r, 2) for r in range(2)] == [(0, 6), (6, 11)]
    assert [sd.shard_range(1, r, 3) for r in range(3)] == [(0, 1), (1, 1), (1, 1)]
    from spectral_edge.engine import AnalysisConfig, TrajectoryAnalyzer
    from spectral_edge.functional.sketch import SketchSpec

    for family in ("exact", "fold", "gaussian", "countsketch"):
        an = TrajectoryAnalyzer(AnalysisConfig(windows=(2,), sketch=SketchSpec(family, dim=8, buckets=13)),
                                {"w": ((7, 5), torch.float64)})
        w = torch.randn(7, 5, dtype=torch.float64)
        parts = [(*sd.flat_shard(w, r, 3),) for r in range(3)]
        total = sum(sd.sketch_shards(an, [("w", t, o)])["all"] for t, o in parts)
        want = an.sketch([("w", w)])["all"]
        assert float((total - want).norm()) <= 1e-12 * float(want.norm())
