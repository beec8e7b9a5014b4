"""Logger adapters (TensorBoard, W&B), the plain-loop ``watch`` helper, and lazy imports.

TensorBoard scalars are read back from the event file; W&B is checked through a recording
fake run (exact ``log`` calls and steps) and one real offline run whose ``.wandb`` file is
read back.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap

import pytest
import torch

from spectral_edge.integrations.torch_hooks import watch


def _train(steps: int, **monitor_kwargs):
    """A seeded plain loop watched through ``watch``; returns the monitor."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)
    mon, handle = watch(model, opt, **monitor_kwargs)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    handle.remove()
    opt.step()  # detached: no longer counted
    mon.close()
    return mon


def test_import_is_lazy():
    code = textwrap.dedent(
        """
        import sys
        import spectral_edge.integrations as integ
        import spectral_edge.integrations.loggers, spectral_edge.integrations.torch_hooks
        integ.watch, integ.TensorBoardLogger, integ.WandbLogger
        heavy = ("transformers", "lightning", "pytorch_lightning", "wandb", "tensorboard")
        print([m for m in sys.modules if m.split(".")[0] in heavy])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_watch_attaches_and_detaches():
    mon = _train(6, windows=(2,), every=2, sketch="exact", gradients=True)
    assert mon.global_step == 6
    assert [r["step"] for r in mon.rows if r["kind"] == "sed"] == [4, 6]
    assert [r["step"] for r in mon.rows if r["kind"] == "grad"] == [4, 6]
    assert [r["step"] for r in mon.rows if r["kind"] == "log"] == [2, 4, 6]  # lr at sampled steps


# ---------------------------------------------------------------------------- TensorBoard
def test_tensorboard_scalars_read_back_from_the_event_file(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'spectral-edge[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spectral_edge.integrations.loggers import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path / "tb")
    mon = _train(10, windows=(3, 5), every=2, sketch="exact", loggers=[logger])
    logger.close()
    assert logger.writer.file_writer is None  # an owned writer is closed

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"sed/k_star", "sed/gap_ratio", "sed/W5/k_star", "log/lr"} <= tags
    primary = [r for r in mon.rows if r["kind"] == "sed" and r["window"] == 3]
    for key in ("k_star", "gap_ratio"):
        events = acc.Scalars(f"sed/{key}")
        assert [e.step for e in events] == [r["step"] for r in primary] == [6, 8, 10]
        assert [e.value for e in events] == pytest.approx([r[key] for r in primary], rel=1e-6)  # float32 on disk
    assert [e.step for e in acc.Scalars("sed/W5/k_star")] == [10]


def test_tensorboard_borrowed_writer_is_flushed_not_closed(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from torch.utils.tensorboard import SummaryWriter

    from spectral_edge.integrations.loggers import TensorBoardLogger

    writer = SummaryWriter(log_dir=str(tmp_path))
    logger = TensorBoardLogger(writer)
    logger.log_metrics({"sed/k_star": 2.0}, 7)
    logger.close()
    assert writer.file_writer is not None  # still the caller's to use and close
    writer.close()
    with pytest.raises(TypeError, match="SummaryWriter or a log directory"):
        TensorBoardLogger(42)


# ---------------------------------------------------------------------------- W&B
class _FakeRun:
    """Records what a wandb run is asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log(self, data, step=None):
        self.calls.append(("log", dict(data), step))

    def define_metric(self, name, step_metric=None):
        self.calls.append(("define_metric", name, step_metric))

    def finish(self):
        self.calls.append(("finish",))


def test_wandb_log_calls_and_steps_from_a_monitor():
    from spectral_edge.integrations.loggers import WandbLogger

    run = _FakeRun()
    logger = WandbLogger(run)
    mon = _train(8, windows=(3,), every=2, sketch="exact", loggers=[logger])
    logger.close()
    assert ("finish",) not in run.calls  # a borrowed run is not finished here
    logs = [c for c in run.calls if c[0] == "log"]
    steps = [c[2] for c in logs]
    assert steps == sorted(steps) and set(steps) == {2, 4, 6, 8}  # W&B needs non-decreasing steps
    sed = {c[2]: c[1] for c in logs if "sed/k_star" in c[1]}
    rows = {r["step"]: r for r in mon.rows if r["kind"] == "sed"}
    assert sorted(sed) == sorted(rows) == [6, 8]
    for step, data in sed.items():
        assert data["sed/k_star"] == rows[step]["k_star"]
        assert data["sed/gap_ratio"] == rows[step]["gap_ratio"]


def test_wandb_step_key_mode_declares_the_x_axis():
    from spectral_edge.integrations.loggers import WandbLogger

    run = _FakeRun()
    logger = WandbLogger(run, step_key="train/global_step")
    logger.log_metrics({"sed/k_star": 2.0, "grad/k_star": 1.0}, 10)
    logger.log_metrics({"sed/k_star": 3.0}, 12)
    assert run.calls == [
        ("define_metric", "train/global_step", None),
        ("define_metric", "sed/*", "train/global_step"),
        ("define_metric", "grad/*", "train/global_step"),
        ("log", {"train/global_step": 10, "sed/k_star": 2.0, "grad/k_star": 1.0}, None),
        ("log", {"train/global_step": 12, "sed/k_star": 3.0}, None),
    ]
    with pytest.raises(TypeError, match="wandb run"):
        WandbLogger(object())


def read_wandb_history(path) -> dict[int, dict[str, float]]:
    """History rows of an offline ``.wandb`` file, by W&B's own step: a LevelDB-style log of
    protobuf Records (7-byte file header, 32 KiB blocks, each record ``crc u32, length u16,
    type u8``). Also used by ``test_dashboards.py``."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if data[:4] != b":W&B":
        pytest.skip("unknown .wandb file layout in this wandb version")
    block, pos, part, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        part = chunk if kind in (1, 2) else part + chunk
        if kind in (1, 4):
            records.append(part)
    out: dict[int, dict[str, float]] = {}
    for raw in records:
        rec = pb.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "history":
            out[rec.history.step.num] = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                                         for i in rec.history.item}
    return out


def test_wandb_offline_run_smoke(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'spectral-edge[wandb]')")
    from spectral_edge.integrations.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(mode="offline", dir=str(tmp_path), project="spectral-edge-test")
    logger.log_metrics({"sed/k_star": 2.0, "sed/gap_ratio": 3.5}, 4)
    logger.log_metrics({"sed/k_star": 1.0, "sed/gap_ratio": 1.5}, 6)
    assert logger.run.summary["sed/k_star"] == 2.0  # step 4 is committed once step 6 arrives
    logger.close()
    import wandb

    wandb.teardown()  # the wandb service writes the offline file; stopping it flushes the file
    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    hist = read_wandb_history(files[0])
    assert sorted(hist) == [4, 6]
    assert {k: hist[4][k] for k in ("sed/k_star", "sed/gap_ratio")} == {"sed/k_star": 2.0, "sed/gap_ratio": 3.5}
    assert {k: hist[6][k] for k in ("sed/k_star", "sed/gap_ratio")} == {"sed/k_star": 1.0, "sed/gap_ratio": 1.5}
