"""Reading a run into what a report shows (:class:`~.view.RunView`): :func:`load_view`.

A *source* is any of:

- a run folder ``RUN_DIR`` holding any subset of ``history.jsonl`` (the monitor's history),
  ``eval.csv`` (``step, train_loss, train_acc, test_loss, test_acc``), ``summary.json``
  (``grok_step``, ``warning_step``, ``final_test_acc``, ``history``…), ``config.json``, or
  an ``analyze`` table ``metrics.{parquet,csv,jsonl}``;
- a history file (JSON lines with ``kind``); the files above beside it are read too;
- an ``analyze`` table (``.parquet``, ``.csv``, ``.jsonl`` without ``kind``).

The files are read by :func:`spectral_edge.io.run.read_run` (the library's one reader of
runs, with its one rule for merging evaluation rows, its one grok step and its one meaning of
"no window given": the smallest W recorded). :func:`load_view` turns what it read into a :class:`~.view.RunView` (one window
size W and one parameter group), finds the grok step and the early-warning step, and the
phases of the gap ratio (:mod:`spectral_edge.analysis.phases`); the defect onset is the
papers' rule (:mod:`spectral_edge.detectors.onset`). Whatever is missing becomes a note,
never an error, as long as there is something to plot.

**Functional modes** (:func:`load_modes`): a run folder of a modular task (``config.json`` with
task ``modular`` or ``multitask``) that kept ``snapshots.safetensors`` gets its modes
(:func:`spectral_edge.analysis.modes.run_modes` with the default :class:`ModesConfig`, a few
seconds; W = 20, or fewer when the run kept fewer snapshots, with a note), or, when the folder
holds a ``modes.json`` written by ``spectral-edge modes RUN --out RUN/modes.json`` that is newer
than the snapshots and the model, that file's record (its choices, e.g. ``--uncentred``, are the
ones shown). A modular run without snapshots gets a note saying why there is no modes section;
other runs get nothing. A damaged snapshots file does not stop the report: the modes section says
what is wrong with which file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.phases import detect_phases
from ..detectors.signals import primary_window
from ..errors import ConfigError
from ..io.run import mixed_spacing_mask, read_run
from .view import PHASES, Alarm, ModesView, PhaseSpans, RunView

_TEXT_COLUMNS = {"kind", "group", "k_star_rule", "probe", "event", "detector", "reason", "message", "stream",
                 "sketch", "label", "name"}


# ---------------------------------------------------------------------------- frames
def _numeric(df):
    """Every non-text column as float/int (JSON nulls → NaN); text columns kept."""
    import pandas as pd

    df = df.copy()
    for c in df.columns:
        if c in _TEXT_COLUMNS:
            continue
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def _empty(columns: Sequence[str] = ("step",)):
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})


def _by_step(df):
    df = df[df["step"].notna()].copy()
    df["step"] = df["step"].astype("int64")
    return df.sort_values("step", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------- windows
def _choose_window(sed, window: int | None) -> tuple[int | None, tuple[int, ...]]:
    if window is not None and int(window) < 2:
        raise ConfigError(f"--window must be a window size W ≥ 2, got {window}")
    if "window" not in sed.columns or not len(sed):
        if window is not None and len(sed):
            raise ConfigError(f"--window {window}: this input records no window sizes")
        return (int(window) if window is not None and len(sed) else None), ()
    ws = tuple(sorted({int(w) for w in sed["window"].dropna()}))
    if window is None:
        return primary_window(ws), ws
    if int(window) not in ws:
        raise ConfigError(f"--window {window}: not in this input; windows recorded: {', '.join(map(str, ws))}")
    return int(window), ws


def _select(sed, window: int | None, group: str) -> tuple[Any, tuple[str, ...]]:
    groups: tuple[str, ...] = ()
    if "group" in sed.columns and len(sed):
        groups = tuple(dict.fromkeys(str(g) for g in sed["group"].dropna()))
        if group not in groups:
            raise ConfigError(f"--group {group!r}: not in this input; groups: {', '.join(groups)}")
        sed = sed[sed["group"].astype(str) == group]
    if window is not None and "window" in sed.columns:
        sed = sed[sed["window"] == window]
    return sed, groups


# ---------------------------------------------------------------------------- phases
def compute_phases(steps: Sequence[float], ratios: Sequence[float]) -> tuple[PhaseSpans | None, str | None]:
    """Phases of the gap ratio by :func:`spectral_edge.analysis.phases.detect_phases` (the plateau
    rule: the contiguous run around the peak with R ≥ 0.85·peak; collapse event: the first step
    after the peak with R < 1.20). With fewer finite values than that detector needs, the same
    rule on what there is, and a note. Returns (phases or None when R is all missing, a note or None)."""
    ph = detect_phases(steps, ratios, PHASES)
    note = None
    if ph.valid:
        method = (f"spectral_edge.analysis.phases.detect_phases (method '{ph.method}': plateau = contiguous run "
                  f"around the peak with R ≥ {PHASES.frac:g} × peak)")
    else:
        if ph.peak_step is None:  # R missing everywhere
            return None, None
        note = f"spectral_edge.analysis.phases: {ph.reason}; phases by the built-in rule"
        ph = detect_phases(steps, ratios, PHASES, min_points=1)
        method = f"built-in rule: plateau = contiguous run around the peak with R ≥ {PHASES.frac:g} × peak"
    finite = ph.steps[np.isfinite(ph.values)]
    return PhaseSpans(method=method, peak_step=ph.peak_step, peak_ratio=ph.peak_value, plateau_start=ph.plateau_start,
                  plateau_end=ph.plateau_end, first_step=int(finite[0]), last_step=int(finite[-1]),
                  threshold=PHASES.frac * ph.peak_value, collapse_event_step=ph.collapse_step,
                  collapse_tau=ph.primary_tau,
                  trend=float(ph.plateau_trend) if np.isfinite(ph.plateau_trend) else None, flat=ph.plateau_flat), note


# ---------------------------------------------------------------------------- evaluations, probes, events
_DEFECT_VALUE_COLUMNS = ("defect", "defect_median", "median", "value")


def _defect(probes, evals):
    """(step, defect) of the commutator-defect probe: rows whose probe name mentions
    'defect' or 'commutator' (value column: defect, defect_median, median or value)."""
    import pandas as pd

    if probes is not None and len(probes) and "probe" in probes.columns:
        names = probes["probe"].astype(str).str.lower()
        rows = _numeric(probes[names.str.contains("defect") | names.str.contains("commutator")])
        for col in _DEFECT_VALUE_COLUMNS:
            if col in rows.columns and rows[col].notna().any():
                return _by_step(pd.DataFrame({"step": rows["step"], "defect": rows[col]}).dropna())
    if probes is not None and len(probes) and "defect" in probes.columns:
        rows = _numeric(probes)
        return _by_step(pd.DataFrame({"step": rows["step"], "defect": rows["defect"]}).dropna())
    if "defect" in evals.columns:
        return _by_step(pd.DataFrame({"step": evals["step"], "defect": evals["defect"]}).dropna())
    return _empty(("step", "defect"))


BACKBONE_COLUMNS = ("fraction", "mean_fraction", "pc1_pct", "rotation", "grad_align", "update_align")


def _backbone(probes):
    """The backbone probe's rows (:mod:`spectral_edge.probes.backbone`) by step, or None."""
    if probes is None or not len(probes) or "probe" not in probes.columns:
        return None
    rows = probes[probes["probe"].astype(str) == "backbone"]
    cols = [c for c in BACKBONE_COLUMNS if c in rows.columns]
    if not len(rows) or not cols:
        return None
    rows = _numeric(rows[["step", *cols]])
    rows = rows[rows[cols].notna().any(axis=1)]
    return _by_step(rows) if len(rows) else None


