"""``spectral-edge reproduce …``: re-run the papers' studies and write their documents.

The sub-app object is :data:`reproduce`: ``trajectories``, ``grokking`` and ``modes``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._app import app, echo_json, stderr_console

reproduce = typer.Typer(
    help="Re-run the papers' studies (resumable) and write a results document with figures.",
    no_args_is_help=True,
)
app.add_typer(reproduce, name="reproduce")

# options both studies share
_JOBS_OPT = typer.Option(2, "--jobs", "-j", min=1, help="Runs trained in parallel (one thread each).")
_NO_TRAIN_OPT = typer.Option(False, "--no-train", help="Train nothing; use the runs that already finished.")
_QUIET_OPT = typer.Option(False, "--quiet", "-q", help="No progress lines.")
_EVIDENCE_OPT = typer.Option(None, "--evidence", help="Also copy each finished run's config, summary, eval curve and "
                             "history (no weights) to this folder (e.g. docs/data/<study>), so the document can be "
                             "recomputed from it with --no-train.")


def _report(res: dict, as_json: bool, quiet: bool, **extra: object) -> None:
    """A reproduction's result: JSON (document, figures, missing runs, claims and ``extra``) or one
    line per claim with its verdict, then the document's path."""
    if as_json:
        echo_json({"doc": res["doc"], "figures": res["figures"], "missing": res["missing"], "claims": res["claims"],
                   **extra})
    elif not quiet:
        for c in res["claims"]:
            typer.echo(f"{c['verdict']:>18}  {c['claim']}")
        typer.echo(f"document: {res['doc']}")


def _progress(quiet: bool):
    """A one-line-per-event logger on stderr (None when quiet)."""
    if quiet:
        return None
    console = stderr_console()
    return lambda msg: console.print(f"[dim]reproduce:[/] {msg}")


@reproduce.command(
    "trajectories",
    epilog="Examples:\n\n"
    "  spectral-edge reproduce trajectories --out results/trajectories\n\n"
    "  nice -n 10 spectral-edge reproduce trajectories --out results/trajectories --jobs 2\n\n"
    "  spectral-edge reproduce trajectories --out /tmp/traj-quick --quick",
)
def trajectories(
    out: Path = typer.Option(Path("results/trajectories"), "--out", "-o",
                             help="Folder of the runs (one sub-folder per run), results.json and the JL cache."),
    jobs: int = _JOBS_OPT,
    quick: bool = typer.Option(False, "--quick", help="A few hundred steps per run: tests the pipeline end to end."),
    doc: Optional[Path] = typer.Option(
        None, "--doc", help="Markdown document to (re)write; figures go to its folder's figures/. "
        "Default: docs/trajectories.md, or OUT/trajectories.md with --quick."),
    study: list[str] = typer.Option([], "--study", help="Only these studies: lm, jl, optimizers, backbone, "
                                    "text (repeatable; default all)."),
    evidence: Optional[Path] = _EVIDENCE_OPT,
    no_train: bool = _NO_TRAIN_OPT,
    scale: Optional[str] = typer.Option(None, "--scale", hidden=True, help="full | quick | tiny (tests)."),
    as_json: bool = typer.Option(False, "--json", help="Print the claims table as JSON on stdout."),
    quiet: bool = _QUIET_OPT,
) -> None:
    """Language-model trajectory, JL accuracy, optimizer, backbone and real-text studies → a claims document.

    Trains what is missing in OUT, analyses every study, rewrites the document (claims, measurements, verdicts).
    """
    from ..reproduce import STUDIES, reproduce_trajectories

    name = scale or ("quick" if quick else "full")
    if doc is None:
        doc = Path("docs/trajectories.md") if name == "full" else out / "trajectories.md"
    chosen = tuple(study) or STUDIES
    log = _progress(quiet)
    res = reproduce_trajectories(out, jobs=jobs, scale=name, studies=chosen, doc=doc, train=not no_train,
                                 evidence=evidence, log=log)
    if as_json:
        echo_json({"doc": res["doc"], "figures": res["figures"], "claims": res["claims"]})
    elif not quiet:
        for c in res["claims"]:
            typer.echo(f"{c['verdict']:>18}  {c['claim']}")
        typer.echo(f"document: {res['doc']}")


