"""An intervention attached in a Hugging Face Trainer (tiny GPT-2) and in Lightning: the runs
complete, strength 0 leaves training bit-identical, strength > 0 changes it, and the transform
sees the real gradients (after backward and clipping, also inside Lightning's closure)."""

from __future__ import annotations

import warnings

import pytest
import torch

from spectral_edge.interventions import Intervention

pytestmark = [pytest.mark.filterwarnings("ignore:.*LeafSpec.*"), pytest.mark.usefixtures("one_thread")]


# ---------------------------------------------------------------------- Hugging Face Trainer
def _hf_run(tmp_path, strength: float | None):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    class Tokens(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.x = torch.randint(0, 50, (12, 8), generator=torch.Generator().manual_seed(0))

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i):
            return {"input_ids": self.x[i], "labels": self.x[i]}

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=6, save_strategy="no", logging_steps=1, report_to=[],
                             use_cpu=True, per_device_train_batch_size=2, learning_rate=1e-2, seed=0,
                             disable_tqdm=True, dataloader_num_workers=0, max_grad_norm=1.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    iv = None
    if strength is not None:  # the attention preset picks GPT-2's c_attn / c_proj weights
        iv = Intervention(model, "keep-sed", strength=strength, window=2, rank=1, seed=0).attach(opt)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(), optimizers=(opt, None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return model, losses, iv


def test_hf_trainer_with_an_intervention(tmp_path):
    plain, plain_losses, _ = _hf_run(tmp_path / "plain", None)
    zero, zero_losses, iv0 = _hf_run(tmp_path / "zero", 0.0)
    assert zero_losses == plain_losses and all(torch.equal(a, b) for a, b in zip(plain.parameters(), zero.parameters()))
    model, losses, iv = _hf_run(tmp_path / "keep", 1.0)
    assert len(losses) == 6 and iv.step == 6 and iv.applied == 4  # steps 3..6, once the window of 2 is full
    assert losses != plain_losses
    assert bool((iv.buffer.abs().sum(1) > 0).all())  # it saw real gradients


# ---------------------------------------------------------------------- Lightning
def _lightning_run(tmp_path, strength: float | None):
    pl = pytest.importorskip("lightning.pytorch")

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
            self.iv = None

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=1e-2)
            if strength is not None:  # a plain torch optimizer: the pre-hook wraps Lightning's closure
                self.iv = Intervention(self, "keep-sed", strength=strength, window=2, rank=1, selection="all",
                                       seed=0).attach(opt)
            return opt

    g = torch.Generator().manual_seed(1)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 6, generator=g),
                                                                      torch.randint(0, 3, (12,), generator=g)),
                                       batch_size=2)
    net = Net()
    trainer = pl.Trainer(max_steps=6, accumulate_grad_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                         default_root_dir=str(tmp_path), gradient_clip_val=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(net, data)
    return net, trainer


def test_lightning_with_an_intervention(tmp_path):
    plain, _ = _lightning_run(tmp_path / "plain", None)
    zero, _ = _lightning_run(tmp_path / "zero", 0.0)
    assert all(torch.equal(a, b) for a, b in zip(plain.net.parameters(), zero.net.parameters()))
    net, trainer = _lightning_run(tmp_path / "keep", 1.0)
    assert trainer.global_step == 6 and net.iv.step == 6 and net.iv.applied == 4
    assert any(not torch.equal(a, b) for a, b in zip(plain.net.parameters(), net.net.parameters()))
    # the transform ran after backward (inside the closure): the gradients it kept are not the
    # zeros that a hook running before Lightning's closure would have read
    assert bool((net.iv.buffer.abs().sum(1) > 0).all())
