"""The monitor's metrics in the dashboards a Trainer already feeds (issue 21), read back from disk.

Real libraries, no fakes: a tiny GPT-2 under ``transformers.Trainer`` with
``report_to=["tensorboard"]`` and ``report_to=["wandb"]`` (offline), and a small module under
``lightning.Trainer`` with its ``TensorBoardLogger``, ``CSVLogger`` and ``WandbLogger``
(offline). Each test reads the event file, the CSV file or the ``.wandb`` records back and
compares tags, steps and values with the monitor's own rows: every ``sed/…``/``grad/…``
scalar sampled at optimizer step s is there once, at step s, with its value (float32 in
TensorBoard, exact elsewhere), and the callback needs no argument and no reordering for it.

Tag names: the transformers integrations prefix every training log key with ``train/``
(``train/sed/k_star``, ``train/grad/k_star``, ``train/sed/W3/k_star``); Lightning's loggers
keep the keys as they are (``sed/k_star``…).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from spectral_edge.monitor import logger_metrics

pytestmark = [pytest.mark.usefixtures("one_thread"),  # conftest.py
              pytest.mark.filterwarnings("ignore:.*LeafSpec.*")]  # lightning's own deprecation, not ours

_OURS = ("sed/", "grad/")


def _expected(rows: list[dict], window: int) -> dict[int, dict[str, float]]:
    """The monitor's ``sed/…``/``grad/…`` scalars per optimizer step (what the loggers of
    :mod:`spectral_edge.integrations.loggers` would write)."""
    out = logger_metrics([r for r in rows if r["kind"] in ("sed", "grad")], window)
    assert out, "the run sampled nothing: the test would check nothing"
    return out


def _f32(v: float) -> float:
    return float(np.float32(v))


def _tb_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the one TensorBoard event file under ``folder``: tag → [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(folder.rglob("events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = EventAccumulator(str(files[0].parent), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _tb_expected(expected: dict[int, dict[str, float]], prefix: str) -> dict[str, list[tuple[int, float]]]:
    want: dict[str, list[tuple[int, float]]] = {}
    for step in sorted(expected):
        for key, value in expected[step].items():
            want.setdefault(prefix + key, []).append((step, _f32(value)))
    return want


def _wandb_records(root) -> list[dict]:
    """The history records, in order, of the one offline run under ``root``."""
    from test_integrations_loggers import read_wandb_history

    files = sorted(root.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    history = read_wandb_history(files[0])
    return [history[k] for k in sorted(history)]


def _offline_wandb(monkeypatch, root) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'spectral-edge[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(root))
    monkeypatch.setenv("WANDB_PROJECT", "spectral-edge-test")


def _close_wandb() -> dict:
    """Finish the run and stop the W&B service, which writes the offline file; returns the
    run's final summary (what the W&B runs table shows; offline runs write no summary file)."""
    import wandb

    assert wandb.run is not None
    summary = {k: wandb.run.summary[k] for k in wandb.run.summary.keys()}
    wandb.finish()
    wandb.teardown()
    return summary


# ------------------------------------------------------------------------------ transformers
def _hf():
    pytest.importorskip("transformers", reason="transformers is not installed (pip install 'spectral-edge[hf]')")
    pytest.importorskip("accelerate", reason="the transformers Trainer needs accelerate")
    from spectral_edge.integrations import hf

    return hf


class _Tokens(torch.utils.data.Dataset):
    """12 fixed random sequences of 8 tokens; labels = inputs (causal LM)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 50, (12, 8), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.x[i]}


def _gpt2_trainer(out, callbacks: list, report_to: list[str], cls=None):
    """8 optimizer steps of a 1-layer GPT-2, the Trainer logging every 4 steps (the monitor
    samples every 2: the two cadences meet at 4 and 8 and differ at 2 and 6)."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16))
    args = TrainingArguments(
        output_dir=str(out), max_steps=8, logging_steps=4, save_strategy="no", report_to=report_to, use_cpu=True,
        per_device_train_batch_size=2, learning_rate=1e-2, seed=0, disable_tqdm=True, dataloader_num_workers=0,
    )
    return (cls or Trainer)(model=model, args=args, train_dataset=_Tokens(), callbacks=callbacks)


def _trainer_records(trainer) -> list[dict]:
    """The Trainer's own log records (loss, lr, grad_norm…), without the final summary."""
    return [h for h in trainer.state.log_history if "loss" in h]


def _our_records(trainer) -> list[dict]:
    return [h for h in trainer.state.log_history if any(k.startswith(_OURS) for k in h)]


