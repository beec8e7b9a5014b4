"""Tiny helpers for numbers that leave the library (JSON records, tables, documents)."""

from __future__ import annotations

import math
from typing import Any


def finite_or_none(x: Any) -> float | None:
    """``float(x)`` when it is a finite number, else None (for NaN, ±inf, None, strings…)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def median_or_none(xs: Any) -> float | None:
    """The median of the numbers ``xs`` (±inf allowed: an ordered value), None when empty."""
    v = sorted(float(x) for x in xs)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
