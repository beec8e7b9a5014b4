"""Loading ``torch.save`` files with ``weights_only=True`` and nothing else.

Zip-format files are memory-mapped (tensor data is paged in only when a tensor is used);
legacy non-zip files cannot be mapped and are read whole. Failures are mapped to
:class:`UnsafeCheckpointError` (the pickle needs arbitrary globals) or
:class:`CorruptCheckpointError` (anything else), with the original exception as cause.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
from pathlib import Path

import torch

from ..errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError

_ZIP_MAGIC = b"PK\x03\x04"
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
_SAFE_MODULE_PREFIXES = ("torch", "collections", "builtins", "_codecs", "numpy")


def _one_line(text: str, limit: int = 200) -> str:
    """Collapse whitespace and shorten a message to one line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scan_globals(path: Path, max_bytes: int = 1 << 20) -> list[str]:
    """Globals named by the first pickles in a file, found by reading opcodes only (nothing executed)."""
    try:
        with open(path, "rb") as f:
            buf = io.BytesIO(f.read(max_bytes))
    except OSError:
        return []
    found: list[str] = []
    for _ in range(5):
        strings: list[str] = []
        try:
            for op, arg, _pos in pickletools.genops(buf):
                if op.name == "GLOBAL" and isinstance(arg, str):
                    found.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # noqa: BLE001 - garbage bytes: stop scanning, the caller reports corruption
            break
        if buf.tell() >= len(buf.getbuffer()):
            break
    return found


def _refuse(path: Path, what: str, err: BaseException) -> UnsafeCheckpointError:
    """The error for a pickle that would need ``what`` (a global) to load."""
    exc = UnsafeCheckpointError(
        path,
        f"refusing to unpickle {what} (not a plain state dict; only weights_only=True loading is allowed). "
        "Re-save just the weights, e.g. torch.save(model.state_dict(), path), or convert to safetensors",
    )
    exc.__cause__ = err
    return exc


def _classify_unpickling(path: Path, err: pickle.UnpicklingError, is_zip: bool) -> CheckpointError:
    """Map a weights-only unpickling failure to Unsafe (needs a global) or Corrupt (anything else)."""
    inner = err.__context__ if isinstance(err.__context__, pickle.UnpicklingError) else err
    text = str(inner)
    m = _GLOBAL_RE.search(text) or _GLOBAL_RE.search(str(err))
    if m:
        return _refuse(path, m.group(1), err)
    if not is_zip:
        unsafe = [g for g in _scan_globals(path) if not g.startswith(_SAFE_MODULE_PREFIXES)]
        if unsafe:
            return _refuse(path, unsafe[0], err)
    exc = CorruptCheckpointError(path, f"not a readable torch.save file ({_one_line(text)})")
    exc.__cause__ = err
    return exc


def load_torch_file(path: Path) -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)``, memory-mapped when possible."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise CorruptCheckpointError(path, f"cannot read file: {e.strerror or e}") from e
    if not magic:
        raise CorruptCheckpointError(path, "file is empty")
    is_zip = magic == _ZIP_MAGIC
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
            except RuntimeError as e:
                if not (is_zip and "mmap" in str(e)):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as e:
        raise _classify_unpickling(path, e, is_zip) from e
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any library failure on a bad file becomes one clear error
        kind = "truncated or damaged torch zip file" if is_zip else "not a readable torch.save file"
        detail = _one_line(str(e)) or type(e).__name__
        raise CorruptCheckpointError(path, f"{kind} ({type(e).__name__}: {detail})") from e
