"""Streaming window: equals the batch computation (also after the ring wraps), resumes
bit-identically, and keeps state whose size does not depend on the parameter count."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from spectral_edge.errors import ConfigError, StateError
from spectral_edge.functional import spectrum as sp
from spectral_edge.stream.window import SketchWindow


def _states(T=40, d=30, seed=0):
    g = np.random.default_rng(seed)
    deltas = g.standard_normal((T, d)) * np.linspace(2, 0.3, d) + 3 * np.outer(np.sin(np.arange(T) / 4), g.standard_normal(d))
    states = np.vstack([g.standard_normal(d) * 50, deltas]).cumsum(0)  # θ_0 … θ_T
    return states, np.diff(states, axis=0)


def test_streaming_equals_batch_for_several_windows_after_wraparound():
    states, deltas = _states(T=40)
    P = sp.gram(deltas)
    batch = {W: dict(sp.window_series(P, W)) for W in (3, 5, 8)}
    win = SketchWindow(dim=states.shape[1], max_window=8)
    for i, y in enumerate(states):
        win.push(torch.from_numpy(y), step=10 * i)
        t = i - 1  # index of the newest update
        for W in (3, 5, 8):
            if not win.ready(W):
                assert t < W - 1
                continue
            st, ref = win.compute(W), batch[W][t]
            np.testing.assert_allclose(st.sigma, ref.sigma, rtol=1e-9, atol=1e-9 * ref.sigma[0])
            assert st.k_star == ref.k_star
            assert st.gap_ratio == pytest.approx(ref.gap_ratio, rel=1e-9)
            if np.isnan(ref.turning):
                assert np.isnan(st.turning)
            else:
                assert st.turning == pytest.approx(ref.turning, rel=1e-8, abs=1e-12)
    assert win.n_samples == 41 and win.n_updates == 40  # the ring (9 slots) wrapped 4 times
    np.testing.assert_allclose(win.updates(8).numpy(), deltas[-8:], rtol=1e-12, atol=1e-9)
    assert win.step(0) == 400 and win.step(8) == 320


def test_resume_from_state_dict_is_bit_identical():
    states, _ = _states(T=30, seed=1)
    full = SketchWindow(30, 6)
    a = SketchWindow(30, 6)
    for i, y in enumerate(states[:13]):
        full.push(torch.from_numpy(y), i)
        a.push(torch.from_numpy(y), i)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = SketchWindow(30, 6)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for i, y in enumerate(states[13:], start=13):
        full.push(torch.from_numpy(y), i)
        b.push(torch.from_numpy(y), i)
        for W in (2, 6):
            s1, s2 = full.compute(W), b.compute(W)
            assert np.array_equal(s1.sigma, s2.sigma)
            assert s1.gap_ratio == s2.gap_ratio and s1.turning == s2.turning


def test_load_state_dict_rejects_mismatched_window():
    a = SketchWindow(10, 5)
    with pytest.raises(StateError, match="dim=10"):
        SketchWindow(11, 5).load_state_dict(a.state_dict())


@pytest.mark.parametrize("d, W", [(100, 10), (7, 2), (200, 20)])
def test_state_size_is_exactly_the_fixed_shapes_and_never_grows(d, W):
    # the window only ever keeps d numbers per slot, whatever the model size: last state (d,),
    # the ring of W + 1 updates (W+1, d) and their inner products (W+1)², float64; and the
    # steps of the last W + 2 samples, int64
    expected = 8 * d + 8 * (W + 1) * d + 8 * (W + 1) ** 2 + 8 * (W + 2)
    win = SketchWindow(d, W)
    assert win.nbytes() == expected
    assert sum(t.numel() * t.element_size() for t in win.state_dict().values() if torch.is_tensor(t)) == expected
    g = torch.Generator().manual_seed(0)
    for i in range(3 * (W + 2)):  # the ring wraps several times
        win.push(torch.randn(d, generator=g, dtype=torch.float64), i)
        assert win.nbytes() == expected
    assert SketchWindow(100, 10).nbytes() == 10_664


def test_union_gram_is_the_two_consecutive_windows():
    states, deltas = _states(T=20, seed=4)
    win = SketchWindow(states.shape[1], 6)
    for i, y in enumerate(states):
        win.push(torch.from_numpy(y), i)
    for W in (2, 4, 6):
        U = win.union_gram(W)
        np.testing.assert_allclose(U, sp.gram(deltas[-(W + 1):]), rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(U[1:, 1:], win.gram(W))
    with pytest.raises(ConfigError, match="window size"):
        win.union_gram(7)
    fresh = SketchWindow(4, 3)
    for i in range(4):
        fresh.push(torch.full((4,), float(i * i)), i)  # 3 updates: W = 3 needs 4
    with pytest.raises(ConfigError, match="need 4"):
        fresh.union_gram(3)


def test_bad_pushes():
    w = SketchWindow(4, 3)
    w.push(torch.zeros(4), 5)
    with pytest.raises(ConfigError, match="steps must increase"):
        w.push(torch.ones(4), 5)
    with pytest.raises(ConfigError, match="length 3"):
        w.push(torch.ones(3), 6)
    with pytest.raises(ConfigError, match="NaN"):
        w.push(torch.tensor([1.0, float("nan"), 0, 0]), 7)
    with pytest.raises(ConfigError, match="only 0 updates"):
        w.compute(2)
    with pytest.raises(ConfigError, match="at least 2"):
        SketchWindow(4, 1)


def test_vector_mode_analyses_pushed_vectors_directly():
    # gradient-SED: the pushed vectors are the ones analysed, no differencing
    _, vecs = _states(T=12, seed=3)
    win = SketchWindow(vecs.shape[1], 5, difference=False)
    for i, v in enumerate(vecs):
        win.push(torch.from_numpy(v), i)
    ref = dict(sp.window_series(sp.gram(vecs), 5))[11]
    st = win.compute(5)
    np.testing.assert_allclose(st.sigma, ref.sigma, rtol=1e-10)
    assert st.turning == pytest.approx(ref.turning, rel=1e-8)
    assert win.n_updates == 12 and win.step(4) == 7


@pytest.mark.parametrize("d, W", [(10**9, 10), (100, 10**8), (10**7, 10**4)])
def test_an_absurd_window_is_refused_before_allocating_with_its_cost(d, W, monkeypatch):
    import torch as _torch

    def _no_allocation(*a, **k):  # the refusal is arithmetic: nothing may be allocated first
        raise AssertionError("allocated before refusing")

    for fn in ("zeros", "empty", "full", "randn", "ones"):
        monkeypatch.setattr(_torch, fn, _no_allocation)
    from spectral_edge.stream.window import STATE_LIMIT_BYTES, window_state_bytes

    need = window_state_bytes(W, d)
    assert need == 8 * d + 8 * (W + 1) * d + 8 * (W + 1) ** 2 + 8 * (W + 2) > STATE_LIMIT_BYTES
    with pytest.raises(ConfigError, match=r"would need [0-9.e+]+ [KMGTP]iB.*limit is 8 GiB") as err:
        SketchWindow(d, W)
    assert f"W = {W}" in str(err.value) and f"d = {d}" in str(err.value)


def test_window_state_bytes_is_what_a_window_keeps():
    from spectral_edge.stream.window import window_state_bytes

    for d, W in [(100, 10), (7, 2), (200, 20)]:
        assert window_state_bytes(W, d) == SketchWindow(d, W).nbytes()
