"""The ``spectral-edge`` command line (typer + rich).

User errors (any :class:`~spectral_edge.errors.SpectralEdgeError`) print one line
``spectral-edge: error: <what and where>`` on stderr and exit with status 2; ``--debug``
shows the traceback instead. Progress bars appear only on a terminal.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from .errors import SpectralEdgeError

_STATE = {"debug": False}


class _Group(TyperGroup):
    """Runs a command; a user error becomes one line on stderr and exit status 2."""

    def invoke(self, ctx):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except SpectralEdgeError as e:
            if _STATE["debug"]:
                raise
            print(f"spectral-edge: error: {e}", file=sys.stderr)
            ctx.exit(2)


app = typer.Typer(
    cls=_Group,
    name="spectral-edge",
    help="Read the geometry of training trajectories: sketched rolling-window spectra, the spectral edge k*, "
    "its phases, and early warnings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    _STATE["debug"] = debug


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _parse_windows(values: list[str]) -> tuple[int, ...]:
    from .errors import ConfigError

    out: list[int] = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise ConfigError(f"--window takes integers (e.g. 10 or 5,10,20), got {part!r}") from None
    return tuple(out) or (10,)


def _progress(total_label: str, quiet: bool):
    """A rich progress bar on a terminal, else a no-op; returns (context manager, callback)."""
    import contextlib

    console = _stderr()
    if quiet or not console.is_terminal:
        return contextlib.nullcontext(), None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("step {task.fields[step]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=True)
    task = prog.add_task(total_label, total=None, step="-")

    def cb(done: int, total: int, step: int) -> None:
        prog.update(task, completed=done, total=total, step=step)

    return prog, cb


@app.command(
    epilog="Examples:\n\n"
    "  spectral-edge analyze runs/my-run/ --window 10 --out metrics.parquet\n\n"
    "  spectral-edge analyze ckpts/ -w 5,10,20 --sketch exact --preset attention --out m.csv\n\n"
    "  spectral-edge analyze ckpts/ --group-by layer --exclude '*embed*' --out layers.jsonl"
)
def analyze(
    folder: Path = typer.Argument(..., help="Folder of checkpoints (safetensors, HF checkpoint-<step>/, .pt/.bin, DCP)."),
    window: list[str] = typer.Option(["10"], "--window", "-w", help="Window size W; repeat or comma-separate (5,10,20)."),
    sketch: str = typer.Option("fold", "--sketch", help="exact | fold | gaussian | countsketch."),
    sketch_dim: Optional[int] = typer.Option(None, "--sketch-dim", "-d", help="Sketch dimension d (default 10·max W)."),
    buckets: Optional[int] = typer.Option(None, "--buckets", help="fold: number of buckets B (a prime, default 16381)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random projection."),
    include: list[str] = typer.Option([], "--include", "-i", help="Glob or re:<regex> of tensors to keep (repeatable)."),
    exclude: list[str] = typer.Option([], "--exclude", "-x", help="Glob or re:<regex> of tensors to drop (repeatable)."),
    preset: str = typer.Option("all", "--preset", help="all | attention (W_Q,W_K,W_V,W_O) | trunk (no embeddings/head)."),
    group_by: str = typer.Option("none", "--group-by", help="none | layer | matrix | re:<regex with a group>."),
    include_buffers: bool = typer.Option(False, "--include-buffers", help="Also analyse buffers such as running stats."),
    kstar_rule: str = typer.Option("floor", "--kstar-rule", help="floor (default) | argmax | weighted."),
    state_key: Optional[str] = typer.Option(None, "--state-key", help="Key of the state dict inside .pt files."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Warn and skip unreadable checkpoints instead of stopping."),
    out: Path = typer.Option(Path("metrics.parquet"), "--out", "-o", help="Output table: .parquet, .csv or .jsonl."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Analyse a folder of checkpoints: one row per window with σ, k*, gap ratio and more."""
    from .engine import AnalysisConfig, analyze_checkpoints
    from .errors import CheckpointError
    from .functional.sketch import DEFAULT_FOLD_BUCKETS, SketchSpec
    from .io.tables import table_format, write_table
    from .selection import Selection

    table_format(out)  # fail on a bad extension before any work
    windows = _parse_windows(window)
    spec = SketchSpec(family=sketch, dim=sketch_dim or 10 * max(windows), seed=seed,
                      buckets=buckets or DEFAULT_FOLD_BUCKETS)
    config = AnalysisConfig(windows=windows, sketch=spec,
                            selection=Selection(tuple(include), tuple(exclude), preset, group_by, include_buffers),
                            kstar_rule=kstar_rule)
    console = _stderr()
    bar, cb = _progress("analyze", quiet or as_json)
    warn = (lambda m: console.print(f"[yellow]warning:[/] {m}")) if not as_json else (lambda m: None)
    try:
        with bar:
            result = analyze_checkpoints(folder, config, state_key=state_key, skip_bad=skip_bad,
                                         progress=cb, on_warning=warn)
    except CheckpointError as e:
        done = getattr(e, "partial", None)
        if done is not None and done.rows:
            partial = out.with_name(out.stem + ".partial" + out.suffix)
            write_table(done.rows, partial, done.metadata())
            raise CheckpointError(e.path, f"{e.problem} (the {len(done.rows)} rows computed before it are in {partial})") from None
        raise
    write_table(result.rows, out, result.metadata())
    summary = _summary(result, out)
    if as_json:
        typer.echo(json.dumps(summary))
    elif not quiet:
        _print_summary(summary)


