"""``spectral-edge grok`` and ``spectral-edge run``: train reference models with the monitor."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Optional

import typer

from ._app import app, echo_json, parse_windows, stderr_console

#: the shared --overwrite / --resume / --save-every options of ``grok``, ``run`` (and ``demo``)
OVERWRITE_HELP = "Replace the run already in --out (without it, an existing run is refused)."
RESUME_HELP = ("Continue the killed or interrupted run in --out from its newest run checkpoint "
               "(same config; the result is identical to an uninterrupted run).")
SAVE_EVERY_HELP = "Write a run checkpoint (out/run_state/, newest 2 kept) every N steps, for --resume; 0: none."
#: the intervention options of ``grok`` and ``run`` (spectral_edge.interventions; METHODS.md §8)
INTERVENTION_HELP = ("Steer training from --intervention-start on: kick | noise | project | penalty | keep-sed | "
                     "remove-sed | keep-random | remove-random (project, penalty, noise and kick need --basis-from).")
STRENGTH_HELP = ("Strength: s of project/penalty/keep/remove (papers: 0.5; rank-k: 1), the noise norm ε (0.1), the "
                 "kick's α (10); 0 changes nothing.")
START_HELP = "First optimizer step the intervention acts on (default 500; the rank-k kinds: 0)."
BASIS_FROM_HELP = "A finished baseline run folder; its execution basis B (top-2 PCs per attention matrix)."
ALARM_HELP = ("Grokking alarm: recommended | geometry | paper | validation | none (default: the default alarm; "
              "summary.json records which one set warning_step).")


def alarm_setting(alarm: Optional[str]) -> bool | str:
    """RunConfig.alarm from ``--alarm``: None → True (the default), ``none`` → False, else the name."""
    if alarm is None:
        return True
    return False if alarm == "none" else alarm


#: the validation share ``grok`` carves when its alarm reads the validation loss and no --val-frac is given
GROK_VAL_FRAC = 0.25


def default_val_frac(alarm: Optional[str]) -> float:
    """``grok``'s --val-frac when none is given: :data:`GROK_VAL_FRAC` if the alarm (``--alarm``;
    None: the default alarm) reads the validation loss, else 0 (no split: the held-out pairs all
    test)."""
    from ..detectors.alarm import DEFAULT_ALARM, make_alarm
    from ..errors import ConfigError

    name = DEFAULT_ALARM if alarm is None else alarm
    if name == "none":
        return 0.0
    try:
        reads_val = make_alarm(name).val_drop is not None
    except ConfigError:  # an unknown name: RunConfig reports it
        return 0.0
    return GROK_VAL_FRAC if reads_val else 0.0


def intervention_table(base: dict[str, Any] | None, kind: Optional[str], strength: Optional[float],
                       start: Optional[int], basis_from: Optional[Path]) -> dict[str, Any] | None:
    """The ``[intervention]`` table: ``base`` (a config's) with the flags that were given on top."""
    given = {k: v for k, v in (("kind", kind), ("strength", strength), ("start", start),
                               ("basis_from", None if basis_from is None else str(basis_from))) if v is not None}
    if not given:
        return base
    table = {**(base or {}), **given}
    if "kind" not in table:
        from ..errors import ConfigError

        flags = ", ".join(f for k, f in (("strength", "--strength"), ("start", "--intervention-start"),
                                         ("basis_from", "--basis-from")) if k in given)
        raise ConfigError(f"{flags} need{'s' if len(given) == 1 else ''} --intervention KIND (kick, noise, project, "
                          "penalty, keep-sed, remove-sed, keep-random, remove-random)")
    return table


def train_progress(quiet: bool):
    """(context manager, callback) showing a training bar with loss, test accuracy and grok step."""
    console = stderr_console()
    if quiet or not console.is_terminal:
        return contextlib.nullcontext(), None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]} · test acc {task.fields[acc]} · grok {task.fields[grok]}"),
                    TimeElapsedColumn(), console=console, transient=True)
    task = prog.add_task("train", total=None, loss="-", acc="-", grok="-")

    def cb(step: int, total: int, info: dict[str, Any]) -> None:
        if step % 10 == 0 or step == total:
            prog.update(task, completed=step, total=total, loss=f"{info['loss']:.3f}",
                        acc=f"{info['test_acc']:.3f}", grok=info["grok"] if info["grok"] is not None else "-")

    return prog, cb


