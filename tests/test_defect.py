"""Commutator defect: closed forms on quadratics, first order in η, and no side effects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectral_edge.errors import ConfigError, StateError
from spectral_edge.functional.defect import (
    closure_grads,
    commutator_defect,
    orthonormal_rows,
    random_subspace_expected,
    random_subspace_fraction,
    subspace_fraction,
)
from spectral_edge.monitor import Monitor
from spectral_edge.probes.base import ProbeContext
from spectral_edge.probes.defect import CommutatorDefectProbe


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _sym(rng, n, eig=None, Q=None):
    Q = Q if Q is not None else np.linalg.qr(rng.standard_normal((n, n)))[0]
    eig = eig if eig is not None else rng.uniform(0.5, 3.0, n)
    return torch.from_numpy((Q * eig) @ Q.T)


def _quad(M):
    return lambda th: 0.5 * th[0] @ M @ th[0]


# ---------------------------------------------------------------------- math
def test_commuting_quadratics_have_zero_defect():
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    A, B = _sym(rng, 12, Q=Q), _sym(rng, 12, Q=Q)  # same eigenbasis: AB = BA
    assert torch.allclose(A @ B, B @ A, atol=1e-12)
    x = [torch.from_numpy(rng.standard_normal(12))]
    s = commutator_defect(_quad(A), _quad(B), x, eta=1e-3)
    assert s.defect < 1e-9
    # the same with non-commuting Hessians is far from zero (the test can fail)
    C = _sym(rng, 12)
    assert commutator_defect(_quad(A), _quad(C), x, eta=1e-3).defect > 1e-2


@pytest.mark.parametrize("eta", [1e-1, 1e-3, 1e-5])
def test_quadratics_match_the_commutator_closed_form_exactly(eta):
    # gradients are linear, so θ_AB − θ_BA = η²(BA − AB)θ with no higher-order terms
    rng = np.random.default_rng(1)
    A, B = _sym(rng, 9), _sym(rng, 9)
    x = torch.from_numpy(rng.standard_normal(9))
    s = commutator_defect(_quad(A), _quad(B), [x], eta=eta)
    delta_ref = eta**2 * (B @ A - A @ B) @ x
    assert torch.allclose(s.delta[0], delta_ref, rtol=1e-6, atol=1e-14 * eta**2)
    ref = float(torch.linalg.norm((B @ A - A @ B) @ x)) / (float(torch.linalg.norm(A @ x)) * float(torch.linalg.norm(B @ x)))
    assert s.defect == pytest.approx(ref, rel=1e-6)
    assert s.norm_a == pytest.approx(eta * float(torch.linalg.norm(A @ x)), rel=1e-12)


def test_defect_converges_to_the_first_order_formula_as_eta_shrinks():
    """Non-quadratic losses: D(η) → ‖H_B g_A − H_A g_B‖/(‖g_A‖‖g_B‖) with error O(η)."""
    rng = np.random.default_rng(2)
    n = 7
    A, B = _sym(rng, n), _sym(rng, n)
    wa, wb = torch.from_numpy(rng.uniform(0.5, 2, n)), torch.from_numpy(rng.uniform(0.5, 2, n))
    la = lambda th: 0.5 * th[0] @ A @ th[0] + 0.25 * (wa * th[0] ** 4).sum()  # noqa: E731
    lb = lambda th: 0.5 * th[0] @ B @ th[0] + (wb * torch.cosh(th[0])).sum()  # noqa: E731
    x = torch.from_numpy(rng.standard_normal(n))
    ga, gb = closure_grads(la, [x])[0], closure_grads(lb, [x])[0]
    Ha = torch.autograd.functional.hessian(lambda v: la([v]), x)
    Hb = torch.autograd.functional.hessian(lambda v: lb([v]), x)
    first = float(torch.linalg.norm(Hb @ ga - Ha @ gb)) / (float(ga.norm()) * float(gb.norm()))
    errs = []
    for eta in (1e-2, 1e-3, 1e-4):
        errs.append(abs(commutator_defect(la, lb, [x], eta).defect / first - 1))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 2e-3
    assert errs[1] / errs[2] == pytest.approx(10, rel=0.3)  # linear in η


def test_closure_grads_match_plain_autograd_and_never_touch_grad():
    lin = torch.nn.Linear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss = lambda th: ((x @ th[0].T + th[1]) ** 2).sum()  # noqa: E731
    g = closure_grads(loss, [lin.weight, lin.bias])
    assert lin.weight.grad is None and lin.bias.grad is None
    ((lin(x)) ** 2).sum().backward()
    assert torch.allclose(g[0], lin.weight.grad) and torch.allclose(g[1], lin.bias.grad)


def test_subspace_fraction_and_random_null():
    rng = np.random.default_rng(3)
    B1 = orthonormal_rows(torch.from_numpy(rng.standard_normal((2, 30))))
    B2 = orthonormal_rows(torch.from_numpy(rng.standard_normal((3, 20))))
    assert torch.allclose(B1 @ B1.T, torch.eye(2, dtype=torch.float64), atol=1e-12)
    inside = [1.5 * B1[0] - B1[1], 2.0 * B2[2]]
    assert subspace_fraction(inside, [B1, B2]) == pytest.approx(1.0, abs=1e-12)
    d = [torch.from_numpy(rng.standard_normal(30)), torch.from_numpy(rng.standard_normal(20))]
    full = torch.cat(d)
    Bfull = torch.zeros(5, 50, dtype=torch.float64)
    Bfull[:2, :30], Bfull[2:, 30:] = B1, B2
    ref = float(torch.linalg.norm(Bfull @ full) / torch.linalg.norm(full))
    assert subspace_fraction(d, [B1, B2]) == pytest.approx(ref, rel=1e-12)
    assert subspace_fraction(d, [None, B2]) < ref
    # random k-dim subspaces of R^p: E frac² = k/p exactly; compare with explicit QR draws
    k, p = 4, 60
    draws = random_subspace_fraction(k, p, 20000, 0)
    assert np.mean(draws**2) == pytest.approx(k / p, rel=0.03)
    v = rng.standard_normal(p)
    qr = [np.linalg.norm(np.linalg.qr(rng.standard_normal((p, k)))[0].T @ v) / np.linalg.norm(v) for _ in range(3000)]
    assert np.mean(draws) == pytest.approx(np.mean(qr), rel=0.03)
    assert random_subspace_expected(k, p) == pytest.approx(math.sqrt(k / p))
    with pytest.raises(ConfigError):
        random_subspace_fraction(0, p, 3, 0)


# ---------------------------------------------------------------------- the probe
class _Net(torch.nn.Module):
    """Tiny classifier with dropout (consumes the global RNG in train mode) and batch norm (buffers)."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(12, 32)
        self.bn = torch.nn.BatchNorm1d(32)
        self.drop = torch.nn.Dropout(0.2)
        self.fc2 = torch.nn.Linear(32, 5)

    def forward(self, x):
        return self.fc2(self.drop(torch.tanh(self.bn(self.fc1(x)))))


