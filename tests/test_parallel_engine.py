"""The distributed engine (issue 18): a checkpoint's sketch computed by a worker process (local
pool or a Dask LocalCluster with 2 worker processes, both started here) gives rows and sketches
bit-identical to the serial path; a lost worker's checkpoint is retried; a bad checkpoint is
reported as in a serial run, with the rows before it kept."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from remote_servers import make_states, write_run

from spectral_edge.engine import AnalysisConfig, analyze_checkpoints
from spectral_edge.errors import CheckpointError, ConfigError, NonFiniteError
from spectral_edge.parallel import PoolExecutor, SerialExecutor, WorkerLost, make_executor

STEPS = [0, 100, 200, 300, 400, 500, 600, 700]
CONFIG = AnalysisConfig(windows=(3,))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # one tensor of 600k elements: the fold kernel splits it over torch's threads, so the sum's
    # order (and its last bits) depends on the thread count that each job pins
    return write_run(tmp_path_factory.mktemp("par") / "run", make_states(len(STEPS)), STEPS, kinds={3: "bin"})


def analyse(source, **kw):
    seen: dict[int, dict[str, np.ndarray]] = {}
    res = analyze_checkpoints(source, CONFIG, on_sketch=lambda r: seen.__setitem__(r["step"], r["sketches"]), **kw)
    return res, seen


def assert_bit_identical(a, b):
    (ra, sa), (rb, sb) = a, b
    assert ra.rows
    pd.testing.assert_frame_equal(ra.to_frame(), rb.to_frame(), check_exact=True)
    assert sorted(sa) == sorted(sb) == STEPS
    for step in sa:
        for g in sa[step]:
            assert np.array_equal(sa[step][g].view(np.uint64), sb[step][g].view(np.uint64)), (step, g)


@pytest.fixture(scope="module", autouse=True)
def three_threads():
    """The driver runs with 3 torch threads, which no worker process starts with (they get one per
    core, or 1 on Dask): without each job pinning the driver's count, the bits would differ."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def serial(run):
    return analyse(run)


def test_the_thread_count_changes_the_bits_so_jobs_must_pin_it(run):
    import dataclasses

    from spectral_edge.engine import SketchPlan, list_checkpoints, sketch_checkpoint
    from spectral_edge.io.remote import open_source

    ref = list_checkpoints(run)[0]
    with open_source(ref) as rd:
        info = rd.tensor_info()
    plan = SketchPlan(CONFIG, {n: (i.shape, i.dtype) for n, i in info.items()}, {}, {}, None, ref.path.name, 3)
    try:  # a job outside the driver keeps the thread count it was given: put it back after
        a = sketch_checkpoint((plan, ref))["sketches"]["all"]
        b = sketch_checkpoint((dataclasses.replace(plan, threads=1), ref))["sketches"]["all"]
    finally:
        torch.set_num_threads(3)
    assert not np.array_equal(a.view(np.uint64), b.view(np.uint64))
    assert np.allclose(a, b, rtol=1e-9)


@pytest.fixture(scope="module")
def pool():
    with PoolExecutor(2) as ex:
        yield ex


def test_pool_of_two_workers_is_bit_identical_to_serial(run, serial, pool):
    assert_bit_identical(serial, analyse(run, executor=pool))


def crash_once(marker: str, fn, job):
    """Kill this worker process the first time it is called for step 300 (a preempted worker)."""
    if job[1].step == 300 and not os.path.exists(marker):
        Path(marker).write_text("crashed")
        os._exit(13)
    return fn(job)


class CrashingPool(PoolExecutor):
    def __init__(self, marker: Path, workers: int = 2, retries: int = 1):
        super().__init__(workers, retries)
        self.marker = str(marker)

    def imap(self, fn, jobs):
        import functools

        return super().imap(functools.partial(crash_once, self.marker, fn), jobs)


def test_a_lost_worker_is_replaced_and_its_checkpoint_retried(run, serial, tmp_path):
    with CrashingPool(tmp_path / "crashed") as ex:
        got = analyse(run, executor=ex)
    assert (tmp_path / "crashed").exists()  # a worker really died
    assert_bit_identical(serial, got)


