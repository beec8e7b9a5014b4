"""Lightning callback, through a tiny real Trainer on CPU.

Checks: one sample per optimizer step under gradient accumulation (not per micro-batch),
both streams, state through a Lightning checkpoint, bit-identical resume, unchanged training.
"""

from __future__ import annotations

import warnings

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="lightning is not installed (pip install 'spectral-edge[lightning]')")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402


from spectral_edge.integrations.lightning import HISTORY_NAME, SpectralEdgeCallback  # noqa: E402
from spectral_edge.io.history import read_history  # noqa: E402


pytestmark = [pytest.mark.filterwarnings("ignore:.*LeafSpec.*"),  # lightning's own deprecation, not ours
              pytest.mark.usefixtures("one_thread")]  # conftest.py


class _Net(pl.LightningModule):
    """A 6→16→3 classifier; records every micro-batch loss."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Dropout(dropout),
                                       torch.nn.Linear(16, 3))
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


class _Counter(pl.Callback):
    def __init__(self) -> None:
        self.batch_end = 0
        self.before_step = 0

    def on_train_batch_end(self, *args) -> None:
        self.batch_end += 1

    def on_before_optimizer_step(self, *args) -> None:
        self.before_step += 1


def _data() -> torch.utils.data.DataLoader:
    """12 samples in batches of 2: 6 micro-batches = 3 optimizer steps per epoch."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 6, generator=g), torch.randint(0, 3, (12,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)


def _trainer(root, callbacks, max_steps: int = 6, checkpointing: bool = False) -> pl.Trainer:
    return pl.Trainer(max_steps=max_steps, accumulate_grad_batches=2, logger=False, enable_checkpointing=checkpointing,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                      default_root_dir=str(root), callbacks=callbacks)


def _same(a: dict, b: dict) -> bool:
    """Exact equality of two rows, NaN equal to NaN."""
    return a.keys() == b.keys() and all(x == y or (x != x and y != y) for x, y in ((a[k], b[k]) for k in a))


def _steps(cb: SpectralEdgeCallback, kind: str) -> list[int]:
    return [r["step"] for r in cb.monitor.rows if r["kind"] == kind]


def test_samples_once_per_optimizer_step_not_per_micro_batch(tmp_path):
    counter = _Counter()
    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", gradients=True)
    _trainer(tmp_path, [cb, counter]).fit(_Net(), _data())
    assert counter.batch_end == 12 and counter.before_step == 6
    mon = cb.monitor
    assert mon.global_step == 6
    assert _steps(cb, "log") == [1, 2, 3, 4, 5, 6]  # lr at every sampled step: 6 samples, not 12
    assert _steps(cb, "sed") == [2, 3, 4, 5, 6]  # samples at 0..6, W=2
    assert _steps(cb, "grad") == [2, 3, 4, 5, 6]  # gradient samples at 1..6
    assert cb.monitor.rows[-1]["kind"] == "log" and cb.monitor.rows[-1]["lr"] == pytest.approx(1e-2)
    h = read_history(tmp_path / HISTORY_NAME)
    assert list(h[h.kind == "sed"]["step"]) == [2, 3, 4, 5, 6]


def test_cadence_counts_optimizer_steps(tmp_path):
    cb = SpectralEdgeCallback(windows=(2,), every=2, sketch="exact", gradients=True, history=None)
    _trainer(tmp_path, [cb]).fit(_Net(), _data())
    assert _steps(cb, "log") == [2, 4, 6]
    assert _steps(cb, "sed") == [4, 6]  # samples at 0, 2, 4, 6
    assert _steps(cb, "grad") == [4, 6]  # gradient samples at 2, 4, 6


def test_gradient_sample_is_the_gradient_of_the_step(tmp_path):
    """on_before_optimizer_step sees the accumulated gradient that the step applies."""
    grads: dict[int, torch.Tensor] = {}

    class Spy(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads[trainer.global_step + 1] = torch.cat([p.grad.reshape(-1).double() for p in pl_module.parameters()])

    cb = SpectralEdgeCallback(windows=(2,), every=2, sketch="exact", gradients=True, history=None)
    _trainer(tmp_path, [cb, Spy()], max_steps=4).fit(_Net(), _data())
    row = [r for r in cb.monitor.rows if r["kind"] == "grad"][0]
    sigma = torch.linalg.svdvals(torch.stack([grads[2], grads[4]]))
    assert row["step"] == 4
    assert row["sigma_1"] == pytest.approx(float(sigma[0]), rel=1e-9)
    assert row["sigma_2"] == pytest.approx(float(sigma[1]), rel=1e-9)


def test_training_is_unchanged_by_the_callback(tmp_path):
    torch.manual_seed(3)  # dropout draws from the global RNG; the monitor must not
    plain = _Net(dropout=0.2)
    _trainer(tmp_path / "a", []).fit(plain, _data())
    torch.manual_seed(3)
    watched = _Net(dropout=0.2)
    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="fold", gradients=True, history=None)
    _trainer(tmp_path / "b", [cb]).fit(watched, _data())
    assert len(plain.losses) == 12 and plain.losses == watched.losses
    for a, b in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(a, b)


