"""Reference models of the papers, written to be read in one screen each.

* :class:`GrokTransformer` — the 2-layer pre-norm grokking transformer (modular arithmetic:
  read-out at the first position; Dyck: causal, a class at every position);
* :class:`MultitaskTransformer` — the same trunk with one head per task;
* :class:`Seq2SeqTransformer` — the 3 + 3-layer SCAN encoder–decoder with greedy decoding;
* :class:`TinyGPT` — a small causal language model.

All attention layers have separate ``q_proj``/``k_proj``/``v_proj``/``o_proj`` linears.
"""

from .gpt import GPTConfig, TinyGPT
from .seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from .transformer import MLP, Attention, Block, GrokTransformer, MultitaskTransformer, TransformerConfig, Trunk

__all__ = [
    "Attention",
    "Block",
    "GPTConfig",
    "GrokTransformer",
    "MLP",
    "MultitaskTransformer",
    "Seq2SeqConfig",
    "Seq2SeqTransformer",
    "TinyGPT",
    "TransformerConfig",
    "Trunk",
]
