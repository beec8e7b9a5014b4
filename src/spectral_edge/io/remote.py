"""Checkpoints where they live: object stores and web servers through fsspec, read tensor by tensor.

``spectral-edge analyze`` takes a local folder or a URL. Every URL goes through one reader
path, :mod:`fsspec`: ``s3://`` (s3fs), ``gs://`` (gcsfs), ``hf://`` (the Hugging Face Hub,
see :mod:`.hub`), ``http(s)://`` and ``file://``. A local folder keeps the memory-mapped
readers of :mod:`.checkpoints` (the fastest way to read a local disk).

- **safetensors** are read by range requests: the first 8 bytes, then the header, then each
  tensor's bytes when the sketch asks for it, so memory holds one tensor, never a file.
  The header is validated by the same code as a local file's (:mod:`._safetensors`), on a
  sparse scratch file of the remote file's size that holds only the header, so a truncated or
  damaged remote file gives the same one-line error, naming its URL.
- **torch pickles** (``.bin``/``.pt``, e.g. older Pythia revisions) cannot be read in ranges:
  the checkpoint's files are fetched into a scratch folder (``SPECTRAL_EDGE_SCRATCH``, else
  the system's temporary folder; refused up front, naming the sizes, when it lacks the room),
  loaded with ``torch.load(..., weights_only=True)`` by the local readers, and deleted when
  the reader closes. Disk use stays at one checkpoint per worker.
- Credentials and endpoints come from the standard places (``AWS_ACCESS_KEY_ID``,
  ``AWS_ENDPOINT_URL``, ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``HF_TOKEN``,
  ``HF_HUB_OFFLINE``…), plus ``--storage-option KEY=VALUE`` (:func:`parse_storage_options`),
  passed to the filesystem as keyword arguments (``client_kwargs.endpoint_url=…`` nests).

A checkpoint in a store is a :class:`RemoteRef`; :func:`open_source` opens it (or a local
:class:`~.checkpoints.CheckpointRef`) as a :class:`~.checkpoints.CheckpointReader`, so the
engine reads both alike. Errors are :class:`~spectral_edge.errors.CheckpointError` with the
URL in the message (``path`` is None: a URL is not a local path).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, CorruptCheckpointError, EmptyFolderError, SpectralEdgeError
from ._safetensors import SafetensorsEntry, read_header
from .checkpoints import CheckpointReader, CheckpointRef, TensorInfo, name_step, open_checkpoint, weights_format

__all__ = ["RemoteRef", "SCRATCH_ENV", "discover_url", "filesystem", "is_url", "needs_fetch", "open_source",
           "parse_storage_options", "source_label"]

#: Environment variable naming the scratch folder for fetched torch pickles.
SCRATCH_ENV = "SPECTRAL_EDGE_SCRATCH"
#: Schemes (and the package that serves them) read through fsspec.
SCHEMES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "hf": "huggingface_hub", "http": "aiohttp",
           "https": "aiohttp", "file": "fsspec"}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HF_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
#: tensors up to this size are read whole when probed for tied weights (one request instead of three)
_PROBE_WHOLE = 1 << 20
#: Largest header accepted (the safetensors library's bound; bigger ones are refused unread).
_MAX_HEADER = 100_000_000
_SCRATCH_MARGIN = 64 << 20


def is_url(text: str | os.PathLike[str]) -> bool:
    """True for ``scheme://…`` (a store), False for a local path."""
    return isinstance(text, str) and bool(_URL.match(text))


@dataclass(frozen=True, eq=False)
class RemoteRef:
    """One checkpoint in a store: its step, its URL (a file, or a Hugging Face layout folder for
    ``format='hf'``), and the filesystem options to reach it. ``label`` is what messages show
    (``hf://org/name@step1000`` for a Hub revision); ``size`` the bytes when listed."""

    step: int
    url: str
    format: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    size: int | None = None

    @property
    def path(self) -> PurePosixPath:
        """The URL's path part (its ``.name`` is the file or folder name)."""
        return PurePosixPath(_URL.sub("", self.url) or "/")

    @property
    def where(self) -> str:
        return self.label or self.url


