"""Packaging promises: a light import, the README's two commands, and CI running the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("transformers", "lightning", "wandb", "tensorboard", "matplotlib", "statsmodels", "ruptures", "datasets", "numba")


def test_import_is_light():
    code = ("import sys, spectral_edge; from spectral_edge import Monitor, SketchSpec, analyze_checkpoints; "
            "import spectral_edge.integrations, spectral_edge.analysis, spectral_edge.cli; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_public_names_resolve():
    import spectral_edge

    for name in spectral_edge.__all__:
        assert getattr(spectral_edge, name) is not None


def _readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [ln.strip() for ln in lines[:12] if ln.startswith("    ")]


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    setup, tests = cmds
    assert "pip install torch==2.13.0" in setup and setup.endswith("spectral-edge demo")
    assert setup.index("torch==2.13.0") < setup.index("pip install -e")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), "the README's test command must be what .ci/run runs"
    assert "pip install --quiet torch==2.13.0" in ci
