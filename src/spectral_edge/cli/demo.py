"""``spectral-edge demo``: the README's main job."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, progress
from .analyze import _print_summary, _summary


@app.command(epilog="Example:\n\n  spectral-edge demo --out spectral-edge-demo")
def demo(
    out: Path = typer.Option(Path("spectral-edge-demo"), "--out", "-o", help="Folder for checkpoints and results."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Make a small planted trajectory (k* = 2, rise/plateau/collapse), save it as checkpoints, analyse it."""
    from ..engine import AnalysisConfig, analyze_checkpoints
    from ..functional.sketch import SketchSpec
    from ..io.tables import write_table
    from ..synthetic import PlantedSpec, write_checkpoints

    spec = PlantedSpec(noise_corr=0.5, drift=2.0)
    ck = out / "checkpoints"
    if ck.exists():
        for p in ck.glob("step_*.safetensors"):
            p.unlink()
    write_checkpoints(ck, spec)
    bar, cb = progress("analyze", quiet)
    with bar:
        result = analyze_checkpoints(ck, AnalysisConfig(windows=(10,), sketch=SketchSpec(dim=100)), progress=cb)
    metrics = write_table(result.rows, out / "metrics.csv", result.metadata())
    s = _summary(result, metrics)
    if not quiet:
        _print_summary(s)
        rise, plateau = spec.phase_bounds()
        typer.echo(f"planted: k* = {spec.planted_k} ({spec.rank} signal modes + drift), rise until step {rise}, plateau until step {plateau}, then collapse")
    typer.echo(f"results: {metrics}")
