"""Run history: an append-only JSON-lines file that survives a crash.

Every row is one JSON object with at least ``kind`` and ``step``:

- ``meta``: written once at the top (library version, configuration);
- ``sed``: a window of the update stream (``group``, ``window``, ``k_star``, ``sigma_*``…);
- ``grad``: a window of the gradient stream (same columns);
- ``log``: user metrics (learning rate, training loss, validation metrics…);
- ``probe``: a probe's measurement (commutator defect, …);
- ``event``: something to notice (non-finite parameters, an alarm).

Crash safety: each batch of rows is encoded first and handed to the kernel in a single
``os.write`` on an ``O_APPEND`` descriptor (then ``fsync`` by default), so a process killed
with SIGKILL leaves only complete lines; at most the rows being written are lost. A torn
last line (power loss) is skipped by :func:`read_history`. ``pandas.read_json(path,
lines=True)`` reads the file directly.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError

HISTORY_KINDS = ("meta", "sed", "grad", "log", "probe", "event")


def json_safe(v: Any) -> Any:
    """``v`` as plain JSON values: numpy scalars unwrapped, NaN/Inf → None, tuples → lists,
    mapping keys → str, paths → str (recursively)."""
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    return v


def encode_rows(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """Rows as JSON lines (NaN/Inf → null), ready for a single write."""
    out = []
    for r in rows:
        if "kind" not in r:
            raise ConfigError(f"history rows need a 'kind' field, got keys {sorted(r)[:6]}")
        out.append(json.dumps({k: json_safe(v) for k, v in r.items()}, allow_nan=False, default=str))
    return ("\n".join(out) + "\n").encode("utf-8") if out else b""


class HistoryWriter:
    """Appends rows to a JSON-lines history (see module docs).

    ``mode="w"`` starts a new file (replacing an old one), ``"a"`` appends to an existing one.
    ``meta`` is written as the first row of a new file.
    """

    def __init__(self, path: str | Path, meta: Mapping[str, Any] | None = None, mode: str = "w",
                 fsync: bool = True):
        self.path = Path(path)
        if mode not in ("w", "a"):
            raise ConfigError(f"history mode must be 'w' or 'a', got {mode!r}")
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if mode == "w" else 0)
        self._fd: int | None = os.open(self.path, flags, 0o644)
        self.fsync = fsync
        if mode == "w" or os.fstat(self._fd).st_size == 0:
            self.write([{"kind": "meta", "step": None, **dict(meta or {})}])

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append rows in one write (and fsync)."""
        data = encode_rows(rows)
        if not data:
            return
        if self._fd is None:
            raise ConfigError(f"{self.path}: the history is closed")
        view = memoryview(data)
        while view:  # os.write on a regular file writes everything unless the disk is full
            n = os.write(self._fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(self._fd)

    def truncate_after(self, step: int) -> int:
        """Drop rows whose step is > ``step`` (for resuming from a checkpoint); returns how
        many were dropped. The file is rewritten atomically."""
        if self._fd is None:
            raise ConfigError(f"{self.path}: the history is closed")
        keep, dropped = [], 0
        for line in _lines(self.path):
            s = line[1].get("step")
            if line[1].get("kind") != "meta" and s is not None and s > step:
                dropped += 1
            else:
                keep.append(line[0])
        if dropped:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(k + "\n" for k in keep))
                f.flush()
                os.fsync(f.fileno())
            os.close(self._fd)
            os.replace(tmp, self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        return dropped

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "HistoryWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def _lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Complete, parseable lines of a history file (a torn last line is skipped)."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    lines = text.split("\n")
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            out.append((raw, json.loads(raw)))
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # a torn final line: skip
                continue
            raise ConfigError(f"{path}: line {i + 1} is not valid JSON") from None
    return out


def read_history(path: str | Path, kind: str | None = None):
    """The history as a pandas DataFrame (all kinds, or one ``kind``), in file order."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "history.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path}: no such history file")
    rows = [r for _, r in _lines(path)]
    if kind is not None:
        if kind not in HISTORY_KINDS:
            raise ConfigError(f"unknown history kind {kind!r}; one of {', '.join(HISTORY_KINDS)}")
        rows = [r for r in rows if r.get("kind") == kind]
    df = pd.DataFrame(rows)
    return df


def history_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` row of a history (empty dict if none)."""
    for _, r in _lines(Path(path)):
        if r.get("kind") == "meta":
            return r
    return {}
