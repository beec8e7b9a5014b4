"""transformers Trainer callback, through a tiny real Trainer (GPT-2 built from a config).

Checks: rows at the optimizer steps (not micro-batches), both streams, lr/loss logs, the
state file in each checkpoint (weights_only), bit-identical resume, unchanged training.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'spectral-edge[hf]')")
pytest.importorskip("accelerate", reason="the transformers Trainer needs accelerate")

from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

from spectral_edge.integrations.hf import HISTORY_NAME, MONITOR_STATE_NAME, SpectralEdgeCallback  # noqa: E402
from spectral_edge.io.history import read_history  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


class _Tokens(torch.utils.data.Dataset):
    """12 fixed random sequences of 8 tokens; labels = inputs (causal LM)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 50, (12, 8), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.x[i]}


def _trainer(out: Path, callbacks: list, max_steps: int = 6, accumulation: int = 1) -> Trainer:
    torch.manual_seed(0)
    # dropout stays on (0.1): the monitor must not consume the RNG that dropout draws from
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16))
    args = TrainingArguments(
        output_dir=str(out), max_steps=max_steps, save_steps=3, logging_steps=1, report_to=[], use_cpu=True,
        per_device_train_batch_size=2, gradient_accumulation_steps=accumulation, learning_rate=1e-2, seed=0,
        disable_tqdm=True, dataloader_num_workers=0,
    )
    return Trainer(model=model, args=args, train_dataset=_Tokens(), callbacks=callbacks)


