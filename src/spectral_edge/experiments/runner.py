"""The experiment runner: train a reference model with the monitor attached.

``run_experiment(cfg, out_dir)`` writes::

    out_dir/config.json        the RunConfig
    out_dir/history.jsonl      monitor rows (sed, grad, probe, event) and log rows (lr, train
                               loss at sampled steps; train/test loss and accuracy at evaluations)
    out_dir/eval.csv           the evaluation curve: step, train_loss, train_acc, test_loss, test_acc
    out_dir/summary.json       grok_step, warning_step, lead, final accuracies, wall time, paths
    out_dir/model.safetensors  the final parameters
    out_dir/checkpoints/       (with checkpoint_every > 0) step_XXXXXXX.safetensors

The grok step is :func:`spectral_edge.detectors.signals.grok_step`: the first evaluation with
test accuracy ≥ ``grok_threshold`` (0.9); the papers' stricter grok (test accuracy ≥ 0.98 at
three evaluations in a row, the same function with ``consecutive=3``) is reported too.
``warning_step`` is the first alarm event of the attached detectors (null without one).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..detectors import signals
from ..errors import ConfigError
from ..functional.sketch import SketchSpec
from ..monitor import Monitor
from ..selection import Selection
from ..stream.analyzer import default_sketch
from .config import RunConfig
from .optim import build_optimizer
from .workloads import Workload, build_workload

ProgressFn = Callable[[int, int, dict[str, Any]], None]

#: name → builder(workload, cfg, options) -> Probe. Probe modules register themselves here.
PROBE_BUILDERS: dict[str, Callable[[Workload, RunConfig, dict[str, Any]], Any]] = {}
#: builder(workload, cfg, probes) -> detector or None: the default grokking alarm, if available.
ALARM_BUILDER: list[Callable[[RunConfig, list[Any]], Any]] = []


@dataclass
class RunResult:
    """What a run produced: the summary (also in summary.json) and the output folder."""

    summary: dict[str, Any]
    out_dir: Path
    monitor: Monitor

    @property
    def grok_step(self) -> int | None:
        return self.summary["grok_step"]


def _load_probe_modules() -> None:
    """Import the probe packages so they can register builders (optional parts)."""
    import importlib

    for mod in ("spectral_edge.experiments.probes",):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass


def build_probes(workload: Workload, cfg: RunConfig) -> list[Any]:
    """Probes named in ``cfg.probes``, built against the workload's model and data."""
    if not cfg.probes:
        return []
    _load_probe_modules()
    out = []
    for name, opts in cfg.probes.items():
        if name not in PROBE_BUILDERS:
            raise ConfigError(f"unknown probe {name!r}; available: {', '.join(sorted(PROBE_BUILDERS)) or 'none'}")
        out.append(PROBE_BUILDERS[name](workload, cfg, dict(opts or {})))
    return out


