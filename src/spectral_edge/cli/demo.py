"""``spectral-edge demo``: the README's main job.

Trains the papers' modular-arithmetic transformer on addition mod 97 with the monitor (and
the commutator-defect probe and grokking alarm) attached, writes the run folder and its
report, and ends with one line saying where the report is. An existing demo output (a run
or its report) is never replaced unless ``--overwrite``.

What it costs (issue 14, part 6; ``benchmarks/bench_demo.py``, docs/benchmarks.md): the
training loop itself, plus the commutator-defect probe (20 forward and backward passes
every 100 steps, the papers' rule: 5 pairs of 512-example batches), the evaluations
(train and test sets every 100 steps), the report and start-up. The demo runs the defect
probe only until the grok step (``"until": "grok"``): it is the early-warning signal, the
alarm has fired by then, and the report shows its whole rise; after grokking its 10 calls
would warn of nothing and cost about a fifth of what the demo adds to a plain loop.
Everything else is the runner's default run (the grok and stop rules, the evaluations, the
snapshots that ``spectral-edge modes`` and the report's modes section read).

:func:`before_report` is what the demo does with the finished run before writing the
report (the place for the functional-modes step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._app import app


#: the demo's validation split (of all pairs, carved from the held-out half): what the alarm reads,
#: apart from the test pairs whose accuracy defines the grok step
DEMO_VAL_FRAC = 0.25
#: the demo's defect probe: the papers' rule (every 100 steps, 5 pairs of 512), until the grok step
DEMO_PROBES = {"defect": {"every": 100, "until": "grok"}}


def before_report(out: Path, summary: dict[str, Any], quiet: bool) -> None:
    """Called by the demo after the run (``out`` holds its files and ``summary``) and before
    the report is written: the hook for steps that add to the run folder what the report
    shows. Nothing yet."""
    return None


@app.command(epilog="Example:\n\n  spectral-edge demo --out spectral-edge-demo\n\n"
             "  spectral-edge demo --out spectral-edge-demo --overwrite    # replace an earlier demo")
def demo(
    out: Path = typer.Option(Path("spectral-edge-demo"), "--out", "-o", help="Output folder."),
    op: str = typer.Option("add", "--op", help="Modular operation."),
    modulus: int = typer.Option(97, "--modulus", "-p", help="The modulus p."),
    seed: int = typer.Option(42, "--seed"),
    steps: int = typer.Option(6000, "--steps", help="Maximum steps (the run stops 1000 steps after grokking)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier demo in --out."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed demo run in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train add mod 97 with the monitor attached, then write the history, summary and report."""
    from ..errors import ConfigError
    from ..experiments.config import RunConfig
    from ..experiments.probes import available
    from .experiments import train_and_print

    if (out / "report.html").exists() and not (overwrite or resume):
        raise ConfigError(f"{out}: already holds a demo report (report.html); use --overwrite to replace it")
    probes = {k: dict(v) for k, v in DEMO_PROBES.items() if k in available()}
    cfg = RunConfig(task="modular", op=op, modulus=modulus, seed=seed, steps=steps, probes=probes,
                    task_options={"val_frac": DEMO_VAL_FRAC})
    summary = train_and_print(cfg, out, as_json=False, quiet=quiet, overwrite=overwrite, resume=resume)
    before_report(out, summary, quiet)
    target = out / "summary.json"
    try:
        from ..report import build_report
    except ImportError:
        build_report = None
    if build_report is not None:
        target = build_report(out, out / "report.html")
        typer.echo(f"report: {target}")
    else:
        typer.echo(f"results: {target}")
