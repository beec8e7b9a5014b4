"""The reference grokking transformer (modular arithmetic, Dyck) and its building blocks.

A 2-layer pre-norm encoder, d = 128, 4 heads, d_ff = 256, GELU, no dropout, learned token
and position embeddings, a final LayerNorm and a linear read-out. Modular arithmetic reads
the first position of the input ``[a, b]`` (≈290k parameters at p = 97); Dyck uses the
same trunk with a causal mask and reads every position.

Attention has separate ``q_proj``/``k_proj``/``v_proj``/``o_proj`` layers, so the
parameters the papers analyse (W_Q, W_K, W_V, W_O of every layer) are named
``layers.{i}.attn.{q,k,v,o}_proj.weight``. Initialisation follows ``nn.MultiheadAttention``
(the authors used ``nn.TransformerEncoderLayer``): W_Q, W_K, W_V are Xavier-uniform as if
stacked into one (3d, d) matrix, W_O has the default ``nn.Linear`` init, all attention
biases start at 0. No causal-mask buffer is stored: masking goes through
``scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import ConfigError

#: Key lengths up to this use the plain "math" SDPA backend on CPU (faster for tiny sequences).
_SHORT = 8

__all__ = ["Attention", "MLP", "Block", "TransformerConfig", "Trunk", "GrokTransformer", "MultitaskTransformer"]


class Attention(nn.Module):
    """Multi-head attention softmax(QKᵀ/√d_h)V with separate Q, K, V, O projections."""

    def __init__(self, d_model: int, n_heads: int, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ConfigError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.o_proj = nn.Linear(d_model, d_model, bias=bias)
        bound = math.sqrt(6.0 / (4 * d_model))  # Xavier-uniform of the stacked (3d, d) matrix
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.uniform_(lin.weight, -bound, bound)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.o_proj):
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from x (B, T, d) to context (B, S, d) (default x); mask: True = padded key (B, S)."""
        ctx = x if context is None else context
        B, T, d = x.shape
        S = ctx.shape[1]
        h = self.n_heads
        q = self.q_proj(x).view(B, T, h, d // h).transpose(1, 2)  # (B, h, T, d/h)
        k = self.k_proj(ctx).view(B, S, h, d // h).transpose(1, 2)  # (B, h, S, d/h)
        v = self.v_proj(ctx).view(B, S, h, d // h).transpose(1, 2)  # (B, h, S, d/h)
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, S) True = may attend
            if causal:
                tri = torch.ones(T, S, dtype=torch.bool, device=x.device).tril()  # (T, S)
                mask = mask & tri
                causal = False
        if x.device.type == "cpu" and S <= _SHORT:
            with sdpa_kernel(SDPBackend.MATH):  # 4x faster than the CPU flash kernel at S = 2
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # (B, h, T, d/h)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # (B, h, T, d/h)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, d))  # (B, T, d)


class MLP(nn.Module):
    """Position-wise feed-forward W_out·GELU(W_in·x)."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = True):
        super().__init__()
        self.fc_in = nn.Linear(d_model, d_ff, bias=bias)
        self.fc_out = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, d)."""
        return self.fc_out(F.gelu(self.fc_in(x)))


class Block(nn.Module):
    """Pre-norm block x += Attn(LN(x)) [+ CrossAttn(LN(x), memory)]; x += MLP(LN(x))."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, cross: bool = False, bias: bool = True):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, bias)
        self.ln_cross = nn.LayerNorm(d_model) if cross else None
        self.cross_attn = Attention(d_model, n_heads, bias) if cross else None
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_ff, bias)

    def forward(self, x: torch.Tensor, causal: bool = False, pad_mask: torch.Tensor | None = None,
                memory: torch.Tensor | None = None, memory_pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, d), memory (B, S, d) for cross-attention; masks True = padded -> (B, T, d)."""
        x = x + self.attn(self.ln1(x), causal=causal, key_padding_mask=pad_mask)  # (B, T, d)
        if self.cross_attn is not None:
            if memory is None:
                raise ConfigError("a block with cross-attention needs the encoder memory")
            x = x + self.cross_attn(self.ln_cross(x), memory, key_padding_mask=memory_pad_mask)  # (B, T, d)
        return x + self.mlp(self.ln2(x))  # (B, T, d)


@dataclass
class TransformerConfig:
    """Reference grokking transformer; defaults are the modular-arithmetic model at p = 97."""

    vocab_size: int = 97  # input token ids (modular: residues 0..p-1; Dyck: 3)
    n_classes: int = 97  # output classes per head (modular: p; Dyck: 13 depths)
    max_len: int = 2  # learned positions (modular: [a, b]; Dyck: 24)
    d_model: int = 128  # residual width
    n_heads: int = 4  # attention heads (head dim 32)
    d_ff: int = 256  # MLP hidden width
    n_layers: int = 2  # pre-norm blocks
    causal: bool = False  # causal self-attention (Dyck: True)
    readout: str = "first"  # "first": logits from position 0 only; "all": every position
    tasks: tuple[str, ...] = ()  # MultitaskTransformer: one head per name, e.g. ("add", "mul")
    pos_std: float | None = None  # init std of position embeddings; None -> 1/√d_model (authors' modular
    #                               model); the authors' Dyck model used nn.Embedding's 1.0

    @classmethod
    def modular(cls, p: int = 97, **kw) -> "TransformerConfig":
        """Config for ``[a, b]`` mod p with read-out at the first position."""
        return cls(vocab_size=p, n_classes=p, max_len=2, **kw)

    @classmethod
    def dyck(cls, ctx_len: int = 24, n_classes: int = 13, **kw) -> "TransformerConfig":
        """Config for Dyck-1 depth prediction: causal, a depth class at every position."""
        kw = {"pos_std": 1.0, "causal": True, "readout": "all", **kw}
        return cls(vocab_size=3, n_classes=n_classes, max_len=ctx_len, **kw)


class Trunk(nn.Module):
    """Embeddings, pre-norm blocks and final LayerNorm: token ids (B, T) -> states (B, T, d).

    Models subclass it, so parameter names stay short: ``tok_emb``, ``pos_emb``,
    ``layers.{i}.attn.q_proj.weight``, ``ln_f``, then ``head`` or ``heads.{task}``.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        if cfg.readout not in ("first", "all"):
            raise ConfigError(f"readout must be 'first' or 'all', got {cfg.readout!r}")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)  # N(0, 1), as nn.Embedding
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        nn.init.normal_(self.pos_emb.weight, std=cfg.d_model ** -0.5 if cfg.pos_std is None else cfg.pos_std)
        self.layers = nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.d_ff) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)

    def _stream(self, idx: torch.Tensor) -> torch.Tensor:
        """The residual stream after the last block, before the final LayerNorm: (B, T, d)."""
        T = idx.shape[1]
        if T > self.cfg.max_len:
            raise ConfigError(f"sequence length {T} exceeds max_len={self.cfg.max_len}")
        h = self.tok_emb(idx) + self.pos_emb.weight[:T]  # (B, T, d)
        for layer in self.layers:
            h = layer(h, causal=self.cfg.causal)  # (B, T, d)
        return h

    def residual(self, idx: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm state at the read-out: (B, d) at position 0 ("first") or (B, T, d) ("all")."""
        h = self.ln_f(self._stream(idx))  # (B, T, d)
        return h[:, 0] if self.cfg.readout == "first" else h  # (B, d) or (B, T, d)

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """The residual stream at the read-out *before* the final LayerNorm: (B, d) at position 0
        ("first") or (B, T, d) ("all"). What functional modes measure (METHODS.md §7:
        f(a, b) = ‖Δh(a, b)‖²); for :class:`MultitaskTransformer` it is the shared trunk's."""
        h = self._stream(idx)  # (B, T, d)
        return h[:, 0] if self.cfg.readout == "first" else h  # (B, d) or (B, T, d)


class GrokTransformer(Trunk):
    """Trunk + one linear head: logits (B, n_classes) ("first") or (B, T, n_classes) ("all")."""

    def __init__(self, cfg: TransformerConfig | None = None):
        super().__init__(cfg or TransformerConfig())
        self.head = nn.Linear(self.cfg.d_model, self.cfg.n_classes)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits of token ids idx (B, T)."""
        return self.head(self.residual(idx))


class MultitaskTransformer(Trunk):
    """Shared trunk + ``heads[task]`` per task: {task: logits (B, n_classes)} in ``cfg.tasks`` order."""

    def __init__(self, cfg: TransformerConfig):
        if not cfg.tasks:
            raise ConfigError("MultitaskTransformer needs cfg.tasks, e.g. ('add', 'mul')")
        super().__init__(cfg)
        self.heads = nn.ModuleDict({t: nn.Linear(cfg.d_model, cfg.n_classes) for t in cfg.tasks})

    def forward(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-task logits of token ids idx (B, T)."""
        z = self.residual(idx)  # (B, d) shared representation
        return {t: self.heads[t](z) for t in self.cfg.tasks}  # each (B, n_classes)

    def loss(self, idx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ_k CE(logits_k, y[:, k]) for labels y (B, K), as in the authors' multitask runs."""
        out = self.forward(idx)
        return sum(F.cross_entropy(out[t], y[:, k]) for k, t in enumerate(self.cfg.tasks))
