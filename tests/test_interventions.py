"""Interventions (METHODS.md §8): the transforms against numpy, the bases, and the optimizer hook
on a tiny real transformer (strength 0, the selection, resume, the global RNG, remove, safety)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from spectral_edge.errors import ConfigError, NonFiniteError, ShapeMismatchError
from spectral_edge.interventions import Basis, Intervention, InterventionSpec, execution_basis, random_basis
from spectral_edge.interventions.transforms import (keep_span, median_index, random_orthonormal, remove_span,
                                                    top_right_singular)
from spectral_edge.models.transformer import GrokTransformer, TransformerConfig
from spectral_edge.selection import Selection

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

P = 7
ATTN = Selection(preset="attention")


# ---------------------------------------------------------------------- transforms against numpy
def _matrix(fn, p):
    """The linear map fn as a (p, p) numpy matrix (columns: images of the unit vectors)."""
    return np.stack([fn(torch.eye(p, dtype=torch.float64)[i]).numpy() for i in range(p)], axis=1)


def _orthonormal(k, p, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, k)))
    return q.T  # (k, p)


def test_projections_are_idempotent_orthogonal_and_match_numpy():
    V = _orthonormal(3, 12, 0)
    Vt = torch.from_numpy(V)
    remove = _matrix(lambda g: remove_span(g, Vt), 12)
    keep = _matrix(lambda g: keep_span(g, Vt), 12)
    ref_keep = V.T @ V
    np.testing.assert_allclose(keep, ref_keep, atol=1e-12)
    np.testing.assert_allclose(remove, np.eye(12) - ref_keep, atol=1e-12)
    for M in (remove, keep):
        np.testing.assert_allclose(M @ M, M, atol=1e-12)  # idempotent
        np.testing.assert_allclose(M, M.T, atol=1e-12)  # orthogonal projector (symmetric)
    np.testing.assert_allclose(remove @ V.T, 0, atol=1e-12)  # P B = 0 for remove
    np.testing.assert_allclose(keep @ V.T, V.T, atol=1e-12)
    # strength s scales the removed part: g − s·(I − P)g, and s = 0 is the identity, bit for bit
    g = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(keep_span(g, Vt, 0.25).numpy(), g.numpy() - 0.25 * (g.numpy() - ref_keep @ g.numpy()))
    assert torch.equal(keep_span(g, Vt, 0.0), g) and torch.equal(remove_span(g, Vt, 0.0), g)
    with pytest.raises(ConfigError, match="does not act"):
        keep_span(torch.zeros(5), Vt)


def test_rank_k_keep_and_remove_against_a_numpy_svd():
    G = np.random.default_rng(3).standard_normal((20, 50))
    V = top_right_singular(torch.from_numpy(G), 3).numpy()
    _, _, Vh = np.linalg.svd(G, full_matrices=False)  # raw SVD, no centring
    np.testing.assert_allclose(V.T @ V, Vh[:3].T @ Vh[:3], atol=1e-10)  # same subspace (signs free)
    g = np.random.default_rng(4).standard_normal(50)
    ref_keep = Vh[:3].T @ (Vh[:3] @ g)
    np.testing.assert_allclose(keep_span(torch.from_numpy(g), torch.from_numpy(V)).numpy(), ref_keep, atol=1e-10)
    np.testing.assert_allclose(remove_span(torch.from_numpy(g), torch.from_numpy(V)).numpy(), g - ref_keep, atol=1e-10)
    with pytest.raises(ConfigError, match="rank"):
        top_right_singular(torch.from_numpy(G), 21)


def test_random_bases_are_orthonormal_and_seeded():
    a = random_orthonormal(40, 3, torch.Generator().manual_seed(5))
    b = random_orthonormal(40, 3, torch.Generator().manual_seed(5))
    c = random_orthonormal(40, 3, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a @ a.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    rb = random_basis({"w": (4, 5), "v": (3,)}, 2, seed=9)
    assert rb.dim == 2 and torch.equal(rb.blocks[0][1], random_basis({"w": (4, 5), "v": (3,)}, 2, seed=9).blocks[0][1])
    D = rb.dense(["w", "v"])
    torch.testing.assert_close(D @ D.T, torch.eye(2, dtype=torch.float64), atol=1e-12, rtol=0)
    assert median_index([3.0, 1.0, 2.0]) == 2 and median_index([4.0, 1.0, 3.0, 2.0]) == 2  # argsort()[n // 2]


def test_execution_basis_is_per_matrix_pca_orthonormal_together():
    rng = np.random.default_rng(0)
    traj = {"a.q.weight": rng.standard_normal((6, 4, 3)), "a.k.weight": rng.standard_normal((6, 2, 5)),
            "a.q.bias": rng.standard_normal((6, 4))}  # vectors are skipped
    B = execution_basis({k: torch.from_numpy(v) for k, v in traj.items()}, n_components=2)
    assert set(B.shapes) == {"a.q.weight", "a.k.weight"} and B.dim == 4
    for name, rows in ((n[0], r) for n, r in B.blocks):
        X = traj[name].reshape(6, -1)
        X = X - X[0]
        X = X - X.mean(0)
        _, _, Vh = np.linalg.svd(X, full_matrices=False)
        np.testing.assert_allclose(rows.numpy().T @ rows.numpy(), Vh[:2].T @ Vh[:2], atol=1e-10)
    D = B.dense(["a.k.weight", "a.q.weight"])
    torch.testing.assert_close(D @ D.T, torch.eye(4, dtype=torch.float64), atol=1e-12, rtol=0)
    R = B.random_like(seed=1)
    assert [(n, r.shape) for n, r in R.blocks] == [(n, r.shape) for n, r in B.blocks]
    torch.testing.assert_close(R.dense(["a.k.weight", "a.q.weight"]) @ R.dense(["a.k.weight", "a.q.weight"]).T,
                               torch.eye(4, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.equal(R.blocks[0][1], B.random_like(seed=1).blocks[0][1])
    with pytest.raises(ConfigError, match="not orthonormal"):
        Basis({"w": (3,)}, ((("w",), torch.ones(1, 3)),))


# ---------------------------------------------------------------------- the hook on a tiny transformer
def _model() -> GrokTransformer:
    torch.manual_seed(0)
    return GrokTransformer(TransformerConfig.modular(P, d_model=16, d_ff=32, n_heads=2))


def _batch(gen: torch.Generator, n: int = 32):
    x = torch.randint(0, P, (n, 2), generator=gen)
    return x, (x[:, 0] + x[:, 1]) % P


def _loss(model, batch):
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def _attn_basis(model: torch.nn.Module, seed: int = 0) -> Basis:
    """A basis with the execution basis's shape (2 per attention matrix), random."""
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if ATTN.selects(n)}
    blocks = tuple(((n,), random_orthonormal(int(np.prod(s)), 2, torch.Generator().manual_seed(seed + i)))
                   for i, (n, s) in enumerate(shapes.items()))
    return Basis(shapes, blocks, "test")


