"""Gradient-SED probe: window spectrum of fixed-batch gradients against plain autograd and
numpy; loss sensitivity (first and second order) against closed forms; no side effects."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from spectral_edge.errors import ConfigError, StateError
from spectral_edge.functional.sketch import SketchSpec
from spectral_edge.functional.spectrum import window_stats
from spectral_edge.monitor import Monitor
from spectral_edge.probes.base import ProbeContext
from spectral_edge.probes.gradient_sed import GradientSEDProbe, _hvp_quadratic_forms, random_abs_projection_mean


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _net(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Dropout(dropout), torch.nn.Linear(16, 3))


def _data(n=120):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _sgd_step(model, X, y, lr=0.2):
    with torch.no_grad():
        model.zero_grad()
        with torch.enable_grad():
            torch.nn.functional.cross_entropy(model(X), y).backward()
        for p in model.parameters():
            p -= lr * p.grad
    model.zero_grad(set_to_none=True)


def _reference_grad(model, batch):
    m = copy.deepcopy(model).eval()
    m.zero_grad()
    torch.nn.functional.cross_entropy(m(batch[0]), batch[1]).backward()
    return torch.cat([p.grad.reshape(-1).double() for p in m.parameters()])


def test_window_spectrum_and_sensitivity_match_plain_autograd_and_numpy():
    model = _net()
    X, y = _data()
    probe = GradientSEDProbe((X, y), every=1, window=4, batch_size=40, n_random=64, seed=2)
    batch = probe.fixed_batch()
    refs, out = [], None
    for step in range(1, 7):
        _sgd_step(model, X, y)
        out = probe.run(ProbeContext(step, model=model))
        refs.append(_reference_grad(model, batch))
        if step < 4:
            assert "gap_ratio" not in out and out["n_grads"] == step
    Gm = torch.stack(refs[-4:]).numpy()  # (W, P) the last window of gradients
    st = window_stats(Gm @ Gm.T)
    for j in range(3):
        assert out[f"sigma_{j + 1}"] == pytest.approx(st.sigma[j], rel=1e-9)
    assert out["gap_ratio"] == pytest.approx(st.gap_ratio, rel=1e-9)
    assert out["g23"] == pytest.approx(st.g23, rel=1e-9, abs=1e-15)
    assert out["k_star"] == st.k_star
    _, S, Vt = np.linalg.svd(Gm, full_matrices=False)
    h = refs[-1].numpy()  # sensitivity="fixed": the fixed batch's gradient now
    for j in range(3):
        assert out[f"sens_{j + 1}"] == pytest.approx(abs(Vt[j] @ h), rel=1e-7, abs=1e-12)
    closed = np.linalg.norm(h) * random_abs_projection_mean(h.size)
    assert 0.7 * closed < out["sens_random"] < 1.4 * closed  # 64 random directions around E|⟨r, h⟩|
    assert out["sens_ratio"] == pytest.approx(out["sens_1"] / out["sens_random"])
    assert out["sens_ratio"] > 3  # the top gradient direction carries far more than a random one


def test_random_abs_projection_mean_closed_form():
    rng = np.random.default_rng(0)
    for p in (1, 3, 10):
        r = rng.standard_normal((200_000, p))
        mc = np.mean(np.abs(r[:, 0]) / np.linalg.norm(r, axis=1))
        assert random_abs_projection_mean(p) == pytest.approx(mc, rel=0.01)
    assert random_abs_projection_mean(10**6) == pytest.approx(math.sqrt(2 / (math.pi * 10**6)), rel=1e-5)
    with pytest.raises(ConfigError):
        random_abs_projection_mean(0)


def test_curvature_quadratic_forms_are_exact():
    rng = np.random.default_rng(1)
    A = torch.from_numpy(rng.standard_normal((5, 5)))
    A = A @ A.T
    theta = [torch.from_numpy(rng.standard_normal(5))]
    loss = lambda th: 0.5 * th[0] @ A @ th[0] + torch.sin(th[0]).sum()  # noqa: E731
    dirs = [[torch.from_numpy(rng.standard_normal(5))] for _ in range(3)]
    H = A - torch.diag(torch.sin(theta[0]))
    got = _hvp_quadratic_forms(loss, theta, dirs)
    for g, v in zip(got, dirs):
        assert g == pytest.approx(float(v[0] @ H @ v[0]), rel=1e-10)


def test_probe_curvature_equals_the_hessian_of_the_fixed_batch_loss():
    model = _net(1).double()
    X, y = _data()
    X = X.double()
    probe = GradientSEDProbe((X, y), every=1, window=2, batch_size=30, curvature=True, n_random=4)
    for step in (1, 2, 3):
        _sgd_step(model, X, y)
        out = probe.run(ProbeContext(step, model=model))
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    xb, yb = probe.fixed_batch()

    def f(v):
        parts, pos = {}, 0
        for n, s in zip(names, shapes):
            k = math.prod(s)
            parts[n] = v[pos:pos + k].reshape(s)
            pos += k
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, parts, (xb,)), yb)

    H = torch.autograd.functional.hessian(f, flat0)
    v1 = probe.win.top_direction(2, 1)
    assert out["curv_1"] == pytest.approx(abs(float(v1 @ H @ v1)), rel=1e-8)
    assert out["curv_ratio"] == pytest.approx(out["curv_1"] / out["curv_random"])


def test_sketched_mode_approximates_exact():
    X, y = _data()
    exact = GradientSEDProbe((X, y), every=1, window=4, batch_size=40)
    sk = GradientSEDProbe((X, y), every=1, window=4, batch_size=40, sketch=SketchSpec("gaussian", dim=1000, seed=3))
    model = _net(2)
    for step in range(1, 6):
        _sgd_step(model, X, y)
        a, b = exact.run(ProbeContext(step, model=model)), sk.run(ProbeContext(step, model=model))
    assert b["sigma_1"] == pytest.approx(a["sigma_1"], rel=0.1)
    assert b["sens_1"] == pytest.approx(a["sens_1"], rel=0.1)
    assert b["sens_random"] == pytest.approx(a["grad_norm"] * random_abs_projection_mean(sum(p.numel() for p in model.parameters())))
    assert sk.win.dim == 1000
    with pytest.raises(ConfigError):
        GradientSEDProbe((X, y), sketch=SketchSpec("fold", dim=50), curvature=True)
    with pytest.raises(ConfigError):
        GradientSEDProbe((X, y), sensitivity="both")


def test_fresh_sensitivity_and_resume():
    X, y = _data()
    model = _net(3)
    a = GradientSEDProbe((X, y), every=1, window=3, batch_size=40, sensitivity="fresh", seed=9)
    for step in range(1, 5):
        _sgd_step(model, X, y)
        a.run(ProbeContext(step, model=model))
    b = GradientSEDProbe((X, y), every=1, window=3, batch_size=40, sensitivity="fresh", seed=9)
    b.load_state_dict(a.state_dict())
    _sgd_step(model, X, y)
    ra, rb = a.run(ProbeContext(5, model=model)), b.run(ProbeContext(5, model=model))
    assert ra == rb  # resumed = uninterrupted, bit for bit
    fixed = GradientSEDProbe((X, y), every=1, window=3, batch_size=40, seed=9)
    fixed.load_state_dict(a.state_dict())
    assert fixed.run(ProbeContext(6, model=model))["sens_1"] != ra["sens_1"]
    with pytest.raises(StateError):
        GradientSEDProbe((X, y), seed=1).load_state_dict(a.state_dict())


def _train(steps, monitor_kw=None):
    model = _net(4, dropout=0.2)
    X, y = _data()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    mon = Monitor(model, **monitor_kw) if monitor_kw else None
    handle = mon.attach(opt) if mon else None
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(77)  # dropout uses the global RNG
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(X), (24,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if handle:
        handle.remove()
    return losses, mon, model


def test_training_is_bit_identical_and_update_sed_is_compared():
    X, y = _data()
    base, _, m0 = _train(12)
    probe = GradientSEDProbe((X, y), every=2, window=3, batch_size=32)
    probed, mon, m1 = _train(12, dict(windows=(3,), every=2, sketch="exact", probes=[probe]))
    assert base == probed
    for a, b in zip(m0.parameters(), m1.parameters()):
        assert torch.equal(a, b)
    rows = [r for r in mon.rows if r["kind"] == "probe"]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    last = rows[-1]
    assert "update_sens_ratio" in last and last["update_sens_ratio"] > 0
    # a sketched monitor has no parameter-space update directions: no comparison
    probe2 = GradientSEDProbe((X, y), every=2, window=3, batch_size=32)
    _, mon2, _ = _train(8, dict(windows=(3,), every=2, sketch=SketchSpec("fold", dim=30), probes=[probe2]))
    assert "update_sens_ratio" not in [r for r in mon2.rows if r["kind"] == "probe"][-1]
