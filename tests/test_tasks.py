"""Task generators against brute-force definitions written out in plain Python."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from spectral_edge.errors import ConfigError
from spectral_edge.tasks import dyck, lm, modular, scan

# ---------------------------------------------------------------- modular arithmetic

BRUTE = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "x2y2": lambda a, b, p: (a**2 + b**2) % p,
    "x2xyy2": lambda a, b, p: (a**2 + a * b + b**2) % p,
    "x3xy": lambda a, b, p: (a**3 + a * b) % p,
}


@pytest.mark.parametrize("op", sorted(BRUTE))
def test_modular_labels_sizes_and_split(op: str) -> None:
    p = 23
    d = modular.make_modular(op, p=p, train_frac=0.5, seed=3)
    lo = 1 if op == "mul" else 0
    n = (p - lo) ** 2
    assert len(d.train_x) == int(0.5 * n) and len(d.train_x) + len(d.test_x) == n
    rows = [tuple(r) for r in torch.cat([d.train_x, d.test_x]).tolist()]
    assert sorted(rows) == [(a, b) for a in range(lo, p) for b in range(lo, p)]  # every pair once
    assert not set(map(tuple, d.train_x.tolist())) & set(map(tuple, d.test_x.tolist()))
    for x, y in ((d.train_x, d.train_y), (d.test_x, d.test_y)):
        assert [BRUTE[op](a, b, p) for a, b in x.tolist()] == y.tolist()
    assert d.train_x.dtype == torch.long and d.train_y.shape == (len(d.train_x),)


def test_modular_p97_sizes_and_mul_excludes_zero() -> None:
    assert len(modular.make_modular("add", 97).train_x) == 4704
    d = modular.make_modular("mul", 97)
    assert len(d.train_x) + len(d.test_x) == 96 * 96
    assert int(torch.cat([d.train_x, d.test_x]).min()) == 1


def test_modular_determinism_and_seed_dependence() -> None:
    a, b = modular.make_modular("add", 31, seed=1), modular.make_modular("add", 31, seed=1)
    c = modular.make_modular("add", 31, seed=2)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)


def test_modular_does_not_touch_global_rng() -> None:
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    modular.make_modular("add", 31, seed=5)
    g = torch.Generator().manual_seed(0)
    modular.sample_batch(torch.arange(10), batch_size=4, generator=g)
    assert torch.equal(torch.rand(3), before)


def test_modular_aliases_and_errors() -> None:
    assert modular.canonical_op("x2_y2") == "x2y2"
    with pytest.raises(ConfigError):
        modular.make_modular("div", 7)
    with pytest.raises(ConfigError):
        modular.make_modular("add", 7, train_frac=1.0)


@pytest.mark.parametrize("op,p,val_frac", [("add", 97, 0.25), ("mul", 23, 0.1), ("x3xy", 11, 0.3)])
def test_modular_three_way_split(op: str, p: int, val_frac: float) -> None:
    two = modular.make_modular(op, p=p, seed=5)
    three = modular.make_modular(op, p=p, seed=5, val_frac=val_frac)
    # the training pairs do not depend on the validation split (the trajectory is the same)
    assert torch.equal(two.train_x, three.train_x) and torch.equal(two.train_y, three.train_y)
    n = len(two.train_x) + len(two.test_x)
    assert len(three.val_x) == int(val_frac * n) > 0
    # validation and test partition the held-out pairs, in the two-way split's order
    assert torch.equal(torch.cat([three.val_x, three.test_x]), two.test_x)
    keys = [set(map(tuple, x.tolist())) for x in (three.train_x, three.val_x, three.test_x)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert torch.equal(three.val_y, modular.modular_labels(op, three.val_x, p))
    assert len(two.val_x) == 0 and two.val_frac == 0.0


def test_modular_three_way_split_errors() -> None:
    for bad in (-0.1, 0.5, 0.7):
        with pytest.raises(ConfigError, match="val_frac"):
            modular.make_modular("add", p=11, val_frac=bad)
    with pytest.raises(ConfigError, match="empty split"):
        modular.make_modular("add", p=3, train_frac=0.5, val_frac=0.05)  # 9 pairs: no validation pair


def test_multitask_labels() -> None:
    p = 13
    d = modular.make_multitask_modular(("add", "mul", "x2y2"), p=p, seed=0)
    assert d.train_y.shape == (len(d.train_x), 3)
    assert len(d.train_x) + len(d.test_x) == (p - 1) ** 2  # mul present -> nonzero pairs
    for (a, b), ys in zip(d.test_x.tolist(), d.test_y.tolist()):
        assert ys == [BRUTE["add"](a, b, p), BRUTE["mul"](a, b, p), BRUTE["x2y2"](a, b, p)]
    d2 = modular.make_multitask_modular(("add", "sub"), p=p, seed=0)
    assert len(d2.train_x) + len(d2.test_x) == p * p


def test_sample_batch_with_replacement_and_seeded() -> None:
    x = torch.arange(7)
    y = x * 10
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    bx, by = modular.sample_batch(x, y, batch_size=50, generator=g1)
    assert torch.equal(by, bx * 10) and len(bx) == 50 and len(set(bx.tolist())) <= 7
    assert torch.equal(bx, modular.sample_batch(x, y, batch_size=50, generator=g2)[0])


# ---------------------------------------------------------------- Dyck-1


def brute_depths(tokens: list[int]) -> list[int]:
    out, d = [], 0
    for t in tokens:
        if t == dyck.PAD:
            out.append(-100)
            continue
        d = d + 1 if t == dyck.OPEN else d - 1
        out.append(d)
    return out


def test_dyck_pool_split_and_labels() -> None:
    d = dyck.make_dyck(seed=0)
    assert d.train_x.shape == (50, 24) and d.test_x.shape == (5000, 24) and d.n_classes == 13
    for x, y in ((d.train_x, d.train_y), (d.test_x[:500], d.test_y[:500])):
        for row, lab in zip(x.tolist(), y.tolist()):
            real = [t for t in row if t != dyck.PAD]
            assert row[: len(real)] == real  # right padding only
            assert 2 <= len(real) <= 24 and len(real) % 2 == 0
            assert lab == brute_depths(row)
            assert min(lab[: len(real)]) >= 0 and lab[len(real) - 1] == 0  # balanced, never negative
            assert max(lab) <= 12


def test_dyck_determinism_seed_and_distinct() -> None:
    a, b, c = dyck.make_dyck(seed=1), dyck.make_dyck(seed=1), dyck.make_dyck(seed=2)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    u = dyck.make_dyck(n_pool=600, n_train=50, seed=0, distinct=True)
    rows = [tuple(r) for r in torch.cat([u.train_x, u.test_x]).tolist()]
    assert len(set(rows)) == 600
    assert not set(map(tuple, u.train_x.tolist())) & set(map(tuple, u.test_x.tolist()))


def test_dyck_ood_batch_and_errors() -> None:
    x, y = dyck.dyck_batch(20, max_pairs=20, ctx_len=48, seed=3)
    assert x.shape == y.shape == (20, 48)
    assert all(lab == brute_depths(row) for row, lab in zip(x.tolist(), y.tolist()))
    with pytest.raises(ConfigError):
        dyck.make_dyck(ctx_len=10)


# ---------------------------------------------------------------- SCAN

SCAN_EXAMPLES = {
    "jump": "I_JUMP",
    "jump left": "I_TURN_LEFT I_JUMP",
    "walk around right": " ".join(["I_TURN_RIGHT I_WALK"] * 4),
    "look opposite left thrice": " ".join(["I_TURN_LEFT I_TURN_LEFT I_LOOK"] * 3),
    "run twice and jump": "I_RUN I_RUN I_JUMP",
    "jump after walk": "I_WALK I_JUMP",
    "jump twice after walk left": "I_TURN_LEFT I_WALK I_JUMP I_JUMP",
    "turn left": "I_TURN_LEFT",
    "turn around left": "I_TURN_LEFT I_TURN_LEFT I_TURN_LEFT I_TURN_LEFT",
    "turn opposite right twice": "I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT",
    "walk right twice and turn left": "I_TURN_RIGHT I_WALK I_TURN_RIGHT I_WALK I_TURN_LEFT",
    "look after turn right thrice": "I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT I_LOOK",
}


@pytest.mark.parametrize("command", sorted(SCAN_EXAMPLES))
def test_scan_hand_checked(command: str) -> None:
    assert scan.interpret(command) == SCAN_EXAMPLES[command]


def test_scan_command_count_and_lengths() -> None:
    cmds = scan.scan_commands()
    assert len(cmds) == len(set(cmds)) == scan.N_COMMANDS == 20910
    assert max(len(c.split()) for c in cmds) == 9
    assert max(len(scan.interpret(c).split()) for c in cmds) == 48
    assert "jump around left twice and walk opposite right thrice" in set(cmds)
    with pytest.raises(ConfigError):
        scan.interpret("turn")
    with pytest.raises(ConfigError):
        scan.interpret("walk sideways")


def test_scan_split_encoding_and_exact_match() -> None:
    d = scan.make_scan(n_train=2048, seed=0)
    assert d.train_src.shape == (2048, 9) and d.train_tgt_in.shape == (2048, 49)
    assert len(d.test_commands) == 20910 - int(0.8 * 20910) == 4182
    assert not set(d.train_commands) & set(d.test_commands)
    v = d.vocab
    for i in range(0, 2048, 97):
        c = d.train_commands[i]
        words = [v.src_tokens[j] for j in d.train_src[i].tolist() if j != scan.PAD]
        assert " ".join(words) == c
        assert v.decode_actions(d.train_tgt_in[i][1:]) == scan.interpret(c)
        assert d.train_tgt_in[i][0] == scan.SOS
        out = d.train_tgt_out[i][d.train_tgt_out[i] != scan.IGNORE_INDEX].tolist()
        assert out[-1] == scan.EOS and v.decode_actions(out) == scan.interpret(c)
    assert torch.equal(scan.make_scan(seed=0).train_src, d.train_src)
    assert not torch.equal(scan.make_scan(seed=1).train_src, d.train_src)
    assert scan.make_scan(n_test=500, seed=0).test_src.shape == (500, 9)
    # exact match: the targets themselves match; one changed token does not
    tgt = d.test_tgt_out[:5]
    pred = tgt.clamp(min=0)
    assert scan.exact_match(pred, tgt).all()
    pred2 = pred.clone()
    pred2[0, 0] = scan.PAD
    assert scan.exact_match(pred2, tgt).tolist() == [False, True, True, True, True]


# ---------------------------------------------------------------- language modelling


def test_story_corpus_and_batches() -> None:
    c = lm.make_story_corpus(n_stories=200, seed=0)
    assert c.train.dtype == torch.long and len(c.val) > 0
    text = c.tokenizer.decode(c.train[:400])
    assert text.startswith("Once upon a time")
    assert lm.generate_stories(5, seed=1) == lm.generate_stories(5, seed=1) != lm.generate_stories(5, seed=2)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    x, y = lm.lm_batch(c.train, batch_size=8, block_size=32, generator=g1)
    assert x.shape == y.shape == (8, 32)
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = lm.lm_batch(c.train, batch_size=8, block_size=32, generator=g2)
    assert torch.equal(x, x2)
    # every window is a real slice of the stream
    s = c.tokenizer.decode(c.train)
    assert all(c.tokenizer.decode(row) in s for row in x)
    with pytest.raises(ConfigError):
        lm.lm_batch(c.train[:10], batch_size=2, block_size=32, generator=g1)


def test_char_tokenizer_roundtrip() -> None:
    tok = lm.CharTokenizer.from_text("hello world")
    assert tok.vocab_size == len(set("hello world"))
    assert tok.decode(tok.encode("hold the door"[:4])) == "hold"
    with pytest.raises(ConfigError):
        tok.encode("xyz")


def test_load_text_corpus_local_file(tmp_path, monkeypatch) -> None:
    pytest.importorskip("datasets", reason="Hugging Face datasets is not installed")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    f = tmp_path / "tiny.txt"
    f.write_text("Once upon a time there was a cat.\n\nThe cat sat.\nThe end.\n")
    texts = lm.load_text_corpus(data_files=f, cache_dir=tmp_path / "cache")
    assert texts == ["Once upon a time there was a cat.", "The cat sat.", "The end."]
    assert lm.load_text_corpus(data_files=[f], max_examples=2, cache_dir=tmp_path / "cache") == texts[:2]
    c = lm.corpus_from_texts(texts, val_frac=0.25)
    assert c.tokenizer.decode(torch.cat([c.train, c.val])) == "\n".join(texts)
    with pytest.raises(ConfigError):
        lm.load_text_corpus(data_files=tmp_path / "missing.txt")


def test_import_tasks_is_light() -> None:
    code = ("import sys, spectral_edge.tasks, spectral_edge.models; "
            "print([m for m in ('datasets', 'matplotlib', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
