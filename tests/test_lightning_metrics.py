"""The Lightning callback forwards what the LightningModule logs (issue 20, item 6).

Through a tiny real ``lightning.Trainer`` on CPU: the train loss logged at each step and the
validation loss and accuracy logged at validation reach the monitor's history at the optimizer
step they describe, with the exact values Lightning hands its loggers, under names the run
model and the report read; the run folder then has a loss curve and a validation series.
"""

from __future__ import annotations

import math

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="lightning is not installed (pip install 'spectral-edge[lightning]')")

from lightning.pytorch.loggers.logger import Logger  # noqa: E402

from spectral_edge.integrations.lightning import HISTORY_NAME, SpectralEdgeCallback  # noqa: E402
from spectral_edge.io.history import read_history  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:.*LeafSpec.*"),  # lightning's own deprecation, not ours
              pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
              pytest.mark.filterwarnings("ignore:.*smaller than the logging interval.*"),
              pytest.mark.usefixtures("one_thread")]  # conftest.py


class _Logging(pl.LightningModule):
    """A 6→16→3 classifier that logs like a typical LightningModule: ``train_loss`` every step,
    ``train_acc`` on step and epoch (→ ``train_acc_step``, ``train_acc_epoch``), a metric of its
    own name, and ``val_loss``/``val_acc`` at validation (epoch means)."""

    def __init__(self, nan_at: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
        self.losses: list[float] = []  # every micro-batch's loss, in order
        self.nan_at = nan_at

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.losses.append(loss.item())
        self.log("train_loss", loss)
        self.log("train_acc", (logits.argmax(-1) == y).float().mean(), on_step=True, on_epoch=True)
        odd = float("nan") if self.nan_at is not None and self.trainer.global_step + 1 == self.nan_at else 1.5
        self.log("my_metric", torch.tensor(odd), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


class _Recorder(Logger):
    """A Lightning logger that keeps every ``log_metrics`` call: what the Trainer logs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.calls.append((int(step), {k: float(v) for k, v in metrics.items()}))

    def logged(self, key: str) -> list[tuple[int, float]]:
        return [(s, m[key]) for s, m in self.calls if key in m]


def _loaders():
    """Training: 12 samples in batches of 2 (6 micro-batches = 3 optimizer steps per epoch);
    validation: 6 samples in batches of 3."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 6, generator=g), torch.randint(0, 3, (12,), generator=g)
    vx, vy = torch.randn(6, 6, generator=g), torch.randint(0, 3, (6,), generator=g)
    ds = torch.utils.data.TensorDataset
    return (torch.utils.data.DataLoader(ds(x, y), batch_size=2), torch.utils.data.DataLoader(ds(vx, vy), batch_size=3))


def _fit(root, cb, module=None, log_every: int = 1):
    rec = _Recorder()
    module = module or _Logging()
    trainer = pl.Trainer(max_steps=6, accumulate_grad_batches=2, logger=rec, log_every_n_steps=log_every,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, default_root_dir=str(root), callbacks=[cb])
    trainer.fit(module, *_loaders())
    return module, rec, trainer


def _logged(history, key: str) -> list[tuple[int, float]]:
    """(step, value) of the history rows that carry ``key``."""
    if key not in history.columns:
        return []
    return [(int(s), float(v)) for s, v in zip(history["step"], history[key]) if v == v]


def test_logged_metrics_reach_the_history_at_their_step_with_the_exact_values(tmp_path):
    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact")
    module, rec, _ = _fit(tmp_path, cb)
    h = read_history(tmp_path / HISTORY_NAME)
    logs = h[h.kind == "log"]
    # the loss of the micro-batch that completes step s (Lightning logs the last micro-batch's
    # value), at step s; Lightning's loggers have it at s - 1 (its _batches_that_stepped)
    assert _logged(logs, "train_loss") == [(s, module.losses[2 * s - 1]) for s in range(1, 7)]
    assert _logged(logs, "train_loss") == [(s + 1, v) for s, v in rec.logged("train_loss")]
    assert _logged(logs, "train_acc") == [(s + 1, v) for s, v in rec.logged("train_acc_step")]  # _step dropped
    assert [s for s, _ in _logged(logs, "train_acc_epoch")] == [3, 6]  # epoch means keep their name
    assert _logged(logs, "train_acc_epoch") == [(s + 1, v) for s, v in rec.logged("train_acc_epoch")]
    assert _logged(logs, "my_metric") == [(s, 1.5) for s in range(1, 7)]  # the user's own name kept
    # validation after the epochs' last steps (3 and 6): at those steps, exact, sanity check left out
    for key in ("val_loss", "val_acc"):
        assert [s for s, _ in _logged(logs, key)] == [3, 6]
        assert _logged(logs, key) == [(s + 1, v) for s, v in rec.logged(key)]
    # none of it twice, nothing of ours among the user's metrics, no tensors
    for key in ("train_loss", "val_loss", "train_acc_epoch"):
        assert len(_logged(logs, key)) == len({s for s, _ in _logged(logs, key)})
    assert not [c for c in logs.columns if c.startswith(("sed/", "grad/", "epoch"))]
    assert all(isinstance(r[k], float) for r in cb.monitor.rows if r["kind"] == "log"
               for k in r if k not in ("kind", "step"))


def test_the_run_model_and_the_report_read_a_lightning_run(tmp_path):
    from spectral_edge.io.run import load_run, read_run
    from spectral_edge.report.build import write_report
    from spectral_edge.report.load import load_view

    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact")
    module, _, _ = _fit(tmp_path, cb)
    for data in (read_run(tmp_path), load_run(tmp_path)):
        loss = data.metric("train_loss")
        assert list(loss.steps) == [1, 2, 3, 4, 5, 6]
        assert list(loss.values) == [module.losses[2 * s - 1] for s in range(1, 7)]
        val = data.validation()
        assert val.name == "val_loss" and list(val.steps) == [3, 6] and all(math.isfinite(v) for v in val.values)
    view = load_view(tmp_path)
    assert {"train_loss", "val_loss", "val_acc"} <= set(view.evals.columns)
    path, _ = write_report(tmp_path, tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    assert "No evaluation data" not in page
    start = page.index("Evaluation: accuracy and loss")
    assert "<svg" in page[start:start + 20000]  # the loss (and accuracy) panel is drawn


def test_lightning_logs_only_at_its_logging_steps_and_the_option_turns_it_off(tmp_path):
    # like the HF callback: what the Trainer logs, when it logs it (every log_every_n_steps)
    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", history=None)
    _fit(tmp_path / "a", cb, log_every=2)
    rows = [r for r in cb.monitor.rows if r["kind"] == "log" and "train_loss" in r]
    assert [r["step"] for r in rows] == [2, 4, 6]
    off = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", history=None, record_metrics=False)
    _fit(tmp_path / "b", off)
    logs = [r for r in off.monitor.rows if r["kind"] == "log"]
    assert logs and all(set(r) == {"kind", "step", "lr"} for r in logs)  # the learning rate only


def test_a_non_finite_logged_value_is_skipped_with_an_event(tmp_path):
    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", history=None)
    _fit(tmp_path, cb, module=_Logging(nan_at=4))
    mine = [(r["step"], r["my_metric"]) for r in cb.monitor.rows if r["kind"] == "log" and "my_metric" in r]
    assert mine == [(s, 1.5) for s in (1, 2, 3, 5, 6)]
    events = [r for r in cb.monitor.rows if r["kind"] == "event"]
    assert len(events) == 1 and events[0]["step"] == 4 and events[0]["event"] == "nonfinite_metric"
    assert events[0]["metric"] == "my_metric" and "my_metric" in events[0]["message"]
    # the other metrics of that step are still recorded
    assert 4 in [r["step"] for r in cb.monitor.rows if r["kind"] == "log" and "train_loss" in r]


class _OtherNames(_Logging):
    """Logs ``loss`` in training, ``valid/loss`` on step and epoch at validation (→
    ``valid/loss_step``, ``valid/loss_epoch``) and a metric from ``on_train_epoch_end``."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.losses.append(loss.item())
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("valid/loss", torch.nn.functional.cross_entropy(self.net(x), y), on_step=True, on_epoch=True)

    def on_train_epoch_end(self):
        self.log("epoch_metric", float(self.current_epoch + 7))


def test_common_lightning_names_are_mapped_and_epoch_end_metrics_land_at_the_epochs_last_step(tmp_path):
    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", history=None)
    module, rec, _ = _fit(tmp_path, cb, module=_OtherNames())
    logs = [r for r in cb.monitor.rows if r["kind"] == "log"]
    got = {k: [(r["step"], r[k]) for r in logs if k in r] for k in {k for r in logs for k in r} - {"kind", "step"}}
    assert got["train_loss"] == [(s, module.losses[2 * s - 1]) for s in range(1, 7)]  # "loss" in training
    assert got["val_loss"] == [(s + 1, v) for s, v in rec.logged("valid/loss_epoch")]  # the epoch mean
    assert [s for s, _ in got["val_loss"]] == [3, 6]
    assert got["epoch_metric"] == [(3, 7.0), (6, 8.0)]
    assert set(got) == {"train_loss", "val_loss", "epoch_metric", "lr"}  # no valid/loss_step, no loss


def test_the_hf_callback_takes_the_same_option_and_skips_non_finite_values_the_same_way(tmp_path):
    pytest.importorskip("transformers")
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from spectral_edge.integrations import hf

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    logs = {"loss": float("nan"), "learning_rate": 0.1, "eval_loss": 2.0, "eval_runtime": "n/a", "epoch": 0.5}
    on = hf.SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", history=None)
    off = hf.SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", history=None, record_metrics=False)
    for cb in (on, off):
        cb.on_train_begin(args, TrainerState(), TrainerControl(), model=torch.nn.Linear(3, 2))
        cb.on_log(args, TrainerState(), TrainerControl(), logs=logs)
    assert [r for r in on.monitor.rows if r["kind"] != "sed"] == [
        {"kind": "log", "step": 0, "lr": 0.1, "eval_loss": 2.0},
        {"kind": "event", "step": 0, "event": "nonfinite_metric", "metric": "loss",
         "message": "step 0: the logged metric loss is nan; not recorded"}]
    assert [r for r in off.monitor.rows if r["kind"] != "sed"] == [{"kind": "log", "step": 0, "lr": 0.1}]


def test_a_validate_call_after_fit_does_not_reopen_the_history(tmp_path):
    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact")
    module, _, trainer = _fit(tmp_path, cb)
    before = (tmp_path / HISTORY_NAME).read_bytes()
    n = len(cb.monitor.rows)
    trainer.validate(module, _loaders()[1], verbose=False)
    assert (tmp_path / HISTORY_NAME).read_bytes() == before and len(cb.monitor.rows) == n
