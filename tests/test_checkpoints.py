"""Checkpoint discovery and reading: every format, tied weights, and every bad-input case."""

from __future__ import annotations

import pickle
import random
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from helpers_ckpt import (
    SideEffect,
    deny_listing,
    TinyLM,
    malicious_pickle_bytes,
    tiny_state_dict,
    write_dcp,
    write_dcp_two_ranks,
    write_hf_checkpoint,
    write_safetensors,
)

from spectral_edge.errors import (
    CheckpointError,
    CorruptCheckpointError,
    EmptyFolderError,
    UnsafeCheckpointError,
)
from spectral_edge.io.checkpoints import CheckpointRef, TensorInfo, discover, open_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@contextmanager
def expect(kind: type[CheckpointError], pattern: str) -> Iterator[pytest.ExceptionInfo[CheckpointError]]:
    """Like ``pytest.raises(kind, match=...)`` but matching only the problem text, not the path."""
    with pytest.raises(kind) as info:
        yield info
    assert re.search(pattern, info.value.problem), info.value.problem
    assert "\n" not in str(info.value)


def read_all(ref: CheckpointRef, state_key: str | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint, read through the public API."""
    with open_checkpoint(ref, state_key=state_key) as reader:
        names = list(reader.tensor_info())
        return dict(reader.iter_tensors(names))


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """Same names and bit-identical tensors (dtype and shape included)."""
    assert set(got) == set(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert torch.equal(got[name], tensor), name


def only(folder: Path) -> CheckpointRef:
    """The single checkpoint discovered in ``folder``."""
    refs = discover(folder)
    assert len(refs) == 1
    return refs[0]


# ----------------------------------------------------------------------------- discovery


def test_steps_sort_numerically_not_lexicographically(tmp_path: Path) -> None:
    steps = [10, 2, 100]
    random.Random(3).shuffle(steps)
    for s in steps:
        write_safetensors(tmp_path / f"step_{s}.safetensors", {"w": torch.full((2,), float(s))})
    refs = discover(tmp_path)
    assert [r.step for r in refs] == [2, 10, 100]
    assert [r.path.name for r in refs] == ["step_2.safetensors", "step_10.safetensors", "step_100.safetensors"]
    for r in refs:
        assert torch.equal(read_all(r)["w"], torch.full((2,), float(r.step)))


@pytest.mark.parametrize(
    "name, step",
    [
        ("step_000200.safetensors", 200),
        ("model_7.pt", 7),  # the only number
        ("epoch=3-step=1200.ckpt", 1200),  # Lightning's default name
        ("epoch=0-step=10-train_loss=1.30.ckpt", 10),  # a templated name: other numbers around the step
        ("epoch=0-step=10-v1.ckpt", 10),  # Lightning's version suffix is not a number of the name
        ("gpt2-step_35-lr3e-4.pt", 35),
        ("run2-global_step=60.bin", 60),
        ("run2_global_step70.pt", 70),
        ("run2_iter_80.pth", 80),
        ("exp3-Step-90.safetensors", 90),
        ("ckpt_500.pt", 500),
        ("step_0000000000000000000000000005.safetensors", 5),  # leading zeros are fine
    ],
)
def test_step_from_an_explicit_token_else_the_only_number(tmp_path: Path, name: str, step: int) -> None:
    path = tmp_path / name
    if name.endswith(".safetensors"):
        write_safetensors(path, {"w": torch.ones(1)})
    else:
        torch.save({"w": torch.ones(1)}, path)
    assert [(r.step, r.path.name) for r in discover(tmp_path)] == [(step, name)]


def test_folders_take_the_same_rule(tmp_path: Path) -> None:
    write_hf_checkpoint(tmp_path / "checkpoint-1400", {"w": torch.ones(1)})
    write_hf_checkpoint(tmp_path / "run2-checkpoint-1500", {"w": torch.ones(1)})
    write_dcp(tmp_path / "global_step1600", {"w": torch.ones(1)})
    assert [(r.step, r.format) for r in discover(tmp_path)] == [(1400, "hf"), (1500, "hf"), (1600, "dcp")]


def test_an_ambiguous_name_takes_the_step_stored_inside(tmp_path: Path) -> None:
    # Lightning stores global_step; nanoGPT iter_num; a Trainer folder its trainer_state.json
    torch.save({"state_dict": {"w": torch.ones(1)}, "epoch": 0, "global_step": 30}, tmp_path / "0-30-1.25.ckpt")
    torch.save({"state_dict": {"w": torch.ones(1)}, "epoch": 0, "global_step": 40}, tmp_path / "model-v1.ckpt")
    torch.save({"model": {"w": torch.ones(1)}, "iter_num": 50}, tmp_path / "gpt2_run3.pt")
    folder = tmp_path / "run2-ckpt-at-60k"
    write_hf_checkpoint(folder, {"w": torch.ones(1)})
    (folder / "trainer_state.json").write_text('{"global_step": 60000, "epoch": 1.0}')
    write_safetensors(tmp_path / "m2_e3.safetensors", {"w": torch.ones(1)})
    from safetensors.torch import save_file

    save_file({"w": torch.ones(1)}, str(tmp_path / "m2_e3.safetensors"), metadata={"step": "70000"})
    got = [(r.step, r.path.name) for r in discover(tmp_path)]
    assert got == [(30, "0-30-1.25.ckpt"), (40, "model-v1.ckpt"), (50, "gpt2_run3.pt"), (60000, "run2-ckpt-at-60k"),
                   (70000, "m2_e3.safetensors")]


@pytest.mark.parametrize("name", ["ckpt_run2_300.pt", "0-10-1.30.ckpt", "run2-ckpt-at-60k"])
def test_an_ambiguous_name_without_a_stored_step_is_refused(tmp_path: Path, name: str) -> None:
    write_safetensors(tmp_path / "step_1.safetensors", {"w": torch.ones(1)})
    if name.endswith((".pt", ".ckpt")):
        torch.save({"state_dict": {"w": torch.ones(1)}, "epoch": 0}, tmp_path / name)
    else:
        write_hf_checkpoint(tmp_path / name, {"w": torch.ones(1)})
    with expect(CheckpointError, "several numbers") as info:
        discover(tmp_path)
    assert info.value.path == tmp_path / name
    assert "step_<N>" in info.value.problem


def test_a_lightning_version_copy_of_a_step_is_refused_naming_both(tmp_path: Path) -> None:
    """``epoch=0-step=10-v1.ckpt`` is what Lightning writes when step 10 is saved again into the
    same folder (a resumed or restarted run): two different checkpoints for one step. Neither is
    chosen silently."""
    for name in ("epoch=0-step=10.ckpt", "epoch=0-step=10-v1.ckpt", "epoch=0-step=20.ckpt"):
        torch.save({"state_dict": {"w": torch.ones(1)}, "global_step": 10}, tmp_path / name)
    with expect(CheckpointError, "two checkpoints for step 10") as info:
        discover(tmp_path)
    assert "epoch=0-step=10.ckpt" in str(info.value) and "epoch=0-step=10-v1.ckpt" in str(info.value)


@pytest.mark.parametrize("name", ["step_" + "1" + "0" * 25 + ".safetensors", "epoch=0-step=" + "9" * 200 + ".ckpt",
                                  "model_" + "9" * 19 + ".pt"])
def test_a_step_over_2_63_is_refused_naming_the_file(tmp_path: Path, name: str) -> None:
    write_safetensors(tmp_path / "step_1.safetensors", {"w": torch.ones(1)})
    torch.save({"w": torch.ones(1)}, tmp_path / name)
    with expect(CheckpointError, "too large") as info:
        discover(tmp_path)
    assert info.value.path == tmp_path / name


def test_largest_step_is_accepted(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(1)}, tmp_path / f"step_{2**63 - 1}.pt")
    assert discover(tmp_path)[0].step == 2**63 - 1


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_broken_symlinks_are_named(tmp_path: Path, kind: str) -> None:
    write_safetensors(tmp_path / "step_1.safetensors", {"w": torch.ones(1)})
    if kind == "dangling":
        link = tmp_path / "step_2.safetensors"
        link.symlink_to(tmp_path / "gone" / "step_2.safetensors")
        pattern = "broken symbolic link"
    else:
        link = tmp_path / "step_2"
        link.symlink_to(tmp_path / "step_2")
        pattern = "symbolic link loop"
    with expect(CheckpointError, pattern) as info:
        discover(tmp_path)
    assert info.value.path == link


def test_symlinks_to_checkpoints_are_followed_and_unrelated_broken_links_ignored(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_safetensors(store / "a.safetensors", {"w": torch.ones(1)})
    write_hf_checkpoint(store / "b", {"w": torch.ones(1)})
    run = tmp_path / "run"
    run.mkdir()
    (run / "step_1.safetensors").symlink_to(store / "a.safetensors")
    (run / "checkpoint-2").symlink_to(store / "b")
    (run / "latest").symlink_to(run / "nowhere")  # not a checkpoint name: not ours to judge
    (run / "last.ckpt").symlink_to(run / "nowhere.ckpt")  # Lightning's save_last="link": never read
    assert [(r.step, r.format) for r in discover(run)] == [(1, "safetensors"), (2, "hf")]


_deny = deny_listing  # tests/helpers_ckpt.py


@pytest.mark.parametrize("where", ["folder", "checkpoint"])
def test_unreadable_folders_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    write_hf_checkpoint(tmp_path / "checkpoint-1", {"w": torch.ones(1)})
    write_hf_checkpoint(tmp_path / "checkpoint-2", {"w": torch.ones(1)})
    denied = tmp_path if where == "folder" else tmp_path / "checkpoint-2"
    _deny(monkeypatch, denied)
    with expect(CheckpointError, "Permission denied") as info:
        discover(tmp_path)
    assert info.value.path == denied


def test_mixed_kinds_and_ignored_files(tmp_path: Path) -> None:
    sd = tiny_state_dict()
    write_safetensors(tmp_path / "step_1.safetensors", sd)
    torch.save(sd, tmp_path / "step_2.pt")
    write_hf_checkpoint(tmp_path / "checkpoint-3", sd)
    write_dcp(tmp_path / "step-4", {"model": sd})
    # Not checkpoints: training state, Lightning's copy of the latest, logs, unrelated folders.
    (tmp_path / "optimizer.pt").write_bytes(malicious_pickle_bytes(tmp_path / "never"))
    (tmp_path / "rng_state_0.pth").write_bytes(b"junk")
    (tmp_path / "last.ckpt").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "events.bin").write_bytes(b"junk")
    refs = discover(tmp_path)
    assert [(r.step, r.format) for r in refs] == [(1, "safetensors"), (2, "torch"), (3, "hf"), (4, "dcp")]
    for r in refs:
        assert_same(read_all(r), sd)


def test_hf_output_dir_final_model_is_skipped(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"w": torch.ones(1)})
    write_hf_checkpoint(tmp_path / "checkpoint-500", {"w": torch.zeros(1)})
    assert [r.step for r in discover(tmp_path)] == [500]


def test_folder_that_is_one_model_gets_a_hint(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"w": torch.ones(1)})
    with expect(EmptyFolderError, "looks like one saved model"):
        discover(tmp_path)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(EmptyFolderError) as info:
        discover(tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and info.value.path == tmp_path
    for looked in ("*.safetensors", "*.pt", "*.ckpt", "checkpoint-<step>/", ".metadata"):
        assert looked in msg


def test_missing_folder_and_file_instead_of_folder(tmp_path: Path) -> None:
    with expect(CheckpointError, "no such folder"):
        discover(tmp_path / "nope")
    f = tmp_path / "step_1.safetensors"
    write_safetensors(f, {"w": torch.ones(1)})
    with expect(CheckpointError, "is a file, not a folder"):
        discover(f)


def test_duplicate_steps_name_both(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "step_5.safetensors", {"w": torch.ones(1)})
    torch.save({"w": torch.ones(1)}, tmp_path / "model_005.pt")
    with expect(CheckpointError, "step 5") as info:
        discover(tmp_path)
    assert "step_5.safetensors" in str(info.value) and "model_005.pt" in str(info.value)


def test_candidate_without_a_number_is_named(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "step_1.safetensors", {"w": torch.ones(1)})
    torch.save({"w": torch.ones(1)}, tmp_path / "ckpt.pt")
    with expect(CheckpointError, "no number") as info:
        discover(tmp_path)
    assert info.value.path == tmp_path / "ckpt.pt"


def test_checkpoint_folder_without_weights(tmp_path: Path) -> None:
    (tmp_path / "checkpoint-7").mkdir()
    torch.save({}, tmp_path / "checkpoint-7" / "optimizer.pt")
    with expect(CheckpointError, "no model weights") as info:
        discover(tmp_path)
    assert info.value.path == tmp_path / "checkpoint-7"


# ----------------------------------------------------------------------------- formats


def test_safetensors_info_and_tensors(tmp_path: Path) -> None:
    sd = tiny_state_dict()
    write_safetensors(tmp_path / "step_3.safetensors", sd)
    ref = only(tmp_path)
    with open_checkpoint(ref) as reader:
        info = reader.tensor_info()
        assert info == {k: TensorInfo(tuple(v.shape), v.dtype) for k, v in sd.items()}
        assert info["layers.0.norm.scale"].numel == 1 and info["embed.weight"].numel == 35
        assert reader.aliases() == {}
        order = ["head.weight", "embed.weight", "layers.0.counter"]
        it = reader.iter_tensors(order)
        first = next(it)
        assert first[0] == "head.weight" and torch.equal(first[1], sd["head.weight"])
        assert [n for n, _ in it] == order[1:]
    assert_same(read_all(ref), sd)


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
@pytest.mark.parametrize("shards", [1, 3])
def test_hf_checkpoint_folders(tmp_path: Path, kind: str, shards: int) -> None:
    sd = tiny_state_dict()
    write_hf_checkpoint(tmp_path / "checkpoint-40", sd, shards=shards, kind=kind)
    # The optimizer file is a booby trap: reading the model must never touch it.
    (tmp_path / "checkpoint-40" / "optimizer.pt").write_bytes(malicious_pickle_bytes(tmp_path / "pwned"))
    ref = only(tmp_path)
    assert (ref.step, ref.format, ref.path) == (40, "hf", tmp_path / "checkpoint-40")
    assert_same(read_all(ref), sd)
    assert not (tmp_path / "pwned").exists()


def test_torch_state_dict_with_tied_weights_and_buffers(tmp_path: Path) -> None:
    model = TinyLM()
    sd = model.state_dict()
    torch.save(sd, tmp_path / "step_9.pt")
    ref = only(tmp_path)
    with open_checkpoint(ref) as reader:
        info = reader.tensor_info()
        assert list(info) == list(sd)  # buffers included, state-dict order kept
        assert "attn_bias" in info and "lm_head.weight" in info
        assert reader.aliases() == {"lm_head.weight": "wte.weight"}
        got = dict(reader.iter_tensors(["lm_head.weight", "wte.weight", "attn_bias"]))
    assert torch.equal(got["lm_head.weight"], model.wte.weight.detach())
    assert not got["wte.weight"].requires_grad
    assert_same(read_all(ref), {k: v.detach() for k, v in sd.items()})


def test_nanogpt_style_checkpoint(tmp_path: Path) -> None:
    model = TinyLM()
    opt = torch.optim.AdamW(model.parameters())
    ckpt = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "model_args": {"n_layer": 1, "bias": True},
        "iter_num": 5,
        "best_val_loss": torch.tensor(2.5),
        "config": {"lr": 1e-3},
    }
    torch.save(ckpt, tmp_path / "ckpt_500.pt")
    ref = only(tmp_path)
    with open_checkpoint(ref) as reader:
        assert list(reader.tensor_info()) == list(ckpt["model"])
        assert reader.aliases() == {"lm_head.weight": "wte.weight"}
    assert_same(read_all(ref), ckpt["model"])


def test_lightning_style_checkpoint(tmp_path: Path) -> None:
    sd = {f"model.{k}": v for k, v in tiny_state_dict().items()}
    ckpt = {"epoch": 0, "global_step": 7, "state_dict": sd, "optimizer_states": [{}], "lr_schedulers": []}
    torch.save(ckpt, tmp_path / "epoch=0-step=7.ckpt")
    ref = only(tmp_path)
    assert ref.step == 7
    assert_same(read_all(ref), sd)


def test_state_key_picks_the_entry_and_unknown_layout_is_explained(tmp_path: Path) -> None:
    a, b = tiny_state_dict(1), tiny_state_dict(2)
    torch.save({"weights": a, "ema_weights": b, "step": 3}, tmp_path / "run_3.pt")
    ref = only(tmp_path)
    assert_same(read_all(ref, state_key="ema_weights"), b)
    assert_same(read_all(ref, state_key="weights"), a)
    with pytest.raises(CorruptCheckpointError) as info:
        open_checkpoint(ref)
    msg = str(info.value)
    assert "'weights'" in msg and "'step'" in msg and "--state-key" in msg and "\n" not in msg
    with expect(CheckpointError, "no entry 'nope'"):
        open_checkpoint(ref, state_key="nope")
    with expect(CheckpointError, "not a dict of tensors"):
        open_checkpoint(ref, state_key="step")


def test_nested_dicts_are_flattened(tmp_path: Path) -> None:
    enc, dec = torch.randn(2, 2), torch.randn(3)
    torch.save({"encoder": {"layer": {"w": enc}}, "decoder": {"b": dec}}, tmp_path / "s_1.pt")
    assert_same(read_all(only(tmp_path)), {"encoder.layer.w": enc, "decoder.b": dec})


def test_legacy_non_zip_torch_file(tmp_path: Path) -> None:
    sd = tiny_state_dict()
    torch.save(sd, tmp_path / "old_12.pth", _use_new_zipfile_serialization=False)
    assert_same(read_all(only(tmp_path)), sd)


def test_dcp_single_process(tmp_path: Path) -> None:
    sd = tiny_state_dict()
    opt_state = {"state": {"embed.weight": {"exp_avg": torch.ones(7, 5)}}, "lr": 0.1}
    write_dcp(tmp_path / "step-200", {"model": sd, "optimizer": opt_state, "step": 200})
    ref = only(tmp_path)
    assert (ref.step, ref.format) == (200, "dcp")
    with open_checkpoint(ref) as reader:
        info = reader.tensor_info()
        assert list(info) == list(sd)
        assert info["layers.0.mlp.fc.weight"] == TensorInfo((9, 5), torch.bfloat16)
    assert_same(read_all(ref), sd)
    assert_same(read_all(ref, state_key="optimizer"), {"state.embed.weight.exp_avg": torch.ones(7, 5)})


def test_dcp_flat_state_dict(tmp_path: Path) -> None:
    sd = tiny_state_dict()
    write_dcp(tmp_path / "step-1", {**sd, "iteration": 1})
    assert_same(read_all(only(tmp_path)), sd)


def test_dcp_two_ranks_sharded_chunks(tmp_path: Path) -> None:
    want = write_dcp_two_ranks(tmp_path / "step-7")
    ref = only(tmp_path)
    with open_checkpoint(ref) as reader:
        assert reader.tensor_info()["w"] == TensorInfo((6, 4), torch.float32)
        assert len(reader._tensors["w"].chunks) == 2  # really split across the two ranks
        assert len({c.file for c in reader._tensors["b"].chunks}) == 2
    assert_same(read_all(ref), want)


# ----------------------------------------------------------------------------- bad inputs


def test_truncated_safetensors_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "step_1.safetensors"
    write_safetensors(path, tiny_state_dict())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    ref = only(tmp_path)
    with expect(CorruptCheckpointError, "truncated") as info:
        open_checkpoint(ref)
    assert info.value.path == path


def test_safetensors_header_beyond_eof(tmp_path: Path) -> None:
    path = tmp_path / "step_1.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b'{"a": 1}')
    with expect(CorruptCheckpointError, "header length"):
        open_checkpoint(only(tmp_path))


@pytest.mark.parametrize("name", ["step_1.safetensors", "step_1.pt", "step_1.bin", "step_1.ckpt"])
def test_garbage_bytes(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(random.Random(0).randbytes(3000))
    with pytest.raises(CorruptCheckpointError) as info:
        open_checkpoint(only(tmp_path))
    assert info.value.path == tmp_path / name and "\n" not in str(info.value)
    assert info.value.__cause__ is not None or name.endswith(".safetensors")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "step_1.pt").write_bytes(b"")
    with expect(CorruptCheckpointError, "empty"):
        open_checkpoint(only(tmp_path))


def test_torch_zip_cut_in_half(tmp_path: Path) -> None:
    path = tmp_path / "step_1.pt"
    torch.save(tiny_state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with expect(CorruptCheckpointError, "truncated or damaged") as info:
        open_checkpoint(only(tmp_path))
    assert info.value.path == path and info.value.__cause__ is not None


@pytest.mark.parametrize("how", ["torch.save", "pickle-protocol-2"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, how: str) -> None:
    sentinel = tmp_path / "pwned"
    path = tmp_path / "ckpt" / "step_1.pt"
    path.parent.mkdir()
    if how == "torch.save":
        torch.save({"w": torch.ones(2), "evil": SideEffect(sentinel)}, path)
    else:
        path.write_bytes(malicious_pickle_bytes(sentinel))
    with expect(UnsafeCheckpointError, r"refusing to unpickle \S*system \(") as info:
        open_checkpoint(only(path.parent))
    assert "not a plain state dict" in str(info.value)
    assert not sentinel.exists()
    # The payload is real: an unrestricted load does run it (so this test can fail).
    if how == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert sentinel.exists()


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "step_1.pt")
    with expect(UnsafeCheckpointError, "Linear"):
        open_checkpoint(only(tmp_path))


@pytest.mark.parametrize("obj", [torch.ones(3), [torch.ones(1)], 5, {}])
def test_torch_file_holding_no_dict(tmp_path: Path, obj: object) -> None:
    torch.save(obj, tmp_path / "step_1.pt")
    with expect(CorruptCheckpointError, "not a state dict|no state dict"):
        open_checkpoint(only(tmp_path))


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_missing_shard_names_the_shard(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "checkpoint-10"
    write_hf_checkpoint(folder, tiny_state_dict(), shards=3, kind=kind, extras=False)
    base, ext = ("model", "safetensors") if kind == "safetensors" else ("pytorch_model", "bin")
    missing = folder / f"{base}-00002-of-00003.{ext}"
    missing.unlink()
    with expect(CorruptCheckpointError, "listed in .*index.json is missing") as info:
        open_checkpoint(only(tmp_path))
    assert info.value.path == missing


def test_corrupt_index_json(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint-10"
    write_hf_checkpoint(folder, tiny_state_dict(), shards=2, extras=False)
    index = folder / "model.safetensors.index.json"
    index.write_text('{"weight_map": {"a": ')
    with expect(CorruptCheckpointError, "not valid JSON") as info:
        open_checkpoint(only(tmp_path))
    assert info.value.path == index and isinstance(info.value.__cause__, ValueError)


def test_index_shard_outside_folder_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint-10"
    write_hf_checkpoint(folder, {"a": torch.ones(1)}, shards=2, extras=False)
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "../x.safetensors"}}')
    with expect(CorruptCheckpointError, "bad shard file"):
        open_checkpoint(only(tmp_path))


def test_shard_damaged_after_open_fails_during_iteration(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint-10"
    sd = tiny_state_dict()
    write_hf_checkpoint(folder, sd, shards=2, extras=False)
    reader = open_checkpoint(only(tmp_path))
    first, second = folder / "model-00001-of-00002.safetensors", folder / "model-00002-of-00002.safetensors"
    names = [n for n in reader.tensor_info() if reader._where[n] == first][:1]
    names += [n for n in reader.tensor_info() if reader._where[n] == second][:1]
    it = reader.iter_tensors(names)
    name, tensor = next(it)  # one tensor at a time: the second shard is not read yet
    assert torch.equal(tensor, sd[name])
    second.write_bytes(second.read_bytes()[:100])
    with pytest.raises(CorruptCheckpointError) as info:
        next(it)
    assert info.value.path == second and info.value.__cause__ is not None
    reader.close()


def test_unknown_name_and_closed_reader(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "step_1.safetensors", {"w": torch.ones(1)})
    reader = open_checkpoint(only(tmp_path))
    with expect(CheckpointError, "no tensor named 'v'"):
        reader.iter_tensors(["w", "v"])
    reader.close()
    with expect(CheckpointError, "closed"):
        reader.iter_tensors(["w"])


def _dcp_with_payload(tmp_path: Path, payload: object) -> Path:
    """A valid single-process DCP save whose .metadata then gets ``payload`` planted in it."""
    from torch.distributed.checkpoint.metadata import Metadata

    folder = tmp_path / "run" / "step-3"
    write_dcp(folder, {"model": {"w": torch.ones(2)}})
    meta = folder / ".metadata"
    md = pickle.loads(meta.read_bytes())  # our own freshly written file: trusted
    assert isinstance(md, Metadata)
    md.planner_data = payload
    meta.write_bytes(pickle.dumps(md))
    return meta


@pytest.mark.parametrize("wrap", ["inside-metadata", "whole-file"])
def test_malicious_dcp_metadata_is_refused_and_never_runs(tmp_path: Path, wrap: str) -> None:
    sentinel = tmp_path / "pwned"
    if wrap == "inside-metadata":
        meta = _dcp_with_payload(tmp_path, {"w": SideEffect(sentinel)})
    else:
        meta = tmp_path / "run" / "step-3" / ".metadata"
        meta.parent.mkdir(parents=True)
        meta.write_bytes(malicious_pickle_bytes(sentinel, protocol=4))
    with expect(UnsafeCheckpointError, r"refusing to unpickle \S*system \(") as info:
        open_checkpoint(only(meta.parent.parent))
    assert info.value.path == meta
    assert not sentinel.exists()
    pickle.loads(meta.read_bytes())  # what torch's FileSystemReader would do: it runs the payload
    assert sentinel.exists()


def test_dcp_metadata_with_other_globals_is_refused(tmp_path: Path) -> None:
    meta = _dcp_with_payload(tmp_path, {"f": print})
    with expect(UnsafeCheckpointError, "builtins.print"):
        open_checkpoint(only(meta.parent.parent))


def test_dcp_truncated_data_file(tmp_path: Path) -> None:
    folder = tmp_path / "step-3"
    write_dcp(folder, {"model": tiny_state_dict()})
    data = next(folder.glob("*.distcp"))
    data.write_bytes(data.read_bytes()[:500])
    with expect(CorruptCheckpointError, "truncated") as info:
        open_checkpoint(only(tmp_path))
    assert info.value.path == data


def test_dcp_garbage_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "step-3"
    folder.mkdir()
    (folder / ".metadata").write_bytes(b"\x80\x04garbage")
    with expect(CorruptCheckpointError, "damaged DCP metadata") as info:
        open_checkpoint(only(tmp_path))
    assert info.value.path == folder / ".metadata" and info.value.__cause__ is not None
