"""Suites of runs (the papers' grid of operations × seeds, and controls), run in parallel and
resumable: a run whose folder already holds ``summary.json`` (with the same config) is reused,
and an unfinished run with run checkpoints (a killed suite) continues inside the run
(``--resume``, identical to an uninterrupted run); whatever else an earlier attempt left in a
run's folder is replaced (``--overwrite``), and so is a run whose resume fails.

A run folder holds "the same config" when its config.json differs from the run's config in
no key, a key missing from it meaning null (the rule ``--resume`` applies, so a run finished
before a config key existed still counts); a finished run that lacks the snapshots its config
keeps (``snapshots.safetensors``, what ``spectral-edge modes`` reads) is trained again.

Each run is a separate process with one torch thread (two such processes keep a 2-core
machine busy without the oversubscription that several threads per process cause).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import SNAPSHOTS_FILE, config_differences, run_contents, state_files
from .config import RunConfig

SEEDS = (42, 137, 2024)
GROKKING_OPS = ("add", "sub", "mul", "x2y2")
CONTROL_OPS = ("x2xyy2", "x3xy")
#: the probes every grokking-suite run records (manifold first: the defect projects on its basis)
SUITE_PROBES = {"manifold": {"every": 100}, "defect": {"every": 100}}


@dataclass(frozen=True)
class SuiteRun:
    """One run of a suite: its folder name, its role and its config."""

    name: str
    role: str  # "grok" (expected to grok) or "control"
    config: RunConfig


def grokking_suite(seeds: Sequence[int] = SEEDS, ops: Sequence[str] = GROKKING_OPS, modulus: int = 97,
                   max_steps: int = 8000, control_steps: int = 12000, controls: bool = True) -> list[SuiteRun]:
    """The papers' 12 grokking runs (ops × seeds, weight decay 1, stop 1000 steps after grokking)
    and 9 controls run to ``control_steps`` without early stop: x²+xy+y², x³+xy (never grok)
    and addition without weight decay."""
    runs = []
    for op in ops:
        for s in seeds:
            runs.append(SuiteRun(f"{op}-s{s}", "grok", RunConfig(op=op, modulus=modulus, seed=s, steps=max_steps,
                                                                 probes=dict(SUITE_PROBES), threads=1)))
    if controls:
        for op in CONTROL_OPS:
            for s in seeds:
                runs.append(SuiteRun(f"{op}-s{s}", "control",
                                     RunConfig(op=op, modulus=modulus, seed=s, steps=control_steps, early_stop=False,
                                               probes=dict(SUITE_PROBES), threads=1)))
        for s in seeds:
            runs.append(SuiteRun(f"add-wd0-s{s}", "control",
                                 RunConfig(op="add", modulus=modulus, seed=s, steps=control_steps, weight_decay=0.0,
                                           early_stop=False, probes=dict(SUITE_PROBES), threads=1)))
    return runs


def sequence_suite(seeds: Sequence[int] = SEEDS, scan_model: dict[str, Any] | None = None,
                   scan_batch: int = 128, scan_steps: int = 8000) -> list[SuiteRun]:
    """Dyck-1 depth (the papers' setup: 50 training words, batch 50, AdamW lr 1e-3, wd 1; grok
    = per-token test accuracy ≥ 0.95) and SCAN simple split (2,048 training commands, AdamW
    lr 1e-4, wd 1; grok = exact-match test accuracy ≥ 0.9). SCAN's 3+3-layer d = 256 model
    (4M parameters) is too slow for a CPU suite, so ``scan_model`` shrinks it by default
    (d = 128, 2+2 layers), and the summary says so."""
    scan_model = {"d_model": 128, "d_ff": 256, "n_enc_layers": 2, "n_dec_layers": 2} if scan_model is None else scan_model
    runs = []
    for s in seeds:
        runs.append(SuiteRun(f"dyck-s{s}", "grok", RunConfig(task="dyck", seed=s, data_seed=s, batch_size=50, steps=6000,
                                                              grok_threshold=0.95, probes=dict(SUITE_PROBES),
                                                              threads=1)))
    for s in seeds:
        runs.append(SuiteRun(f"scan-s{s}", "grok", RunConfig(task="scan", seed=s, data_seed=s, batch_size=scan_batch,
                                                              lr=1e-4, steps=scan_steps, eval_every=250,
                                                              model=dict(scan_model),
                                                              task_options={"n_test": 500},
                                                              probes={"manifold": {"every": 100},
                                                                      "defect": {"every": 100, "batch_size": 256}},
                                                              threads=1)))
    return runs


def _same_config(folder: Path, cfg: RunConfig) -> bool:
    """``folder/config.json`` is ``cfg`` (a missing key means null, as for ``--resume``)."""
    try:
        saved = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    wanted = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists, as in the file
    return isinstance(saved, dict) and not config_differences(saved, wanted)


def _done(folder: Path, cfg: RunConfig) -> bool:
    return ((folder / "summary.json").is_file() and _same_config(folder, cfg)
            and (cfg.effective_snapshots == 0 or (folder / SNAPSHOTS_FILE).is_file()))


def launch_mode(folder: Path, cfg: RunConfig) -> str | None:
    """How to start ``cfg`` in ``folder``: ``"resume"`` (an unfinished run of the same config with
    run checkpoints), ``"overwrite"`` (anything else an earlier attempt left) or None (fresh)."""
    if not run_contents(folder):
        return None
    if _same_config(folder, cfg) and state_files(folder) and not (folder / "summary.json").exists():
        return "resume"
    return "overwrite"


def run_suite(runs: Sequence[SuiteRun], out: str | Path, jobs: int = 2,
              on_event: Callable[[str, SuiteRun, dict[str, Any] | None], None] | None = None) -> dict[str, dict]:
    """Run every missing run in ``out/<name>/`` with ``jobs`` processes; returns name → summary.
    Events: ``start``, ``resume`` (continuing a killed run), ``restart`` (its resume failed: from
    scratch), ``done``, ``failed``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo: list[tuple[SuiteRun, str | None]] = [(r, launch_mode(out / r.name, r.config)) for r in runs
                                               if not _done(out / r.name, r.config)]
    running: list[tuple[subprocess.Popen, SuiteRun, Path, str | None]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while todo or running:
        while todo and len(running) < max(1, jobs):
            r, mode = todo.pop(0)
            folder = out / r.name
            folder.mkdir(parents=True, exist_ok=True)
            cfg_path = folder / "requested.json"
            cfg_path.write_text(json.dumps(r.config.to_dict()))
            flags = [f"--{mode}"] if mode else []
            with open(folder / "run.log", "a" if mode == "resume" else "w") as log:
                p = subprocess.Popen([sys.executable, "-m", "spectral_edge.cli", "run", str(cfg_path), "--out",
                                      str(folder), "--quiet", *flags], stdout=log, stderr=subprocess.STDOUT, env=env)
            running.append((p, r, folder, mode))
            if on_event:
                on_event(mode if mode == "resume" else "start", r, None)
        for item in list(running):
            p, r, folder, mode = item
            if p.poll() is not None:
                running.remove(item)
                if p.returncode != 0 and mode == "resume":
                    todo.insert(0, (r, "overwrite"))  # the checkpoints could not be used: train it again
                    if on_event:
                        on_event("restart", r, None)
                    continue
                summary = json.loads((folder / "summary.json").read_text()) if p.returncode == 0 else None
                if on_event:
                    on_event("done" if summary else "failed", r, summary)
        time.sleep(0.5)
    return {r.name: json.loads((out / r.name / "summary.json").read_text())
            for r in runs if (out / r.name / "summary.json").is_file()}