@pytest.fixture(scope="module")
def hf_plain(tmp_path_factory):
    """The same training without the callback: the Trainer's own records to compare with."""
    _hf()
    trainer = _gpt2_trainer(tmp_path_factory.mktemp("plain"), [], report_to=[])
    trainer.train()
    return trainer


def test_hf_report_to_tensorboard_gets_every_metric_at_its_step(tmp_path, hf_plain):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'spectral-edge[tensorboard]')")
    hf = _hf()
    cb = hf.SpectralEdgeCallback(windows=(2, 3), every=2, sketch="exact", gradients=True, history=None)
    trainer = _gpt2_trainer(tmp_path, [cb], report_to=["tensorboard"])
    trainer.train()
    expected = _expected(cb.monitor.rows, 2)
    assert sorted(expected) == [4, 6, 8]
    assert {"sed/k_star", "sed/gap_ratio", "sed/W3/k_star", "grad/k_star"} <= set(expected[8])

    scalars = _tb_scalars(tmp_path)
    ours = {tag: v for tag, v in scalars.items() if tag.startswith(tuple("train/" + p for p in _OURS))}
    assert ours == _tb_expected(expected, "train/")  # tags, steps and (float32) values, each exactly once

    # the Trainer's own logging is untouched: same records, same TensorBoard points, at 4 and 8
    assert _trainer_records(trainer) == _trainer_records(hf_plain)
    assert [s for s, _ in scalars["train/loss"]] == [4, 8]
    # state.log_history: one record per sampled step holding the monitor's scalars, nothing twice
    assert _our_records(trainer) == [{**expected[s], "step": s} for s in sorted(expected)]


def test_hf_report_to_wandb_offline_gets_every_metric_at_its_step(tmp_path, monkeypatch, hf_plain):
    hf = _hf()
    _offline_wandb(monkeypatch, tmp_path)
    cb = hf.SpectralEdgeCallback(windows=(2, 3), every=2, sketch="exact", gradients=True, history=None)
    trainer = _gpt2_trainer(tmp_path / "out", [cb], report_to=["wandb"])
    trainer.train()
    summary = _close_wandb()
    expected = _expected(cb.monitor.rows, 2)
    records = _wandb_records(tmp_path)

    # the transformers WandbCallback logs "train/<key>" with "train/global_step" as the x-axis
    hf_keys = ("train/sed/", "train/grad/")
    got = [(r["train/global_step"], {k.removeprefix("train/"): v for k, v in r.items() if k.startswith(hf_keys)})
           for r in records if any(k.startswith(hf_keys) for k in r)]
    assert got == [(s, expected[s]) for s in sorted(expected)]  # exact: W&B keeps float64
    assert [r["train/global_step"] for r in records if "train/loss" in r] == [4, 8]
    last = expected[max(expected)]
    assert {k: summary["train/" + k] for k in last} == last
    assert _trainer_records(trainer) == _trainer_records(hf_plain)


def test_hf_metrics_go_through_the_callback_handler_not_a_log_override(tmp_path):
    """A Trainer subclass that merges its own buffered metrics in ``log()`` (as TRL's trainers
    do) keeps them to its own records: the monitor's scalars reach the integrations through
    the callbacks, not through ``Trainer.log``."""
    hf = _hf()
    from transformers import Trainer, TrainerCallback

    seen: list[tuple[int, dict]] = []

    class Dashboard(TrainerCallback):  # stands for any report_to integration
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append((state.global_step, dict(logs)))

    class Buffered(Trainer):
        def log(self, logs, start_time=None):
            super().log({**logs, "buffered": 1.0}, start_time)

    cb = hf.SpectralEdgeCallback(windows=(2,), every=2, sketch="exact", history=None)
    _gpt2_trainer(tmp_path, [cb, Dashboard()], report_to=[], cls=Buffered).train()
    expected = _expected(cb.monitor.rows, 2)
    ours = [(s, m) for s, m in seen if any(k.startswith(_OURS) for k in m)]
    assert ours == [(s, expected[s]) for s in sorted(expected)]
    assert [s for s, m in seen if "buffered" in m] == [4, 8, 8]  # its own two records and the final summary


def test_hf_trainer_log_false_keeps_the_metrics_out_of_the_trainer(tmp_path):
    hf = _hf()
    cb = hf.SpectralEdgeCallback(windows=(2,), every=2, sketch="exact", history=None, trainer_log=False)
    trainer = _gpt2_trainer(tmp_path, [cb], report_to=[])
    trainer.train()
    assert _expected(cb.monitor.rows, 2) and _our_records(trainer) == []


