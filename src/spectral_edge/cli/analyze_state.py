"""What ``spectral-edge analyze`` keeps between and during runs: the table a ``--resume`` continues,
and the progress line (checkpoints done, bytes read, time left)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["Meter", "PriorRun", "format_size", "prior_run"]


@dataclass
class PriorRun:
    """The rows and checkpoints of an earlier run of the same analysis (``--resume``)."""

    path: Path
    is_out: bool  # True: the --out table itself; False: its .partial table
    rows: list[dict[str, Any]]
    checkpoints: list[list[Any]]
    skipped: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> set[int]:
        return {int(c[0]) for c in self.checkpoints}


def prior_run(out: Path, config: Any, resume: bool) -> PriorRun | None:
    """The run ``--resume`` continues: ``out`` if it exists, else its ``.partial`` table, else
    None (a fresh run). Without ``resume``, an existing ``out`` is refused here (unless the
    caller overwrites). ConfigError when the table is not Parquet, unreadable, or was made with
    other settings."""
    out = Path(out)
    if not resume:
        return None
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise ConfigError(f"--resume needs a .parquet --out (it stores the settings and the checkpoints its rows came "
                          f"from), got {out}")
    partial = out.with_name(f"{out.stem}.partial{out.suffix}")
    path = out if out.exists() else partial if partial.exists() else None
    if path is None:
        return None
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(b"spectral_edge", b"null"))
        rows = table.to_pandas().to_dict("records")
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file: say so, never overwrite it
        raise ConfigError(f"--resume: cannot read {path} as an analyze table ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:160]}); move it away or pass --overwrite") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or \
            not isinstance(meta.get("checkpoints"), list):
        raise ConfigError(f"--resume: {path} holds no analyze settings (not written by spectral-edge analyze?); "
                          "move it away or pass --overwrite")
    differs = _differences(meta["config"], config.to_dict())
    if differs:
        raise ConfigError(f"--resume: {path} was made with other settings ({'; '.join(differs[:3])}); use the same "
                          "flags, or --overwrite to start again")
    return PriorRun(path, path == out, rows, [list(c) for c in meta["checkpoints"]],
                    list(meta.get("skipped") or []), meta)


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} was {json.dumps(a)}, now {json.dumps(b)}")
    return out


def format_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class Meter:
    """Progress of an analysis: feeds the bar ``cb(done, total, text)`` with the step and the bytes
    read so far (the bar shows the time left), and totals for the summary."""

    def __init__(self, cb: Callable[[int, int, Any], None] | None):
        self.cb = cb
        self.bytes = 0
        self.checkpoints = 0
        self.t0 = time.perf_counter()

    def sketched(self, report: Mapping[str, Any]) -> None:
        self.bytes += int(report.get("bytes") or 0)
        self.checkpoints += 1

    def progress(self, done: int, total: int, step: int) -> None:
        if self.cb is not None:
            self.cb(done, total, f"step {step} · {format_size(self.bytes)} read")

    def summary(self, executor: Any) -> dict[str, Any]:
        seconds = time.perf_counter() - self.t0
        return {"bytes_read": self.bytes, "seconds": round(seconds, 3), "sketched": self.checkpoints,
                "workers": getattr(executor, "where", "this process")}
