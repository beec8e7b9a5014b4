"""Detectors: turn the monitor's streams into a warning step (METHODS.md §6).

A detector is an object with ``name``, ``update(rows) -> list of event rows`` and
``state_dict``/``load_state_dict``; pass it to ``Monitor(detectors=[...])`` and its alarm is
recorded as an ``event`` row, or :func:`replay` it over a finished history.

- :class:`OnsetRule` / :func:`onset_index`: the papers' defect onset rule;
- :class:`GrokAlarm`: defect onset confirmed by the g23 decline and the edge ratio, with
  persistence (``GrokAlarm.paper()`` is the onset rule alone);
- :func:`replay`, :func:`score_runs`, :func:`evaluate`: offline scoring (leads, false alarms);
- :func:`gram_edge_summary`, :func:`series`: signals over history rows; :func:`grok_step`
  and :func:`primary_window` are the library's only definitions of the grok step and of the
  window meant when none is given (the run model, the report and the runner call them);
- :mod:`.synthetic`: planted streams with known grok and onset steps.

Only numpy is imported here (pandas only if you hand in a DataFrame).
"""

from .alarm import AlarmScore, GrokAlarm, evaluate, replay, replay_events, score_runs
from .onset import OnsetParams, OnsetRule, OnsetTracker, onset_index
from .signals import (GROK_THRESHOLD, GramEdgeSummary, as_rows, gram_edge_summary, grok_step, primary_window,
                      ratio_series, series)

__all__ = [
    "AlarmScore",
    "GROK_THRESHOLD",
    "GramEdgeSummary",
    "GrokAlarm",
    "OnsetParams",
    "OnsetRule",
    "OnsetTracker",
    "as_rows",
    "evaluate",
    "gram_edge_summary",
    "grok_step",
    "onset_index",
    "primary_window",
    "ratio_series",
    "replay",
    "replay_events",
    "score_runs",
    "series",
]