def test_hf_callback_outside_a_trainer_warns_once_that_nothing_reaches_the_trainer(tmp_path):
    """Driven by hand (no Trainer on the call stack), the callback still records, and says
    once that its metrics cannot reach the Trainer's integrations."""
    hf = _hf()
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    model = torch.nn.Linear(3, 2)
    cb = hf.SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", history=None)
    cb.on_train_begin(args, state, control, model=model)
    with pytest.warns(RuntimeWarning, match="not called by a transformers Trainer") as caught:
        for _ in range(4):
            with torch.no_grad():
                gen = torch.Generator().manual_seed(state.global_step)
                model.weight.add_(torch.randn(model.weight.shape, generator=gen))
            cb.on_optimizer_step(args, state, control)
            state.global_step += 1
            cb.on_step_end(args, state, control)
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    assert [r["step"] for r in cb.monitor.rows if r["kind"] == "sed"] == [2, 3, 4]
    assert state.log_history == []


# ------------------------------------------------------------------------------ lightning
def _lightning_run(root, loggers, **cb_kwargs):
    pl = pytest.importorskip("lightning.pytorch", reason="lightning is not installed")
    from spectral_edge.integrations.lightning import SpectralEdgeCallback

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 6, generator=g), torch.randint(0, 3, (12,), generator=g)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    cb = SpectralEdgeCallback(history=None, **cb_kwargs)
    # 6 optimizer steps of 2 micro-batches; the Trainer logs every 4 steps, the monitor samples every 2
    trainer = pl.Trainer(max_steps=6, accumulate_grad_batches=2, logger=loggers, log_every_n_steps=4,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, default_root_dir=str(root), callbacks=[cb])
    trainer.fit(Net(), data)
    return cb, trainer


def _csv_rows(root) -> list[tuple[int, dict[str, float]]]:
    """(step, {sed/… and grad/… columns that hold a value}) for each CSV row that has one."""
    files = sorted(root.rglob("metrics.csv"))
    assert len(files) == 1, files
    out = []
    with files[0].open(newline="") as f:
        for row in csv.DictReader(f):
            m = {k: float(v) for k, v in row.items() if k.startswith(_OURS) and v != ""}
            if m:
                out.append((int(row["step"]), m))
    return out


def test_lightning_tensorboard_and_csv_loggers_get_every_metric_at_its_step(tmp_path):
    pytest.importorskip("lightning.pytorch", reason="lightning is not installed")
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [TensorBoardLogger(str(tmp_path), name="tb"), CSVLogger(str(tmp_path), name="csv")]
    cb, trainer = _lightning_run(tmp_path, loggers, windows=(2, 3), every=2, sketch="exact", gradients=True)
    expected = _expected(cb.monitor.rows, 2)
    assert sorted(expected) == [4, 6]
    assert {"sed/k_star", "grad/k_star"} <= set(expected[4]) and "sed/W3/k_star" in expected[6]

    scalars = _tb_scalars(tmp_path / "tb")
    assert {t: v for t, v in scalars.items() if t.startswith(_OURS)} == _tb_expected(expected, "")
    assert _csv_rows(tmp_path / "csv") == [(s, expected[s]) for s in sorted(expected)]  # exact in CSV
    # Lightning's own metrics keep their cadence: train_loss every 4 optimizer steps, at
    # Lightning's step (optimizer steps taken before that batch's, 0-based)
    assert [s for s, _ in scalars["train_loss"]] == [3]
    # and the scalars are in the Trainer's callback metrics (ModelCheckpoint/EarlyStopping can monitor them)
    assert float(trainer.callback_metrics["sed/k_star"]) == expected[6]["sed/k_star"]


def test_lightning_wandb_logger_offline_gets_every_metric_at_its_step(tmp_path, monkeypatch):
    pytest.importorskip("lightning.pytorch", reason="lightning is not installed")
    _offline_wandb(monkeypatch, tmp_path)
    from lightning.pytorch.loggers import WandbLogger

    cb, _ = _lightning_run(tmp_path, WandbLogger(save_dir=str(tmp_path)), windows=(2,), every=2, sketch="exact",
                           gradients=True)
    summary = _close_wandb()
    expected = _expected(cb.monitor.rows, 2)
    records = _wandb_records(tmp_path)
    # Lightning's WandbLogger logs each key as it is, with "trainer/global_step" as the x-axis
    got = [(r["trainer/global_step"], {k: v for k, v in r.items() if k.startswith(_OURS)})
           for r in records if any(k.startswith(_OURS) for k in r)]
    assert got == [(s, expected[s]) for s in sorted(expected)]
    last = expected[max(expected)]
    assert {k: summary[k] for k in last} == last
