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

**The step of a checkpoint** comes from its file stem or folder name, read in this order:

1. a number marked as the step: ``step=N``, ``step_N``, ``step-N``, ``stepN``, ``global_step=N``,
   ``checkpoint-N``, ``ckpt_N``, ``iter_N``, ``iteration-N`` (any case), whatever other numbers
   the name holds (``epoch=0-step=10-train_loss=1.30.ckpt`` → 10); a trailing Lightning version
   suffix ``-v<N>`` is never a number of the name (``epoch=0-step=10-v1.ckpt`` → 10);
2. else the name's only number (``model_300.pt`` → 300);
3. else (no number, or several and none marked) the step the checkpoint stores, where its
   format has a place for it: ``global_step`` (Lightning), ``step``, ``iter_num`` (nanoGPT) or
   ``iteration`` at the top of a pickle (loaded with ``weights_only=True``), ``global_step`` of
   a Trainer folder's ``trainer_state.json``, ``step``/``global_step`` in safetensors metadata;
4. else :class:`CheckpointError` naming the file and how to name it; the step is never guessed.

A step over 2^63 - 1 is refused, naming the file. Two checkpoints with the same step are refused
naming both, including Lightning's ``-v1`` copy of a step already in the folder (what a
restarted run saving into the same folder writes): which one belongs to the trajectory is the
user's call, not ours. Files that are not model weights (``optimizer.pt``,
``rng_state_0.pth``, Lightning's ``last.ckpt`` copy) and weights saved straight into the folder
under Hugging Face names (``model.safetensors``, the final save of a Trainer run, which has no
step) are skipped. A broken or looping symbolic link with a checkpoint's name, and a folder
that cannot be listed, are refused naming the path.

**Tied weights** (GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``) are one parameter,
counted once under the name that comes first in the checkpoint, as ``named_parameters()`` of
the live model counts it. One rule for every reader decides which names are tied
(:func:`tied_names`):

1. the file records it: the names are views of one storage with the same offset, shape and
   strides (a pickled ``model.state_dict()``). Formats that store a tied tensor once have
   nothing to count twice (safetensors refuses shared tensors; Hugging Face's
   ``save_pretrained`` drops the tied names);
2. the format keeps no record of it (DCP writes every name's bytes separately; a state dict of
   clones or ``.cpu()`` copies): two tensors of the same shape and dtype are tied when their
   values are bit-identical in the first checkpoint *and* in the last, and changed between
   the two. Equal values in one checkpoint prove nothing (LayerNorm weights are all ones at
   initialisation); a pair that moved and still agrees is one tensor. Tensors that never
   change are never tied this way: counting them twice changes no spectrum.

A pair tied by rule 2 is checked again in every checkpoint as it is read
(:func:`iter_untied`); if it differs anywhere the analysis stops with an error naming both
tensors and the file, rather than guess. The engine reports every tie with a "tied weights
counted once" warning. (Two separate parameters that stay bit-identical through a whole run
cannot be told from one tied tensor in saved data; this rule counts them once.)

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

import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, CorruptCheckpointError, EmptyFolderError
from . import _dcp
from ._safetensors import SafetensorsEntry, read_bytes, read_header, read_metadata
from ._statedict import pick_state_dict
from ._torchfile import load_torch_file

