"""Run folders: what counts as a run, atomic writes, and the run checkpoints behind ``--resume``.

A run checkpoint ``out/run_state/step_XXXXXXX.pt`` is one ``torch.save`` dict of plain values
(tensors, numbers, strings, lists, dicts), loaded with ``weights_only=True`` only::

    format, version, step        "spectral-edge run state", 1, the optimizer step it was taken after
    config                       the RunConfig as sorted JSON (a resume must ask for the same run)
    model, optimizer, monitor    their state_dict()s (the monitor's holds its windows, probes, detectors)
    evals, grok_step, stop_at,   the runner's bookkeeping: evaluations so far, grok and early stop,
    train_loss, wall_seconds     the last training loss and the time spent so far
    data_rng, torch_rng          the batch generator's state and torch's CPU RNG inside the run
    history_bytes, history_sha256  the length and digest of history.jsonl when it was taken
    snapshots                    (optional) the snapshot ring, :meth:`SnapshotRing.state_dict`

A resume cuts history.jsonl back to ``history_bytes`` (after checking its digest), so the file
is byte-identical to an uninterrupted run's. Checkpoints are written atomically (temporary
file, fsync, ``os.replace``) and only the newest :data:`KEEP` are kept; a torn or unreadable
newest one is skipped for the one before it. Every file gets the usual mode (0644 under the
common umask 022), never the 0600 of mkstemp or safetensors.

Snapshots for functional modes
------------------------------
``out/snapshots.safetensors`` (:data:`SNAPSHOTS_FILE`) holds, for each tensor the run's
monitor selects (``monitor.updates.plan.names``), a float32 tensor of shape
``(S, *shape)`` under the tensor's normalised name: the last S snapshots of that tensor,
taken at the monitor's sampling steps (every ``every`` steps, step 0 included), oldest
first. Metadata (str → str): ``format`` = :data:`SNAPSHOTS_FORMAT`, ``steps`` = the JSON
list of their steps, ``every``. A :class:`SnapshotRing` keeps them during training in a
fixed-size buffer (S × the selected parameters × 4 bytes: 11 MB for the modular model at
p = 97); it goes into every run checkpoint, so a resumed run writes the same file byte for
byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, CorruptCheckpointError, StateError

RUN_STATE = "run_state"
#: run checkpoints kept (the newest ones)
KEEP = 2
FORMAT = "spectral-edge run state"
VERSION = 1
#: files whose presence means a folder holds a run
RUN_FILES = ("config.json", "history.jsonl", "summary.json", "eval.csv", "model.safetensors",
             "snapshots.safetensors")
#: the run file with the last snapshots of the monitored tensors (see module docs)
SNAPSHOTS_FILE = "snapshots.safetensors"
#: ``format`` in its metadata
SNAPSHOTS_FORMAT = "spectral-edge-snapshots/1"
_STATE_RE = re.compile(r"^step_(\d{7,})\.pt$")
_SNAPSHOT_RE = re.compile(r"^step_(\d{7,})\.safetensors$")
_REQUIRED = ("step", "config", "model", "optimizer", "monitor", "evals", "grok_step", "stop_at", "data_rng",
             "torch_rng", "history_bytes", "history_sha256")


# ---------------------------------------------------------------------- writing
def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives: 0o666 less the umask (0644 under umask 022)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it (and put it back at once)
    os.umask(mask)
    return 0o666 & ~mask


def replace_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` a temporary file beside ``path``, fsync it, then ``os.replace`` it onto
    ``path``: readers see the old file or the new one, never half of one. The file gets the
    mode a plain write would (0644 under umask 022; writers such as safetensors make 0600),
    and the temporary file is removed on failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_file(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return replace_atomically(path, lambda tmp: tmp.write_bytes(text.encode("utf-8")))


# ---------------------------------------------------------------------- what a folder holds
def state_files(out: Path) -> list[Path]:
    """The run checkpoints in ``out/run_state/``, oldest first."""
    folder = Path(out) / RUN_STATE
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STATE_RE.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def run_contents(out: Path) -> list[str]:
    """The names of the run files (and ``run_state/``) that ``out`` holds; empty: no run here."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [f for f in RUN_FILES if (out / f).exists()]
    if state_files(out):
        found.append(f"{RUN_STATE}/")
    return found


