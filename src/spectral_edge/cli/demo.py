"""``spectral-edge demo``: the README's main job.

Trains the papers' modular-arithmetic transformer on addition mod 97 with the monitor (and
the commutator-defect probe and grokking alarm) attached, writes the run folder and its
report, and ends with one line saying where the report is.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app


@app.command(epilog="Example:\n\n  spectral-edge demo --out spectral-edge-demo")
def demo(
    out: Path = typer.Option(Path("spectral-edge-demo"), "--out", "-o", help="Output folder."),
    op: str = typer.Option("add", "--op", help="Modular operation."),
    modulus: int = typer.Option(97, "--modulus", "-p", help="The modulus p."),
    seed: int = typer.Option(42, "--seed"),
    steps: int = typer.Option(6000, "--steps", help="Maximum steps (the run stops 1000 steps after grokking)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train add mod 97 with the monitor attached, then write the history, summary and report."""
    from ..experiments.config import RunConfig
    from ..experiments.probes import available
    from .experiments import train_and_print

    probes = {"defect": {"every": 100}} if "defect" in available() else {}
    cfg = RunConfig(task="modular", op=op, modulus=modulus, seed=seed, steps=steps, probes=probes)
    train_and_print(cfg, out, as_json=False, quiet=quiet)
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