def _data(n=200):
    g = torch.Generator().manual_seed(7)
    return torch.randn(n, 12, generator=g), torch.randint(0, 5, (n,), generator=g)


def _snapshot(model, opt):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            {k: (v.clone() if torch.is_tensor(v) else v) for s in opt.state.values() for k, v in s.items()},
            torch.get_rng_state().clone(), np.random.get_state()[1].copy(),
            [m.training for m in model.modules()], [id(p) for p in model.parameters()])


def test_probe_has_no_side_effects():
    torch.manual_seed(0)
    model = _Net()
    X, y = _data()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):  # optimizer state and running stats exist
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=False)
    torch.nn.functional.cross_entropy(model(X[:50]), y[:50]).backward()
    model.fc2.bias.grad = None  # a mix of set and None gradients
    model.bn.eval()  # a mix of train and eval submodules
    before = _snapshot(model, opt)
    probe = CommutatorDefectProbe((X, y), batch_size=64, n_samples=3, every=1)
    out = probe.run(ProbeContext(10, model=model))
    after = _snapshot(model, opt)
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), k  # parameters and buffers, bit for bit
    for a, b in zip(before[1], after[1]):
        assert (a is None and b is None) or torch.equal(a, b)
    for k in before[2]:
        v0, v1 = before[2][k], after[2][k]
        assert torch.equal(v0, v1) if torch.is_tensor(v0) else v0 == v1
    assert torch.equal(before[3], after[3]) and np.array_equal(before[4], after[4])
    assert before[5] == after[5] and before[6] == after[6]
    assert out["defect"] > 0 and math.isfinite(out["defect"])
    assert out["defect_min"] <= out["defect"] <= out["defect_max"]
    # a pure function of (seed, step): the same again, another step draws other batches
    assert probe.run(ProbeContext(10, model=model)) == out
    assert probe.run(ProbeContext(11, model=model))["defect"] != out["defect"]
    assert CommutatorDefectProbe((X, y), batch_size=64, n_samples=3, seed=1).run(ProbeContext(10, model=model))["defect"] != out["defect"]