@reproduce.command(
    "grokking",
    epilog="Examples:\n\n"
    "  spectral-edge reproduce grokking --out results/grokking --jobs 2\n\n"
    "  spectral-edge reproduce grokking --out results/grokking --no-train\n\n"
    "  spectral-edge reproduce grokking --out /tmp/grok-quick --quick",
)
def grokking(
    out: Path = typer.Option(Path("results/grokking"), "--out", "-o",
                             help="Folder of the runs (one sub-folder per run) and grokking_runs.csv."),
    jobs: int = _JOBS_OPT,
    quick: bool = typer.Option(False, "--quick", help="p = 23, one seed, a few hundred steps: tests the pipeline."),
    doc: Optional[Path] = typer.Option(
        None, "--doc", help="Markdown document to (re)write. Default: docs/grokking.md, or OUT/grokking.md with --quick."),
    evidence: Optional[Path] = _EVIDENCE_OPT,
    no_sweep: bool = typer.Option(False, "--no-sweep", help="Leave out the lead-time runs (slower learning rates "
                                                            "and Dyck)."),
    no_train: bool = _NO_TRAIN_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the document's path and the per-run table as JSON."),
    quiet: bool = _QUIET_OPT,
) -> None:
    """Grokking early warning: 12 grokking runs + 15 controls (development), 8 final-check runs, the
    lead-time sweep and Dyck → docs/grokking.md.

    Trains what is missing in OUT (resumable, JOBS at a time), scores every alarm under the
    cross-validation protocol on the finished runs and rewrites the document with the papers'
    numbers beside ours.
    """
    from ..reproduce import reproduce_grokking

    if doc is None:
        doc = out / "grokking.md" if quick else Path("docs/grokking.md")
    log = _progress(quiet or as_json)

    def on_event(kind, run, summary) -> None:
        extra = f" grok step {summary.get('grok_step')}, {summary.get('wall_seconds', 0):.0f} s" if summary else ""
        log(f"{kind} {run.name}{extra}")

    path = reproduce_grokking(out, doc, jobs=jobs, quick=quick, sweep=not no_sweep, train=not no_train, evidence=evidence,
                              on_event=on_event if log else None, log=log or None)
    if as_json:
        import pandas as pd

        table = pd.read_csv(out / "grokking_runs.csv")
        echo_json({"doc": str(path), "runs": json.loads(table.to_json(orient="records"))})
    else:
        typer.echo(f"document: {path}")


@reproduce.command(
    "modes",
    epilog="Examples:\n\n"
    "  spectral-edge reproduce modes --out results/modes --jobs 2\n\n"
    "  spectral-edge reproduce modes --out results/modes --no-train\n\n"
    "  spectral-edge reproduce modes --out /tmp/modes-quick --quick\n\n"
    "OUT may be the folder of `spectral-edge reproduce grokking`: its twelve grokking runs have the same configs, "
    "so the two commands share them.",
)
def _modes_command(
    out: Path = typer.Option(Path("results/modes"), "--out", "-o",
                             help="Folder of the runs (one sub-folder per run), modes_results.json and the cache."),
    jobs: int = _JOBS_OPT,
    quick: bool = typer.Option(False, "--quick", help="p = 23, one seed, 150 steps: tests the pipeline."),
    doc: Optional[Path] = typer.Option(
        None, "--doc", help="Markdown document to (re)write; figures go to its folder's figures/. "
        "Default: docs/modes.md, or OUT/modes.md with --quick."),
    evidence: Optional[Path] = _EVIDENCE_OPT,
    no_train: bool = _NO_TRAIN_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the document's path, the claims and the choice rows "
                                 "as JSON."),
    quiet: bool = _QUIET_OPT,
) -> None:
    """Functional modes of add, sub, mul, x²+y² (3 seeds, p = 97) and the tri-task model → docs/modes.md.

    Trains what is missing in OUT (resumable, JOBS at a time), computes every run's modes (and, on seed 42,
    the uncentred window, W = 10, ε × 0.2 and × 4), judges the claims and rewrites the document.
    """
    from ..reproduce import reproduce_modes

    if doc is None:
        doc = out / "modes.md" if quick else Path("docs/modes.md")
    res = reproduce_modes(out, doc, jobs=jobs, quick=quick, train=not no_train, evidence=evidence,
                          log=_progress(quiet or as_json))
    _report(res, as_json, quiet, choices=res["choice_rows"], failed=res["failed"])


@reproduce.command(
    "interventions",
    epilog="Examples:\n\n"
    "  spectral-edge reproduce interventions --out results/interventions --jobs 2\n\n"
    "  spectral-edge reproduce interventions --out results/interventions --no-train\n\n"
    "  spectral-edge reproduce interventions --out /tmp/iv-quick --quick\n\n"
    "The baselines keep a checkpoint every 100 steps (the execution basis is taken over the whole run).",
)
def _interventions_command(
    out: Path = typer.Option(Path("results/interventions"), "--out", "-o",
                             help="Folder of the runs (one sub-folder per run) and interventions_results.json."),
    jobs: int = _JOBS_OPT,
    quick: bool = typer.Option(False, "--quick", help="p = 23, one seed, 400 steps, two arms: tests the pipeline."),
    doc: Optional[Path] = typer.Option(
        None, "--doc", help="Markdown document to (re)write; figures go to its folder's figures/. "
        "Default: docs/interventions.md, or OUT/interventions.md with --quick."),
    evidence: Optional[Path] = _EVIDENCE_OPT,
    no_train: bool = _NO_TRAIN_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the document's path, the claims and the missing runs "
                                 "as JSON."),
    quiet: bool = _QUIET_OPT,
) -> None:
    """Interventions (METHODS §8) on modular addition (p = 97, 3 seeds) and Dyck → docs/interventions.md.

    Trains what is missing in OUT (the baselines first, whose execution basis the arms use; resumable, JOBS at
    a time): kick and noise, the projection at s = 0.25 … 1, rank-3 keep/remove of the SED or a random
    subspace; then measures every grok step by the papers' criteria, judges the claims and rewrites the document.
    """
    from ..reproduce import reproduce_interventions

    if doc is None:
        doc = out / "interventions.md" if quick else Path("docs/interventions.md")
    res = reproduce_interventions(out, doc, jobs=jobs, quick=quick, train=not no_train, evidence=evidence,
                                  log=_progress(quiet or as_json))
    _report(res, as_json, quiet)
