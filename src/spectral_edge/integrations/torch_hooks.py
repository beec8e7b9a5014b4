"""Plain PyTorch loops: a monitor and its optimizer hooks in one call.

::

    mon, handle = watch(model, optimizer, windows=(10,), every=100, history="runs/a/history.jsonl")
    for batch in data:                      # the loop is unchanged
        ...
        optimizer.step()                    # the hooks sample here, on the monitor's cadence
    handle.remove(); mon.close()

The optimizer's own step hooks do the work (``register_step_pre_hook`` for the gradient
stream, ``register_step_post_hook`` for the update stream), so this works with any
``torch.optim.Optimizer`` whose ``step()`` computes nothing itself. An optimizer that runs a
closure inside ``step()`` (LBFGS) computes its gradients after the pre-hook has fired: use
``gradients=False`` there, or call :meth:`Monitor.sample_gradients` yourself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..monitor import Monitor

__all__ = ["watch"]


def watch(
    model: torch.nn.Module | Iterable[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    **monitor_kwargs: Any,
) -> tuple[Monitor, Any]:
    """Build ``Monitor(model, **monitor_kwargs)`` and attach it to ``optimizer``.

    Returns ``(monitor, handle)``; ``handle.remove()`` detaches the hooks, ``monitor.close()``
    closes the history file.
    """
    monitor = Monitor(model, **monitor_kwargs)
    return monitor, monitor.attach(optimizer)
