"""Lightning adapter: a callback that runs a :class:`Monitor` once per optimizer step.

::

    from spectral_edge.integrations.lightning import SpectralEdgeCallback
    trainer = L.Trainer(max_steps=10_000, accumulate_grad_batches=4,
                        callbacks=[SpectralEdgeCallback(windows=(10,), every=200)])
    trainer.fit(module)                                  # or trainer.fit(module, ckpt_path="last")

Which Lightning hooks are used, and why (checked against lightning 2.x):

- ``on_train_start``: weights, optimizer and loop counters are restored by then (on
  resume too), so the monitor is built here for ``pl_module`` at ``trainer.global_step``,
  and a state restored from the checkpoint (``load_state_dict``) is applied to it.
- ``on_before_optimizer_step``: Lightning calls it once per real optimizer step (after the
  closure has run forward and backward for the last micro-batch, gradients unscaled, before
  gradient clipping and ``optimizer.step``). The gradient stream samples step
  ``trainer.global_step + 1`` here. A torch optimizer pre-step hook would be too early:
  Lightning runs the closure (and so ``backward``) inside ``optimizer.step``.
- ``on_train_batch_end``: fires once per micro-batch. The update stream counts a step only
  when ``trainer.global_step`` moved since the last call, so with
  ``accumulate_grad_batches=k`` it acts k times less often than the hook fires, and steps
  are numbered by ``trainer.global_step`` (one optimizer assumed: with several, global_step
  advances by their number per batch).
- ``state_dict`` / ``load_state_dict``: Lightning stores the returned dict in its
  checkpoints (``checkpoint["callbacks"][state_key]``) and hands it back on resume, before
  ``on_train_start``.
- ``on_validation_start`` / ``on_validation_end``, ``on_train_epoch_start``: the metrics the
  LightningModule logs (below).
- ``on_train_end``: records the last epoch's means and closes the history file.

Only global rank zero writes the history and the loggers; the monitor itself handles
``torch.distributed`` (see :mod:`spectral_edge.monitor`).

Where the metrics show up (``trainer_log=True``, the default). At every sampled optimizer
step s, the monitor's scalars of that step (``sed/k_star``, ``sed/gap_ratio``,
``sed/W20/…``, ``grad/…``, ``probe/…``; see :func:`~spectral_edge.monitor.logger_metrics`)
are written by each of the Trainer's own loggers (``trainer.loggers``: TensorBoard, CSV,
W&B, MLflow…) at step s, under those names, and logged with ``pl_module.log_dict(...,
logger=False)`` so they are in ``trainer.callback_metrics`` too (``ModelCheckpoint`` and
``EarlyStopping`` can monitor them). No second logger is needed.

The module's own metrics (``record_metrics=True``, the default). What the LightningModule logs
with ``self.log`` for its loggers (``trainer.logged_metrics``) goes into the history as ``log``
rows, as the HF callback records the Trainer's logs, so that the run model and the report see
the loss curve and the validation metrics:

- a metric logged on step in ``training_step`` (``train_loss``…) at the steps Lightning logs
  it (every ``log_every_n_steps``), at step s = ``trainer.global_step``: the value of the
  batch whose update made step s (under gradient accumulation, its last micro-batch, as
  Lightning logs it). Lightning's own loggers put it at s − 1 (``_batches_that_stepped``);
- validation metrics (their epoch means, ``val_loss``, ``val_acc``…) after each validation, at
  the ``trainer.global_step`` the model was validated at (the sanity check is left out);
- epoch means of training metrics (``train_acc_epoch``…) at the epoch's last step.

Names are made the run model's (``loss`` → ``train_loss`` in training, ``train_loss_step`` →
``train_loss``, ``val/acc`` and ``valid_acc`` → ``val_acc``, ``val_loss_epoch`` → ``val_loss``;
others are kept: see :func:`_history_names`); tensors become floats, and a NaN or infinite
value is left out with a ``nonfinite_metric`` event (:meth:`Monitor.record_metrics
<spectral_edge.monitor.Monitor.record_metrics>`). Each logged value is recorded once: a new
value is a new tensor in ``trainer.logged_metrics``, and the ones already seen are skipped.

Why not through ``self.log`` alone: Lightning writes what ``self.log`` collects during a
batch at ``_batches_that_stepped``, which is ``global_step - 1`` at that point (the optimizer
steps taken before this batch's), and only every ``log_every_n_steps``. A metric sampled at
step s would land at s - 1, or not at all. So the loggers are called directly with
``step=trainer.global_step`` = s, on every sampled step, whatever ``log_every_n_steps``; like
the Trainer's own writes, each call is followed by ``logger.save()``. With Lightning's
convention this also puts ``sed/*`` at step s beside a ``train_loss`` logged at step s:
both describe the parameters after s optimizer steps.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("spectral_edge.integrations.lightning needs lightning: pip install 'spectral-edge[lightning]'") from e

from ..monitor import Monitor, logger_metrics

__all__ = ["SpectralEdgeCallback", "HISTORY_NAME"]

#: History file name used by ``history="auto"`` (inside ``trainer.default_root_dir``).
HISTORY_NAME = "spectral_edge_history.jsonl"


class SpectralEdgeCallback(pl.Callback):
    """Runs a :class:`~spectral_edge.monitor.Monitor` inside a Lightning ``Trainer``.

    The constructor takes the same arguments as the Hugging Face callback
    (:class:`spectral_edge.integrations.hf.SpectralEdgeCallback`), except ``resume_from``:
    Lightning hands the callback its state from the checkpoint itself.

    Parameters
    ----------
    monitor: a ready monitor to drive (built on the LightningModule); without it one is built
        at ``on_train_start`` from ``monitor_kwargs``. ``history`` and ``loggers`` are
        ignored when it is given (it has its own).
    history: ``"auto"`` (``<default_root_dir>/spectral_edge_history.jsonl``), a path, or
        None (rows kept in memory only).
    loggers: metric sinks (``log_metrics(metrics, step)``), used on global rank zero only.
    log_lr: record the first optimizer's learning rate as a ``log`` row at sampled steps.
    record_metrics: record what the LightningModule logs (training loss, validation metrics…)
        in the ``log`` rows, at the step it describes (see the module docs).
    trainer_log: write the monitor's scalars of each sampled step with the Trainer's own
        loggers at that step, and into ``trainer.callback_metrics`` (see the module docs).
        On by default.
    monitor_kwargs: passed to :class:`Monitor` (``windows``, ``every`` — an int, a schedule
        such as ``[(2000, 10), (None, 100)]`` or a callable, counted in optimizer steps —,
        ``sketch``, ``gradients``, ``selection``…).

    Checkpoint size: the monitor's state goes into every checkpoint
    (``checkpoint["callbacks"]``). With the default ``sketch="auto"``, a
    model under ~700k parameters (W = 10) gets the *exact* window, whose state is about 24×
    the model's float32 weights (48× with ``gradients=True``), up to 64 MiB per checkpoint:
    a GPT-2 of 84k parameters (0.34 MB of weights) adds 8.1 MB to each checkpoint.
    ``sketch="fold"`` keeps it at ~14 KB per stream whatever the model, at the price of a JL
    error in the gap ratio (median 7–12% at d = 10·W). Pass ``sketch="fold"`` when
    checkpoints are many or disk is tight; ``monitor.state_bytes`` gives the size (see
    :mod:`spectral_edge.monitor`).
    """

    def __init__(
        self,
        monitor: Monitor | None = None,
        *,
        history: str | os.PathLike[str] | None = "auto",
        loggers: Sequence[Any] = (),
        log_lr: bool = True,
        record_metrics: bool = True,
        trainer_log: bool = True,
        **monitor_kwargs: Any,
    ):
        if monitor is not None and monitor_kwargs:
            raise TypeError(f"pass either a monitor or Monitor arguments, not both (got {sorted(monitor_kwargs)})")
        self.history = history
        self.loggers = list(loggers)
        self.log_lr = log_lr
        self.record_metrics = record_metrics
        self.trainer_log = trainer_log
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = monitor
        self._given = monitor is not None
        self._pending: list[dict[str, Any]] = []  # rows of the step being taken, not yet sent to the Trainer
        self._restored: dict[str, Any] | None = None  # state handed over by load_state_dict
        self._last_step: int = -1
        self._seen: dict[str, Any] = {}  # trainer.logged_metrics as last looked at: name → the value object

    def _history_path(self, trainer: pl.Trainer) -> Path | None:
        if self.history is None:
            return None
        if self.history == "auto":
            return Path(trainer.default_root_dir) / HISTORY_NAME
        return Path(self.history)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fires once per ``fit`` after everything is restored: builds the monitor at
        ``trainer.global_step`` and applies the checkpointed state, if any."""
        zero = trainer.is_global_zero
        restored = self._restored
        if restored is not None and restored.get("global_step") != trainer.global_step:
            warnings.warn(f"spectral-edge: the checkpointed monitor state is at step {restored.get('global_step')}, "
                          f"the trainer at {trainer.global_step}; starting with empty windows",
                          RuntimeWarning, stacklevel=2)
            restored = None
        if not self._given:
            self.monitor = Monitor(
                pl_module,
                history=self._history_path(trainer) if zero else None,
                loggers=self.loggers if zero else (),
                start_step=trainer.global_step,
                sample_initial=restored is None,
                log_lr=False,  # the monitor is not attached to the optimizer; lr is logged below
                **self.monitor_kwargs,
            )
        assert self.monitor is not None
        if restored is not None:
            self.monitor.load_state_dict(restored)
        self._restored = None
        self._last_step = trainer.global_step
        self._new_metrics(trainer)  # what was logged before training (a validate() call…) is not this run's

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        """Fires once per real optimizer step, before clipping and the step: the gradient
        stream samples step ``global_step + 1`` when it is on the cadence."""
        if self.monitor is not None:
            rows = self.monitor.pre_step(trainer.global_step + 1)
            if self.trainer_log:
                self._pending += rows

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        """Fires after every micro-batch; acts only when an optimizer step was taken
        (``trainer.global_step`` moved): counts that step and samples on the cadence."""
        mon = self.monitor
        step = trainer.global_step
        if mon is None or step == self._last_step:
            return
        self._last_step = step
        rows = mon.step(step)
        if self.log_lr and mon.cadence(step) and trainer.optimizers:
            lr = trainer.optimizers[0].param_groups[0].get("lr")
            if lr is not None:
                mon.log(step=step, lr=float(lr))
        logged = self._new_metrics(trainer)  # looked at every step, so that a value is never taken for a later one
        every = trainer.log_every_n_steps
        if (every and step % every == 0) or trainer.should_stop:  # where Lightning logs them (should_update_logs)
            self._record_logged(trainer, logged, validation=False)
        if self.trainer_log:
            self._pending += rows
            self._send_pending(trainer, pl_module, mon, step)

    def _send_pending(self, trainer: pl.Trainer, pl_module: pl.LightningModule, mon: Monitor, step: int) -> None:
        """The monitor's scalars of step ``step`` (the rows since the last call) to each of the
        Trainer's loggers at ``step``, and into the callback metrics (see the module docs)."""
        metrics: dict[str, float] = {}
        for _, m in sorted(logger_metrics(self._pending, mon.config.windows[0]).items()):
            metrics.update({k: v for k, v in m.items() if not k.startswith("log/")})
        self._pending.clear()
        if not metrics:
            return
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(dict(metrics), step=step)
                logger.save()
        # rank_zero_only: rows are made where the monitor records (rank zero when replicated)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, logger=False, rank_zero_only=True)

    # ------------------------------------------------------------------ the module's own metrics
    def _new_metrics(self, trainer: pl.Trainer) -> dict[str, Any]:
        """The entries of ``trainer.logged_metrics`` whose value is new since the last look.

        Lightning makes a new tensor each time a metric is logged (a step's value, an epoch's
        mean), and keeps the last one of every name in ``logged_metrics`` afterwards: a value
        object not seen before is a newly logged value, one already seen is a stale copy. So a
        value is recorded once, at the step it was logged, however many hooks look at it."""
        if not self.record_metrics:
            return {}
        current = dict(trainer.logged_metrics)
        new = {k: v for k, v in current.items() if self._seen.get(k) is not v}
        self._seen = current
        return new

    def _record_logged(self, trainer: pl.Trainer, logged: dict[str, Any], validation: bool) -> None:
        """Record ``logged`` (from :meth:`_new_metrics`) at ``trainer.global_step`` under the
        names the run model reads (:func:`_history_names`)."""
        mon = self.monitor
        if mon is None or not logged or not trainer.is_global_zero or trainer.state.fn != "fit":
            return  # a trainer.validate() after fit does not reopen the closed history
        names = _history_names(logged, self._seen, validation)
        mon.record_metrics({names[k]: v for k, v in logged.items() if names[k] is not None}, step=trainer.global_step)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fires before each validation: what the training logged until now is set aside, so
        that what is new at :meth:`on_validation_end` is the validation's."""
        if self.monitor is not None and not trainer.sanity_checking:
            self._new_metrics(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fires after a validation, its epoch metrics computed: records them (``val_loss``,
        ``val_acc``…) at ``trainer.global_step``, the optimizer steps the model has taken.
        The sanity check before training is left out."""
        if self.monitor is not None and not trainer.sanity_checking:
            self._record_logged(trainer, self._new_metrics(trainer), validation=True)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fires at the start of each training epoch: the previous epoch's means
        (``train_acc_epoch``…, computed after every callback's ``on_train_epoch_end``) are
        recorded at the step where that epoch ended."""
        if self.monitor is not None:
            self._record_logged(trainer, self._new_metrics(trainer), validation=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fires at the end of ``fit``: records the last epoch's means, closes the history (the
        rows stay inspectable)."""
        if self.monitor is not None:
            self._record_logged(trainer, self._new_metrics(trainer), validation=False)
            self.monitor.close()

    def state_dict(self) -> dict[str, Any]:
        """The monitor state, stored by Lightning in every checkpoint."""
        if self.monitor is not None:
            return self.monitor.state_dict()
        return dict(self._restored or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Called by Lightning on resume, before ``on_train_start``: keeps the state until
        the monitor is built there."""
        self._restored = dict(state_dict) if state_dict else None


#: name prefixes read as the usual ones (``train/loss`` → ``train_loss``, ``valid_acc`` → ``val_acc``)
_PREFIXES = (("train/", "train_"), ("training_", "train_"), ("val/", "val_"), ("valid/", "val_"), ("valid_", "val_"),
             ("validation/", "val_"), ("validation_", "val_"))
#: keys of Lightning's logged metrics that are not metrics (``step`` overrides the logging step)
_NOT_METRICS = frozenset({"step", "epoch", "kind"})


def _history_names(logged: Iterable[str], present: Collection[str], validation: bool) -> dict[str, str | None]:
    """Lightning's metric names → the history's (None: left out), so that the run model and the
    report find the loss and accuracy (``train_loss``, ``val_loss``, ``val_acc``, see
    :data:`~spectral_edge.detectors.signals.ACC_KEYS`):

    - ``train/x``, ``training_x`` → ``train_x``; ``val/x``, ``valid_x``, ``validation_x`` → ``val_x``;
    - ``loss`` → ``train_loss`` in training, ``val_loss`` at validation;
    - in training, a ``_step`` suffix is dropped (``train_loss_step``: the step's value of a
      metric logged on step and epoch) and ``_epoch`` kept (an epoch mean is not the step curve);
    - at validation, ``x_epoch`` → ``x`` and its ``x_step`` twin (one validation batch) is left out;
    - any other name is kept as it is; a renaming that would collide with a name the module
      logged itself is not made.

    ``present``: every name in ``trainer.logged_metrics`` (for the twins and the collisions)."""
    out: dict[str, str | None] = {}
    for key in logged:
        if key in _NOT_METRICS:
            out[key] = None
            continue
        name = key
        for old, new in _PREFIXES:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        base_step, base_epoch = key.removesuffix("_step"), key.removesuffix("_epoch")
        if validation and key.endswith("_step") and f"{base_step}_epoch" in present:
            out[key] = None
            continue
        if validation and key.endswith("_epoch") and f"{base_epoch}_step" in present:
            name = name.removesuffix("_epoch")
        elif not validation:
            name = name.removesuffix("_step")
        if name == "loss":
            name = "val_loss" if validation else "train_loss"
        out[key] = key if name != key and name in present else name
    return out
