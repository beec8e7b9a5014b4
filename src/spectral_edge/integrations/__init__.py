"""Thin adapters between :class:`~spectral_edge.monitor.Monitor` and training frameworks.

- :mod:`.torch_hooks`: :func:`watch` for plain loops (monitor + optimizer hooks in one call);
- :mod:`.hf`: ``SpectralEdgeCallback`` for the transformers ``Trainer``;
- :mod:`.lightning`: ``SpectralEdgeCallback`` for the Lightning ``Trainer``;
- :mod:`.loggers`: :class:`TensorBoardLogger` and :class:`WandbLogger` metric sinks;
- :mod:`.distributed`: sketching parameters sharded over ``torch.distributed`` ranks.

Nothing here imports a framework until it is asked for: ``import spectral_edge.integrations``
loads neither transformers, lightning, wandb nor tensorboard. Import the framework adapters
from their modules (``from spectral_edge.integrations.hf import SpectralEdgeCallback``); the
names below are resolved on first use.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__, __getattr__, __dir__ = lazy_attributes(__name__, {
    "torch_hooks": ("watch",),
    "loggers": ("TensorBoardLogger", "WandbLogger"),
}, submodules=("distributed", "hf", "lightning", "loggers", "torch_hooks"))
