"""Tables of per-window rows: written as CSV, Parquet or JSON lines, chosen by extension.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so an
interrupted or failed run never leaves a half-written file or clobbers an earlier result.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
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
