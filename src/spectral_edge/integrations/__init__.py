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

import importlib
from typing import Any

_LAZY = {
    "watch": "torch_hooks",
    "TensorBoardLogger": "loggers",
    "WandbLogger": "loggers",
}
_SUBMODULES = ("distributed", "hf", "lightning", "loggers", "torch_hooks")

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'spectral_edge.integrations' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES])
