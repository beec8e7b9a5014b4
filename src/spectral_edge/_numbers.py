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