def source_label(ref: Any) -> str:
    """How messages name a checkpoint: its URL (or Hub revision) or its local path."""
    return ref.where if isinstance(ref, RemoteRef) else str(ref.path)


def _fail(where: str, problem: str, cls: type[CheckpointError] = CheckpointError) -> CheckpointError:
    return cls(None, f"{where}: {problem}")


def parse_storage_options(values: Sequence[str]) -> dict[str, Any]:
    """``--storage-option KEY=VALUE`` values as filesystem keyword arguments. VALUE is read as
    JSON when it parses (``true``, ``3``, ``{"a": 1}``), else kept as text; a dotted KEY nests
    (``client_kwargs.endpoint_url=http://…``)."""
    out: dict[str, Any] = {}
    for raw in values:
        key, sep, text = str(raw).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--storage-option takes KEY=VALUE (e.g. anon=true or "
                              f"client_kwargs.endpoint_url=http://127.0.0.1:9000), got {raw!r}")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        node = out
        *parents, last = key.split(".")
        for p in parents:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--storage-option {raw!r}: {p!r} was already given a value")
            node = nxt
        if isinstance(node.get(last), dict):
            raise ConfigError(f"--storage-option {raw!r}: {key!r} was already given nested options")
        node[last] = value
    return out


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``(fsspec filesystem, path in it)`` for ``url``; ConfigError for an unknown scheme, a
    missing package or options the filesystem refuses."""
    try:
        import fsspec
    except ImportError:
        raise ConfigError(f"{url}: reading from a store needs fsspec, which is not installed: "
                          "pip install 'spectral-edge[remote]'") from None
    scheme = _URL.match(url).group(1).lower() if _URL.match(url) else "file"
    if scheme not in SCHEMES and scheme not in fsspec.available_protocols():
        raise ConfigError(f"{url}: unknown storage scheme {scheme!r}; use a local folder or one of "
                          "s3://, gs://, hf://, https://, file://")
    options = dict(storage_options or {})
    if scheme in ("s3", "s3a"):  # the endpoint is part of fsspec's instance cache key this way
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and "endpoint_url" not in options and "endpoint_url" not in options.get("client_kwargs", {}):
            options["endpoint_url"] = endpoint
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as e:
        pkg = SCHEMES.get(scheme, scheme)
        raise ConfigError(f"{url}: {scheme}:// needs {pkg}, which is not installed ({_short(e)}): "
                          f"pip install 'spectral-edge[remote]'" + ("" if scheme in ("s3", "hf") else f" {pkg}")) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{url}: the {scheme} filesystem refused the --storage-option values "
                          f"({_short(e)})") from None


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def _io_error(where: str, e: BaseException, doing: str) -> CheckpointError:
    """A store's failure as one line naming ``where``: missing, denied, or unreachable."""
    if isinstance(e, SpectralEdgeError):
        return e  # type: ignore[return-value]
    if isinstance(e, FileNotFoundError):
        return _fail(where, "no such file, folder or bucket")
    if isinstance(e, TypeError):
        return _fail(where, f"the filesystem refused an option ({_short(e)}); check --storage-option")
    if isinstance(e, PermissionError):
        return _fail(where, f"access denied while {doing} ({_short(e)}); check the credentials "
                     "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, HF_TOKEN, …) or --storage-option")
    return _fail(where, f"cannot {doing} ({type(e).__name__}: {_short(e)})")


