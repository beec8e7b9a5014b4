"""``spectral-edge phases | coupling | thesis``: whole-run analyses of a history, a run folder or
an ``analyze`` table (see :mod:`spectral_edge.analysis`).

Each command analyses every window size W of the run unless ``--window`` picks some, prints
a table (or ``--json``), and writes ``--out`` (.csv, .parquet or .jsonl) when asked: checked
before any work (never a file the command reads, never an existing file without
``--overwrite``), written atomically once everything is computed, never empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ._app import app, echo_json, parse_windows

_RUN_HELP = "A history.jsonl, a run folder holding one, or a table written by `spectral-edge analyze`."
_EPILOG_RUN = "RUN is a monitor history (history.jsonl), a run folder holding one, or an `analyze` output table."
# what every analysis command takes, defined once
_RUN_ARG = typer.Argument(..., help=_RUN_HELP)
_WINDOW_OPT = typer.Option([], "--window", "-w", help="Window size W; repeat or comma-separate, or 'all' (the default: every W of the run).")
_GROUP_OPT = typer.Option(None, "--group", "-g", help="Parameter group (default: all).")
_JSON_OPT = typer.Option(False, "--json", help="Print JSON on stdout.")
_QUIET_OPT = typer.Option(False, "--quiet", "-q", help="No summary table.")
_OVERWRITE_OPT = typer.Option(False, "--overwrite", help="Replace an existing output file (never one of the inputs).")


def _windows(data: Any, window: list[str]) -> tuple[int, ...]:
    if not window or [w.strip().lower() for w in window] == ["all"]:
        return data.windows
    ws = parse_windows(window)
    for w in ws:
        data.resolve_window(w)  # raises on an absent W
    return ws


def _load(run: Path, val: Optional[Path], stream: str, group: Optional[str], outs: dict[str, Optional[Path]],
          overwrite: bool) -> tuple[Any, str]:
    """Check the output paths' formats, read the run, check the outputs against what was read
    (:func:`~spectral_edge.io.tables.check_outputs`), drop the windows that mix sample spacings
    (:meth:`~spectral_edge.io.run.RunData.evenly_spaced`, with a note on stderr), resolve the
    group: (RunData, group). All before any work."""
    from ..io.run import load_run
    from ..io.tables import check_outputs, table_format

    for p in outs.values():
        if p is not None:
            table_format(p)
    data = load_run(run, val=val, stream=stream)
    check_outputs(outs, data.files.items(), overwrite=overwrite)
    even = data.evenly_spaced()  # windows across a cadence schedule's boundary mix spacings: not analysed
    if even is not data:
        import typer

        typer.echo(f"note: {run}: {even.notes[-1]}", err=True)
    return even, even.resolve_group(group)


def _floats(text: str, flag: str) -> tuple[float, ...]:
    from ..errors import ConfigError

    out = []
    for part in text.split(","):
        part = part.strip()
        if part:
            try:
                out.append(float(part))
            except ValueError:
                raise ConfigError(f"{flag} takes comma-separated numbers (e.g. 1.15,1.2), got {part!r}") from None
    if not out:
        raise ConfigError(f"{flag} needs at least one number")
    return tuple(out)


def _write(tables: dict[str, tuple[list[dict], Optional[Path]]], meta: dict) -> dict[str, Optional[str]]:
    """Write every asked-for table (flag → (rows, path or None)), after checking that none is
    empty (an empty output is an error and the old file stays); flag → the path written."""
    from ..errors import ConfigError
    from ..io.tables import write_table

    for flag, (rows, out) in tables.items():
        if out is not None and not rows:
            raise ConfigError(f"{flag} {out}: nothing to write (no rows were computed); no file was written")
    written: dict[str, Optional[str]] = {}
    for flag, (rows, out) in tables.items():
        written[flag] = None
        if out is not None:
            write_table(rows, out, meta)
            written[flag] = str(out)
    return written


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "-"
        if v == 0:
            return "0"
        if abs(v) < 10 ** (-digits) or abs(v) >= 1e5:
            return f"{v:.2e}"
        return f"{v:.1f}" if abs(v) >= 100 else f"{v:.{digits}f}"
    return str(v)


def _print_table(title: str, columns: list[str], rows: list[list[Any]], footer: list[str] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[_fmt(v) for v in r])
    con = Console()
    con.print(t)
    for line in footer:
        con.print(line)


def _dominant(counts: dict) -> str:
    total = sum(counts.values())
    if not total:
        return "-"
    name, k = max(counts.items(), key=lambda kv: kv[1])
    return f"{name} {100 * k / total:.0f}%"


# ---------------------------------------------------------------------- phases
@app.command(epilog="Examples:\n\n  spectral-edge phases runs/add-s42/ --method all\n\n"
             "  spectral-edge phases history.jsonl -w 10 --method changepoint --algo pelt --penalty 0.5\n\n"
             "  spectral-edge phases metrics.parquet --out phases.csv --json\n\n" + _EPILOG_RUN)
def phases(
    run: Path = _RUN_ARG,
    window: list[str] = _WINDOW_OPT,
    group: Optional[str] = _GROUP_OPT,
    column: str = typer.Option("gap_ratio", "--column", "-c", help="Spectral column to segment."),
    stream: str = typer.Option("sed", "--stream", help="History rows to read: sed (updates) or grad (gradient-SED)."),
    method: str = typer.Option("all", "--method", "-m", help="plateau | derivative | threshold | changepoint | all."),
    frac: float = typer.Option(0.85, "--frac", help="plateau: R ≥ frac·peak."),
    smooth_window: int = typer.Option(5, "--smooth", help="derivative: centred moving-average width (odd, samples)."),
    deriv_threshold: float = typer.Option(0.01, "--deriv-threshold", help="derivative: |dR/dsample| threshold."),
    tau: float = typer.Option(1.30, "--tau", help="threshold: plateau where R ≥ τ."),
    algo: str = typer.Option("binseg", "--algo", help="changepoint: binseg | bottomup | dynp | window | pelt."),
    cost: str = typer.Option("l2", "--cost", help="changepoint: ruptures cost (l2, l1, rbf, normal, …)."),
    penalty: Optional[float] = typer.Option(None, "--penalty", help="changepoint, pelt: penalty (default 2σ̂²·log n)."),
    n_bkps: int = typer.Option(2, "--n-bkps", help="changepoint: number of breakpoints (not pelt)."),
    min_size: int = typer.Option(3, "--min-size", help="changepoint: shortest segment in samples."),
    taus: str = typer.Option("1.15,1.20,1.25,1.30", "--taus", help="Collapse-event thresholds τ."),
    primary_tau: float = typer.Option(1.20, "--primary-tau", help="The τ reported as the collapse step."),
    val: Optional[Path] = typer.Option(None, "--val", help="CSV with step,val_loss (merged into the logged metrics)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Per-row labels: .csv, .parquet or .jsonl."),
    overwrite: bool = _OVERWRITE_OPT,
    as_json: bool = _JSON_OPT,
    quiet: bool = _QUIET_OPT,
) -> None:
    """Rise, plateau and collapse of the gap ratio, and the collapse step for each τ."""
    from ..analysis.phases import PHASE_METHODS, PhaseConfig, detect_phases
    from ..errors import ConfigError
    from ..io.tables import table_format

    if out is not None:
        table_format(out)
    methods = PHASE_METHODS if method == "all" else (method,)
    if method != "all" and method not in PHASE_METHODS:
        raise ConfigError(f"unknown --method {method!r}; choose one of {', '.join(PHASE_METHODS)} or all")
    base = PhaseConfig(frac=frac, smooth_window=smooth_window, deriv_threshold=deriv_threshold, tau=tau, algo=algo,
                       cost=cost, penalty=penalty, n_bkps=n_bkps, min_size=min_size,
                       taus=_floats(taus, "--taus"), primary_tau=primary_tau)
    data, g = _load(run, val, stream, group, {"--out": out}, overwrite)
    results, table = [], []
    for W in _windows(data, window):
        ser = data.spectral_series(column, W, g)
        per_method = {}
        for m in methods:
            from dataclasses import replace

            ph = replace(detect_phases(ser.steps, ser.values, replace(base, method=m)), column=column, window=W, group=g)
            per_method[m] = ph
            results.append(ph.to_dict())
        for i, st in enumerate(ser.steps.tolist()):
            row = {"step": st, "window": W, "group": g, column: float(ser.values[i])}
            for m, ph in per_method.items():
                row[f"phase_{m}"] = ph.labels[i]
            table.append(row)
    written = _write({"--out": (table, out)}, {"command": "phases", "source": str(run), "column": column,
                                               "config": {k: v for k, v in base.__dict__.items() if k != "method"}})["--out"]
    if as_json:
        echo_json({"source": str(run), "column": column, "group": g, "results": results, "out": written})
    elif not quiet:
        rows = [[r["window"], r["method"],
                 "-" if r["peak_step"] is None else f"{_fmt(r['peak_value'])} @ {r['peak_step']}",
                 "-" if r["plateau_start"] is None else f"{r['plateau_start']}–{r['plateau_end']}",
                 r["collapse_start"], r["collapse_step"]] for r in results]
        cols = ["W", "method", f"peak {column}", "plateau (steps)", "collapse from", f"<{primary_tau:g} at"]
        foot = [f"W={r['window']} {r['method']}: {r['reason']}" for r in results if r["reason"]]
        if written:
            foot.append(f"rows → {written}")
        _print_table(f"spectral-edge phases ({column}, group {g})", cols, rows, foot)


# ---------------------------------------------------------------------- coupling
@app.command(epilog="Examples:\n\n  spectral-edge coupling runs/add-s42/\n\n"
             "  spectral-edge coupling metrics.csv --val val.csv -w 10,20 --max-lag 8\n\n"
             "  spectral-edge coupling history.jsonl --val-column test_loss --out coupling.csv --lags-out lags.csv\n\n"
             + _EPILOG_RUN)
def coupling(
    run: Path = _RUN_ARG,
    window: list[str] = _WINDOW_OPT,
    group: Optional[str] = _GROUP_OPT,
    column: str = typer.Option("gap_ratio", "--column", "-c", help="Spectral column to couple with the loss."),
    stream: str = typer.Option("sed", "--stream", help="History rows to read: sed or grad."),
    val: Optional[Path] = typer.Option(None, "--val", help="CSV with step,val_loss (for tables that carry no losses)."),
    val_column: Optional[str] = typer.Option(None, "--val-column", help="Validation metric (default: val_loss, else test_loss)."),
    max_lag: Optional[int] = typer.Option(None, "--max-lag", help="Largest |lag| in samples (default min(10, n/4))."),
    degree: int = typer.Option(3, "--degree", help="Degree of the polynomial detrend in step."),
    align_mode: str = typer.Option("interpolate", "--align", help="interpolate (loss at the spectral steps) | common."),
    permutations: int = typer.Option(999, "--permutations", help="Circular shifts for the permutation p (0: skip)."),
    seed: int = typer.Option(0, "--seed", help="Seed for drawing shifts when there are more than --permutations."),
    ess: str = typer.Option("bretherton", "--ess", help="Effective sample size: bretherton | bartlett."),
    granger_lag: int = typer.Option(4, "--granger-lag", help="Largest Granger lag order (AIC picks; 0: skip)."),
    phase_method: str = typer.Option("plateau", "--phase-method", help="Detector for phase-specific correlations."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="One row per W: .csv, .parquet or .jsonl."),
    lags_out: Optional[Path] = typer.Option(None, "--lags-out", help="One row per (W, lag) with r."),
    overwrite: bool = _OVERWRITE_OPT,
    as_json: bool = _JSON_OPT,
    quiet: bool = _QUIET_OPT,
) -> None:
    """Detrended lagged correlation with validation loss per W, the lag flip, significance and Granger."""
    from ..analysis.coupling import LagFlip, run_coupling
    from ..analysis.phases import PhaseConfig

    data, g = _load(run, val, stream, group, {"--out": out, "--lags-out": lags_out}, overwrite)
    data.validation(val_column)  # fail early with a clear message
    pc = PhaseConfig(method=phase_method)
    results = tuple(run_coupling(data, W, g, column, val_column, phase_config=pc, max_lag=max_lag, degree=degree,
                                 how=align_mode, n_perm=permutations, seed=seed, ess_method=ess,
                                 granger_max_lag=granger_lag) for W in _windows(data, window))
    flip = LagFlip(results)
    summaries = [r.to_dict() for r in results]
    meta = {"command": "coupling", "source": str(run), "column": column}
    done = _write({"--out": (summaries, out), "--lags-out": ([row for r in results for row in r.lag_rows()], lags_out)},
                  meta)
    written, lag_written = done["--out"], done["--lags-out"]
    if as_json:
        echo_json({"source": str(run), "column": column, "target": results[0].target if results else None,
                   "group": g, "results": summaries, "lag_flip": flip.to_dict(), "out": written,
                   "lags_out": lag_written})
    elif not quiet:
        rows = [[s["window"], s["n"], s["peak_lag"], _fmt(s["peak_r"], 2), f"{s['positive_lag']} ({_fmt(s['positive_r'], 2)})",
                 s["p_perm"], s["p_eff"], s["granger_p"], s["granger_reverse_p"]] for s in summaries]
        cols = ["W", "n", "lag", "r", "lag r>0", "p perm", "p ESS", "Granger", "reverse"]
        foot = [f"lag = most negative r (lag > 0: {column} leads {results[0].target if results else 'the loss'}); "
                "Granger: spectral → loss, reverse: loss → spectral (p values)",
                f"lag flip: {'yes ' + str(list(flip.flips)) if flip.flip else 'no'} (signs {list(flip.signs)})"]
        for r in results:
            ph = ", ".join(f"{p.phase} r={_fmt(p.r_raw, 2)} (n={p.n})" for p in r.phases if p.n)
            if ph:
                foot.append(f"W={r.window} by phase: {ph}")
        foot += [f"rows → {p}" for p in (written, lag_written) if p]
        _print_table(f"spectral-edge coupling ({column} vs {results[0].target if results else '?'}, group {g})",
                     cols, rows, foot)


# ---------------------------------------------------------------------- thesis
@app.command(epilog="Examples:\n\n  spectral-edge thesis runs/add-s42/\n\n"
             "  spectral-edge thesis metrics.parquet --lr 1e-3 --n-parameters 290000 --out thesis.csv\n\n"
             "‖ΔG‖ comes from eigenvalue changes between consecutive windows (a lower bound of the exact value; "
             "the exact one needs the Gram matrices, see spectral_edge.analysis.thesis).\n\n" + _EPILOG_RUN)
def thesis(
    run: Path = _RUN_ARG,
    window: list[str] = _WINDOW_OPT,
    group: Optional[str] = _GROUP_OPT,
    stream: str = typer.Option("sed", "--stream", help="History rows to read: sed or grad."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate η (default: the logged lr at each step)."),
    n_parameters: Optional[int] = typer.Option(None, "--n-parameters", "-P", help="P for the BBP threshold (default: from the history)."),
    low: Optional[float] = typer.Option(None, "--low", help="Label windows: A below this: plateau (with --high; "
                                        "no default cut-off is supported, so none is applied)."),
    high: Optional[float] = typer.Option(None, "--high", help="Label windows: A above this: forgetting (with --low)."),
    val: Optional[Path] = typer.Option(None, "--val", help="CSV with step and metric columns (e.g. lr) to merge."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Per-window rows: .csv, .parquet or .jsonl."),
    overwrite: bool = _OVERWRITE_OPT,
    as_json: bool = _JSON_OPT,
    quiet: bool = _QUIET_OPT,
) -> None:
    """Adiabatic parameter A, Davis–Kahan stability, gap dynamics, BBP threshold."""
    from ..analysis.thesis import run_thesis

    data, g = _load(run, val, stream, group, {"--out": out}, overwrite)
    reports = [run_thesis(data, W, g, lr=lr, n_parameters=n_parameters, low=low, high=high)
               for W in _windows(data, window)]
    summaries = [r.to_dict() for r in reports]
    written = _write({"--out": ([row for r in reports for row in r.rows], out)},
                     {"command": "thesis", "source": str(run), "delta_g_method": reports[0].delta_g_method})["--out"]
    if as_json:
        echo_json({"source": str(run), "group": g, "results": summaries, "out": written})
    elif not quiet:
        rows = [[s["window"], s["A_median"], f"{_fmt(s['A_q25'], 3)}–{_fmt(s['A_q75'], 3)}", s["alpha_kstar_median"],
                 s["gap_slope"], s["gap_r2"], s["d_crit"], s["n_detectable"], s["maximal_fraction"]] for s in summaries]
        cols = ["W", "A med", "A 25–75%", "α(k*)", "ġ slope", "R²", "d_crit", "det.", "max"]
        if low is not None:
            rows = [r[:3] + [_dominant(s["regimes"])] + r[3:] for r, s in zip(rows, summaries)]
            cols = cols[:3] + ["regime"] + cols[3:]
        notes = sorted({n for s in summaries for n in s["notes"]})
        foot = [f"‖ΔG‖: {reports[0].delta_g_method}; A = ‖ΔG‖/g² per sample interval, of the updates per unit "
                "learning rate (the thesis' ‖ΔG‖/(η g²) with η in units of the step; invariant to rescaling η); "
                "α(k*): median Davis–Kahan stability at k*; ġ = dg/dt = a + slope·g; "
                "det.: modes above the BBP threshold d_crit (last window); max: fraction of windows where k* "
                "has the largest ratio"]
        if low is not None:
            foot.append(f"regime from your cut-offs (no default is supported): A < {low:g} plateau, ≤ {high:g} "
                        "transition, above forgetting")
            foot += [f"W={s['window']} ({s['rows']} windows): " + ", ".join(f"{k} {v}" for k, v in s["regimes"].items())
                     for s in summaries]
        foot += [f"note: {n}" for n in notes]
        if written:
            foot.append(f"rows → {written}")
        _print_table(f"spectral-edge thesis (group {g})", cols, rows, foot)