def _train(model, opt, steps, gen, iv=None, check=None):
    for _ in range(steps):
        loss = _loss(model, _batch(gen))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if check is not None:
            check()
        opt.step()


def _make(kind, model, **kw):
    basis = _attn_basis(model) if kind in ("project", "penalty", "noise", "kick") else None
    opts = dict(start=2, every=1 if kind != "penalty" else 3, seed=11, window=4, rank=2)
    if kind == "kick":
        opts.update(batch_fn=lambda g: _batch(g, 16), loss_fn=_loss, kick_samples=3)
    opts.update(kw)
    return Intervention(model, kind, basis=basis, **opts)


def _run(kind, steps=8, **kw):
    """Parameters after ``steps`` steps with the intervention (kind None: plain)."""
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0)
    iv = _make(kind, model, **kw).attach(opt) if kind else None
    _train(model, opt, steps, torch.Generator().manual_seed(1), iv)
    return model, iv


KINDS_ALL = ["kick", "noise", "project", "penalty", "keep-sed", "remove-sed", "keep-random", "remove-random"]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("kind", KINDS_ALL)
def test_strength_zero_is_bit_identical_and_positive_strength_changes_training(kind):
    plain, _ = _run(None)
    zero, iv0 = _run(kind, strength=0.0)
    assert _same(plain, zero) and iv0.applied == 0
    strong, iv = _run(kind, strength={"kick": 10.0, "noise": 0.5}.get(kind, 0.8))
    assert iv.applied >= 1 and not _same(plain, strong)


@pytest.mark.parametrize("kind", KINDS_ALL)
def test_only_the_selected_parameters_are_touched(kind):
    """Each step, the tensors outside the selection keep their plain gradient (and value) bit for bit;
    the selected ones are changed on the steps it acts."""
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    iv = _make(kind, model, selection="attention", strength=0.9 if kind != "kick" else 10.0).attach(opt)
    before: dict = {}
    changed = []

    def snap():
        before.clear()
        before.update({n: (p.detach().clone(), p.grad.clone()) for n, p in model.named_parameters()})

    def after(optimizer, args, kwargs):  # runs right after the intervention's pre-hook
        for n, p in model.named_parameters():
            same = torch.equal(p.detach(), before[n][0]) and torch.equal(p.grad, before[n][1])
            if not ATTN.selects(n):
                assert same, n
            elif not same:
                changed.append(n)

    opt.register_step_pre_hook(after)
    _train(model, opt, 8, torch.Generator().manual_seed(1), check=snap)
    assert iv.applied >= 1 and changed


