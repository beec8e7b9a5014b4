"""Bad-input corpus of the intervention options of ``grok`` and ``run`` (tests/badinput.py): each
case exits 2 with one line naming the problem and the flag, key or file, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from badinput import Case, check

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

GROK = ["grok", "--modulus", "7", "--steps", "20", "--no-defect"]


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def _baseline(folder: Path, d: int = 8, nan: bool = False) -> Path:
    """A baseline run folder holding only snapshots.safetensors of 8 attention matrices (d × d)."""
    from spectral_edge.experiments.checkpoint import SNAPSHOTS_FILE, SnapshotRing

    names = [f"layers.{i}.attn.{m}_proj.weight" for i in range(2) for m in "qkvo"]
    ring = SnapshotRing({n: (d, d) for n in names}, 4, 10)
    g = torch.Generator().manual_seed(0)
    for step in range(0, 40, 10):
        ring.take(step, {n: torch.randn(d, d, generator=g) for n in names})
    if nan:
        ring.buffers[names[0]][1, 0, 0] = float("nan")
    folder.mkdir(parents=True, exist_ok=True)
    ring.save(folder / SNAPSHOTS_FILE)
    return folder


def _config(d: Path, table: str) -> Path:
    return _write(d / "c.toml", f'task = "modular"\nmodulus = 7\nsteps = 20\n{table}')


CASES = [
    Case("project-without-basis",
         lambda d: [*GROK, "--intervention", "project", "--intervention-start", "5", "--out", d / "o"],
         ["project needs the execution basis", "--basis-from"]),
    Case("strength-negative",
         lambda d: [*GROK, "--intervention", "keep-sed", "--strength", "-1", "--out", d / "o"],
         ["intervention.strength", "--strength", "-1"]),
    Case("start-beyond-the-run",
         lambda d: [*GROK, "--intervention", "keep-sed", "--intervention-start", "500", "--out", d / "o"],
         ["--intervention-start", "500", "beyond the run's 20 steps"]),
    Case("default-start-beyond-the-run",
         lambda d: [*GROK, "--intervention", "penalty", "--basis-from", _baseline(d / "base"), "--out", d / "o"],
         ["intervention.start", "500", "default of penalty", "beyond"]),
    Case("unknown-kind",
         lambda d: [*GROK, "--intervention", "boost", "--out", d / "o"],
         ["--intervention", "boost", "keep-sed"]),
    Case("strength-without-intervention",
         lambda d: [*GROK, "--strength", "0.5", "--out", d / "o"],
         ["--strength", "needs --intervention"]),
    Case("basis-from-a-folder-without-snapshots",
         lambda d: [*GROK, "--intervention", "project", "--intervention-start", "5", "--basis-from",
                    _write(d / "empty" / "notes.txt", "x").parent, "--out", d / "o"],
         ["empty", "no snapshots.safetensors"]),
    Case("basis-from-missing",
         lambda d: [*GROK, "--intervention", "project", "--intervention-start", "5", "--basis-from", d / "nope",
                    "--out", d / "o"],
         ["nope", "not there"]),
    Case("basis-from-a-file",
         lambda d: [*GROK, "--intervention", "noise", "--intervention-start", "5", "--basis-from",
                    _write(d / "file.txt", "x"), "--out", d / "o"],
         ["file.txt", "a file"]),
    Case("basis-from-corrupt-snapshots",
         lambda d: [*GROK, "--intervention", "project", "--intervention-start", "5", "--basis-from",
                    _write(d / "bad" / "snapshots.safetensors", b"\x10\x00garbage").parent, "--out", d / "o"],
         ["snapshots.safetensors"]),
    Case("basis-from-nan-snapshots",
         lambda d: [*GROK, "--intervention", "project", "--intervention-start", "5", "--basis-from",
                    _baseline(d / "nan", nan=True), "--out", d / "o"],
         ["snapshots.safetensors", "NaN"]),
    Case("basis-of-another-model",  # snapshots of 8×8 matrices, the grok model has 128×128 ones
         lambda d: [*GROK, "--intervention", "project", "--intervention-start", "5", "--basis-from",
                    _baseline(d / "base"), "--out", d / "o"],
         ["base", "attn", "shape [8, 8]", "[128, 128]"]),
    Case("basis-from-is-the-output",
         lambda d: [*GROK, "--intervention", "project", "--intervention-start", "5", "--basis-from",
                    _baseline(d / "base"), "--out", d / "base", "--overwrite"],
         ["--basis-from", "--out"]),
    Case("rank-kind-with-a-basis",
         lambda d: [*GROK, "--intervention", "keep-sed", "--basis-from", _baseline(d / "base"), "--out", d / "o"],
         ["--basis-from", "keep-sed builds its own"]),
    Case("toml-unknown-intervention-key",
         lambda d: ["run", _config(d, '[intervention]\nkind = "keep-sed"\nstrenght = 1\n'), "--out", d / "o"],
         ["c.toml", "intervention", "unknown keys", "strenght"]),
    Case("toml-strength-text",
         lambda d: ["run", _config(d, '[intervention]\nkind = "keep-sed"\nstrength = "big"\n'), "--out", d / "o"],
         ["c.toml", "intervention.strength", "big"]),
    Case("toml-intervention-without-kind",
         lambda d: ["run", _config(d, '[intervention]\nstrength = 0.5\n'), "--out", d / "o"],
         ["c.toml", "intervention.kind", "missing"]),
    Case("run-flag-start-beyond",
         lambda d: ["run", _config(d, ""), "--intervention", "remove-random", "--intervention-start", "21",
                    "--out", d / "o"],
         ["c.toml", "--intervention-start", "beyond"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path):
    check(case, tmp_path)