def _alarms(events) -> tuple[tuple[Alarm, ...], int]:
    if events is None or not len(events) or "event" not in events.columns:
        return (), 0
    ev = events[events["step"].notna()]
    alarms = []
    for _, r in ev[ev["event"] == "alarm"].iterrows():
        det, why = r.get("detector"), r.get("reason")
        alarms.append(Alarm(int(r["step"]), None if _missing(det) else str(det), None if _missing(why) else str(why)))
    alarms.sort(key=lambda a: a.step)
    return tuple(alarms), int((events["event"] == "nonfinite").sum())


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _warning(summary: Mapping[str, Any], files: Mapping[str, Path], alarms: tuple[Alarm, ...]) -> tuple[int | None, str]:
    w = summary.get("warning_step")
    if w is not None:
        try:
            return int(w), "summary.json"
        except (TypeError, ValueError):
            raise ConfigError(f"{files['summary']}: warning_step must be a step or null, got {w!r}") from None
    if alarms:
        a = alarms[0]
        return a.step, "first alarm event" + (f" ({a.detector})" if a.detector else "")
    return None, "no alarm"


def _jl(sed_all, sed, probes, window: int | None, group: str, sketch: dict[str, Any] | None) -> tuple[Any, str]:
    """Relative error of the gap ratio against an exact reference, when the input has one:
    a ``jl_error`` column in the windows or a probe, or an exact and a sketched stream side
    by side (a ``sketch`` column with ``exact`` and another family at the same steps)."""
    import pandas as pd

    if "jl_error" in sed.columns and sed["jl_error"].notna().any():
        return _by_step(sed[["step", "jl_error"]].dropna()), "the jl_error column of the windows"
    if probes is not None and len(probes) and "jl_error" in probes.columns:
        p = _numeric(probes)[["step", "jl_error"]].dropna()
        if len(p):
            return _by_step(p), "the jl_error probe"
    if "sketch" in sed_all.columns and "gap_ratio" in sed_all.columns:
        s = sed_all
        if "group" in s.columns:
            s = s[s["group"].astype(str) == group]
        if window is not None and "window" in s.columns:
            s = s[s["window"] == window]
        fam = s["sketch"].astype(str)
        exact = s[fam == "exact"].groupby("step")["gap_ratio"].first()
        other = s[(fam != "exact") & (fam != "nan")].groupby("step")["gap_ratio"].first()
        both = exact.index.intersection(other.index)
        if len(both):
            err = (other[both] - exact[both]).abs() / exact[both].abs()
            df = pd.DataFrame({"step": both.to_numpy(), "jl_error": err.to_numpy()}).dropna()
            if len(df):
                return _by_step(df), "the exact and sketched streams of this input"
    fam = (sketch or {}).get("family")
    if fam == "exact":
        return None, "The spectra are exact (no random projection), so there is no JL error to measure."
    if fam is None:
        return None, ("This input does not record how its spectra were made (a CSV or JSONL table carries no "
                      "metadata; write .parquet to keep it), so whether they are sketched, and their JL error, "
                      "are not known.")
    return None, ("No exact reference in this input (no jl_error column or probe, no exact stream beside "
                  "the sketched one), so the JL error of this sketch is not shown.")


