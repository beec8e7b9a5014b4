"""Bad-input corpus of the checkpoint readers, through ``spectral-edge analyze`` (see badinput.py):
exit 2, one stderr line naming the problem and the file, no traceback, nothing changed or created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from badinput import Case, check
from helpers_ckpt import deny_listing, write_dcp, write_hf_checkpoint, write_safetensors

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _run(d: Path, n: int = 5, name: str = "step_{}.safetensors", extra: dict | None = None) -> Path:
    """``n`` safetensors checkpoints of two small tensors in ``d/run``; ``extra`` adds tensors at one step."""
    folder = d / "run"
    g = torch.Generator().manual_seed(0)
    for s in range(n):
        st = {"a": torch.randn(3, 2, generator=g), "b": torch.randn(4, generator=g)}
        st.update((extra or {}).get(s, {}))
        write_safetensors(folder / name.format(s), st)
    return folder


def _analyze(folder: Path, *flags: str) -> list[str]:
    return ["analyze", str(folder), "-w", "2", "--out", str(folder.parent / "m.csv"), *flags]


def _big_step(d: Path) -> list[str]:
    folder = _run(d)
    write_safetensors(folder / ("step_1" + "0" * 25 + ".safetensors"), {"a": torch.ones(3, 2), "b": torch.ones(4)})
    return _analyze(folder)


def _dangling(d: Path) -> list[str]:
    folder = _run(d)
    (folder / "step_9.safetensors").symlink_to(d / "moved" / "step_9.safetensors")
    return _analyze(folder)


def _loop(d: Path) -> list[str]:
    folder = _run(d)
    (folder / "checkpoint-9").symlink_to(folder / "checkpoint-9")
    return _analyze(folder)


def _same_dtype_run(d: Path, dtype: torch.dtype) -> list[str]:
    folder = d / "run"
    for s in range(4):
        write_safetensors(folder / f"step_{s}.safetensors", {"a": (torch.arange(6) + s).to(dtype)})
    return _analyze(folder)


def _collision(d: Path) -> list[str]:
    folder = d / "run"
    g = torch.Generator().manual_seed(0)
    for s in range(4):
        write_safetensors(folder / f"step_{s}.safetensors",
                          {"module.x": torch.randn(3, generator=g), "x": torch.randn(3, generator=g)})
    return _analyze(folder)


def _empty(d: Path) -> list[str]:
    folder = d / "run"
    for s in range(4):
        write_safetensors(folder / f"step_{s}.safetensors", {"x": torch.zeros(0, 3)})
    return _analyze(folder)


def _ambiguous(d: Path) -> list[str]:
    folder = _run(d, 4, name="step_{}.pt")
    for p in sorted(folder.glob("*.pt")):
        p.unlink()
    g = torch.Generator().manual_seed(0)
    for s in range(4):  # {epoch}-{step}-{train_loss:.2f} without auto_insert_metric_name, and no global_step stored
        torch.save({"state_dict": {"w": torch.randn(3, generator=g)}, "epoch": 0}, folder / f"0-{s}-1.{s}0.ckpt")
    return _analyze(folder)


def _lightning_v1(d: Path) -> list[str]:
    folder = d / "run"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for s in range(1, 5):
        torch.save({"state_dict": {"w": torch.randn(3, generator=g)}, "global_step": s}, folder / f"epoch=0-step={s}.ckpt")
    torch.save({"state_dict": {"w": torch.randn(3, generator=g)}, "global_step": 3}, folder / "epoch=0-step=3-v1.ckpt")
    return _analyze(folder)


def _broken_tie(d: Path) -> list[str]:
    folder = d / "run"
    g = torch.Generator().manual_seed(0)
    for s in range(5):
        w = torch.randn(4, 3, generator=g)
        head = w.clone()
        if s == 1:
            head[0, 0] += 1.0
        write_dcp(folder / f"step_{s}", {"emb.weight": w, "head.weight": head})
    return _analyze(folder, "--json")  # --json: no "tied weights" warning line before the error


def _missing_weights(d: Path) -> list[str]:
    folder = d / "run"
    for s in range(1, 4):
        write_hf_checkpoint(folder / f"checkpoint-{s}", {"w": torch.full((2,), float(s))})
    (folder / "checkpoint-2" / "model.safetensors").unlink()
    return _analyze(folder)


CASES = [
    Case("step-over-2^63", _big_step, expect=["step_1" + "0" * 25 + ".safetensors", "too large"]),
    Case("step-token-over-2^63", lambda d: _analyze(_run(d, 3, name="epoch=0-step=" + "9" * 30 + "{}.pt")),
         expect=["epoch=0-step=" + "9" * 30 + "0.pt", "too large"]),
    Case("new-tensor-mid-run", lambda d: _analyze(_run(d, extra={3: {"c": torch.ones(2)}})),
         expect=["step_3.safetensors", "'c'", "appears"]),
    Case("dangling-symlink", _dangling, expect=["step_9.safetensors", "broken symbolic link"]),
    Case("looping-symlink", _loop, expect=["checkpoint-9", "symbolic link loop"]),
    Case("int-only", lambda d: _same_dtype_run(d, torch.int64), expect=["step_0.safetensors", "'a' (int64)",
                                                                         "floating-point"]),
    Case("complex-only", lambda d: _same_dtype_run(d, torch.complex64),
         expect=["step_0.safetensors", "'a' (complex64)", "floating-point"]),
    Case("name-collision", _collision, expect=["step_0.safetensors", "'module.x'", "'x'"]),
    Case("all-empty", _empty, expect=["step_0.safetensors", "'x'", "no elements"]),
    Case("ambiguous-step", _ambiguous, expect=["0-0-1.00.ckpt", "several numbers", "step_<N>"]),
    Case("lightning-v1-duplicate", _lightning_v1,
         expect=["step 3", "epoch=0-step=3.ckpt", "epoch=0-step=3-v1.ckpt"]),
    Case("value-tie-broken-mid-run", _broken_tie, expect=["step_1", "'head.weight'", "'emb.weight'", "differ"]),
    Case("hf-folder-without-weights", _missing_weights, expect=["checkpoint-2", "no model weights"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


# ----------------------------------------------------------------------------- unreadable paths
# Tests run as root, where chmod does not keep anyone out: the refusal is simulated where the
# operating system would give it (listing a folder, opening a file).


_deny_listing = deny_listing  # tests/helpers_ckpt.py


@pytest.mark.parametrize("where", ["run", "checkpoint-2"])
def test_an_unreadable_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    def make(d: Path) -> list[str]:
        for s in range(1, 5):
            write_hf_checkpoint(d / "run" / f"checkpoint-{s}", {"w": torch.full((2,), float(s))}, extras=False)
        denied = d / "run" if where == "run" else d / "run" / where
        _deny_listing(monkeypatch, denied)
        return _analyze(d / "run")

    check(Case(f"unreadable-{where}", make, expect=[where, "Permission denied"]), tmp_path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_an_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    import builtins

    def make(d: Path) -> list[str]:
        folder = _run(d, 4, name="step_{}" + suffix) if suffix == ".safetensors" else d / "run"
        if suffix == ".pt":
            for s in range(4):
                (d / "run").mkdir(exist_ok=True)
                torch.save({"w": torch.full((2,), float(s))}, d / "run" / f"step_{s}.pt")
        denied = folder / f"step_2{suffix}"
        real = builtins.open

        def fake_open(file, *a, **k):
            if isinstance(file, (str, bytes, os.PathLike)) and Path(os.fsdecode(file)) == denied:
                raise PermissionError(13, "Permission denied", str(file))
            return real(file, *a, **k)

        monkeypatch.setattr(builtins, "open", fake_open)
        return _analyze(folder)

    check(Case(f"unreadable-file{suffix}", make, expect=[f"step_2{suffix}", "Permission denied"]), tmp_path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file: chmod keeps no one out")
def test_a_folder_without_permission_is_named_for_real(tmp_path: Path) -> None:
    def make(d: Path) -> list[str]:
        folder = _run(d, 4)
        folder.chmod(0)
        return _analyze(folder)

    try:
        check(Case("chmod-000", make, expect=["run", "Permission denied"]), tmp_path)
    finally:
        (tmp_path / "run").chmod(0o755)
