"""``analyze`` on checkpoints written by the real libraries (issue 13, items 4 and 5).

- transformers ``GPT2LMHeadModel`` (tied ``lm_head.weight`` = ``transformer.wte.weight``) saved
  with ``torch.distributed.checkpoint.save(model.state_dict())`` at every step: DCP stores the
  tied tensor twice and records nothing about the tie; the parameter count must be the
  model's and the spectra a live Monitor's.
- Lightning ``ModelCheckpoint(every_n_train_steps=1, save_top_k=-1)`` with the default file
  names (``epoch=0-step=3.ckpt``) and a templated one (``epoch=0-step=3-train_loss=1.08.ckpt``):
  the steps must be 1..N, whatever numbers the names carry besides.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_ckpt import write_dcp
from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.engine import analyze_checkpoints
from spectral_edge.errors import CheckpointError
from spectral_edge.monitor import Monitor

pytestmark = [pytest.mark.usefixtures("one_thread"),  # conftest.py
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore:.*LeafSpec.*")]

SIGMAS = [f"sigma_{j}" for j in range(1, 4)]


def _max_rel_diff(live: list[dict], offline: list[dict]) -> float:
    """Largest relative difference of σ between rows matched by (step, window, group)."""
    by_key = {(r["step"], r["window"], r["group"]): r for r in offline}
    worst = 0.0
    for r in live:
        o = by_key[(r["step"], r["window"], r["group"])]
        for k in SIGMAS:
            if k in r:
                worst = max(worst, abs(r[k] - o[k]) / max(abs(r[k]), 1e-300))
    return worst


# ----------------------------------------------------------------------------- transformers + DCP


def test_gpt2_through_dcp_counts_the_tied_head_once_and_matches_the_monitor(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg)
    assert model.lm_head.weight is model.transformer.wte.weight  # really tied
    n_model = sum(p.numel() for p in model.parameters())
    assert n_model < sum(v.numel() for v in model.state_dict().values())  # the state dict lists it twice

    mon = Monitor(model, windows=(3, 4), every=1, sketch="exact")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)
    folder = tmp_path / "dcp"
    steps = 7
    write_dcp(folder / "step_0", model.state_dict())
    for s in range(1, steps + 1):
        ids = torch.randint(0, 50, (4, 12), generator=g)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step()
        write_dcp(folder / f"step_{s}", model.state_dict())

    warned: list[str] = []
    res = analyze_checkpoints(folder, mon.config, on_warning=warned.append)
    assert res.n_parameters == n_model  # 4,368 (the state dict's 5,168 counts lm_head.weight again)
    assert res.aliases == {"lm_head.weight": "transformer.wte.weight"}
    assert any("tied weights counted once" in w and "lm_head.weight" in w for w in warned)
    live = [{k: v for k, v in r.items() if k != "kind"} for r in mon.rows if r["kind"] == "sed"]
    assert [(r["step"], r["window"]) for r in live] == [(r["step"], r["window"]) for r in res.rows]
    assert _max_rel_diff(live, res.rows) <= 1e-12

    # the CLI says the same
    res_cli = CliRunner().invoke(app, ["analyze", str(folder), "-w", "3", "--sketch", "exact", "--json",
                                       "--out", str(tmp_path / "m.csv")])
    assert res_cli.exit_code == 0, res_cli.output
    assert f'"parameters": {n_model}' in res_cli.stdout


# ----------------------------------------------------------------------------- Lightning ModelCheckpoint


def _lightning_run(root: Path, filename: str | None, steps: int = 6):
    """Train a tiny module for ``steps`` optimizer steps, checkpointing every step; returns the
    checkpoint folder and the live monitor's rows (sketch exact, W = 2, 3)."""
    pl = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.callbacks import ModelCheckpoint

    from spectral_edge.integrations.lightning import SpectralEdgeCallback

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_step=True, prog_bar=False)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.3)

    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(24, 6, generator=gen), torch.randint(0, 3, (24,), generator=gen)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    kw = {} if filename is None else {"filename": filename}
    ckpt = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=1, save_top_k=-1, **kw)
    live = SpectralEdgeCallback(windows=(2, 3), every=1, sketch="exact", history=None)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, default_root_dir=str(root), callbacks=[ckpt, live])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Net(), data)
    return root / "ckpt", [{k: v for k, v in r.items() if k != "kind"} for r in live.monitor.rows
                           if r["kind"] == "sed"]


def test_lightning_model_checkpoint_default_and_templated_names(tmp_path: Path) -> None:
    default, live = _lightning_run(tmp_path / "default", None)
    templated, live2 = _lightning_run(tmp_path / "templated", "{epoch}-{step}-{train_loss:.2f}")
    names = sorted(p.name for p in templated.glob("*.ckpt"))
    assert len(names) == 6 and all("-train_loss=" in n for n in names), names
    assert sorted(p.name for p in default.glob("*.ckpt")) == [f"epoch=0-step={s}.ckpt" for s in range(1, 7)]
    config = Monitor(torch.nn.Linear(2, 2), windows=(2, 3), sketch="exact", sample_initial=False).config
    a = analyze_checkpoints(default, config)
    b = analyze_checkpoints(templated, config)
    assert [s for s, _ in a.checkpoints] == [s for s, _ in b.checkpoints] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_equal(a.rows, b.rows)  # the same run under another naming: the same numbers (NaN == NaN)
    assert a.n_parameters == 6 * 16 + 16 + 16 * 3 + 3
    # the live monitor also sampled step 0; rows whose window starts at step 1 or later must agree
    np.testing.assert_equal(live, live2)
    shared = [r for r in live if r["step_first"] >= 1]
    assert len(shared) >= 5
    assert _max_rel_diff(shared, a.rows) <= 1e-12
    # a Lightning "-v1" copy of a step already there is refused, naming both files
    first = templated / names[0]
    shutil.copy(first, templated / (first.stem + "-v1.ckpt"))
    with pytest.raises(CheckpointError) as info:
        analyze_checkpoints(templated, config)
    assert names[0] in str(info.value) and first.stem + "-v1.ckpt" in str(info.value)
    assert "step 1" in str(info.value)