def check_output_folder(out: Path) -> None:
    """Refuse an ``out`` that cannot become a run folder: a file, a path through a file, or a
    folder this process cannot write. Writes nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file, not a folder; give --out a folder for the run")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{out}: cannot create the run folder, {probe} is a file")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: cannot write the run folder ({probe} is not writable)")


def clear_run(out: Path) -> None:
    """Remove a previous run's files from ``out`` (``--overwrite``): the run files, its run
    checkpoints and its parameter snapshots ``checkpoints/step_*.safetensors``. Other files stay."""
    out = Path(out)
    for f in RUN_FILES:
        (out / f).unlink(missing_ok=True)
    for p in state_files(out):
        p.unlink()
    for folder, pattern in ((out / RUN_STATE, _STATE_RE), (out / "checkpoints", _SNAPSHOT_RE)):
        if folder.is_dir():
            for p in folder.iterdir():
                if pattern.match(p.name) or p.name.endswith(".tmp"):
                    p.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()


def finish_run_state(out: Path) -> None:
    """Drop the run checkpoints of a finished run (only a resume needs them)."""
    folder = Path(out) / RUN_STATE
    for p in state_files(out):
        p.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------- history prefix
def file_digest(path: Path, nbytes: int | None = None) -> tuple[int, str]:
    """(length, sha256) of the first ``nbytes`` bytes of ``path`` (all of it by default)."""
    h = hashlib.sha256()
    left = None if nbytes is None else int(nbytes)
    done = 0
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            done += len(chunk)
            if left is not None:
                left -= len(chunk)
    return done, h.hexdigest()


def cut_file(path: Path, nbytes: int) -> None:
    """Keep the first ``nbytes`` bytes of ``path`` (atomically; nothing happens when it is that long)."""
    if path.stat().st_size == nbytes:
        return

    def write(tmp: Path) -> None:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            left = nbytes
            while left > 0:
                chunk = src.read(min(1 << 20, left))
                if not chunk:
                    break
                dst.write(chunk)
                left -= len(chunk)

    replace_atomically(path, write)


def history_rows(path: Path) -> list[dict[str, Any]]:
    """The rows (meta excluded) of a complete history file, in order."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if r.get("kind") != "meta":
                    rows.append(r)
    return rows


# ---------------------------------------------------------------------- run checkpoints
def config_text(cfg_dict: Mapping[str, Any]) -> str:
    """A config as canonical JSON (sorted keys; tuples and lists alike)."""
    return json.dumps(cfg_dict, sort_keys=True)


def save_run_state(out: Path, step: int, state: dict[str, Any], keep: int = KEEP) -> Path:
    """Write ``out/run_state/step_XXXXXXX.pt`` atomically, then drop all but the newest ``keep``."""
    import torch

    folder = Path(out) / RUN_STATE
    folder.mkdir(exist_ok=True)
    path = folder / f"step_{int(step):07d}.pt"
    state = {"format": FORMAT, "version": VERSION, "step": int(step), **state}
    replace_atomically(path, lambda tmp: torch.save(state, tmp))
    for old in state_files(out)[: -max(1, int(keep))]:
        old.unlink(missing_ok=True)
    return path


