"""Functional modes of a run: the snapshot format, the directions (centred or not), the
perturbation response against a by-hand evaluation, planted modes through a user's own
features, side-effect freedom (like the defect probe's test), run folders (single task and
multitask) and the CLI's JSON fields. The run folders are built here from a short training loop
of the reference model at p = 23 (independent of the runner)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file, save_model

from spectral_edge.analysis.modes import (
    SNAPSHOT_FORMAT,
    ModesConfig,
    Snapshots,
    analyze_modes,
    mode_response,
    random_directions,
    read_snapshots,
    run_modes,
    snapshot_directions,
)
from spectral_edge.errors import ConfigError, SpectralEdgeError
from spectral_edge.experiments.config import RunConfig
from spectral_edge.experiments.workloads import build_workload
from spectral_edge.selection import Selection

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

P = 23
TINY = {"d_model": 32, "n_heads": 2, "d_ff": 64}


def write_snapshots(path: Path, tensors: dict, steps: list[int], every: int | None = 2,
                    meta: dict | None = None) -> Path:
    """A snapshots file by hand: name → (S, *shape) float32, metadata as the runner writes it
    (``meta`` overrides or adds metadata keys)."""
    md = {"format": SNAPSHOT_FORMAT, "steps": json.dumps(steps), **({"every": str(every)} if every else {})}
    md.update(meta or {})
    save_file({k: torch.as_tensor(v).contiguous() for k, v in tensors.items()}, str(path), metadata=md)
    return path


def make_modes_run(folder: Path, *, op: str = "add", task: str = "modular", p: int = P, n_snapshots: int = 21,
                   every: int = 2, seed: int = 0, steps_run: int | None = None) -> Path:
    """A run folder like `spectral-edge grok` writes (config.json, model.safetensors,
    snapshots.safetensors, summary.json) from a short AdamW loop of the reference model."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = RunConfig(task=task, op=op, modulus=p, seed=seed, model=dict(TINY), every=every)
    wl = build_workload(cfg)
    model = wl.model
    sel = Selection(preset="attention")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1.0)
    gen = torch.Generator().manual_seed(seed)
    snaps: list[dict] = []
    steps = []
    n_steps = n_snapshots * every
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for step in range(1, n_steps + 1):
            loss = wl.loss(model, wl.sample_batch(gen, 64))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % every == 0:
                snaps.append({n: q.detach().clone() for n, q in model.named_parameters() if sel.selects(n, q.dtype)})
                steps.append(step)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    save_model(model, str(folder / "model.safetensors"))
    write_snapshots(folder / "snapshots.safetensors", {n: torch.stack([s[n] for s in snaps]) for n in snaps[0]},
                    steps, every)
    model.eval()
    acc = wl.evaluate(model)["test_acc"]
    (folder / "summary.json").write_text(json.dumps({"steps_run": steps_run or n_steps, "final_test_acc": acc}))
    return folder


@pytest.fixture(scope="module")
def add_run(tmp_path_factory):
    return make_modes_run(tmp_path_factory.mktemp("modes") / "add")


# ---------------------------------------------------------------------- snapshots and directions
def test_snapshot_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    t = {"b.w": rng.standard_normal((4, 2, 3)).astype(np.float32), "a.w": rng.standard_normal((4, 5)).astype(np.float32)}
    path = write_snapshots(tmp_path / "s.safetensors", t, [100, 200, 300, 400], every=100)
    s = read_snapshots(path)
    assert s.names == ("a.w", "b.w") and s.shapes == ((5,), (2, 3)) and s.steps == (100, 200, 300, 400)
    assert s.every == 100 and s.size == 11 and s.path == path
    for i in range(4):
        parts = s.unflatten(s.values[i])
        assert np.array_equal(parts["a.w"], t["a.w"][i]) and np.array_equal(parts["b.w"], t["b.w"][i])


