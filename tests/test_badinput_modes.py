"""Bad-input corpus of ``spectral-edge modes``: run folders without snapshots, with too few of
them, of a non-modular task or a too small p, damaged or NaN snapshot and model files, options
out of range, and outputs that exist or are inputs. Every case runs through
:func:`badinput.check` (exit 2, one stderr line naming the problem and the file or key, no
traceback, every file byte-identical, nothing created)."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from badinput import Case, check, hide_modules
from safetensors.torch import load_file, save_file
from test_modes import make_modes_run, write_snapshots

from spectral_edge.experiments.config import RunConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

_TEMPLATE: dict[str, Path] = {}
HIDE: dict[str, tuple[str, ...]] = {}


def _template() -> Path:
    """The valid run every case starts from, built once per process (also outside pytest:
    scripts/reliability_table.py runs the cases) and removed at exit."""
    if "run" not in _TEMPLATE:
        home = Path(tempfile.mkdtemp(prefix="modes-template-"))
        atexit.register(shutil.rmtree, home, True)
        _TEMPLATE["run"] = make_modes_run(home / "run", n_snapshots=21)
    return _TEMPLATE["run"]


def _run(d: Path) -> Path:
    """A copy of the valid template run (p = 23, 21 snapshots every 2 steps)."""
    run = d / "run"
    shutil.copytree(_template(), run)
    return run


def _edit_snapshots(d: Path, change=None, meta: dict | None = None, steps: list | None = None) -> Path:
    run = _run(d)
    path = run / "snapshots.safetensors"
    tensors = load_file(path)
    steps = list(range(2, 43, 2)) if steps is None else steps
    if change is not None:
        change(tensors)
    path.unlink()
    write_snapshots(path, tensors, steps, 2, meta)
    return run


def _edit_config(d: Path, **fields) -> Path:
    run = _run(d)
    cfg = json.loads((run / "config.json").read_text())
    cfg.update(fields)
    RunConfig.from_dict(cfg)  # still a valid config: the command, not the config reader, refuses it
    (run / "config.json").write_text(json.dumps(cfg))
    return run


def _nan(t: dict) -> None:
    t["layers.1.attn.v_proj.weight"][7, 3, 4] = float("nan")


def _few(t: dict) -> None:
    for k in t:
        t[k] = t[k][:8].clone()


def _wrong_shape(t: dict) -> None:
    t["layers.0.attn.k_proj.weight"] = t["layers.0.attn.k_proj.weight"][:, :, :16].clone()


def _stranger(t: dict) -> None:
    t["layers.0.attn.gate.weight"] = torch.zeros(21, 4)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _model_nan(d: Path) -> Path:
    run = _run(d)
    sd = load_file(run / "model.safetensors")
    sd["head.weight"][0, 0] = float("inf")
    save_file(sd, str(run / "model.safetensors"))
    return run


def _then(run: Path, fn) -> Path:
    fn(run)
    return run


CASES = [
    # the run folder
    Case("no-run-folder", lambda d: ["modes", d / "nowhere"], ["nowhere", "no such folder"]),
    Case("run-is-a-file", lambda d: ["modes", _then(d / "f.json", lambda p: p.write_text("{}"))],
         ["f.json", "not a folder"]),
    Case("no-config", lambda d: ["modes", _then(_run(d), lambda r: (r / "config.json").unlink())],
         ["run", "config.json"]),
    Case("config-not-json", lambda d: ["modes", _then(_run(d), lambda r: (r / "config.json").write_text("{oops"))],
         ["config.json", "not a valid config"]),
    Case("non-modular-task", lambda d: ["modes", _edit_config(d, task="dyck", model={})],
         ["config.json", "task", "dyck", "modular"]),
    Case("p-too-small", lambda d: ["modes", _edit_config(d, modulus=3)], ["config.json", "p = 3", "too small"]),
    # the snapshots
    Case("no-snapshots", lambda d: ["modes", _then(_run(d), lambda r: (r / "snapshots.safetensors").unlink())],
         ["snapshots.safetensors", "not found", "snapshots"]),
    Case("too-few-snapshots", lambda d: ["modes", _edit_snapshots(d, _few, steps=list(range(2, 17, 2)))],
         ["snapshots.safetensors", "8 snapshots", "--window 7"]),
    Case("window-larger-than-kept", lambda d: ["modes", _run(d), "--window", "21", "--directions", "3"],
         ["snapshots.safetensors", "21 snapshots", "22"]),
    Case("snapshots-truncated", lambda d: ["modes", _then(_run(d), lambda r: _truncate(r / "snapshots.safetensors"))],
         ["snapshots.safetensors", "truncated"]),
    Case("snapshots-garbage", lambda d: ["modes", _then(_run(d), lambda r: (r / "snapshots.safetensors")
                                                         .write_bytes(b"\x00garbage" * 10))],
         ["snapshots.safetensors", "not a safetensors file"]),
    Case("snapshots-nan", lambda d: ["modes", _edit_snapshots(d, _nan)],
         ["snapshots.safetensors", "NaN", "layers.1.attn.v_proj.weight", "step 16"]),
    Case("snapshots-wrong-format", lambda d: ["modes", _edit_snapshots(d, meta={"format": "other/2"})],
         ["snapshots.safetensors", "format", "other/2"]),
    Case("snapshots-steps-not-a-list", lambda d: ["modes", _edit_snapshots(d, meta={"steps": "42"})],
         ["snapshots.safetensors", "steps"]),
    Case("snapshots-steps-decrease", lambda d: ["modes", _edit_snapshots(d, steps=list(range(42, 1, -2)))],
         ["snapshots.safetensors", "steps", "increase"]),
    Case("snapshots-steps-count", lambda d: ["modes", _edit_snapshots(d, steps=list(range(2, 41, 2)))],
         ["snapshots.safetensors", "shape", "20 steps"]),
    Case("snapshots-every-bad", lambda d: ["modes", _edit_snapshots(d, meta={"every": "0"})],
         ["snapshots.safetensors", "every"]),
    Case("snapshot-shape-differs-from-model", lambda d: ["modes", _edit_snapshots(d, _wrong_shape)],
         ["snapshots.safetensors", "layers.0.attn.k_proj.weight", "shape"]),
    Case("snapshot-of-a-missing-parameter", lambda d: ["modes", _edit_snapshots(d, _stranger)],
         ["snapshots.safetensors", "layers.0.attn.gate.weight", "not a trainable parameter"]),
    # the model and the summary
    Case("no-model", lambda d: ["modes", _then(_run(d), lambda r: (r / "model.safetensors").unlink())],
         ["model.safetensors", "not found"]),
    Case("model-truncated", lambda d: ["modes", _then(_run(d), lambda r: _truncate(r / "model.safetensors", 0.9))],
         ["model.safetensors", "truncated"]),
    Case("model-inf", lambda d: ["modes", _model_nan(d)], ["model.safetensors", "head.weight", "NaN or Inf"]),
    Case("model-of-another-config", lambda d: ["modes", _edit_config(d, model={"d_model": 64, "n_heads": 2})],
         ["model.safetensors", "head.weight", "shape"]),
    Case("summary-not-json", lambda d: ["modes", _then(_run(d), lambda r: (r / "summary.json").write_text("[1,"))],
         ["summary.json", "JSON"]),
    # options
    Case("window-one", lambda d: ["modes", _run(d), "--window", "1"], ["window", "≥ 2"]),
    Case("directions-over-rank", lambda d: ["modes", _run(d), "--directions", "20"], ["directions", "≤ 19"]),
    Case("directions-zero", lambda d: ["modes", _run(d), "--directions", "0"], ["directions", "≥ 1"]),
    Case("epsilon-zero", lambda d: ["modes", _run(d), "--epsilon", "0"], ["epsilon", "> 0"]),
    Case("epsilon-nan", lambda d: ["modes", _run(d), "--epsilon", "nan"], ["epsilon"]),
    Case("basis-unknown", lambda d: ["modes", _run(d), "--basis", "add,cosine"], ["basis", "cosine"]),
    Case("pairs-unknown", lambda d: ["modes", _run(d), "--pairs", "val"], ["pairs", "val"]),
    Case("random-negative", lambda d: ["modes", _run(d), "--random", "-1"], ["random", "≥ 0"]),
    Case("seed-negative", lambda d: ["modes", _run(d), "--seed", "-3"], ["seed", "≥ 0"]),
    Case("json-with-value", lambda d: ["modes", _run(d), "--json", "true"], ["--json", "flag"]),
    # outputs
    Case("out-exists", lambda d: ["modes", _run(d), "--out", _then(d / "m.json", lambda p: p.write_text("old"))],
         ["--out", "m.json", "exists", "--overwrite"]),
    Case("out-not-json", lambda d: ["modes", _run(d), "--out", d / "m.csv"], ["--out", "m.csv", ".json"]),
    Case("out-is-an-input", lambda d: ["modes", _run(d), "--out", d / "run" / "config.json", "--overwrite"],
         ["--out", "config.json", "input"]),
    Case("out-folder-missing", lambda d: ["modes", _run(d), "--out", d / "no" / "m.json"],
         ["--out", "does not exist"]),
    Case("plot-bad-format", lambda d: ["modes", _run(d), "--plot", d / "m.gif"], ["--plot", "m.gif", ".png"]),
    Case("plot-without-matplotlib", lambda d: ["modes", _run(d), "--plot", d / "m.png"],
         ["matplotlib", "pip install", "spectral-edge[plot]"]),
]
HIDE.update({"plot-without-matplotlib": ("matplotlib",)})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path, monkeypatch):
    hide_modules(monkeypatch, HIDE.get(case.id, ()))
    check(case, tmp_path)


def test_every_case_id_is_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def test_the_template_run_itself_is_fine(tmp_path):
    from badinput import run

    res = run(["modes", _run(tmp_path), "--random", "1", "--directions", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["summary"]["basis"] == "add"