# ---------------------------------------------------------------------------- coupling with validation loss
#: circular-shift permutations of the report's coupling test (``spectral-edge coupling`` uses 999)
COUPLING_PERMUTATIONS = 199


def _validation(data) -> Any:
    """The run's validation series (the run model's choice of column), or None."""
    try:
        return data.validation()
    except ConfigError:
        return None


def _coupling(data, y, window: int | None, group: str, sed) -> tuple[Any, str | None]:
    """The lag coupling of the gap ratio with the validation loss ``y``
    (:func:`spectral_edge.analysis.coupling.lag_coupling`, with phases, no Granger test), or
    (None, why not)."""
    from ..errors import MissingDependencyError, SpectralEdgeError

    if window is None or "gap_ratio" not in sed.columns or not len(sed):
        return None, None
    if y is None:
        return None, "no validation loss in this input (val_loss, test_loss or eval_loss), so no coupling"
    try:
        from ..analysis.coupling import lag_coupling
        from ..analysis.phases import detect_phases

        x = data.spectral_series("gap_ratio", window, group)
        res = lag_coupling(x, y, data.learning_rate(), n_perm=COUPLING_PERMUTATIONS, granger_max_lag=0,
                           phases=detect_phases(x.steps, x.values, PHASES))
    except MissingDependencyError as e:
        return None, f"coupling not computed: {e}"
    except SpectralEdgeError as e:
        return None, f"coupling with {y.name} not computed: {e}"
    return res, None


# ---------------------------------------------------------------------------- functional modes
#: what ``spectral-edge modes RUN --out RUN/modes.json`` writes, read back by the report
MODES_JSON = "modes.json"
_MODES_INPUTS = ("snapshots.safetensors", "model.safetensors", "config.json")