def _planted_snapshots(rng, P_=60, W=10, drift=0.0):
    """Updates c_i·u1 + d_i·u2 (+ a constant drift u0), u0 ⟂ u1 ⟂ u2, var(c) ≫ var(d)."""
    Q = np.linalg.qr(rng.standard_normal((P_, 3)))[0].T  # rows u0, u1, u2
    i = np.arange(W)
    c, d = 3.0 * np.cos(2 * np.pi * i / W), np.sin(2 * np.pi * i / W)  # zero-mean, orthogonal in time
    deltas = np.outer(c, Q[1]) + np.outer(d, Q[2]) + drift * Q[0]
    theta = np.vstack([rng.standard_normal(P_), np.zeros((W, P_))])
    theta[1:] = theta[0] + np.cumsum(deltas, axis=0)
    snaps = Snapshots.from_tensors({"w": theta.astype(np.float32)}, list(range(W + 1)))
    return snaps, Q


def test_centred_and_uncentred_directions_differ_as_planted():
    rng = np.random.default_rng(1)
    snaps, Q = _planted_snapshots(rng, drift=40.0)
    V, s = snapshot_directions(snaps, window=10, n=2, centred=True)
    assert abs(V[0] @ Q[1]) > 0.999 and abs(V[1] @ Q[2]) > 0.999 and s[0] > s[1]
    Vu, _ = snapshot_directions(snaps, window=10, n=2, centred=False)
    assert abs(Vu[0] @ Q[0]) > 0.99  # the constant drift dominates the raw window
    # the sign convention: each direction's largest entry is positive
    assert all(v[np.argmax(np.abs(v))] > 0 for v in V)
    # exactly rank 2 (integer updates along two axes, exact in float32): a third direction is refused
    c, d = np.array([3, -3] * 4), np.array([1, 1, -1, -1] * 2)
    exact = np.zeros((9, 6))
    exact[1:, 0], exact[1:, 1] = np.cumsum(c), np.cumsum(d)
    exact_snaps = Snapshots.from_tensors({"w": exact}, list(range(9)))
    V2, s2 = snapshot_directions(exact_snaps, window=8, n=2)
    assert np.allclose(np.abs(V2[:, :2]), np.eye(2)) and np.allclose(s2, [np.linalg.norm(c), np.linalg.norm(d)])
    with pytest.raises(ConfigError, match="rank 2"):
        snapshot_directions(exact_snaps, window=8, n=3)
    with pytest.raises(ConfigError, match="--window 10 or fewer"):
        snapshot_directions(snaps, window=11, n=2)


def test_random_directions_are_seeded_unit_vectors():
    a, b, c = random_directions(4, 50, seed=3), random_directions(4, 50, seed=3), random_directions(4, 50, seed=4)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0)


# ---------------------------------------------------------------------- the response
def _pairs_tensor(p):
    r = torch.arange(p)
    a, b = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([a.reshape(-1), b.reshape(-1)], 1)


def test_response_matches_a_by_hand_perturbation(add_run):
    cfg = RunConfig.from_file(add_run / "config.json")
    model = build_workload(cfg).model
    model.load_state_dict(load_file(add_run / "model.safetensors"))
    names = [n for n, _ in model.named_parameters() if Selection(preset="attention").selects(n)]
    size = sum(dict(model.named_parameters())[n].numel() for n in names)
    V = random_directions(2, size, seed=5) * 7.0  # not unit: the probe normalises
    x = _pairs_tensor(P)
    f = mode_response(model, x, names, V, epsilon=0.01)
    theta = torch.cat([dict(model.named_parameters())[n].detach().reshape(-1).double() for n in names])
    eps = 0.01 * float(theta.norm())
    for k in range(2):
        twin = copy.deepcopy(model).eval()
        vec = theta + torch.as_tensor(V[k] / np.linalg.norm(V[k])) * eps
        at = 0
        with torch.no_grad():
            for n in names:
                prm = dict(twin.named_parameters())[n]
                prm.copy_(vec[at:at + prm.numel()].view(prm.shape).float())
                at += prm.numel()
            h0 = model.eval().features(x).double()
            want = ((twin.features(x).double() - h0) ** 2).sum(1).numpy()
        assert np.allclose(f[k], want, rtol=1e-5, atol=1e-12)
    model.train()