def test_a_worker_lost_more_often_than_retried_is_one_error_naming_a_checkpoint(run, tmp_path):
    with CrashingPool(tmp_path / "crashed", retries=0) as ex:
        with pytest.raises(CheckpointError, match="the worker sketching it was lost 1 time") as e:
            analyze_checkpoints(run, CONFIG, executor=ex)
    assert f"{run}/step_" in str(e.value)  # one of the checkpoints in flight when the worker died
    assert e.value.partial.checkpoints == [] or e.value.partial.checkpoints[0][0] == 0


def test_a_bad_checkpoint_on_a_worker_is_reported_as_in_a_serial_run(tmp_path, pool):
    states = make_states(len(STEPS))
    states[5]["layers.0.bias"][3] = float("nan")
    run = write_run(tmp_path / "nan", states, STEPS)
    errors = []
    for ex in (SerialExecutor(), pool):
        with pytest.raises(NonFiniteError) as e:
            analyze_checkpoints(run, CONFIG, executor=ex)
        errors.append(e.value)
    assert str(errors[0]) == str(errors[1]) and "step_500.safetensors" in str(errors[1])
    assert errors[0].partial.rows == errors[1].partial.rows and len(errors[1].partial.rows) == 2


def test_cli_workers_flag_and_partial_table(tmp_path):
    from typer.testing import CliRunner

    from spectral_edge.cli import app

    states = make_states(len(STEPS), big=2000)
    states[6]["head.weight"][0, 0] = float("inf")
    run = write_run(tmp_path / "run", states, STEPS)
    out = tmp_path / "m.parquet"
    res = CliRunner().invoke(app, ["analyze", str(run), "-w", "3", "--workers", "2", "--out", str(out), "-q"])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "step_600.safetensors" in lines[0] and "m.partial.parquet" in lines[0], res.stderr
    assert not out.exists() and len(pd.read_parquet(tmp_path / "m.partial.parquet")) == 3


def test_executor_choice_and_refusals():
    assert type(make_executor(1)) is SerialExecutor
    with pytest.raises(ConfigError, match="--workers"):
        make_executor(0)
    with pytest.raises(ConfigError, match="exclude each other"):
        make_executor(2, "tcp://127.0.0.1:1")
    from spectral_edge.engine import default_sketch

    with pytest.raises(ConfigError, match="exact"):
        analyze_checkpoints("unused", AnalysisConfig(windows=(3,), sketch=default_sketch((3,), "exact")), refs=[],
                            workers=2)
    assert issubclass(WorkerLost, Exception)


@pytest.mark.slow
def test_dask_local_cluster_is_bit_identical_to_serial(run, serial):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  scheduler_port=0) as cluster:
        got = analyse(run, scheduler=cluster.scheduler_address)
    assert_bit_identical(serial, got)


def test_resume_continues_from_the_partial_table_after_the_bad_checkpoint_is_replaced(tmp_path):
    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from spectral_edge.cli import app

    good = make_states(len(STEPS), big=2000)
    run = write_run(tmp_path / "run", good, STEPS)
    whole = tmp_path / "whole.parquet"
    assert CliRunner().invoke(app, ["analyze", str(run), "-w", "3", "--out", str(whole), "-q"]).exit_code == 0
    bad = {k: v.clone() for k, v in good[6].items()}
    bad["layers.0.bias"][0] = float("nan")
    save_file(bad, str(run / "step_600.safetensors"))
    out = tmp_path / "m.parquet"
    args = ["analyze", str(run), "-w", "3", "--workers", "2", "--out", str(out), "-q"]
    assert CliRunner().invoke(app, args).exit_code == 2
    assert len(pd.read_parquet(tmp_path / "m.partial.parquet")) == 3  # rows at steps 300, 400, 500
    save_file(good[6], str(run / "step_600.safetensors"))  # the user puts the right file back
    res = CliRunner().invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    pd.testing.assert_frame_equal(pd.read_parquet(whole), pd.read_parquet(out), check_exact=True)
