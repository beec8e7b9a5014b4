"""Sketches: linearity, chunk/shard invariance, reproducibility, precision, JL behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectral_edge.errors import ConfigError
from spectral_edge.functional import rng
from spectral_edge.functional.sketch import FoldSketch, SketchSpec

FAMILIES = ["fold", "gaussian", "countsketch"]


def _params(seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return {
        "layers.0.w": scale * torch.randn(37, 41, generator=g),
        "layers.0.b": scale * torch.randn(41, generator=g),
        "layers.1.w": scale * torch.randn(3000, generator=g),
    }


def _build(fam, dim=64, seed=0, **kw):
    layout = {k: v.numel() for k, v in _params().items()}
    if fam == "fold":
        kw.setdefault("buckets", 101)  # small prime so the test tensors span many chunks
    return SketchSpec(family=fam, dim=dim, seed=seed, **kw).build(layout)


@pytest.mark.parametrize("fam", FAMILIES + ["exact"])
def test_linearity(fam):
    sk = _build(fam)
    a = {k: v.double() for k, v in _params(1).items()}  # float64 so that comb is exact enough
    b = {k: v.double() for k, v in _params(2).items()}
    comb = {k: 2.5 * a[k] - 0.75 * b[k] for k in a}
    lhs = sk(comb)
    rhs = 2.5 * sk(a) - 0.75 * sk(b)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12 * float(rhs.abs().max()))


@pytest.mark.parametrize("fam", FAMILIES + ["exact"])
def test_chunk_and_shard_invariance(fam):
    sk = _build(fam)
    p = _params(3)
    whole = sk(p)
    acc = sk.new_accumulator()
    g = np.random.default_rng(0)
    for name in reversed(list(p)):  # order of tensors does not matter either
        flat = p[name].reshape(-1)
        cuts = np.unique(np.r_[0, g.integers(1, flat.numel(), size=6), flat.numel()])
        pieces = list(zip(cuts[:-1], cuts[1:]))
        g.shuffle(pieces)  # shards arrive in any order
        for lo, hi in pieces:
            sk.add(acc, name, flat[lo:hi], offset=int(lo))
    torch.testing.assert_close(sk.finish(acc), whole, rtol=1e-12, atol=1e-12 * float(whole.abs().max()))


def test_fold_shards_that_straddle_chunk_boundaries_exactly():
    sk = FoldSketch(dim=16, seed=4, buckets=7)
    x = torch.randn(100, dtype=torch.float64)
    ref = sk({"t": x})
    for cuts in ([0, 3, 7, 8, 50, 100], [0, 1, 2, 99, 100], [0, 70, 100]):
        acc = sk.new_accumulator()
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            sk.add(acc, "t", x[lo:hi], offset=lo)
        torch.testing.assert_close(sk.finish(acc), ref, rtol=1e-13, atol=1e-13)
    # against the explicit matrix S = Gᵀ F built entry by entry
    G = sk.projection().numpy()
    s = sk.chunk_signs("t", 0, 15)
    R, h = sk.bucket_signs().numpy()[:7], sk.shift("t")
    S = np.zeros((16, 100))
    for i in range(100):
        S[:, i] = s[i // 7] * R[(i % 7 + h) % 7] * G[i % 7]
    np.testing.assert_allclose(ref.numpy(), S @ x.numpy(), rtol=1e-12)


@pytest.mark.parametrize("fam", FAMILIES)
def test_reproducible_from_seed_and_name_dependent(fam):
    p = _params(4)
    y1 = _build(fam, seed=7)(p)
    y2 = _build(fam, seed=7)(p)  # a fresh object, same seed
    y3 = _build(fam, seed=8)(p)
    assert torch.equal(y1, y2)
    assert not torch.allclose(y1, y3)
    renamed = {("x." + k): v for k, v in p.items()}
    assert not torch.allclose(_build(fam, seed=7)(renamed), y1)


def test_sketch_does_not_touch_global_rngs():
    torch.manual_seed(123)
    np.random.seed(123)
    expect_t, expect_n = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    for fam in FAMILIES:
        _build(fam)(_params())
    assert torch.equal(torch.rand(3), expect_t)
    assert np.array_equal(np.random.rand(3), expect_n)


def test_exact_sketch_is_the_flattened_vector():
    p = _params(5)
    y = _build("exact")(p)
    ref = torch.cat([t.reshape(-1) for t in p.values()]).double()
    assert torch.equal(y, ref)


def _precision_error(fam: str, accum: str, ratio: float = 1e4, seed: int = 0) -> float:
    """Relative error of S(θ+δ) − S(θ) against S(δ) when ‖θ‖/‖δ‖ = ratio (float32 states)."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(200_003, generator=g)
    delta = torch.randn(200_003, generator=g)
    delta *= theta.norm() / (ratio * delta.norm())
    theta2 = theta + delta
    true_delta = theta2.double() - theta.double()  # what the float32 states really differ by
    kw = {"buckets": 4093} if fam == "fold" else {}
    sk = SketchSpec(family=fam, dim=100, seed=seed, accum_dtype=accum, **kw).build()
    diff = sk({"t": theta2}) - sk({"t": theta})
    sk64 = SketchSpec(family=fam, dim=100, seed=seed, accum_dtype="float64", **kw).build()
    ref = sk64({"t": true_delta})
    return float((diff - ref).norm() / ref.norm())