def test_probe_defect_equals_the_functional_definition_on_a_model():
    """The probe's number is the definition evaluated by hand with explicit parameter copies
    (the authors' way: write θ − ηg_A into a model copy and backprop)."""
    import copy

    torch.manual_seed(1)
    model = _Net().double()
    X, y = _data()
    X = X.double()
    probe = CommutatorDefectProbe((X, y), batch_size=32, n_samples=1, eta=1e-3, seed=5)
    got = probe.measure(model, 3)["defect"]
    from spectral_edge.probes._isolation import draw_batch, probe_generator

    gen = probe_generator(5, "defect", 3)
    A, B = draw_batch((X, y), 32, gen), draw_batch((X, y), 32, gen)
    m = copy.deepcopy(model).eval()
    params = list(m.parameters())

    def grad_at(theta, batch):
        with torch.no_grad():
            for p, t in zip(params, theta):
                p.copy_(t)
        m.zero_grad()
        torch.nn.functional.cross_entropy(m(batch[0]), batch[1]).backward()
        return [p.grad.clone() for p in params]

    th = [p.detach().clone() for p in params]
    gA, gB = grad_at(th, A), grad_at(th, B)
    eta = 1e-3
    tAB = [t - eta * a - eta * b for t, a, b in zip(th, gA, grad_at([t - eta * a for t, a in zip(th, gA)], B))]
    tBA = [t - eta * b - eta * a for t, a, b in zip(th, grad_at([t - eta * b for t, b in zip(th, gB)], A), gB)]
    num = math.sqrt(sum(float(((u - v) ** 2).sum()) for u, v in zip(tAB, tBA)))
    den = eta**2 * math.sqrt(sum(float((a**2).sum()) for a in gA)) * math.sqrt(sum(float((b**2).sum()) for b in gB))
    assert got == pytest.approx(num / den, rel=1e-5)


def test_probe_projection_onto_a_given_subspace():
    torch.manual_seed(2)
    model = _Net()
    X, y = _data()
    g = torch.Generator().manual_seed(0)
    basis = {"fc1.weight": orthonormal_rows(torch.randn(2, 12 * 32, generator=g, dtype=torch.float64)),
             "fc2.weight": orthonormal_rows(torch.randn(2, 32 * 5, generator=g, dtype=torch.float64))}
    out = CommutatorDefectProbe((X, y), batch_size=64, n_samples=2, subspace=basis).measure(model, 1)
    P = sum(p.numel() for p in model.parameters())
    assert out["exec_dim"] == 4
    assert out["exec_random"] == pytest.approx(math.sqrt(4 / P))
    assert out["exec_ratio"] == pytest.approx(out["exec_frac"] / math.sqrt(4 / P))
    assert 0 <= out["exec_frac"] <= 1
    assert out["exec_random_drawn"] == pytest.approx(math.sqrt(4 / P), rel=0.3)
    with pytest.raises(ConfigError, match="subspace names"):
        CommutatorDefectProbe((X, y), subspace={"nope": basis["fc1.weight"]}).measure(model, 1)


def test_float32_defect_agrees_with_float64_on_the_reference_architecture():
    from spectral_edge.models import GrokTransformer, TransformerConfig
    from spectral_edge.tasks.modular import make_modular

    torch.manual_seed(0)
    model = GrokTransformer(TransformerConfig.modular(13, d_model=32, d_ff=64))
    data = make_modular("add", 13, 0.5, 0)
    kw = dict(batch_size=64, n_samples=2, seed=1)
    d32 = CommutatorDefectProbe((data.train_x, data.train_y), **kw).measure(model, 1)
    d64 = CommutatorDefectProbe((data.train_x, data.train_y), dtype=torch.float64, **kw).measure(model, 1)
    assert d32["defect"] == pytest.approx(d64["defect"], rel=0.02)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_probe_validates_and_state_round_trips():
    X, y = _data()
    with pytest.raises(ConfigError):
        CommutatorDefectProbe()
    with pytest.raises(ConfigError):
        CommutatorDefectProbe((X, y), eta=0)
    p = CommutatorDefectProbe((X, y), seed=4)
    p.load_state_dict(p.state_dict())
    with pytest.raises(StateError):
        CommutatorDefectProbe((X, y), seed=5).load_state_dict(p.state_dict())


def _train(steps, with_probe):
    torch.manual_seed(0)
    model = _Net()
    X, y = _data()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    probes = [CommutatorDefectProbe((X, y), batch_size=64, n_samples=2, every=3, deterministic=False)] if with_probe else []
    mon = Monitor(model, windows=(3,), every=3, sketch="exact", probes=probes) if with_probe else None
    handle = mon.attach(opt) if mon is not None else None
    gen = torch.Generator().manual_seed(11)  # the training sampler
    torch.manual_seed(123)  # dropout draws from the global RNG
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(X), (32,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if handle is not None:
        handle.remove()
    return losses, model, mon


def test_training_is_bit_identical_with_and_without_the_probe():
    base, m0, _ = _train(14, False)
    probed, m1, mon = _train(14, True)
    assert base == probed  # exact float equality of every loss
    for a, b in zip(m0.state_dict().values(), m1.state_dict().values()):
        assert torch.equal(a, b)
    rows = [r for r in mon.rows if r["kind"] == "probe"]
    assert [r["step"] for r in rows] == [3, 6, 9, 12] and all(r["probe"] == "defect" for r in rows)
