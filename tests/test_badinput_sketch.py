"""Bad sketch and window settings through ``spectral-edge analyze`` (issue 13, item 10): one
line naming the option and the problem, exit status 2, no traceback, nothing written, and an
absurd window or dimension refused at once with what it would cost, before any allocation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from badinput import Case, check
from helpers_ckpt import write_safetensors


def _run(folder: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    run = folder / "run"
    theta = {"w": torch.randn(6, 5, generator=g), "b": torch.randn(6, generator=g)}
    for i in range(4):
        write_safetensors(run / f"step_{100 * i}.safetensors", theta)
        theta = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in theta.items()}
    return run


def _analyze(*flags: str):
    def make(folder: Path) -> list[str]:
        return ["analyze", str(_run(folder)), *flags, "--out", str(folder / "m.csv")]
    return make


CASES = [
    # no silent default for 0, no silent truncation
    Case("sketch-dim-zero", _analyze("-w", "3", "-d", "0"), ["--sketch-dim", "≥ 1", "got 0"]),
    Case("sketch-dim-negative", _analyze("-w", "3", "--sketch-dim", "-5"), ["--sketch-dim", "got -5"]),
    Case("sketch-dim-zero-exact", _analyze("-w", "3", "--sketch", "exact", "-d", "0"), ["--sketch-dim"]),
    Case("sketch-dim-for-exact", _analyze("-w", "3", "--sketch", "exact", "-d", "50"),
         ["--sketch-dim", "does not apply to the exact sketch"]),
    Case("sketch-dim-zero-countsketch", _analyze("-w", "3", "--sketch", "countsketch", "-d", "0"),
         ["--sketch-dim", "got 0"]),
    Case("buckets-zero", _analyze("-w", "3", "--buckets", "0"), ["--buckets", "≥ 1", "got 0"]),
    Case("buckets-negative", _analyze("-w", "3", "--buckets", "-7"), ["--buckets", "got -7"]),
    Case("buckets-not-prime", _analyze("-w", "3", "--buckets", "4096"), ["--buckets", "prime", "4096"]),
    # absurd sizes: refused with their cost, before anything is allocated
    Case("window-absurd", _analyze("-w", "100000000"), ["W = 100000000", "--window", "would need", "GiB", "limit"]),
    Case("window-absurd-exact", _analyze("-w", "100000000", "--sketch", "exact"),
         ["W = 100000000", "--window", "would need", "limit"]),
    Case("sketch-dim-absurd", _analyze("-w", "3", "-d", "100000000"),
         ["d = 100000000", "--sketch-dim", "would need", "GiB", "fold"]),
    Case("sketch-dim-absurd-gaussian", _analyze("-w", "3", "--sketch", "gaussian", "-d", "10000000"),
         ["d = 10000000", "--sketch-dim", "would need", "gaussian"]),
    Case("window-and-dim-large-countsketch", _analyze("-w", "100000", "--sketch", "countsketch", "-d", "100"),
         ["W = 100000", "would need", "limit is 8 GiB"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, tmp_path: Path) -> None:
    # the old code spent 6–40 s allocating before a traceback; the refusal is arithmetic done
    # before any allocation, and its message carries the cost it computed ("would need … GiB")
    check(case, tmp_path)