def _run_folder(run: RunView) -> Path | None:
    """The run folder that holds ``config.json`` (None for a lone history or table)."""
    cfg = run.files.get("config")
    return Path(cfg).parent if cfg is not None else None


def _modes_file(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the record of ``folder/modes.json`` when it is usable and newer than the run's inputs,
    a note when it exists but is not used)."""
    import json

    path = folder / MODES_JSON
    if not path.is_file():
        return None, None
    newest = max((folder / f).stat().st_mtime_ns for f in _MODES_INPUTS if (folder / f).is_file())
    if path.stat().st_mtime_ns <= newest:
        return None, f"{path} is older than the run's snapshots or model; the modes were computed again"
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return None, f"{path} is not readable JSON ({' '.join(str(e).split())[:100]}); the modes were computed again"
    dirs = rec.get("directions") if isinstance(rec, dict) else None
    ok = (isinstance(dirs, list) and dirs and isinstance(rec.get("summary"), dict)
          and all(isinstance(d, dict) and d.get("role") in ("edge", "bulk", "random") and isinstance(d.get("k"), int)
                  and isinstance(d.get("bases"), dict) and all(isinstance(b, dict) for b in d["bases"].values())
                  for d in dirs))
    if not ok:
        return None, (f"{path} is not a result of spectral-edge modes (no 'directions' with 'role', 'k' and 'bases', "
                      "or no 'summary'); the modes were computed again")
    return rec, None


def _fields_of(rec: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The response fields a record carries (``--out`` files have none unless asked)."""
    from .view import direction_label

    fields = rec.get("response_field")
    if not isinstance(fields, list) or len(fields) != len(rec["directions"]):
        return {}
    out = {}
    for d, f in zip(rec["directions"], fields):
        try:
            arr = np.array([[np.nan if x is None else float(x) for x in row] for row in f], dtype=float)
        except (TypeError, ValueError):
            return {}
        if arr.ndim == 2 and arr.shape[0] == arr.shape[1]:
            out[direction_label(d)] = arr
    return out


def _snapshot_count(path: Path) -> int | None:
    """How many snapshots the file's header lists (None when it cannot tell: run_modes will say why)."""
    import json

    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            steps = json.loads((f.metadata() or {}).get("steps", ""))
        return len(steps) if isinstance(steps, list) else None
    except Exception:  # noqa: BLE001 - any failure is for run_modes to report, with the file named
        return None


def load_modes(run: RunView) -> RunView:
    """``run`` with its functional modes (module docs): :attr:`RunView.modes`, or a note in
    :attr:`RunView.notes` (a modular run without snapshots), or :attr:`RunView.modes_error` (the
    modes of a modular run with snapshots that could not be computed, naming the file)."""
    from dataclasses import replace

    from ..analysis.modes import SNAPSHOTS_FILE, ModesConfig, run_modes
    from ..errors import SpectralEdgeError

    folder = _run_folder(run)
    task = (run.data.config or {}).get("task", "modular")
    if folder is None or task not in ("modular", "multitask"):
        return run
    notes = list(run.notes)
    if not (folder / SNAPSHOTS_FILE).is_file():
        notes.append(f"no functional modes section: the run kept no {SNAPSHOTS_FILE} (runs made before snapshots "
                     "were kept, or with snapshots = 0); train it again to see what its update directions compute")
        return replace(run, notes=tuple(notes))
    rec, why = _modes_file(folder)
    if why:
        notes.append(why)
    if rec is not None:
        view = ModesView(rec, _fields_of(rec), f"{folder / MODES_JSON} (written by spectral-edge modes)")
    else:
        cfg = ModesConfig()
        n = _snapshot_count(folder / SNAPSHOTS_FILE)
        if n is not None and 3 <= n < cfg.window + 1:
            cfg = ModesConfig(window=n - 1, n_directions=min(cfg.n_directions, n - 2))
            notes.append(f"functional modes over a window of W = {cfg.window} updates: the run kept {n} snapshots "
                         f"(METHODS §7 uses W = {ModesConfig().window})")
        try:
            res = run_modes(folder, cfg)
        except SpectralEdgeError as e:
            notes.append(f"functional modes not shown: {e}")
            return replace(run, notes=tuple(notes), modes_error=str(e))
        edge = res.by_role("edge")
        fields = {edge[0].label: res.field_of(edge[0])} if edge else {}
        view = ModesView(res.to_dict(spectra=True), fields, "computed for this report by spectral_edge.analysis.modes."
                         "run_modes (the defaults of METHODS §7)")
    notes += [f"functional modes: {n}" for n in view.record.get("notes") or []]
    return replace(run, notes=tuple(notes), modes=view)


