"""Execution manifold (centered per-matrix PCA + random-walk null) and backbone probes,
against numpy SVD references; resume; optimizer-hook alignment; no side effects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectral_edge.errors import ConfigError, StateError
from spectral_edge.functional import pca
from spectral_edge.functional.sketch import SketchSpec
from spectral_edge.models import GrokTransformer, TransformerConfig
from spectral_edge.monitor import Monitor
from spectral_edge.probes.base import ProbeContext
from spectral_edge.probes.backbone import BackboneProbe, backbone_direction
from spectral_edge.probes.manifold import ExecutionManifoldProbe
from spectral_edge.selection import Selection


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _tiny(seed=0):
    torch.manual_seed(seed)
    return GrokTransformer(TransformerConfig.modular(7, d_model=8, d_ff=16, n_heads=2))


def _drift(model, k, rng):
    """Move every parameter deterministically: a common direction per tensor plus noise."""
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            d = torch.from_numpy(np.random.default_rng(100 + i).standard_normal(p.shape)).float()
            p.add_(0.05 * d * (1 + 0.3 * math.sin(k)) + 0.01 * torch.from_numpy(rng.standard_normal(p.shape)).float())


# ---------------------------------------------------------------------- functional PCA
def test_gram_pca_matches_numpy_svd_of_centered_snapshots():
    rng = np.random.default_rng(0)
    T, D = 9, 300
    X = np.cumsum(rng.standard_normal((T, D)) * np.linspace(1, 3, D), axis=0)
    X[0] = 0
    lam, U = pca.gram_eig(pca.centered_gram(X @ X.T))
    Xc = X - X.mean(0)
    _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    np.testing.assert_allclose(lam[: T - 1], S[: T - 1] ** 2, rtol=1e-10)
    assert lam[-1] < 1e-8 * lam[0]  # centering removes one dimension
    V = pca.directions_from_gram(Xc, lam, U, 3)
    np.testing.assert_allclose(np.abs(np.sum(V * Vt[:3], axis=1)), 1.0, rtol=1e-10)
    np.testing.assert_allclose(pca.step_norms_from_gram(X @ X.T), np.linalg.norm(np.diff(X, axis=0), axis=1), rtol=1e-10)
    Gn, n = pca.row_normalized_gram(X[1:] @ X[1:].T)
    Xn = X[1:] / np.linalg.norm(X[1:], axis=1, keepdims=True)
    np.testing.assert_allclose(Gn, Xn @ Xn.T, atol=1e-12)


def test_random_unit_gram_and_random_walk_null_match_explicit_simulation():
    rng = np.random.default_rng(1)
    n, D = 6, 40
    Gs = np.stack([pca.random_unit_gram(n, D, rng) for _ in range(4000)])
    np.testing.assert_allclose(np.diagonal(Gs, axis1=1, axis2=2), 1.0, atol=1e-12)
    off = Gs[:, np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]]
    assert np.mean(off) == pytest.approx(0.0, abs=0.01)
    assert np.mean(off**2) == pytest.approx(1.0 / D, rel=0.05)  # E⟨u, v⟩² = 1/D
    steps = np.array([1.0, 2.0, 0.5, 1.5, 1.0, 3.0])
    fast = pca.random_walk_pc1(steps, D, 3000, 2)
    explicit = []
    for _ in range(3000):  # the definition: explicit random directions in R^D
        u = rng.standard_normal((n, D))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        X = np.vstack([np.zeros(D), np.cumsum(u * steps[:, None], axis=0)])
        s = np.linalg.svd(X - X.mean(0), compute_uv=False)
        explicit.append(s[0] ** 2 / np.sum(s**2))
    assert np.mean(fast) == pytest.approx(np.mean(explicit), abs=0.01)
    assert np.std(fast) == pytest.approx(np.std(explicit), rel=0.1)


# ---------------------------------------------------------------------- manifold probe
def test_manifold_probe_matches_numpy_pca_per_attention_matrix():
    model = _tiny()
    probe = ExecutionManifoldProbe(model, every=1, null_trials=5, seed=3)
    attn = [n for n, _ in model.named_parameters() if ".attn." in n and n.endswith("weight")]
    assert probe.names == attn and len(attn) == 8  # W_Q, W_K, W_V, W_O of 2 layers, no biases
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    snaps = {n: [torch.zeros_like(w0[n]).reshape(-1).double()] for n in attn}
    rng = np.random.default_rng(0)
    for step in range(1, 7):
        _drift(model, step, rng)
        out = probe.run(ProbeContext(step, model=model))
        for n, p in model.named_parameters():
            if n in snaps:
                snaps[n].append((p.detach().double() - w0[n].double()).reshape(-1))
    for n in attn:
        X = torch.stack(snaps[n]).numpy()
        s = np.linalg.svd(X - X.mean(0), compute_uv=False)
        assert out[f"pc1_pct.{n}"] == pytest.approx(100 * s[0] ** 2 / np.sum(s**2), rel=1e-5)
        B = probe.basis()[n]
        assert B.shape == (2, X.shape[1])
        np.testing.assert_allclose((B @ B.T).numpy(), np.eye(2), atol=1e-10)
        _, _, Vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
        assert abs(float(B[0].numpy() @ Vt[0])) == pytest.approx(1.0, abs=1e-5)
    assert out["pc1_pct_mean"] == pytest.approx(np.mean([out[f"pc1_pct.{n}"] for n in attn]))
    assert out["pc1_excess"] > 0  # a common drift direction beats the random-walk null
    # the trajectory's dimension: components for 90% / 95% of the centred variance (numpy, per matrix)
    dims = {0.9: [], 0.95: []}
    for n in attn:
        X = torch.stack(snaps[n]).numpy()
        s = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2
        cum = np.cumsum(s) / s.sum()
        for level in dims:
            dims[level].append(int(np.argmax(cum >= level - 1e-12)) + 1)
    assert out["dim90_mean"] == pytest.approx(np.mean(dims[0.9])) and out["dim90_max"] == max(dims[0.9])
    assert out["dim95_mean"] == pytest.approx(np.mean(dims[0.95]))
    assert 1 <= out["dim90_mean"] <= out["dim95_mean"] <= 6
    assert probe.nbytes() == 8 * 7 * 64 * 4 + 8 * 64 * 4  # 7 float32 snapshots (+W_0) of 8 8x8 matrices


def test_manifold_null_detects_a_random_walk_and_a_straight_line():
    torch.manual_seed(0)
    lin = torch.nn.Linear(50, 40, bias=False)
    sel = Selection(include=("weight",))
    straight = ExecutionManifoldProbe(lin, every=1, selection=sel, null_trials=20)
    walk = ExecutionManifoldProbe(torch.nn.Linear(50, 40, bias=False), every=1, selection=sel, null_trials=200)
    model_walk = walk.model
    g = torch.Generator().manual_seed(1)
    direction = torch.randn(40, 50, generator=g)
    for step in range(1, 11):
        with torch.no_grad():
            lin.weight.add_(0.01 * direction)
            model_walk.weight.add_(0.01 * torch.randn(40, 50, generator=g))
        a = straight.run(ProbeContext(step, model=lin))
        b = walk.run(ProbeContext(step, model=model_walk))
    assert a["pc1_pct_mean"] == pytest.approx(100.0, abs=1e-6)
    assert a["pc1_excess"] > 20
    # a genuine random walk sits inside its own null: |excess| within a few null standard deviations
    null = pca.random_walk_pc1(np.full(10, 0.01 * math.sqrt(2000)), 2000, 2000, 9)
    assert abs(b["pc1_excess"]) < 3 * 100 * np.std(null)


def test_manifold_resume_is_bit_identical_and_validates():
    rng = np.random.default_rng(5)
    model = _tiny(1)
    a = ExecutionManifoldProbe(model, every=1, max_snapshots=4)
    for step in range(1, 5):
        _drift(model, step, rng)
        a.run(ProbeContext(step, model=model))
    state = a.state_dict()
    b = ExecutionManifoldProbe(every=1, max_snapshots=4)
    b.load_state_dict(state)
    _drift(model, 5, rng)
    ra, rb = a.run(ProbeContext(5, model=model)), b.run(ProbeContext(5, model=model))
    assert ra == rb
    assert a.n_snapshots == 5 and a.steps == [0, 2, 3, 4, 5]  # W_0 and the 4 newest
    with pytest.raises(ConfigError):
        ExecutionManifoldProbe(every=1, selection=Selection(include=("*.bias",))).run(ProbeContext(1, model=model))
    other = ExecutionManifoldProbe(torch.nn.Linear(3, 3), selection=Selection())
    with pytest.raises(StateError):
        other.load_state_dict(state)


# ---------------------------------------------------------------------- backbone
def test_backbone_direction_matches_numpy_uncentered_svd_of_normalised_rows():
    rng = np.random.default_rng(2)
    D = np.cumsum(rng.standard_normal((8, 200)) + np.linspace(0, 2, 200), axis=0)
    v, frac = backbone_direction(torch.from_numpy(D))
    Dn = D / np.linalg.norm(D, axis=1, keepdims=True)
    _, S, Vt = np.linalg.svd(Dn, full_matrices=False)
    assert frac == pytest.approx(S[0] ** 2 / np.sum(S**2), rel=1e-10)
    assert abs(float(v.numpy() @ Vt[0])) == pytest.approx(1.0, abs=1e-10)
    assert float(v.numpy() @ D[-1]) > 0


def test_backbone_probe_against_reference_and_alignment_with_hooks():
    model = _tiny(2)
    sel = Selection(preset="trunk")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = BackboneProbe(model, every=2, window=3, selection=sel, optimizer=opt)
    names = [n for n, _ in model.named_parameters() if sel.selects(n)]
    flat = lambda: torch.cat([p.detach().reshape(-1).double() for n, p in model.named_parameters() if n in names])  # noqa: E731
    theta0 = flat()
    x = torch.randint(0, 7, (16, 2), generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] + x[:, 1]) % 7
    states, out = [], None
    for step in range(1, 9):
        before = flat()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if probe.should_run(step):
            out = probe.run(ProbeContext(step, model=model))
            states.append(flat())
            if len(states) >= 2:
                D = torch.stack([s - theta0 for s in states[-3:]]).numpy()
                Dn = D / np.linalg.norm(D, axis=1, keepdims=True)
                _, S, Vt = np.linalg.svd(Dn, full_matrices=False)
                v = Vt[0] * np.sign(Vt[0] @ D[-1])
                assert out["pc1_pct"] == pytest.approx(100 * S[0] ** 2 / np.sum(S**2), rel=1e-8)
                assert out["fraction"] == pytest.approx((D[-1] @ v) ** 2 / (D[-1] @ D[-1]), rel=1e-8)
                g = torch.cat([p.grad.reshape(-1).double() for n, p in model.named_parameters() if n in names]).numpy()
                assert out["grad_align"] == pytest.approx(abs(g @ v) / np.linalg.norm(g), rel=1e-6)
                u = (flat() - before).numpy()  # the SGD update of this step, seen by the pre-step hook
                assert out["update_align"] == pytest.approx(abs(u @ v) / np.linalg.norm(u), rel=1e-4)
    assert out is not None and 0 <= out["rotation"] <= 1 + 1e-12
    assert probe.steps == [4, 6, 8] and out["n_drifts"] == 3
    probe.detach()


def test_backbone_sketched_mode_approximates_exact_and_resumes():
    rng = np.random.default_rng(3)
    model = _tiny(3)
    exact = BackboneProbe(model, every=1, window=4)
    sk = BackboneProbe(model, every=1, window=4, sketch=SketchSpec("gaussian", dim=400, seed=1))
    for step in range(1, 6):
        _drift(model, step, rng)
        a, b = exact.run(ProbeContext(step, model=model)), sk.run(ProbeContext(step, model=model))
    assert b["fraction"] == pytest.approx(a["fraction"], abs=0.05)
    assert b["pc1_pct"] == pytest.approx(a["pc1_pct"], abs=5)
    assert sk.nbytes() == (1 + 4 + 1) * 400 * 8  # reference, window states, previous v_b: d floats each
    resumed = BackboneProbe(every=1, window=4, sketch=SketchSpec("gaussian", dim=400, seed=1))
    resumed.load_state_dict(sk.state_dict())
    _drift(model, 6, rng)
    np.testing.assert_equal(resumed.run(ProbeContext(6, model=model)), sk.run(ProbeContext(6, model=model)))  # NaN == NaN here
    with pytest.raises(StateError):
        BackboneProbe(every=1).load_state_dict(sk.state_dict())
    with pytest.raises(ConfigError):
        BackboneProbe(reference="nope")


def test_backbone_window_reference_and_monitor_without_side_effects():
    """reference='window' drifts from the oldest kept state; running inside a Monitor (which
    installs the probe's pre-step hook lazily) leaves training bit-identical."""

    def train(with_probe):
        model = _tiny(4)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        probe = BackboneProbe(every=2, window=3, reference="window")
        mon = Monitor(model, every=2, windows=(2,), sketch="exact", probes=[probe]) if with_probe else None
        if mon is not None:
            mon.attach(opt)
        x = torch.randint(0, 7, (16, 2), generator=torch.Generator().manual_seed(0))
        y = (x[:, 0] * x[:, 1]) % 7
        losses = []
        for _ in range(12):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, mon, probe

    base, _, _ = train(False)
    probed, mon, probe = train(True)
    assert base == probed
    rows = [r for r in mon.rows if r["kind"] == "probe"]
    assert len(probe.states) == 4  # window + 1: the oldest is the reference
    last = rows[-1]
    assert last["n_drifts"] == 3 and not math.isnan(last["update_align"]) and 0 <= last["update_align"] <= 1
