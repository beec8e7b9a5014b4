"""What a report shows, and nothing that reads files or renders: the run as the report sees it
(:class:`RunView`, with its :class:`Alarm` rows, :class:`PhaseSpans` and :class:`ModesView`), the
rules the report applies to it (grok accuracy, the paper's defect onset, the phase rule) and the
neutral record of one figure of the page (:class:`Section`).

Every other module of the package imports this one and it imports none of them: :mod:`.load`
fills a :class:`RunView`, :mod:`.summary` and :mod:`.figures` read it, :mod:`.html` lays out the
sections.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.phases import PhaseConfig
from ..io.run import RunData
from ..detectors.onset import OnsetParams, OnsetTracker, onset_index
from ..detectors.signals import GROK_THRESHOLD, accuracy_key

#: test accuracy at which a run counts as grokked when summary.json gives no grok step (METHODS §6);
#: the threshold of the one grok-step rule, :func:`spectral_edge.detectors.signals.grok_step`
GROK_ACC = GROK_THRESHOLD
#: the paper's defect onset rule (:class:`~spectral_edge.detectors.onset.OnsetParams` defaults):
#: D > ONSET_FACTOR·baseline and D > ONSET_ABS, baseline ≥ ONSET_FLOOR
ONSET = OnsetParams()
ONSET_FACTOR, ONSET_ABS, ONSET_FLOOR = ONSET.factor, ONSET.min_defect, ONSET.floor
#: the phase rule (:class:`~spectral_edge.analysis.phases.PhaseConfig` defaults): plateau = the
#: contiguous run around the peak with R ≥ 0.85·peak; collapse event: first step after the peak with R < 1.20
PHASES = PhaseConfig()


@dataclass(frozen=True)
class Alarm:
    """An ``event`` row with ``event == "alarm"``."""

    step: int
    detector: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class PhaseSpans:
    """Rise / plateau / collapse of the gap ratio R(t) as a report shows them: the plateau is the
    closed step range ``[plateau_start, plateau_end]``; rise is every window before it, collapse
    every one after. (Made from :class:`spectral_edge.analysis.phases.Phases` by
    :func:`~.load.compute_phases`.)"""

    method: str
    peak_step: int
    peak_ratio: float
    plateau_start: int
    plateau_end: int
    first_step: int
    last_step: int
    threshold: float | None = None  # the R level that bounds the plateau, when the rule has one
    collapse_event_step: int | None = None  # first step after the peak with R < collapse_tau
    collapse_tau: float = 1.20
    #: Spearman ρ(step, R) inside the plateau span, and whether that is flat (|ρ| < PHASES.flat_rho);
    #: None when there are too few windows in the span to tell
    trend: float | None = None
    flat: bool | None = None

    @property
    def has_rise(self) -> bool:
        return self.plateau_start > self.first_step

    @property
    def has_collapse(self) -> bool:
        return self.plateau_end < self.last_step

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "peak_step": self.peak_step, "peak_ratio": self.peak_ratio,
                "plateau_start": self.plateau_start, "plateau_end": self.plateau_end,
                "rise": [self.first_step, self.plateau_start] if self.has_rise else None,
                "collapse": [self.plateau_end, self.last_step] if self.has_collapse else None,
                "threshold": self.threshold, "collapse_event_step": self.collapse_event_step,
                "collapse_tau": self.collapse_tau, "plateau_trend": self.trend, "plateau_flat": self.flat}


@dataclass(frozen=True)
class ModesView:
    """The functional modes of a modular-arithmetic run as the report shows them (METHODS §7,
    :mod:`spectral_edge.analysis.modes`): ``record`` is the JSON form of the result
    (``ModesResult.to_dict(spectra=True)``: ``directions`` with every spectrum's shares,
    ``summary``, ``notes``…), whether it was computed for the report or read from a ``modes.json``
    written by ``spectral-edge modes RUN --out``; ``fields``: direction label (``v1``…) → its
    response f(a, b) (p, p), NaN outside the task's domain; only the directions whose field is
    known (none when the record comes from a file without ``response_field``); ``origin``: where
    the record comes from, in words."""

    record: Mapping[str, Any]
    fields: Mapping[str, np.ndarray]
    origin: str

    @property
    def summary(self) -> Mapping[str, Any]:
        """The claims computed for this run (``ModesResult.summary``)."""
        return self.record.get("summary") or {}

    @property
    def directions(self) -> list[Mapping[str, Any]]:
        return list(self.record.get("directions") or [])

    @property
    def basis(self) -> str | None:
        """The basis the run's claims are read in (the summary's ``basis``)."""
        return self.summary.get("basis")


def direction_label(d: Mapping[str, Any]) -> str:
    """``v<k>`` for an edge or bulk direction, ``r<k>`` for a random one (as the modes command prints)."""
    return f"{'r' if d.get('role') == 'random' else 'v'}{d.get('k')}"


@dataclass(frozen=True)
class RunView:
    """One run, ready to plot: the windows of one W and one group, evaluations, probes, events,
    drawn from the :class:`~spectral_edge.analysis.series.RunData` read from the files (``data``).

    Frames (pandas) are sorted by step with numeric columns; any of them may be empty.
    """

    data: RunData                   # what was read (files, raw rows, summary.json, config.json, meta)
    label: str
    sed: Any                        # DataFrame: the windows of (window, group), one row per window
    window: int | None              # W shown (None: the input has no window column)
    windows: tuple[int, ...]        # every W in the input
    group: str
    groups: tuple[str, ...]
    kstar_rule: str | None
    sketch: dict[str, Any] | None   # the projection the spectra come from, when recorded
    evals: Any                      # DataFrame: step + train/test accuracy and loss, lr…
    defect: Any                     # DataFrame: step, defect (the commutator defect per probe)
    alarms: tuple[Alarm, ...]
    nonfinite: int                  # non-finite events recorded by the monitor
    grok_step: int | None
    grok_source: str                # where grok_step comes from, or why there is none
    warning_step: int | None
    warning_source: str
    jl: Any                         # DataFrame step, jl_error (relative error of R), or None
    jl_note: str
    phases: PhaseSpans | None
    notes: tuple[str, ...] = ()
    modes: ModesView | None = None  # functional modes (a modular run that kept snapshots)
    modes_error: str | None = None  # why the modes of such a run could not be shown (a damaged file…)
    #: the validation loss the page shows and correlates (:meth:`spectral_edge.io.run.RunData.validation`), or None
    validation: Any = None
    #: the lag coupling of R with the validation loss (:class:`spectral_edge.analysis.coupling.CouplingResult`)
    coupling: Any = None
    coupling_note: str | None = None  # why there is no coupling (no validation loss, too few points…)
    #: the backbone probe's rows (step, fraction, mean_fraction, pc1_pct, rotation, grad_align, update_align), or None
    backbone: Any = None

    @property
    def grokking(self) -> bool:
        """Whether the page is about grokking: the run has an accuracy to grok (a test/validation
        accuracy column, :data:`~spectral_edge.detectors.signals.ACC_KEYS`) or ``summary.json``
        records a grok step. A language-model or regression run without accuracy gets no grokking
        rows, captions or caveats, and neither does a language-model run of the experiment runner
        (task ``lm``), whose next-token accuracy has no grokking jump."""
        if (self.data.config or {}).get("task") == "lm" or (self.data.summary or {}).get("task") == "lm":
            return False  # a language model's token accuracy is not a grokking event
        return accuracy_key(self.evals) is not None or "grok_step" in self.data.summary

    @property
    def source(self) -> Path:
        """The run folder or input file."""
        return self.data.path

    @property
    def setup(self):
        """How the spectra were made (:class:`spectral_edge.io.run.RunSetup`): sketch, cadence,
        parameter count, tensor selection — one record, whichever input the report is built from."""
        return self.data.setup

    @property
    def files(self) -> Mapping[str, Path]:
        """Which inputs were read: history or table, eval, summary, config."""
        return self.data.files

    @property
    def meta(self) -> Mapping[str, Any]:
        """The history's meta row, or a parquet table's metadata (empty when there is none)."""
        return shown_meta(self.data)

    @property
    def sigma_columns(self) -> list[str]:
        """``sigma_1 … sigma_W`` present in :attr:`sed` (W = the shown window)."""
        return sigma_columns(self.sed, self.window)

    @property
    def has_anything(self) -> bool:
        return bool(len(self.sed) or len(self.evals) or len(self.defect) or self.alarms)

    def series(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one :attr:`sed` column as float arrays (NaN where missing)."""
        if column not in self.sed.columns or not len(self.sed):
            return np.array([], dtype=float), np.array([], dtype=float)
        return self.sed["step"].to_numpy(float), self.sed[column].to_numpy(float)