def test_state_goes_through_a_lightning_checkpoint_and_resume_is_bit_identical(tmp_path):
    """The callback state is stored in the .ckpt (weights_only-loadable) and a fit resumed with
    ckpt_path continues the windows: rows after the checkpoint equal the uninterrupted run's.
    The checkpoint is at an epoch end (no dropout): Lightning restarts a plain DataLoader at
    the start of an interrupted epoch and does not restore the global RNG."""
    kw = dict(windows=(2, 3), every=1, sketch="exact", gradients=True, history=None)
    full = SpectralEdgeCallback(**kw)
    ckpt_cb = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    trainer = _trainer(tmp_path, [full, ckpt_cb], checkpointing=True)
    full_module = _Net()
    trainer.fit(full_module, _data())
    trainer.save_checkpoint(tmp_path / "final.ckpt")

    final = torch.load(tmp_path / "final.ckpt", weights_only=True)
    saved = final["callbacks"][full.state_key]
    assert saved["global_step"] == 6
    assert torch.equal(_first_tensor(saved), _first_tensor(full.monitor.state_dict()))

    step3 = next((tmp_path / "ckpt").glob("*step=3*.ckpt"))
    assert torch.load(step3, weights_only=True)["callbacks"][full.state_key]["global_step"] == 3
    resumed = SpectralEdgeCallback(**kw)
    module = _Net()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint")
        _trainer(tmp_path, [resumed]).fit(module, _data(), ckpt_path=str(step3))
    assert resumed.monitor.global_step == 6
    assert module.losses == full_module.losses[6:]  # Lightning's resume itself is exact here
    for kind in ("sed", "grad"):
        a = {(r["step"], r["window"]): r for r in full.monitor.rows if r["kind"] == kind}
        b = {(r["step"], r["window"]): r for r in resumed.monitor.rows if r["kind"] == kind}
        assert sorted(b) == [k for k in sorted(a) if k[0] > 3]  # (4, 2) needs the restored window
        assert all(_same(row, a[key]) for key, row in b.items())


def test_state_dict_roundtrip_and_mismatched_step_warns(tmp_path):
    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", history=None)
    assert cb.state_dict() == {}  # nothing to save before training
    _trainer(tmp_path, [cb], max_steps=3).fit(_Net(), _data())
    other = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", history=None)
    other.load_state_dict(cb.state_dict())
    assert other.state_dict()["global_step"] == 3  # held until on_train_start
    # a state from another step is not applied to a fresh run at step 0
    with pytest.warns(RuntimeWarning, match="step 3"):
        _trainer(tmp_path, [other], max_steps=2).fit(_Net(), _data())
    assert other.monitor.global_step == 2


def _first_tensor(state) -> torch.Tensor:
    """The first tensor met walking a nested state dict (the window buffer)."""
    if isinstance(state, torch.Tensor):
        return state
    items = state.values() if isinstance(state, dict) else state if isinstance(state, (list, tuple)) else ()
    for v in items:
        t = _first_tensor(v)
        if t is not None:
            return t
    return None


def test_trainer_log_reaches_the_trainers_own_logger(tmp_path):
    """By default every sed/… and grad/… scalar of a sampled step is in the Trainer's own
    logger at that step: tags, steps and values (test_dashboards.py does TensorBoard and W&B)."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    from spectral_edge.monitor import logger_metrics

    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", gradients=True, history=None)
    trainer = pl.Trainer(max_steps=6, accumulate_grad_batches=2, logger=CSVLogger(str(tmp_path), name="csv"),
                         log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, default_root_dir=str(tmp_path),
                         callbacks=[cb])
    trainer.fit(_Net(), _data())
    expected = logger_metrics([r for r in cb.monitor.rows if r["kind"] in ("sed", "grad")], 2)
    assert sorted(expected) == [2, 3, 4, 5, 6] and {"sed/k_star", "sed/gap_ratio", "grad/k_star"} <= set(expected[2])
    with next(tmp_path.rglob("metrics.csv")).open(newline="") as f:
        logged = [(int(row["step"]), {k: float(v) for k, v in row.items() if k.startswith(("sed/", "grad/")) and v})
                  for row in csv.DictReader(f)]
    assert [(s, m) for s, m in logged if m] == [(s, expected[s]) for s in sorted(expected)]  # exact: CSV keeps repr


def test_a_given_monitor_is_driven_and_arguments_conflict(tmp_path):
    from spectral_edge.monitor import Monitor

    net = _Net()
    mon = Monitor(net, windows=(2,), every=1, sketch="exact")
    cb = SpectralEdgeCallback(mon)
    _trainer(tmp_path, [cb]).fit(net, _data())
    assert cb.monitor is mon and _steps(cb, "sed") == [2, 3, 4, 5, 6]
    assert not (tmp_path / HISTORY_NAME).exists()  # the given monitor keeps its own (no) history
    with pytest.raises(TypeError, match="either a monitor or Monitor arguments"):
        SpectralEdgeCallback(mon, every=3)


def test_both_callbacks_take_the_same_arguments():
    import inspect

    hf = pytest.importorskip("spectral_edge.integrations.hf")
    ours = inspect.signature(SpectralEdgeCallback.__init__).parameters
    theirs = inspect.signature(hf.SpectralEdgeCallback.__init__).parameters
    # resume_from is the HF callback's only extra: Lightning restores callback state from its checkpoint itself
    assert [p for p in theirs if p != "resume_from"] == list(ours)
    assert all(ours[p].default == theirs[p].default for p in ours if p not in ("self", "monitor_kwargs"))
