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
    """One run of a suite: its folder name, its role, its config, and (alarm suite) the set it
    belongs to and what kind of run it is."""

    name: str
    role: str  # "grok" (expected to grok) or "control"
    config: RunConfig
    split: str = "dev"  # alarm suite: "dev" (settings are chosen on it) or "final" (scored once, never tuned on)
    kind: str = ""  # alarm suite: what the run is, e.g. "add", "never-grokking op", "no weight decay"


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


#: the alarm suite's validation share: the held-out half of the pairs split 25% validation / 25%
#: test, so that an alarm reads a loss disjoint from the pairs whose accuracy defines grokking
ALARM_VAL_FRAC = 0.25
#: steps every control of the alarm suite runs (the horizon of the false-alarm count):
#: ≥ 1.7× the latest grok step of the development runs at lr 1e-3 (3,400 at p = 97)
ALARM_HORIZON = 6000
#: the final check: named here, before any of them was scored (new seeds, moduli other than 97)
ALARM_FINAL = (("add", 89, 7), ("sub", 113, 7), ("mul", 89, 11), ("x2y2", 113, 11))
ALARM_FINAL_CONTROLS = (("x3xy", 89, 7, "", {}, "never-grokking op"),
                        ("x2xyy2", 113, 11, "", {}, "never-grokking op"),
                        ("add", 89, 11, "wd0-", {"weight_decay": 0.0}, "no weight decay"),
                        ("add", 113, 7, "lr1e-4-", {"lr": 1e-4}, "learning rate too small"))
#: the hard controls of the development set: (name part, config overrides, kind)
ALARM_HARD_CONTROLS = (("wd0", {"weight_decay": 0.0}, "no weight decay"),
                       ("lr1e-4", {"lr": 1e-4}, "learning rate too small"),
                       ("lr0.1-noclip", {"lr": 0.1, "grad_clip": None}, "training fails (lr 0.1, no clipping)"))


def alarm_suite(seeds: Sequence[int] = SEEDS, modulus: int = 97, horizon: int = ALARM_HORIZON,
                final: bool = True, probes: dict[str, Any] | None = None) -> list[SuiteRun]:
    """The early-warning grid (issue 16): every run has a three-way split (train 50%, validation
    25%, test 25%; grok step = test accuracy ≥ 0.9) and stops 500 steps after grokking.

    Development set (settings are chosen on it by cross-validation): add, sub, mul, x²+y² ×
    ``seeds`` at ``modulus``, and 24 controls run to ``horizon`` steps: x²+xy+y² and x³+xy
    (never grok), addition at lr 1e-4 (too slow to grok within the horizon), addition at lr 0.1
    without gradient clipping (training fails) and all four operations without weight decay.
    Final check (``final``): :data:`ALARM_FINAL` and :data:`ALARM_FINAL_CONTROLS`, new seeds at
    p = 89 and 113, scored once with the settings the development set chose."""
    probes = dict(SUITE_PROBES) if probes is None else probes
    base = {"steps": 8000, "stop_margin": 500, "task_options": {"val_frac": ALARM_VAL_FRAC}, "snapshots": 0,
            "threads": 1}

    def cfg(op: str, p: int, seed: int, **kw: Any) -> RunConfig:
        return RunConfig(**{**base, "op": op, "modulus": p, "seed": seed, "probes": dict(probes), **kw})

    ctrl = {"steps": horizon, "early_stop": False}
    runs = [SuiteRun(f"{op}-s{s}", "grok", cfg(op, modulus, s), "dev", op) for op in GROKKING_OPS for s in seeds]
    runs += [SuiteRun(f"{op}-s{s}", "control", cfg(op, modulus, s, **ctrl), "dev", "never-grokking op")
             for op in CONTROL_OPS for s in seeds]
    runs += [SuiteRun(f"add-{part}-s{s}", "control", cfg("add", modulus, s, **ctrl, **kw), "dev", kind)
             for part, kw, kind in ALARM_HARD_CONTROLS for s in seeds]
    # the other grokking operations without weight decay: 12 runs without it in all (the papers'
    # "0/24 without weight decay" claim needs them, and the false-alarm count gains 9 controls)
    runs += [SuiteRun(f"{op}-wd0-s{s}", "control", cfg(op, modulus, s, **ctrl, weight_decay=0.0), "dev",
                      "no weight decay") for op in GROKKING_OPS if op != "add" for s in seeds]
    if final:
        runs += [SuiteRun(f"final-{op}-p{p}-s{s}", "grok", cfg(op, p, s), "final", op) for op, p, s in ALARM_FINAL]
        runs += [SuiteRun(f"final-{op}-{part}p{p}-s{s}", "control", cfg(op, p, s, **ctrl, **kw), "final", kind)
                 for op, p, s, part, kw, kind in ALARM_FINAL_CONTROLS]
    return runs


