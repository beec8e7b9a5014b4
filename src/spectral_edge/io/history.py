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
last line (power loss: no newline at the end, not a complete row) is skipped by
:func:`read_history` with a warning, and cut off (with a warning) when the file is opened
for appending, so that the next row starts on a line of its own; a complete last row that
only lacks its newline gets one. ``pandas.read_json(path, lines=True)`` reads the file
directly.

Reading is strict about everything else, naming the file and the line: a line in the middle
that is not JSON, a line that is JSON but not an object (``null``, ``42``, ``[1, 2]``), a
``step`` that is not an integer of at most 2**53 in size, a spectral row's ``window`` (≥ 1)
or ``k_star`` (≥ 0) that is not an integer below 2**31. ``NaN``/``Infinity`` literals read as null (what the
writer makes of them).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError

HISTORY_KINDS = ("meta", "sed", "grad", "log", "probe", "event")
#: the largest |step| read (float64, which pandas uses for a column with gaps, is exact up to here)
MAX_STEP = 2**53
#: integer fields of a spectral row (sed, grad) besides ``step``: name → (smallest, largest) (k* = 0: undefined)
_SIZES = {"window": (1, 2**31 - 1), "k_star": (0, 2**31 - 1)}


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
        if mode == "a":
            _end_last_line(self.path, self._fd)
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
            os.chmod(tmp, os.stat(self.path).st_mode & 0o7777)  # mkstemp makes 0600: keep the file's mode
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


def _end_last_line(path: Path, fd: int) -> None:
    """Before appending: a last line without its newline is ended (a complete row) or cut
    back to the previous newline (a torn row, with a warning), so that no row is glued onto it."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    with open(path, "rb") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        start, pos = 0, size
        while pos > 0:  # the last newline, read backwards in chunks
            n = min(1 << 16, pos)
            pos -= n
            f.seek(pos)
            k = f.read(n).rfind(b"\n")
            if k >= 0:
                start = pos + k + 1
                break
        f.seek(start)
        tail = f.read()
    if _complete_row(tail):
        os.write(fd, b"\n")
        return
    os.ftruncate(fd, start)
    warnings.warn(f"spectral-edge: {path}: the last line was torn (no newline, not a complete row: {len(tail)} bytes, "
                  "e.g. after a power loss); cut off before appending", RuntimeWarning, stacklevel=3)


def _complete_row(raw: bytes | str) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


def _integer(v: Any, largest: int, smallest: int) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, float) and not v.is_integer():
        return False
    return smallest <= v <= largest


def _check_row(path: Path, n: int, row: dict[str, Any]) -> None:
    """ConfigError naming the file and line when ``step`` (any row), or a spectral row's
    ``window`` or ``k_star``, is unusable."""
    step = row.get("step")
    if step is not None and not _integer(step, MAX_STEP, -MAX_STEP):
        raise ConfigError(f"{path}: line {n}: step {step!r} is not a training step (an integer of at most 2**53)")
    if row.get("kind") not in ("sed", "grad"):
        return
    for key, (smallest, largest) in _SIZES.items():
        v = row.get(key)
        if v is not None and not _integer(v, largest, smallest):
            raise ConfigError(f"{path}: line {n}: {key} {v!r} is not an integer from {smallest} to 2**31 - 1")


def _lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The rows of a history file with their raw lines, checked (see module docs); a torn last
    line is skipped with a warning."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    lines = text.split("\n")
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        unterminated = i == len(lines) - 1  # the text after the last newline
        try:
            row = json.loads(raw, parse_constant=lambda c: None)
        except json.JSONDecodeError:
            row = None
            if not unterminated:
                raise ConfigError(f"{path}: line {i + 1} is not valid JSON (a corrupted line; only the last "
                                  "line may be torn)") from None
        if not isinstance(row, dict):
            if unterminated:
                warnings.warn(f"spectral-edge: {path}: the last line is torn (no newline, not a complete row: "
                              f"{len(raw)} characters, e.g. after a power loss); skipped", RuntimeWarning,
                              stacklevel=3)
                continue
            got = "null" if row is None else type(row).__name__
            raise ConfigError(f"{path}: line {i + 1} is not a JSON object (got {got}: {raw.strip()[:40]}); "
                              "every history line is one row {\"kind\": …, \"step\": …}")
        _check_row(path, i + 1, row)
        out.append((raw, row))
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
