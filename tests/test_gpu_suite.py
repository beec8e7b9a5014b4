"""The GPU suite (benchmarks/gpu_suite.py, issue 19 part 3) runs on a CPU with --smoke: every part
measured (finite, positive timings and ratios), the summary names the device, the language-model
runs have a history and their phases and coupling; a second run into the same folder is refused
without touching it, and bad arguments give one line and exit status 2."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from badinput import snapshot

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_suite.py"


def run_suite(args: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite") / "out"
    res = run_suite(["--smoke", "--device", "cpu", "--out", out])
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    return out, res


@pytest.mark.slow
def test_smoke_run_measures_every_part(smoke):
    out, res = smoke
    r = json.loads((out / "results.json").read_text())
    assert r["complete"] and r["smoke"] and r["device"]["type"] == "cpu"
    assert not (out / "results.partial.json").exists()
    assert {k: p["status"] for k, p in r["parts"].items()} == {"A": "ok", "B": "ok", "C": "ok"}
    # A: every state and dtype, finite positive timings and ratios, the CPU cross-check
    runs = r["parts"]["A"]["result"]["runs"]
    assert {(x["state"], x["dtype"]) for x in runs} == {(s, d) for s in ("GPT 0.25M", "GPT 1M")
                                                       for d in ("float32", "bfloat16")}
    for x in runs:
        for k in ("read_s", "fused_read_s", "sketch_s", "ratio", "ratio_fused", "read_GBps", "sketch_GBps"):
            assert positive(x[k]), (x["state"], x["dtype"], k, x[k])
        assert x["sketch_finite"]
    assert runs[0]["cpu_check"]["rel_diff"] < 1e-9
    # B: with and without the monitor, the same number of steps, a ratio
    b = r["parts"]["B"]["result"]
    assert b["rounds"] >= 2 and b["samples_timed"] >= b["rounds"]
    for k in ("seconds_with", "seconds_without", "ratio", "median_round_ratio", "step_ms_without", "step_ms_with"):
        assert positive(b[k]), (k, b[k])
    assert all(positive(x) for x in b["round_ratios"])
    assert (out / "part_b_history.jsonl").stat().st_size > 0
    # C: run folders with a history, then k*, phases and coupling on each
    c = r["parts"]["C"]["result"]
    assert c["seeds_run"] == [42, 43]
    for run in c["runs"]:
        folder = out / run["folder"]
        assert (folder / "history.jsonl").stat().st_size > 0
        for name in ("eval.csv", "summary.json", "config.json"):
            assert (folder / name).is_file(), name
        assert run["steps_run"] == 240 and positive(run["ms_per_step"]) and positive(run["wall_s"])
    analysed = {a["run"]: a for a in c["analysis"]["runs"]}
    assert set(analysed) == {"lm_seed42", "lm_seed43"}
    for a in analysed.values():
        assert a["kstar"]["all/W10"]["floor"]["n"] > 0
        for m in ("plateau", "derivative", "threshold"):
            assert "error" not in a["phases"][m] and a["phases"][m]["valid"], a["phases"][m]
        for W in (5, 10, 20):
            cp = a["coupling"][f"W{W}"]
            assert "error" not in cp and cp["n"] > 0 and math.isfinite(cp["peak_r"]), cp
        assert set(a["coupling"]["lag_flip"]["signs"]) == {"5", "10", "20"}
        assert len(a["val"]["step"]) > 10
    # the folders are what the CLI reads
    from spectral_edge.analysis.phases import run_phases

    assert run_phases(out / "lm_seed42", window=10).valid


@pytest.mark.slow
def test_summary_names_the_device_and_figures_exist(smoke):
    out, res = smoke
    r = json.loads((out / "results.json").read_text())
    text = (out / "summary.md").read_text()
    assert r["device"]["name"] in text and "CPU smoke" in text
    for part in ("**A.", "**B.", "**C."):
        assert part in text
    assert "device: cpu" in res.stdout
    pytest.importorskip("matplotlib")
    for name in ("sketch_vs_read.png", "monitor_overhead.png", "lm_trajectory.png", "lm_coupling.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert name in r["figures"]


@pytest.mark.slow
def test_second_run_without_overwrite_is_refused(smoke):
    out, _ = smoke
    before = snapshot(out)
    res = run_suite(["--smoke", "--device", "cpu", "--out", out], timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr + res.stdout, res.stderr
    assert "not empty" in lines[0] and str(out) in lines[0] and "--overwrite" in lines[0]
    assert snapshot(out) == before


# ---------------------------------------------------------------------- bad arguments
@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], Sequence[str]]  # builds inputs in the folder, returns the arguments
    expect: Sequence[str]  # fragments of the one error line
    skip: bool = False
    extra: dict = field(default_factory=dict)


def _file(d: Path) -> Path:
    p = d / "results.txt"
    p.write_text("a user's file\n")
    return p


def _nonempty(d: Path) -> Path:
    p = d / "mine"
    p.mkdir()
    (p / "notes.md").write_text("keep me\n")
    return p


CASES = [
    Case("budget-negative", lambda d: ["--smoke", "--out", d / "o", "--time-budget", "-5"], ["--time-budget", "-5"]),
    Case("budget-nan", lambda d: ["--smoke", "--out", d / "o", "--time-budget", "nan"], ["--time-budget", "nan"]),
    Case("budget-text", lambda d: ["--smoke", "--out", d / "o", "--time-budget", "soon"], ["--time-budget", "soon"]),
    Case("lm-steps-zero", lambda d: ["--smoke", "--out", d / "o", "--lm-steps", "0"], ["--lm-steps", "0"]),
    Case("lm-seeds-four", lambda d: ["--smoke", "--out", d / "o", "--lm-seeds", "4"], ["--lm-seeds", "4"]),
    Case("threads-zero", lambda d: ["--smoke", "--out", d / "o", "--threads", "0"], ["--threads", "0"]),
    Case("device-unknown", lambda d: ["--smoke", "--out", d / "o", "--device", "tpu"], ["--device", "tpu"]),
    Case("unknown-flag", lambda d: ["--smoke", "--out", d / "o", "--fast"], ["--fast"]),
    Case("out-missing", lambda d: ["--smoke"], ["--out"]),
    Case("out-is-a-file", lambda d: ["--smoke", "--out", _file(d)], ["results.txt", "not a folder"]),
    Case("out-not-empty", lambda d: ["--smoke", "--out", _nonempty(d)], ["mine", "not empty", "--overwrite"]),
    Case("cuda-without-gpu", lambda d: ["--smoke", "--out", d / "o", "--device", "cuda"], ["--device cuda", "CUDA"],
         skip=torch.cuda.is_available()),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_arguments(case, tmp_path):
    if case.skip:
        pytest.skip("a CUDA device is present")
    args = case.make(tmp_path)
    before = snapshot(tmp_path)
    res = run_suite(args, timeout=120)
    what = f"{case.id}: exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert res.returncode == 2, what
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr + res.stdout, what
    for frag in case.expect:
        assert frag.lower() in lines[0].lower(), f"{case.id}: {frag!r} not in {lines[0]!r}"
    assert snapshot(tmp_path) == before, f"{case.id}: files changed or created"


def test_overwrite_replaces_only_the_suites_files(tmp_path, monkeypatch):
    """--overwrite clears what an earlier run of the suite wrote, never a user's other files."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_suite_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # dataclasses look their module up there
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts src/ and benchmarks/ on it
    spec.loader.exec_module(mod)
    out = tmp_path / "out"
    (out / "lm_seed42").mkdir(parents=True)
    (out / "lm_seed42" / "history.jsonl").write_text("{}\n")
    (out / "results.json").write_text("{}")
    (out / "summary.md").write_text("old")
    (out / "my_notes.md").write_text("keep me\n")
    (out / "mine").mkdir()
    (out / "mine" / "data.csv").write_text("1\n")
    with pytest.raises(mod.UsageError, match="not empty"):
        mod.check_out(out, overwrite=False)
    mod.check_out(out, overwrite=True)
    mod.clear_outputs(out)
    assert sorted(p.name for p in out.iterdir()) == ["mine", "my_notes.md"]
    assert (out / "my_notes.md").read_text() == "keep me\n" and (out / "mine" / "data.csv").read_text() == "1\n"
