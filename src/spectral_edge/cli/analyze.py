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
    "  spectral-edge analyze ckpts/ --group-by layer --exclude '*embed*' --out layers.jsonl\n\n"
    "  spectral-edge analyze hf://EleutherAI/pythia-160m --revisions 'step{0..143000..1000}' -w 10 --workers 4 "
    "--out pythia160m.parquet\n\n"
    "  spectral-edge analyze s3://bucket/runs/my-run/ -w 10 --out m.parquet --resume\n\n"
    "  spectral-edge analyze hf://EleutherAI/pythia-1b --revisions 're:step\\d+000' --scheduler tcp://dask:8786 "
    "--out p1b.parquet\n\n"
    "Reading a URL needs network access and pip install 'spectral-edge\\[remote]'; credentials come from the usual "
    "places (AWS_* variables and ~/.aws, HF_TOKEN, GOOGLE_APPLICATION_CREDENTIALS); HF_HUB_OFFLINE=1 reads the "
    "local Hugging Face cache only."
)
def analyze(
    folder: str = typer.Argument(..., help="Folder of checkpoints (safetensors, HF checkpoint-<step>/, .pt/.bin, DCP), "
                                 "or a URL: s3://bucket/run/, gs://…, https://…, hf://org/name (with --revisions)."),
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
    revisions: list[str] = typer.Option(
        [], "--revisions", "-r", help="Hub revisions of hf://org/name, one checkpoint each, the step read from the name: "
        "a list (step1000,step2000), a brace range ('step{0..143000..1000}') or 're:<regex>' over the repo's refs."),
    workers: int = typer.Option(1, "--workers", "-j", help="Sketch N checkpoints at once in N local processes "
                                "(results are bit-identical to --workers 1)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Sketch on a Dask cluster at this address "
                                            "(tcp://host:8786); pip install 'spectral-edge\\[distributed]'."),
    storage_option: list[str] = typer.Option([], "--storage-option", help="KEY=VALUE for the URL's filesystem "
                                             "(repeatable; e.g. anon=true, client_kwargs.endpoint_url=http://…)."),
    out: Path = typer.Option(Path("metrics.parquet"), "--out", "-o", help="Output table: .parquet, .csv or .jsonl."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output table if it exists."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the .parquet --out (or, when it does not exist yet, its .partial table "
        "left by a failed run): checkpoints already in it are skipped (the last W+1 are read again to fill the "
        "windows), the new rows are added, and the table is replaced atomically. The settings must be the same; "
        "new checkpoints must all come after the old ones. Without --resume or --overwrite an existing --out is "
        "never touched."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Analyse a folder (or store, or Hub revisions) of checkpoints: one row per window with σ, k*, gap ratio and more."""
    from ..engine import AnalysisConfig, analyze_checkpoints, check_distributable, list_checkpoints
    from ..errors import CheckpointError, ConfigError
    from ..io.remote import is_url, parse_storage_options
    from ..io.tables import check_outputs, table_format, write_table
    from ..parallel import make_executor
    from ..selection import Selection
    from ..stream.analyzer import default_sketch
    from .analyze_state import Meter, prior_run

    table_format(out)  # fail on a bad extension before any work
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: --resume keeps the rows of --out, "
                          "--overwrite replaces them")
    windows = parse_windows(window)
    spec = default_sketch(windows, sketch, dim=sketch_dim, seed=seed, buckets=buckets)
    config = AnalysisConfig(windows=windows, sketch=spec,
                            selection=Selection(tuple(include), tuple(exclude), preset, group_by, include_buffers),
                            kstar_rule=kstar_rule)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if scheduler is not None and workers != 1:
        raise ConfigError("--workers and --scheduler exclude each other: the Dask cluster has its own workers")
    options = parse_storage_options(storage_option)
    if options and not is_url(folder):
        raise ConfigError(f"--storage-option applies to URLs (s3://, hf://, …), not to the local folder {folder}")
    if out.exists() and not (overwrite or resume) and not out.is_dir():
        hint = "--resume to continue it, --overwrite to replace it" if out.suffix.lower() in (".parquet", ".pq") \
            else "--overwrite to replace it"
        raise ConfigError(f"--out {out}: exists; pass {hint}, or choose another file")
    check_distributable(config, workers, scheduler)
    prior = prior_run(out, config, resume)
    refs = list_checkpoints(folder, revisions=revisions or None, storage_options=options)
    local_inputs = [("checkpoint", r.path) for r in refs if not hasattr(r, "url")]
    check_outputs({"--out": out}, local_inputs, overwrite=overwrite or (resume and prior is not None and prior.is_out))
    need = min(config.windows) + 1
    if len(refs) < need:
        raise ConfigError(f"{folder}: {len(refs)} checkpoints give {len(refs) - 1} update(s), fewer than the smallest "
                          f"window W = {min(config.windows)} needs ({need} checkpoints); no rows, nothing written "
                          "(use a smaller --window)")
    if prior is not None and all(r.step in prior.steps for r in refs):
        _nothing_new(prior, out, as_json, quiet)
        return
    executor = make_executor(workers, scheduler)
    bar, cb = progress("analyze", quiet or as_json)
    warn = warner(as_json)
    meter = Meter(cb)
    try:
        with bar, executor:
            result = analyze_checkpoints(folder, config, state_key=state_key, skip_bad=skip_bad,
                                         progress=meter.progress, on_warning=warn, refs=refs, executor=executor,
                                         resume=sorted(prior.steps) if prior is not None else None,
                                         on_sketch=meter.sketched)
    except CheckpointError as e:
        done = getattr(e, "partial", None)
        if done is not None and (done.rows or prior is not None):
            rows = (prior.rows if prior is not None else []) + done.rows
            if rows:
                partial = _partial_path(out, overwrite or (prior is not None and not prior.is_out))
                write_table(rows, partial, _metadata(done, prior))
                raise CheckpointError(e.path, f"{e.problem} (the {len(rows)} rows computed before it are in {partial}; "
                                      "rerun with --resume to continue)") from None
        raise
    if prior is not None:
        result.rows = prior.rows + result.rows
        result.checkpoints = prior.checkpoints + result.checkpoints
        result.skipped = prior.skipped + result.skipped
    if not result.rows:
        raise ConfigError(f"{folder}: {len(result.checkpoints)} usable checkpoints give no full window of "
                          f"W = {min(config.windows)}; no rows, nothing written to {out}")
    write_table(result.rows, out, result.to_dict())
    summary = _summary(result, out)
    summary.update(meter.summary(executor))
    if as_json:
        echo_json(summary)
    elif not quiet:
        _print_summary(summary)


def _metadata(done, prior) -> dict:
    meta = done.to_dict()
    if prior is not None:
        meta["checkpoints"] = prior.checkpoints + meta["checkpoints"]
    return meta


def _nothing_new(prior, out: Path, as_json: bool, quiet: bool) -> None:
    msg = {"out": str(out), "checkpoints": len(prior.checkpoints), "new": 0, "rows": len(prior.rows)}
    if as_json:
        echo_json(msg)
    elif not quiet:
        from ._app import stderr_console

        stderr_console().print(f"nothing new: all {len(prior.checkpoints)} checkpoints are already in {prior.path}; "
                               f"{out} left as it was")
    if not prior.is_out:
        from ..io.tables import write_table

        write_table(prior.rows, out, prior.metadata)


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