def _call(where: str, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except SpectralEdgeError:
        raise
    except Exception as e:  # noqa: BLE001 - every store has its own exceptions (botocore, aiohttp, hub)
        raise _io_error(where, e, doing) from e


# ----------------------------------------------------------------------------- discovery

def discover_url(url: str, storage_options: Mapping[str, Any] | None = None) -> list[RemoteRef]:
    """The checkpoints in the store folder ``url``, sorted by step: the files and
    ``checkpoint-<step>/`` folders :func:`~.checkpoints.discover` takes locally (the step must be in
    the name; torch.distributed.checkpoint folders are read from local disks only)."""
    opts = dict(storage_options or {})
    fs, root = filesystem(url, opts)
    root = root.rstrip("/") or root
    listing = _call(url, "list the folder", fs.find, root, maxdepth=2, withdirs=True, detail=True)
    if not listing:
        if not _call(url, "look at the folder", fs.exists, root):
            raise _fail(url, "no such folder or bucket")
    top = listing.get(root)
    if top is not None and top.get("type") == "file":
        raise _fail(url, "is a file, not a folder; pass the folder that holds the checkpoints")
    proto = url.split("://", 1)[0] + "://"
    children: dict[str, dict[str, Any]] = {}
    inside: dict[str, set[str]] = {}
    for name, info in listing.items():
        rel = name[len(root):].strip("/") if name.startswith(root) else name
        if not rel:
            continue
        parts = rel.split("/")
        if len(parts) == 1:
            children[parts[0]] = info
        else:
            inside.setdefault(parts[0], set()).add(parts[1])
    found: dict[int, RemoteRef] = {}
    for name in sorted(set(children) | set(inside)):
        if name.startswith("."):
            continue
        info = children.get(name, {"type": "directory"})
        where = f"{proto}{root}/{name}"
        if info.get("type") == "directory" or name in inside:
            files = inside.get(name, set())
            if ".metadata" in files:
                raise _fail(where, "torch.distributed.checkpoint folders are read from a local disk only; copy it "
                            "there first")
            if not any(f in files for f in _HF_FILES):
                if re.fullmatch(r"checkpoint-\d+", name):
                    raise _fail(where, f"no model weights found (looked for {', '.join(_HF_FILES)})")
                continue
            fmt, size = "hf", None
        else:
            fmt, size = weights_format(name), info.get("size")
            if fmt is None:
                continue
        step = _named_step(where, name, folder=fmt == "hf")
        if step in found:
            raise _fail(url, f"two checkpoints for step {step}: {found[step].path.name} and {name}; keep one of them")
        found[step] = RemoteRef(step, where, fmt, opts, size=size)
    if not found:
        raise _fail(url, "no checkpoints found: looked for *.safetensors, *.pt, *.pth, *.bin and *.ckpt files with "
                    "the step in their name, and checkpoint-<step>/ folders with model.safetensors or "
                    "pytorch_model.bin", EmptyFolderError)
    return [found[s] for s in sorted(found)]


def _named_step(where: str, name: str, folder: bool) -> int:
    try:
        step = name_step(name, folder)
    except CheckpointError as e:
        raise _fail(where, e.problem) from None
    if step is None:
        raise _fail(where, "cannot tell the training step: a checkpoint in a store must carry its step in its name "
                    "(step_<N>, step=<N> or checkpoint-<N>)")
    return step


# ----------------------------------------------------------------------------- readers

def open_source(ref: Any, state_key: str | None = None) -> CheckpointReader:
    """A reader for a local :class:`~.checkpoints.CheckpointRef` or a :class:`RemoteRef`."""
    if not isinstance(ref, RemoteRef):
        return open_checkpoint(ref, state_key=state_key)
    fs, path = filesystem(ref.url, ref.storage_options)
    if ref.format == "safetensors":
        return RemoteSafetensorsReader(ref, fs, [(path, ref.url, None)], ref.size)
    if ref.format == "torch":
        return ScratchReader(ref, fs, [(path, PurePosixPath(path).name)], state_key)
    return _open_layout(ref, fs, path.rstrip("/"), state_key)


def needs_fetch(ref: Any) -> bool:
    """True for a checkpoint in a store that can only be read by fetching it whole (torch
    pickles; a Hugging Face layout folder without safetensors): its header is not cheap."""
    if not isinstance(ref, RemoteRef):
        return False
    if ref.format != "hf":
        return ref.format == "torch"
    fs, path = filesystem(ref.url, ref.storage_options)
    names = {PurePosixPath(p).name for p in _call(ref.where, "list the checkpoint folder", fs.ls, path.rstrip("/"),
                                                  detail=False)}
    return not names & {_HF_FILES[0], _HF_FILES[1]}


def _open_layout(ref: RemoteRef, fs: Any, folder: str, state_key: str | None) -> CheckpointReader:
    """A Hugging Face layout folder: model.safetensors, a sharded index, or pytorch_model.bin."""
    names = {PurePosixPath(p).name for p in _call(ref.where, "list the checkpoint folder", fs.ls, folder, detail=False)}
    safe, safe_index, binary, bin_index = _HF_FILES
    if safe in names:
        return RemoteSafetensorsReader(ref, fs, [(f"{folder}/{safe}", f"{ref.where}/{safe}", None)])
    if safe_index in names:
        shards = _read_index(ref, fs, f"{folder}/{safe_index}", names)
        return RemoteSafetensorsReader(ref, fs, [(f"{folder}/{s}", f"{ref.where}/{s}", w) for s, w in shards])
    for index in (bin_index, binary):
        if index in names:
            files = [index] + ([s for s, _ in _read_index(ref, fs, f"{folder}/{index}", names)] if index == bin_index
                               else [])
            return ScratchReader(ref, fs, [(f"{folder}/{f}", f) for f in files], state_key, layout=True)
    raise _fail(ref.where, f"no model weights found (looked for {', '.join(_HF_FILES)})")


def _read_index(ref: RemoteRef, fs: Any, path: str, present: set[str]) -> list[tuple[str, list[str]]]:
    where = f"{ref.where}/{PurePosixPath(path).name}"
    raw = _call(where, "read the index", fs.cat_file, path)
    try:
        weight_map = json.loads(raw.decode("utf-8")).get("weight_map")
    except (UnicodeDecodeError, ValueError, AttributeError) as e:
        raise _fail(where, f"index is not valid JSON ({_short(e)})", CorruptCheckpointError) from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise _fail(where, "index has no weight_map (a JSON object of tensor name -> shard file)", CorruptCheckpointError)
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or PurePosixPath(shard).name != shard or shard in ("", ".", ".."):
            raise _fail(where, f"damaged index: weight_map names a bad shard file {shard!r}", CorruptCheckpointError)
        shards.setdefault(shard, []).append(name)
    missing = [s for s in sorted(shards) if s not in present]
    if missing:
        raise _fail(f"{ref.where}/{missing[0]}", f"shard listed in {PurePosixPath(path).name} is missing",
                    CorruptCheckpointError)
    return [(s, shards[s]) for s in sorted(shards)]


class RemoteSafetensorsReader(CheckpointReader):
    """Safetensors in a store, read by range requests: header at open, one tensor per request."""

    def __init__(self, ref: RemoteRef, fs: Any, shards: list[tuple[str, str, list[str] | None]],
                 size: int | None = None) -> None:
        super().__init__(ref)  # type: ignore[arg-type]
        self._fs = fs
        self._where: dict[str, tuple[str, str]] = {}
        self._entries: dict[str, SafetensorsEntry] = {}
        self.bytes_read = 0
        for path, url, wanted in shards:
            entries = self._header(path, url, size if len(shards) == 1 else None)
            present = {e.name for e in entries}
            if wanted is not None:
                absent = [n for n in wanted if n not in present]
                if absent:
                    raise _fail(url, f"tensor {absent[0]!r} listed in the index is not in this shard", CorruptCheckpointError)
                entries = [e for e in entries if e.name in set(wanted)]
            for e in entries:
                if e.name in self._info:
                    raise _fail(url, f"tensor {e.name!r} also appears in {self._where[e.name][1]}", CorruptCheckpointError)
                self._info[e.name] = TensorInfo(e.shape, e.dtype)
                self._where[e.name] = (path, url)
                self._entries[e.name] = e

    def _header(self, path: str, url: str, size: int | None) -> list[SafetensorsEntry]:
        """Fetch the header by range and validate it with the local parser, on a sparse file of
        the remote file's size holding only the header (errors then name ``url``)."""
        if size is None:
            size = int(_call(url, "read the file size", self._fs.size, path))
        head = _call(url, "read the file", self._fs.cat_file, path, start=0, end=min(8, size)) if size else b""
        raw = b""
        if len(head) == 8:
            (n,) = struct.unpack("<Q", head)
            if n <= min(_MAX_HEADER, size - 8):
                raw = _call(url, "read the header", self._fs.cat_file, path, start=8, end=8 + n)
        self.bytes_read += len(head) + len(raw)
        fd, tmp = tempfile.mkstemp(prefix="spectral-edge-header-", suffix=".safetensors")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(head + raw)
                f.truncate(size)  # sparse: no disk used past the header
            return read_header(Path(tmp))
        except CheckpointError as e:
            raise type(e)(None, f"{url}: {e.problem}") from None
        finally:
            os.unlink(tmp)

    def probe(self, name: str) -> bytes | None:
        e = self._entries[name]
        n = e.end - e.begin
        if n <= _PROBE_WHOLE:
            return self._bytes(name, 0, n)
        k = 64
        return b"".join(self._bytes(name, at, k) for at in (0, (n - k) // 2, n - k))

    def _bytes(self, name: str, start: int, length: int) -> bytes:
        e, (path, url) = self._entries[name], self._where[name]
        at = e.base + e.begin + start
        data = _call(url, f"read tensor {name!r}", self._fs.cat_file, path, start=at, end=at + length) if length else b""
        if len(data) != length:
            raise _fail(url, f"truncated: fewer than {at + length} bytes (while reading tensor {name!r})",
                        CorruptCheckpointError)
        self.bytes_read += length
        return data

    def _iter(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        for name in names:
            e = self._entries[name]
            data = self._bytes(name, 0, e.end - e.begin)
            if not data:
                yield name, torch.empty(e.shape, dtype=e.dtype)
                continue
            with warnings.catch_warnings():  # the bytes are immutable; the sketch only reads them
                warnings.simplefilter("ignore", UserWarning)
                yield name, torch.frombuffer(data, dtype=e.dtype).reshape(e.shape)
            del data


class ScratchReader(CheckpointReader):
    """Torch pickles in a store: fetched into a scratch folder, read by the local readers
    (``weights_only=True``), deleted on :meth:`close`."""

    def __init__(self, ref: RemoteRef, fs: Any, files: list[tuple[str, str]], state_key: str | None,
                 layout: bool = False) -> None:
        super().__init__(ref)  # type: ignore[arg-type]
        root = Path(os.environ.get(SCRATCH_ENV) or tempfile.gettempdir())
        sizes = [int(_call(ref.where, "read the file size", fs.size, p)) for p, _ in files]
        need = sum(sizes)
        try:
            free = shutil.disk_usage(root).free
        except OSError as e:
            raise ConfigError(f"{SCRATCH_ENV}={root}: cannot use the scratch folder ({e.strerror or e})") from None
        if need + _SCRATCH_MARGIN > free:
            raise _fail(ref.where, f"needs {need / 1e9:.2f} GB of scratch space to be read (torch pickles cannot be "
                        f"read in ranges) but {root} has {free / 1e9:.2f} GB free; set {SCRATCH_ENV} to a larger disk")
        self._dir = Path(tempfile.mkdtemp(prefix="spectral-edge-fetch-", dir=root))
        self.bytes_read = 0
        self._inner: CheckpointReader | None = None
        try:
            for (path, name), size in zip(files, sizes):
                _call(f"{ref.where}/{name}" if layout else ref.where, "fetch the file", fs.get_file, path,
                      str(self._dir / name))
                self.bytes_read += size
            local = CheckpointRef(ref.step, self._dir if layout else self._dir / files[0][1], "hf" if layout else "torch")
            self._inner = self._mapped(lambda: open_checkpoint(local, state_key=state_key))
            self._info = self._inner.tensor_info()
            self._aliases = self._inner.aliases()
        except BaseException:
            self.close()
            raise

    def _mapped(self, fn: Any) -> Any:
        try:
            return fn()
        except CheckpointError as e:
            raise type(e)(None, f"{self.ref.where}: {e.problem}") from None  # type: ignore[attr-defined]

    def probe(self, name: str) -> bytes | None:
        assert self._inner is not None
        return self._mapped(lambda: self._inner.probe(name))  # type: ignore[union-attr]

    def _iter(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        assert self._inner is not None
        it = self._inner.iter_tensors(names)
        while True:
            try:
                item = self._mapped(lambda: next(it, None))
            except StopIteration:  # pragma: no cover
                return
            if item is None:
                return
            yield item

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True) if getattr(self, "_dir", None) else None
        super().close()