# ---------------------------------------------------------------------------- load
def load_view(source: str | Path, window: int | None = None, group: str = "all", label: str | None = None,
              *, modes: bool = True) -> RunView:
    """Read a run (see module docs) for window size ``window`` (default: the primary window, the
    smallest W recorded) and parameter group ``group``; ``modes``: with its functional modes
    (:func:`load_modes`)."""
    data = read_run(source)
    frames, files = data.frames, data.files
    notes: list[str] = []
    grad = frames.get("grad")
    if data.kind == "history" and grad is not None and len(grad):
        notes.append(f"{len(grad)} gradient-stream (gradient-SED) windows are in the history; "
                     "this report shows the update stream")
    sed_all = frames.get("sed", _empty())
    if len(sed_all.columns):
        sed_all = _numeric(sed_all)
    if len(sed_all) and "step" not in sed_all.columns:
        raise ConfigError(f"{files.get('history') or files.get('table')}: the windows have no 'step' column")
    mixed = mixed_spacing_mask(sed_all)
    if mixed.any():  # a cadence schedule's boundary inside the window: its spectrum counts the long updates
        notes.append(f"{int(mixed.sum())} windows mix sample spacings (a cadence schedule's boundary inside the "
                     "window) and are not shown")
        sed_all = sed_all[~mixed].reset_index(drop=True)

    W, windows = _choose_window(sed_all, window)
    sed, groups = _select(sed_all, W, group)
    sed = _by_step(sed).drop_duplicates("step", keep="last").reset_index(drop=True) if len(sed) else _empty(("step",))
    if len(windows) > 1:
        notes.append(f"windows recorded: {', '.join(map(str, windows))}; this report shows W = {W} (choose with --window)")
    if len(groups) > 1:
        notes.append(f"groups recorded: {', '.join(groups)}; this report shows '{group}' (choose with --group)")
    notes += data.notes

    setup = data.setup  # the one record of how the spectra were made, whichever input holds it
    rule = setup.kstar_rule
    if rule is None and "k_star_rule" in sed.columns and sed["k_star_rule"].notna().any():
        rule = str(sed["k_star_rule"].dropna().iloc[0])
    sketch = dict(setup.sketch) if setup.sketch else None

    evals = data.logs.reset_index()  # the run model's metrics: one row per step, one merge rule
    probes = frames.get("probe")
    defect = _defect(probes, evals)
    alarms, nonfinite = _alarms(frames.get("event"))
    grok_step, grok_source = data.grok()
    warning_step, warning_source = _warning(data.summary, files, alarms)
    jl, jl_note = _jl(sed_all, sed, probes, W, group, sketch)
    phases, phase_note = (compute_phases(sed["step"], sed["gap_ratio"]) if "gap_ratio" in sed.columns and len(sed)
                          else (None, None))
    if phase_note:
        notes.append(phase_note)
    if label is None:
        named = data.path.resolve()
        label = named.name if named.is_dir() else named.parent.name if named.name == "history.jsonl" else named.stem
    validation = _validation(data)
    coupling, coupling_note = _coupling(data, validation, W, group, sed)
    view = RunView(data=data, label=label, sed=sed, window=W, windows=windows, group=group, groups=groups,
                   kstar_rule=rule, sketch=sketch, evals=evals, defect=defect, alarms=alarms, nonfinite=nonfinite,
                   grok_step=grok_step, grok_source=grok_source, warning_step=warning_step,
                   warning_source=warning_source, jl=jl, jl_note=jl_note, phases=phases, notes=tuple(notes),
                   validation=validation, coupling=coupling, coupling_note=coupling_note,
                   backbone=_backbone(probes))
    if not view.grokking and view.grok_step is not None:  # e.g. summary.json of a language-model run
        from dataclasses import replace

        view = replace(view, grok_step=None, grok_source="not a grokking run (a language model's accuracy does not grok)")
    return load_modes(view) if modes else view
