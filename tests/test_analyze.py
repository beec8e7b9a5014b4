"""The offline engine and ``spectral-edge analyze``: every reader, the CLI, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers_ckpt import malicious_pickle_bytes, write_dcp, write_hf_checkpoint
from safetensors.torch import save_file
from typer.testing import CliRunner

from spectral_edge.cli import app
from spectral_edge.engine import AnalysisConfig, analyze_checkpoints
from spectral_edge.errors import CheckpointError, ConfigError, EmptyFolderError, NonFiniteError, ShapeMismatchError
from spectral_edge.functional import spectrum as sp
from spectral_edge.functional.sketch import SketchSpec
from spectral_edge.monitor import Monitor
from spectral_edge.selection import Selection
from spectral_edge.stream.analyzer import default_sketch
from spectral_edge.synthetic import PlantedSpec, planted_trajectory

SHAPES = {
    "layers.0.attn.q_proj.weight": (16, 12),
    "layers.0.mlp.fc.weight": (24, 12),
    "layers.1.attn.q_proj.weight": (16, 12),
    "norm.weight": (12,),
}
SPEC = PlantedSpec(shapes=SHAPES, n_samples=14, every=50, rank=2, noise_corr=0.3, seed=4)


def _trajectory():
    return list(planted_trajectory(SPEC))


def _write(folder: Path, fmt: str) -> list[tuple[int, dict]]:
    traj = _trajectory()
    folder.mkdir(parents=True, exist_ok=True)
    for step, st in traj:
        if fmt == "safetensors":
            save_file(st, str(folder / f"step_{step}.safetensors"))
        elif fmt == "hf":
            write_hf_checkpoint(folder / f"checkpoint-{step}", st, shards=2, extras=True)
        elif fmt == "torch":
            torch.save({"model": st, "iter_num": step}, folder / f"ckpt_{step}.pt")
        elif fmt == "dcp":
            write_dcp(folder / f"step-{step}", st)
    return traj


def _exact_rows(traj, W):
    X = np.stack([torch.cat([t.reshape(-1).double() for t in st.values()]).numpy() for _, st in traj])
    return sp.window_series(sp.gram(np.diff(X, axis=0)), W)


@pytest.mark.parametrize("fmt", ["safetensors", "hf", "torch", "dcp"])
def test_every_reader_gives_the_exact_batch_answer(tmp_path, fmt):
    traj = _write(tmp_path / fmt, fmt)
    res = analyze_checkpoints(tmp_path / fmt, AnalysisConfig(windows=(5,), sketch=SketchSpec("exact")))
    rows = [r for r in res.rows if r["group"] == "all"]
    ref = _exact_rows(traj, 5)
    assert [r["step"] for r in rows] == [traj[t + 1][0] for t, _ in ref]
    assert rows[0]["step_first"] == 0
    for r, (_, st) in zip(rows, ref):
        np.testing.assert_allclose([r[f"sigma_{j}"] for j in range(1, 6)], st.sigma, rtol=1e-9)
        assert r["k_star"] == st.k_star and r["gap_ratio"] == pytest.approx(st.gap_ratio, rel=1e-9)


def test_formats_agree_with_each_other_under_a_sketch(tmp_path):
    out = {}
    for fmt in ("safetensors", "torch"):
        _write(tmp_path / fmt, fmt)
        res = analyze_checkpoints(tmp_path / fmt, AnalysisConfig(windows=(4, 6), sketch=SketchSpec("fold", dim=40)))
        out[fmt] = pd.DataFrame(res.rows)
    pd.testing.assert_frame_equal(out["safetensors"], out["torch"])
    assert set(out["torch"]["window"]) == {4, 6}


def test_selection_groups_tied_weights_and_buffers(tmp_path):
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(10, 4, generator=g)
    for i in range(6):
        st = {
            "module.wte.weight": emb + 0.01 * i * torch.randn(10, 4, generator=g),
            "module.h.0.attn.q_proj.weight": torch.randn(4, 4, generator=g) * 0.1 + i,
            "module.h.1.attn.q_proj.weight": torch.randn(4, 4, generator=g) * 0.1 - i,
            "module.h.0.attn.bias": torch.tril(torch.ones(3, 3)),  # causal-mask buffer
            "module.bn.running_mean": torch.randn(4, generator=g),
        }
        st["module.lm_head.weight"] = st["module.wte.weight"]  # tied: same storage
        torch.save(st, tmp_path / f"c{i}.pt")
    warnings = []
    res = analyze_checkpoints(tmp_path, AnalysisConfig(windows=(3,), sketch=SketchSpec("exact"),
                                                       selection=Selection(group_by="layer")),
                              on_warning=warnings.append)
    assert res.aliases == {"module.lm_head.weight": "module.wte.weight"}
    assert any("tied" in w for w in warnings)
    # wte (40) + two 4×4 matrices; buffers and the tied copy are not counted
    assert res.n_parameters == 40 + 16 + 16
    assert res.groups == ["all", "other", "layer.0", "layer.1"]
    df = pd.DataFrame(res.rows)
    assert set(df["group"]) == {"all", "other", "layer.0", "layer.1"}
    res2 = analyze_checkpoints(tmp_path, AnalysisConfig(windows=(3,), sketch=SketchSpec("exact"),
                                                        selection=Selection(preset="attention")))
    assert res2.n_parameters == 32
    res3 = analyze_checkpoints(tmp_path, AnalysisConfig(windows=(3,), sketch=SketchSpec("exact"),
                                                        selection=Selection(exclude=("*wte*",), include_buffers=True)))
    assert res3.n_parameters == 32 + 9 + 4


def _cli(args):
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".jsonl"])
def test_cli_writes_one_row_per_window_in_the_format_of_the_extension(tmp_path, ext):
    traj = _write(tmp_path / "run", "safetensors")
    out = tmp_path / f"metrics{ext}"
    res = _cli(["analyze", str(tmp_path / "run"), "--window", "5", "--sketch", "exact", "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".jsonl": lambda p: pd.read_json(p, lines=True)}[ext](out)
    assert len(df) == len(traj) - 5
    for col in ["step", "k_star", "gap_ratio"] + [f"sigma_{j}" for j in range(1, 6)]:
        assert col in df.columns
    assert df["step"].tolist() == [s for s, _ in traj[5:]]


def test_cli_json_summary_and_all_options(tmp_path):
    _write(tmp_path / "run", "safetensors")
    out = tmp_path / "m.parquet"
    res = _cli(["analyze", str(tmp_path / "run"), "-w", "4,6", "--sketch", "countsketch", "--sketch-dim", "30",
                "--seed", "3", "--include", "layers.*", "--exclude", "*mlp*", "--kstar-rule", "weighted",
                "--group-by", "layer", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["parameters"] == 16 * 12 * 2 and summary["windows"] == [4, 6]
    df = pd.read_parquet(out)
    assert set(df["k_star_rule"]) == {"weighted"} and set(df["group"]) == {"all", "layer.0", "layer.1"}
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(out).metadata[b"spectral_edge"])
    assert meta["config"]["sketch"] == {"family": "countsketch", "dim": 30, "seed": 3, "buckets": 16381,
                                        "accum_dtype": "float64"}


def test_default_sketch_is_fold_d_10_max_w_in_python_the_cli_and_the_monitor(tmp_path):
    _write(tmp_path / "run", "safetensors")
    res = _cli(["analyze", str(tmp_path / "run"), "-w", "5,10,20", "--out", str(tmp_path / "m.csv"), "--json"])
    assert res.exit_code == 0, res.output
    cli_sketch = json.loads(res.stdout)["sketch"]
    py = AnalysisConfig(windows=(5, 10, 20)).sketch
    assert py == SketchSpec("fold", dim=200, seed=0) == default_sketch((20, 5, 10))
    assert cli_sketch == py.to_dict()
    assert Monitor(torch.nn.Linear(4, 3), windows=(5, 10, 20), sketch="fold", sample_initial=False).config.sketch == py
    big = Monitor(torch.nn.Linear(2000, 1000), windows=(5, 10, 20), sample_initial=False)  # "auto": too big for exact
    assert big.config.sketch == py
    # the default of analyze_checkpoints, and a sketch given explicitly is kept as it is
    assert AnalysisConfig().sketch == SketchSpec("fold", dim=100)
    assert AnalysisConfig(windows=(5, 10, 20), sketch=SketchSpec("fold", dim=64)).sketch.dim == 64
    assert AnalysisConfig(windows=(5, 10, 20)) == AnalysisConfig(windows=(20, 10, 5), sketch=py)


def test_serialisers_are_to_dict_and_the_old_names_still_work(tmp_path):
    _write(tmp_path / "run", "safetensors")
    res = analyze_checkpoints(tmp_path / "run", AnalysisConfig(windows=(5,)))
    assert res.to_dict()["config"] == res.config.to_dict() and res.metadata() == res.to_dict()
    assert res.config.describe() == res.config.to_dict()
    st = sp.window_stats(np.diag([9.0, 4.0, 1.0]))
    assert st.as_row() == st.to_dict() and st.to_dict()["sigma_1"] == 3.0


def _assert_user_error(res, *needles):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    out = str(tmp_path / "m.csv")
    (tmp_path / "empty").mkdir()
    _assert_user_error(_cli(["analyze", str(tmp_path / "empty"), "--out", out]), "empty")
    _assert_user_error(_cli(["analyze", str(tmp_path / "missing"), "--out", out]), "missing")
    # truncated safetensors file among good ones
    _write(tmp_path / "trunc", "safetensors")
    bad = tmp_path / "trunc" / "step_300.safetensors"
    bad.write_bytes(bad.read_bytes()[:200])
    _assert_user_error(_cli(["analyze", str(tmp_path / "trunc"), "--out", out]), "step_300.safetensors")
    # a pickle that is not a plain state dict
    _write(tmp_path / "pkl", "torch")
    sentinel = tmp_path / "pwned"
    (tmp_path / "pkl" / "ckpt_999.pt").write_bytes(malicious_pickle_bytes(sentinel))
    _assert_user_error(_cli(["analyze", str(tmp_path / "pkl"), "--out", out]), "ckpt_999.pt")
    assert not sentinel.exists()
    # shapes that change between checkpoints
    _write(tmp_path / "shape", "safetensors")
    st = dict(_trajectory()[0][1])
    st["norm.weight"] = torch.zeros(13)
    save_file(st, str(tmp_path / "shape" / "step_250.safetensors"))
    _assert_user_error(_cli(["analyze", str(tmp_path / "shape"), "--out", out]), "step_250.safetensors", "shape")
    # wrong flags
    _write(tmp_path / "ok", "safetensors")
    _assert_user_error(_cli(["analyze", str(tmp_path / "ok"), "--sketch", "nope", "--out", out]), "nope")
    _assert_user_error(_cli(["analyze", str(tmp_path / "ok"), "--out", str(tmp_path / "m.xlsx")]), ".xlsx")
    _assert_user_error(_cli(["analyze", str(tmp_path / "ok"), "--window", "1", "--out", out]), "window")
    _assert_user_error(_cli(["analyze", str(tmp_path / "ok"), "--include", "nothing*", "--out", out]), "matches none")
    assert not Path(out).exists()


def test_nan_mid_run_keeps_the_rows_computed_before_it(tmp_path):
    traj = _write(tmp_path / "run", "safetensors")
    st = dict(traj[9][1])
    st["layers.0.mlp.fc.weight"] = st["layers.0.mlp.fc.weight"].clone()
    st["layers.0.mlp.fc.weight"][3, 3] = float("nan")
    save_file(st, str(tmp_path / "run" / f"step_{traj[9][0]}.safetensors"))
    out = tmp_path / "m.csv"
    out.write_text("an earlier result\n")
    res = _cli(["analyze", str(tmp_path / "run"), "--window", "3", "--overwrite", "--out", str(out)])
    _assert_user_error(res, f"step_{traj[9][0]}.safetensors", "NaN", "layers.0.mlp.fc.weight")
    assert out.read_text() == "an earlier result\n"  # an earlier result is not clobbered
    partial = pd.read_csv(tmp_path / "m.partial.csv")
    assert partial["step"].tolist() == [s for s, _ in traj[3:9]]
    with pytest.raises(NonFiniteError):
        analyze_checkpoints(tmp_path / "run", AnalysisConfig(windows=(3,)))
    # --skip-bad goes past it instead
    res = _cli(["analyze", str(tmp_path / "run"), "--window", "3", "--skip-bad", "--overwrite", "--out", str(out)])
    assert res.exit_code == 0 and "skipping" in res.output
    assert len(pd.read_csv(out)) == len(traj) - 1 - 3


def test_engine_errors_are_typed(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(EmptyFolderError):
        analyze_checkpoints(tmp_path / "e")
    _write(tmp_path / "r", "safetensors")
    st = dict(_trajectory()[0][1])
    del st["norm.weight"]
    save_file(st, str(tmp_path / "r" / "step_9999.safetensors"))
    with pytest.raises(ShapeMismatchError, match="missing"):
        analyze_checkpoints(tmp_path / "r")
    with pytest.raises(ConfigError):
        AnalysisConfig(windows=(1,))


# ----------------------------------------------------------------------------- tied weights: one rule


def _tiny_lm_run(folder: Path, save, steps: int = 6, seed: int = 0):
    """Train helpers_ckpt.TinyLM (lm_head tied to wte) with SGD, saving with ``save(path_stem, state_dict)``
    at every step; returns the model."""
    from helpers_ckpt import TinyLM

    torch.manual_seed(seed)
    model = TinyLM()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    g = torch.Generator().manual_seed(seed + 1)
    folder.mkdir(parents=True, exist_ok=True)
    save(folder / "step_0", model.state_dict())
    for s in range(1, steps + 1):
        ids = torch.randint(0, 11, (5, 4), generator=g)
        h = model.block(model.wte(ids) + model.wpe.weight)
        loss = torch.nn.functional.cross_entropy(model.lm_head(model.ln_f(h)).reshape(-1, 11), ids.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        save(folder / f"step_{s}", model.state_dict())
    return model


_SAVERS = {
    "torch-shared": lambda stem, sd: torch.save(sd, f"{stem}.pt"),  # the file records the tie (one storage)
    "torch-clones": lambda stem, sd: torch.save({k: v.clone() for k, v in sd.items()}, f"{stem}.pt"),
    "safetensors-clones": lambda stem, sd: save_file({k: v.clone().contiguous() for k, v in sd.items()},
                                                     f"{stem}.safetensors"),
    "dcp": lambda stem, sd: write_dcp(stem, sd),  # DCP writes both names' bytes and records nothing
}


@pytest.mark.parametrize("how", list(_SAVERS))
def test_tied_weights_are_counted_once_by_every_reader(tmp_path, how):
    model = _tiny_lm_run(tmp_path / how, _SAVERS[how])
    n_model = sum(p.numel() for p in model.parameters())
    warned = []
    config = AnalysisConfig(windows=(3,), sketch=SketchSpec("exact"), selection=Selection(exclude=("attn_bias",)))
    res = analyze_checkpoints(tmp_path / how, config, on_warning=warned.append)
    canonical = "lm_head.weight" if how == "safetensors-clones" else "wte.weight"  # the first name in the file
    other = "wte.weight" if canonical == "lm_head.weight" else "lm_head.weight"
    assert res.aliases == {other: canonical}
    assert res.n_parameters == n_model
    assert any(w.startswith("tied weights counted once") and other in w for w in warned)
    if how == "torch-shared":
        return
    _tiny_lm_run(tmp_path / "torch-shared", _SAVERS["torch-shared"])
    ref = analyze_checkpoints(tmp_path / "torch-shared", config)
    assert len(res.rows) == len(ref.rows) == 4
    for a, b in zip(res.rows, ref.rows):
        np.testing.assert_allclose([a[f"sigma_{j}"] for j in (1, 2, 3)], [b[f"sigma_{j}"] for j in (1, 2, 3)],
                                   rtol=1e-12)


def _states(steps, **tensors):
    """Per step, a state dict built from ``name -> function(step)``."""
    return [{k: f(s).contiguous() for k, f in tensors.items()} for s in steps]


def test_equal_values_are_no_proof_of_tying(tmp_path):
    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(4, 3, generator=g) for _ in range(6)]
    states = _states(
        range(6),
        w=lambda s: noise[s],
        ln1=lambda s: torch.ones(3) + 0.1 * s * noise[s][0],  # equal at initialisation only (LayerNorm weights)
        ln2=lambda s: torch.ones(3) + 0.1 * s * noise[s][1],
        frozen1=lambda s: torch.full((3,), 2.0),  # equal everywhere but never trained
        frozen2=lambda s: torch.full((3,), 2.0),
        end1=lambda s: torch.zeros(3) + (s % 5) * noise[s][2],  # equal (zero) at both ends: no change end to end
        end2=lambda s: torch.zeros(3) + (s % 5) * noise[s][3],
    )
    for s, st in enumerate(states):
        save_file(st, str(tmp_path / f"step_{s}.safetensors"))
    res = analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,), sketch=SketchSpec("exact")))
    assert res.aliases == {}
    assert res.n_parameters == 12 + 6 * 3


def test_a_value_tie_that_breaks_mid_run_stops_with_both_names(tmp_path):
    g = torch.Generator().manual_seed(0)
    for s in range(6):
        w = torch.randn(4, 3, generator=g)
        head = w.clone()
        if s == 3:
            head[0, 0] += 1.0
        write_dcp(tmp_path / f"step_{s}", {"emb.weight": w, "head.weight": head, "b": torch.randn(3, generator=g)})
    with pytest.raises(CheckpointError) as info:
        analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,), sketch=SketchSpec("exact")))
    e = info.value
    assert e.path == tmp_path / "step_3"
    assert "'head.weight'" in e.problem and "'emb.weight'" in e.problem and "differ" in e.problem
    # excluding the copy leaves nothing to decide
    res = analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,), sketch=SketchSpec("exact"),
                                                       selection=Selection(exclude=("head.weight",))))
    assert res.n_parameters == 12 + 3


# ----------------------------------------------------------------------------- analyze edge cases


def _save_run(folder: Path, states, fmt="step_{}.safetensors"):
    folder.mkdir(parents=True, exist_ok=True)
    for s, st in enumerate(states):
        save_file(st, str(folder / fmt.format(s)))


def test_a_tensor_appearing_mid_run_is_named(tmp_path):
    g = torch.Generator().manual_seed(0)
    states = [{"a": torch.randn(3, generator=g)} for _ in range(5)]
    states[3]["b"] = torch.randn(2, generator=g)
    _save_run(tmp_path, states)
    with pytest.raises(ShapeMismatchError) as info:
        analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,)))
    assert info.value.path == tmp_path / "step_3.safetensors" and "'b'" in info.value.problem
    assert "appears" in info.value.problem
    # an int buffer appearing is not analysed, so it changes nothing
    states[3] = {"a": states[3]["a"], "counter": torch.arange(3)}
    _save_run(tmp_path, states)
    assert analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,))).n_parameters == 3


@pytest.mark.parametrize("dtype", [torch.int64, torch.complex64])
def test_nothing_analysable_names_the_file_and_the_tensors(tmp_path, dtype):
    _save_run(tmp_path, [{"a": (torch.arange(4) + s).to(dtype), "b": torch.ones(2, dtype=torch.int32)}
                         for s in range(4)])
    with pytest.raises(CheckpointError) as info:
        analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,)))
    assert info.value.path == tmp_path / "step_0.safetensors"
    assert f"'a' ({str(dtype).replace('torch.', '')})" in info.value.problem and "'b' (int32)" in info.value.problem
    assert "floating-point" in info.value.problem


def test_a_complex_parameter_beside_real_ones_is_skipped_with_a_warning(tmp_path):
    g = torch.Generator().manual_seed(0)
    _save_run(tmp_path, [{"a": torch.randn(3, generator=g), "z": torch.randn(2, dtype=torch.complex64, generator=g)}
                         for _ in range(4)])
    warned = []
    res = analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,)), on_warning=warned.append)
    assert res.n_parameters == 3
    assert any("'z'" in w and "complex" in w for w in warned)


def test_names_that_collide_after_removing_wrapper_prefixes_are_named(tmp_path):
    g = torch.Generator().manual_seed(0)
    _save_run(tmp_path, [{"module.x": torch.randn(3, generator=g), "x": torch.randn(3, generator=g)}
                         for _ in range(4)])
    with pytest.raises(CheckpointError) as info:
        analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,)))
    assert info.value.path == tmp_path / "step_0.safetensors"
    assert "'module.x'" in info.value.problem and "'x'" in info.value.problem
    # the same collision appearing in a later checkpoint only
    states = [{"x": torch.randn(3, generator=g)} for _ in range(4)]
    states[2]["module.x"] = torch.randn(3, generator=g)
    _save_run(tmp_path / "later", states)
    with pytest.raises(CheckpointError) as info:
        analyze_checkpoints(tmp_path / "later", AnalysisConfig(windows=(2,)))
    assert info.value.path == tmp_path / "later" / "step_2.safetensors" and "'module.x'" in info.value.problem


def test_all_empty_tensors_are_refused_not_nan_rows(tmp_path):
    _save_run(tmp_path, [{"x": torch.zeros(0, 3), "y": torch.zeros(0)} for _ in range(4)])
    with pytest.raises(CheckpointError) as info:
        analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,)))
    assert info.value.path == tmp_path / "step_0.safetensors"
    assert "no elements" in info.value.problem and "'x'" in info.value.problem


def test_a_selection_matching_nothing_names_the_file(tmp_path):
    _save_run(tmp_path, [{"bn.running_mean": torch.randn(3), "w": torch.randn(2)} for _ in range(3)])
    with pytest.raises(ConfigError, match=r"matches none .*step_0\.safetensors"):
        analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,), selection=Selection(include=("bn.*",))))


def test_skip_bad_passes_over_an_unreadable_first_checkpoint_when_looking_for_ties(tmp_path):
    g = torch.Generator().manual_seed(0)
    for s in range(5):
        w = torch.randn(4, 3, generator=g)
        write_dcp(tmp_path / f"step_{s}", {"emb.weight": w, "head.weight": w.clone(), "b": torch.randn(3, generator=g)})
    data = next((tmp_path / "step_0").glob("*.distcp"))
    data.write_bytes(bytes(len(data.read_bytes())))  # same length, so only reading the tensors finds it
    with pytest.raises(CheckpointError) as info:
        analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,)))
    assert info.value.path == data
    warned = []
    res = analyze_checkpoints(tmp_path, AnalysisConfig(windows=(2,)), skip_bad=True, on_warning=warned.append)
    assert res.skipped == [str(tmp_path / "step_0")] and any(w.startswith("skipping") for w in warned)
    assert res.aliases == {"head.weight": "emb.weight"} and [s for s, _ in res.checkpoints] == [1, 2, 3, 4]
