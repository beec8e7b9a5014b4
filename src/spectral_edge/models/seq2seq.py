"""Encoder–decoder transformer for SCAN (3 + 3 pre-norm layers, d = 256), with greedy decoding.

It reuses the blocks of the grokking transformer: the encoder's self-attention is
bidirectional with source padding masked; each decoder block has causal self-attention
(``decoder.{i}.attn``) and cross-attention to the encoder output (``decoder.{i}.cross_attn``),
both with separate Q, K, V, O projections. Sizes follow the authors' SCAN runs (4 heads,
d_ff = 512, no dropout). Training uses teacher forcing (decoder input = SOS + actions);
:meth:`Seq2SeqTransformer.greedy_decode` produces the outputs scored by exact match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .transformer import Block

__all__ = ["Seq2SeqConfig", "Seq2SeqTransformer"]


@dataclass
class Seq2SeqConfig:
    """SCAN encoder–decoder; defaults are the papers' model with the library's SCAN vocabularies."""

    src_vocab_size: int = 14  # PAD + 13 command words
    tgt_vocab_size: int = 9  # PAD, SOS, EOS + 6 actions
    max_src_len: int = 9  # longest command (words)
    max_tgt_len: int = 49  # longest action sequence (48) + SOS/EOS
    d_model: int = 256  # residual width
    n_heads: int = 4  # attention heads (head dim 64)
    d_ff: int = 512  # MLP hidden width
    n_enc_layers: int = 3  # encoder blocks
    n_dec_layers: int = 3  # decoder blocks (self + cross attention)
    pad_id: int = 0  # padding id in source and target
    sos_id: int = 1  # decoder start token
    eos_id: int = 2  # end of sequence


class Seq2SeqTransformer(nn.Module):
    """logits (B, T, V_tgt) = Decoder(tgt_in (B, T), Encoder(src (B, S)))."""

    def __init__(self, cfg: Seq2SeqConfig | None = None):
        super().__init__()
        self.cfg = c = cfg or Seq2SeqConfig()
        self.src_tok_emb = nn.Embedding(c.src_vocab_size, c.d_model)
        self.src_pos_emb = nn.Embedding(c.max_src_len, c.d_model)
        self.tgt_tok_emb = nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.tgt_pos_emb = nn.Embedding(c.max_tgt_len, c.d_model)
        self.encoder = nn.ModuleList(Block(c.d_model, c.n_heads, c.d_ff) for _ in range(c.n_enc_layers))
        self.decoder = nn.ModuleList(Block(c.d_model, c.n_heads, c.d_ff, cross=True) for _ in range(c.n_dec_layers))
        self.enc_ln = nn.LayerNorm(c.d_model)
        self.dec_ln = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.tgt_vocab_size)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, S, d) and source padding mask (B, S) (True = PAD)."""
        pad = src == self.cfg.pad_id  # (B, S)
        h = self.src_tok_emb(src) + self.src_pos_emb.weight[: src.shape[1]]  # (B, S, d)
        for block in self.encoder:
            h = block(h, pad_mask=pad)  # (B, S, d)
        return self.enc_ln(h), pad

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V_tgt) for decoder inputs tgt_in (B, T)."""
        h = self.tgt_tok_emb(tgt_in) + self.tgt_pos_emb.weight[: tgt_in.shape[1]]  # (B, T, d)
        for block in self.decoder:
            h = block(h, causal=True, memory=memory, memory_pad_mask=memory_pad)  # (B, T, d)
        return self.head(self.dec_ln(h))  # (B, T, V_tgt)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V_tgt)."""
        return self.decode(tgt_in, *self.encode(src))

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
        """Greedy outputs (B, max_len): y_t = argmax p(· | y_<t, src); PAD after each row's EOS."""
        c = self.cfg
        L = max_len or c.max_tgt_len
        memory, pad = self.encode(src)  # (B, S, d), (B, S)
        ys = torch.full((src.shape[0], 1), c.sos_id, dtype=torch.long, device=src.device)  # (B, 1)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)  # (B,)
        out = []
        for _ in range(L):
            nxt = self.decode(ys, memory, pad)[:, -1].argmax(-1)  # (B,)
            nxt = nxt.masked_fill(done, c.pad_id)
            out.append(nxt)
            done |= nxt == c.eos_id
            if bool(done.all()) or ys.shape[1] == c.max_tgt_len:
                break
            ys = torch.cat([ys, nxt[:, None]], dim=1)  # (B, t + 1)
        pred = torch.stack(out, dim=1)  # (B, ≤ L)
        return nn.functional.pad(pred, (0, L - pred.shape[1]), value=c.pad_id)  # (B, L)