def print_run_summary(s: dict[str, Any], out: Path) -> None:
    """A short table of a run's summary."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"run {out}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("workload", str(s.get("workload")))
    t.add_row("steps", f"{s['steps_run']}" + (" (stopped after grokking)" if s.get("stopped_early") else ""))
    t.add_row("grok step (test acc ≥ 0.9)", str(s["grok_step"]))
    t.add_row("grok step (≥ 0.98 three times)", str(s.get("grok_step_098x3")))
    t.add_row("warning step", str(s["warning_step"]) + (f" (lead {s['lead']} steps)" if s.get("lead") is not None else "")
              + (f" · alarm: {s['alarm']}" if s.get("alarm") else ""))
    t.add_row("final test acc", f"{s['final_test_acc']:.4f}")
    t.add_row("wall time", f"{s['wall_seconds']:.1f} s")
    t.add_row("history", str(out / s["history"]))
    Console().print(t)


def train_and_print(cfg, out: Path, as_json: bool, quiet: bool, *, overwrite: bool = False, resume: bool = False,
                    save_every: int = 500) -> dict[str, Any]:
    """Train ``cfg`` into ``out`` with a progress bar, then print (or ``--json``) its summary.
    ``overwrite`` / ``resume`` / ``save_every``: see :func:`~spectral_edge.experiments.runner.run_experiment`."""
    from ..experiments.runner import run_experiment

    bar, cb = train_progress(quiet or as_json)
    with bar:
        res = run_experiment(cfg, out, progress=cb, overwrite=overwrite, resume=resume, save_every=save_every)
    if as_json:
        echo_json({**res.summary, "out": str(out)})
    elif not quiet:
        print_run_summary(res.summary, out)
        typer.echo(f"summary: {out / 'summary.json'}")
    return res.summary


@app.command(
    epilog="Examples:\n\n"
    "  spectral-edge grok --op add --modulus 97 --seed 42 --out runs/add-42\n\n"
    "  spectral-edge grok --op x2xyy2 --steps 12000 --no-early-stop --out runs/control\n\n"
    "  spectral-edge grok --op add --weight-decay 0 --out runs/add-wd0 --json\n\n"
    "  spectral-edge grok --op add --out runs/add-42 --resume    # after a crash or kill: same flags plus --resume\n\n"
    "  spectral-edge grok --op add --intervention project --strength 0.5 --basis-from runs/add-42 --out runs/proj"
)
def grok(
    op: str = typer.Option("add", "--op", help="add | sub | mul | x2y2 | x2xyy2 | x3xy."),
    modulus: int = typer.Option(97, "--modulus", "-p", help="The modulus p."),
    seed: int = typer.Option(42, "--seed", help="Seed of the model initialisation, split and batches."),
    steps: int = typer.Option(10_000, "--steps", help="Maximum optimizer steps."),
    weight_decay: float = typer.Option(1.0, "--weight-decay", help="AdamW weight decay."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw | sgd | muon."),
    train_frac: float = typer.Option(0.5, "--train-frac", help="Fraction of pairs used for training."),
    early_stop: bool = typer.Option(True, "--early-stop/--no-early-stop", help="Stop 1000 steps after grokking."),
    every: int = typer.Option(100, "--every", help="Monitor sampling cadence (steps)."),
    window: list[str] = typer.Option(["10"], "--window", "-w", help="Window size(s) W."),
    sketch: str = typer.Option("auto", "--sketch", help="auto | exact | fold | gaussian | countsketch."),
    defect: bool = typer.Option(True, "--defect/--no-defect", help="Run the commutator-defect probe (every 100 steps)."),
    alarm: Optional[str] = typer.Option(None, "--alarm", help=ALARM_HELP + " The probes it reads are added."),
    val_frac: Optional[float] = typer.Option(None, "--val-frac", min=0.0, max=1.0,
                                             help="Carve a validation split of this share of all pairs out of the "
                                                  "held-out ones (what the validation and recommended alarms read); "
                                                  "0: none. Default: 0.25 when the alarm reads the validation loss "
                                                  "(the default alarm does), else 0."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's choice)."),
    intervention: Optional[str] = typer.Option(None, "--intervention", help=INTERVENTION_HELP),
    strength: Optional[float] = typer.Option(None, "--strength", help=STRENGTH_HELP),
    intervention_start: Optional[int] = typer.Option(None, "--intervention-start", help=START_HELP),
    basis_from: Optional[Path] = typer.Option(None, "--basis-from", help=BASIS_FROM_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (summary.json, history.jsonl, eval.csv…)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    save_every: int = typer.Option(500, "--save-every", min=0, help=SAVE_EVERY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Train the papers' modular-arithmetic transformer on one operation; write DIR/summary.json."""
    from ..experiments.config import RunConfig

    from ..detectors.alarm import ALARM_PROBES

    probes: dict[str, Any] = {"defect": {"every": 100}} if defect else {}
    if alarm is not None and alarm in ALARM_PROBES:  # the probes the named alarm reads (manifold before defect)
        if not defect and "defect" in ALARM_PROBES[alarm]:
            from ..errors import ConfigError

            raise ConfigError(f"--alarm {alarm} reads the commutator-defect probe; drop --no-defect or choose "
                              "--alarm validation")
        probes = {**{p: {"every": 100} for p in ALARM_PROBES[alarm]}, **probes}
    if val_frac is None:
        val_frac = default_val_frac(alarm)
    cfg = RunConfig(task="modular", op=op, modulus=modulus, seed=seed, steps=steps, weight_decay=weight_decay,
                    lr=lr, optimizer=optimizer, train_frac=train_frac, early_stop=early_stop, every=every,
                    windows=parse_windows(window), sketch=sketch, probes=probes, threads=threads,
                    alarm=alarm_setting(alarm), task_options={"val_frac": val_frac} if val_frac else {},
                    intervention=intervention_table(None, intervention, strength, intervention_start, basis_from))
    _check_op(op)
    train_and_print(cfg, out, as_json, quiet, overwrite=overwrite, resume=resume, save_every=save_every)