def _read_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CorruptCheckpointError(path, f"not a plain run checkpoint ({' '.join(str(e).split())[:160]})") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - a torn or damaged file: any library failure
        raise CorruptCheckpointError(path, f"torn or damaged run checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptCheckpointError(path, "not a spectral-edge run checkpoint")
    if state.get("version") != VERSION:
        raise CorruptCheckpointError(path, f"run checkpoint version {state.get('version')!r}, expected {VERSION}")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CorruptCheckpointError(path, f"run checkpoint lacks {', '.join(missing)}")
    kinds = {"step": int, "config": str, "history_bytes": int, "history_sha256": str, "evals": list, "stop_at": int}
    bad = [k for k, t in kinds.items() if not isinstance(state[k], t) or isinstance(state[k], bool)]
    if bad or not state["evals"]:
        raise CorruptCheckpointError(path, f"run checkpoint has malformed {', '.join(bad) or 'evals'}")
    try:
        json.loads(state["config"])
    except ValueError:
        raise CorruptCheckpointError(path, "run checkpoint has a malformed config") from None
    return state


def config_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``key: saved → wanted`` for every config key whose value differs."""
    keys = sorted(set(saved) | set(wanted))
    return [f"{k}: {json.dumps(saved.get(k))} → {json.dumps(wanted.get(k))}" for k in keys
            if saved.get(k) != wanted.get(k)]


def load_run_state(out: Path, cfg_dict: Mapping[str, Any], warn: Callable[[str], None]) -> dict[str, Any]:
    """The newest usable run checkpoint of ``out`` for the config ``cfg_dict``.

    A checkpoint that cannot be read, or whose history prefix no longer matches history.jsonl,
    is skipped for the one before it (``warn`` says so when an older one is used). Raises ConfigError when there is none or
    when the saved run used another config (naming the keys that differ)."""
    out = Path(out)
    files = state_files(out)
    history = out / "history.jsonl"
    if not files:
        raise ConfigError(f"{out}: no run checkpoint to resume from (no {RUN_STATE}/step_*.pt); "
                          "use --overwrite to start the run again")
    wanted = json.loads(config_text(cfg_dict))
    problems: list[str] = []
    for path in reversed(files):
        try:
            state = _read_state(path)
        except CorruptCheckpointError as e:
            problems.append(str(e))
            continue
        saved = json.loads(state["config"])
        diff = config_differences(saved, wanted)
        if diff:
            raise ConfigError(f"{path}: --resume needs the saved run's config; it differs in {', '.join(diff)}")
        size = int(state["history_bytes"])
        if not history.is_file() or history.stat().st_size < size or \
                file_digest(history, size) != (size, state["history_sha256"]):
            problems.append(f"{path}: {history.name} no longer holds the rows this checkpoint saw")
            continue
        if problems:
            warn(f"resuming from {path} (step {state['step']}); skipped: {'; '.join(problems)}")
        state["path"] = str(path)
        return state
    raise ConfigError(f"{out}: no usable run checkpoint to resume from ({'; '.join(problems)}); "
                      "use --overwrite to start the run again")


# ---------------------------------------------------------------------- snapshots for functional modes
class SnapshotRing:
    """The last ``size`` snapshots of a few tensors, in a fixed-size float32 ring (see module docs).

    ``shapes``: name → shape of each tensor kept. :meth:`take` copies the given tensors into
    the next slot (no RNG, no change to them); :meth:`ordered` gives them oldest first;
    :meth:`write` saves them as :data:`SNAPSHOTS_FILE`. Memory: ``size`` × the tensors'
    elements × 4 bytes, allocated once."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], size: int, every: int):
        import torch

        if int(size) < 0:
            raise ConfigError(f"snapshots must be ≥ 0, got {size}")
        self.size, self.every = int(size), int(every)
        self.shapes = {n: tuple(int(d) for d in s) for n, s in shapes.items()}
        self.buffers = {n: torch.zeros((self.size, *s), dtype=torch.float32) for n, s in self.shapes.items()}
        self.steps: list[int] = []  # the steps held, oldest first
        self._next = 0  # the slot the next snapshot goes to

    @property
    def nbytes(self) -> int:
        """Bytes of the ring's buffers."""
        return sum(b.numel() * b.element_size() for b in self.buffers.values())

    def take(self, step: int, tensors: Mapping[str, Any]) -> None:
        """Copy ``tensors`` (name → tensor, every name of the ring) in as the snapshot at ``step``."""
        import torch

        if not self.size:
            return
        with torch.no_grad():
            for n, buf in self.buffers.items():
                buf[self._next].copy_(tensors[n].detach())
        self._next = (self._next + 1) % self.size
        self.steps.append(int(step))
        del self.steps[: -self.size]

    def ordered(self) -> dict[str, Any]:
        """name → the snapshots held, ``(len(steps), *shape)``, oldest first (a copy)."""
        import torch

        n = len(self.steps)
        if n < self.size:
            return {k: b[:n].clone() for k, b in self.buffers.items()}
        return {k: torch.cat([b[self._next:], b[: self._next]]) for k, b in self.buffers.items()}

    def state_dict(self) -> dict[str, Any]:
        """The snapshots held, oldest first, and their steps (plain values for a run checkpoint)."""
        return {"size": self.size, "every": self.every, "steps": list(self.steps), "tensors": self.ordered()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; a state of another ring raises StateError naming what differs."""
        import torch

        if int(state["size"]) != self.size or int(state["every"]) != self.every:
            raise StateError(f"snapshot ring of {state['size']} every {state['every']} steps, this run keeps "
                             f"{self.size} every {self.every}")
        steps, tensors = state["steps"], state["tensors"]
        if not isinstance(steps, list) or len(steps) > self.size or \
                any(not isinstance(s, int) or isinstance(s, bool) for s in steps):
            raise StateError(f"malformed snapshot steps {str(steps)[:80]}")
        if not isinstance(tensors, Mapping) or set(tensors) != set(self.shapes):
            raise StateError("the snapshot tensors are not the monitored tensors of this run")
        for n, t in tensors.items():
            want = (len(steps), *self.shapes[n])
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != want or t.dtype != torch.float32:
                raise StateError(f"snapshot tensor {n!r} is not float32 of shape {list(want)}")
        for n, t in tensors.items():
            self.buffers[n][: len(steps)] = t
        self.steps = [int(s) for s in steps]
        self._next = len(steps) % self.size if self.size else 0

    def save(self, path: Path) -> None:
        """Write the snapshots held to the safetensors file ``path`` (not atomically: see :meth:`write`).

        Written here rather than by ``safetensors.torch.save_file``, whose metadata order follows a
        hash map's and changes from process to process: the same ring must give the same bytes (a
        resumed run's file is byte-identical). The layout is the safetensors format's (8-byte
        little-endian header length, JSON header padded with spaces to 8 bytes, then the data);
        tensors in name order."""
        import numpy as np

        arrays = {k: np.ascontiguousarray(v.numpy(), dtype="<f4") for k, v in sorted(self.ordered().items())}
        header: dict[str, Any] = {"__metadata__": {"format": SNAPSHOTS_FORMAT, "steps": json.dumps(self.steps),
                                                   "every": str(self.every)}}
        offset = 0
        for k, a in arrays.items():
            header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
            offset += a.nbytes
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for a in arrays.values():
                f.write(a.tobytes())

    def write(self, path: Path) -> Path | None:
        """:meth:`save` to ``path`` atomically (nothing when the ring keeps none)."""
        return replace_atomically(Path(path), self.save) if self.size else None
