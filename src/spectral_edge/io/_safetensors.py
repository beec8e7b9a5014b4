"""Safetensors header parsing: names, shapes and dtypes without reading tensor data.

The header is validated against the file size here so that a truncated or damaged file is
reported when the checkpoint is opened, not halfway through an analysis.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, CorruptCheckpointError

#: Largest header we accept (the safetensors library uses the same bound).
_MAX_HEADER = 100_000_000

_DTYPE_NAMES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "C64": "complex64",
    "C128": "complex128",
}


@dataclass(frozen=True)
class SafetensorsEntry:
    """One tensor of a safetensors file as described by its header.

    ``begin``/``end`` are the header's data offsets; ``base`` is where the data section starts
    in the file, so the tensor's bytes are ``[base + begin, base + end)``."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    begin: int
    end: int
    base: int = 0


def _dtype(path: Path, name: str, code: object) -> torch.dtype:
    """The torch dtype for a safetensors dtype code, or a CheckpointError."""
    attr = _DTYPE_NAMES.get(code) if isinstance(code, str) else None
    dtype = getattr(torch, attr, None) if attr is not None else None
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(path, f"tensor {name!r} has dtype {code!r}, which this torch cannot represent")
    return dtype


#: Parsed headers of recently read files, keyed by (path, size, mtime, inode): ``analyze``
#: checks every header before it reads any tensor, then opens each file again.
_HEADER_CACHE: OrderedDict[tuple[str, int, int, int], tuple[tuple[SafetensorsEntry, ...], dict[str, str]]] = (
    OrderedDict()
)
_HEADER_CACHE_SIZE = 256


def _cached(path: Path) -> tuple[tuple[SafetensorsEntry, ...], dict[str, str]]:
    """Entries and ``__metadata__`` of a safetensors file, parsed once per version of the file."""
    try:
        st = path.stat()
    except OSError as e:
        raise CorruptCheckpointError(path, f"cannot read file: {e.strerror or e}") from e
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _HEADER_CACHE.get(key)
    if hit is not None:
        _HEADER_CACHE.move_to_end(key)
        return hit
    entries, meta = _parse_header(path, st.st_size)
    _HEADER_CACHE[key] = (tuple(entries), meta)
    if len(_HEADER_CACHE) > _HEADER_CACHE_SIZE:
        _HEADER_CACHE.popitem(last=False)
    return _HEADER_CACHE[key]


def read_header(path: Path) -> list[SafetensorsEntry]:
    """Parse and validate the header of a safetensors file; entries in storage order."""
    return list(_cached(path)[0])


def read_metadata(path: Path) -> dict[str, str]:
    """The header's ``__metadata__`` (string keys and values; other entries are dropped)."""
    return dict(_cached(path)[1])


def read_bytes(path: Path, start: int, length: int) -> bytes:
    """``length`` raw bytes of ``path`` from ``start`` (a small probe of a tensor's data)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(length)
    except OSError as e:
        raise CorruptCheckpointError(path, f"cannot read file: {e.strerror or e}") from e
    if len(data) != length:
        raise CorruptCheckpointError(path, f"truncated: fewer than {start + length} bytes")
    return data


def _parse_header(path: Path, size: int) -> tuple[list[SafetensorsEntry], dict[str, str]]:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CorruptCheckpointError(path, f"not a safetensors file: only {size} bytes long")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or n > size - 8:
                raise CorruptCheckpointError(
                    path, f"not a safetensors file or truncated: header length {n} exceeds the file size {size}"
                )
            raw = f.read(n)
    except OSError as e:
        raise CorruptCheckpointError(path, f"cannot read file: {e.strerror or e}") from e
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(path, f"not a safetensors file: header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise CorruptCheckpointError(path, "not a safetensors file: header is not a JSON object")
    data_size = size - 8 - n
    entries: list[SafetensorsEntry] = []
    meta: dict[str, str] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            if isinstance(spec, dict):
                meta = {k: v for k, v in spec.items() if isinstance(k, str) and isinstance(v, str)}
            continue
        if not isinstance(spec, dict):
            raise CorruptCheckpointError(path, f"damaged header: entry {name!r} is not an object")
        shape = spec.get("shape")
        offsets = spec.get("data_offsets")
        if (
            not isinstance(shape, list)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise CorruptCheckpointError(path, f"damaged header: bad shape or data_offsets for tensor {name!r}")
        dtype = _dtype(path, name, spec.get("dtype"))
        begin, end = offsets
        numel = 1
        for s in shape:
            numel *= s
        if not 0 <= begin <= end or end - begin != numel * dtype.itemsize:
            raise CorruptCheckpointError(
                path, f"damaged header: data_offsets {offsets} of tensor {name!r} do not match its shape {shape}"
            )
        if end > data_size:
            raise CorruptCheckpointError(
                path,
                f"truncated: tensor {name!r} ends at byte {end} of the data but the file holds only {data_size}",
            )
        entries.append(SafetensorsEntry(name, tuple(shape), dtype, begin, end, 8 + n))
    entries.sort(key=lambda e: (e.begin, e.end))
    return entries, meta
