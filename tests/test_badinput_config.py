"""Bad run configs (TOML, JSON, --set, grok flags): one line naming the file or flag, the key,
the value and what was expected; the existing run folder given as --out is left untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from badinput import Case, check
from spectral_edge.errors import ConfigError
from spectral_edge.experiments.config import RunConfig, check_value, parse_override


def _existing_run(d: Path) -> Path:
    """A run folder that a careless runner would clobber: 193 history lines and side files."""
    run = d / "run"
    run.mkdir()
    rows = [{"kind": "meta", "step": None, "library": "spectral-edge"}]
    rows += [{"kind": "log", "step": 10 * i, "loss": 1.0 / (i + 1)} for i in range(192)]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "config.json").write_text(json.dumps(RunConfig(steps=1920).to_dict()))
    (run / "summary.json").write_text(json.dumps({"grok_step": None}))
    return run


def _toml(text: str, *extra: str):
    def make(d: Path):
        run = _existing_run(d)
        (d / "c.toml").write_text(text + "\n")
        return ["run", d / "c.toml", "--out", run, *extra]

    return make


def _json(obj):
    def make(d: Path):
        run = _existing_run(d)
        (d / "c.json").write_text(json.dumps(obj))
        return ["run", d / "c.json", "--out", run]

    return make


def _grok(*flags: str):
    def make(d: Path):
        return ["grok", *flags, "--out", _existing_run(d)]

    return make


CASES = [
    Case("toml-steps-float", _toml("steps = 50.7"), ["c.toml", "steps", "expected int", "50.7"]),
    Case("toml-lr-string", _toml('lr = "1e-3"'), ["c.toml", "lr", "expected float", "'1e-3'"]),
    Case("toml-windows-int", _toml("windows = 10"), ["c.toml", "windows", "expected array"]),
    Case("toml-windows-too-small", _toml("windows = [5, 1]"), ["windows", "≥ 2"]),
    Case("toml-betas-string", _toml('betas = "ab"'), ["c.toml", "betas"]),
    Case("toml-betas-out-of-range", _toml("betas = [0.9, 1.5]"), ["betas", "[0, 1)"]),
    Case("toml-model-width-word", _toml('[model]\nd_model = "wide"'), ["c.toml", "model.d_model", "expected int", "wide"]),
    Case("toml-model-zero-heads", _toml("[model]\nn_heads = 0"), ["c.toml", "model.n_heads", ">= 1"]),
    Case("toml-probe-yes", _toml('[probes]\ndefect = "yes"'), ["c.toml", "probes", "'yes'"]),
    Case("toml-threads-negative", _toml("threads = -1"), ["c.toml", "threads", ">= 1", "-1"]),
    Case("toml-sketch-dim-zero", _toml("sketch_dim = 0"), ["c.toml", "sketch_dim", ">= 1"]),
    Case("toml-unknown-sketch", _toml('sketch = "fft"'), ["sketch", "'fft'", "fold"]),
    Case("toml-unknown-key", _toml("stepz = 10"), ["c.toml", "unknown config keys", "stepz"]),
    Case("toml-train-frac", _toml("train_frac = 1.5"), ["train_frac", "< 1"]),
    Case("toml-grok-threshold", _toml("grok_threshold = 2"), ["grok_threshold", "<= 1"]),
    Case("toml-modulus-one", _toml("modulus = 1"), ["modulus", ">= 2"]),
    Case("toml-steps-bool", _toml("steps = true"), ["steps", "expected int, got bool"]),
    Case("toml-task-option-unknown", _toml("[task_options]\nfoo = 1"), ["c.toml", "task_options", "foo"]),
    Case("toml-syntax", _toml("steps = = 3"), ["c.toml", "not a valid config file"]),
    Case("json-not-object", _json([1, 2]), ["c.json", "table/object"]),
    Case("json-lr-nan-string", _json({"lr": "nan"}), ["c.json", "lr", "expected float"]),
    Case("set-steps-word", _toml("steps = 100", "--set", "steps=abc"), ["--set steps=abc", "steps", "'abc'"]),
    Case("set-no-equals", _toml("steps = 100", "--set", "steps"), ["--set takes key=value"]),
    Case("set-unknown-key", _toml("steps = 100", "--set", "nope=1"), ["--set nope=1", "unknown config keys"]),
    Case("grok-lr-nan", _grok("--lr", "nan"), ["lr", "> 0"]),
    Case("grok-lr-inf", _grok("--lr", "inf"), ["lr", "finite"]),
    Case("grok-weight-decay-negative", _grok("--weight-decay", "-5"), ["weight_decay", ">= 0", "-5"]),
    Case("grok-unknown-op", _grok("--op", "pow"), ["unknown operation", "pow"]),
    Case("grok-train-frac-zero", _grok("--train-frac", "0"), ["train_frac", "> 0"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_config(case, tmp_path):
    check(case, tmp_path)


def test_valid_values_still_load_and_lists_become_tuples(tmp_path):
    (tmp_path / "c.toml").write_text('steps = 50\nlr = 1\nwindows = [5, 10]\nbetas = [0.9, 0.99]\n'
                                     'grad_clip = 0.5\n[model]\nd_model = 32\n[probes.defect]\nevery = 10\n')
    cfg = RunConfig.from_file(tmp_path / "c.toml", overrides=["seed=7", "optimizer=sgd", "windows=[3, 4]"])
    assert (cfg.steps, cfg.lr, cfg.windows, cfg.betas, cfg.seed, cfg.optimizer) == (50, 1.0, (3, 4), (0.9, 0.99), 7,
                                                                                  "sgd")
    assert isinstance(cfg.lr, float) and cfg.probes == {"defect": {"every": 10}}
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # round trip


def test_check_value_names_the_key_and_the_nested_place():
    with pytest.raises(ConfigError, match=r"^probes\[\.\.\.\]: expected object"):
        check_value({"defect": 3}, dict[str, dict[str, int]], "probes")
    with pytest.raises(ConfigError, match=r"^betas\[1\]: expected float, got str"):
        check_value([0.9, "x"], tuple[float, float], "betas")
    assert check_value([1, 2], tuple[int, ...], "windows") == (1, 2)
    assert parse_override("lr=1e-3") == ("lr", 1e-3) and parse_override("optimizer = sgd") == ("optimizer", "sgd")
