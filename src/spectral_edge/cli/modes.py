"""``spectral-edge modes RUN``: what the leading update directions of a modular-arithmetic run
compute (functional modes, METHODS.md §7; :mod:`spectral_edge.analysis.modes`).

Prints a table (direction, role, σ, best basis, peak ω, top-1 share F, F over the uniform
level, and F in the run's primary basis) with the edge beside its nulls (bulk and random
directions), then the claims computed for this run. ``--json`` prints the result object
(``directions``, ``summary``, ``notes``…); ``--out FILE.json`` writes the same object with every
spectrum's shares; ``--plot FILE.png|.svg|.pdf`` draws the spectra and the response heat maps.
Outputs are checked before any work (never one of the run's files, never an existing file
without ``--overwrite``) and written atomically once everything is computed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ._app import app, echo_json

_PLOT_FORMATS = (".png", ".svg", ".pdf")
_RUN_FILES = ("config.json", "summary.json", "model.safetensors", "snapshots.safetensors")


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _check_paths(run: Path, out: Optional[Path], plot: Optional[Path], overwrite: bool) -> None:
    from ..errors import ConfigError
    from ..io.tables import check_outputs

    if out is not None and out.suffix.lower() != ".json":
        raise ConfigError(f"--out {out}: the result is JSON; give a .json file")
    if plot is not None and plot.suffix.lower() not in _PLOT_FORMATS:
        raise ConfigError(f"--plot {plot}: unknown figure format {plot.suffix or '(no extension)'!r}; "
                          f"use {', '.join(_PLOT_FORMATS)}")
    inputs = [(name, run / name) for name in _RUN_FILES]
    check_outputs({"--out": out, "--plot": plot}, inputs, overwrite=overwrite)


def _claims(s: dict[str, Any]) -> list[str]:
    """The summary as lines under the table."""
    lines = []
    if s.get("edge"):
        n = s["nulls"]
        lines.append(f"edge vs nulls ({s['basis']} basis, uniform {_fmt(s['uniform'])}): edge F {_fmt(s['edge']['F_mean'])}, "
                     f"bulk {_fmt(n['bulk_F_mean'])}, random {_fmt(n['random_F_mean'])} "
                     f"(max {_fmt(n['random_F_max'])}); edge/random {_fmt(n['edge_over_random'], 2)}")
    if "addition" in s:
        a = s["addition"]
        lines.append(f"addition: edge peaks at ω = {a['omegas']} in the add basis; one ω: {'yes' if a['one_omega'] else 'no'}")
    if "multiplication" in s:
        m = s["multiplication"]
        lines.append(f"multiplication: dlog F {_fmt(m['dlog_F_mean'])} ÷ raw-product F {_fmt(m['mul_F_mean'])} = "
                     f"{_fmt(m['dlog_over_mul'], 2)}× (dlog ω {m['dlog_omegas']})")
    if "subtraction" in s:
        b = s["subtraction"]
        lines.append(f"subtraction: edge ω {b['omegas']} ({b['n_omegas']} distinct), "
                     f"{_fmt(b['modes_mean'], 1)} effective modes per direction")
    if "x2y2" in s and "r2" in s["x2y2"]:
        x = s["x2y2"]
        r2 = ", ".join(f"{k} {_fmt(v)}" for k, v in x["r2"].items())
        lines.append(f"x²+y²: edge R² {r2}; cross terms add {_fmt(x.get('cross_added'))} "
                     f"(full/combined {_fmt(x.get('cross_gain'), 2)}×)")
    if "multitask" in s:
        t = s["multitask"]
        lines.append(f"multitask ({'+'.join(t['ops'])}): addition frequency ω = {t['add_omega']}; additive share there: "
                     f"edge {_fmt(t['add_share_at_omega'])}, bulk {_fmt(t['bulk_share_at_omega'])}, "
                     f"random {_fmt(t['random_share_at_omega'])}")
    return lines


def _print(res: Any, written: dict[str, Optional[str]], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    basis = res.summary.get("basis")
    t = Table(title=f"spectral-edge modes {res.source} ({','.join(res.ops)} mod {res.modulus}, step {res.step}, "
                    f"W = {res.config.window}{'' if res.config.centred else ' uncentred'})", title_justify="left")
    for c in ("dir", "role", "σ", "best basis", "ω", "F", "F/uniform", f"F ({basis})"):
        t.add_column(c, justify="left" if c in ("dir", "role", "best basis") else "right")
    dirs = list(res.directions)
    for i, d in enumerate(dirs):
        best = d.bases.get(d.best_basis) if d.best_basis else None
        prim = d.bases.get(basis) if basis else None
        t.add_row(d.label, d.role, _fmt(d.sigma, 4), d.best_basis or "-", _fmt(best.omega if best else None),
                  _fmt(best.F if best else None), _fmt(best.ratio_to_uniform if best else None, 1),
                  _fmt(prim.F if prim else None), end_section=i + 1 < len(dirs) and dirs[i + 1].role != d.role)
    con = Console()
    con.print(t)
    for line in _claims(res.summary):
        con.print(line)
    for n in res.notes:
        con.print(f"note: {n}")
    for flag, p in written.items():
        if p:
            con.print(f"{flag} → {p}")
    con.print(f"({seconds:.1f} s)")


def _plot(res: Any, path: Path) -> None:
    """The spectra of every direction in the primary basis and the heat maps of f_k(a, b) of the
    edge directions (:func:`spectral_edge.report.modes_figures.draw_modes`, the report's drawing),
    written atomically."""
    from .._deps import require
    from ..experiments.checkpoint import replace_atomically
    from ..report.modes_figures import draw_modes

    require("matplotlib", "plot", "--plot")
    from matplotlib.figure import Figure

    edge = res.by_role("edge") or list(res.directions[:1])
    fields = {d.label: res.field_of(d) for d in edge}
    n = len(fields)
    fig = Figure(figsize=(3.2 * max(n, 2.5), 6.4 if n > 1 else 3.6), layout="constrained")
    draw_modes(fig, res.to_dict(spectra=True), fields,
               title=f"functional modes of {res.source or 'the model'}: {','.join(res.ops)} mod {res.modulus}, "
                     f"step {res.step}")
    replace_atomically(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lower().lstrip("."), dpi=110))


@app.command(epilog="Examples:\n\n  spectral-edge modes runs/add-42\n\n"
             "  spectral-edge modes runs/mul-42 --basis dlog --random 10 --json\n\n"
             "  spectral-edge modes runs/x2y2-42 --uncentred --out modes.json --plot modes.png\n\n"
             "RUN is a run folder of a modular task written by `spectral-edge grok` or `run` (it keeps the last "
             "W + 1 snapshots of the attention weights in snapshots.safetensors).")
def modes(
    run: Path = typer.Argument(..., help="A modular-arithmetic run folder (grok / run)."),
    directions: int = typer.Option(8, "--directions", "-k", help="Update directions v1…vk from the window's SVD."),
    edge: int = typer.Option(3, "--edge", help="The first this many directions are the edge, the rest the bulk."),
    window: int = typer.Option(20, "--window", "-w", help="W: the window's updates (needs W + 1 snapshots)."),
    epsilon: float = typer.Option(0.005, "--epsilon", help="Perturbation size as a fraction of ‖θ_attn‖."),
    basis: str = typer.Option("auto", "--basis", help="auto | add | sub | mul | dlog | output (comma-separate several)."),
    random: int = typer.Option(5, "--random", help="Random unit directions in the same block (a null)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random directions."),
    uncentred: bool = typer.Option(False, "--uncentred", help="SVD of the raw updates (default: mean-centred)."),
    pairs: str = typer.Option("test", "--pairs", help="Pairs averaged into the profiles: test | train | all."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the result (with every spectrum) to FILE.json."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the spectra and heat maps to FILE.png/.svg/.pdf."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out/--plot file (never an input)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads (default: torch's choice)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table."),
) -> None:
    """Functional modes: perturb the model along each spectral-edge direction and fold the response into
    Fourier spectra over the task's symmetry bases, beside bulk and random nulls."""
    import time

    from ..analysis.modes import ModesConfig, run_modes
    from ..experiments.checkpoint import write_text_file
    from ..io.history import json_safe

    t0 = time.perf_counter()
    bases: Any = "auto" if basis.strip().lower() == "auto" else tuple(b.strip() for b in basis.split(",") if b.strip())
    cfg = ModesConfig(window=window, n_directions=directions, n_edge=edge, epsilon=epsilon, n_random=random, seed=seed,
                      centred=not uncentred, bases=bases, pairs=pairs)
    _check_paths(run, out, plot, overwrite)
    if plot is not None:
        from .._deps import require

        require("matplotlib", "plot", "--plot")  # before the work, not after it
    if threads:
        import torch

        torch.set_num_threads(threads)
    res = run_modes(run, cfg)
    if plot is not None:
        _plot(res, plot)
    written = {"--out": None, "--plot": str(plot) if plot is not None else None}
    if out is not None:
        text = json.dumps(json_safe(res.to_dict(spectra=True)), indent=1)
        write_text_file(out, text + "\n")
        written["--out"] = str(out)
    if as_json:
        echo_json({**res.to_dict(), "out": written["--out"], "plot": written["--plot"]})
    elif not quiet:
        _print(res, written, time.perf_counter() - t0)