def run_experiment(cfg: RunConfig, out_dir: str | Path, *, progress: ProgressFn | None = None,
                   extra_probes: Sequence[Any] = (), detectors: Sequence[Any] | None = None,
                   loggers: Sequence[Any] = ()) -> RunResult:
    """Train ``cfg`` with the monitor attached and write the run folder (see module docs).

    ``detectors``: None attaches the default grokking alarm when its probes are configured.
    The caller's global RNG state is left as it was.
    """
    from safetensors.torch import save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    t_start = time.perf_counter()
    wl = build_workload(cfg)
    model = wl.model
    opt = build_optimizer(cfg, model)
    probes = build_probes(wl, cfg) + list(extra_probes)
    if detectors is None:
        _load_probe_modules()
        detectors = [d for d in (b(cfg, probes) for b in ALARM_BUILDER) if d is not None] if cfg.alarm else []
    spec: SketchSpec | str = cfg.sketch
    if cfg.sketch != "auto":
        spec = default_sketch(cfg.windows, cfg.sketch, dim=cfg.sketch_dim)
    monitor = Monitor(model, windows=cfg.windows, every=cfg.every, sketch=spec,
                      selection=Selection(preset=cfg.selection, group_by=cfg.group_by), gradients=cfg.gradients,
                      history=out / "history.jsonl", probes=probes, detectors=list(detectors), loggers=loggers)
    handle = monitor.attach(opt)
    gen = torch.Generator().manual_seed(cfg.effective_data_seed)
    base_lrs = [g["lr"] for g in opt.param_groups]
    evals: list[dict[str, Any]] = []
    grok_step: int | None = None
    stop_at = cfg.steps
    ckpt_dir = out / "checkpoints"
    if cfg.checkpoint_every:
        ckpt_dir.mkdir(exist_ok=True)
        save_model(model, str(ckpt_dir / "step_0000000.safetensors"))

    def evaluate(step: int) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        metrics = wl.evaluate(model)
        model.train(was_training)
        row = {"step": step, **metrics}
        evals.append(row)
        monitor.log(step, **metrics)
        return row

    evaluate(0)
    last = evals[-1]
    step = 0
    train_loss = math.nan
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + 1)  # anything stochastic inside the model (dropout) is seeded
        model.train()
        for step in range(1, cfg.steps + 1):
            if cfg.warmup_steps and step <= cfg.warmup_steps:
                for g, lr0 in zip(opt.param_groups, base_lrs):
                    g["lr"] = lr0 * step / cfg.warmup_steps
            batch = wl.sample_batch(gen, cfg.batch_size)
            loss = wl.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()  # the monitor samples in the optimizer's post-step hook
            train_loss = float(loss.detach())
            if not math.isfinite(train_loss):
                monitor.log(step, loss=train_loss)
                raise ConfigError(f"training diverged at step {step} (loss {train_loss}); lower the learning rate")
            if step % cfg.every == 0:
                monitor.log(step, loss=train_loss)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save_model(model, str(ckpt_dir / f"step_{step:07d}.safetensors"))
            if step % cfg.eval_every == 0 or step == cfg.steps:
                last = evaluate(step)
                if grok_step is None:
                    grok_step = signals.grok_step(evals, cfg.grok_threshold, "test_acc")
                if grok_step is not None and step == grok_step:
                    if cfg.early_stop:
                        stop_at = min(cfg.steps, step + cfg.stop_margin)
            if progress is not None:
                progress(step, stop_at, {"loss": train_loss, "test_acc": last["test_acc"], "grok": grok_step})
            if step >= stop_at:
                break
    handle.remove()
    monitor.close()
    save_model(model, str(out / "model.safetensors"))
    fields = sorted({k for e in evals for k in e if k != "step"}, key=lambda k: (not k.startswith("train"), k))
    with open(out / "eval.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", *fields])
        w.writeheader()
        w.writerows(evals)
    alarms = [r["step"] for r in monitor.rows if r.get("kind") == "event" and r.get("event") == "alarm"]
    warning = int(alarms[0]) if alarms else None
    summary = {
        "task": cfg.task,
        "op": cfg.op,
        "modulus": cfg.modulus,
        "seed": cfg.seed,
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "grok_step": grok_step,
        "grok_step_098x3": signals.grok_step(evals, 0.98, "test_acc", consecutive=3),
        "warning_step": warning,
        "lead": (grok_step - warning) if (grok_step is not None and warning is not None) else None,
        "steps_run": step,
        "stopped_early": step < cfg.steps,
        "final_train_acc": evals[-1].get("train_acc"),
        "final_test_acc": evals[-1].get("test_acc"),
        "final_train_loss": evals[-1].get("train_loss"),
        "final_test_loss": evals[-1].get("test_loss"),
        "n_parameters_monitored": monitor.n_parameters,
        "sketch": monitor.config.sketch.to_dict(),
        "wall_seconds": round(time.perf_counter() - t_start, 2),
        "workload": wl.description,
        "history": "history.jsonl",
        "eval": "eval.csv",
        "model": "model.safetensors",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return RunResult(summary, out, monitor)
