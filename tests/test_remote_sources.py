"""Checkpoints read where they live (issue 18), against real parts the tests start: a moto S3
server on 127.0.0.1 (uploads through boto3) and a Hugging Face cache laid out as the Hub
client writes it, read with HF_HUB_OFFLINE=1. Every result is compared, bit for bit, with
the same checkpoints analysed from a local folder: the rows (every σ, k*, ratio) and each
checkpoint's sketch (compared as raw float64 bits)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from remote_servers import hub_cache, make_states, s3_env, s3_server, upload, write_run

from spectral_edge.engine import AnalysisConfig, analyze_checkpoints
from spectral_edge.errors import CheckpointError, ConfigError

pytest.importorskip("moto")
pytest.importorskip("s3fs")

STEPS = [0, 100, 200, 300, 400, 500, 600, 700]
CONFIG = AnalysisConfig(windows=(3,))


def run_with_sketches(source, **kw):
    seen: dict[int, dict[str, np.ndarray]] = {}
    result = analyze_checkpoints(source, CONFIG, on_sketch=lambda r: seen.__setitem__(r["step"], r["sketches"]), **kw)
    return result, seen


def assert_bit_identical(a, b):
    """Same rows (NaN equal to NaN) and the same sketch bits for every checkpoint."""
    (ra, sa), (rb, sb) = a, b
    assert len(ra.rows) > 0
    pd.testing.assert_frame_equal(ra.to_frame(), rb.to_frame(), check_exact=True)
    assert sorted(sa) == sorted(sb)
    for step in sa:
        for g in sa[step]:
            assert np.array_equal(sa[step][g].view(np.uint64), sb[step][g].view(np.uint64)), (step, g)


@pytest.fixture(scope="module")
def s3():
    endpoint = s3_server()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in s3_env(endpoint).items():
            mp.setenv(k, v)
        yield endpoint


@pytest.fixture(scope="module")
def states():
    return make_states(len(STEPS))


def test_s3_folder_is_bit_identical_to_the_local_folder(s3, states, tmp_path):
    # safetensors files, an HF checkpoint-<step>/ folder and a torch pickle, mixed as a local folder may
    local = write_run(tmp_path / "run", states, STEPS, kinds={2: "hf", 5: "bin", 6: "hfbin"})
    upload(s3, "bucket-mixed", local, "runs/my-run")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    os.environ["SPECTRAL_EDGE_SCRATCH"] = str(scratch)
    try:
        remote = run_with_sketches("s3://bucket-mixed/runs/my-run/")
    finally:
        del os.environ["SPECTRAL_EDGE_SCRATCH"]
    assert_bit_identical(run_with_sketches(local), remote)
    assert [s for s, _ in remote[0].checkpoints] == STEPS
    assert remote[0].checkpoints[0][1] == "s3://bucket-mixed/runs/my-run/step_0.safetensors"
    assert list(scratch.iterdir()) == []  # the fetched pickles were deleted after sketching


def test_safetensors_are_read_by_range_one_tensor_at_a_time(s3, states, tmp_path):
    from spectral_edge.io.remote import discover_url, open_source

    local = write_run(tmp_path / "run", states[:2], STEPS[:2])
    upload(s3, "bucket-range", local, "r")
    ref = discover_url("s3://bucket-range/r")[0]
    size = (local / "step_0.safetensors").stat().st_size
    with open_source(ref) as rd:
        header = rd.bytes_read
        assert header < 1000  # only the header so far
        info = rd.tensor_info()
        (name, t), = list(rd.iter_tensors(["layers.0.bias"]))
        assert rd.bytes_read == header + 77 * 4  # that tensor's bytes and nothing else
        assert t.dtype == info["layers.0.bias"].dtype and t.shape == (77,)
        list(rd.iter_tensors(list(info)))
        assert rd.bytes_read == header + 77 * 4 + (size - header)


def test_cli_on_s3_writes_the_same_table_as_on_the_local_folder(s3, states, tmp_path):
    from typer.testing import CliRunner

    from spectral_edge.cli import app

    local = write_run(tmp_path / "run", states, STEPS)
    upload(s3, "bucket-cli", local, "runs/a")
    r1 = CliRunner().invoke(app, ["analyze", str(local), "-w", "3", "--out", str(tmp_path / "l.parquet"), "-q"])
    r2 = CliRunner().invoke(app, ["analyze", "s3://bucket-cli/runs/a/", "-w", "3", "--out", str(tmp_path / "s.parquet"),
                                  "--json"])
    assert r1.exit_code == 0 and r2.exit_code == 0, (r1.output, r2.output)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "l.parquet"), pd.read_parquet(tmp_path / "s.parquet"),
                                  check_exact=True)
    assert '"bytes_read"' in r2.stdout


# ----------------------------------------------------------------------------- the Hub, offline

REPO = "org/tiny-suite"
REVS = [f"step{s}" for s in STEPS]


@pytest.fixture()
def hub(tmp_path, states, monkeypatch):
    root = hub_cache(tmp_path / "hf" / "hub", REPO, states, REVS, binary={"step0", "step100"},
                     extra_refs={"main": "0" * 40})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return root


def test_hub_revisions_from_the_local_cache_are_bit_identical_to_the_local_folder(hub, states, tmp_path):
    local = write_run(tmp_path / "run", states, STEPS)
    want = run_with_sketches(local)
    assert_bit_identical(want, run_with_sketches(f"hf://{REPO}", revisions=["step{0..700..100}"]))
    assert_bit_identical(want, run_with_sketches(f"hf://{REPO}", revisions=[r"re:step\d+"]))
    assert_bit_identical(want, run_with_sketches(f"hf://{REPO}", revisions=[",".join(reversed(REVS))]))


def test_hub_revision_selection_errors(hub):
    from spectral_edge.engine import list_checkpoints

    with pytest.raises(ConfigError, match="no revision 'step800'"):
        list_checkpoints(f"hf://{REPO}", revisions=["step{0..800..100}"])
    with pytest.raises(ConfigError, match="holds no step"):
        list_checkpoints(f"hf://{REPO}", revisions=["main"])
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        list_checkpoints("hf://org/absent", revisions=["step0"])
    refs = list_checkpoints(f"hf://{REPO}", revisions=[r"re:step[0-3]00"])
    assert [r.step for r in refs] == [100, 200, 300]


def test_resume_skips_revisions_already_in_the_table(hub, tmp_path):
    from typer.testing import CliRunner

    from spectral_edge.cli import app

    def cli(*args):
        res = CliRunner().invoke(app, ["analyze", f"hf://{REPO}", "-w", "3", "-q", *args])
        assert res.exit_code == 0, res.output
        return res

    whole, part = tmp_path / "whole.parquet", tmp_path / "part.parquet"
    cli("--revisions", "step{0..700..100}", "--out", str(whole))
    cli("--revisions", "step{0..400..100}", "--out", str(part))
    first = part.read_bytes()
    seen = []
    import spectral_edge.engine as engine

    real = engine.sketch_checkpoint

    def spy(job, sketcher=None):
        seen.append(job[1].step)
        return real(job, sketcher)

    engine.sketch_checkpoint = spy
    try:
        cli("--revisions", "step{0..700..100}", "--out", str(part), "--resume")
    finally:
        engine.sketch_checkpoint = real
    assert seen == [100, 200, 300, 400, 500, 600, 700]  # the last W + 1 = 4 old ones refill the window ring
    pd.testing.assert_frame_equal(pd.read_parquet(whole), pd.read_parquet(part), check_exact=True)
    again = part.read_bytes()
    assert again != first
    cli("--revisions", "step{0..700..100}", "--out", str(part), "--resume")  # nothing new: left as it was
    assert part.read_bytes() == again


def test_revision_patterns():
    from spectral_edge.io.hub import expand_revisions

    assert expand_revisions(["step{0..3000..1000}"]) == (["step0", "step1000", "step2000", "step3000"], [])
    assert expand_revisions(["step{1,2,4}", "a,b{3..1}"])[0] == ["step1", "step2", "step4", "a", "b3", "b2", "b1"]
    assert expand_revisions(["v{1..2}-{a,b}"])[0] == ["v1-a", "v1-b", "v2-a", "v2-b"]
    names, pats = expand_revisions([r"re:step\d+000"])
    assert names == [] and pats[0].fullmatch("step143000") and not pats[0].fullmatch("step1")
    for bad in ["step{0..10", "step{a..b}", "step{0..10..0}", "re:(", "bad name!"]:
        with pytest.raises(ConfigError):
            expand_revisions([bad])


def test_storage_options_parse_and_nest():
    from spectral_edge.io.remote import parse_storage_options

    assert parse_storage_options(["anon=true", "client_kwargs.endpoint_url=http://h:1", "client_kwargs.x=3"]) == {
        "anon": True, "client_kwargs": {"endpoint_url": "http://h:1", "x": 3}}
    for bad in ["novalue", "=1", "a..b=1"]:
        with pytest.raises(ConfigError, match="KEY=VALUE"):
            parse_storage_options([bad])