def shown_meta(data: RunData) -> Mapping[str, Any]:
    """The meta row of a history, or the metadata a parquet table carries (empty when neither)."""
    return data.meta


def sigma_columns(df, window: int | None) -> list[str]:
    """``sigma_1 … sigma_W`` present in ``df`` (all of them when ``window`` is None)."""
    cols = [c for c in df.columns if c.startswith("sigma_") and c[6:].isdigit()]
    cols.sort(key=lambda c: int(c[6:]))
    if window is not None:
        cols = [c for c in cols if int(c[6:]) <= window]
    return cols


# ---------------------------------------------------------------------------- the defect onset rule
def defect_onset(steps: Sequence[float], values: Sequence[float]) -> int | None:
    """The step of the paper's defect onset (:func:`~spectral_edge.detectors.onset.onset_index`,
    non-finite values skipped), or None if never."""
    d = np.asarray(values, dtype=float)
    i = onset_index(np.where(np.isfinite(d), d, np.nan), ONSET)
    return None if i is None else int(np.asarray(steps, dtype=float)[i])


def onset_level(values: Sequence[float]) -> float | None:
    """The defect level the onset rule asks for, max(ONSET_FACTOR·baseline, ONSET_ABS), from the
    first finite values; None before the baseline is known."""
    tracker = OnsetTracker(ONSET)
    d = np.asarray(values, dtype=float)
    for v in d[np.isfinite(d)][:ONSET.n_baseline]:
        tracker.push(v)
    base = tracker.baseline
    return None if math.isnan(base) else max(ONSET.factor * base, ONSET.min_defect)


# ---------------------------------------------------------------------------- a figure of the page
@dataclass(frozen=True)
class Section:
    """One figure of a report: an inline SVG with its caption, or a one-line note saying why
    the figure is missing. :mod:`.figures` makes them, :mod:`.html` lays them out."""

    key: str
    title: str
    caption: str = ""
    svg: str | None = None
    note: str | None = None
    #: a table under the figure: (header, rows of cells as text)
    table: tuple[tuple[str, ...], tuple[tuple[str, ...], ...]] | None = None
    #: plain sentences under the figure (and the table)
    points: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        """The name in the page's navigation bar."""
        return NAV_NAMES.get(self.key, self.title)


NAV_NAMES = {"spectrum": "Spectrum", "edge": "Edge & phases", "eval": "Evaluation", "warning": "Early warning",
             "g23": "g23", "coupling": "Coupling", "backbone": "Backbone", "jl": "JL error", "modes": "Functional modes"}
