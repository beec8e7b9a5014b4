"""Writers of small checkpoint folders in every supported format, for tests.

Import from a test module as ``from helpers_ckpt import ...`` (``tests/`` is on sys.path).
Each writer returns what it wrote so a test can compare tensors read back.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from torch import nn


class TinyLM(nn.Module):
    """A GPT-like toy: tied embedding/output weights and a causal-mask buffer."""

    def __init__(self, vocab: int = 11, dim: int = 6, ctx: int = 4) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(ctx, dim)
        self.block = nn.Linear(dim, dim)
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as in GPT-2 / nanoGPT
        self.register_buffer("attn_bias", torch.tril(torch.ones(ctx, ctx)).view(1, 1, ctx, ctx))


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A small state dict with several dtypes and ranks (no shared storage)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(7, 5, generator=g),
        "layers.0.attn.q_proj.weight": torch.randn(5, 5, generator=g),
        "layers.0.attn.q_proj.bias": torch.randn(5, generator=g),
        "layers.0.mlp.fc.weight": torch.randn(9, 5, generator=g).to(torch.bfloat16),
        "layers.0.norm.scale": torch.tensor(1.5, dtype=torch.float64),
        "layers.0.counter": torch.arange(4, dtype=torch.int64),
        "head.weight": torch.randn(3, 5, generator=g).half(),
    }


def write_safetensors(path: Path, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Save ``sd`` as one safetensors file."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return sd


def _split(sd: dict[str, torch.Tensor], shards: int) -> list[dict[str, torch.Tensor]]:
    """Deal the entries of ``sd`` round-robin into ``shards`` parts."""
    parts: list[dict[str, torch.Tensor]] = [{} for _ in range(shards)]
    for i, (k, v) in enumerate(sd.items()):
        parts[i % shards][k] = v
    return parts


def write_hf_checkpoint(
    folder: Path, sd: dict[str, torch.Tensor], shards: int = 1, kind: str = "safetensors", extras: bool = True
) -> dict[str, torch.Tensor]:
    """A Hugging Face Trainer ``checkpoint-<step>/`` folder (``kind``: safetensors or bin), optionally sharded."""
    folder.mkdir(parents=True, exist_ok=True)
    base, ext = ("model", "safetensors") if kind == "safetensors" else ("pytorch_model", "bin")
    if shards == 1:
        files = {f"{base}.{ext}": sd}
    else:
        files = {f"{base}-{i + 1:05d}-of-{shards:05d}.{ext}": part for i, part in enumerate(_split(sd, shards))}
        weight_map = {k: fname for fname, part in files.items() for k in part}
        index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
        (folder / f"{base}.{ext}.index.json").write_text(json.dumps(index))
    for fname, part in files.items():
        if kind == "safetensors":
            write_safetensors(folder / fname, part)
        else:
            torch.save(part, folder / fname)
    if extras:
        torch.save({"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}, folder / "optimizer.pt")
        torch.save({"last_epoch": 3}, folder / "scheduler.pt")
        torch.save({"python": 1}, folder / "rng_state.pth")
        (folder / "trainer_state.json").write_text("{}")
        (folder / "config.json").write_text("{}")
        (folder / "training_args.bin").write_bytes(b"\x80\x04not a checkpoint")
    return sd


def write_dcp(folder: Path, state: dict) -> None:
    """Save ``state`` with ``torch.distributed.checkpoint.save`` in this process (no process group)."""
    import warnings

    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=str(folder))


_TWO_RANK_SCRIPT = textwrap.dedent(
    """
    import os, socket, sys, warnings
    warnings.simplefilter("ignore")
    import torch, torch.distributed as dist, torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[2])))
    from helpers_ckpt import sharded_state_dict
    out = sys.argv[1]
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()

    def run(rank):
        os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo")
        mesh = init_device_mesh("cpu", (2,))
        sd = sharded_state_dict()
        model = {
            "w": distribute_tensor(sd["w"], mesh, [Shard(0)]),
            "b": distribute_tensor(sd["b"], mesh, [Shard(0)]),
            "r": distribute_tensor(sd["r"], mesh, [Replicate()]),
            "plain": sd["plain"],
        }
        dcp.save({"model": model, "step": 7}, checkpoint_id=out)
        dist.destroy_process_group()

    pids = []
    for rank in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                run(rank)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitpid(p, 0)[1] for p in pids]
    sys.exit(0 if codes == [0, 0] else 1)
    """
)


def sharded_state_dict() -> dict[str, torch.Tensor]:
    """The tensors the two-rank DCP save writes (``w`` and ``b`` split across ranks)."""
    g = torch.Generator().manual_seed(42)
    return {
        "w": torch.randn(6, 4, generator=g),
        "b": torch.randn(5, generator=g),
        "r": torch.randn(3, 3, generator=g),
        "plain": torch.randn(2, 2, generator=g),
    }


def write_dcp_two_ranks(folder: Path, timeout: float = 120.0) -> dict[str, torch.Tensor]:
    """Save :func:`sharded_state_dict` from two gloo ranks (forked), as ``{"model": ..., "step": 7}``."""
    proc = subprocess.run(
        [sys.executable, "-c", _TWO_RANK_SCRIPT, str(folder), __file__],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"two-rank DCP save failed:\n{proc.stdout}\n{proc.stderr}")
    return sharded_state_dict()


class SideEffect:
    """A pickle payload that, if ever unpickled, runs a shell command creating ``sentinel``."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch '{self.sentinel}'",))


def malicious_pickle_bytes(sentinel: Path, protocol: int = 2) -> bytes:
    """Raw pickle bytes whose loading would call ``os.system``."""
    return pickle.dumps({"weight": SideEffect(sentinel)}, protocol=protocol)


def deny_listing(monkeypatch, denied: Path) -> None:
    """Make listing ``denied``, and looking at anything inside it, fail as for a folder without
    permission (tests run as root, who is never refused)."""
    import os

    real_scandir, real_stat = os.scandir, os.stat

    def scandir(path=".", *a, **k):
        if Path(os.fsdecode(path)) == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path, *a, **k)

    def stat(path, *a, **k):
        if isinstance(path, (str, bytes, os.PathLike)) and denied in Path(os.fsdecode(path)).parents:
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *a, **k)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)
