"""The streaming stage: the one sketch loop and its checks, and the offline engine, the
monitor and the sharded path giving identical sketches for identical parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from spectral_edge.engine import analyze_checkpoints
from spectral_edge.errors import ConfigError, NonFiniteError, ShapeMismatchError
from spectral_edge.functional.sketch import SketchSpec
from spectral_edge.monitor import Monitor
from spectral_edge.selection import Selection
from spectral_edge.stream import sharding
from spectral_edge.stream.analyzer import AnalysisConfig, TrajectoryAnalyzer
from spectral_edge.stream.sampler import GroupSketcher

SHAPES = {"a.weight": (5, 3), "a.bias": (5,), "b.weight": (2, 5)}
FAMILIES = ("exact", "fold", "gaussian", "countsketch")


def _spec(family: str) -> SketchSpec:
    return SketchSpec(family, dim=16, seed=3, buckets=7 if family == "fold" else 16381)  # tiny B: many chunks


def _analyzer(family: str = "fold", **sel) -> TrajectoryAnalyzer:
    cfg = AnalysisConfig(windows=(2,), sketch=_spec(family), selection=Selection(**sel))
    return TrajectoryAnalyzer(cfg, {n: (s, torch.float32) for n, s in SHAPES.items()})


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(*s, generator=g) for n, s in SHAPES.items()}


# ---------------------------------------------------------------------------- the checks of the one loop
def test_names_are_normalised_and_unselected_tensors_skipped():
    an = _analyzer(exclude=("b.*",))
    t = _tensors()
    want = an.sketch([("a.weight", t["a.weight"]), ("a.bias", t["a.bias"])])
    got = an.sketch([("module._orig_mod.a.weight", t["a.weight"]), ("a.bias", t["a.bias"]),
                     ("b.weight", torch.ones(7)), ("not.there", torch.ones(1))])  # skipped: no shape check
    assert torch.equal(got["all"], want["all"])
    pieces = sharding.sketch_shards(an, [("module.a.weight", t["a.weight"].reshape(-1), 0),
                                         ("a.bias", t["a.bias"], 0), ("b.weight", torch.ones(3), 99)])
    assert torch.equal(pieces["all"], want["all"])


def test_a_whole_tensor_given_twice_is_refused():
    an, t = _analyzer(), _tensors()
    with pytest.raises(ConfigError, match="'a.bias' was given twice"):
        an.sketch([*t.items(), ("module.a.bias", t["a.bias"])])
    with pytest.raises(ConfigError, match="given twice"):  # whole and also as a piece
        an.sketcher.sketch_pieces([*t.items(), ("a.bias", t["a.bias"][:2], 0)])
    with pytest.raises(ConfigError, match="given twice"):
        an.sketcher.sketch_pieces([("a.bias", t["a.bias"][:2], 0), ("a.bias", t["a.bias"])])
    # many pieces of one tensor are a shard layout, not a repetition
    an.sketcher.sketch_pieces([("a.bias", t["a.bias"][:2], 0), ("a.bias", t["a.bias"][2:], 2)])


def test_a_whole_tensor_must_have_exactly_its_shape():
    an, t = _analyzer(), _tensors()
    with pytest.raises(ShapeMismatchError, match=r"'a.weight' has shape \(3, 5\), expected \(5, 3\)"):
        an.sketch([("a.weight", t["a.weight"].T), ("a.bias", t["a.bias"]), ("b.weight", t["b.weight"])])
    with pytest.raises(ShapeMismatchError, match="has shape"):  # same numel, flattened: still not the shape
        an.sketch([("a.weight", t["a.weight"].reshape(-1)), ("a.bias", t["a.bias"]), ("b.weight", t["b.weight"])])
    # a sketcher that knows only element counts checks those
    bare = GroupSketcher(an.plan, an.config.sketch, {n: v.numel() for n, v in t.items()})
    with pytest.raises(ShapeMismatchError, match="16 elements, expected 15"):
        bare.sketch_pieces([("a.weight", torch.ones(16))])


def test_a_piece_must_fit_inside_its_tensor():
    an, t = _analyzer(), _tensors()
    flat = t["a.weight"].reshape(-1)  # 15 elements
    with pytest.raises(ConfigError, match=r"entries \[10, 20\) fall outside its 15 elements"):
        sharding.sketch_shards(an, [("a.weight", torch.cat([flat[10:], flat[:5]]), 10)])
    with pytest.raises(ConfigError, match="fall outside"):
        sharding.sketch_shards(an, [("a.weight", flat[:3], -1)])
    with pytest.raises(ConfigError, match="fall outside"):
        sharding.sketch_shards(an, [("a.weight", flat[:0], 16)])  # even an empty piece
    sharding.sketch_shards(an, [("a.weight", flat[:0], 15), ("a.weight", flat[14:], 14)])  # the very end is fine


def test_every_selected_tensor_must_be_present_in_a_whole_sample():
    an, t = _analyzer(), _tensors()
    with pytest.raises(ShapeMismatchError, match=r"1 selected tensor\(s\) missing, e.g. \['a.bias'\]"):
        an.sketch([("a.weight", t["a.weight"]), ("b.weight", t["b.weight"])])
    got = an.sketch([("a.weight", t["a.weight"]), ("b.weight", t["b.weight"])], allow_missing=True)
    want = an.sketch([*t.items(), ])
    want_zero = an.sketch([("a.weight", t["a.weight"]), ("a.bias", torch.zeros(5)), ("b.weight", t["b.weight"])])
    assert torch.equal(got["all"], want_zero["all"]) and not torch.equal(got["all"], want["all"])
    # pieces of a whole sample must hold every element
    flat = t["a.weight"].reshape(-1)
    items = [("a.weight", flat[:7], 0), ("a.weight", flat[8:], 8), ("a.bias", t["a.bias"]), ("b.weight", t["b.weight"])]
    with pytest.raises(ShapeMismatchError, match="pieces hold 14 of its 15 elements"):
        an.sketcher.sketch_pieces(items, complete=True)
    an.sketcher.sketch_pieces(items)  # one rank's shards need not be complete


def test_nonfinite_values_raise_and_no_graph_is_recorded():
    an, t = _analyzer(), _tensors()
    bad = dict(t)
    bad["b.weight"] = t["b.weight"].clone()
    bad["b.weight"][1, 2] = float("inf")
    with pytest.raises(NonFiniteError, match="b.weight"):
        an.sketch(bad.items())
    w = torch.nn.Parameter(t["a.weight"].clone())
    out = an.sketch([("a.weight", w * 2), ("a.bias", t["a.bias"]), ("b.weight", t["b.weight"])])
    assert not out["all"].requires_grad


# ---------------------------------------------------------------------------- one loop, one answer
@pytest.mark.parametrize("family", FAMILIES)
def test_offline_engine_monitor_and_shards_give_identical_sketches(tmp_path, family):
    """The same parameters through the three callers of the one loop: bit-identical sketches
    and rows for whole tensors (engine, monitor), and the same sketch to rounding for shards."""
    g = torch.Generator().manual_seed(0)
    # names in sorted order: a safetensors file lists its tensors sorted, the monitor in model order
    params = [(n, torch.nn.Parameter(torch.randn(*s, generator=g))) for n, s in sorted(SHAPES.items())]
    names = [n for n, _ in params]
    mon = Monitor(params, windows=(2, 3), every=1, sketch=_spec(family), selection=Selection(group_by="matrix"))
    cfg = mon.config
    shapes = {n: (tuple(p.shape), p.dtype) for n, p in params}
    sharded = TrajectoryAnalyzer(cfg, shapes)
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for step in range(6):
        if step:
            with torch.no_grad():
                for _, p in params:
                    p.add_(0.1 * torch.randn(p.shape, generator=g))
            mon.step()
        state = {n: p.detach().clone() for n, p in params}
        save_file(state, str(folder / f"step_{step}.safetensors"))
        # shards of every tensor dealt to 3 "ranks" at their global flat offsets, summed as the all-reduce would
        parts = [sharding.sketch_shards(sharded, [(n, *sharding.flat_shard(t, r, 3)) for n, t in state.items()])
                 for r in range(3)]
        total = {k: sum(p[k] for p in parts) for k in parts[0]}
        whole = sharded.sketch(state.items())
        for k, v in whole.items():
            assert torch.equal(v, mon.updates.windows[k].last_state), (step, k)
            assert float((total[k] - v).norm()) <= 1e-12 * float(v.norm()), (step, k)
        sharded.push_sketches(step, total)
    res = analyze_checkpoints(folder, cfg)
    assert res.groups == ["all", *names]
    sed = [{k: v for k, v in r.items() if k != "kind"} for r in mon.rows if r["kind"] == "sed"]
    assert len(sed) == len(res.rows) > 0
    for a, b in zip(sed, res.rows):
        np.testing.assert_equal(a, b)  # the same numbers, bit for bit (NaN == NaN here)
    last = [r for r in res.rows if r["step"] == 5]
    for a, b in zip(last, sharded.rows()):
        assert a["group"] == b["group"] and a["window"] == b["window"]
        np.testing.assert_allclose([a[f"sigma_{j}"] for j in (1, 2)], [b[f"sigma_{j}"] for j in (1, 2)], rtol=1e-9)


# ---------------------------------------------------------------------------- settings (issue 13 item 10)
def test_default_sketch_refuses_zero_instead_of_defaulting():
    from spectral_edge.stream.analyzer import default_sketch

    assert default_sketch((5, 10)).dim == 100 and default_sketch((5, 10), dim=None, buckets=None).buckets == 16381
    with pytest.raises(ConfigError, match=r"sketch dimension \(dim, --sketch-dim\) must be a whole number ≥ 1, got 0"):
        default_sketch((10,), dim=0)
    with pytest.raises(ConfigError, match=r"buckets \(buckets, --buckets\) must be a whole number ≥ 1, got 0"):
        default_sketch((10,), buckets=0)
    with pytest.raises(ConfigError, match="got -4"):
        default_sketch((10,), "countsketch", dim=-4)


@pytest.mark.parametrize("windows, spec, what", [
    ((10**8,), None, "W = 100000000"),  # d = 10·W by default
    ((10,), SketchSpec("fold", dim=10**8), "d = 100000000"),  # the fold's B×d projection alone is 12 TiB
    ((10,), SketchSpec("gaussian", dim=10**7), "d = 10000000"),
    ((10**5,), SketchSpec("countsketch", dim=100), "W = 100000"),
])
def test_an_absurd_window_or_dimension_is_refused_at_once_with_its_cost(windows, spec, what, monkeypatch):
    import torch as _torch

    def _no_allocation(*a, **k):  # the refusal is arithmetic: nothing may be allocated first
        raise AssertionError("allocated before refusing")

    for fn in ("zeros", "empty", "full", "randn", "ones"):
        monkeypatch.setattr(_torch, fn, _no_allocation)
    with pytest.raises(ConfigError, match=r"would need [0-9.e+]+ [KMGTP]iB.*limit is 8 GiB") as err:
        AnalysisConfig(windows=windows, sketch=spec)
    assert what in str(err.value) and "--window" in str(err.value) and "--sketch-dim" in str(err.value)


def test_the_analyzer_counts_every_group_and_the_exact_parameter_count():
    from spectral_edge.stream.window import STATE_LIMIT_BYTES

    # d = 10⁷ fits once (0.9 GiB of window + 0.4 GiB of one gaussian block) but not for 12 groups
    cfg = AnalysisConfig(windows=(10,), sketch=SketchSpec("countsketch", dim=10**7), selection=Selection(group_by="layer"))
    shapes = {f"layers.{i}.w": ((3, 3), torch.float32) for i in range(12)}
    with pytest.raises(ConfigError, match=r"13 groups.*would need [0-9.]+ GiB"):
        TrajectoryAnalyzer(cfg, shapes)
    # exact: d is the parameter count
    big = {"w": ((10**8,), torch.float32)}
    with pytest.raises(ConfigError, match=r"exact sketch.*100,000,000 parameters.*--sketch fold"):
        TrajectoryAnalyzer(AnalysisConfig(windows=(10,), sketch=SketchSpec("exact")), big)
    assert STATE_LIMIT_BYTES == 8 << 30


def test_an_exact_analyzer_state_saved_with_dim_100_still_loads():
    # before issue 13 the exact spec said "dim": 100 in its config; such saved states resume
    an = _analyzer("exact")
    for i in range(3):
        an.push(i, _tensors(i).items())
    state = an.state_dict()
    assert state["config"]["sketch"]["dim"] is None
    state["config"]["sketch"]["dim"] = 100
    again = _analyzer("exact")
    again.load_state_dict(state)
    np.testing.assert_equal(again.rows(), an.rows())  # NaN == NaN here
    state["config"]["sketch"]["family"] = "fold"
    with pytest.raises(Exception, match="different configuration"):
        _analyzer("exact").load_state_dict(state)
