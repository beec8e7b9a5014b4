"""The live monitor: no side effects on training, streams, history, resume, faults."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from spectral_edge.errors import ConfigError, NonFiniteError, StateError
from spectral_edge.functional import spectrum as sp
from spectral_edge.functional.sketch import SketchSpec
from spectral_edge.io.history import read_history
from spectral_edge.monitor import Monitor, logger_metrics
from spectral_edge.selection import Selection


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Dropout(0.1), torch.nn.Linear(32, 4))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, 12, generator=g), torch.randint(0, 4, (64,), generator=g)


def _train(steps=30, monitor_kw=None, attach=True, resume_at=None, tmp=None):
    """Seeded training loop (dropout consumes the global RNG); returns losses and the monitor."""
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    X, y = _data()
    mon = Monitor(model, **monitor_kw) if monitor_kw is not None else None
    handle = mon.attach(opt) if (mon is not None and attach) else None
    losses = []
    torch.manual_seed(123)
    for i in range(steps):
        loss = torch.nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mon is not None and not attach:
            mon.step()
        losses.append(loss.item())
    if handle is not None:
        handle.remove()
    return losses, mon, model


@pytest.mark.parametrize("sketch", ["exact", "fold"])
def test_training_is_bit_identical_with_and_without_the_monitor(sketch, tmp_path):
    base, _, m0 = _train(40)
    kw = dict(windows=(3, 5), every=2, sketch=SketchSpec(sketch, dim=30), gradients=True,
              history=tmp_path / "h.jsonl")
    with_mon, mon, m1 = _train(40, kw)
    assert base == with_mon  # exact float equality of every loss
    for a, b in zip(m0.parameters(), m1.parameters()):
        assert torch.equal(a, b)
    assert len([r for r in mon.rows if r["kind"] == "sed"]) > 10
    mon.close()


def test_update_stream_equals_offline_batch_analysis_of_saved_states():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    X, y = _data()
    mon = Monitor(model, windows=(4,), every=3, sketch="exact")
    mon.attach(opt)
    states = [torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])]
    for i in range(1, 31):
        loss = torch.nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % 3 == 0:
            states.append(torch.cat([p.detach().reshape(-1).double() for p in model.parameters()]))
    deltas = np.diff(torch.stack(states).numpy(), axis=0)
    batch = sp.window_series(sp.gram(deltas), 4)
    rows = [r for r in mon.rows if r["kind"] == "sed"]
    assert [r["step"] for r in rows] == [3 * (t + 1) for t, _ in batch]
    for r, (_, st) in zip(rows, batch):
        np.testing.assert_allclose([r[f"sigma_{j}"] for j in range(1, 5)], st.sigma, rtol=1e-9)
        assert r["k_star"] == st.k_star


def test_gradient_stream_sketches_the_gradients_before_the_step():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    X, y = _data()
    mon = Monitor(model, windows=(3,), every=2, sketch="exact", gradients=True)
    mon.attach(opt)
    grads = []
    for i in range(1, 13):
        loss = torch.nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        if i % 2 == 0:
            grads.append(torch.cat([p.grad.reshape(-1).double() for p in model.parameters()]))
        opt.step()
    G = torch.stack(grads).numpy()
    batch = dict(sp.window_series(sp.gram(G), 3))
    rows = [r for r in mon.rows if r["kind"] == "grad"]
    assert [r["step"] for r in rows] == [6, 8, 10, 12]
    np.testing.assert_allclose(rows[-1]["sigma_1"], batch[5].sigma[0], rtol=1e-10)


def test_manual_step_equals_hook(tmp_path):
    kw = dict(windows=(3,), every=2, sketch="exact")
    _, m_hook, _ = _train(20, kw)
    _, m_hand, _ = _train(20, kw, attach=False)
    a = [r for r in m_hook.rows if r["kind"] == "sed"]
    b = [r for r in m_hand.rows if r["kind"] == "sed"]
    assert [r["sigma_1"] for r in a] == [r["sigma_1"] for r in b]


def test_history_file_is_readable_by_pandas_and_holds_logs(tmp_path):
    path = tmp_path / "run" / "history.jsonl"
    kw = dict(windows=(3,), every=2, sketch="fold", history=path)
    _, mon, _ = _train(12, kw)
    mon.log(val_loss=0.5, val_acc=torch.tensor(0.75))
    mon.close()
    df = pd.read_json(path, lines=True)
    assert set(df["kind"]) >= {"meta", "sed", "log"}
    logs = read_history(path, kind="log")
    assert "lr" in logs and logs["lr"].dropna().iloc[0] == pytest.approx(5e-3)
    assert logs["val_acc"].dropna().iloc[-1] == pytest.approx(0.75)
    sed = read_history(path, kind="sed")
    assert list(sed["step"]) == [6, 8, 10, 12] and (sed["window"] == 3).all()


def test_resume_gives_identical_metrics_and_history(tmp_path):
    X, y = _data()

    def run(path, stop=None, resume_from=None):
        model = _model()
        opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
        start = 0
        torch.manual_seed(7)  # dropout draws from the global RNG; the checkpoint restores it
        if resume_from is not None:
            ck = torch.load(resume_from, weights_only=True)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            torch.set_rng_state(ck["rng"])
            start = ck["step"]
        mon = Monitor(model, windows=(3, 5), every=2, sketch="fold", gradients=True, history=path,
                      start_step=start)
        if resume_from is not None:
            mon.load_state_dict(ck["monitor"])
        mon.attach(opt)
        for i in range(start, 30):
            loss = torch.nn.functional.cross_entropy(model(X), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(loss=loss.item())
            if stop is not None and i + 1 == stop:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": i + 1, "rng": torch.get_rng_state(),
                            "monitor": mon.state_dict()}, tmp_path / "ck.pt")
            if stop is not None and i + 1 == stop + 5:  # the run dies a bit after its checkpoint
                mon.close()
                return
        mon.close()

    run(tmp_path / "full.jsonl")
    run(tmp_path / "resumed.jsonl", stop=14)
    run(tmp_path / "resumed.jsonl", resume_from=tmp_path / "ck.pt")
    a = read_history(tmp_path / "full.jsonl")
    b = read_history(tmp_path / "resumed.jsonl")
    a, b = a[a.kind != "meta"].reset_index(drop=True), b[b.kind != "meta"].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_resume_with_a_different_parameter_set_is_a_clear_error():
    _, mon, _ = _train(6, dict(windows=(3,), every=2, sketch="exact"))
    other = Monitor(torch.nn.Linear(3, 3), windows=(3,), every=2, sketch="exact")
    with pytest.raises(StateError, match="parameter set"):
        other.load_state_dict(mon.state_dict())
    with pytest.raises(StateError, match="every"):
        Monitor(_model(), windows=(3,), every=5, sketch="exact").load_state_dict(mon.state_dict())


def test_nonfinite_parameters_are_recorded_and_warned_not_fatal(tmp_path):
    model = torch.nn.Linear(4, 2)
    mon = Monitor(model, windows=(2,), every=1, sketch="fold", history=tmp_path / "h.jsonl")
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match="NaN"):
        mon.step()
    ev = [r for r in mon.rows if r["kind"] == "event"]
    assert ev and ev[0]["event"] == "nonfinite" and "weight" in ev[0]["message"]
    with torch.no_grad():
        model.weight[0, 0] = 1.0
    mon.step()
    mon.step()  # training and monitoring go on
    assert any(r["kind"] == "sed" for r in mon.rows)
    strict = Monitor(model, windows=(2,), every=1, sketch="exact", on_nonfinite="raise")
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(NonFiniteError, match="bias"):
        strict.step()


def test_bad_arguments():
    with pytest.raises(ConfigError, match="every"):
        Monitor(torch.nn.Linear(2, 2), every=0)
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable"):
        Monitor(frozen)


def test_auto_sketch_is_exact_for_small_models_and_fold_for_large():
    small = Monitor(torch.nn.Linear(10, 10), sample_initial=False)
    assert small.config.sketch.family == "exact"
    big = Monitor(torch.nn.Linear(2000, 1000), sample_initial=False)
    assert big.config.sketch.family == "fold" and big.config.sketch.dim == 100


def test_logger_metrics_are_namespaced():
    class Rec:
        def __init__(self):
            self.calls = []

        def log_metrics(self, m, step):
            self.calls.append((step, m))

    rec = Rec()
    kw = dict(windows=(3, 5), every=2, sketch="exact", loggers=[rec], gradients=True)
    _train(14, kw)
    keys = set().union(*[m for _, m in rec.calls])
    assert {"sed/k_star", "sed/gap_ratio", "sed/W5/k_star", "grad/k_star", "log/lr"} <= keys
    m = logger_metrics([{"kind": "sed", "step": 4, "group": "layer.0", "window": 3, "k_star": 2}], 3)
    assert m == {4: {"sed/layer.0/k_star": 2.0}}


SIGKILL_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    from spectral_edge.monitor import Monitor
    torch.manual_seed(0)
    model = torch.nn.Linear(50, 50)
    mon = Monitor(model, windows=(2,), every=1, sketch="fold", history=sys.argv[1])
    for i in range(1, 100000):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 1e-2)
        mon.step()
        mon.log(loss=float(i))
        if i == 40:
            print("ready", flush=True)
    """
)


