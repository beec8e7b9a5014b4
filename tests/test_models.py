"""Reference models: sizes, names, shapes, masking, and that a few steps of training lower the loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spectral_edge.errors import ConfigError
from spectral_edge.models import (
    Attention,
    GPTConfig,
    GrokTransformer,
    MultitaskTransformer,
    Seq2SeqConfig,
    Seq2SeqTransformer,
    TinyGPT,
    TransformerConfig,
)
from spectral_edge.tasks import dyck, lm, modular, scan


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def train(model, loss_fn, steps: int, lr: float = 1e-3, wd: float = 1.0) -> tuple[float, float]:
    """Plain AdamW loop (betas 0.9, 0.98, clip 1.0); returns (first loss, mean of last 5 losses)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd, betas=(0.9, 0.98))
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses[0], sum(losses[-5:]) / 5


# ---------------------------------------------------------------- attention


def reference_attention(att: Attention, x, ctx, causal=False, pad=None):
    """softmax(QKᵀ/√d_h + mask) V written out with plain tensor ops."""
    B, T, d = x.shape
    S, h = ctx.shape[1], att.n_heads
    q = att.q_proj(x).view(B, T, h, -1).transpose(1, 2)
    k = att.k_proj(ctx).view(B, S, h, -1).transpose(1, 2)
    v = att.v_proj(ctx).view(B, S, h, -1).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    if causal:
        s = s.masked_fill(~torch.ones(T, S, dtype=torch.bool).tril(), float("-inf"))
    if pad is not None:
        s = s.masked_fill(pad[:, None, None, :], float("-inf"))
    y = s.softmax(-1) @ v
    return att.o_proj(y.transpose(1, 2).reshape(B, T, d))


@pytest.mark.parametrize("T", [2, 5, 20])  # short sequences take the "math" SDPA path on CPU
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_reference(T: int, causal: bool) -> None:
    torch.manual_seed(0)
    att = Attention(32, 4)
    x = torch.randn(3, T, 32)
    pad = torch.zeros(3, T, dtype=torch.bool)
    pad[1, T - 1] = True
    torch.testing.assert_close(att(x, causal=causal), reference_attention(att, x, x, causal))
    torch.testing.assert_close(att(x, causal=causal, key_padding_mask=pad),
                               reference_attention(att, x, x, causal, pad))
    ctx = torch.randn(3, T + 3, 32)
    torch.testing.assert_close(att(x, ctx), reference_attention(att, x, ctx))


def test_attention_init_like_multihead_attention() -> None:
    torch.manual_seed(0)
    att = Attention(128, 4)
    bound = math.sqrt(6 / (4 * 128))
    for lin in (att.q_proj, att.k_proj, att.v_proj):
        assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.9 * bound
    assert all(float(lin.bias.detach().abs().max()) == 0.0 for lin in (att.q_proj, att.k_proj, att.v_proj, att.o_proj))
    with pytest.raises(ConfigError):
        Attention(30, 4)


# ---------------------------------------------------------------- the reference grokking model


def test_reference_model_size_and_names() -> None:
    m = GrokTransformer(TransformerConfig.modular(97))
    assert abs(n_params(m) - 290_000) < 0.1 * 290_000
    assert n_params(m) == 290_401  # same count as the authors' nn.TransformerEncoder model
    names = {n for n, _ in m.named_parameters()}
    for i in range(2):
        for w in "qkvo":
            assert f"layers.{i}.attn.{w}_proj.weight" in names
    attn = [n for n in names if ".attn." in n and n.endswith(".weight")]
    assert len(attn) == 8
    assert not list(m.buffers())  # no causal-mask buffers to confuse parameter selection
    assert {"tok_emb.weight", "pos_emb.weight", "head.weight", "ln_f.weight"} <= names


def test_modular_model_shapes_and_first_position_readout() -> None:
    torch.manual_seed(0)
    m = GrokTransformer(TransformerConfig.modular(11))
    x = torch.randint(0, 11, (7, 2))
    assert m(x).shape == (7, 11)
    assert m.residual(x).shape == (7, 128)
    with pytest.raises(ConfigError):
        m(torch.zeros(2, 3, dtype=torch.long))  # only two positions


def test_causal_mask_blocks_the_future() -> None:
    torch.manual_seed(0)
    x = torch.randint(0, 2, (4, 24))
    t = 10
    x2 = x.clone()
    x2[:, t:] = 1 - x2[:, t:]  # perturb every later token
    causal = GrokTransformer(TransformerConfig.dyck()).eval()
    out, out2 = causal(x), causal(x2)
    assert out.shape == (4, 24, 13)
    torch.testing.assert_close(out[:, :t], out2[:, :t])
    assert not torch.allclose(out[:, t:], out2[:, t:])
    # the same model without the mask does see the future (the test can fail)
    full = GrokTransformer(TransformerConfig.dyck(causal=False)).eval()
    assert not torch.allclose(full(x)[:, :t], full(x2)[:, :t])


def test_multitask_model() -> None:
    torch.manual_seed(0)
    cfg = TransformerConfig.modular(13, tasks=("add", "mul", "x2y2"))
    m = MultitaskTransformer(cfg)
    assert {f"heads.{t}.weight" for t in cfg.tasks} <= {n for n, _ in m.named_parameters()}
    out = m(torch.randint(0, 13, (5, 2)))
    assert list(out) == ["add", "mul", "x2y2"] and all(v.shape == (5, 13) for v in out.values())
    with pytest.raises(ConfigError):
        MultitaskTransformer(TransformerConfig.modular(13))
    dual = MultitaskTransformer(TransformerConfig.modular(97, tasks=("add", "mul")))
    assert abs(n_params(dual) - 303_000) < 2_000  # authors' README: ~303k


