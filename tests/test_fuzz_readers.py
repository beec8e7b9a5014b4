"""Property-based fuzzing of the readers a user's files go through: safetensors checkpoints,
monitor histories (and the run model on top), and run configs. The property: whatever the
bytes, a reader either reads them or raises a :class:`SpectralEdgeError` (which the CLI turns
into one line) — never another exception, never a hang. Bounded: a fixed number of examples,
derandomized so that CI sees the same inputs every run."""

from __future__ import annotations

import json
import math
import struct
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (the dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from spectral_edge.engine import analyze_checkpoints  # noqa: E402
from spectral_edge.errors import SpectralEdgeError  # noqa: E402
from spectral_edge.experiments.config import RunConfig  # noqa: E402
from spectral_edge.io.history import read_history  # noqa: E402
from spectral_edge.io.run import read_run  # noqa: E402
from spectral_edge.stream.analyzer import AnalysisConfig  # noqa: E402

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)


def _must_be_clean(fn, *args, **kwargs):
    """Call ``fn``; any exception other than a SpectralEdgeError fails the property."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except SpectralEdgeError as e:
            assert str(e).strip() and "\n" not in str(e).strip(), repr(e)
            return None


# ---------------------------------------------------------------------------- safetensors
def _valid_safetensors(seed: int) -> bytes:
    from safetensors.torch import save

    g = torch.Generator().manual_seed(seed)
    return save({"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)})


_BASE = _valid_safetensors(0)
_HEADER_LEN = struct.unpack("<Q", _BASE[:8])[0]


@st.composite
def damaged_safetensors(draw) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "header", "length", "bytes"]))
    data = bytearray(_BASE)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 6))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "header":  # a different JSON header of the same or another length
        header = json.dumps(draw(JSON), allow_nan=True).encode()
        return struct.pack("<Q", len(header)) + header + bytes(data[8 + _HEADER_LEN:])
    if kind == "length":
        return struct.pack("<Q", draw(st.integers(0, 2**64 - 1))) + bytes(data[8:])
    return draw(st.binary(max_size=200))


@FUZZ
@given(damaged_safetensors())
def test_damaged_safetensors_never_escape_as_another_exception(blob):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for step in (1, 3):
            (folder / f"step_{step}.safetensors").write_bytes(_valid_safetensors(step))
        (folder / "step_2.safetensors").write_bytes(blob)
        res = _must_be_clean(analyze_checkpoints, folder, AnalysisConfig(windows=(2,)))
        if res is not None:  # it read: then every number it reports is what a valid file gives
            assert all(math.isfinite(r["sigma_1"]) for r in res.rows)


# ---------------------------------------------------------------------------- histories
ROW = st.fixed_dictionaries({"kind": st.sampled_from(["sed", "log", "probe", "event", "meta", "zzz"]),
                             "step": st.one_of(st.integers(-5, 10**30), st.none(), st.floats(), st.text(max_size=3))},
                            optional={"window": st.integers(-3, 12) | st.text(max_size=2),
                                      "gap_ratio": st.floats(allow_nan=True) | st.text(max_size=2),
                                      "val_loss": st.floats(allow_nan=True), "test_acc": st.floats(),
                                      "group": st.text(max_size=4) | st.none(), "k_star": st.integers(-2, 20)})
LINE = st.one_of(ROW.map(lambda r: json.dumps(r, allow_nan=True)), JSON.map(lambda v: json.dumps(v, allow_nan=True)),
                 st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t))


@FUZZ
@given(st.lists(LINE, max_size=12), st.booleans())
def test_history_lines_read_or_fail_in_one_line(lines, torn):
    text = "\n".join(lines) + ("" if torn else "\n")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "history.jsonl"
        path.write_text(text, encoding="utf-8")
        _must_be_clean(read_history, path)
        data = _must_be_clean(read_run, Path(d))
        if data is not None and len(data.spectral):
            _must_be_clean(data.spectral_series, "gap_ratio")
            _must_be_clean(data.grok)


# ---------------------------------------------------------------------------- configs
FIELDS = [f for f in RunConfig.__dataclass_fields__]


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), JSON, max_size=5))
def test_config_mappings_validate_or_fail_in_one_line(data):
    cfg = _must_be_clean(RunConfig.from_dict, data, where="fuzz.json")
    if cfg is not None:  # a config that validates round-trips and has sane numbers
        assert RunConfig.from_dict(cfg.to_dict()) == cfg
        assert cfg.steps >= 1 and cfg.lr > 0 and math.isfinite(cfg.lr) and min(cfg.windows) >= 2


@FUZZ
@given(st.text(max_size=80), st.sampled_from([".toml", ".json"]))
def test_config_files_of_any_text_validate_or_fail_in_one_line(text, ext):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"c{ext}"
        path.write_text(text, encoding="utf-8")
        _must_be_clean(RunConfig.from_file, path)
