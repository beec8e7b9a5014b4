"""Metric sinks for :class:`~spectral_edge.monitor.Monitor`: TensorBoard and Weights & Biases.

A monitor hands each sink the scalars of one step, already namespaced by
:func:`~spectral_edge.monitor.logger_metrics` (``sed/k_star``, ``sed/gap_ratio``,
``sed/W20/k_star``, ``grad/k_star``, ``log/lr``…). The sinks below write those keys
unchanged, at the optimizer step the monitor gives, and do nothing else::

    mon = Monitor(model, loggers=[TensorBoardLogger("runs/a/tb"), WandbLogger(mode="offline")])

``tensorboard`` and ``wandb`` are imported when a sink is built, never when this module is
imported, so either can be missing when only the other is used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["TensorBoardLogger", "WandbLogger"]


class TensorBoardLogger:
    """Writes monitor scalars to TensorBoard event files.

    ``target`` is a ``torch.utils.tensorboard.SummaryWriter`` (shared with the rest of the
    training script) or a log directory (a writer is made and owned here). :meth:`close`
    closes an owned writer and only flushes a borrowed one.
    """

    def __init__(self, target: Any, *, flush_every: int | None = None):
        if isinstance(target, (str, os.PathLike)):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError("TensorBoardLogger needs tensorboard: pip install 'spectral-edge[tensorboard]'") from e
            self.writer = SummaryWriter(log_dir=os.fspath(target))
            self._owns = True
        elif hasattr(target, "add_scalar"):
            self.writer = target
            self._owns = False
        else:
            raise TypeError(f"TensorBoardLogger wants a SummaryWriter or a log directory, got {type(target).__name__}")
        self.flush_every = flush_every
        self._calls = 0

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """One scalar per key at ``global_step=step``."""
        for key, value in metrics.items():
            self.writer.add_scalar(key, float(value), global_step=int(step))
        self._calls += 1
        if self.flush_every and self._calls % self.flush_every == 0:
            self.writer.flush()

    def close(self) -> None:
        """Flush; close the writer too when this logger made it."""
        self.writer.flush()
        if self._owns:
            self.writer.close()


class WandbLogger:
    """Writes monitor scalars to a Weights & Biases run.

    ``run`` is an existing run (``wandb.init(...)``'s result, or ``wandb.run``); without it
    ``wandb.init(mode=mode, **init_kwargs)`` is called here and :meth:`close` finishes that
    run. A borrowed run is never finished here.

    Steps: by default every call is ``run.log(metrics, step=step)``, so the W&B step is the
    optimizer step. When the run is shared with something that logs without ``step=`` (the
    transformers ``WandbCallback`` does), pass ``step_key="train/global_step"``: the step is
    then logged as that metric, ``sed/*``, ``grad/*``… are declared to use it as their x-axis
    (``define_metric``), and W&B's own step counter is left alone.
    """

    def __init__(self, run: Any = None, *, mode: str | None = None, step_key: str | None = None,
                 **init_kwargs: Any):
        if run is None:
            try:
                import wandb
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError("WandbLogger needs wandb: pip install 'spectral-edge[wandb]'") from e
            run = wandb.init(mode=mode, **init_kwargs)
            self._owns = True
        else:
            if not hasattr(run, "log"):
                raise TypeError(f"WandbLogger wants a wandb run (with .log), got {type(run).__name__}")
            self._owns = False
        self.run = run
        self.step_key = step_key
        self._declared: set[str] = set()

    def _declare(self, metrics: Mapping[str, float]) -> None:
        """Tell W&B once per namespace (``sed``, ``grad``…) that ``step_key`` is its x-axis."""
        assert self.step_key is not None
        define = getattr(self.run, "define_metric", None)
        if define is None:
            return
        if not self._declared:
            define(self.step_key)
            self._declared.add(self.step_key)
        for key in metrics:
            ns = key.split("/", 1)[0]
            if ns not in self._declared:
                define(f"{ns}/*", step_metric=self.step_key)
                self._declared.add(ns)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """``run.log(metrics, step=step)``; or, with ``step_key``, ``run.log({step_key: step, **metrics})``."""
        data = {k: float(v) for k, v in metrics.items()}
        if self.step_key is None:
            self.run.log(data, step=int(step))
        else:
            self._declare(data)
            self.run.log({self.step_key: int(step), **data})

    def close(self) -> None:
        """Finish the run when this logger started it."""
        if self._owns:
            self.run.finish()