@pytest.mark.parametrize("fam", FAMILIES)
def test_precision_at_state_to_update_ratio_1e4_needs_float64(fam):
    err64 = _precision_error(fam, "float64")
    err32 = _precision_error(fam, "float32")
    assert err64 < 1e-8, f"float64 accumulation error {err64:.2e}"
    # the reason for float64: a float32 accumulator loses most of the update's digits
    assert err32 > 1e-4, f"float32 accumulation unexpectedly precise ({err32:.2e})"


@pytest.mark.parametrize("fam", FAMILIES)
def test_jl_inner_products_unbiased_and_concentrated(fam):
    g = torch.Generator().manual_seed(9)
    x = torch.randn(5000, generator=g, dtype=torch.float64)
    z = 0.6 * x + 0.8 * torch.randn(5000, generator=g, dtype=torch.float64)
    true_xz, true_xx = float(x @ z), float(x @ x)
    est_xz, est_xx = [], []
    for seed in range(60):
        sk = SketchSpec(family=fam, dim=100, seed=seed, buckets=1009).build()
        sx, sz = sk({"v": x}), sk({"v": z})
        est_xz.append(float(sx @ sz))
        est_xx.append(float(sx @ sx))
    est_xz, est_xx = np.array(est_xz), np.array(est_xx)
    # mean over seeds is within 3 standard errors of the truth; spread ≈ sqrt(2/d)
    se = est_xx.std() / np.sqrt(len(est_xx))
    assert abs(est_xx.mean() - true_xx) < 3 * se + 1e-9
    assert abs(est_xz.mean() - true_xz) < 3 * est_xz.std() / np.sqrt(len(est_xz))
    assert 0.07 < est_xx.std() / true_xx < 0.2


def test_fold_bucket_count_must_be_prime_and_configs_validated():
    with pytest.raises(ConfigError, match="prime"):
        SketchSpec(family="fold", buckets=4096)
    with pytest.raises(ConfigError, match="unknown sketch family"):
        SketchSpec(family="srht")
    with pytest.raises(ConfigError, match="sketch dimension"):
        SketchSpec(family="gaussian", dim=0)
    with pytest.raises(ConfigError, match="layout"):
        SketchSpec(family="exact").build()
    with pytest.raises(ConfigError, match="accumulation dtype"):
        SketchSpec(accum_dtype="float16")


def test_counter_rng_is_position_deterministic():
    k = rng.stable_key(1, "w")
    whole = rng.normals(k, 0, 1000)
    np.testing.assert_array_equal(whole[300:400], rng.normals(k, 300, 100))
    assert abs(whole.mean()) < 0.15 and abs(whole.std() - 1) < 0.1
    s = rng.signs(k, 0, 20000)
    assert set(np.unique(s)) == {-1.0, 1.0} and abs(s.mean()) < 0.05
    assert rng.stable_key(1, "w") != rng.stable_key(2, "w") != rng.stable_key(1, "v")


@pytest.mark.parametrize("fam", FAMILIES + ["exact"])
def test_sketch_rows_equals_one_vector_at_a_time(fam):
    g = torch.Generator().manual_seed(2)
    rows = {"a": torch.randn(4, 5003, generator=g, dtype=torch.float64),
            "b": torch.randn(4, 17, generator=g, dtype=torch.float64)}
    layout = {"a": 5003, "b": 17}
    sk = SketchSpec(fam, dim=24, seed=5, buckets=101).build(layout)
    batch = sk.sketch_rows(rows)
    one = torch.stack([sk({n: v[t] for n, v in rows.items()}) for t in range(4)])
    torch.testing.assert_close(batch, one, rtol=1e-12, atol=1e-12 * float(one.abs().max()))


@pytest.mark.parametrize("family", ["fold", "gaussian", "countsketch", "exact"])
@pytest.mark.parametrize("dim", [0, -3, 2.5, True, "100"])
def test_a_sketch_dimension_that_is_not_a_whole_number_above_zero_is_refused(family, dim):
    # issue 13 item 10: no silent default, no silent truncation; the message names the option
    with pytest.raises(ConfigError, match=r"sketch dimension \(dim, --sketch-dim\).*" + repr(dim).replace(".", r"\.")):
        SketchSpec(family, dim=dim)


@pytest.mark.parametrize("family", ["fold", "gaussian", "countsketch", "exact"])
@pytest.mark.parametrize("buckets", [0, -7, 3.0])
def test_a_bucket_count_below_one_is_refused_for_every_family(family, buckets):
    with pytest.raises(ConfigError, match=r"buckets \(buckets, --buckets\)"):
        SketchSpec(family, buckets=buckets)


def test_exact_sketch_reports_no_projection_dimension():
    # the exact sketch keeps every parameter: no d to report (it used to say "dim": 100)
    spec = SketchSpec("exact")
    assert spec.dim is None and spec.to_dict()["dim"] is None
    assert SketchSpec("exact", dim=40) == spec == SketchSpec(**spec.to_dict())
    assert SketchSpec("fold", dim=40).to_dict()["dim"] == 40
    assert spec.build({"a": 7, "b": 3}).dim == 10  # the built sketch's length: the parameter count


def test_working_memory_of_each_family():
    assert SketchSpec("fold", dim=100).working_bytes() >= 16381 * 100 * 8  # the B×d projection
    assert SketchSpec("gaussian", dim=100).working_bytes() >= 4096 * 100 * 8  # one block of G
    assert SketchSpec("countsketch", dim=100).working_bytes() < 8 << 20
    assert SketchSpec("exact").working_bytes() == 0
