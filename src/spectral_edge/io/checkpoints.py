"""Checkpoint readers: find the checkpoints in a folder and read them tensor by tensor.

A run folder may hold, in any mix:

* ``*.safetensors`` files, one checkpoint each;
* Hugging Face ``checkpoint-<step>/`` folders with ``model.safetensors`` or
  ``pytorch_model.bin``, either whole or sharded with a ``*.index.json`` weight map
  (optimizer, scheduler, RNG and trainer files beside them are ignored);
* ``*.pt`` / ``*.pth`` / ``*.bin`` / ``*.ckpt`` files holding a state dict, either bare or
  nested in a training checkpoint (nanoGPT ``{"model": ...}``, Lightning
  ``{"state_dict": ...}``, ...; ``state_key`` picks the entry when the guess is wrong);
* ``torch.distributed.checkpoint`` folders (a ``.metadata`` file plus ``*.distcp`` data),
  possibly saved from several ranks with tensors split into chunks.

The training step of each checkpoint is the last number in its file stem or folder name
(``step_000200.safetensors`` → 200, ``checkpoint-1400/`` → 1400). Files that are not model
weights (``optimizer.pt``, ``rng_state_0.pth``, Lightning's ``last.ckpt`` copy) and weights
saved straight into the folder under Hugging Face names (``model.safetensors``, the final save
of a Trainer run, which has no step) are skipped.

Safety rule: a checkpoint is data, never code. Pickled files are loaded only with
``torch.load(..., weights_only=True)``; DCP ``.metadata`` pickles go through an unpickler
that builds nothing but the metadata classes (torch's own reader would run arbitrary code).
A file that needs more is refused with :class:`UnsafeCheckpointError`. Every failure caused
by a bad file surfaces as a :class:`CheckpointError` subclass naming that file, with the
library's exception kept as ``__cause__``.

Readers are lazy: :meth:`CheckpointReader.tensor_info` comes from headers and metadata
(memory-mapped pickles for torch files), and :meth:`CheckpointReader.iter_tensors` yields
one tensor at a time, so a checkpoint is never held in memory whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, CorruptCheckpointError, EmptyFolderError
from . import _dcp
from ._safetensors import read_header
from ._statedict import pick_state_dict
from ._torchfile import load_torch_file

__all__ = ["TensorInfo", "CheckpointRef", "CheckpointReader", "discover", "open_checkpoint"]


@dataclass(frozen=True)
class TensorInfo:
    """Shape and dtype of one stored tensor, known without reading its data."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        """Number of elements."""
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


# ----------------------------------------------------------------------------- discovery

_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_FILE_SUFFIXES = (".safetensors",) + _TORCH_SUFFIXES
_HF_SAFE = "model.safetensors"
_HF_SAFE_INDEX = "model.safetensors.index.json"
_HF_BIN = "pytorch_model.bin"
_HF_BIN_INDEX = "pytorch_model.bin.index.json"
_HF_MARKERS = (_HF_SAFE, _HF_SAFE_INDEX, _HF_BIN, _HF_BIN_INDEX)
#: Weight files of a model saved straight into a folder (no step in their name).
_HF_MODEL_FILE = re.compile(r"(model|pytorch_model|adapter_model)(-\d+-of-\d+)?\.(safetensors|bin)")
#: Name words of training-state files that sit next to checkpoints but hold no model weights.
_NON_MODEL_WORDS = frozenset({"optimizer", "optim", "scheduler", "sched", "rng", "scaler"})
_NON_MODEL_STEMS = frozenset({"training_args"})
#: Lightning's copy of the latest checkpoint (``last.ckpt``, ``last-v1.ckpt``).
_LAST_COPY = re.compile(r"(last|latest)(-v\d+)?")
_LOOKED_FOR = (
    "looked for *.safetensors, *.pt, *.pth, *.bin and *.ckpt files with the step in their name, "
    "checkpoint-<step>/ folders with model.safetensors or pytorch_model.bin (whole or sharded with an "
    "index.json), and torch.distributed.checkpoint folders holding a .metadata file"
)


def _step_of(name: str) -> int | None:
    """The last integer in ``name``, or None if it has none."""
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None


def _is_training_state(stem: str) -> bool:
    """True for files such as ``optimizer.pt``, ``rng_state_0.pth`` or ``training_args.bin``."""
    lower = stem.lower()
    words = set(re.split(r"[^a-z]+", lower))
    return lower in _NON_MODEL_STEMS or bool(words & _NON_MODEL_WORDS)


def _folder_format(folder: Path) -> str | None:
    """``dcp`` or ``hf`` if ``folder`` holds one checkpoint in that layout, else None."""
    if (folder / _dcp.METADATA_FILE).is_file():
        return "dcp"
    if any((folder / m).is_file() for m in _HF_MARKERS):
        return "hf"
    return None


def _no_step(path: Path) -> CheckpointError:
    """The error for a checkpoint whose name carries no step number."""
    return CheckpointError(
        path,
        "cannot tell the training step: the name has no number; rename it (e.g. step_<N>) or move it out of "
        "the folder",
    )


def discover(folder: str | Path) -> list[CheckpointRef]:
    """All checkpoints in ``folder``, sorted by step. Raises EmptyFolderError etc."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise CheckpointError(root, "no such folder")
    if not root.is_dir():
        raise CheckpointError(root, "is a file, not a folder; pass the folder that holds the checkpoints")
    found: dict[int, CheckpointRef] = {}
    notes: list[str] = []
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name.startswith(".") or name == "__pycache__":
            continue
        if entry.is_dir():
            fmt = _folder_format(entry)
            if fmt is None:
                if re.fullmatch(r"checkpoint-\d+", name):
                    raise CheckpointError(
                        entry, f"no model weights found (looked for {', '.join(_HF_MARKERS)} or a DCP .metadata)"
                    )
                continue
            step = _step_of(name)
        elif entry.is_file() and entry.suffix.lower() in _FILE_SUFFIXES:
            stem = entry.stem
            if _is_training_state(stem) or _LAST_COPY.fullmatch(stem.lower()):
                continue
            if _HF_MODEL_FILE.fullmatch(name):
                notes.append(name)
                continue
            fmt = "safetensors" if entry.suffix.lower() == ".safetensors" else "torch"
            step = _step_of(stem)
        else:
            continue
        if step is None:
            raise _no_step(entry)
        ref = CheckpointRef(step, entry, fmt)
        if step in found:
            other = found[step]
            raise CheckpointError(
                root, f"two checkpoints for step {step}: {other.path.name} and {name}; keep one of them"
            )
        found[step] = ref
    if not found:
        if (root / _dcp.METADATA_FILE).is_file() or notes:
            what = "a DCP .metadata file" if (root / _dcp.METADATA_FILE).is_file() else ", ".join(notes[:3])
            raise EmptyFolderError(
                root,
                f"no checkpoints with a step found; the folder itself looks like one saved model ({what}); "
                "pass the folder that holds the checkpoints, one per step",
            )
        raise EmptyFolderError(root, f"no checkpoints found: {_LOOKED_FOR}")
    return [found[s] for s in sorted(found)]