def _check_op(op: str) -> None:
    from ..tasks.modular import OPERATIONS, canonical_op

    try:
        canonical_op(op)
    except Exception:
        from ..errors import ConfigError

        raise ConfigError(f"unknown operation {op!r}; choose one of {', '.join(OPERATIONS)}") from None


@app.command(
    "run",
    epilog="Examples:\n\n  spectral-edge run configs/dyck.toml --out runs/dyck\n\n"
    "  spectral-edge run cfg.json --set seed=137 --set steps=4000 --out runs/s137\n\n"
    "  spectral-edge run configs/dyck.toml --out runs/dyck --resume    # continue a killed run\n\n"
    "  spectral-edge run configs/dyck.toml --intervention keep-sed --out runs/dyck-keep3",
)
def run_config(
    config: Path = typer.Argument(..., help="A .toml or .json RunConfig (see spectral_edge.experiments.config)."),
    set_: list[str] = typer.Option([], "--set", help="Override a field: key=value (JSON value), repeatable."),
    intervention: Optional[str] = typer.Option(None, "--intervention", help=INTERVENTION_HELP +
                                               " Overrides the config's [intervention] table."),
    strength: Optional[float] = typer.Option(None, "--strength", help=STRENGTH_HELP),
    intervention_start: Optional[int] = typer.Option(None, "--intervention-start", help=START_HELP),
    basis_from: Optional[Path] = typer.Option(None, "--basis-from", help=BASIS_FROM_HELP),
    alarm: Optional[str] = typer.Option(None, "--alarm", help=ALARM_HELP + " Overrides the config's alarm."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    save_every: int = typer.Option(500, "--save-every", min=0, help=SAVE_EVERY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train any reference task (modular, multitask, dyck, scan, lm) from a declarative config."""
    from ..experiments.config import RunConfig

    cfg = RunConfig.from_file(config, overrides=set_)
    table = intervention_table(cfg.intervention, intervention, strength, intervention_start, basis_from)
    if table is not cfg.intervention:
        cfg = RunConfig.from_dict({**cfg.to_dict(), "intervention": table}, where=f"{config} with --intervention")
    if alarm is not None:
        cfg = RunConfig.from_dict({**cfg.to_dict(), "alarm": alarm_setting(alarm)}, where=f"{config} with --alarm")
    train_and_print(cfg, out, as_json, quiet, overwrite=overwrite, resume=resume, save_every=save_every)
