"""The shipped ``configs/*.toml`` load, and each equals the run of the suite it says it matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from spectral_edge.experiments.config import RunConfig
from spectral_edge.experiments.suite import alarm_suite, sequence_suite
from spectral_edge.reproduce.plans import get_scale, lm_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _suite(name: str) -> RunConfig:
    for r in alarm_suite() + sequence_suite():
        if r.name == name:
            return r.config
    raise KeyError(name)


@pytest.mark.parametrize("file,expected", [
    ("modular-add.toml", lambda: _suite("add-s42")),
    ("dyck.toml", lambda: _suite("dyck-s42")),
    ("scan.toml", lambda: _suite("scan-s42")),
    ("lm-tiny.toml", lambda: lm_config(get_scale("full"), 42, "adamw")),
])
def test_config_matches_the_suite_run(file, expected):
    assert RunConfig.from_file(CONFIGS / file) == expected()


def test_every_shipped_config_is_tested():
    assert {p.name for p in CONFIGS.glob("*.toml")} == {"modular-add.toml", "dyck.toml", "scan.toml", "lm-tiny.toml",
                                                        "lm-small.toml"}


def test_lm_small_is_lm_tiny_made_smaller():
    """configs/lm-small.toml (the README's language-model report picture) differs from lm-tiny.toml
    only in size, length and cadence."""
    small, tiny = (RunConfig.from_file(CONFIGS / f).to_dict() for f in ("lm-small.toml", "lm-tiny.toml"))
    assert {k for k in tiny if tiny[k] != small[k]} == {"steps", "warmup_steps", "eval_every", "every", "model", "probes"}
    assert small["model"] == {"n_layer": 2, "d_model": 64, "n_head": 2} and small["steps"] == 800