# ---------------------------------------------------------------- training runs per task


def test_modular_training_lowers_loss() -> None:
    torch.manual_seed(0)
    d = modular.make_modular("add", p=97, seed=42)
    m = GrokTransformer(TransformerConfig.modular(97))
    g = torch.Generator().manual_seed(0)

    def loss():
        x, y = modular.sample_batch(d.train_x, d.train_y, batch_size=512, generator=g)
        return F.cross_entropy(m(x), y)

    first, last = train(m, loss, 100)
    assert first > math.log(97) - 0.5 and last < first - 0.5


def test_multitask_training_lowers_loss() -> None:
    torch.manual_seed(0)
    d = modular.make_multitask_modular(("add", "mul"), p=31, seed=0)
    m = MultitaskTransformer(TransformerConfig.modular(31, tasks=d.ops))
    g = torch.Generator().manual_seed(0)

    def loss():
        x, y = modular.sample_batch(d.train_x, d.train_y, batch_size=256, generator=g)
        return m.loss(x, y)

    first, last = train(m, loss, 60)
    assert last < first - 0.5


def test_dyck_training_lowers_loss() -> None:
    torch.manual_seed(0)
    d = dyck.make_dyck(seed=0)
    m = GrokTransformer(TransformerConfig.dyck())
    g = torch.Generator().manual_seed(0)

    def loss():
        x, y = modular.sample_batch(d.train_x, d.train_y, batch_size=50, generator=g)
        return F.cross_entropy(m(x).reshape(-1, 13), y.reshape(-1), ignore_index=dyck.IGNORE_INDEX)

    first, last = train(m, loss, 60)
    assert last < 0.5 * first


def test_gpt_training_lowers_loss_and_causal() -> None:
    torch.manual_seed(0)
    c = lm.make_story_corpus(n_stories=300, seed=0)
    m = TinyGPT(GPTConfig(vocab_size=c.vocab_size, block_size=64, n_layer=2, d_model=64, n_head=4))
    assert m.lm_head.weight is m.tok_emb.weight
    names = [n for n, _ in m.named_parameters()]
    assert "lm_head.weight" not in names and "layers.1.attn.o_proj.weight" in names  # tied weight counted once
    x = torch.randint(0, c.vocab_size, (2, 40))
    x2 = x.clone()
    x2[:, 25:] = (x2[:, 25:] + 1) % c.vocab_size
    m.eval()
    assert m(x).shape == (2, 40, c.vocab_size)
    torch.testing.assert_close(m(x)[:, :25], m(x2)[:, :25])
    m.train()
    g = torch.Generator().manual_seed(0)

    def loss():
        return m.loss(*lm.lm_batch(c.train, batch_size=16, block_size=64, generator=g))

    first, last = train(m, loss, 60, lr=3e-3, wd=0.0)
    assert first > math.log(c.vocab_size) - 0.5 and last < first - 0.7
    untied = TinyGPT(GPTConfig(vocab_size=50, n_layer=1, d_model=32, tie_weights=False))
    assert "lm_head.weight" in {n for n, _ in untied.named_parameters()}


def test_seq2seq_reference_size_and_names() -> None:
    m = Seq2SeqTransformer(Seq2SeqConfig())
    assert 3.9e6 < n_params(m) < 4.0e6  # same count as nn.Transformer(256, 4, 3, 3, 512)
    names = {n for n, _ in m.named_parameters()}
    for w in "qkvo":
        assert f"encoder.2.attn.{w}_proj.weight" in names and f"decoder.0.cross_attn.{w}_proj.weight" in names
    src = torch.randint(3, 14, (2, 9))
    assert m(src, torch.randint(0, 9, (2, 49))).shape == (2, 49, 9)


def test_seq2seq_masks_greedy_and_training() -> None:
    torch.manual_seed(0)
    d = scan.make_scan(n_train=256, n_test=64, seed=0)
    m = Seq2SeqTransformer(Seq2SeqConfig(d_model=64, d_ff=128, n_enc_layers=2, n_dec_layers=2))
    short = ((d.test_src != scan.PAD).sum(1) <= 6).nonzero()[:4, 0]  # commands of at most 6 words
    src, tin = d.test_src[short], d.test_tgt_in[short]
    m.eval()
    out = m(src, tin)
    assert out.shape == (4, 49, 9)
    # decoder is causal: changing later decoder inputs leaves earlier logits alone
    tin2 = tin.clone()
    tin2[:, 5:] = 3
    torch.testing.assert_close(m(src, tin2)[:, :5], out[:, :5])
    assert not torch.allclose(m(src, tin2)[:, 5:], out[:, 5:])
    # source padding is masked: dropping trailing all-PAD columns changes nothing
    L = int((src != scan.PAD).sum(1).max())
    assert L < src.shape[1]
    torch.testing.assert_close(m(src[:, :L], tin), out)
    # greedy decoding agrees with teacher forcing on its own output
    pred = m.greedy_decode(src, max_len=12)
    assert pred.shape == (4, 12)
    tf = m(src, torch.cat([torch.full((4, 1), scan.SOS), pred[:, :-1]], 1)).argmax(-1)
    for i in range(4):
        stop = (pred[i] == scan.EOS).nonzero()
        n = int(stop[0]) + 1 if len(stop) else 12
        assert torch.equal(tf[i, :n], pred[i, :n])
    m.train()
    g = torch.Generator().manual_seed(0)

    def loss():
        s, ti, to = modular.sample_batch(d.train_src, d.train_tgt_in, d.train_tgt_out, batch_size=32, generator=g)
        logits = m(s, ti)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), to.reshape(-1), ignore_index=scan.IGNORE_INDEX)

    first, last = train(m, loss, 40, lr=1e-3)
    assert last < 0.5 * first