# ----------------------------------------------------------------------------- readers


class CheckpointReader:
    """Reads one checkpoint lazily. Use as a context manager."""

    ref: CheckpointRef

    def __init__(self, ref: CheckpointRef) -> None:
        self.ref = ref
        self._info: dict[str, TensorInfo] = {}
        self._aliases: dict[str, str] = {}
        self._closed = False

    def tensor_info(self) -> dict[str, TensorInfo]:
        """Name -> shape and dtype of every tensor, in storage order, without reading tensor data."""
        return dict(self._info)

    def aliases(self) -> dict[str, str]:
        """Duplicate name -> canonical name for tensors stored once under several names (tied weights)."""
        return dict(self._aliases)

    def iter_tensors(self, names: Sequence[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield ``(name, CPU tensor)`` for ``names``, in that order, reading one tensor at a time."""
        if self._closed:
            raise CheckpointError(self.ref.path, "this checkpoint reader is closed")
        names = list(names)
        missing = [n for n in names if n not in self._info]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise CheckpointError(self.ref.path, f"no tensor named {missing[0]!r} in this checkpoint{more}")
        return self._iter(names)

    def _iter(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """Format-specific generator behind :meth:`iter_tensors` (names already checked)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release open files and mappings; the reader cannot be used afterwards."""
        self._closed = True

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _library_error(path: Path, name: str, err: Exception) -> CorruptCheckpointError:
    """A CorruptCheckpointError for a library failure while reading tensor ``name`` from ``path``."""
    detail = " ".join(str(err).split())[:200] or type(err).__name__
    exc = CorruptCheckpointError(path, f"cannot read tensor {name!r} ({type(err).__name__}: {detail})")
    exc.__cause__ = err
    return exc


def _plain_name(index: Path, shard: object) -> Path:
    """The shard file an index names, which must be a plain file name beside the index."""
    if not isinstance(shard, str) or not shard or Path(shard).name != shard or shard in (".", ".."):
        raise CorruptCheckpointError(index, f"damaged index: weight_map names a bad shard file {shard!r}")
    return index.parent / shard


def _read_index(index: Path) -> list[tuple[Path, list[str]]]:
    """Shards of a sharded Hugging Face checkpoint, each with the tensor names the index puts there."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except OSError as e:
        raise CorruptCheckpointError(index, f"cannot read file: {e.strerror or e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(index, f"index is not valid JSON ({e})") from e
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CorruptCheckpointError(index, "index has no weight_map (a JSON object of tensor name -> shard file)")
    shards: dict[Path, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(_plain_name(index, shard), []).append(name)
    for shard in sorted(shards):
        if not shard.is_file():
            raise CorruptCheckpointError(shard, f"shard listed in {index.name} is missing")
    return [(shard, shards[shard]) for shard in sorted(shards)]


class _SafetensorsReader(CheckpointReader):
    """Reader for one safetensors file or a sharded set of them."""

    def __init__(self, ref: CheckpointRef, shards: list[tuple[Path, list[str] | None]]) -> None:
        super().__init__(ref)
        self._where: dict[str, Path] = {}
        self._handle: Any = None
        self._handle_path: Path | None = None
        for path, wanted in shards:
            entries = read_header(path)
            present = {e.name for e in entries}
            if wanted is not None:
                absent = [n for n in wanted if n not in present]
                if absent:
                    raise CorruptCheckpointError(path, f"tensor {absent[0]!r} listed in the index is not in this shard")
                keep = set(wanted)
                entries = [e for e in entries if e.name in keep]
            for e in entries:
                if e.name in self._info:
                    raise CorruptCheckpointError(path, f"tensor {e.name!r} also appears in {self._where[e.name].name}")
                self._info[e.name] = TensorInfo(e.shape, e.dtype)
                self._where[e.name] = path

    def _open(self, path: Path) -> Any:
        """The safe_open handle for ``path`` (one shard open at a time)."""
        if self._handle_path != path:
            from safetensors import safe_open

            self._release()
            try:
                self._handle = safe_open(str(path), framework="pt", device="cpu")
            except Exception as e:  # noqa: BLE001 - SafetensorError and OSError alike
                raise CorruptCheckpointError(path, f"cannot open safetensors file ({type(e).__name__}: {e})") from e
            self._handle_path = path
        return self._handle

    def _iter(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        for name in names:
            path = self._where[name]
            handle = self._open(path)
            try:
                tensor = handle.get_tensor(name)
            except Exception as e:  # noqa: BLE001 - map every library failure to a clear error
                raise _library_error(path, name, e) from e
            yield name, tensor

    def _release(self) -> None:
        """Drop the open shard handle (unmaps the file)."""
        if self._handle is not None:
            try:
                self._handle.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._handle = None
        self._handle_path = None

    def close(self) -> None:
        self._release()
        super().close()


def _is_tensor(value: object) -> bool:
    """True for tensors (the leaves of a state dict)."""
    return isinstance(value, torch.Tensor)


def _is_ignorable(name: str, value: object) -> bool:
    """Non-tensor state-dict entries that do not disqualify a state dict (skipped)."""
    return value is None or name.endswith("_extra_state")


def _tied_names(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """Duplicate -> first name for entries that are the same stored tensor (same storage, offset, view)."""
    first: dict[tuple[Any, ...], str] = {}
    out: dict[str, str] = {}
    for name, t in tensors.items():
        if t.numel() == 0 or t.layout != torch.strided:
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr == 0:
            continue
        key = (ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if key in first:
            out[name] = first[key]
        else:
            first[key] = name
    return out


class _TorchReader(CheckpointReader):
    """Reader for ``torch.save`` files (one file or sharded ``pytorch_model-*.bin``)."""

    def __init__(
        self, ref: CheckpointRef, shards: list[tuple[Path, list[str] | None]], state_key: str | None
    ) -> None:
        super().__init__(ref)
        self._state_key = state_key
        self._where: dict[str, Path] = {}
        self._loaded: dict[str, torch.Tensor] | None = None
        self._loaded_path: Path | None = None
        for path, wanted in shards:
            tensors = self._load(path, wanted)
            for name, t in tensors.items():
                if name in self._info:
                    raise CorruptCheckpointError(path, f"tensor {name!r} also appears in {self._where[name].name}")
                self._info[name] = TensorInfo(tuple(int(s) for s in t.shape), t.dtype)
                self._where[name] = path
            self._aliases.update(_tied_names(tensors))

    def _load(self, path: Path, wanted: list[str] | None) -> dict[str, torch.Tensor]:
        """Load (memory-mapped) the state dict of one file, keeping it as the current shard."""
        self._loaded = self._loaded_path = None
        obj = load_torch_file(path)
        tensors: dict[str, torch.Tensor] = pick_state_dict(
            obj, path, self._state_key, _is_tensor, _is_ignorable, "file"
        )
        if wanted is not None:
            absent = [n for n in wanted if n not in tensors]
            if absent:
                raise CorruptCheckpointError(path, f"tensor {absent[0]!r} listed in the index is not in this shard")
            keep = set(wanted)
            tensors = {n: t for n, t in tensors.items() if n in keep}
        self._loaded, self._loaded_path = tensors, path
        return tensors

    def _iter(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        for name in names:
            path = self._where[name]
            if self._loaded is None or self._loaded_path != path:
                self._load(path, None)
            assert self._loaded is not None
            yield name, self._loaded[name].detach()

    def close(self) -> None:
        self._loaded = self._loaded_path = None
        super().close()


class _DcpReader(CheckpointReader):
    """Reader for a ``torch.distributed.checkpoint`` folder."""

    def __init__(self, ref: CheckpointRef, state_key: str | None) -> None:
        super().__init__(ref)
        index = _dcp.load_index(ref.path)
        self._tensors: dict[str, _dcp.DcpTensor] = pick_state_dict(
            index.tree,
            ref.path / _dcp.METADATA_FILE,
            state_key,
            lambda v: isinstance(v, _dcp.DcpTensor),
            lambda _n, v: isinstance(v, _dcp.DcpBytes),
            "DCP checkpoint",
        )
        first: dict[tuple[Any, ...], str] = {}
        for name, t in self._tensors.items():
            self._info[name] = TensorInfo(t.shape, t.dtype)
            key = (t.dtype, t.shape, tuple((c.file, c.offset, c.length) for c in t.chunks))
            if key in first:
                self._aliases[name] = first[key]
            else:
                first[key] = name

    def _iter(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        for name in names:
            yield name, _dcp.read_tensor(self._tensors[name])


def _open_hf(ref: CheckpointRef, state_key: str | None) -> CheckpointReader:
    """Reader for a Hugging Face ``checkpoint-<step>/`` folder (safetensors preferred over .bin)."""
    folder = ref.path
    if (folder / _HF_SAFE).is_file():
        return _SafetensorsReader(ref, [(folder / _HF_SAFE, None)])
    if (folder / _HF_SAFE_INDEX).is_file():
        return _SafetensorsReader(ref, list(_read_index(folder / _HF_SAFE_INDEX)))
    if (folder / _HF_BIN).is_file():
        return _TorchReader(ref, [(folder / _HF_BIN, None)], state_key)
    if (folder / _HF_BIN_INDEX).is_file():
        return _TorchReader(ref, list(_read_index(folder / _HF_BIN_INDEX)), state_key)
    raise CheckpointError(folder, f"no model weights found (looked for {', '.join(_HF_MARKERS)})")


def open_checkpoint(ref: CheckpointRef, state_key: str | None = None) -> CheckpointReader:
    """Open ``ref``, validating its headers/metadata now; ``state_key`` picks the weights in pickles and DCP."""
    path = Path(ref.path)
    if not path.exists():
        raise CheckpointError(path, "checkpoint no longer exists")
    if ref.format == "safetensors":
        return _SafetensorsReader(ref, [(path, None)])
    if ref.format == "torch":
        return _TorchReader(ref, [(path, None)], state_key)
    if ref.format == "hf":
        return _open_hf(ref, state_key)
    if ref.format == "dcp":
        return _DcpReader(ref, state_key)
    raise CheckpointError(path, f"unknown checkpoint format {ref.format!r}")