class _Toy(torch.nn.Module):
    """w[(a + b) mod p] is the whole representation; dropout would make it random in train mode."""

    def __init__(self, p):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(p, dtype=torch.float64))
        self.drop = torch.nn.Dropout(0.5)
        self.p = p


def _toy_features(model, x):
    return model.drop(model.w[(x[:, 0] + x[:, 1]) % model.p][:, None])


def test_planted_direction_gives_its_mode_through_user_features():
    # Δh = ε·v[q] for q = a + b, so f = ε²·v[q]²: v ∝ cos(2π·3q/p) puts all the power at ω = 6
    p, W = 23, 6
    q = np.arange(p)
    u1 = np.cos(2 * np.pi * 3 * q / p)
    u2 = np.sin(2 * np.pi * 5 * q / p)
    i = np.arange(W)
    c, d = 5 * np.cos(2 * np.pi * i / W), 0.5 * np.sin(2 * np.pi * i / W)  # zero-mean, orthogonal in time
    deltas = np.outer(c, u1 / np.linalg.norm(u1)) + np.outer(d, u2 / np.linalg.norm(u2))
    theta = np.vstack([np.ones(p), np.ones(p) + np.cumsum(deltas, 0)])
    snaps = Snapshots.from_tensors({"w": theta}, list(range(0, 100 * (W + 1), 100)))
    model = _Toy(p).train()
    cfg = ModesConfig(window=W, n_directions=2, n_edge=1, n_random=3, epsilon=1e-3)
    res = analyze_modes(model, snaps, p, "add", cfg, features=_toy_features)
    v1, v2 = res.directions[0], res.directions[1]
    assert (v1.role, v2.role) == ("edge", "bulk") and [d.role for d in res.directions[2:]] == ["random"] * 3
    assert v1.bases["add"].omega == 6 and v1.bases["add"].F == pytest.approx(1.0, abs=1e-6)
    assert v1.best_basis == "add" and v2.bases["add"].omega == 10  # sin² at 5 → 10
    assert res.summary["addition"]["omegas"] == [6] and res.summary["edge"]["F_mean"] == pytest.approx(1.0, abs=1e-6)
    assert res.summary["nulls"]["random_F_mean"] < 0.6
    assert res.response_field.shape == (5, p, p)
    assert np.allclose(res.response_field[0], (res.epsilon_abs * (u1 / np.linalg.norm(u1))[(q[:, None] + q) % p]) ** 2,
                       rtol=1e-6)
    assert model.training and torch.equal(model.w, torch.zeros(p, dtype=torch.float64))  # untouched


def _state(model, opt):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [None if q.grad is None else q.grad.clone() for q in model.parameters()],
            {k: (v.clone() if torch.is_tensor(v) else v) for s in opt.state.values() for k, v in s.items()},
            torch.get_rng_state().clone(), np.random.get_state()[1].copy(),
            [m.training for m in model.modules()], [id(q) for q in model.parameters()])


def test_analysis_has_no_side_effects(add_run):
    cfg = RunConfig.from_file(add_run / "config.json")
    wl = build_workload(cfg)
    model = wl.model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        opt.zero_grad()
        wl.loss(model, wl.sample_batch(gen, 32)).backward()
        opt.step()
    opt.zero_grad(set_to_none=False)
    wl.loss(model, wl.sample_batch(gen, 32)).backward()
    model.head.bias.grad = None  # a mix of set and None gradients
    model.train()
    model.layers[0].eval()  # a mix of train and eval submodules
    before = _state(model, opt)
    snaps = read_snapshots(add_run / "snapshots.safetensors")
    res = analyze_modes(model, snaps, P, "add", ModesConfig(n_random=2))
    after = _state(model, opt)
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), k
    for a, b in zip(before[1], after[1]):
        assert (a is None and b is None) or torch.equal(a, b)
    for k in before[2]:
        assert torch.equal(before[2][k], after[2][k]) if torch.is_tensor(before[2][k]) else before[2][k] == after[2][k]
    assert torch.equal(before[3], after[3]) and np.array_equal(before[4], after[4])
    assert before[5] == after[5] and before[6] == after[6]
    # a pure function of its inputs: the same again
    again = analyze_modes(model, snaps, P, "add", ModesConfig(n_random=2))
    assert np.array_equal(res.response_field, again.response_field)