__all__ = ["MAX_STEP", "TensorInfo", "CheckpointRef", "CheckpointReader", "discover", "iter_untied", "name_step",
           "open_checkpoint", "tied_names", "weights_format"]


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
_HF_TRAINER_STATE = "trainer_state.json"
#: Weight files of a model saved straight into a folder (no step in their name).
_HF_MODEL_FILE = re.compile(r"(model|pytorch_model|adapter_model)(-\d+-of-\d+)?\.(safetensors|bin)")
#: Name words of training-state files that sit next to checkpoints but hold no model weights.
_NON_MODEL_WORDS = frozenset({"optimizer", "optim", "scheduler", "sched", "rng", "scaler"})
_NON_MODEL_STEMS = frozenset({"training_args"})
#: Lightning's copy of the latest checkpoint (``last.ckpt``, ``last-v1.ckpt``).
_LAST_COPY = re.compile(r"(last|latest)(-v\d+)?")
#: Lightning's version suffix (``epoch=0-step=10-v1.ckpt``): a name already used, not a number of the name.
_VERSION_SUFFIX = re.compile(r"-v\d+$")
#: A number marked as the step: ``step=N``, ``step_N``, ``step-N``, ``stepN``, ``global_step=N``,
#: ``checkpoint-N``, ``ckpt_N``, ``iter_N``, ``iteration-N`` (any case; the word starts the name or
#: follows a non-letter).
_STEP_TOKEN = re.compile(r"(?<![a-z])(?:global_step|steps?|checkpoint|ckpt|iter|iteration)[=_-]?(\d+)(?!\d)",
                         re.IGNORECASE)
#: Entries of a pickled training checkpoint that hold the step (Lightning, generic, nanoGPT), in the order tried.
_STORED_STEP_KEYS = ("global_step", "step", "iter_num", "iteration")
#: Steps are stored as signed 64-bit integers (tables, windows).
MAX_STEP = 2**63 - 1
_LOOKED_FOR = (
    "looked for *.safetensors, *.pt, *.pth, *.bin and *.ckpt files with the step in their name, "
    "checkpoint-<step>/ folders with model.safetensors or pytorch_model.bin (whole or sharded with an "
    "index.json), and torch.distributed.checkpoint folders holding a .metadata file"
)
_RENAME = "rename it with the step marked (step_<N>, step=<N> or checkpoint-<N>) or move it out of the folder"