def _losses(trainer: Trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _same(a: dict, b: dict) -> bool:
    """Exact equality of two rows, NaN equal to NaN (g23 of a 2-wide window is NaN)."""
    return a.keys() == b.keys() and all(x == y or (x != x and y != y) for x, y in ((a[k], b[k]) for k in a))


def _by_key(rows: list[dict], kind: str) -> dict[tuple[int, int], dict]:
    return {(r["step"], r["window"]): r for r in rows if r["kind"] == kind}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted 6-step run with the callback, and one without it."""
    root = tmp_path_factory.mktemp("hf")
    cb = SpectralEdgeCallback(windows=(2, 3), every=1, sketch="exact", gradients=True)  # trainer_log: on by default
    trainer = _trainer(root / "run", [cb])
    trainer.train()
    history_copy = root / "full_history.jsonl"
    shutil.copy(root / "run" / HISTORY_NAME, history_copy)
    plain = _trainer(root / "plain", [])
    plain.train()
    return {"root": root, "cb": cb, "trainer": trainer, "plain": plain, "history": history_copy}


def test_rows_at_optimizer_steps_for_both_streams_and_logs(full_run):
    mon = full_run["cb"].monitor
    sed = sorted(_by_key(mon.rows, "sed"))
    grad = sorted(_by_key(mon.rows, "grad"))
    # update stream: samples at 0..6, W=2 windows end at 2.., W=3 at 3..
    assert sed == [(2, 2), (3, 2), (3, 3), (4, 2), (4, 3), (5, 2), (5, 3), (6, 2), (6, 3)]
    # gradient stream: samples at steps 1..6 (gradients of the step being taken)
    assert grad == [(2, 2), (3, 2), (3, 3), (4, 2), (4, 3), (5, 2), (5, 3), (6, 2), (6, 3)]
    assert mon.global_step == 6
    logs = [r for r in mon.rows if r["kind"] == "log"]
    assert [r["step"] for r in logs] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in logs] == _losses(full_run["trainer"])
    assert logs[0]["lr"] == pytest.approx(1e-2)
    assert all("grad_norm" in r for r in logs)
    # the history file holds the same rows
    h = read_history(full_run["history"])
    assert sorted(zip(h[h.kind == "sed"]["step"], h[h.kind == "sed"]["window"])) == sed


def test_training_is_unchanged_by_the_callback(full_run):
    assert _losses(full_run["trainer"]) == _losses(full_run["plain"])  # exact equality, dropout on
    for a, b in zip(full_run["trainer"].model.parameters(), full_run["plain"].model.parameters()):
        assert torch.equal(a, b)


def test_sed_metrics_are_sent_to_the_trainer_log_at_their_step(full_run):
    """By default each sampled step gets one record of its own in ``state.log_history``, at
    that step, beside the Trainer's own record (test_dashboards.py reads TensorBoard and W&B)."""
    hist = full_run["trainer"].state.log_history
    ours = [h for h in hist if any(k.startswith(("sed/", "grad/")) for k in h)]
    assert [h["step"] for h in ours] == [2, 3, 4, 5, 6]  # no window is full after one step
    by_step = {h["step"]: h for h in ours}
    row = _by_key(full_run["cb"].monitor.rows, "sed")[(4, 2)]
    assert by_step[4]["sed/k_star"] == row["k_star"]
    assert by_step[4]["sed/gap_ratio"] == row["gap_ratio"]
    assert "sed/W3/k_star" in by_step[4] and "grad/k_star" in by_step[4]
    assert all(not k.startswith("log/") and k not in ("loss", "epoch") for h in ours for k in h)
    assert [h["step"] for h in hist if "loss" in h] == [1, 2, 3, 4, 5, 6]  # the Trainer's own, unchanged


def test_state_is_saved_in_each_checkpoint_and_loads_weights_only(full_run):
    run = full_run["root"] / "run"
    for step in (3, 6):
        path = run / f"checkpoint-{step}" / MONITOR_STATE_NAME
        assert path.is_file()
        state = torch.load(path, weights_only=True)
        assert state["global_step"] == step and state["every"] == 1


def _interrupted_copy(full_run, name: str) -> Path:
    """An output folder holding what a run that died after step 3 (or later) leaves behind:
    checkpoint-3 and a history file with rows past step 3."""
    out = full_run["root"] / name
    shutil.copytree(full_run["root"] / "run" / "checkpoint-3", out / "checkpoint-3")
    shutil.copy(full_run["history"], out / HISTORY_NAME)
    return out


def test_resume_from_checkpoint_gives_bit_identical_rows(full_run):
    """HF restores weights, optimizer, scheduler, data position and RNG states; with the
    monitor state restored too, the resumed rows equal the uninterrupted ones exactly."""
    out = _interrupted_copy(full_run, "resumed")
    cb = SpectralEdgeCallback(windows=(2, 3), every=1, sketch="exact", gradients=True)
    resumed = _trainer(out, [cb])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "no saved monitor state" would fail here
        resumed.train(resume_from_checkpoint=str(out / "checkpoint-3"))
    assert _losses(resumed)[-3:] == _losses(full_run["trainer"])[-3:]
    for kind in ("sed", "grad"):
        full = _by_key(full_run["cb"].monitor.rows, kind)
        res = _by_key(cb.monitor.rows, kind)
        assert sorted(res) == [k for k in sorted(full) if k[0] > 3]  # (4, 2) needs the restored window
        for key, row in res.items():
            assert _same(row, full[key]), key
    # the history was truncated at step 3 and continued: equal to the uninterrupted file
    a, b = read_history(full_run["history"]), read_history(out / HISTORY_NAME)
    a, b = a[a.kind != "meta"].reset_index(drop=True), b[b.kind != "meta"].reset_index(drop=True)
    assert a.equals(b)


def test_resume_true_finds_the_checkpoint_in_output_dir(full_run):
    """train(resume_from_checkpoint=True): the folder is <output_dir>/checkpoint-<global_step>."""
    out = _interrupted_copy(full_run, "resume_true")
    cb = SpectralEdgeCallback(windows=(2, 3), every=1, sketch="exact", gradients=True, history=None)
    _trainer(out, [cb]).train(resume_from_checkpoint=True)
    full = _by_key(full_run["cb"].monitor.rows, "sed")
    res = _by_key(cb.monitor.rows, "sed")
    assert sorted(res) == [k for k in sorted(full) if k[0] > 3]
    assert all(_same(row, full[key]) for key, row in res.items())


def test_missing_state_warns_and_starts_fresh(full_run):
    out = _interrupted_copy(full_run, "missing")
    (out / "checkpoint-3" / MONITOR_STATE_NAME).unlink()
    cb = SpectralEdgeCallback(windows=(2, 3), every=1, sketch="exact", history=None)
    with pytest.warns(RuntimeWarning, match="without a saved monitor state"):
        _trainer(out, [cb]).train(resume_from_checkpoint=str(out / "checkpoint-3"))
    # windows restart from the parameters at step 3: W=2 ends at 5 first, W=3 at 6
    assert sorted(_by_key(cb.monitor.rows, "sed")) == [(5, 2), (6, 2), (6, 3)]


def test_gradient_accumulation_counts_optimizer_steps_and_sees_clipped_gradients(tmp_path):
    """With 2 micro-batches per step the monitor acts per optimizer step, and the gradient
    sample at step s is the gradient the optimizer applies at s (after clipping)."""
    seen: dict[int, torch.Tensor] = {}
    micro = []

    class Spy(transformers.TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            seen[state.global_step + 1] = torch.cat([p.grad.reshape(-1).double() for p in model.parameters()])

        def on_substep_end(self, *a, **kw):
            micro.append(1)

    cb = SpectralEdgeCallback(windows=(2,), every=2, sketch="exact", gradients=True, history=None)
    _trainer(tmp_path / "ga", [cb, Spy()], max_steps=4, accumulation=2).train()
    assert len(micro) == 4 and sorted(seen) == [1, 2, 3, 4]  # 8 micro-batches, 4 optimizer steps
    mon = cb.monitor
    assert mon.global_step == 4
    assert [r["step"] for r in mon.rows if r["kind"] == "sed"] == [4]  # samples at 0, 2, 4
    rows = [r for r in mon.rows if r["kind"] == "grad"]
    assert [r["step"] for r in rows] == [4]  # gradient samples at 2, 4
    sigma = torch.linalg.svdvals(torch.stack([seen[2], seen[4]]))  # (2, n) → 2 singular values
    assert rows[0]["sigma_1"] == pytest.approx(float(sigma[0]), rel=1e-9)
    assert rows[0]["sigma_2"] == pytest.approx(float(sigma[1]), rel=1e-9)


def test_given_monitor_and_arguments_conflict():
    from spectral_edge.monitor import Monitor

    with pytest.raises(TypeError, match="either a monitor"):
        SpectralEdgeCallback(Monitor(torch.nn.Linear(2, 2)), every=3)


def test_only_world_process_zero_writes(tmp_path):
    """On other processes the monitor gets no history file and no loggers, and on_log records nothing."""
    from transformers import TrainerControl, TrainerState

    class Rec:
        calls: list = []

        def log_metrics(self, metrics, step):
            self.calls.append(step)

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    state = TrainerState()
    state.is_world_process_zero = False
    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", loggers=[Rec()])
    model = torch.nn.Linear(3, 2)
    cb.on_train_begin(args, state, TrainerControl(), model=model)
    assert cb.monitor.history_path is None and cb.monitor.loggers == []
    cb.on_log(args, state, TrainerControl(), logs={"loss": 1.0, "learning_rate": 0.1})
    assert [r for r in cb.monitor.rows if r["kind"] == "log"] == []
    state.is_world_process_zero = True
    cb.on_train_begin(args, state, TrainerControl(), model=model)
    assert cb.monitor.history_path == tmp_path / HISTORY_NAME and len(cb.monitor.loggers) == 1
    cb.on_log(args, state, TrainerControl(), logs={"loss": 1.0, "learning_rate": 0.1, "epoch": 0.5})
    assert [r for r in cb.monitor.rows if r["kind"] == "log"] == [{"kind": "log", "step": 0, "loss": 1.0, "lr": 0.1}]
    assert Rec.calls == [0]
    cb.on_train_end(args, state, TrainerControl())


def test_log_lr_false_keeps_the_learning_rate_out_of_the_log_rows(tmp_path):
    cb = SpectralEdgeCallback(windows=(2,), every=1, sketch="exact", history=None, log_lr=False)
    _trainer(tmp_path / "run", [cb], max_steps=3).train()
    logs = [r for r in cb.monitor.rows if r["kind"] == "log"]
    assert len(logs) == 3 and all("lr" not in r and "loss" in r for r in logs)


def test_the_run_model_reads_a_trainer_output_folder(full_run):
    from spectral_edge.io.run import load_run

    data = load_run(full_run["root"] / "run")  # spectral_edge_history.jsonl in output_dir
    assert data.files["history"].name == HISTORY_NAME
    assert data.windows == (2, 3) and data.resolve_window(None) == 2
    assert data.metric("loss").values.tolist() == _losses(full_run["trainer"])