# ---------------------------------------------------------------------- run folders
def test_run_modes_on_a_run_folder(add_run):
    res = run_modes(add_run, ModesConfig(n_random=3))
    assert res.source == str(add_run) and res.ops == ("add",) and res.modulus == P and res.step == 42
    assert len(res.steps) == 21 and res.n_parameters == 2 * 4 * 32 * 32
    assert [d.role for d in res.directions] == ["edge"] * 3 + ["bulk"] * 5 + ["random"] * 3
    assert [d.k for d in res.directions] == [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3]
    sig = [d.sigma for d in res.directions if d.role != "random"]
    assert sig == sorted(sig, reverse=True)
    for d in res.directions:
        assert set(d.bases) == {"add", "sub", "mul", "dlog", "output"} and d.best_basis in d.bases
        assert d.bases[d.best_basis].F == max(s.F for s in d.bases.values())
        assert d.bases["dlog"].period == 22 and d.bases["add"].period == 23
        assert np.array_equal(d.bases["add"].shares, d.bases["output"].shares)  # add's output is a + b
    assert res.n_pairs == P * P - int(0.5 * P * P)  # the test split
    s = res.summary
    assert s["basis"] == "add" and "addition" in s and "multiplication" not in s
    assert s["edge"]["k"] == [1, 2, 3] and len(s["edge"]["omega"]) == 3
    assert s["uniform"] == pytest.approx(1 / 11)
    d = json.loads(json.dumps(res.to_dict()))
    assert {"directions", "summary", "notes", "step", "config"} <= set(d)
    assert set(d["directions"][0]["bases"]["add"]) >= {"omega", "F", "ratio_to_uniform"}
    assert "shares" not in d["directions"][0]["bases"]["add"]
    assert len(res.to_dict(spectra=True)["directions"][0]["bases"]["add"]["shares"]) == 11
    # profiles over all pairs or the test split only: a different fold of the same response
    allp = run_modes(add_run, ModesConfig(n_random=3, pairs="all"))
    assert np.array_equal(allp.response_field, res.response_field) and allp.n_pairs == P * P > res.n_pairs


def test_a_stale_model_file_is_replaced_by_the_snapshot(add_run, tmp_path):
    # the last snapshot is not at the run's last step: model.safetensors (here: with different
    # attention weights) gets the snapshot's block, and a note says so
    run = tmp_path / "run"
    run.mkdir()
    for f in ("config.json", "snapshots.safetensors", "summary.json"):
        (run / f).write_bytes((add_run / f).read_bytes())
    (run / "summary.json").write_text(json.dumps({"steps_run": 50, "final_test_acc": 0.5}))
    sd = load_file(add_run / "model.safetensors")
    sd["layers.0.attn.q_proj.weight"] = sd["layers.0.attn.q_proj.weight"] * 3
    save_file(sd, str(run / "model.safetensors"))
    a, b = run_modes(add_run), run_modes(run)
    assert np.array_equal(a.response_field, b.response_field)
    assert any("step 42" in n and "step 50" in n and "substituted" in n for n in b.notes)
    assert any("not generalised" in n for n in b.notes)


