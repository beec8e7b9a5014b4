"""The grokking alarm: an online detector over the monitor's streams, and offline replay.

:class:`GrokAlarm` combines three signals, each optional:

1. **defect onset** (necessary): the papers' onset rule on the commutator-defect probe
   (baseline = max(median of the first 3 values, 0.1); onset when D > 10·baseline and
   D > 20). Latched once crossed (``defect_latch``), or required at every record.
2. **g23 decline** (confirming): g23 = σ_2² − σ_3² of the update window (``sed`` rows) has
   fallen from its running peak by at least ``g23_decline``× (median of the last
   ``g23_smooth`` windows against the peak, after at least ``g23_min_records`` windows).
   The papers measure 15–111× from peak to grok in 12/12 grokking runs with weight decay vs
   1/12 controls; a warning has to come before the full decline, hence the default 5×.
   ``g23_warmup`` windows at the start are left out of the peak: on our own reference runs
   (add, p = 97, W = 10 of attention updates every 100 steps) the largest g23 is the very
   first window, with and without weight decay, so a decline from it alone does not tell a
   grokking run from a control; tune it at calibration (default 0, the papers' definition).
3. **edge ratio** (confirming): the median gap ratio R of the last ``ratio_records`` windows
   is ≤ ``ratio_max``. The papers: R = 1.40 ± 0.07 with weight decay (the regime that
   groks) vs 2.83 ± 0.35 without; the default 2.0 sits between them. Their R used the
   ``weighted`` k* rule, so by default R is read as ``ratio_<k_star_weighted>`` of each row
   (``ratio_rule``), falling back to the row's ``gap_ratio`` when those columns are absent.

``confirm="all"`` requires every enabled confirming signal, ``"any"`` at least one (none
enabled: the defect alone). The combined condition must then hold at ``persistence``
consecutive records (distinct steps at which rows arrived) before the alarm fires. Disable a
signal by setting its threshold to None. ``GrokAlarm.paper()`` is the papers' rule alone.

Every threshold is a constructor argument so that the real-data calibration (grokking runs
against controls) can tune them; :func:`replay` re-runs a detector over a finished history
and :func:`score_runs` scores leads and false alarms.

Status (measured on our reference grid, docs/grokking.md: add/sub/mul/x²+y² mod 97 × seeds
42/137/2024, against x²+xy+y² and x³+xy with weight decay and add without it, 12,000 steps;
attention updates, W = 10, every 100 steps). The papers' onset rule (:meth:`GrokAlarm.paper`)
leads grokking by 600–1300 steps (mean 942) in 12/12 runs but also fires in 9/9 controls, as
the papers warn. g23 and R did not separate the controls from the grokking runs here: g23
declines 17–108× in the controls too, and R before grokking is 1.42 ± 0.08 in grokking runs
against 1.08 in the never-grokking operations (the papers' 2.83 without weight decay was not
reproduced: 1.74 ± 0.20). :meth:`GrokAlarm.recommended` (onset confirmed by a ≥ 25% drop of
the validation loss below its running peak) leads by ≥ 500 steps in 12/12 runs (mean 717,
shortest 500) and fires in 1/9 controls (addition without weight decay, seed 2024, whose
validation loss is noisy); with a 15% drop it was 12/12 (mean 875) and 2/9. The threshold was
picked on these runs, so these are in-sample numbers. The validation drop alone does about as
well on this grid: on these tasks the geometry adds little separation that the validation
loss lacks. Treat the defaults as a starting point and replay your own runs.

Events: the first time it fires the detector returns one row
``{"step", "event": "alarm", "detector", "reason", …signal values}``; the monitor records it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from .onset import OnsetParams, OnsetTracker
from .signals import as_rows, is_missing

#: validation-loss drop below its running peak that confirms the defect onset in
#: :meth:`GrokAlarm.recommended` (chosen on the reference grid; see the module docs)
RECOMMENDED_VAL_DROP = 0.25
#: settings of :meth:`GrokAlarm.geometry` (chosen by the protocol on the development runs)
GEOMETRY_DEFAULTS: dict[str, Any] = {"defect_factor": 10.0, "ratio_min": 1.15, "ratio_max": 2.0, "pc1_min": 72.0,
                                     "pc1_drop": None, "ratio_rise": None, "persistence": 2}

__all__ = ["RECOMMENDED_VAL_DROP", "ALARM_NAMES", "ALARM_PROBES", "DEFAULT_ALARM", "make_alarm", "GrokAlarm", "replay", "replay_events", "AlarmScore", "score_runs", "evaluate"]


class GrokAlarm:
    """Combined grokking alarm (see module docs); a :class:`~spectral_edge.monitor.Monitor` detector.

    Parameters (defaults in brackets)
    ----------
    defect_factor [10.0], defect_min [20.0], defect_floor [0.1], defect_baseline_n [3],
        defect_min_index [2]: the onset rule; ``defect_factor=None`` disables the defect.
    defect_latch [True]: once crossed, the defect condition stays true; False: the current
        defect must exceed the thresholds.
    defect_probe ["defect"], defect_key ["defect"]: which probe rows and column.
    g23_decline [5.0]: required peak/current factor; None disables.
    g23_smooth [3]: current g23 = median of this many latest windows.
    g23_min_records [3]: windows seen before a decline may count.
    g23_warmup [0]: first windows excluded from the running peak.
    ratio_max [2.0]: R median must be ≤ this; None disables.
    ratio_records [5]: windows in the R median.
    ratio_rule ["weighted"]: read R as ``ratio_<k_star_<rule>>`` of each row (None: use
        ``ratio_key`` only).
    ratio_key ["gap_ratio"]: column of R when ``ratio_rule`` is None or its columns are absent.
    confirm ["all"]: ``"all"`` or ``"any"`` of the enabled confirming signals.
    persistence [2]: consecutive records the combined condition must hold.
    group ["all"], window [None: the smallest W seen]: which ``sed`` rows.
    name ["grok_alarm"].
    """

    def __init__(self, *, defect_factor: float | None = 10.0, defect_min: float = 20.0, defect_floor: float = 0.1,
                 defect_baseline_n: int = 3, defect_min_index: int = 2, defect_latch: bool = True,
                 defect_probe: str = "defect", defect_key: str = "defect",
                 g23_decline: float | None = 5.0, g23_smooth: int = 3, g23_min_records: int = 3, g23_warmup: int = 0,
                 ratio_max: float | None = 2.0, ratio_records: int = 5, ratio_rule: str | None = "weighted",
                 ratio_key: str = "gap_ratio", ratio_min: float | None = None, ratio_rise: float | None = None,
                 pc1_min: float | None = None, pc1_drop: float | None = None, pc1_records: int = 3,
                 pc1_probe: str = "manifold", pc1_key: str = "pc1_pct_mean",
                 val_drop: float | None = None, val_keys: Sequence[str] = ("val_loss", "test_loss"),
                 val_min_records: int = 3,
                 confirm: str = "all", persistence: int = 2, group: str = "all", window: int | None = None,
                 name: str = "grok_alarm"):
        if confirm not in ("all", "any"):
            raise ConfigError(f"confirm must be 'all' or 'any', got {confirm!r}")
        if int(persistence) < 1 or int(g23_smooth) < 1 or int(ratio_records) < 1:
            raise ConfigError("persistence, g23_smooth and ratio_records must be ≥ 1")
        if g23_decline is not None and not g23_decline > 1:
            raise ConfigError(f"g23_decline is a factor > 1, got {g23_decline}")
        if int(pc1_records) < 1:
            raise ConfigError("pc1_records must be ≥ 1")
        if (defect_factor is None and g23_decline is None and ratio_max is None and ratio_min is None
                and ratio_rise is None and pc1_min is None and pc1_drop is None and val_drop is None):
            raise ConfigError("every signal is disabled; enable the defect, g23_decline, ratio_max, ratio_min, "
                              "ratio_rise, pc1_min, pc1_drop or val_drop")
        if ratio_rise is not None and not ratio_rise > 0:
            raise ConfigError(f"ratio_rise is a fraction > 0 (R above its running low), got {ratio_rise}")
        if pc1_drop is not None and not pc1_drop > 0:
            raise ConfigError(f"pc1_drop is > 0 percentage points (PC1 below its running peak), got {pc1_drop}")
        if ratio_max is not None and ratio_min is not None and ratio_min > ratio_max:
            raise ConfigError(f"ratio_min {ratio_min} is above ratio_max {ratio_max}: no R can satisfy both")
        if val_drop is not None and not 0 < val_drop < 1:
            raise ConfigError(f"val_drop is a fraction in (0, 1), got {val_drop}")
        self.use_defect = defect_factor is not None
        self.onset = OnsetParams(defect_factor if defect_factor is not None else 10.0, defect_min, defect_floor,
                                 defect_baseline_n, defect_min_index)
        self.defect_latch = bool(defect_latch)
        self.defect_probe, self.defect_key = defect_probe, defect_key
        self.g23_decline = None if g23_decline is None else float(g23_decline)
        self.g23_smooth, self.g23_min_records, self.g23_warmup = int(g23_smooth), int(g23_min_records), int(g23_warmup)
        self.ratio_max = None if ratio_max is None else float(ratio_max)
        self.ratio_records, self.ratio_key, self.ratio_rule = int(ratio_records), ratio_key, ratio_rule
        self.ratio_min = None if ratio_min is None else float(ratio_min)
        self.pc1_min = None if pc1_min is None else float(pc1_min)
        self.ratio_rise = None if ratio_rise is None else float(ratio_rise)
        self.pc1_drop = None if pc1_drop is None else float(pc1_drop)
        self.uses_ratio = ratio_max is not None or ratio_min is not None or ratio_rise is not None
        self.uses_pc1 = pc1_min is not None or pc1_drop is not None
        self.pc1_records, self.pc1_probe, self.pc1_key = int(pc1_records), pc1_probe, pc1_key
        self.val_drop = None if val_drop is None else float(val_drop)
        self.val_keys, self.val_min_records = tuple(val_keys), int(val_min_records)
        self.confirm, self.persistence = confirm, int(persistence)
        self.group, self.window = group, window
        self.name = name
        self.reset()

    @classmethod
    def recommended(cls, **overrides: Any) -> "GrokAlarm":
        """Our calibrated alarm: the papers' defect onset, confirmed by a ≥ 25% drop of the
        validation loss below its running peak (no g23 or R condition, one record).

        Calibrated on the reference grid (add/sub/mul/x²+y² × seeds 42/137/2024 against
        x²+xy+y², x³+xy and add without weight decay; docs/grokking.md): in the controls the
        defect crosses the onset rule like in grokking runs, and g23 and R did not separate
        them, while the validation loss of a run about to grok falls well before its accuracy
        moves. The drop threshold was chosen on those same runs (in-sample): at 15% two of the nine
        controls (addition without weight decay, whose validation loss is noisy) alarm; at 25%
        one does, and every grokking run still gets ≥ 500 steps of lead (the shortest exactly
        500); docs/grokking.md tabulates the trade-off against persistence and the threshold.
        Every value can be overridden."""
        params = {"g23_decline": None, "ratio_max": None, "val_drop": RECOMMENDED_VAL_DROP, "persistence": 1,
                  "name": "grok_alarm"}
        params.update(overrides)
        return cls(**params)

    @classmethod
    def validation(cls, *, val_drop: float = RECOMMENDED_VAL_DROP, persistence: int = 1,
                   name: str = "validation_alarm", **overrides: Any) -> "GrokAlarm":
        """The validation loss alone: fires when it has fallen ``val_drop`` below its running
        peak for ``persistence`` records (no defect, g23 or R). It reads ``val_loss`` (falling
        back to ``test_loss`` when a run logs no validation split; the alarm's reason names
        the key it read)."""
        params = {"defect_factor": None, "g23_decline": None, "ratio_max": None, "val_drop": val_drop,
                  "persistence": persistence, "name": name}
        params.update(overrides)
        return cls(**params)

    @classmethod
    def geometry(cls, **overrides: Any) -> "GrokAlarm":
        """No validation or test data: the papers' defect onset, with the median edge ratio R
        (weighted k* rule, last 5 windows) inside [ratio_min, ratio_max] and the
        execution-manifold PC1% (median of the last 3 manifold records) ≥ pc1_min."""
        params = {"g23_decline": None, **GEOMETRY_DEFAULTS, "name": "geometry_alarm"}
        params.update(overrides)
        return cls(**params)

    @classmethod
    def paper(cls, *, name: str = "onset_rule", **onset: Any) -> "GrokAlarm":
        """The papers' onset rule alone (defect only, fires at the first crossing)."""
        return cls(g23_decline=None, ratio_max=None, persistence=1, name=name, **onset)

    def params(self) -> dict[str, Any]:
        """Constructor arguments that reproduce this detector (for reports and tuning)."""
        o = self.onset
        return {"defect_factor": o.factor if self.use_defect else None, "defect_min": o.min_defect,
                "defect_floor": o.floor, "defect_baseline_n": o.n_baseline, "defect_min_index": o.min_index,
                "defect_latch": self.defect_latch, "defect_probe": self.defect_probe, "defect_key": self.defect_key,
                "g23_decline": self.g23_decline, "g23_smooth": self.g23_smooth,
                "g23_min_records": self.g23_min_records, "g23_warmup": self.g23_warmup, "ratio_max": self.ratio_max,
                "ratio_records": self.ratio_records, "ratio_rule": self.ratio_rule, "ratio_key": self.ratio_key,
                "ratio_min": self.ratio_min, "ratio_rise": self.ratio_rise, "pc1_min": self.pc1_min,
                "pc1_drop": self.pc1_drop, "pc1_records": self.pc1_records,
                "pc1_probe": self.pc1_probe, "pc1_key": self.pc1_key,
                "val_drop": self.val_drop, "val_keys": list(self.val_keys), "val_min_records": self.val_min_records,
                "confirm": self.confirm,
                "persistence": self.persistence, "group": self.group, "window": self.window, "name": self.name}

    def reset(self) -> None:
        """Forget everything seen (a fresh run)."""
        self.tracker = OnsetTracker(self.onset)
        self.defect_onset_step: int | None = None
        self.g23: list[float] = []  # recent values (≤ g23_smooth)
        self.g23_n = 0
        self.g23_peak = float("-inf")
        self.g23_peak_step: int | None = None
        self.ratios: list[float] = []  # recent values (≤ ratio_records)
        self.pc1s: list[float] = []  # recent execution-manifold PC1% values (≤ pc1_records)
        self.pc1_peak = float("-inf")  # running max of the PC1 median (once pc1_records are in)
        self.ratio_low = float("inf")  # running min of the R median (once ratio_records are in)
        self.val_key: str | None = None  # the first of val_keys seen in a log row
        self.val_n, self.val_peak, self.val_now = 0, float("-inf"), float("nan")
        self.recent: list[tuple[int, bool]] = []  # (step, condition) of the latest records
        self.fired_step: int | None = None
        self._window = self.window

    # ------------------------------------------------------------------ signals
    def _defect_ok(self) -> bool:
        if not self.use_defect:
            return True
        return self.tracker.onset_record is not None if self.defect_latch else self.tracker.crossing

    def _g23_now(self) -> float:
        return float(np.median(self.g23)) if self.g23 else float("nan")

    def _g23_factor(self) -> float:
        now = self._g23_now()
        if not self.g23 or self.g23_peak <= 0:
            return float("nan")
        return self.g23_peak / now if now > 0 else float("inf")

    def _g23_ok(self) -> bool:
        assert self.g23_decline is not None
        return self.g23_n >= self.g23_warmup + self.g23_min_records and len(self.g23) >= self.g23_smooth and \
            self._g23_factor() >= self.g23_decline

    def _ratio_now(self) -> float:
        return float(np.median(self.ratios)) if self.ratios else float("nan")

    def _ratio_ok(self) -> bool:
        """R's median within [ratio_min, ratio_max], and ≥ (1 + ratio_rise)× its running low
        (each condition may be off)."""
        if len(self.ratios) < self.ratio_records:
            return False
        r = self._ratio_now()
        return ((self.ratio_max is None or r <= self.ratio_max) and (self.ratio_min is None or r >= self.ratio_min)
                and (self.ratio_rise is None or r >= self.ratio_low * (1 + self.ratio_rise)))

    def _pc1_now(self) -> float:
        return float(np.median(self.pc1s)) if self.pc1s else float("nan")

    def _pc1_ok(self) -> bool:
        """PC1's median ≥ pc1_min, and ≥ pc1_drop points below its running peak (each may be off)."""
        if len(self.pc1s) < self.pc1_records:
            return False
        now = self._pc1_now()
        return ((self.pc1_min is None or now >= self.pc1_min)
                and (self.pc1_drop is None or now <= self.pc1_peak - self.pc1_drop))

    def _val_fraction(self) -> float:
        """How far the validation loss has fallen below its running peak (fraction of the peak)."""
        if self.val_n == 0 or not self.val_peak > 0:
            return float("nan")
        return 1.0 - self.val_now / self.val_peak

    def _val_ok(self) -> bool:
        assert self.val_drop is not None
        return self.val_n >= self.val_min_records and self._val_fraction() >= self.val_drop

    def condition(self) -> bool:
        """The combined condition on the current state (before persistence)."""
        checks = []
        if self.val_drop is not None:
            checks.append(self._val_ok())
        if self.g23_decline is not None:
            checks.append(self._g23_ok())
        if self.uses_ratio:
            checks.append(self._ratio_ok())
        if self.uses_pc1:
            checks.append(self._pc1_ok())
        confirmed = True if not checks else (all(checks) if self.confirm == "all" else any(checks))
        return self._defect_ok() and confirmed

    def _reason(self) -> str:
        parts = []
        if self.use_defect:
            t = self.tracker
            parts.append(f"defect onset at step {self.defect_onset_step} (D {t.last:.3g}, baseline {t.baseline:.3g}, "
                         f"> {self.onset.factor:g}× and > {self.onset.min_defect:g})")
        if self.g23_decline is not None:
            parts.append(f"g23 {self._g23_factor():.3g}× below its peak at step {self.g23_peak_step} "
                         f"(need {self.g23_decline:g}×)")
        if self.uses_ratio:
            need = " and ".join(x for x in (
                None if self.ratio_min is None else f"≥ {self.ratio_min:g}",
                None if self.ratio_max is None else f"≤ {self.ratio_max:g}",
                None if self.ratio_rise is None else f"≥ {1 + self.ratio_rise:g}× its low {self.ratio_low:.3g}") if x)
            parts.append(f"median R {self._ratio_now():.3g} (need {need})")
        if self.uses_pc1:
            need = " and ".join(x for x in (
                None if self.pc1_min is None else f"≥ {self.pc1_min:g}%",
                None if self.pc1_drop is None else f"≥ {self.pc1_drop:g} points below its peak {self.pc1_peak:.3g}%")
                if x)
            parts.append(f"execution-manifold PC1 {self._pc1_now():.3g}% (need {need})")
        if self.val_drop is not None:
            parts.append(f"{self.val_key} {100 * self._val_fraction():.0f}% below its peak "
                         f"(need {100 * self.val_drop:g}%)")
        if self.persistence > 1:
            parts.append(f"held {self.persistence} records")
        return "; ".join(parts)

    # ------------------------------------------------------------------ streaming
    def _ingest(self, r: Mapping[str, Any]) -> bool:
        """Update the signal state with one row; True if the row is relevant."""
        kind = r.get("kind")
        if kind == "probe" and r.get("probe") == self.defect_probe and self.use_defect:
            if is_missing(r.get(self.defect_key)):
                return False
            if self.tracker.push(r.get(self.defect_key)):
                self.defect_onset_step = int(r["step"])
            return True
        if kind == "probe" and r.get("probe") == self.pc1_probe and self.uses_pc1:
            v = r.get(self.pc1_key)
            if is_missing(v):
                return False
            self.pc1s = (self.pc1s + [float(v)])[-self.pc1_records:]
            if len(self.pc1s) >= self.pc1_records:
                self.pc1_peak = max(self.pc1_peak, self._pc1_now())
            return True
        if kind == "log" and self.val_drop is not None:
            if self.val_key is None:
                self.val_key = next((k for k in self.val_keys if not is_missing(r.get(k))), None)
            v = r.get(self.val_key) if self.val_key is not None else None
            if is_missing(v):
                return False
            self.val_now = float(v)
            self.val_peak = max(self.val_peak, self.val_now)
            self.val_n += 1
            return True
        if kind == "sed" and r.get("group", "all") == self.group and not is_missing(r.get("window")):
            if self._window is None:
                self._window = int(r["window"])  # the first window size seen (the monitor writes the smallest first)
            if int(r["window"]) != self._window:
                return False
            used = False
            g = r.get("g23")
            if self.g23_decline is not None and not is_missing(g):
                g = float(g)
                self.g23.append(g)
                self.g23 = self.g23[-self.g23_smooth:]
                self.g23_n += 1
                if self.g23_n > self.g23_warmup and g > self.g23_peak:
                    self.g23_peak, self.g23_peak_step = g, int(r["step"])
                used = True
            R = None
            if self.ratio_rule is not None:
                k = r.get(f"k_star_{self.ratio_rule}")
                if not is_missing(k) and int(k) >= 1:
                    R = r.get(f"ratio_{int(k)}")
            if is_missing(R):
                R = r.get(self.ratio_key)
            if self.uses_ratio and not is_missing(R):
                self.ratios.append(float(R))
                self.ratios = self.ratios[-self.ratio_records:]
                if len(self.ratios) >= self.ratio_records:
                    self.ratio_low = min(self.ratio_low, self._ratio_now())
                used = True
            return used
        return False

    def update(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Feed rows (any kinds, any order within a step); returns the alarm event the first time."""
        events: list[dict[str, Any]] = []
        for r in rows:
            if self.fired_step is not None:
                break
            if is_missing(r.get("step")) or not self._ingest(r):
                continue
            step = int(r["step"])
            cond = self.condition()
            if self.recent and self.recent[-1][0] == step:
                self.recent[-1] = (step, cond)  # more rows of the same step: the latest state decides
            elif self.recent and step < self.recent[-1][0]:
                continue  # a late row of an older step changes the state, not the record sequence
            else:
                self.recent.append((step, cond))
                self.recent = self.recent[-self.persistence:]
            if len(self.recent) == self.persistence and all(c for _, c in self.recent):
                self.fired_step = step
                events.append({"step": step, "event": "alarm", "detector": self.name, "reason": self._reason(),
                               "defect": self.tracker.last if self.use_defect else None,
                               "defect_baseline": self.tracker.baseline if self.use_defect else None,
                               "defect_onset_step": self.defect_onset_step,
                               "g23_factor": self._g23_factor() if self.g23_decline is not None else None,
                               "ratio_median": self._ratio_now() if self.uses_ratio else None,
                               "pc1_median": self._pc1_now() if self.uses_pc1 else None,
                               "val_drop": self._val_fraction() if self.val_drop is not None else None})
        return events

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"params": self.params(), "tracker": self.tracker.state_dict(), "defect_onset_step": self.defect_onset_step,
                "g23": list(self.g23), "g23_n": self.g23_n, "g23_peak": self.g23_peak,
                "g23_peak_step": self.g23_peak_step, "ratios": list(self.ratios), "pc1s": list(self.pc1s),
                "pc1_peak": self.pc1_peak, "ratio_low": self.ratio_low,
                "recent": [[s, c] for s, c in self.recent], "fired_step": self.fired_step, "window_used": self._window,
                "val": [self.val_key, self.val_n, self.val_peak, self.val_now]}

    def load_state_dict(self, s: Mapping[str, Any]) -> None:
        self.reset()
        self.tracker.load_state_dict(s["tracker"])
        self.defect_onset_step = s["defect_onset_step"]
        self.g23 = [float(x) for x in s["g23"]]
        self.g23_n = int(s["g23_n"])
        self.g23_peak = float(s["g23_peak"])
        self.g23_peak_step = s["g23_peak_step"]
        self.ratios = [float(x) for x in s["ratios"]]
        self.pc1s = [float(x) for x in s.get("pc1s", [])]
        self.pc1_peak = float(s.get("pc1_peak", float("-inf")))
        self.ratio_low = float(s.get("ratio_low", float("inf")))
        self.recent = [(int(a), bool(b)) for a, b in s["recent"]]
        self.fired_step = s["fired_step"]
        self._window = s.get("window_used", self.window)
        if "val" in s:
            self.val_key, self.val_n = s["val"][0], int(s["val"][1])
            self.val_peak, self.val_now = float(s["val"][2]), float(s["val"][3])


# ---------------------------------------------------------------------- by name
#: the alarms a run, ``spectral-edge grok/run --alarm`` and ``spectral-edge replay`` attach by name
ALARM_NAMES = ("recommended", "geometry", "paper", "validation")
#: the probes each named alarm reads (the validation alarm reads the logged validation loss)
ALARM_PROBES: dict[str, tuple[str, ...]] = {"recommended": ("defect",), "geometry": ("manifold", "defect"),
                                            "paper": ("defect",), "validation": ()}
#: the alarm a run attaches when none is named (chosen by the protocol; see docs/grokking.md)
DEFAULT_ALARM = "recommended"


def make_alarm(name: str | None = None, **overrides: Any) -> GrokAlarm:
    """A fresh detector of the named alarm (None: :data:`DEFAULT_ALARM`), ``overrides`` on top."""
    name = DEFAULT_ALARM if name is None else name
    makers: dict[str, Callable[..., GrokAlarm]] = {"recommended": GrokAlarm.recommended,
                                                   "geometry": GrokAlarm.geometry, "paper": GrokAlarm.paper,
                                                   "validation": GrokAlarm.validation}
    if name not in makers:
        raise ConfigError(f"unknown alarm {name!r}; choose one of {', '.join(ALARM_NAMES)}")
    det = makers[name](**overrides)
    det.alarm = name  # the registry name (summary.json's "alarm"); det.name is the event's "detector"
    return det


# ---------------------------------------------------------------------- offline
def replay_events(history: Any, detector: Any) -> list[dict[str, Any]]:
    """Feed a finished history (rows or DataFrame) to ``detector`` step by step, as the
    monitor would, and return every event it emits. ``event`` and ``meta`` rows are skipped."""
    rows = [r for r in as_rows(history) if r.get("kind") not in ("event", "meta") and not is_missing(r.get("step"))]
    order = sorted(range(len(rows)), key=lambda i: (int(rows[i]["step"]), i))  # stable within a step
    events: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    cur = None
    for i in order:
        r = rows[i]
        if cur is not None and int(r["step"]) != cur:
            events += detector.update(batch) or []
            batch = []
        cur = int(r["step"])
        batch.append(r)
    if batch:
        events += detector.update(batch) or []
    return events


def replay(history: Any, detector: Any = None) -> int | None:
    """The warning step a detector (default: a fresh :class:`GrokAlarm`) gives on a finished
    history: the step of its first ``alarm`` event, or None."""
    det = GrokAlarm() if detector is None else detector
    for ev in replay_events(history, det):
        if ev.get("event") == "alarm":
            return int(ev["step"])
    return None


@dataclass(frozen=True)
class AlarmScore:
    """Scores of a detector over runs with known outcomes.

    Grokking runs: ``hits`` warned at or before the grok step (``leads`` = grok − warning),
    ``late`` warned after it, ``misses`` never warned. Controls (no grok): ``false_alarms``
    warned at all."""

    n_grok: int
    n_control: int
    hits: int
    late: int
    misses: int
    false_alarms: int
    leads: tuple[int, ...] = field(default=())

    @property
    def mean_lead(self) -> float:
        return float(np.mean(self.leads)) if self.leads else float("nan")

    @property
    def hit_rate(self) -> float:
        return self.hits / self.n_grok if self.n_grok else float("nan")

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / self.n_control if self.n_control else float("nan")


def score_runs(runs: Sequence[tuple[int | None, int | None]]) -> AlarmScore:
    """Score ``(warning_step, grok_step)`` pairs; grok_step None marks a control run."""
    hits = late = misses = fa = n_g = n_c = 0
    leads = []
    for warn, grok in runs:
        if grok is None:
            n_c += 1
            fa += warn is not None
            continue
        n_g += 1
        if warn is None:
            misses += 1
        elif warn <= grok:
            hits += 1
            leads.append(int(grok) - int(warn))
        else:
            late += 1
    return AlarmScore(n_g, n_c, hits, late, misses, fa, tuple(leads))


def evaluate(histories: Iterable[tuple[Any, int | None]], make_detector: Callable[[], Any]) -> AlarmScore:
    """Replay a fresh detector from ``make_detector()`` over ``(history, grok_step)`` pairs and score it."""
    return score_runs([(replay(h, make_detector()), g) for h, g in histories])
