"""Shared by the ranks and the parent test: a scale-aware row comparison, and the DDP test's
model, data and monitor settings."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from spectral_edge.functional.sketch import SketchSpec

STEPS = 12
MONITOR_KW = dict(windows=(2, 3), every=2, gradients=True, sketch=SketchSpec("fold", dim=16, seed=3, buckets=13))


def make_model() -> torch.nn.Module:
    """A small float64 MLP, identical on every process (fixed seed)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.Tanh(), torch.nn.Linear(9, 3)).double()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch (16 examples); rank r trains on rows [8r, 8r + 8)."""
    g = torch.Generator().manual_seed(4)
    return torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randn(16, 3, generator=g, dtype=torch.float64)


def _float_ok(key: str, x: float, y: float, row: Mapping[str, Any], rel: float) -> bool:
    """``x`` ≈ ``y`` for row field ``key``, with the accuracy the spectrum allows.

    Singular values come from the eigenvalues of the window's Gram matrix, so a relative
    perturbation ε of the sketches moves every σ_j by about ε·σ_1 (not ε·σ_j): a σ_j far
    below σ_1, and a ratio over it, is only that accurate in absolute terms."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isclose(x, y, rel_tol=rel, abs_tol=1e-300):
        return True
    s1 = abs(float(row.get("sigma_1", 0.0)))
    eps = rel * s1  # absolute uncertainty of any σ_j
    m = re.fullmatch(r"ratio_(\d+)", key)
    if m or key == "gap_ratio":
        j = int(m.group(1)) if m else int(row["k_star"])
        lo, hi = row.get(f"sigma_{j}"), row.get(f"sigma_{j + 1}")
        if not (isinstance(lo, float) and isinstance(hi, float)) or min(lo, hi) <= 0:
            return False
        return abs(x - y) <= abs(y) * (rel + eps / lo + eps / hi)
    if key.startswith("sigma_") or key in ("gap", "noise_floor", "drift_speed"):
        return abs(x - y) <= eps
    if key == "g23":
        return abs(x - y) <= rel * s1 * s1
    if key == "pc1_pct":
        return abs(x - y) <= 100 * rel
    return False


def assert_rows_close(got: Sequence[Mapping[str, Any]], want: Sequence[Mapping[str, Any]], what: str,
                      rel: float = 1e-9) -> None:
    """Same rows: equal keys, ints and strings; floats within ``rel`` on the scale above."""
    assert len(got) == len(want), f"{what}: {len(got)} rows != {len(want)}"
    assert len(want) > 0, f"{what}: no rows to compare"
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.keys() == b.keys(), f"{what}: row {i} keys differ: {set(a) ^ set(b)}"
        for k, y in b.items():
            x = a[k]
            if isinstance(y, float) and isinstance(x, float):
                ok = _float_ok(k, x, y, b, rel)
            else:
                ok = x == y
            assert ok, f"{what}: row {i} ({b.get('kind')}, group {b.get('group')}, W={b.get('window')}) {k}: {x!r} != {y!r}"