def test_multitask_run_folds_the_shared_trunk(tmp_path):
    run = make_modes_run(tmp_path / "mt", op="add,mul,x2y2", task="multitask", n_snapshots=11)
    res = run_modes(run, ModesConfig(window=10, n_directions=4, n_random=2))
    assert res.task == "multitask" and res.ops == ("add", "mul", "x2y2")
    d = res.directions[0]
    assert set(d.bases) == {"add", "sub", "mul", "dlog", "output:add", "output:mul", "output:x2y2"}
    assert np.isnan(res.response_field[:, 0, :]).all() and np.isfinite(res.response_field[:, 1:, 1:]).all()
    s = res.summary
    assert s["basis"] == "add" and {"addition", "multiplication", "x2y2", "multitask"} <= set(s)
    w = s["multitask"]["add_omega"]
    assert s["multitask"]["add_share_at_omega"] == pytest.approx(
        np.mean([x.bases["add"].share_at(w) for x in res.by_role("edge")]))
    r2 = s["x2y2"]["r2"]  # x² + y² is one of the tasks: the feature families' R²
    assert set(r2) == {"add", "dlog", "combined", "cross", "full"} and all(0 <= v <= 1 for v in r2.values())
    assert r2["full"] >= r2["combined"] >= max(r2["add"], r2["dlog"]) - 1e-9
    assert s["x2y2"]["cross_added"] == pytest.approx(r2["full"] - r2["combined"])
    assert not any("cross terms" in n for n in res.notes)  # p = 23: dlog ω ≤ 11, room for ω = 1…10


def test_dlog_needs_a_prime_and_bad_options_are_refused():
    with pytest.raises(ConfigError, match="window"):
        ModesConfig(window=1)
    with pytest.raises(ConfigError, match="≤ 19"):
        ModesConfig(n_directions=20)
    assert ModesConfig(n_directions=20, centred=False).n_directions == 20
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="epsilon"):
            ModesConfig(epsilon=bad)
    with pytest.raises(ConfigError, match="bases"):
        ModesConfig(bases=("add", "cos"))
    with pytest.raises(ConfigError, match="pairs"):
        ModesConfig(pairs="val")
    snaps = Snapshots.from_tensors({"w": np.cumsum(np.random.default_rng(0).standard_normal((7, 21)), 0)},
                                   list(range(7)))
    with pytest.raises(ConfigError, match="not prime"):
        analyze_modes(_Toy(21), snaps, 21, "add", ModesConfig(window=6, n_directions=2, bases=("dlog",)),
                      features=_toy_features)
    res = analyze_modes(_Toy(21), snaps, 21, "add", ModesConfig(window=6, n_directions=2, n_random=0),
                        features=_toy_features)
    assert "dlog" not in res.directions[0].bases and any("not prime" in n for n in res.notes)
    with pytest.raises(SpectralEdgeError, match="too small"):
        analyze_modes(_Toy(3), snaps, 3, "add", features=_toy_features)
    with pytest.raises(ConfigError, match="features"):
        mode_response(torch.nn.Linear(2, 2), _pairs_tensor(3), ["weight"], np.ones((1, 4)))


# ---------------------------------------------------------------------- the command
def test_cli_json_and_out_file(add_run, tmp_path):
    from badinput import run as cli

    out = tmp_path / "m.json"
    res = cli(["modes", add_run, "--random", "2", "--json", "--out", out])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["out"] == str(out) and d["op"] == "add" and d["modulus"] == P
    assert [x["role"] for x in d["directions"]] == ["edge"] * 3 + ["bulk"] * 5 + ["random"] * 2
    for x in d["directions"]:
        assert {"k", "role", "sigma", "bases", "best_basis"} <= set(x)
        for b in x["bases"].values():
            assert {"omega", "F", "ratio_to_uniform"} <= set(b)
    assert {"basis", "edge", "nulls", "addition"} <= set(d["summary"])
    saved = json.loads(out.read_text())
    assert saved["summary"] == d["summary"] and "shares" in saved["directions"][0]["bases"]["add"]
    # the table, a subset of bases, the uncentred window
    res = cli(["modes", add_run, "--basis", "add,dlog", "--uncentred", "--directions", "4", "--random", "0"])
    assert res.exit_code == 0, res.output
    assert "edge vs nulls" in res.stdout and "output" not in res.stdout
    assert math.isfinite(float(d["summary"]["edge"]["F_mean"]))


def test_cli_plot(add_run, tmp_path):
    pytest.importorskip("matplotlib")
    from badinput import run as cli

    res = cli(["modes", add_run, "--random", "1", "--plot", tmp_path / "m.png", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG" and res.stdout.strip() == ""
