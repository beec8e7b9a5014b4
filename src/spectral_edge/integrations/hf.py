"""transformers ``Trainer`` adapter: a callback that runs a :class:`Monitor` beside training.

::

    from spectral_edge.integrations.hf import SpectralEdgeCallback
    trainer = Trainer(model, args, train_dataset=ds, callbacks=[SpectralEdgeCallback(windows=(10,), every=200)])
    trainer.train()                                   # or trainer.train(resume_from_checkpoint=True)

Which Trainer events are used, and why (checked against transformers 5.x ``Trainer._run_epoch``):

- ``on_train_begin``: the model is on its device and, on resume, already loaded from the
  checkpoint, and ``state.global_step`` is the step being resumed from. The monitor is
  built here (``start_step=state.global_step``) and its saved state, if any, restored.
- ``on_pre_optimizer_step``: once per real optimizer step (not per micro-batch under
  gradient accumulation), after gradient clipping, before ``optimizer.step()``: the
  gradient stream samples here (``gradients=True``). ``state.global_step`` still counts the
  steps *before* this one, so the step being taken is ``global_step + 1``.
- ``on_optimizer_step``: right after ``optimizer.step()``, once per real step, before the
  scheduler and ``global_step += 1``: the update stream counts step ``global_step + 1``.
- ``on_step_end``: after ``global_step += 1`` (so ``state.global_step`` is the step just
  taken) and before the Trainer's own logging of that step: with ``trainer_log`` (the
  default) the monitor's scalars of the step go to the Trainer's dashboards (below).
- ``on_log``: the Trainer's logs (``learning_rate`` → ``lr``, ``loss``, ``grad_norm``,
  ``eval_*``) are recorded as ``log`` rows at ``state.global_step`` (``record_metrics=False``
  keeps all but the learning rate out; a non-finite value becomes a ``nonfinite_metric`` event).
- ``on_save``: fires after ``checkpoint-<global_step>`` is written; the monitor state goes
  next to it as ``spectral_edge_monitor.pt`` (plain tensors and numbers: loads with
  ``torch.load(..., weights_only=True)``).
- ``on_train_end``: closes the history file.

Resume: the checkpoint folder is not passed to callbacks, so it is looked for in this order:
the ``resume_from`` argument, ``args.resume_from_checkpoint``, then
``<output_dir>/checkpoint-<global_step>`` (what ``train(resume_from_checkpoint=True)``
picks). A state file whose step differs from ``state.global_step`` is not used.

Only the world process zero writes the history, the loggers and the state file; the
monitor itself handles ``torch.distributed`` (see :mod:`spectral_edge.monitor`).

Where the metrics show up (``trainer_log=True``, the default). At every sampled optimizer
step s, the monitor's scalars of that step (``sed/k_star``, ``sed/gap_ratio``,
``sed/W20/…``, ``grad/…``, ``probe/…``; see :func:`~spectral_edge.monitor.logger_metrics`)
become one Trainer log record ``{…, "step": s}``: it is appended to ``state.log_history``
and handed to the ``on_log`` of every callback of the Trainer, which is where every
``report_to`` integration lives (TensorBoard, W&B, MLflow, Comet…). The integrations name
them as they name every training key: TensorBoard and W&B show ``train/sed/k_star``,
``train/grad/k_star``… at global step s (W&B's x-axis ``train/global_step`` = s), MLflow
``sed/k_star`` at step s. No reordering of callbacks and no second logger is needed.

Why this way. The ``report_to`` callbacks come before user callbacks in the Trainer's list,
so adding keys to the ``logs`` of ``on_log`` comes too late for them, and a metric sampled
between two logging steps would land at the next logging step anyway. Sending a record of
our own from ``on_step_end`` is exact (``state.global_step`` is s there), independent of
callback order and of ``logging_steps``, and leaves the Trainer's own records alone. It goes
through ``trainer.callback_handler.on_log``, not ``trainer.log``: a Trainer subclass that
merges its own buffered metrics in ``log()`` (TRL's trainers do) keeps them in its own
records, and no ``epoch`` key is logged twice. The handler's ``on_log`` resets
``control.should_log``; it is put back, so the Trainer still logs its loss at the steps
``logging_steps`` asks for. Callbacks get no Trainer argument, so the Trainer is found on the
call stack in ``on_train_begin`` (the ``Trainer`` whose callback handler holds this
callback; a weak reference is kept). Driven without a Trainer, the callback warns once
that its metrics reach only the history and ``loggers``. Console callbacks print the
record like any other log. ``trainer_log=False`` keeps the metrics out of the Trainer.
"""

from __future__ import annotations

