"""The run keeps the snapshots functional modes need (issue 14, part 2).

``<run>/snapshots.safetensors``: for each tensor the monitor selects, the last S snapshots
(S = ``RunConfig.effective_snapshots``) taken at the monitor's sampling steps, oldest first,
float32 ``(S, *shape)``, with metadata ``format``, ``steps`` and ``every``; kept in the run
checkpoints so that a resume writes the same file byte for byte, and free of side effects
(training is bit-identical with and without them).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from badinput import Case, check
from spectral_edge.experiments import RunConfig, run_experiment
from spectral_edge.experiments.checkpoint import SNAPSHOTS_FORMAT, SnapshotRing, state_files
from spectral_edge.experiments.workloads import build_workload
from spectral_edge.monitor import Monitor
from spectral_edge.selection import Selection

TINY = {"d_model": 32, "d_ff": 64, "n_heads": 2}
BASE = RunConfig(op="add", modulus=13, steps=120, eval_every=20, every=10, windows=(3,), model=TINY, batch_size=64,
                 lr=3e-3, early_stop=False, threads=1)
ATTENTION = [f"layers.{i}.attn.{m}_proj.weight" for i in (0, 1) for m in "qkvo"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def cfg(**kw) -> RunConfig:
    return RunConfig(**{**BASE.to_dict(), **kw})


def read(path):
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    return load_file(str(path)), meta


def record_losses(into: dict[int, float]):
    return lambda step, total, info: into.__setitem__(step, info["loss"])


class Crash(Exception):
    pass


def crash_at(n: int):
    def cb(step, total, info):
        if step == n:
            raise Crash

    return cb


def test_snapshots_hold_the_last_s_samples_of_the_monitored_tensors(tmp_path):
    out = tmp_path / "run"
    res = run_experiment(cfg(snapshots=5, checkpoint_every=10), out)
    tensors, meta = read(out / "snapshots.safetensors")
    assert sorted(tensors) == sorted(ATTENTION) == sorted(res.monitor.updates.plan.names)
    assert meta == {"format": SNAPSHOTS_FORMAT, "steps": json.dumps([80, 90, 100, 110, 120]), "every": "10"}
    assert SNAPSHOTS_FORMAT == "spectral-edge-snapshots/1"
    for name, t in tensors.items():
        assert t.dtype == torch.float32 and tuple(t.shape) == (5, 32, 32)
    for i, step in enumerate(json.loads(meta["steps"])):  # the parameters at those steps, oldest first
        saved = load_file(str(out / "checkpoints" / f"step_{step:07d}.safetensors"))
        for name in ATTENTION:
            assert torch.equal(tensors[name][i], saved[name]), (step, name)
    assert res.summary["snapshots"] == "snapshots.safetensors"
    assert (out / "snapshots.safetensors").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    m = os.umask(0o022)
    os.umask(m)
    return m


def test_fewer_samples_than_s_keeps_them_all_from_step_0(tmp_path):
    out = tmp_path / "run"
    run_experiment(cfg(steps=35, snapshots=50, checkpoint_every=10), out)  # samples at 0, 10, 20, 30
    tensors, meta = read(out / "snapshots.safetensors")
    assert json.loads(meta["steps"]) == [0, 10, 20, 30]
    first = load_file(str(out / "checkpoints" / "step_0000000.safetensors"))
    for name in ATTENTION:
        assert tuple(tensors[name].shape) == (4, 32, 32)
        assert torch.equal(tensors[name][0], first[name])


def test_snapshots_do_not_change_training_and_zero_writes_nothing(tmp_path):
    runs = {}
    for s in (0, 3, None):  # None: the modular default, 21
        out = tmp_path / f"s{s}"
        losses: dict[int, float] = {}
        res = run_experiment(cfg(snapshots=s), out, progress=record_losses(losses))
        runs[s] = (out, losses, res.summary)
    assert not (tmp_path / "s0" / "snapshots.safetensors").exists() and runs[0][2]["snapshots"] is None
    assert json.loads(read(tmp_path / "sNone" / "snapshots.safetensors")[1]["steps"]) == list(range(0, 121, 10))
    ref_out, ref_losses, _ = runs[0]
    for s in (3, None):
        out, losses, _ = runs[s]
        assert losses == ref_losses  # bit-identical, step by step
        for f in ("history.jsonl", "eval.csv", "model.safetensors"):
            assert (out / f).read_bytes() == (ref_out / f).read_bytes(), (s, f)


def test_non_modular_tasks_keep_none_by_default(tmp_path):
    dyck = RunConfig(task="dyck", steps=20, eval_every=10, every=5, windows=(3,), model=TINY, batch_size=20,
                     task_options={"n_pool": 200, "n_train": 20, "max_pairs": 4})
    res = run_experiment(dyck, tmp_path / "dyck")
    assert not (tmp_path / "dyck" / "snapshots.safetensors").exists() and res.summary["snapshots"] is None


def test_resume_writes_the_same_snapshots(tmp_path):
    c = cfg(snapshots=3)
    ref_losses: dict[int, float] = {}
    run_experiment(c, tmp_path / "ref", save_every=25, progress=record_losses(ref_losses))
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_experiment(c, out, save_every=25, progress=crash_at(67))  # the ring has wrapped at step 50
    assert [p.name for p in state_files(out)] == ["step_0000025.pt", "step_0000050.pt"]
    losses: dict[int, float] = {}
    run_experiment(c, out, resume=True, save_every=25, progress=record_losses(losses))
    assert all(losses[s] == ref_losses[s] for s in losses)
    assert (out / "snapshots.safetensors").read_bytes() == (tmp_path / "ref" / "snapshots.safetensors").read_bytes()


def test_a_run_checkpoint_without_snapshots_resumes_with_a_warning(tmp_path):
    c = cfg(snapshots=4)
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run_experiment(c, out, save_every=50, progress=crash_at(57))
    path = state_files(out)[-1]
    state = torch.load(path, weights_only=True)
    del state["snapshots"]  # as written before snapshots existed
    torch.save(state, path)
    with pytest.warns(RuntimeWarning, match="step_0000050.pt predates snapshots"):
        run_experiment(c, out, resume=True, save_every=50)
    assert json.loads(read(out / "snapshots.safetensors")[1]["steps"]) == [90, 100, 110, 120]


def test_overwrite_drops_the_previous_runs_snapshots(tmp_path):
    out = tmp_path / "run"
    run_experiment(cfg(steps=20, snapshots=3), out)
    assert (out / "snapshots.safetensors").is_file()
    run_experiment(cfg(steps=20, snapshots=0), out, overwrite=True)
    assert not (out / "snapshots.safetensors").exists()


def test_the_ring_at_p97_holds_11_mb_of_attention_weights():
    wl = build_workload(RunConfig())
    mon = Monitor(wl.model, selection=Selection(preset="attention"), sample_initial=False)
    ring = SnapshotRing(mon.updates.shapes, RunConfig().effective_snapshots, 100)
    assert mon.n_parameters == 131_072 and ring.size == 21
    assert ring.nbytes == 21 * 131_072 * 4  # 11.0 MB


def test_the_ring_keeps_order_through_wraps_and_a_state_round_trip():
    ring = SnapshotRing({"w": (2,)}, 3, 1)
    for s in range(7):
        ring.take(s, {"w": torch.full((2,), float(s))})
    assert ring.steps == [4, 5, 6] and ring.ordered()["w"][:, 0].tolist() == [4.0, 5.0, 6.0]
    other = SnapshotRing({"w": (2,)}, 3, 1)
    other.load_state_dict(ring.state_dict())
    other.take(7, {"w": torch.full((2,), 7.0)})
    ring.take(7, {"w": torch.full((2,), 7.0)})
    assert other.steps == ring.steps == [5, 6, 7] and torch.equal(other.ordered()["w"], ring.ordered()["w"])


# ---------------------------------------------------------------------- bad input: a run checkpoint's ring
def _killed_with(tamper):
    def make(d):
        c = cfg(snapshots=3)
        cfg_file = d / "c.json"
        cfg_file.write_text(json.dumps(c.to_dict()))
        out = d / "run"
        with pytest.raises(Crash):
            run_experiment(c, out, save_every=20, progress=crash_at(27))
        for path in state_files(out):
            state = torch.load(path, weights_only=True)
            tamper(state["snapshots"])
            torch.save(state, path)
        return ["run", str(cfg_file), "--out", str(out), "--resume", "--quiet"]

    return make


def _wrong_shape(s):
    s["tensors"] = {k: v[:, :4] for k, v in s["tensors"].items()}


def _other_size(s):
    s["size"] = 5


def _other_names(s):
    s["tensors"] = {f"x.{k}": v for k, v in s["tensors"].items()}


def _bad_steps(s):
    s["steps"] = "0,10"


CASES = [
    Case("resume-snapshots-wrong-shape", _killed_with(_wrong_shape),
         ["step_0000020.pt", "snapshots", "float32 of shape"]),
    Case("resume-snapshots-other-size", _killed_with(_other_size), ["step_0000020.pt", "snapshots", "keeps 3"]),
    Case("resume-snapshots-other-names", _killed_with(_other_names), ["step_0000020.pt", "snapshots",
                                                                      "not the monitored tensors"]),
    Case("resume-snapshots-bad-steps", _killed_with(_bad_steps), ["step_0000020.pt", "snapshot steps"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_snapshot_state_in_a_run_checkpoint(case, tmp_path):
    check(case, tmp_path)