#: probes of the probe-claims runs: the execution manifold, the defect projected on it, gradient-SED
PROBE_CLAIM_PROBES = {"manifold": {"every": 100}, "defect": {"every": 100, "subspace": "manifold"},
                      "gradient_sed": {"every": 100, "compare_updates": True}}


def probe_claims_suite(ops: Sequence[str] = GROKKING_OPS, seeds: Sequence[int] = SEEDS,
                       modulus: int = 97) -> list[SuiteRun]:
    """Runs for the papers' probe claims (gradient-SED loss sensitivity against random and
    update-SED directions, the commutator's share outside the execution subspace, the
    execution manifold's dimension): the grokking operations at lr 1e-3 with
    :data:`PROBE_CLAIM_PROBES` (split ``probes``: no alarm setting is chosen on them)."""
    return [SuiteRun(f"probes-{op}-s{s}", "grok", RunConfig(
        op=op, modulus=modulus, seed=s, steps=8000, stop_margin=500, task_options={"val_frac": ALARM_VAL_FRAC},
        snapshots=0, probes={k: dict(v) for k, v in PROBE_CLAIM_PROBES.items()}, threads=1), "probes", op)
        for op in ops for s in seeds]


#: learning rates of the lead-time sweep (lr 1e-3 is the alarm suite's own runs); the papers'
#: 1e-4 groks near 30–40k steps, beyond a CPU session (see docs/grokking.md)
LEAD_LRS = (7e-4, 5e-4, 3e-4)
DYCK_LRS = (5e-4, 2.5e-4, 1e-4)
#: probes dense early, so that the onset rule's 3-sample baseline exists before Dyck groks
DENSE_EARLY = [[1000, 10], [None, 100]]
#: the slowest point of the modular sweep (the papers' lr 1e-4: grok at 29k–40k steps): one run
SLOW_LEAD = (("add", 1e-4, 42, 45000),)


def lead_time_suite(ops: Sequence[str] = ("add", "sub", "mul"), lrs: Sequence[float] = LEAD_LRS,
                    seeds: Sequence[int] = (42,), dyck_seeds: Sequence[int] = SEEDS,
                    dyck_lrs: Sequence[float] = DYCK_LRS, dyck_sweep_seeds: Sequence[int] = (42, 137)) -> list[SuiteRun]:
    """Runs for the lead-time law (lead ∝ T_grok^α): modular ``ops`` at slower learning rates
    (with the alarm suite's lr-1e-3 runs these make the sweep) and :data:`SLOW_LEAD` (lr 1e-4,
    the papers' slowest), and Dyck-1 with the probes dense early (:data:`DENSE_EARLY`) at lr 1e-3
    and ``dyck_lrs``. The slow run is listed last among the modular ones but is the longest."""
    runs = []
    for op in ops:
        for lr in lrs:
            for s in seeds:
                runs.append(SuiteRun(f"lr{lr:g}-{op}-s{s}", "grok", RunConfig(
                    op=op, modulus=97, seed=s, lr=lr, steps=24000, stop_margin=300,
                    task_options={"val_frac": ALARM_VAL_FRAC}, snapshots=0, probes=dict(SUITE_PROBES), threads=1),
                    "lead", op))
    for op, lr, s, steps in SLOW_LEAD if ops else ():
        runs.append(SuiteRun(f"lr{lr:g}-{op}-s{s}", "grok", RunConfig(
            op=op, modulus=97, seed=s, lr=lr, steps=steps, stop_margin=300,
            task_options={"val_frac": ALARM_VAL_FRAC}, snapshots=0, probes=dict(SUITE_PROBES), threads=1),
            "lead", op))
    dense = {"manifold": {"every": DENSE_EARLY}, "defect": {"every": DENSE_EARLY}}
    for lr, seeds_ in ((1e-3, dyck_seeds), *((lr, dyck_sweep_seeds) for lr in dyck_lrs)):
        for s in seeds_:
            name = f"dyck-dense-s{s}" if lr == 1e-3 else f"dyck-lr{lr:g}-s{s}"
            runs.append(SuiteRun(name, "grok", RunConfig(
                task="dyck", seed=s, data_seed=s, batch_size=50, lr=lr, steps=8000, grok_threshold=0.95,
                stop_margin=300, snapshots=0, every=25, eval_every=25, probes={k: dict(v) for k, v in dense.items()},
                threads=1), "lead", "dyck"))
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
