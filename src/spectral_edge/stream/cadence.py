"""When a stream samples: every N optimizer steps, a schedule, or a predicate.

:class:`Cadence` is the monitor's ``every`` argument, checked once and asked per step
(``cadence(step) -> bool``). Three forms:

- an int N ≥ 1: steps 0, N, 2N, …;
- a schedule, a sequence of ``(until_step, every)`` pairs such as ``[(2000, 10), (None, 100)]``.
  Each entry covers the steps from the previous entry's ``until`` (0 for the first) up to its
  own ``until``, *exclusive*, and samples the first step of that span and every ``every``-th
  step after it: ``[(2000, 10), (None, 100)]`` samples 0, 10, …, 1990, 2000, 2100, …, and
  ``[(25, 10), (None, 100)]`` samples 0, 10, 20, 25, 125, … (the step where an entry starts is
  always a sample). The ``until`` steps increase strictly; only the last may be None (no end).
  When the last ``until`` is a step, nothing is sampled from that step on. An int N is the
  schedule ``[(None, N)]``. Lists work as pairs (``[[2000, 10], [null, 100]]`` from JSON);
- a callable ``every(step) -> bool``, asked for each optimizer step: it must depend on the step
  alone (a resumed run asks it again for the steps that follow).

Whatever the form, a window is W consecutive *samples*: across a schedule's boundary it mixes
updates over different numbers of steps (each row records the gap to the previous sample,
``sample_spacing``, and the first step the window spans, ``step_first``).

:meth:`Cadence.record` is what a history's meta row and a saved monitor state hold: the int,
the schedule as lists (``[[2000, 10], [None, 100]]``), or ``"callable <name>"``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, Union

from ..errors import ConfigError

__all__ = ["Cadence", "CadenceSpec", "mixes_spacings"]

#: what ``every`` may be: an int, a schedule of (until_step or None, every) pairs, or a predicate
CadenceSpec = Union[int, Sequence[Sequence[Any]], Callable[[int], bool], "Cadence"]


def _whole(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


class Cadence:
    """A checked sampling cadence (see the module docs); ``cadence(step)`` says whether
    optimizer step ``step`` is sampled. ``name`` is the option named in errors."""

    __slots__ = ("kind", "period", "schedule", "predicate")

    def __init__(self, every: CadenceSpec, *, name: str = "every"):
        self.period: int | None = None
        self.schedule: tuple[tuple[int | None, int], ...] = ()
        self.predicate: Callable[[int], Any] | None = None
        if isinstance(every, Cadence):
            self.kind, self.period, self.schedule, self.predicate = every.kind, every.period, every.schedule, every.predicate
        elif _whole(every):
            if int(every) < 1:  # type: ignore[arg-type]
                raise ConfigError(f"{name} must be a whole number ≥ 1 of optimizer steps, a schedule or a callable, "
                                  f"got {every!r}")
            self.kind, self.period = "every", int(every)  # type: ignore[arg-type]
            self.schedule = ((None, self.period),)
        elif isinstance(every, (list, tuple)):
            self.kind, self.schedule = "schedule", _check_schedule(every, name)
        elif callable(every):
            self.kind, self.predicate = "predicate", every
        else:
            raise ConfigError(f"{name} must be a whole number ≥ 1 of optimizer steps, a schedule of (until_step, "
                              f"every) pairs or a callable step -> bool, got {every!r}")

    def __call__(self, step: int) -> bool:
        """True when optimizer step ``step`` is sampled."""
        step = int(step)
        if self.predicate is not None:
            return bool(self.predicate(step))
        if self.period is not None:
            return step % self.period == 0
        start = 0
        for until, every in self.schedule:
            if until is None or step < until:
                return step >= start and (step - start) % every == 0
            start = until
        return False  # past the last until

    def record(self) -> int | list[list[int | None]] | str:
        """JSON-ready: the int, the schedule as ``[[until, every], …]`` or ``"callable <name>"``."""
        if self.period is not None:
            return self.period
        if self.predicate is not None:
            return f"callable {getattr(self.predicate, '__name__', type(self.predicate).__name__)}"
        return [[until, every] for until, every in self.schedule]

    def matches(self, recorded: Any) -> bool:
        """Whether ``recorded`` (a :meth:`record` read back) is this cadence. A predicate
        cannot be compared: any recorded predicate matches one."""
        if self.predicate is not None:
            return isinstance(recorded, str) and recorded.startswith("callable")
        if self.period is not None:
            return _whole(recorded) and int(recorded) == self.period
        if not isinstance(recorded, (list, tuple)):
            return False
        try:
            return [[u, e] for u, e in recorded] == self.record()
        except (TypeError, ValueError):
            return False

    def describe(self) -> str:
        """In words, for messages: ``every 100 steps``, ``the schedule [[2000, 10], [None, 100]]``…"""
        if self.period is not None:
            return f"every {self.period} steps"
        if self.predicate is not None:
            return f"on the steps a {self.record()} chooses"
        return f"on the schedule {self.record()}"

    def __repr__(self) -> str:
        return f"Cadence({self.record()!r})"


def _check_schedule(schedule: Sequence[Any], name: str) -> tuple[tuple[int | None, int], ...]:
    """The schedule as ``((until, every), …)``; a ConfigError names the first bad entry."""
    if not schedule:
        raise ConfigError(f"{name}: the schedule is empty; give (until_step, every) pairs such as "
                          "[(2000, 10), (None, 100)]")
    out: list[tuple[int | None, int]] = []
    for i, entry in enumerate(schedule):
        where = f"{name}: schedule entry {i + 1} ({entry!r})"
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise ConfigError(f"{where} is not an (until_step, every) pair")
        until, every = entry
        if not _whole(every) or every < 1:
            raise ConfigError(f"{where}: every must be a whole number ≥ 1 of optimizer steps, got {every!r}")
        if until is not None and (not _whole(until) or until < 1):
            raise ConfigError(f"{where}: until_step must be a whole number ≥ 1 or None (no end), got {until!r}")
        if out and out[-1][0] is None:
            raise ConfigError(f"{where}: only the last entry may have until_step None (no end)")
        if until is not None and out and until <= out[-1][0]:  # type: ignore[operator]
            raise ConfigError(f"{where}: the until steps must increase strictly, got {out[-1][0]} then {until}")
        out.append((None if until is None else int(until), int(every)))
    return tuple(out)


def mixes_spacings(row: Any) -> bool:
    """Whether a window row (``sed``/``grad``) spans samples that are not evenly spaced: its span
    ``step − step_first`` differs from ``window × sample_spacing`` (a schedule's boundary inside
    the window). Its spectrum is then dominated by the longer updates (k* counts them), so the
    monitor's detectors skip it (the row is still recorded) and the analyses drop it. Exact when
    the spacings only grow or only shrink along the run, as in a schedule of rising ``every``.
    False for rows without those keys (or with a missing value)."""
    try:
        span = int(row["step"]) - int(row["step_first"])
        return span != int(row["window"]) * int(row["sample_spacing"])
    except (KeyError, TypeError, ValueError, OverflowError):  # int(nan) is a ValueError
        return False
