"""Reading ``torch.distributed.checkpoint`` (DCP) folders without unsafe unpickling.

A DCP folder holds a pickled ``.metadata`` file and ``*.distcp`` data files. torch's own
``FileSystemReader.read_metadata`` calls plain ``pickle.load``, which would run any code a
crafted file asks for. Here ``.metadata`` is read by :class:`_MetadataUnpickler`, which
resolves only the classes DCP metadata is made of; anything else is refused with
:class:`UnsafeCheckpointError`. Tensor chunks are then read straight from their byte ranges
and decoded with ``torch.load(weights_only=True)``; chunks of a tensor sharded across
ranks are assembled at their offsets. No process group is needed.
"""

from __future__ import annotations

import builtins
import collections
import importlib
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError

METADATA_FILE = ".metadata"

_DCP_CLASSES: frozenset[tuple[str, str]] = frozenset(
    {
        ("torch.distributed.checkpoint.metadata", "Metadata"),
        ("torch.distributed.checkpoint.metadata", "TensorStorageMetadata"),
        ("torch.distributed.checkpoint.metadata", "ChunkStorageMetadata"),
        ("torch.distributed.checkpoint.metadata", "TensorProperties"),
        ("torch.distributed.checkpoint.metadata", "BytesStorageMetadata"),
        ("torch.distributed.checkpoint.metadata", "MetadataIndex"),
        ("torch.distributed.checkpoint.metadata", "StorageMeta"),
        ("torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING"),
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        ("torch.distributed.checkpoint.filesystem", "_StoragePrefix"),
    }
)
_PATH_CLASSES = frozenset({"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"})
_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "int", "float", "bool", "str", "bytes", "complex"})


class _Forbidden(pickle.UnpicklingError):
    """A pickle asked for something outside the DCP-metadata allowlist."""


class _Unavailable(Exception):
    """An allowlisted DCP class does not exist in the installed torch."""