def _summary(result, out: Path) -> dict:
    rows = [r for r in result.rows if r["group"] == "all"]
    ks = Counter(r["k_star"] for r in rows)
    gr = [r["gap_ratio"] for r in rows if r["gap_ratio"] == r["gap_ratio"]]
    return {
        "out": str(out),
        "checkpoints": len(result.checkpoints),
        "first_step": result.checkpoints[0][0] if result.checkpoints else None,
        "last_step": result.checkpoints[-1][0] if result.checkpoints else None,
        "parameters": result.n_parameters,
        "groups": result.groups,
        "windows": list(result.config.windows),
        "sketch": result.config.sketch.to_dict(),
        "rows": len(result.rows),
        "k_star_counts": {str(k): v for k, v in sorted(ks.items())},
        "gap_ratio_max": max(gr) if gr else None,
        "gap_ratio_last": gr[-1] if gr else None,
        "skipped": result.skipped,
    }


def _print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="spectral-edge analyze", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("checkpoints", f"{s['checkpoints']} (steps {s['first_step']} … {s['last_step']})")
    t.add_row("parameters", f"{s['parameters']:,} in {len(s['groups'])} group(s)")
    sk = s["sketch"]
    t.add_row("sketch", "exact" if sk["family"] == "exact" else f"{sk['family']} d={sk['dim']} seed={sk['seed']}")
    t.add_row("windows", ", ".join(map(str, s["windows"])))
    t.add_row("k* (group all)", ", ".join(f"k*={k}: {v}" for k, v in s["k_star_counts"].items()) or "-")
    if s["gap_ratio_max"] is not None:
        t.add_row("gap ratio", f"max {s['gap_ratio_max']:.3f}, last {s['gap_ratio_last']:.3f}")
    t.add_row("rows", f"{s['rows']} → {s['out']}")
    Console().print(t)


@app.command(epilog="Example:\n\n  spectral-edge demo --out spectral-edge-demo")
def demo(
    out: Path = typer.Option(Path("spectral-edge-demo"), "--out", "-o", help="Folder for checkpoints and results."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Make a small planted trajectory (k* = 2, rise/plateau/collapse), save it as checkpoints, analyse it."""
    from .engine import AnalysisConfig, analyze_checkpoints
    from .functional.sketch import SketchSpec
    from .io.tables import write_table
    from .synthetic import PlantedSpec, write_checkpoints

    spec = PlantedSpec(noise_corr=0.5, drift=2.0)
    ck = out / "checkpoints"
    if ck.exists():
        for p in ck.glob("step_*.safetensors"):
            p.unlink()
    write_checkpoints(ck, spec)
    bar, cb = _progress("analyze", quiet)
    with bar:
        result = analyze_checkpoints(ck, AnalysisConfig(windows=(10,), sketch=SketchSpec(dim=100)), progress=cb)
    metrics = write_table(result.rows, out / "metrics.csv", result.metadata())
    s = _summary(result, metrics)
    if not quiet:
        _print_summary(s)
        rise, plateau = spec.phase_bounds()
        typer.echo(f"planted: k* = {spec.planted_k} ({spec.rank} signal modes + drift), rise until step {rise}, plateau until step {plateau}, then collapse")
    typer.echo(f"results: {metrics}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``spectral-edge`` console script."""
    app(args=argv)


if __name__ == "__main__":
    main()
