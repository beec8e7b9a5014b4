"""Cadence schedules in the monitor (issue 19, part 4).

``every`` is an int, a schedule of ``(until_step, every)`` pairs, or a predicate ``step -> bool``.
Done when: the rows of a monitor on a schedule equal, exactly, those of a monitor sampling at
every step it is called that is called only on the scheduled steps by hand; the schedule works
in the HF and Lightning callbacks, resumes, records its spacing, and a bad one is refused.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from spectral_edge.errors import ConfigError, StateError
from spectral_edge.monitor import Monitor
from spectral_edge.stream.cadence import Cadence

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SCHEDULE = [(20, 2), (None, 5)]  # every 2 steps before step 20, then every 5 from step 20 on
SCHEDULED = list(range(0, 20, 2)) + list(range(20, 61, 5))  # 0, 2, …, 18, 20, 25, …, 60


def _same(a: dict, b: dict) -> bool:
    """Exact equality of two rows, NaN equal to NaN."""
    return a.keys() == b.keys() and all(x == y or (x != x and y != y) for x, y in ((a[k], b[k]) for k in a))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))


def _loop(model, opt, steps, start=0, on_step=lambda s: None, before=lambda s: None):
    """Seeded full-batch training: the batch of step s depends only on s (replayable)."""
    for s in range(start + 1, steps + 1):
        g = torch.Generator().manual_seed(s)
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        before(s)
        opt.step()
        on_step(s)


# ---------------------------------------------------------------------------- the schedule itself
def test_schedule_sample_steps_at_the_boundaries():
    c = Cadence([(2000, 10), (None, 100)])
    assert [s for s in range(0, 2301) if c(s)] == list(range(0, 2000, 10)) + [2000, 2100, 2200, 2300]
    # until is exclusive: step `until` belongs to the next entry and is its first sample
    c = Cadence([(25, 10), (None, 100)])
    assert [s for s in range(0, 400) if c(s)] == [0, 10, 20, 25, 125, 225, 325]
    c = Cadence([(3, 1), (10, 3), (None, 4)])
    assert [s for s in range(0, 20) if c(s)] == [0, 1, 2, 3, 6, 9, 10, 14, 18]
    # a last entry with a step: nothing is sampled from that step on
    assert [s for s in range(0, 100) if Cadence([(30, 10)])(s)] == [0, 10, 20]
    # an int is the one-entry schedule [(None, every)]
    assert [s for s in range(0, 30) if Cadence(7)(s)] == [0, 7, 14, 21, 28]
    assert [s for s in range(100) if Cadence([(None, 7)])(s)] == [s for s in range(100) if Cadence(7)(s)]
    # a predicate
    assert [s for s in range(0, 20) if Cadence(lambda s: s in (0, 1, 3, 7, 15))(s)] == [0, 1, 3, 7, 15]


def test_what_the_history_records_of_a_cadence():
    assert Cadence(100).record() == 100
    assert Cadence([(2000, 10), (None, 100)]).record() == [[2000, 10], [None, 100]]
    assert Cadence([[2000, 10], [None, 100]]).record() == [[2000, 10], [None, 100]]  # JSON / TOML lists

    def dense_early(step: int) -> bool:
        return step < 100 or step % 50 == 0

    assert Cadence(dense_early).record() == "callable dense_early"
    json.dumps(Cadence([(2000, 10), (None, 100)]).record())


BAD = [
    (0, "every must be a whole number ≥ 1"),
    (-3, "every must be a whole number ≥ 1"),
    (2.5, "every must be a whole number ≥ 1"),
    (True, "every must be a whole number ≥ 1"),
    ("often", "every must be"),
    ([], "the schedule is empty"),
    ([(10, 0)], "entry 1"),
    ([(10, 2.5)], "entry 1"),
    ([(10,)], "entry 1"),
    ([10, 20], "entry 1"),
    ([("a", 2)], "entry 1"),
    ([(0, 5), (None, 10)], "entry 1"),
    ([(20, 5), (10, 2)], "increase"),
    ([(20, 5), (20, 2)], "increase"),
    ([(None, 5), (10, 2)], "only the last"),
    ([(10, 2), (None, 5), (None, 7)], "only the last"),
]


@pytest.mark.parametrize("every, problem", BAD, ids=[repr(e) for e, _ in BAD])
def test_a_bad_schedule_is_a_one_line_config_error(every, problem):
    with pytest.raises(ConfigError) as info:
        Monitor(torch.nn.Linear(2, 2), every=every)
    msg = str(info.value)
    assert problem in msg and "\n" not in msg and msg.startswith("every")


# ---------------------------------------------------------------------------- the monitor
@pytest.mark.parametrize("every", [SCHEDULE, lambda s: s in set(SCHEDULED)], ids=["schedule", "predicate"])
def test_rows_equal_those_of_a_monitor_called_on_the_same_steps_by_hand(every):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    kw = dict(windows=(3, 5), sketch="exact", gradients=True)
    scheduled = Monitor(model, every=every, **kw)
    handle = scheduled.attach(opt)  # the hooks call pre_step and step at every optimizer step
    by_hand = Monitor(model, every=1, **kw)
    _loop(model, opt, 60, before=lambda s: by_hand.pre_step(s) if s in SCHEDULED else None,
          on_step=lambda s: by_hand.step(s) if s in SCHEDULED else None)
    handle.remove()
    kinds = ("sed", "grad")
    a = [r for r in scheduled.rows if r["kind"] in kinds]
    b = [r for r in by_hand.rows if r["kind"] in kinds]
    assert len(a) == len(b) > 0 and all(_same(x, y) for x, y in zip(a, b))
    # the sed windows end at the scheduled steps, and the rows record the spacing
    w3 = [r for r in a if r["kind"] == "sed" and r["window"] == 3]
    assert [r["step"] for r in w3] == SCHEDULED[3:]
    gaps = {r["step"]: r["sample_spacing"] for r in w3}
    assert gaps[6] == 2 and gaps[20] == 2 and gaps[25] == 5 and gaps[60] == 5
    assert {r["step"]: r["step_first"] for r in w3}[25] == 16  # W = 3 updates 16 → 18 → 20 → 25: mixed gaps


def test_the_history_records_the_schedule_and_the_run_model_reads_it(tmp_path):
    from spectral_edge.io.run import read_run

    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    mon = Monitor(model, every=SCHEDULE, windows=(3,), sketch="exact", history=tmp_path / "history.jsonl")
    mon.attach(opt)
    _loop(model, opt, 60)
    mon.close()
    meta = json.loads((tmp_path / "history.jsonl").read_text().splitlines()[0])
    assert meta["kind"] == "meta" and meta["every"] == [[20, 2], [None, 5]]
    run = read_run(tmp_path)
    assert run.setup.every == [[20, 2], [None, 5]]
    rows = run.rows(3)
    assert list(rows["sample_spacing"]) == [2] * 8 + [5] * 8  # windows ending at 6, …, 20, then 25, …, 60


def test_a_resumed_monitor_continues_the_same_schedule():
    kw = dict(every=SCHEDULE, windows=(3,), sketch="exact", gradients=True)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    full = Monitor(model, **kw)
    full.attach(opt)
    saved = {}

    def keep(s):
        if s == 17:  # between two samples of the first entry
            saved.update(monitor=copy.deepcopy(full.state_dict()), model=copy.deepcopy(model.state_dict()),
                         opt=copy.deepcopy(opt.state_dict()))

    _loop(model, opt, 60, on_step=keep)
    model2 = _model()
    model2.load_state_dict(saved["model"])
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    opt2.load_state_dict(saved["opt"])
    resumed = Monitor(model2, start_step=17, sample_initial=False, **kw)
    resumed.load_state_dict(saved["monitor"])
    resumed.attach(opt2)
    _loop(model2, opt2, 60, start=17)
    after = [r for r in full.rows if r["kind"] in ("sed", "grad") and r["step"] > 17]
    again = [r for r in resumed.rows if r["kind"] in ("sed", "grad")]
    assert len(after) == len(again) > 0 and all(_same(x, y) for x, y in zip(after, again))
    # another schedule (or an int) does not resume it
    with pytest.raises(StateError, match="every"):
        Monitor(_model(), **{**kw, "every": [(20, 2), (None, 10)]}).load_state_dict(saved["monitor"])
    with pytest.raises(StateError, match="every"):
        Monitor(_model(), **{**kw, "every": 2}).load_state_dict(saved["monitor"])


# ---------------------------------------------------------------------------- the callbacks
def test_the_hf_callback_samples_on_the_schedule(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from test_integrations_hf import _trainer

    from spectral_edge.integrations.hf import SpectralEdgeCallback

    cb = SpectralEdgeCallback(windows=(2,), every=[(4, 1), (None, 2)], sketch="exact", gradients=True, history=None)
    _trainer(tmp_path / "run", [cb], max_steps=8).train()
    # samples at 0, 1, 2, 3 (every step before 4), then 4, 6, 8; gradients at 1, 2, 3, 4, 6, 8
    assert [r["step"] for r in cb.monitor.rows if r["kind"] == "sed"] == [2, 3, 4, 6, 8]
    assert [r["step"] for r in cb.monitor.rows if r["kind"] == "grad"] == [2, 3, 4, 6, 8]
    assert [r["sample_spacing"] for r in cb.monitor.rows if r["kind"] == "sed"] == [1, 1, 1, 2, 2]


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # lightning's own deprecation, not ours
def test_the_lightning_callback_samples_on_the_schedule(tmp_path):
    pytest.importorskip("lightning.pytorch")
    from test_integrations_lightning import _data, _Net, _trainer

    from spectral_edge.integrations.lightning import SpectralEdgeCallback

    cb = SpectralEdgeCallback(windows=(2,), every=[(3, 1), (None, 2)], sketch="exact", gradients=True, history=None)
    _trainer(tmp_path, [cb]).fit(_Net(), _data())
    # samples at 0, 1, 2, then 3, 5; gradients at 1, 2, 3, 5; the learning rate at the sampled steps
    assert [r["step"] for r in cb.monitor.rows if r["kind"] == "sed"] == [2, 3, 5]
    assert [r["step"] for r in cb.monitor.rows if r["kind"] == "grad"] == [2, 3, 5]
    assert [r["step"] for r in cb.monitor.rows if r["kind"] == "log" and "lr" in r] == [1, 2, 3, 5]