def _as_step(path: Path, digits: str) -> int:
    """``digits`` as a step, refusing values over :data:`MAX_STEP` (before converting huge strings)."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(MAX_STEP)) or int(digits) > MAX_STEP:
        shown = digits if len(digits) <= 30 else f"{digits[:12]}…({len(digits)} digits)"
        raise CheckpointError(path, f"the step {shown} in the name is too large (the largest is 2^63 - 1); {_RENAME}")
    return int(digits)


def _step_in_name(path: Path, name: str) -> tuple[int | None, list[str]]:
    """The step a name states (an explicit token, else its only number), or None and the numbers it holds."""
    name = _VERSION_SUFFIX.sub("", name)
    marked = {_as_step(path, d) for d in _STEP_TOKEN.findall(name)}
    if len(marked) == 1:
        return marked.pop(), []
    numbers = re.findall(r"\d+", name)
    if len(numbers) == 1:
        return _as_step(path, numbers[0]), []
    return None, numbers


def _stored_step(path: Path, fmt: str) -> int | None:
    """The step a checkpoint stores inside, where its format has a place for it, else None.

    Lightning and nanoGPT pickles: a top-level ``global_step``/``step``/``iter_num``/``iteration``
    int (loaded with ``weights_only=True``); Trainer folders: ``trainer_state.json``'s
    ``global_step``; safetensors: a ``step`` or ``global_step`` entry of ``__metadata__``."""
    value: object = None
    if fmt == "torch":
        obj = load_torch_file(path)
        if isinstance(obj, dict):
            value = next((obj[k] for k in _STORED_STEP_KEYS if k in obj), None)
    elif fmt == "hf":
        try:
            value = json.loads((path / _HF_TRAINER_STATE).read_text(encoding="utf-8")).get("global_step")
        except (OSError, ValueError, AttributeError):
            value = None
    elif fmt == "safetensors":
        meta = read_metadata(path)
        text = meta.get("global_step", meta.get("step"))
        value = int(text) if text is not None and text.isdigit() and len(text) < 25 else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_STEP:
        return value
    return None


def _step_of(path: Path, fmt: str) -> int:
    """The training step of the checkpoint at ``path`` (rule in the module docs), or CheckpointError."""
    name = path.name if fmt in ("hf", "dcp") else path.stem
    step, numbers = _step_in_name(path, name)
    if step is not None:
        return step
    stored = _stored_step(path, fmt)
    if stored is not None:
        return stored
    if numbers:
        shown = ", ".join(numbers[:5]) + (", …" if len(numbers) > 5 else "")
        what = f"the name holds several numbers ({shown}) and none is marked as the step"
    else:
        what = "the name has no number"
    raise CheckpointError(path, f"cannot tell the training step: {what}, and the checkpoint stores none; {_RENAME}")


def name_step(name: str, folder: bool = False) -> int | None:
    """The step a checkpoint's name states (rules 1-2 of the module docs; a file's extension is
    dropped unless ``folder``), or None; for readers of other stores (:mod:`.remote`)."""
    return _step_in_name(Path(name), name if folder else os.path.splitext(name)[0])[0]


def weights_format(name: str) -> str | None:
    """``safetensors`` or ``torch`` for a file name :func:`discover` takes as a checkpoint, else None."""
    ext = os.path.splitext(name)[1].lower()
    if ext not in _FILE_SUFFIXES or _skipped_name(name) or _HF_MODEL_FILE.fullmatch(name):
        return None
    return "safetensors" if ext == ".safetensors" else "torch"


def _is_training_state(stem: str) -> bool:
    """True for files such as ``optimizer.pt``, ``rng_state_0.pth`` or ``training_args.bin``."""
    lower = stem.lower()
    words = set(re.split(r"[^a-z]+", lower))
    return lower in _NON_MODEL_STEMS or bool(words & _NON_MODEL_WORDS)


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder`` sorted by name; a folder that cannot be listed is named."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise CheckpointError(folder, f"cannot list the folder: {e.strerror or e}; check its permissions") from e


def _has_file(folder: Path, name: str) -> bool:
    """True if ``folder/name`` is a file; a folder that cannot be looked into is named."""
    try:
        return stat.S_ISREG(os.stat(folder / name).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as e:
        if e.errno == errno.ELOOP:
            return False
        raise CheckpointError(folder, f"cannot look inside the folder: {e.strerror or e}; fix its permissions or "
                              "move it out of the folder") from e


def _folder_format(folder: Path) -> str | None:
    """``dcp`` or ``hf`` if ``folder`` holds one checkpoint in that layout, else None."""
    if _has_file(folder, _dcp.METADATA_FILE):
        return "dcp"
    if any(_has_file(folder, m) for m in _HF_MARKERS):
        return "hf"
    return None


def _kind(entry: os.DirEntry[str]) -> str:
    """``dir``, ``file`` or ``other`` for an entry (links followed); a broken link is named."""
    try:
        if entry.is_dir():
            return "dir"
        if entry.is_file():
            return "file"
        if not entry.is_symlink():
            return "other"
        os.stat(entry.path)
        return "other"
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CheckpointError(Path(entry.path), "symbolic link loop (the link points back to itself); "
                                  "remove it or point it at a checkpoint") from e
        if e.errno == errno.ENOENT:
            target = os.readlink(entry.path)
            raise CheckpointError(Path(entry.path), f"broken symbolic link (its target {target} does not exist); "
                                  "remove it or restore the target") from e
        raise CheckpointError(Path(entry.path), f"cannot read: {e.strerror or e}") from e


def _skipped_name(name: str) -> bool:
    """Names never taken as checkpoints: hidden, caches, training state, Lightning's ``last.ckpt``."""
    if name.startswith(".") or name == "__pycache__":
        return True
    stem, suffix = os.path.splitext(name)
    return suffix.lower() in _FILE_SUFFIXES and (_is_training_state(stem) or bool(_LAST_COPY.fullmatch(stem.lower())))


def _candidate_name(name: str) -> bool:
    """True if a broken link called ``name`` would have been a checkpoint (so it must be named)."""
    return os.path.splitext(name)[1].lower() in _FILE_SUFFIXES or bool(_STEP_TOKEN.search(name))


