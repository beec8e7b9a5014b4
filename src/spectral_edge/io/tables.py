"""Tables of per-window rows: written as CSV, Parquet or JSON lines, chosen by extension.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so an
interrupted or failed run never leaves a half-written file or clobbers an earlier result;
the file is created readable by everyone (0644), like the reports.

:func:`check_outputs` is the one rule for output paths that the command line applies before
any work: an output is never a folder, never one of the command's inputs (the same file by
``os.path.samefile`` or by resolved path, or a file inside an input folder), never the same
file as another output, and never an existing file unless the caller allows overwriting.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}


def table_format(path: str | Path) -> str:
    """``csv``, ``parquet`` or ``jsonl`` from the file extension; ConfigError otherwise."""
    ext = Path(path).suffix.lower()
    if ext not in TABLE_FORMATS:
        raise ConfigError(
            f"{path}: unknown output format {ext or '(no extension)'!r}; use .csv, .parquet or .jsonl"
        )
    return TABLE_FORMATS[ext]


def _same(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (hard links and symlinks included)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return folder.is_dir() and path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def check_outputs(outputs: Mapping[str, str | Path | None], inputs: Iterable[tuple[str, str | Path]] = (),
                  *, overwrite: bool = False, need_folder: bool = True) -> None:
    """Refuse unusable output paths before any work (ConfigError naming the flag and the path).

    ``outputs``: flag → path (None: not asked for), e.g. ``{"--out": p, "--lags-out": q}``.
    ``inputs``: (what, path) pairs of everything the command reads (a folder input forbids
    every path inside it). An output must not be a folder, an input, another output, or an
    existing file unless ``overwrite``; with ``need_folder`` its folder must exist.
    """
    ins = [(what, Path(p)) for what, p in inputs]
    seen: list[tuple[str, Path]] = []
    for flag, raw in outputs.items():
        if raw is None:
            continue
        p = Path(raw).expanduser()
        if p.is_dir():
            raise ConfigError(f"{flag} {p}: is a folder; give a file name")
        for what, q in ins:
            if _same(p, q) or _inside(p, q):
                where = "is" if _same(p, q) else "is inside"
                raise ConfigError(f"{flag} {p}: {where} an input of this command ({what} {q}); it is never "
                                  "overwritten, choose another output file")
        for other, q in seen:
            if _same(p, q):
                raise ConfigError(f"{flag} {p}: is also the {other} file; give two different files")
        if p.exists() and not overwrite:
            raise ConfigError(f"{flag} {p}: exists; pass --overwrite to replace it, or choose another file")
        if need_folder and not p.parent.is_dir():
            raise ConfigError(f"{flag} {p}: the output folder {p.parent} does not exist")
        seen.append((flag, p))


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _jsonable(v.item())
    return v


def write_table(rows: Sequence[Mapping[str, Any]], path: str | Path,
                metadata: Mapping[str, Any] | None = None) -> Path:
    """Write rows (dicts with the same keys, or a superset) atomically; returns the path.

    ``metadata`` (JSON-serialisable) is stored in the Parquet schema metadata under
    ``spectral_edge``; CSV and JSONL carry rows only.
    """
    import pandas as pd

    path = Path(path)
    fmt = table_format(path)
    if not path.parent.exists():
        raise ConfigError(f"{path}: the output folder {path.parent} does not exist")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a file name")
    df = pd.DataFrame(list(rows))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        elif fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps({k: _jsonable(v) for k, v in r.items()}) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if metadata:
                meta = dict(table.schema.metadata or {})
                meta[b"spectral_edge"] = json.dumps(metadata, default=str).encode()
                table = table.replace_schema_metadata(meta)
            pq.write_table(table, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a table is meant to be shared (like the reports)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_table(path: str | Path):
    """Read a table written by :func:`write_table` (or a monitor history) as a DataFrame."""
    import pandas as pd

    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_parquet(path)