import os
import sys
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("spectral_edge.integrations.hf needs transformers: pip install 'spectral-edge[hf]'") from e

from ..monitor import Monitor, logger_metrics

__all__ = ["SpectralEdgeCallback", "MONITOR_STATE_NAME", "HISTORY_NAME"]

#: File written into each ``checkpoint-<step>`` folder.
MONITOR_STATE_NAME = "spectral_edge_monitor.pt"
#: History file name used by ``history="auto"`` (inside ``args.output_dir``).
HISTORY_NAME = "spectral_edge_history.jsonl"

#: Trainer log keys copied into the monitor's ``log`` rows (Trainer name → history name).
_LOG_KEYS = {"learning_rate": "lr", "loss": "loss", "grad_norm": "grad_norm"}


class SpectralEdgeCallback(TrainerCallback):
    """Runs a :class:`~spectral_edge.monitor.Monitor` inside a transformers ``Trainer``.

    Parameters
    ----------
    monitor: a ready monitor to drive; without it one is built at ``on_train_begin`` for the
        Trainer's model from ``monitor_kwargs``.
    history: ``"auto"`` (``<output_dir>/spectral_edge_history.jsonl``), a path, or None
        (rows kept in memory only).
    loggers: metric sinks (``log_metrics(metrics, step)``), used on world process zero only.
        ``history`` and ``loggers`` are ignored when ``monitor`` is given (it has its own).
    log_lr: record the Trainer's ``learning_rate`` as ``lr`` in the ``log`` rows.
    record_metrics: record the Trainer's other logs (``loss``, ``grad_norm``, ``eval_*``) in the
        ``log`` rows, at the step they are logged (a NaN or infinite value is left out, with a
        ``nonfinite_metric`` event; see :meth:`~spectral_edge.monitor.Monitor.record_metrics`).
    trainer_log: send the monitor's scalars of each sampled step to the Trainer's logging at
        that step (``state.log_history`` and every ``report_to`` integration; see the module
        docs). On by default.
    resume_from: checkpoint folder to restore the monitor from (default: found, see module docs).
    monitor_kwargs: passed to :class:`Monitor` (``windows``, ``every`` — an int, a schedule
        such as ``[(2000, 10), (None, 100)]`` or a callable, counted in optimizer steps —,
        ``sketch``, ``gradients``, ``selection``…).

    Checkpoint size: the monitor's state goes into every checkpoint
    (``checkpoint-<step>/spectral_edge_monitor.pt``). With the default ``sketch="auto"``, a
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
        resume_from: str | os.PathLike[str] | None = None,
        **monitor_kwargs: Any,
    ):
        if monitor is not None and monitor_kwargs:
            raise TypeError(f"pass either a monitor or Monitor arguments, not both (got {sorted(monitor_kwargs)})")
        self.monitor: Monitor | None = monitor
        self._given = monitor is not None
        self.history = history
        self.loggers = list(loggers)
        self.log_lr = log_lr
        self.record_metrics = record_metrics
        self.trainer_log = trainer_log
        self.resume_from = resume_from
        self.monitor_kwargs = monitor_kwargs
        self._pending: list[dict[str, Any]] = []  # rows of the step being taken, not yet sent to the Trainer
        self._trainer: weakref.ref[Any] | None = None  # the Trainer running this callback (found in on_train_begin)
        self._warned_no_trainer = False

    # ------------------------------------------------------------------ set-up
    def _history_path(self, args: TrainingArguments) -> Path | None:
        if self.history is None:
            return None
        if self.history == "auto":
            return Path(args.output_dir) / HISTORY_NAME
        return Path(self.history)

    def _saved_state(self, args: TrainingArguments, state: TrainerState) -> dict[str, Any] | None:
        """The monitor state saved with the checkpoint being resumed, or None."""
        if state.global_step == 0:
            return None
        candidates = [self.resume_from, getattr(args, "resume_from_checkpoint", None),
                      os.path.join(args.output_dir, f"checkpoint-{state.global_step}")]
        for folder in candidates:
            if not isinstance(folder, (str, os.PathLike)):
                continue
            path = os.path.join(folder, MONITOR_STATE_NAME)
            if not os.path.isfile(path):
                continue
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if int(saved.get("global_step", -1)) == state.global_step:
                return saved
        warnings.warn(f"spectral-edge: resuming at step {state.global_step} without a saved monitor state "
                      f"(no {MONITOR_STATE_NAME} for this step next to the checkpoint); the windows start empty",
                      RuntimeWarning, stacklevel=2)
        return None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: torch.nn.Module | None = None, **kwargs: Any) -> None:
        """Fires once per ``train()`` call, after the model (and, on resume, the checkpoint)
        is loaded: builds the monitor at ``state.global_step`` and restores its saved state."""
        saved = self._saved_state(args, state)
        if not self._given:
            if model is None:
                raise ValueError("SpectralEdgeCallback: the Trainer passed no model to on_train_begin")
            zero = state.is_world_process_zero
            self.monitor = Monitor(
                model,
                history=self._history_path(args) if zero else None,
                loggers=self.loggers if zero else (),
                start_step=state.global_step,
                sample_initial=saved is None,
                **self.monitor_kwargs,
            )
        assert self.monitor is not None
        if saved is not None:
            self.monitor.load_state_dict(saved)
        self._pending.clear()
        trainer = kwargs.get("trainer") or _calling_trainer(self)
        self._trainer = weakref.ref(trainer) if trainer is not None else None

    # ------------------------------------------------------------------ per step
    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                              **kwargs: Any) -> None:
        """Fires once per real optimizer step, gradients clipped and not yet applied: the
        gradient stream samples step ``global_step + 1`` when it is on the cadence."""
        if self.monitor is not None:
            self._keep(self.monitor.pre_step(state.global_step + 1))

    def on_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                          **kwargs: Any) -> None:
        """Fires right after each real ``optimizer.step()``: counts step ``global_step + 1``
        (sampling the parameters when it is on the cadence)."""
        if self.monitor is not None:
            self._keep(self.monitor.step(state.global_step + 1))

    def _keep(self, rows: list[dict[str, Any]]) -> None:
        if self.trainer_log:
            self._pending += rows

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        """Fires after ``global_step += 1``, before the Trainer logs that step: with
        ``trainer_log``, the monitor's scalars of the step just taken become a Trainer log
        record at ``state.global_step`` (see the module docs)."""
        mon = self.monitor
        if mon is None or not self._pending:
            return
        metrics: dict[str, float] = {}
        for _, m in sorted(logger_metrics(self._pending, mon.config.windows[0]).items()):
            metrics.update({k: v for k, v in m.items() if not k.startswith("log/")})  # log/…: the Trainer's own
        self._pending.clear()
        trainer = self._trainer() if self._trainer is not None else None
        if not metrics:
            return
        if trainer is None:
            if not self._warned_no_trainer:
                self._warned_no_trainer = True
                warnings.warn("spectral-edge: SpectralEdgeCallback is not called by a transformers Trainer; its "
                              "metrics go to the history and its loggers only, not to the Trainer's log (report_to)",
                              RuntimeWarning, stacklevel=2)
            return
        state.log_history.append({**metrics, "step": state.global_step})
        should_log = control.should_log  # the handler's on_log resets it: the Trainer must still log this step
        trainer.callback_handler.on_log(args, state, control, dict(metrics))
        control.should_log = should_log

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Fires when the Trainer logs: records lr/loss/grad_norm/eval_* at ``global_step``."""
        mon = self.monitor
        if mon is None or not logs or not state.is_world_process_zero:
            return
        wanted = [k for k in logs if (self.log_lr if k == "learning_rate" else self.record_metrics
                                      and (k in _LOG_KEYS or k.startswith("eval_")))]
        metrics = {_LOG_KEYS.get(k, k): logs[k] for k in wanted if _is_number(logs[k])}
        mon.record_metrics(metrics, step=state.global_step)

    # ------------------------------------------------------------------ checkpoints & end
    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        """Fires after ``checkpoint-<global_step>`` is written: saves the monitor state there."""
        if self.monitor is None or not args.should_save:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if not os.path.isdir(folder):
            warnings.warn(f"spectral-edge: checkpoint folder {folder} not found; monitor state not saved",
                          RuntimeWarning, stacklevel=2)
            return
        path = os.path.join(folder, MONITOR_STATE_NAME)
        tmp = path + ".tmp"
        torch.save(self.monitor.state_dict(), tmp)
        os.replace(tmp, path)  # a crash never leaves a half-written state file

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        """Fires at the end of ``train()``: closes the history (the rows stay inspectable)."""
        if self.monitor is not None:
            self.monitor.close()
        self._trainer = None


def _calling_trainer(callback: TrainerCallback) -> Any | None:
    """The ``transformers.Trainer`` whose callback handler holds ``callback`` and is calling
    it now, found on the call stack (callbacks are not handed the Trainer), or None."""
    from transformers import Trainer

    frame = sys._getframe(1)
    while frame is not None:
        obj = frame.f_locals.get("self")
        if isinstance(obj, Trainer) and any(cb is callback for cb in obj.callback_handler.callbacks):
            return obj
        frame = frame.f_back
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
