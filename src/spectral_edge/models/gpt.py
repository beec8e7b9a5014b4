"""A tiny GPT (decoder-only, causal, pre-norm) for the language-modelling task.

Same blocks as the grokking transformer. Parameter names: ``tok_emb``, ``pos_emb``,
``layers.{i}.attn.{q,k,v,o}_proj``, ``layers.{i}.mlp.fc_{in,out}``, ``ln_f``, ``lm_head``.
With ``tie_weights`` the read-out shares the token embedding matrix (``lm_head.weight is
tok_emb.weight``), so ``named_parameters()`` lists it once, as ``tok_emb.weight``.
Weights start at N(0, 0.02), biases at 0, as in GPT-2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from .transformer import Block

__all__ = ["GPTConfig", "TinyGPT"]


@dataclass
class GPTConfig:
    """Tiny character-level GPT; defaults train in seconds on a CPU."""

    vocab_size: int = 64  # token ids (set from the tokenizer)
    block_size: int = 128  # context length (learned positions)
    n_layer: int = 4  # transformer blocks
    d_model: int = 128  # residual width
    n_head: int = 4  # attention heads
    d_ff: int | None = None  # MLP width; None -> 4 · d_model
    bias: bool = True  # biases in linear layers
    tie_weights: bool = True  # lm_head shares the token embedding


class TinyGPT(nn.Module):
    """Causal LM: logits (B, T, V) of next tokens for token ids (B, T)."""

    def __init__(self, cfg: GPTConfig | None = None):
        super().__init__()
        self.cfg = c = cfg or GPTConfig()
        if c.d_model % c.n_head:
            raise ConfigError(f"d_model={c.d_model} is not divisible by n_head={c.n_head}")
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.block_size, c.d_model)
        d_ff = c.d_ff or 4 * c.d_model
        self.layers = nn.ModuleList(Block(c.d_model, c.n_head, d_ff, bias=c.bias) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        if c.tie_weights:
            self.lm_head.weight = self.tok_emb.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V)."""
        T = idx.shape[1]
        if T > self.cfg.block_size:
            raise ConfigError(f"sequence length {T} exceeds block_size={self.cfg.block_size}")
        h = self.tok_emb(idx) + self.pos_emb.weight[:T]  # (B, T, d)
        for block in self.layers:
            h = block(h, causal=True)  # (B, T, d)
        return self.lm_head(self.ln_f(h))  # (B, T, V)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy of targets (B, T)."""
        logits = self.forward(idx)  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
