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
- ``on_train_end``: closes the history file.

Only global rank zero writes the history and the loggers; the monitor itself handles
``torch.distributed`` (see :mod:`spectral_edge.monitor`).

Where the metrics show up (``trainer_log=True``, the default). At every sampled optimizer
step s, the monitor's scalars of that step (``sed/k_star``, ``sed/gap_ratio``,
``sed/W20/…``, ``grad/…``, ``probe/…``; see :func:`~spectral_edge.monitor.logger_metrics`)
are written by each of the Trainer's own loggers (``trainer.loggers``: TensorBoard, CSV,
W&B, MLflow…) at step s, under those names, and logged with ``pl_module.log_dict(...,
logger=False)`` so they are in ``trainer.callback_metrics`` too (``ModelCheckpoint`` and
``EarlyStopping`` can monitor them). No second logger is needed.

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
from collections.abc import Sequence
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
    trainer_log: write the monitor's scalars of each sampled step with the Trainer's own
        loggers at that step, and into ``trainer.callback_metrics`` (see the module docs).
        On by default.
    monitor_kwargs: passed to :class:`Monitor` (``windows``, ``every``, ``sketch``,
        ``gradients``, ``selection``…).

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
        trainer_log: bool = True,
        **monitor_kwargs: Any,
    ):
        if monitor is not None and monitor_kwargs:
            raise TypeError(f"pass either a monitor or Monitor arguments, not both (got {sorted(monitor_kwargs)})")
        self.history = history
        self.loggers = list(loggers)
        self.log_lr = log_lr
        self.trainer_log = trainer_log
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = monitor
        self._given = monitor is not None
        self._pending: list[dict[str, Any]] = []  # rows of the step being taken, not yet sent to the Trainer
        self._restored: dict[str, Any] | None = None  # state handed over by load_state_dict
        self._last_step: int = -1

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
        if self.log_lr and step % mon.every == 0 and trainer.optimizers:
            lr = trainer.optimizers[0].param_groups[0].get("lr")
            if lr is not None:
                mon.log(step=step, lr=float(lr))
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

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fires at the end of ``fit``: closes the history (the rows stay inspectable)."""
        if self.monitor is not None:
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
