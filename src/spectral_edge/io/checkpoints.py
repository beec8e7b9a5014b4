"""Checkpoint readers: find the checkpoints in a folder and read them tensor by tensor.

INTERFACE STUB — being implemented. The analysis engine relies on exactly this API.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class TensorInfo:
    """Shape and dtype of one stored tensor, known without reading its data."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n


@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint found in a folder: its training step, where it is, and its format.

    ``format`` is one of ``safetensors`` (a single file), ``hf`` (a ``checkpoint-<step>/``
    folder, possibly sharded), ``torch`` (a ``.pt``/``.pth``/``.bin``/``.ckpt`` pickle read
    with ``weights_only=True``), ``dcp`` (a ``torch.distributed.checkpoint`` folder).
    """

    step: int
    path: Path
    format: str


def discover(folder: str | Path) -> list[CheckpointRef]:
    """All checkpoints in ``folder``, sorted by step. Raises EmptyFolderError etc."""
    raise NotImplementedError


class CheckpointReader:
    """Reads one checkpoint lazily. Use as a context manager."""

    ref: CheckpointRef

    def tensor_info(self) -> dict[str, TensorInfo]:
        raise NotImplementedError

    def aliases(self) -> dict[str, str]:
        raise NotImplementedError

    def iter_tensors(self, names: Sequence[str]) -> Iterator[tuple[str, torch.Tensor]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_checkpoint(ref: CheckpointRef, state_key: str | None = None) -> CheckpointReader:
    raise NotImplementedError