def discover(folder: str | Path) -> list[CheckpointRef]:
    """All checkpoints in ``folder``, sorted by step. Raises EmptyFolderError etc."""
    root = Path(folder).expanduser()
    try:
        is_dir = stat.S_ISDIR(os.stat(root).st_mode)
    except FileNotFoundError:
        raise CheckpointError(root, "no such folder") from None
    except OSError as e:
        raise CheckpointError(root, f"cannot read: {e.strerror or e}") from e
    if not is_dir:
        raise CheckpointError(root, "is a file, not a folder; pass the folder that holds the checkpoints")
    found: dict[int, CheckpointRef] = {}
    notes: list[str] = []
    metadata_here = False
    for entry in _scan(root):
        name = entry.name
        if name == _dcp.METADATA_FILE:
            metadata_here = True
        if _skipped_name(name):
            continue
        path = root / name
        try:
            kind = _kind(entry)
        except CheckpointError:
            if _candidate_name(name):
                raise
            continue
        if kind == "dir":
            fmt = _folder_format(path)
            if fmt is None:
                if re.fullmatch(r"checkpoint-\d+", name):
                    raise CheckpointError(
                        path, f"no model weights found (looked for {', '.join(_HF_MARKERS)} or a DCP .metadata)"
                    )
                continue
        elif kind == "file" and os.path.splitext(name)[1].lower() in _FILE_SUFFIXES:
            if _HF_MODEL_FILE.fullmatch(name):
                notes.append(name)
                continue
            fmt = "safetensors" if name.lower().endswith(".safetensors") else "torch"
        else:
            continue
        step = _step_of(path, fmt)
        if step in found:
            raise CheckpointError(
                root, f"two checkpoints for step {step}: {found[step].path.name} and {name}; keep one of them "
                "(move the other out of the folder)"
            )
        found[step] = CheckpointRef(step, path, fmt)
    if not found:
        if metadata_here or notes:
            what = "a DCP .metadata file" if metadata_here else ", ".join(notes[:3])
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
        """Duplicate name -> canonical name for tensors this file stores once under several names
        (tied weights the format records; :func:`tied_names` adds those it does not)."""
        return dict(self._aliases)

    def probe(self, name: str) -> bytes | None:
        """A few raw bytes of tensor ``name`` (its start, middle and end) read without reading
        the whole tensor, or None where the format can only read whole tensors (DCP)."""
        return None

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
        self._entries: dict[str, SafetensorsEntry] = {}
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
                self._entries[e.name] = e

    def probe(self, name: str) -> bytes | None:
        e = self._entries[name]
        n, k = e.end - e.begin, _PROBE_BYTES
        path, start = self._where[name], e.base + e.begin
        if n <= 3 * k:
            return read_bytes(path, start, n)
        return b"".join(read_bytes(path, start + at, k) for at in (0, (n - k) // 2, n - k))

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

    def _tensor(self, name: str) -> torch.Tensor:
        """Tensor ``name`` from its (memory-mapped) shard, loading that shard if needed."""
        path = self._where[name]
        if self._loaded is None or self._loaded_path != path:
            self._load(path, None)
        assert self._loaded is not None
        return self._loaded[name].detach()

    def _iter(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        for name in names:
            yield name, self._tensor(name)

    def probe(self, name: str) -> bytes | None:
        t = self._tensor(name)
        if not t.is_contiguous():
            return None
        flat = t.reshape(-1)
        k = max(1, _PROBE_BYTES // max(1, t.element_size()))
        parts = [flat] if flat.numel() <= 3 * k else [flat[:k], flat[(flat.numel() - k) // 2:][:k], flat[-k:]]
        return b"".join(_raw(p) for p in parts)

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


# ----------------------------------------------------------------------------- tied weights

#: Bytes read at each of three places of a tensor to rule out equal values cheaply.
_PROBE_BYTES = 64


def _raw(t: torch.Tensor) -> bytes:
    """The bytes of a tensor's values (bit patterns, so NaN equals NaN and -0.0 differs from 0.0)."""
    flat = t.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def _digest(t: torch.Tensor) -> bytes:
    """A hash of the bit pattern of a tensor's values."""
    flat = t.detach().contiguous().reshape(-1)
    h = hashlib.blake2b(digest_size=32)
    if flat.numel():
        h.update(memoryview(flat.view(torch.uint8).numpy()))
    return h.digest()


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True if two tensors have the same shape, dtype and bit patterns."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    x, y = a.detach().contiguous().reshape(-1), b.detach().contiguous().reshape(-1)
    return bool(torch.equal(x.view(torch.uint8), y.view(torch.uint8))) if x.numel() else True


def tied_names(first: CheckpointReader, last: CheckpointReader | None) -> dict[str, str]:
    """Duplicate name -> canonical name of the tied weights of a run (rule in the module docs),
    from its ``first`` and ``last`` checkpoints. Reads only tensors that could be tied: the
    floating-point tensors that share a shape and dtype with another, and of those only the ones
    whose probes (a few bytes) agree."""
    ties = first.aliases()
    info = first.tensor_info()
    classes: dict[tuple[Any, ...], list[str]] = {}
    for name, ti in info.items():
        if name not in ties and ti.numel and ti.dtype.is_floating_point:
            classes.setdefault((ti.shape, ti.dtype), []).append(name)
    suspects: list[list[str]] = []
    for names in classes.values():
        if len(names) > 1:
            by_probe: dict[bytes | None, list[str]] = {}
            for n in names:
                by_probe.setdefault(first.probe(n), []).append(n)
            suspects += [g for g in by_probe.values() if len(g) > 1]
    if not suspects or last is None:
        return ties
    wanted = {n for g in suspects for n in g}
    before = {n: _digest(t) for n, t in first.iter_tensors([n for n in info if n in wanted])}
    pairs: dict[str, str] = {}
    for g in suspects:
        same: dict[bytes, list[str]] = {}
        for n in g:
            same.setdefault(before[n], []).append(n)
        pairs.update((a, names[0]) for names in same.values() for a in names[1:])
    if not pairs:
        return ties
    later = last.tensor_info()
    needed = set(pairs) | set(pairs.values())
    after = {n: _digest(t) for n, t in last.iter_tensors([n for n in later if n in needed and later[n] == info[n]])}
    for a, c in pairs.items():
        if a in after and c in after and after[a] == after[c] and after[c] != before[c]:
            ties[a] = c
    return ties


def iter_untied(reader: CheckpointReader, names: Sequence[str],
                ties: dict[str, str]) -> Iterator[tuple[str, torch.Tensor]]:
    """``reader.iter_tensors(names)``, checking on the way that each tie of ``ties`` whose
    canonical tensor is among ``names`` holds here too: the file records it, or the duplicate
    (read right after its canonical tensor, and not yielded) is bit-identical. A tie that does
    not hold raises CheckpointError naming both tensors and the file."""
    recorded = reader.aliases()
    present = reader.tensor_info()
    wanted = set(names)
    checks: dict[str, list[str]] = {}
    for a, c in ties.items():
        if c in wanted and a in present and a not in wanted and recorded.get(a) != c:
            checks.setdefault(c, []).append(a)
    order: list[str] = []
    for n in names:
        order += [n, *checks.get(n, ())]
    return _checked(reader, order, {a: c for c, dups in checks.items() for a in dups})


def _checked(reader: CheckpointReader, order: list[str], dup_of: dict[str, str]) -> Iterator[tuple[str, torch.Tensor]]:
    """The generator behind :func:`iter_untied`."""
    held: dict[str, torch.Tensor] = {}
    checked = set(dup_of.values())
    for name, tensor in reader.iter_tensors(order):
        canonical = dup_of.get(name)
        if canonical is None:
            if name in checked:
                held = {name: tensor}
            yield name, tensor
            continue
        if not _same_bits(held[canonical], tensor):
            raise CheckpointError(
                reader.ref.path,
                f"tensors {name!r} and {canonical!r} were counted once as tied weights (bit-identical in the first "
                f"and the last checkpoint) but differ here; if they are two parameters, exclude one "
                f"(--exclude '{name}') or move this checkpoint out of the folder",
            )



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