@pytest.mark.parametrize("kind", KINDS_ALL)
def test_resume_is_bit_identical(kind, tmp_path):
    gen_full = torch.Generator().manual_seed(1)
    full, _ = (_model(), None)
    opt = torch.optim.AdamW(full.parameters(), lr=1e-2)
    _make(kind, full, strength=0.7 if kind not in ("kick", "noise") else None, start=3).attach(opt)
    _train(full, opt, 12, gen_full)

    gen = torch.Generator().manual_seed(1)
    m1 = _model()
    o1 = torch.optim.AdamW(m1.parameters(), lr=1e-2)
    iv1 = _make(kind, m1, strength=0.7 if kind not in ("kick", "noise") else None, start=3).attach(o1)
    _train(m1, o1, 6, gen)
    buf = io.BytesIO()
    torch.save({"model": m1.state_dict(), "opt": o1.state_dict(), "iv": iv1.state_dict(), "gen": gen.get_state()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # plain values only
    m2 = _model()
    o2 = torch.optim.AdamW(m2.parameters(), lr=1e-2)
    iv2 = _make(kind, m2, strength=0.7 if kind not in ("kick", "noise") else None, start=3)
    m2.load_state_dict(saved["model"])
    o2.load_state_dict(saved["opt"])
    iv2.load_state_dict(saved["iv"])
    iv2.attach(o2)
    gen2 = torch.Generator()
    gen2.set_state(saved["gen"])
    _train(m2, o2, 6, gen2)
    assert _same(full, m2)


def test_the_global_rng_is_not_consumed_and_remove_restores_plain_training():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for kind in ("noise", "keep-random", "kick"):
        _run(kind, steps=6)
    _model()  # the helper itself seeds; compare from here on
    torch.manual_seed(123)
    for kind in ("noise", "keep-random", "kick"):
        model = _model()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        _make(kind, model).attach(opt)
        torch.set_rng_state(state)
        _train(model, opt, 6, torch.Generator().manual_seed(1))
        assert torch.equal(torch.get_rng_state(), state), kind
    # remove(): plain training again
    plain, _ = _run(None)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0)
    _make("project", model, strength=1.0).attach(opt).remove()
    _train(model, opt, 8, torch.Generator().manual_seed(1))
    assert _same(plain, model)


def test_a_non_finite_result_is_an_event_and_an_error_never_applied():
    from spectral_edge.monitor import Monitor

    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    mon = Monitor(model, windows=(2,), every=100, sketch="exact")
    iv = _make("project", model, strength=1e300, monitor=mon, start=1).attach(opt)  # overflows float32
    loss = _loss(model, _batch(torch.Generator().manual_seed(0)))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    with pytest.raises(NonFiniteError, match=r"step 1: the project intervention .* made the gradient of .* NaN or Inf"):
        opt.step()
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())  # nothing written
    ev = [r for r in mon.rows if r["kind"] == "event"]
    assert ev and ev[0]["event"] == "intervention_nonfinite" and ev[0]["stream"] == "intervention" and ev[0]["step"] == 1
    iv.remove()
    # a gradient already NaN before the transform: said so
    iv2 = _make("keep-sed", model, start=0, window=1, rank=1).attach(opt)
    iv2.seen = 1
    for n, p in model.named_parameters():
        if ATTN.selects(n):
            p.grad[0, 0] = float("nan")
            break
    with pytest.raises(NonFiniteError, match="already NaN or Inf before the keep-sed intervention"):
        opt.step()


def test_bad_arguments_and_a_basis_of_another_model_are_one_line_errors():
    model = _model()
    with pytest.raises(ConfigError, match="needs a basis"):
        Intervention(model, "project")
    with pytest.raises(ConfigError, match="strength"):
        Intervention(model, "keep-sed", strength=-1)
    with pytest.raises(ConfigError, match="unknown intervention"):
        Intervention(model, "boost")
    with pytest.raises(ConfigError, match="batch_fn"):
        Intervention(model, "kick", basis=_attn_basis(model))
    other = GrokTransformer(TransformerConfig.modular(P, d_model=8, d_ff=16, n_heads=2))
    with pytest.raises(ShapeMismatchError, match="shape"):
        Intervention(model, "project", basis=_attn_basis(other))
    with pytest.raises(ShapeMismatchError, match="not among the parameters"):
        Intervention(model, "project", basis=Basis({"x.weight": (2, 2)}, ((("x.weight",), torch.eye(4)[:1]),)))
    with pytest.raises(ConfigError, match="basis_from"):
        InterventionSpec(kind="project")
    with pytest.raises(ConfigError, match="own rank-3 basis"):
        InterventionSpec(kind="keep-sed", basis_from="runs/x")
    assert InterventionSpec(kind="noise", basis="random").resolved()["every"] == 50


def test_online_basis_from_the_manifold_probe_waits_then_acts():
    from spectral_edge.probes.base import ProbeContext
    from spectral_edge.probes.manifold import ExecutionManifoldProbe

    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    probe = ExecutionManifoldProbe(model, every=2, null_trials=0)
    iv = Intervention(model, "project", basis=probe, start=1, strength=1.0).attach(opt)
    gen = torch.Generator().manual_seed(1)
    steps = 0
    for _ in range(6):
        _train(model, opt, 1, gen)
        steps += 1
        if steps % 2 == 0:
            probe.run(ProbeContext(steps, model=model))
        if steps <= 4:
            assert iv.applied == 0  # the probe has < 3 snapshots until step 4's call
    assert iv.applied == 2 and iv.describe()["basis"] == "online"
