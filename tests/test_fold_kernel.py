"""The numba fold kernel against the torch path and a numpy formula, plus the helpers that
keep the offline analysis fast (chunked normals, the header cache, the finiteness check)."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from spectral_edge.errors import ConfigError
from spectral_edge.functional import fold_kernel, rng
from spectral_edge.functional.sketch import FoldSketch
from spectral_edge.io._safetensors import read_header
from spectral_edge.stream.sampler import _all_finite

pytest.importorskip("numba")


@pytest.fixture
def kernel_everywhere(monkeypatch):
    """Route every piece, however small, through the kernel, and split any input over threads."""
    monkeypatch.setattr(fold_kernel, "MIN_ELEMS", 0)
    monkeypatch.setattr(fold_kernel, "PARALLEL_MIN_ELEMS", 0)


def _sketch_pieces(sk: FoldSketch, x: torch.Tensor, cuts: list[int]) -> torch.Tensor:
    acc = sk.new_accumulator()
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        sk.add(acc, "w", x[lo:hi], offset=lo)
    return acc.clone()


CASES = [  # (numel, cuts inside): whole tensors of every shape class, and shards
    (5, []), (101, []), (7 * 101, []), (7 * 101 + 3, []), (50 * 101 + 17, []),
    (50 * 101 + 17, [3, 101, 950, 4000]), (2000, [1, 2, 1999]),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("numel,inner", CASES)
@pytest.mark.parametrize("threads", [1, 3])
def test_kernel_equals_torch_path(kernel_everywhere, monkeypatch, dtype, numel, inner, threads):
    g = torch.Generator().manual_seed(numel)
    x = (torch.randn(numel, generator=g) * 3).to(dtype)
    cuts = [0, *inner, numel]
    torch.set_num_threads(threads)
    try:
        monkeypatch.setenv(fold_kernel.ENV, "torch")
        ref = _sketch_pieces(FoldSketch(dim=8, seed=1, buckets=101), x, cuts)
        monkeypatch.setenv(fold_kernel.ENV, "numba")
        calls = []
        real = fold_kernel.fold_rows
        monkeypatch.setattr(fold_kernel, "fold_rows", lambda *a, **k: (calls.append(1), real(*a, **k)))
        got = _sketch_pieces(FoldSketch(dim=8, seed=1, buckets=101), x, cuts)
    finally:
        torch.set_num_threads(1)
    assert calls, "the kernel path was not taken"
    torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-13 * float(ref.abs().max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fold_rows_matches_numpy_formula_and_threads_agree(monkeypatch, dtype):
    monkeypatch.setattr(fold_kernel, "PARALLEL_MIN_ELEMS", 0)
    g = np.random.default_rng(0)
    X = g.standard_normal((83, 257)).astype(dtype)
    s = np.where(g.random(83) < 0.5, -1.0, 1.0)
    R = np.where(g.random(257) < 0.5, -1.0, 1.0)
    z0 = g.standard_normal(257)
    expect = z0 + R * (s @ X.astype(np.float64))
    for threads in (1, 2, 5):
        z = z0.copy()
        fold_kernel.fold_rows(X, s, R, z, threads=threads)
        np.testing.assert_allclose(z, expect, rtol=1e-13, atol=1e-12)
    X.flags.writeable = False  # a read-only input (a memory-mapped file) is read as it is
    z = z0.copy()
    fold_kernel.fold_rows(X, s, R, z)
    np.testing.assert_allclose(z, expect, rtol=1e-13, atol=1e-12)


def test_kernel_keeps_float64_precision_at_ratio_1e4():
    """The reason for float64 accumulation (tests/test_sketch.py) holds on the kernel path."""
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(400_009, generator=g)
    delta = torch.randn(400_009, generator=g)
    delta *= theta.norm() / (1e4 * delta.norm())
    theta2 = theta + delta
    sk = FoldSketch(dim=100, seed=0, buckets=4093)
    assert theta.numel() >= fold_kernel.MIN_ELEMS  # the kernel path, without any patching
    diff = sk({"t": theta2}) - sk({"t": theta})
    ref = sk({"t": theta2.double() - theta.double()})
    assert float((diff - ref).norm() / ref.norm()) < 1e-8


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_equal_their_float32_values(kernel_everywhere, dtype):
    """bfloat16 goes through the kernel (its bits widened in registers), float16 through
    torch; both are exact in float64, so either equals the sketch of the float32 values."""
    x = torch.randn(3000, generator=torch.Generator().manual_seed(2)).to(dtype)
    sk = FoldSketch(dim=8, seed=3, buckets=101)
    torch.testing.assert_close(sk({"w": x}), sk({"w": x.float()}), rtol=1e-13, atol=1e-13)


def test_mode_switch_and_clear_errors(monkeypatch):
    monkeypatch.setenv(fold_kernel.ENV, "torch")
    assert fold_kernel.kernel() is None
    monkeypatch.setenv(fold_kernel.ENV, "fastest")
    with pytest.raises(ConfigError, match="SPECTRAL_EDGE_FOLD_KERNEL"):
        fold_kernel.kernel()
    monkeypatch.setenv(fold_kernel.ENV, "numba")
    monkeypatch.setattr(fold_kernel, "_kernel", None)

    def not_installed():
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(fold_kernel, "_compile", not_installed)
    with pytest.raises(ConfigError, match="numba is not installed"):
        fold_kernel.kernel()
    monkeypatch.setenv(fold_kernel.ENV, "auto")
    assert fold_kernel.kernel() is None  # auto falls back to torch


def test_a_kernel_that_fails_to_load_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(fold_kernel, "_kernel", None)

    def broken():
        raise RuntimeError("cannot cache function: no locator available")

    monkeypatch.setattr(fold_kernel, "_compile", broken)
    monkeypatch.setenv(fold_kernel.ENV, "auto")
    with pytest.warns(RuntimeWarning, match="no locator available"):
        assert fold_kernel.kernel() is None
    x = torch.randn(300_000, generator=torch.Generator().manual_seed(5))
    y = FoldSketch(dim=8, seed=1, buckets=101)({"w": x})  # still sketches, on the torch path
    assert torch.isfinite(y).all() and y.abs().sum() > 0
    monkeypatch.setenv(fold_kernel.ENV, "numba")
    with pytest.raises(ConfigError, match="failed to load"):
        fold_kernel.kernel()


def _child_fold(q):
    X = np.ones((64, 9), np.float32)
    z = np.zeros(9)
    fold_kernel.fold_rows(X, np.ones(64), np.ones(9), z, threads=2)
    q.put(z.tolist())


def test_thread_pool_survives_fork(monkeypatch):
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    monkeypatch.setattr(fold_kernel, "PARALLEL_MIN_ELEMS", 0)
    z = np.zeros(9)
    fold_kernel.fold_rows(np.ones((64, 9), np.float32), np.ones(64), np.ones(9), z, threads=2)  # parent's pool
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_fold, args=(q,))
    p.start()
    got = q.get(timeout=60)
    p.join(timeout=60)
    assert got == [64.0] * 9 and p.exitcode == 0


def test_chunked_normals_equal_one_pass():
    k = rng.stable_key(3, "x")
    n = 3 * rng._NORMALS_CHUNK + 7
    whole = rng._normals(k, 11, n)  # the unchunked implementation
    assert np.array_equal(rng.normals(k, 11, n), whole)
    assert np.array_equal(rng.normals(k, 11 + 5000, 100), whole[5000:5100])


def test_header_cache_sees_a_rewritten_file(tmp_path):
    f = tmp_path / "a.safetensors"
    save_file({"w": torch.zeros(2, 3)}, str(f))
    assert read_header(f)[0].shape == (2, 3)
    assert read_header(f)[0].shape == (2, 3)  # from the cache
    save_file({"w": torch.zeros(4, 5), "b": torch.zeros(1)}, str(f))
    entries = read_header(f)
    assert {e.name: e.shape for e in entries} == {"w": (4, 5), "b": (1,)}


def test_finiteness_check_survives_overflowing_sums():
    big = torch.full((10,), 1e308, dtype=torch.float64)  # finite, but the sum overflows
    assert _all_finite(big)
    big[3] = float("inf")
    assert not _all_finite(big)
    assert not _all_finite(torch.tensor([1.0, float("nan")], dtype=torch.float64))