def _layout_from_name(name: str) -> torch.layout:
    """The torch layout called ``name`` (how torch pickles layouts)."""
    for value in vars(torch).values():
        if isinstance(value, torch.layout) and str(value) == name:
            return value
    raise _Forbidden(f"unknown torch layout {name!r}")


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickler that builds only DCP metadata objects, torch dtypes/layouts/sizes and plain containers."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` if it is on the allowlist, else refuse."""
        if (module, name) in _DCP_CLASSES:
            try:
                return getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError) as e:
                raise _Unavailable(f"{module}.{name}") from e
        if module == "torch":
            if name == "Size":
                return torch.Size
            value = getattr(torch, name, None)
            if isinstance(value, (torch.dtype, torch.layout, torch.memory_format)):
                return value
        if module == "torch.serialization" and name == "_get_layout":
            return _layout_from_name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "builtins" and name in _BUILTINS:
            return getattr(builtins, name)
        if module in ("pathlib", "pathlib._local") and name in _PATH_CLASSES:
            return getattr(importlib.import_module("pathlib"), name)
        raise _Forbidden(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids never occur in DCP metadata; refuse them."""
        raise _Forbidden("a persistent id")


@dataclass(frozen=True)
class DcpChunk:
    """One stored piece of a tensor: where it sits in the tensor and where its bytes are."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    file: Path
    offset: int
    length: int


@dataclass(frozen=True)
class DcpTensor:
    """A tensor of a DCP checkpoint: full shape, dtype and its stored chunks."""

    fqn: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    chunks: tuple[DcpChunk, ...]


@dataclass(frozen=True)
class DcpBytes:
    """A non-tensor entry of a DCP checkpoint (skipped by the readers)."""

    fqn: str


@dataclass(frozen=True)
class DcpIndex:
    """Validated contents of a DCP ``.metadata`` file."""

    tensors: dict[str, DcpTensor]
    tree: dict[Any, Any]


def _load_raw_metadata(folder: Path) -> Any:
    """Unpickle ``folder/.metadata`` with the restricted unpickler."""
    path = folder / METADATA_FILE
    try:
        with open(path, "rb") as f:
            return _MetadataUnpickler(f).load()
    except _Forbidden as e:
        raise UnsafeCheckpointError(
            path, f"refusing to unpickle {e} (not DCP metadata; torch's own reader would execute it)"
        ) from e
    except _Unavailable as e:
        raise CheckpointError(path, f"the installed torch lacks {e}, needed to read this DCP metadata") from e
    except OSError as e:
        raise CorruptCheckpointError(path, f"cannot read file: {e.strerror or e}") from e
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated/garbage pickles raise many kinds of errors
        raise CorruptCheckpointError(path, f"damaged DCP metadata ({type(e).__name__}: {e})") from e


def _ints(value: object) -> tuple[int, ...] | None:
    """``value`` as a tuple of non-negative ints, or None if it is not one."""
    if not isinstance(value, (tuple, list)):
        return None
    out = tuple(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in out):
        return None
    return out


def _storage_file(folder: Path, meta_path: Path, relative: object) -> Path:
    """The data file a storage entry points to, which must lie inside ``folder``."""
    if not isinstance(relative, str) or not relative:
        raise CorruptCheckpointError(meta_path, f"damaged DCP metadata: bad data file name {relative!r}")
    target = (folder / relative).resolve()
    if folder.resolve() not in target.parents:
        raise UnsafeCheckpointError(meta_path, f"data file {relative!r} lies outside the checkpoint folder")
    return target


def load_index(folder: Path) -> DcpIndex:
    """Read and validate the metadata of the DCP checkpoint in ``folder`` (no tensor data read)."""
    meta_path = folder / METADATA_FILE
    try:
        from torch.distributed.checkpoint.filesystem import _StorageInfo
        from torch.distributed.checkpoint.metadata import (
            BytesStorageMetadata,
            Metadata,
            MetadataIndex,
            TensorStorageMetadata,
        )
    except ImportError as e:
        raise CheckpointError(folder, f"this torch build cannot read DCP checkpoints ({e})") from e
    md = _load_raw_metadata(folder)
    if not isinstance(md, Metadata) or not isinstance(md.state_dict_metadata, dict):
        raise CorruptCheckpointError(meta_path, f"not DCP metadata (holds a {type(md).__name__})")
    storage = md.storage_data
    if not isinstance(storage, dict):
        raise CorruptCheckpointError(meta_path, "DCP metadata has no storage table (not saved by FileSystemWriter?)")
    where: dict[tuple[str, tuple[int, ...]], _StorageInfo] = {}
    for key, info in storage.items():
        if isinstance(key, MetadataIndex) and isinstance(info, _StorageInfo) and key.offset is not None:
            where[(key.fqn, tuple(int(o) for o in key.offset))] = info
    sizes: dict[Path, int] = {}
    tensors: dict[str, DcpTensor] = {}
    leaves: dict[str, DcpTensor | DcpBytes] = {}
    for fqn, entry in md.state_dict_metadata.items():
        if not isinstance(fqn, str):
            raise CorruptCheckpointError(meta_path, f"damaged DCP metadata: entry name {fqn!r} is not a string")
        if isinstance(entry, BytesStorageMetadata):
            leaves[fqn] = DcpBytes(fqn)
            continue
        if not isinstance(entry, TensorStorageMetadata):
            raise CorruptCheckpointError(meta_path, f"damaged DCP metadata: entry {fqn!r} is a {type(entry).__name__}")
        shape = _ints(entry.size)
        dtype = getattr(entry.properties, "dtype", None)
        if shape is None or not isinstance(dtype, torch.dtype) or not isinstance(entry.chunks, list):
            raise CorruptCheckpointError(meta_path, f"damaged DCP metadata: bad shape/dtype/chunks for {fqn!r}")
        chunks: list[DcpChunk] = []
        covered = 0
        for chunk in entry.chunks:
            offsets, csizes = _ints(getattr(chunk, "offsets", None)), _ints(getattr(chunk, "sizes", None))
            if (
                offsets is None
                or csizes is None
                or len(offsets) != len(shape)
                or len(csizes) != len(shape)
                or any(o + s > d for o, s, d in zip(offsets, csizes, shape))
            ):
                raise CorruptCheckpointError(meta_path, f"damaged DCP metadata: chunk of {fqn!r} outside its shape")
            info = where.get((fqn, offsets))
            if info is None:
                raise CorruptCheckpointError(
                    meta_path, f"damaged DCP metadata: no stored data for chunk {list(offsets)} of {fqn!r}"
                )
            if getattr(info, "transform_descriptors", None):
                raise CheckpointError(
                    meta_path, f"tensor {fqn!r} is stored with transforms {list(info.transform_descriptors)}, "
                    "which this reader does not support",
                )
            file = _storage_file(folder, meta_path, info.relative_path)
            if file not in sizes:
                try:
                    sizes[file] = file.stat().st_size
                except OSError as e:
                    raise CorruptCheckpointError(file, f"data file of this DCP checkpoint is missing ({e.strerror})") from e
            if not (isinstance(info.offset, int) and isinstance(info.length, int)) or info.offset < 0 or info.length < 0:
                raise CorruptCheckpointError(meta_path, f"damaged DCP metadata: bad byte range for {fqn!r}")
            if info.offset + info.length > sizes[file]:
                raise CorruptCheckpointError(
                    file, f"truncated: tensor {fqn!r} needs bytes up to {info.offset + info.length} "
                    f"but the file holds {sizes[file]}",
                )
            n = 1
            for s in csizes:
                n *= s
            covered += n
            chunks.append(DcpChunk(offsets, csizes, file, info.offset, info.length))
        total = 1
        for s in shape:
            total *= s
        if covered != total:
            raise CorruptCheckpointError(
                meta_path, f"damaged DCP metadata: the chunks of {fqn!r} cover {covered} of {total} elements"
            )
        tensors[fqn] = leaves[fqn] = DcpTensor(fqn, shape, dtype, tuple(chunks))
    return DcpIndex(tensors, _build_tree(leaves, md.planner_data))


def _build_tree(leaves: dict[str, DcpTensor | DcpBytes], planner_data: object) -> dict[Any, Any]:
    """Rebuild the nesting of the saved state dict from the planner's key paths (flat if unknown)."""
    tree: dict[Any, Any] = {}
    if isinstance(planner_data, dict):
        for fqn, leaf in leaves.items():
            keys = planner_data.get(fqn)
            if not isinstance(keys, (tuple, list)) or not keys or not all(isinstance(k, (str, int)) for k in keys):
                return dict(leaves)
            node = tree
            for k in keys[:-1]:
                child = node.setdefault(k, {})
                if not isinstance(child, dict):
                    return dict(leaves)
                node = child
            if keys[-1] in node:
                return dict(leaves)
            node[keys[-1]] = leaf
        return tree
    return dict(leaves)


def read_tensor(tensor: DcpTensor) -> torch.Tensor:
    """Read one tensor of a DCP checkpoint from its chunks into a CPU tensor."""
    pieces: list[tuple[DcpChunk, torch.Tensor]] = []
    for chunk in tensor.chunks:
        try:
            with open(chunk.file, "rb") as f:
                f.seek(chunk.offset)
                data = f.read(chunk.length)
        except OSError as e:
            raise CorruptCheckpointError(chunk.file, f"cannot read file: {e.strerror or e}") from e
        if len(data) != chunk.length:
            raise CorruptCheckpointError(chunk.file, f"truncated: tensor {tensor.fqn!r} is cut short")
        try:
            value = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(
                chunk.file, f"refusing to unpickle the data of tensor {tensor.fqn!r} (not a plain tensor)"
            ) from e
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - damaged bytes raise many kinds of errors
            raise CorruptCheckpointError(
                chunk.file, f"damaged data for tensor {tensor.fqn!r} ({type(e).__name__}: {e})"
            ) from e
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != chunk.sizes or value.dtype != tensor.dtype:
            raise CorruptCheckpointError(
                chunk.file, f"stored data for tensor {tensor.fqn!r} does not match its metadata (shape/dtype)"
            )
        pieces.append((chunk, value))
    if len(pieces) == 1 and pieces[0][0].sizes == tensor.shape:
        return pieces[0][1]
    out = torch.empty(tensor.shape, dtype=tensor.dtype)
    for chunk, value in pieces:
        index = tuple(slice(o, o + s) for o, s in zip(chunk.offsets, chunk.sizes))
        out[index] = value
    return out