def test_history_survives_sigkill(tmp_path):
    path = tmp_path / "h.jsonl"
    script = tmp_path / "run.py"
    script.write_text(SIGKILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    raw = path.read_bytes()
    df = pd.read_json(io.BytesIO(raw), lines=True)  # every line is complete JSON
    assert raw.endswith(b"\n")
    logged = df[df.kind == "log"]["loss"].astype(int).tolist()
    assert logged[:40] == list(range(1, 41))  # nothing before the kill is lost
    sed_steps = df[df.kind == "sed"]["step"].astype(int).tolist()
    assert sed_steps == list(range(2, 2 + len(sed_steps)))  # no gap, no torn row


def test_detectors_see_rows_and_their_events_are_recorded(tmp_path):
    class FirstK2:
        name = "first-k2"

        def __init__(self):
            self.fired = False

        def update(self, rows):
            for r in rows:
                if r["kind"] == "sed" and not self.fired:
                    self.fired = True
                    return [{"step": r["step"], "event": "alarm", "detector": self.name}]
            return []

        def state_dict(self):
            return {"fired": self.fired}

        def load_state_dict(self, s):
            self.fired = s["fired"]

    det = FirstK2()
    _, mon, _ = _train(10, dict(windows=(3,), every=2, sketch="exact", detectors=[det],
                                history=tmp_path / "h.jsonl"))
    mon.close()
    ev = read_history(tmp_path / "h.jsonl", kind="event")
    assert len(ev) == 1 and ev["event"].iloc[0] == "alarm" and ev["step"].iloc[0] == 6
    assert mon.state_dict()["detectors"] == {"first-k2": {"fired": True}}


def test_probes_get_a_read_only_context_not_the_monitor():
    import dataclasses

    from spectral_edge.probes.base import Probe, ProbeContext

    seen = []

    class Recorder(Probe):
        name = "rec"

        def run(self, ctx):
            seen.append(ctx)
            return {"n": float(len(ctx.windows))}

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, windows=(2,), every=1, sketch="exact", probes=[Recorder(every=2)],
                  selection=Selection(group_by="matrix"))
    assert mon.optimizer is None
    mon.step()
    mon.step()  # step 2: the probe runs, no optimizer yet
    mon.attach(opt)
    assert mon.optimizer is opt
    X, y = _data()
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    a, b = seen
    assert isinstance(a, ProbeContext) and (a.step, b.step) == (2, 4)
    assert a.optimizer is None and b.optimizer is opt and b.model is model
    assert b.sketch == mon.config.sketch and b.names == tuple(mon.updates.plan.names)
    assert list(b.windows) == mon.updates.groups and b.windows["all"] is mon.updates.windows["all"]
    with pytest.raises(TypeError):
        b.windows["all"] = None  # a read-only view
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.step = 5
    assert [r["n"] for r in mon.rows if r["kind"] == "probe"] == [float(len(mon.updates.groups))] * 2


def test_state_bytes_is_what_a_checkpoint_gets_and_the_documented_costs_hold():
    # issue 13 item 14: the exact window chosen by sketch="auto" is saved whole with every
    # checkpoint, about 24× the float32 weights at W = 10; fold stays ~14 KB per stream
    model = torch.nn.Sequential(torch.nn.Linear(100, 200), torch.nn.Linear(200, 100))  # 40,300 parameters
    weights = 4 * sum(p.numel() for p in model.parameters())
    for sketch, grads in [("auto", False), ("auto", True), ("fold", False), ("fold", True)]:
        mon = Monitor(model, windows=(10,), sketch=sketch, gradients=grads)
        buf = io.BytesIO()
        torch.save(mon.state_dict(), buf)
        assert 0 <= buf.tell() - mon.state_bytes < 16 << 10  # the file: the state and a few KB
        if sketch == "auto":
            assert mon.config.sketch.family == "exact"
            assert mon.state_bytes / weights == pytest.approx(24 * (2 if grads else 1), rel=0.01)
        else:
            assert mon.state_bytes < 15_000 * (2 if grads else 1)
