"""Formatting: numbers and tables as the documents print them. Shared by :mod:`.claims` (the
"ours" and "why" cells) and :mod:`.documents`, so that both write a number the same way.

Two conventions, kept apart because the two documents already use them: the trajectory
document writes a missing number as ``n/a`` (:func:`fmt`, :func:`fmt_p`, :func:`lst`), the
grokking document as ``–`` (:func:`fmt_dash`, :func:`value_range`, :func:`mean_sd_text`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .._numbers import finite_or_none as _finite


# ---------------------------------------------------------------------- trajectory document ("n/a")
def fmt(x: Any, nd: int = 3) -> str:
    """A number with ``nd`` decimals (integers ≥ 100 without, tiny ones in e-notation); ``n/a`` if not finite."""
    f = _finite(x)
    if f is None:
        return "n/a"
    if abs(f) >= 100 or f == int(f) and abs(f) < 1e6 and nd == 0:
        return f"{f:.0f}"
    if abs(f) < 10 ** (-nd) and f != 0:
        return f"{f:.1e}"
    return f"{f:.{nd}f}"


def fmt_p(p: Any) -> str:
    """A p-value: three decimals, or e-notation below 0.001."""
    f = _finite(p)
    if f is None:
        return "n/a"
    return f"{f:.3f}" if f >= 0.001 else f"{f:.1e}"


def lst(xs: Sequence[Any], nd: int = 2) -> str:
    """Comma-separated :func:`fmt` of each value (``nd = 0``: integers)."""
    return ", ".join("n/a" if _finite(x) is None else (str(int(x)) if nd == 0 else fmt(x, nd)) for x in xs)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table (``|`` escaped, newlines flattened)."""
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return out


def dist(d: Mapping[str, Any]) -> str:
    """The counts of a :func:`~.measures.kstar_distribution` as ``k: n, …``."""
    if not d or not d.get("n"):
        return "n/a"
    return ", ".join(f"{k}: {v}" for k, v in d["counts"].items())


def hms(seconds: Any) -> str:
    """A duration as ``1 h 05 min`` or ``3 min 07 s``."""
    f = _finite(seconds)
    if f is None:
        return "n/a"
    m, s = divmod(int(round(f)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


# ---------------------------------------------------------------------- grokking document ("–")
def fmt_dash(v: Any, digits: int = 0) -> str:
    """A float with ``digits`` decimals, anything else as ``str``; ``–`` for None and non-finite floats."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def value_range(vals: Sequence[Any], digits: int = 0) -> str:
    """``lo–hi`` of the finite values (one value when they are equal); ``–`` when there are none."""
    v = [float(x) for x in vals if _finite(x) is not None]
    if not v:
        return "–"
    lo, hi = min(v), max(v)
    return f"{lo:.{digits}f}" if lo == hi else f"{lo:.{digits}f}–{hi:.{digits}f}"


def mean_sd_text(vals: Sequence[Any], digits: int = 2) -> str:
    """``mean ± sd (n = …)`` of the finite values (sample sd; 0 for one value); ``–`` when there are none."""
    import numpy as np

    v = [float(x) for x in vals if _finite(x) is not None]
    if not v:
        return "–"
    return f"{np.mean(v):.{digits}f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.{digits}f} (n = {len(v)})"
