"""``spectral-edge demo``: the README's main job.

Trains the papers' modular-arithmetic transformer on addition mod 97 with the monitor (and
the commutator-defect probe and grokking alarm) attached, writes the run folder and its
report, and ends with one line saying where the report is. An existing demo output (a run
or its report) is never replaced unless ``--overwrite``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app


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
    probes = {"defect": {"every": 100}} if "defect" in available() else {}
    cfg = RunConfig(task="modular", op=op, modulus=modulus, seed=seed, steps=steps, probes=probes)
    train_and_print(cfg, out, as_json=False, quiet=quiet, overwrite=overwrite, resume=resume)
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
