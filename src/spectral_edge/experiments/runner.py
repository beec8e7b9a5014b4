"""The experiment runner: train a reference model with the monitor attached.

``run_experiment(cfg, out_dir)`` writes::

    out_dir/config.json        the RunConfig
    out_dir/history.jsonl      monitor rows (sed, grad, probe, event) and log rows (lr, train
                               loss at sampled steps; train/test loss and accuracy at evaluations)
    out_dir/eval.csv           the evaluation curve: step, train_loss, train_acc, test_loss, test_acc
    out_dir/summary.json       grok_step, warning_step, lead, final accuracies, wall time, paths; with an
                               ``[intervention]`` (``cfg.intervention``) also ``intervention``: its config with
                               the defaults filled in, its basis and the steps it acted on
    out_dir/model.safetensors  the final parameters
    out_dir/snapshots.safetensors  the last ``cfg.effective_snapshots`` snapshots of the monitored tensors, one
                               every ``every`` steps, for ``spectral-edge modes`` (format: :mod:`.checkpoint`;
                               none when it is 0, the default outside the modular tasks)
    out_dir/checkpoints/       (with checkpoint_every > 0) step_XXXXXXX.safetensors
    out_dir/run_state/         while the run is going: the newest run checkpoints (every ``save_every``
                               steps), what ``resume=True`` (``--resume``) continues from; removed at the end

Nothing is written before everything is checked (config, folder, workload, model, probes,
the checkpoint to resume), a folder that holds a run is only replaced with ``overwrite`` or
continued with ``resume``, and every file is written atomically (see :mod:`.checkpoint`).
A resumed run's history.jsonl, eval.csv, model, snapshots and summary (but wall_seconds)
are byte-identical to an uninterrupted run's.

The snapshots are taken where the monitor samples (after ``optimizer.step()`` on every
``every``-th step, and at step 0) into a fixed-size ring (:class:`.checkpoint.SnapshotRing`):
a copy, no RNG, so training is the same with and without them.

The grok step is :func:`spectral_edge.detectors.signals.grok_step`: the first evaluation with
test accuracy ≥ ``grok_threshold`` (0.9); the papers' stricter grok (test accuracy ≥ 0.98 at
three evaluations in a row, the same function with ``consecutive=3``) is reported too.
``warning_step`` is the first alarm event of the attached detectors (null without one).

An ``[intervention]`` (:mod:`spectral_edge.interventions`) is built by :func:`build_intervention` before
anything is written (its basis read from ``basis_from`` and checked against the model) and installed
on the optimizer before the monitor, so it acts after gradient clipping and before each step; its
state goes into every run checkpoint, so ``--resume`` continues it bit-identically.

A probe entry of ``cfg.probes`` may say when the probe stops: ``"until": "grok"`` (its last
call is at the grok step) or ``"until": "alarm"`` (its last call is at the step of the first
alarm). Both are functions of the run's own records, so a resumed run stops them at the same
step. The demo uses it for the commutator defect, the early-warning signal, whose calls after
grokking (20 forward and backward passes each) warn of nothing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..detectors import signals
from ..errors import CheckpointError, ConfigError, StateError
from ..functional.sketch import SketchSpec
from ..monitor import Monitor
from ..selection import Selection, normalize_name
from ..stream.analyzer import default_sketch
from ..stream.cadence import Cadence
from .checkpoint import (RUN_STATE, SNAPSHOTS_FILE, SnapshotRing, check_output_folder, clear_run, config_text,
                         cut_file, file_digest, finish_run_state, history_rows, load_run_state, replace_atomically,
                         run_contents, save_run_state, write_text_file)
from .config import RunConfig
from .optim import build_optimizer
from .workloads import Workload, build_workload

ProgressFn = Callable[[int, int, dict[str, Any]], None]

#: name → builder(workload, cfg, options) -> Probe. Probe modules register themselves here.
PROBE_BUILDERS: dict[str, Callable[[Workload, RunConfig, dict[str, Any]], Any]] = {}
#: builder(workload, cfg, probes) -> detector or None: the default grokking alarm, if available.
ALARM_BUILDER: list[Callable[[RunConfig, list[Any]], Any]] = []
#: default cadence of the run checkpoints behind ``--resume`` (optimizer steps; 0: none)
SAVE_EVERY = 500


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


#: the values of a probe entry's ``until`` option (see module docs)
PROBE_UNTIL = ("grok", "alarm")


def probe_until(cfg: RunConfig) -> dict[str, str]:
    """probe name → when it stops (``grok`` or ``alarm``), from the ``until`` option of its
    ``cfg.probes`` entry; a ConfigError names ``probes.<name>.until`` for any other value."""
    out = {}
    for name, opts in cfg.probes.items():
        when = (opts or {}).get("until")
        if when is None:
            continue
        if when not in PROBE_UNTIL:
            raise ConfigError(f"probes.{name}.until: must be one of {', '.join(PROBE_UNTIL)}, got {when!r}")
        out[name] = when
    return out


def build_probes(workload: Workload, cfg: RunConfig) -> list[Any]:
    """Probes named in ``cfg.probes``, built against the workload's model and data (the
    ``until`` option is the runner's, not the probe's)."""
    if not cfg.probes:
        return []
    _load_probe_modules()
    probe_until(cfg)
    out = []
    for name, opts in cfg.probes.items():
        if name not in PROBE_BUILDERS:
            raise ConfigError(f"unknown probe {name!r}; available: {', '.join(sorted(PROBE_BUILDERS)) or 'none'}")
        options = {k: v for k, v in (opts or {}).items() if k != "until"}
        try:
            out.append(PROBE_BUILDERS[name](workload, cfg, options))
        except (ConfigError, TypeError, ValueError) as e:  # an unknown option or a value the probe refuses
            raise ConfigError(f"probes.{name}: {' '.join(str(e).split())[:300]} (options: {options})") from None
    _link_probes(dict(zip(cfg.probes, out)))
    return out


#: probe options that may name another probe of the run (linked to that probe object)
PROBE_LINKS = ("subspace",)


def _link_probes(built: Mapping[str, Any]) -> None:
    """Replace an option of :data:`PROBE_LINKS` that names another probe of the run (e.g. the
    defect's ``subspace = "manifold"``) by that probe; it must run first (listed before)."""
    names = list(built)
    for name, probe in built.items():
        for attr in PROBE_LINKS:
            ref = getattr(probe, attr, None)
            if not isinstance(ref, str):
                continue
            if ref not in built or ref == name:
                raise ConfigError(f"probes.{name}.{attr}: {ref!r} is not another probe of this run "
                                  f"(probes: {', '.join(names)})")
            if names.index(ref) > names.index(name):
                raise ConfigError(f"probes.{name}.{attr}: list the {ref} probe before {name}, so that {name} reads "
                                  f"the {ref} of the same step")
            setattr(probe, attr, built[ref])


def _alarm_name(monitor: Any, first: Mapping[str, Any] | None) -> str | None:
    """The alarm that set ``warning_step`` (``first``: its event row; the registry name, e.g.
    ``recommended``), or the first attached alarm's when none fired; None without a detector."""
    names = {getattr(d, "name", None): getattr(d, "alarm", getattr(d, "name", None)) for d in monitor.detectors}
    if first is not None:
        return names.get(first.get("detector"), first.get("detector"))
    return next(iter(names.values()), None)


def _stop_probes(stops: list[tuple[str, Any]], grok_step: int | None, alarmed: bool) -> list[tuple[str, Any]]:
    """Stop (``every = 0``) the probes whose ``until`` has come; returns those still running."""
    left = []
    for when, probe in stops:
        if (when == "grok" and grok_step is not None) or (when == "alarm" and alarmed):
            probe.every = 0
        else:
            left.append((when, probe))
    return left


def _warn(msg: str) -> None:
    warnings.warn(f"spectral-edge: {msg}", RuntimeWarning, stacklevel=4)


def _check_target(out: Path, overwrite: bool, resume: bool) -> None:
    """Refuse an ``out`` that is unusable, or that holds a run the caller did not ask to replace
    (``overwrite``) or continue (``resume``). Writes nothing."""
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume exclude each other: replace the run or continue it")
    check_output_folder(out)
    held = run_contents(out)
    if resume:
        if not held:
            raise ConfigError(f"{out}: no run here to resume")
        if (out / "summary.json").exists():
            raise ConfigError(f"{out}: the run already finished (summary.json); nothing to resume "
                              "(--overwrite trains it again)")
    elif held and not overwrite:
        raise ConfigError(f"{out}: already holds a run ({', '.join(held)}); use --overwrite to replace it "
                          "or --resume to continue it")


def _start_folder(out: Path, cfg: RunConfig, overwrite: bool, make_monitor: Callable[[], Monitor]) -> Monitor:
    """Create (or, with ``overwrite``, clear) the run folder, write config.json and start the
    monitor (which writes the history's first rows). A monitor that cannot start leaves no
    half-made run behind."""
    first_new = None
    p = out
    while not p.exists():
        first_new, p = p, p.parent
    try:
        if overwrite:
            clear_run(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_file(out / "config.json", json.dumps(cfg.to_dict(), indent=2))
        return make_monitor()
    except BaseException as e:
        for f in ("config.json", "history.jsonl"):
            (out / f).unlink(missing_ok=True)
        if first_new is not None:
            for d in (out, *out.parents):
                if not d.is_dir() or any(d.iterdir()):
                    break
                d.rmdir()
                if d == first_new:
                    break
        if isinstance(e, OSError):
            raise ConfigError(f"{out}: cannot write the run folder ({e.strerror or e})") from None
        raise


def _write(path: Path, write: Callable[[Path], Any]) -> None:
    """Write ``path`` atomically; a full disk or a vanished folder is a one-line error naming it."""
    with _disk_errors(path):
        path.parent.mkdir(exist_ok=True)
        replace_atomically(path, write)


@contextlib.contextmanager
def _disk_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise CheckpointError(path, f"cannot write ({e.strerror or e}); the run stopped here") from None


def _restore(saved: dict[str, Any], what: str, load: Callable[[], None]) -> None:
    """``load()`` part of a run checkpoint; a state that does not fit is a one-line error."""
    try:
        load()
    except (StateError, RuntimeError, KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"{saved['path']}: the run checkpoint's {what} state does not fit this run "
                          f"({' '.join(str(e).split())[:200]})") from None


def _watched(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The model's parameters by normalised name (the names the monitor and the snapshots use)."""
    return {normalize_name(n): p for n, p in model.named_parameters()}


def _snapshot_ring(cfg: RunConfig, monitor: Monitor) -> SnapshotRing:
    """The ring of ``cfg.effective_snapshots`` snapshots of the tensors ``monitor`` selects."""
    plan = monitor.updates
    # a schedule for `every` comes with snapshots = 0 (RunConfig refuses both), so the ring is empty then
    every = cfg.every if isinstance(cfg.every, int) else 1
    return SnapshotRing({n: plan.shapes[n] for n in plan.plan.names}, cfg.effective_snapshots, every)


def build_intervention(cfg: RunConfig, wl: Workload, probes: Sequence[Any], out: Path) -> Any:
    """The :class:`~spectral_edge.interventions.Intervention` of ``cfg.intervention`` for the workload
    (None without one): its basis read and checked against the model (a baseline run's execution
    basis, the run's own ``manifold`` probe, or a random one of the same shape), the kick's batches
    drawn from the workload. Writes nothing; every problem is a one-line error naming the key or file."""
    spec = cfg.intervention_spec
    if spec is None:
        return None
    from ..errors import ShapeMismatchError
    from ..interventions.bases import Basis, basis_from_run
    from ..interventions.hooks import Intervention
    from ..interventions.transforms import random_orthonormal

    seed = cfg.seed if spec.seed is None else spec.seed
    src = spec.basis_source
    basis: Any = None
    if src == "run":
        where = Path(str(spec.basis_from))
        if where.exists() and out.exists() and where.resolve() == out.resolve():
            raise ConfigError(f"intervention.basis_from (--basis-from) {where} is the folder --out of this run; train "
                              "the intervention into another folder")
        basis = basis_from_run(where, spec.n_components)
    elif src == "random":
        sel = Selection(preset=cfg.selection)
        shapes = {normalize_name(n): tuple(p.shape) for n, p in wl.model.named_parameters()
                  if p.ndim >= 2 and sel.selects(normalize_name(n), p.dtype)}
        gen = torch.Generator().manual_seed(seed)
        k = spec.n_components
        basis = Basis(shapes, tuple(((n,), random_orthonormal(math.prod(s), min(k, math.prod(s)), gen))
                                    for n, s in shapes.items()), f"random, {k} per matrix (seed {seed})")
    elif src == "online":
        found = [p for p in probes if getattr(p, "name", None) == "manifold"]
        if not found:
            raise ConfigError('intervention.basis: "online" reads the run\'s manifold probe; add it to the probes '
                              '(probes = {manifold = {every = 100}})')
        basis = found[0]
    size = spec.kick_batch_size
    try:
        return Intervention.from_spec(wl.model, spec, basis=basis, seed=seed, loss_fn=wl.loss,
                                      batch_fn=lambda g: wl.sample_batch(g, size))
    except ShapeMismatchError as e:
        raise ShapeMismatchError(spec.basis_from, f"{e.problem}") from None


def run_experiment(cfg: RunConfig, out_dir: str | Path, *, progress: ProgressFn | None = None,
                   extra_probes: Sequence[Any] = (), detectors: Sequence[Any] | None = None,
                   loggers: Sequence[Any] = (), overwrite: bool = False, resume: bool = False,
                   save_every: int = SAVE_EVERY) -> RunResult:
    """Train ``cfg`` with the monitor attached and write the run folder (see module docs).

    Everything (config, folder, workload, model, probes, a run checkpoint to resume) is checked
    before the first write. A folder that already holds a run is refused unless ``overwrite``
    (replace it) or ``resume`` (continue from its newest run checkpoint, bit-identically: the
    config must be the saved one). ``save_every``: a run checkpoint every this many steps (0:
    none). ``detectors``: None attaches the default grokking alarm when its probes are
    configured. The caller's global RNG state is left as it was.
    """
    from safetensors.torch import save_model

    out = Path(out_dir)
    if isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 0:
        raise ConfigError(f"save_every (--save-every) must be a whole number ≥ 0, got {save_every!r}")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    t_start = time.perf_counter()
    wl = build_workload(cfg)
    model = wl.model
    opt = build_optimizer(cfg, model)
    base_lrs = [g["lr"] for g in opt.param_groups]
    built = build_probes(wl, cfg)
    until = probe_until(cfg)
    stops = [(until[name], p) for name, p in zip(cfg.probes, built) if name in until]
    probes = built + list(extra_probes)
    if detectors is None:
        _load_probe_modules()
        detectors = [d for d in (b(cfg, probes) for b in ALARM_BUILDER) if d is not None] if cfg.alarm else []
    spec: SketchSpec | str = cfg.sketch
    if cfg.sketch != "auto":
        spec = default_sketch(cfg.windows, cfg.sketch, dim=cfg.sketch_dim)
    history = out / "history.jsonl"
    options: dict[str, Any] = dict(windows=cfg.windows, every=cfg.every, sketch=spec, gradients=cfg.gradients,
                                   selection=Selection(preset=cfg.selection, group_by=cfg.group_by),
                                   history=history, probes=probes, detectors=list(detectors), loggers=loggers)
    intervention = build_intervention(cfg, wl, probes, out)
    _check_target(out, overwrite, resume)  # after the config's own checks, so those are reported first

    saved = load_run_state(out, cfg.to_dict(), _warn) if resume else None
    if saved is not None:
        _restore(saved, "model", lambda: model.load_state_dict(saved["model"]))
        _restore(saved, "optimizer", lambda: opt.load_state_dict(saved["optimizer"]))
        # a trial monitor without a history checks the saved monitor state before the folder is touched
        trial = Monitor(model, **{**options, "history": None, "loggers": ()}, sample_initial=False)
        _restore(saved, "monitor", lambda: trial.load_state_dict(saved["monitor"]))
        ring = _snapshot_ring(cfg, trial)
        if "snapshots" in saved:
            _restore(saved, "snapshots", lambda: ring.load_state_dict(saved["snapshots"]))
        elif ring.size:
            _warn(f"{saved['path']} predates snapshots; {SNAPSHOTS_FILE} will hold only those taken after "
                  f"step {saved['step']}")
        for key in ("data_rng", "torch_rng"):
            _restore(saved, key, lambda: torch.Generator().set_state(saved[key]))
        if intervention is not None:
            _restore(saved, "intervention", lambda: intervention.load_state_dict(saved["intervention"]))
    for d in detectors:  # after every check of the folder, so a refused run prints only its error
        if getattr(d, "val_drop", None) is not None and not cfg.has_validation_split:
            _warn(f"the {getattr(d, 'alarm', d.name)} alarm reads the validation loss, and this {cfg.task} run has no "
                  "validation split, so it reads the test loss: its lead is then partly the gap between the test loss "
                  "and the test accuracy that defines grokking"
                  + (" (pass --val-frac 0.25 or task_options.val_frac)" if cfg.task == "modular" else ""))
    # ---- the first write to the folder is below this line
    if saved is None:
        monitor = _start_folder(out, cfg, overwrite, lambda: Monitor(model, **options))
    else:
        cut_file(history, int(saved["history_bytes"]))  # drop what the killed run wrote after its checkpoint
        monitor = Monitor(model, start_step=int(saved["step"]), sample_initial=False, **options)
        monitor.load_state_dict(saved["monitor"])
        monitor.rows = history_rows(history)
    if saved is None:
        ring = _snapshot_ring(cfg, monitor)
        ring.take(0, _watched(model))  # where the monitor took its initial sample
    if intervention is not None:  # before the monitor: its gradient stream sees the transformed gradients
        intervention.monitor = monitor
        intervention.attach(opt)
    handle = monitor.attach(opt)
    gen = torch.Generator().manual_seed(cfg.effective_data_seed)
    snapshot_params = _watched(model)
    ckpt_dir = out / "checkpoints"

    def snapshot(step: int) -> None:
        _write(ckpt_dir / f"step_{step:07d}.safetensors", lambda tmp: save_model(model, str(tmp)))

    def evaluate(step: int) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        metrics = wl.evaluate(model)
        model.train(was_training)
        row = {"step": step, **metrics}
        evals.append(row)
        monitor.log(step, **metrics)
        return row

    if saved is None:
        evals: list[dict[str, Any]] = []
        grok_step: int | None = None
        stop_at, start, train_loss, wall_before = cfg.steps, 0, math.nan, 0.0
        if cfg.checkpoint_every:
            snapshot(0)
        evaluate(0)
    else:
        evals = [dict(e) for e in saved["evals"]]
        grok_step = None if saved["grok_step"] is None else int(saved["grok_step"])
        stop_at, start = int(saved["stop_at"]), int(saved["step"])
        train_loss, wall_before = float(saved["train_loss"]), float(saved.get("wall_seconds", 0.0))
        gen.set_state(saved["data_rng"])
    last = evals[-1]
    step = start
    seen_rows = 0

    def alarmed() -> bool:  # an alarm among the monitor's rows recorded since the last look
        nonlocal seen_rows
        rows, seen_rows = monitor.rows[seen_rows:], len(monitor.rows)
        return any(r.get("kind") == "event" and r.get("event") == "alarm" for r in rows)

    stops = _stop_probes(stops, grok_step, alarmed()) if stops else stops
    every, evaluates = Cadence(cfg.every), Cadence(cfg.eval_every, name="eval_every")
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + 1)  # anything stochastic inside the model (dropout) is seeded
        if saved is not None:
            torch.set_rng_state(saved["torch_rng"])
        model.train()
        for step in range(start + 1, cfg.steps + 1):
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
            sampled = every(step)
            if sampled:
                ring.take(step, snapshot_params)  # the same steps, the same parameters
            train_loss = float(loss.detach())
            if not math.isfinite(train_loss):
                monitor.log(step, loss=train_loss)
                raise ConfigError(f"training diverged at step {step} (loss {train_loss}); lower the learning rate")
            if sampled:
                monitor.log(step, loss=train_loss)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                snapshot(step)
            if evaluates(step) or step == cfg.steps:
                last = evaluate(step)
                if grok_step is None:
                    grok_step = signals.grok_step(evals, cfg.grok_threshold, "test_acc")
                if grok_step is not None and step == grok_step:
                    if cfg.early_stop:
                        stop_at = min(cfg.steps, step + cfg.stop_margin)
            if stops:
                stops = _stop_probes(stops, grok_step, alarmed())
            if progress is not None:
                progress(step, stop_at, {"loss": train_loss, "test_acc": last["test_acc"], "grok": grok_step})
            if step >= stop_at:
                break
            if save_every and step % save_every == 0:
                size, digest = file_digest(history)
                state = {"config": config_text(cfg.to_dict()), "model": model.state_dict(),
                         "optimizer": opt.state_dict(), "monitor": monitor.state_dict(), "evals": evals,
                         "grok_step": grok_step, "stop_at": stop_at, "train_loss": train_loss,
                         "wall_seconds": wall_before + time.perf_counter() - t_start,
                         "data_rng": gen.get_state(), "torch_rng": torch.get_rng_state(),
                         "history_bytes": size, "history_sha256": digest, "snapshots": ring.state_dict()}
                if intervention is not None:
                    state["intervention"] = intervention.state_dict()
                with _disk_errors(out / RUN_STATE / f"step_{step:07d}.pt"):
                    save_run_state(out, step, state)
    handle.remove()
    if intervention is not None:
        intervention.remove()
    monitor.close()
    _write(out / "model.safetensors", lambda tmp: save_model(model, str(tmp)))
    if ring.size:
        _write(out / SNAPSHOTS_FILE, ring.save)
    fields = sorted({k for e in evals for k in e if k != "step"}, key=lambda k: (not k.startswith("train"), k))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=["step", *fields])
    w.writeheader()
    w.writerows(evals)
    _write(out / "eval.csv", lambda tmp: tmp.write_bytes(buf.getvalue().encode("utf-8")))
    first = next((r for r in monitor.rows if r.get("kind") == "event" and r.get("event") == "alarm"), None)
    warning = int(first["step"]) if first is not None else None
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
        "alarm": _alarm_name(monitor, first),
        "lead": (grok_step - warning) if (grok_step is not None and warning is not None) else None,
        "steps_run": step,
        "stopped_early": step < cfg.steps,
        "final_train_acc": evals[-1].get("train_acc"),
        "final_test_acc": evals[-1].get("test_acc"),
        "final_train_loss": evals[-1].get("train_loss"),
        "final_test_loss": evals[-1].get("test_loss"),
        "n_parameters_monitored": monitor.n_parameters,
        "sketch": monitor.config.sketch.to_dict(),
        "wall_seconds": round(wall_before + time.perf_counter() - t_start, 2),
        "workload": wl.description,
        "history": "history.jsonl",
        "eval": "eval.csv",
        "model": "model.safetensors",
        "snapshots": SNAPSHOTS_FILE if ring.size else None,
    }
    if intervention is not None:  # only then: the summary of a plain run is what it always was
        done = intervention.describe()
        summary["intervention"] = {**cfg.intervention_spec.resolved(), "seed": done["seed"], "basis": done["basis"],
                                   "basis_source": cfg.intervention_spec.basis_source,
                                   "steps_applied": done["steps_applied"],
                                   "first_step_applied": done["first_step_applied"]}
    _write(out / "summary.json", lambda tmp: tmp.write_bytes(json.dumps(summary, indent=2).encode("utf-8")))
    finish_run_state(out)
    return RunResult(summary, out, monitor)
