"""``spectral-edge analyze``: a folder of checkpoints → one row per window.

The output is checked before any checkpoint is read (a known format, not a folder, not a
checkpoint or inside a checkpoint folder, not an existing file unless ``--overwrite``), and
written atomically once every row is computed; a run that yields no row (fewer checkpoints
than the window needs) is an error that leaves the old output as it was. The flags reach the
library as given (``--sketch-dim 0`` is passed on as 0, for the library to refuse).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from ._app import app, echo_json, parse_windows, progress, warner


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
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output table if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Analyse a folder of checkpoints: one row per window with σ, k*, gap ratio and more."""
    from ..engine import AnalysisConfig, analyze_checkpoints
    from ..errors import CheckpointError, ConfigError
    from ..io.checkpoints import discover
    from ..io.tables import check_outputs, table_format, write_table
    from ..selection import Selection
    from ..stream.analyzer import default_sketch

    table_format(out)  # fail on a bad extension before any work
    windows = parse_windows(window)
    spec = default_sketch(windows, sketch, dim=sketch_dim, seed=seed, buckets=buckets)
    config = AnalysisConfig(windows=windows, sketch=spec,
                            selection=Selection(tuple(include), tuple(exclude), preset, group_by, include_buffers),
                            kstar_rule=kstar_rule)
    refs = discover(folder)
    check_outputs({"--out": out}, [("checkpoint", r.path) for r in refs], overwrite=overwrite)
    need = min(config.windows) + 1
    if len(refs) < need:
        raise ConfigError(f"{folder}: {len(refs)} checkpoints give {len(refs) - 1} update(s), fewer than the smallest "
                          f"window W = {min(config.windows)} needs ({need} checkpoints); no rows, nothing written "
                          "(use a smaller --window)")
    bar, cb = progress("analyze", quiet or as_json)
    warn = warner(as_json)
    try:
        with bar:
            result = analyze_checkpoints(folder, config, state_key=state_key, skip_bad=skip_bad,
                                         progress=cb, on_warning=warn, refs=refs)
    except CheckpointError as e:
        done = getattr(e, "partial", None)
        if done is not None and done.rows:
            partial = _partial_path(out, overwrite)
            write_table(done.rows, partial, done.to_dict())
            raise CheckpointError(e.path, f"{e.problem} (the {len(done.rows)} rows computed before it are in {partial})") from None
        raise
    if not result.rows:
        raise ConfigError(f"{folder}: {len(result.checkpoints)} usable checkpoints give no full window of "
                          f"W = {min(config.windows)}; no rows, nothing written to {out}")
    write_table(result.rows, out, result.to_dict())
    summary = _summary(result, out)
    if as_json:
        echo_json(summary)
    elif not quiet:
        _print_summary(summary)


def _partial_path(out: Path, overwrite: bool) -> Path:
    """Where the rows computed before a failure go: ``<out>.partial<ext>``, or, when that
    exists and ``overwrite`` is not given, the first free ``<out>.partial-<n><ext>``."""
    partial = out.with_name(f"{out.stem}.partial{out.suffix}")
    n = 2
    while partial.exists() and not overwrite:
        partial = out.with_name(f"{out.stem}.partial-{n}{out.suffix}")
        n += 1
    return partial


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
