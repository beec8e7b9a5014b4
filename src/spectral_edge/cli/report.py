"""``spectral-edge report`` and ``spectral-edge compare``: self-contained HTML pages from
history files, run folders or ``analyze`` tables (never a live model).

An existing page (the default ``report.html`` in the run folder included) is replaced only
with ``--overwrite``; the check comes before any figure is drawn. The figures need
matplotlib (``spectral-edge[plot]``), checked first."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from ._app import app, echo_json, progress


class _LateProgress:
    """The shared progress bar, shown only once building has taken more than ``delay`` seconds."""

    def __init__(self, label: str, quiet: bool, delay: float = 1.0):
        self.bar, self.cb = progress(label, quiet)
        self.delay = delay
        self.t0 = time.monotonic()
        self.started = False

    def __call__(self, done: int, total: int, what: Any) -> None:
        if self.cb is None:
            return
        if not self.started:
            if time.monotonic() - self.t0 < self.delay:
                return
            self.bar.__enter__()
            self.started = True
        self.cb(done, total, what)

    def close(self) -> None:
        if self.started:
            self.bar.__exit__(None, None, None)
            self.started = False


@app.command(
    epilog="Examples:\n\n"
    "  spectral-edge report runs/add-wd1/        (writes runs/add-wd1/report.html)\n\n"
    "  spectral-edge report runs/a/history.jsonl --window 20 --out a.html\n\n"
    "  spectral-edge report metrics.parquet --group layer.0 --out layer0.html\n\n"
    "  spectral-edge report runs/a/ --json | jq .lead"
)
def report(
    source: Path = typer.Argument(..., help="Run folder (history.jsonl, eval.csv, summary.json, config.json: any subset), "
                                  "history .jsonl, or analyze table (.parquet/.csv/.jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file to write (default: report.html in the run folder, or beside the file)."),
    window: Optional[int] = typer.Option(None, "--window", "-w", help="Window size W to show (default: 10 when recorded, else the smallest)."),
    group: str = typer.Option("all", "--group", "-g", help="Parameter group to show (default: all)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the HTML file if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON on stdout (with the report's path under 'out')."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write a self-contained HTML report of one run.

    Figures: the singular values, k* and the gap ratio with phases, evaluation curves,
    early-warning signals (defect, g23, alarms), the JL error; and a plain-language summary
    with its caveats. The page opens offline. Ends by printing where it is."""
    from .._deps import require
    from ..report.build import write_report

    require("matplotlib", "plot", "the report's figures")
    bar = _LateProgress("report", quiet or as_json)
    try:
        path, facts = write_report(source, out, window, group, progress=bar, overwrite=overwrite)
    finally:
        bar.close()
    if as_json:
        echo_json({"out": str(path), **facts.to_dict()})
    else:
        typer.echo(f"report: {path}")


@app.command(
    epilog="Examples:\n\n"
    "  spectral-edge compare runs/adamw/ runs/muon/ --labels AdamW,Muon\n\n"
    "  spectral-edge compare runs/wd1/ runs/wd0/ --labels 'wd 1,wd 0' --out wd.html\n\n"
    "  spectral-edge compare runs/*/ --json | jq '.runs[].lead'"
)
def compare(
    runs: list[Path] = typer.Argument(..., help="Two or more run folders, histories or analyze tables."),
    labels: Optional[str] = typer.Option(None, "--labels", "-l", help="Comma-separated labels, one per run (default: folder/file names)."),
    out: Path = typer.Option(Path("compare.html"), "--out", "-o", help="HTML file to write."),
    window: Optional[int] = typer.Option(None, "--window", "-w", help="Window size W for every run (default: each run's own)."),
    group: str = typer.Option("all", "--group", "-g", help="Parameter group to show (default: all)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the HTML file if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary table (one object per run) as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Compare several runs on one self-contained HTML page.

    The report's figures overlaid, one colour and legend entry per run, and a summary table:
    peak gap ratio, modal k*, grok step, warning step and lead."""
    from .._deps import require
    from ..io.tables import check_outputs
    from ..report.build import resolve_out
    from ..report.compare import write_comparison

    require("matplotlib", "plot", "the comparison's figures")
    check_outputs({"--out": resolve_out(out, out)}, overwrite=overwrite, need_folder=False)
    bar = _LateProgress("compare", quiet or as_json)
    try:
        path, facts = write_comparison(runs, labels, out, window, group, progress=bar)
    finally:
        bar.close()
    if as_json:
        echo_json({"out": str(path), "runs": [f.to_dict() for f in facts]})
    else:
        typer.echo(f"comparison: {path}")
