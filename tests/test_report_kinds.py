"""The report of every kind of run says exactly what it shows (issue 20).

Four real runs, trained here in seconds: a Hugging Face Trainer language model, a Lightning
run with validation, a plain PyTorch loop with the Monitor, and a grokking run of the
experiment runner. For each, the page is built and read back: the header states the sampling
cadence, parameter count, tensor selection and sketch as the run recorded them; every key
number is recomputed from the files; every caption names only what its figure drew; and a run
with no accuracy gets no grokking words at all. Planted runs then switch each element on and
off (grok step, alarm, warning step, accuracy, a trending plateau) and the captions follow.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from report_pages import check_captions_follow_figures, header_setup, key_numbers, sections, visible
from test_report import planted_run, sed_row

from spectral_edge import Monitor
from spectral_edge.io.history import HistoryWriter
from spectral_edge.io.run import read_run
from spectral_edge.report import build_report

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# ---------------------------------------------------------------------------- the four runs
def _lm_tokens(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 50, (n, 1), generator=g) + torch.arange(16)) % 50


def hf_lm_run(out: Path) -> Path:
    """A two-layer GPT-2 on a counting language, 120 steps, eval_loss every 10 steps."""
    transformers = pytest.importorskip("transformers")
    from spectral_edge.integrations.hf import SpectralEdgeCallback

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            self.x = _lm_tokens(n, seed)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"input_ids": self.x[i], "labels": self.x[i]}

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50,
                                                                 n_positions=16))
    args = transformers.TrainingArguments(output_dir=str(out), max_steps=120, per_device_train_batch_size=8,
                                          learning_rate=3e-3, logging_steps=5, eval_strategy="steps", eval_steps=10,
                                          save_strategy="no", report_to=[], seed=0, use_cpu=True, disable_tqdm=True)
    transformers.Trainer(model=model, args=args, train_dataset=Tokens(256, 0), eval_dataset=Tokens(64, 1),
                         callbacks=[SpectralEdgeCallback(windows=(10,), every=2)]).train()
    return out


def lightning_run(out: Path) -> Path:
    """A small classifier in a real lightning.Trainer that logs train_loss each step and
    val_loss (no accuracy) at each validation."""
    pl = pytest.importorskip("lightning.pytorch")
    from spectral_edge.integrations.lightning import SpectralEdgeCallback

    g = torch.Generator().manual_seed(0)
    X = torch.randn(512, 12, generator=g)
    y = (X[:, :3].sum(1) > 0).long()

    class Net(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))

        def training_step(self, batch, _):
            loss = torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X[:384], y[:384]), batch_size=32, shuffle=False)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X[384:], y[384:]), batch_size=128)
    torch.manual_seed(0)
    trainer = pl.Trainer(max_steps=120, val_check_interval=12, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(out),
                         callbacks=[SpectralEdgeCallback(windows=(10,), every=2, history=out / "spectral_edge_history.jsonl")])
    trainer.fit(Net(), train, val)
    return out


def plain_run(out: Path) -> Path:
    """A regression MLP in a plain loop with the Monitor; train_loss and val_loss logged every 10 steps."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    X, w = torch.randn(512, 16, generator=g), torch.randn(16, 1, generator=g)
    y = torch.sin(X @ w) + 0.1 * torch.randn(512, 1, generator=g)
    mon = Monitor(model, windows=(10,), every=2, history=out / "history.jsonl")
    mon.attach(opt)
    for i in range(1, 201):
        idx = torch.randint(0, 384, (32,), generator=g)
        loss = torch.nn.functional.mse_loss(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % 10 == 0:
            with torch.no_grad():
                mon.log(train_loss=loss.item(), val_loss=torch.nn.functional.mse_loss(model(X[384:]), y[384:]).item())
    mon.close()
    return out


def grok_run(out: Path) -> Path:
    """Modular addition mod 13 with the defect probe: it groks at step 520 (test accuracy ≥ 0.9)."""
    from spectral_edge.experiments import RunConfig, run_experiment

    cfg = RunConfig(op="add", modulus=13, steps=3000, eval_every=20, every=10, windows=(3,), batch_size=32, lr=5e-3,
                    train_frac=0.8, stop_margin=100, model={"d_model": 32, "d_ff": 64, "n_heads": 2},
                    probes={"defect": {"every": 20, "batch_size": 16, "n_samples": 2}})
    run_experiment(cfg, out)
    return out


KINDS = {"hf-lm": hf_lm_run, "lightning": lightning_run, "plain": plain_run, "grokking": grok_run}


@pytest.fixture(scope="module", params=list(KINDS))
def page(request, tmp_path_factory):
    """(kind, run folder, page text) of one real run of each kind."""
    folder = KINDS[request.param](tmp_path_factory.mktemp(request.param) / "run")
    out = build_report(folder)
    return request.param, folder, out.read_text()


# ---------------------------------------------------------------------------- checks against the files
def _history(folder: Path) -> Path:
    found = sorted(folder.glob("*history.jsonl"))
    assert found, list(folder.iterdir())
    return found[0]


def test_header_states_how_the_run_was_sampled(page):
    kind, folder, text = page
    meta = next(r for r in map(json.loads, _history(folder).read_text().splitlines()) if r.get("kind") == "meta")
    head = header_setup(text)
    W = min(meta["config"]["windows"])
    assert head.startswith(f"W = {W} · sampled every {meta['every']} steps · {meta['n_parameters']:,} parameters")
    sk = meta["config"]["sketch"]
    assert f"sketch: {'exact' if sk['family'] == 'exact' else sk['family'] + ' d=' + str(sk['dim'])}" in head
    assert f"tensors: preset {meta['config']['selection']['preset']}" in head
    assert head.endswith("configuration from the history's meta row")


def test_key_numbers_are_the_files_numbers(page):
    kind, folder, text = page
    nums = key_numbers(text)
    data = read_run(folder)
    W = min(data.windows)
    rows = data.rows(W, "all")
    assert nums["window W"] == str(W) and nums["windows (rows)"] == str(len(rows))
    assert nums["steps"] == f"{rows['step'].min()} … {rows['step'].max()}"
    k, n = Counter(rows["k_star"].astype(int)).most_common(1)[0]
    assert nums["modal k*"] == f"{k} ({100 * n / len(rows):.0f}% of windows)"
    i = int(np.nanargmax(rows["gap_ratio"].to_numpy(float)))
    assert nums["peak gap ratio"] == f"{rows['gap_ratio'].iloc[i]:.3f} at step {rows['step'].iloc[i]}"
    assert nums["parameters"] == f"{data.n_parameters:,}"
    val = data.validation()
    j = int(np.argmin(val.values))
    assert nums[f"validation loss ({val.name})"] == (f"{val.values[0]:.4g} → {val.values[-1]:.4g} (lowest "
                                                     f"{val.values[j]:.4g} at step {val.steps[j]})")
    if kind == "grokking":
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["grok_step"] is not None and nums["grok step"] == str(summary["grok_step"])
        assert nums["defect onset (paper rule)"] != "no defect probe"
    else:  # nothing to grok: no grok, warning, lead, accuracy or defect rows
        assert not {"grok step", "warning step", "lead", "final test accuracy", "defect onset (paper rule)"} & set(nums)


def test_captions_follow_what_each_figure_drew(page):
    kind, folder, text = page
    secs = check_captions_follow_figures(text)
    assert {"spectrum", "edge", "eval", "coupling"} <= set(secs)
    assert secs["eval"].drawn, secs["eval"].note  # every kind has a loss curve (Lightning's logged metrics included)
    shown = visible(text).lower()
    if kind == "grokking":
        assert "warning" in secs and "grok step" in secs["eval"].caption
        assert "accuracy 0.9" in secs["eval"].caption and "test acc" in secs["eval"].drawn
        assert "onset level" in secs["warning"].drawn and "onset level" in secs["warning"].caption
    else:
        assert "grok" not in shown and "alarm" not in shown and "defect" not in shown, kind
        assert "warning" not in secs and secs["eval"].title == "Training and validation loss"
        assert "g23" in secs and "grokking" not in secs["g23"].caption


def test_coupling_section_is_the_coupling_analysis(page):
    from spectral_edge.analysis.coupling import run_coupling

    kind, folder, text = page
    c = run_coupling(read_run(folder), n_perm=199, granger_max_lag=0)
    cap = sections(text)["coupling"].caption
    assert f"{c.peak_r:.2f} at ℓ = {c.peak_lag:+d}" in cap and f"over {c.n} aligned points" in cap
    assert f"+{c.peak_lag}" in key_numbers(text)["coupling: peak lag, r"] or f"{c.peak_lag:+d}" in \
        key_numbers(text)["coupling: peak lag, r"]


# ---------------------------------------------------------------------------- each element on and off
def _page(folder: Path) -> str:
    return build_report(folder, out=folder / "r.html").read_text()


@pytest.mark.parametrize("grok_at,alarm_at,evals,summary", [
    (4000, 3200, True, None),  # grok and alarm
    (4000, None, True, None),  # grok, no alarm
    (None, 3200, True, None),  # alarm, never groks
    (None, None, True, None),  # accuracy but neither
    (4000, None, True, {"warning_step": 3500}),  # a warning step that is not an alarm event
    (None, None, False, None),  # no evaluations at all
])
def test_captions_follow_each_element(tmp_path, grok_at, alarm_at, evals, summary):
    text = _page(planted_run(tmp_path / "p", grok_at=grok_at, alarm_at=alarm_at, evals=evals, summary=summary,
                             probes=alarm_at is not None))
    secs = check_captions_follow_figures(text)
    eval_ = secs["eval"]
    if not evals:
        assert not eval_.drawn and eval_.note.startswith("No evaluation data")
    else:
        assert "accuracy 0.9" in eval_.caption and "test acc (solid)" in eval_.caption
    for s in secs.values():
        if s.drawn and s.key not in ("coupling", "modes"):  # the figures on the step axis carry the marks
            assert ("grok step" in s.caption) == (grok_at is not None), (s.key, s.caption)
    if summary:
        assert "red dotted: the warning step 3500 (summary.json)" in secs["eval"].caption.lower()


def test_a_plateau_that_keeps_rising_is_not_called_a_plateau(tmp_path):
    # R rises 1.66 → 1.95 over the last windows: the plateau rule (R ≥ 0.85 × peak) takes the
    # whole ramp, but R trends through it, so the page says "still rising"
    folder = tmp_path / "ramp"
    folder.mkdir()
    steps = range(100, 2100, 100)
    ramp = {s: 1.2 + 0.3 * min(s, 800) / 800 + (0.45 * (s - 800) / 1200 if s > 800 else 0) for s in steps}
    rows = [sed_row(s, r=ramp[s]) for s in steps]
    with HistoryWriter(folder / "history.jsonl", {"config": {"windows": [10], "kstar_rule": "floor"}}, fsync=False) as w:
        w.write(rows)
    text = _page(folder)
    edge = check_captions_follow_figures(text)["edge"]
    assert "still rising" in edge.drawn.split(" | ") and "plateau" not in edge.drawn.split(" | ")
    assert "phases: spectral_edge.analysis.phases.detect_phases" in edge.drawn  # the detector is named on the figure
    assert "is not flat (Spearman ρ = 1.00" in edge.caption
    assert key_numbers(text)["plateau"].startswith("none: R rises through steps")
    # a flat plateau keeps its name
    flat = _page(planted_run(tmp_path / "flat"))
    assert "plateau" in check_captions_follow_figures(flat)["edge"].drawn.split(" | ")


def test_an_exact_parquet_table_says_exact(tmp_path):
    """Defect 1: a report made from an exact ``analyze`` table said 'sketch –'."""
    from typer.testing import CliRunner

    from spectral_edge.cli import app
    from spectral_edge.io.tables import write_table

    ck = tmp_path / "ck"
    ck.mkdir()
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    w = {"a.weight": torch.randn(8, 8, generator=g), "b.weight": torch.randn(4, 8, generator=g)}
    for s in range(0, 130, 10):
        w = {k: v + 0.01 * (1 + s / 50) * torch.randn(v.shape, generator=g) for k, v in w.items()}
        save_file(w, str(ck / f"step_{s}.safetensors"))
    res = CliRunner().invoke(app, ["analyze", str(ck), "-w", "5", "--sketch", "exact", "--out", str(tmp_path / "m.parquet"), "-q"])
    assert res.exit_code == 0, res.output
    text = build_report(tmp_path / "m.parquet", out=tmp_path / "m.html").read_text()
    nums = key_numbers(text)
    assert nums["sketch"] == "exact" and nums["parameters"] == "96" and nums["sampling"] == "every 10 steps"
    assert "The spectra are exact (no random projection)" in text
    assert header_setup(text).endswith("configuration from the table's parquet metadata")
    # the same rows as CSV carry no metadata: the page says so rather than guess
    df = pd.read_parquet(tmp_path / "m.parquet")
    csv = write_table(df.to_dict("records"), tmp_path / "m.csv")
    text = build_report(csv, out=tmp_path / "c.html").read_text()
    assert key_numbers(text)["sketch"] == "not recorded" and "records no configuration" in header_setup(text)


def test_comparison_captions_name_only_what_is_drawn(tmp_path):
    from spectral_edge.report import build_comparison

    a = planted_run(tmp_path / "a", grok_at=4000, alarm_at=3200)
    b = planted_run(tmp_path / "b", grok_at=None, alarm_at=None, probes=False)
    secs = sections(build_comparison([a, b], labels="wd1,wd0", out=tmp_path / "c.html").read_text())
    for key in ("edge", "eval", "warning"):
        assert "grok step of wd1" in secs[key].caption and "wd0" not in secs[key].caption, secs[key].caption
    assert "the alarms of wd1" in secs["warning"].caption
    # runs without accuracy or grok: no grok words, no accuracy line
    c, d = (planted_run(tmp_path / n, grok_at=None, alarm_at=None, evals=False, probes=False) for n in "cd")
    secs = sections(build_comparison([c, d], out=tmp_path / "n.html").read_text())
    assert all("grok" not in s.caption and "alarm" not in s.caption for s in secs.values())
