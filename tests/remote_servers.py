"""Real servers and stores for the remote-source tests, started by the tests themselves: a moto
S3 server on 127.0.0.1 (checkpoints uploaded with boto3) and a Hugging Face cache laid out as
the Hub client writes it. Nothing here reaches the internet."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

import torch

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
_lock = threading.Lock()
_servers: dict[int, object] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_server(port: int | None = None) -> str:
    """A moto S3 server on 127.0.0.1 (started once per port and process); returns its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log on stderr (the corpus counts its lines)
    with _lock:
        if port is not None and port in _servers:
            return f"http://127.0.0.1:{port}"
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port or 0, verbose=False)
        server.start()
        host, real = server.get_host_and_port()
        _servers[real] = server
        return f"http://127.0.0.1:{real}"


def s3_env(endpoint: str) -> dict[str, str]:
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


def upload(endpoint: str, bucket: str, folder: Path, prefix: str, *, create: bool = True) -> None:
    """Upload every file below ``folder`` to ``s3://bucket/prefix/…`` with boto3."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    if create:
        s3.create_bucket(Bucket=bucket)
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(folder).as_posix()}")


def make_states(n: int = 8, *, big: int = 600 * 1000, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` states of a small model (float32 matrix of ``big`` elements, a bias, a float16 and a
    bfloat16 tensor), each a small random step from the last (explicit seed)."""
    g = torch.Generator().manual_seed(seed)
    state = {"layers.0.weight": torch.randn(big // 1000, 1000, generator=g), "layers.0.bias": torch.randn(77, generator=g),
             "head.weight": torch.randn(64, 64, generator=g).half(), "norm.weight": torch.ones(64).bfloat16()}
    out = []
    for _ in range(n):
        state = {k: (v.float() + 0.01 * torch.randn(v.shape, generator=g)).to(v.dtype) for k, v in state.items()}
        out.append(state)
    return out


def write_run(folder: Path, states, steps, kinds=None) -> Path:
    """A run folder: ``step_<s>.safetensors`` (kind 'st'), ``step_<s>.bin`` ('bin'), or an HF
    ``checkpoint-<s>/`` folder ('hf' safetensors, 'hfbin' pytorch_model.bin)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for i, (st, s) in enumerate(zip(states, steps)):
        kind = (kinds or {}).get(i, "st")
        if kind == "st":
            save_file(st, str(folder / f"step_{s}.safetensors"))
        elif kind == "bin":
            torch.save(st, folder / f"step_{s}.bin")
        else:
            d = folder / f"checkpoint-{s}"
            d.mkdir()
            if kind == "hf":
                save_file(st, str(d / "model.safetensors"))
            else:
                torch.save(st, d / "pytorch_model.bin")
    return folder


def hub_cache(root: Path, repo: str, states, revisions, *, binary=(), extra_refs=None) -> Path:
    """A Hugging Face cache at ``root`` as the Hub client lays it out: ``models--org--name/``
    with ``blobs/<sha256>``, ``snapshots/<commit>/<file>`` links to the blobs and
    ``refs/<revision>`` files holding the commit. Revisions in ``binary`` hold
    ``pytorch_model.bin`` (older Pythia revisions), the others ``model.safetensors``."""
    from safetensors.torch import save_file

    repo_dir = root / ("models--" + repo.replace("/", "--"))
    for d in ("blobs", "snapshots", "refs"):
        (repo_dir / d).mkdir(parents=True, exist_ok=True)
    for i, (st, rev) in enumerate(zip(states, revisions)):
        commit = hashlib.sha1(f"{repo}@{rev}".encode()).hexdigest()
        tmp = repo_dir / "tmp-file"
        name = "pytorch_model.bin" if rev in binary else "model.safetensors"
        if name.endswith(".bin"):
            torch.save(st, tmp)
        else:
            save_file(st, str(tmp))
        sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp.replace(repo_dir / "blobs" / sha)
        snap = repo_dir / "snapshots" / commit
        snap.mkdir(parents=True, exist_ok=True)
        (snap / "config.json").write_text("{}")
        os.symlink(f"../../blobs/{sha}", snap / name)
        (repo_dir / "refs" / rev).write_text(commit)
    for rev, commit in (extra_refs or {}).items():
        (repo_dir / "refs" / rev).write_text(commit)
    return root
