"""Bad input for checkpoints in stores, Hub revisions and the distributed engine (issue 18): each
case is one line on stderr naming the problem and the source (URL, revision, flag), exit
status 2, and nothing created or changed. S3 cases run against a moto server on 127.0.0.1
started here (on a port chosen when this module loads); Hub cases against a local cache read
with HF_HUB_OFFLINE=1."""

from __future__ import annotations

from pathlib import Path

import pytest
from badinput import Case, check
from remote_servers import free_port, hub_cache, make_states, s3_env, s3_server, upload, write_run

PORT = free_port()
ENDPOINT = f"http://127.0.0.1:{PORT}"
S3 = s3_env(ENDPOINT)
_made: set[str] = set()


def bucket(name: str, corrupt: bool = False) -> str:
    """A bucket with a run of 4 checkpoints under ``run/`` (the last one truncated if ``corrupt``)."""
    if name not in _made:
        s3_server(PORT)
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            run = write_run(Path(d) / "run", make_states(4, big=2000), [0, 10, 20, 30])
            if corrupt:
                f = run / "step_20.safetensors"
                f.write_bytes(f.read_bytes()[:-100])
            upload(ENDPOINT, name, run, "run")
        _made.add(name)
    return f"s3://{name}/run/"


def hub(d: Path) -> dict[str, str]:
    root = hub_cache(d / "hub", "org/tiny", make_states(4, big=2000), ["step0", "step10", "step20", "main"])
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root)}


def out(d: Path) -> str:
    return str(d / "m.parquet")


def hub_case(id, revisions, expect):
    return Case(id, make=lambda d: (_hub_env.update(hub(d)), ["analyze", "hf://org/tiny", "--revisions", revisions,
                                                              "-w", "2", "--out", out(d)])[1],
                expect=expect, env=_hub_env)


_hub_env: dict[str, str] = {}

CASES = [
    Case("url-unknown-scheme", make=lambda d: ["analyze", "foo://x/run/", "--out", out(d)],
         expect=["unknown storage scheme 'foo'", "foo://x/run/"]),
    Case("s3-missing-bucket", make=lambda d: (s3_server(PORT), ["analyze", "s3://no-such-bucket/run/", "--out",
                                                                out(d)])[1],
         expect=["no such", "s3://no-such-bucket/run/"], env=S3),
    Case("s3-missing-folder", make=lambda d: ["analyze", bucket("bucket-ok").replace("run/", "nothing/"), "--out",
                                              out(d)],
         expect=["no such folder", "s3://bucket-ok/nothing/"], env=S3),
    Case("s3-corrupt-safetensors", make=lambda d: ["analyze", bucket("bucket-bad", corrupt=True), "-w", "2", "--out",
                                                   out(d)],
         expect=["truncated", "s3://bucket-bad/run/step_20.safetensors"], env=S3),
    Case("s3-storage-option-refused", make=lambda d: ["analyze", bucket("bucket-ok"), "--storage-option",
                                                      "bogus_option=1", "--out", out(d)],
         expect=["refused", "bogus_option", "s3://bucket-ok/run"], env=S3),
    Case("storage-option-not-key-value", make=lambda d: ["analyze", bucket("bucket-ok"), "--storage-option", "anon",
                                                         "--out", out(d)],
         expect=["--storage-option", "KEY=VALUE", "'anon'"], env=S3),
    Case("storage-option-local-folder", make=lambda d: ["analyze", str(d), "--storage-option", "anon=true",
                                                        "--out", out(d)],
         expect=["--storage-option", "applies to URLs"]),
    Case("workers-zero", make=lambda d: ["analyze", bucket("bucket-ok"), "--workers", "0", "--out", out(d)],
         expect=["--workers", "at least 1", "0"], env=S3),
    Case("workers-and-scheduler", make=lambda d: ["analyze", str(d), "--workers", "2", "--scheduler",
                                                  "tcp://127.0.0.1:1", "--out", out(d)],
         expect=["--workers", "--scheduler", "exclude"]),
    Case("scheduler-unreachable", make=lambda d: ["analyze", bucket("bucket-ok"), "-w", "2", "--scheduler",
                                                  "tcp://127.0.0.1:9", "--out", out(d)],  # the discard port: nothing listens
         expect=["--scheduler", "cannot reach the Dask scheduler", "tcp://127.0.0.1:9"],
         env={**S3, "SPECTRAL_EDGE_SCHEDULER_TIMEOUT": "2"}),
    Case("exact-sketch-with-workers", make=lambda d: ["analyze", bucket("bucket-ok"), "--sketch", "exact",
                                                      "--workers", "2", "--out", out(d)],
         expect=["--sketch exact", "--workers 1"], env=S3),
    hub_case("hub-unknown-revision", "step{0..30..10}", ["no revision 'step30'", "hf://org/tiny"]),
    hub_case("hub-revision-without-step", "step0,main", ["hf://org/tiny@main", "no step"]),
    hub_case("hub-revisions-unbalanced-brace", "step{0..20..10", ["--revisions", "unbalanced braces"]),
    hub_case("hub-revisions-bad-regex", "re:step(", ["--revisions", "'re:step('", "not a valid regular expression"]),
    hub_case("hub-revisions-match-nothing", r"re:ckpt\d+", ["hf://org/tiny", "matches none"]),
    Case("hub-repo-not-in-cache", make=lambda d: ["analyze", "hf://org/absent", "--revisions", "step0", "--out",
                                                  out(d)],
         expect=["hf://org/absent", "not in the local Hugging Face cache", "HF_HUB_OFFLINE"],
         env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "/nonexistent-spectral-edge-cache"}),
    Case("revisions-on-a-non-hub-source", make=lambda d: ["analyze", str(d), "--revisions", "step0", "--out", out(d)],
         expect=["--revisions", "hf://org/name"]),
    Case("resume-needs-parquet", make=lambda d: ["analyze", bucket("bucket-ok"), "--resume", "--out",
                                                 str(d / "m.csv")],
         expect=["--resume", ".parquet", "m.csv"], env=S3),
    Case("resume-and-overwrite", make=lambda d: ["analyze", bucket("bucket-ok"), "--resume", "--overwrite", "--out",
                                                 out(d)],
         expect=["--resume", "--overwrite", "exclude"], env=S3),
    Case("resume-other-settings", make=lambda d: ["analyze", bucket("bucket-ok"), "-w", "2", "--resume", "--out",
                                                  _table(d, windows=3)],
         expect=["--resume", "m.parquet", "other settings", "windows"], env=S3),
    Case("resume-not-a-table", make=lambda d: ["analyze", bucket("bucket-ok"), "-w", "2", "--resume", "--out",
                                               _junk(d)],
         expect=["--resume", "cannot read", "m.parquet"], env=S3),
]


def _table(d: Path, windows: int) -> str:
    from typer.testing import CliRunner

    from spectral_edge.cli import app

    run = write_run(d / "run", make_states(5, big=2000), [0, 10, 20, 30, 40])
    res = CliRunner().invoke(app, ["analyze", str(run), "-w", str(windows), "--out", out(d), "-q"])
    assert res.exit_code == 0, res.output
    return out(d)


def _junk(d: Path) -> str:
    (d / "m.parquet").write_bytes(b"not parquet")
    return out(d)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path):
    pytest.importorskip("moto")
    check(case, tmp_path)
