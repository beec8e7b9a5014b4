"""Workloads: a task's data, model, loss and evaluation behind one small interface.

The runner only needs: a model, a way to draw a training batch from a seeded generator, a
loss of a batch, and an evaluation returning train/test loss and accuracy. Probes that need
data (the commutator defect, gradient-SED) use the same ``sample_batch`` and ``loss``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

import torch
import torch.nn.functional as F

from .config import RunConfig, check_model_overrides, check_task_options, check_value

Batch = tuple[torch.Tensor, ...]


@dataclass
class Workload:
    """A model with its data: ``sample_batch(gen, n)``, ``loss(model, batch)``, ``evaluate(model)``."""

    model: torch.nn.Module
    sample_batch: Callable[[torch.Generator, int], Batch]
    loss: Callable[[torch.nn.Module, Batch], torch.Tensor]
    evaluate: Callable[[torch.nn.Module], dict[str, float]]
    description: str


def _override(cfg_cls: type, base: Any, overrides: dict[str, Any]) -> Any:
    """``base`` with ``overrides`` set, each checked against the field's type (``model.<key>``)."""
    for k, v in check_model_overrides(cfg_cls, overrides).items():
        setattr(base, k, v)
    return base


def _task_options(fn: Callable[..., Any], opts: dict[str, Any], fixed: tuple[str, ...] = ()) -> dict[str, Any]:
    return check_task_options(fn, opts, fixed)


@torch.no_grad()
def _classify(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192,
              ignore_index: int = -100) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of logits model(x) against labels y (any label shape)."""
    total_loss, correct, count = 0.0, 0, 0
    for i in range(0, len(x), chunk):
        logits = model(x[i : i + chunk])
        yy = y[i : i + chunk]
        lg = logits.reshape(-1, logits.shape[-1])
        yf = yy.reshape(-1)
        mask = yf != ignore_index
        total_loss += float(F.cross_entropy(lg[mask], yf[mask], reduction="sum"))
        correct += int((lg[mask].argmax(-1) == yf[mask]).sum())
        count += int(mask.sum())
    return total_loss / max(count, 1), correct / max(count, 1)


def _evaluate_splits(m: torch.nn.Module, data: Any) -> dict[str, float]:
    """Loss and accuracy on the train and test splits, and on the validation split when the
    data has one (``val_loss``, ``val_acc``: what a validation-based alarm reads)."""
    trl, tra = _classify(m, data.train_x, data.train_y)
    tel, tea = _classify(m, data.test_x, data.test_y)
    res = {"train_loss": trl, "train_acc": tra, "test_loss": tel, "test_acc": tea}
    if len(getattr(data, "val_x", ())):
        res["val_loss"], res["val_acc"] = _classify(m, data.val_x, data.val_y)
    return res


def _modular(cfg: RunConfig) -> Workload:
    from ..models.transformer import GrokTransformer, TransformerConfig
    from ..tasks.modular import make_modular, sample_batch

    data = make_modular(cfg.op, p=cfg.modulus, train_frac=cfg.train_frac, seed=cfg.effective_data_seed,
                        **_task_options(make_modular, cfg.task_options, ("op", "p", "train_frac", "seed")))
    mcfg = _override(TransformerConfig, TransformerConfig.modular(cfg.modulus), cfg.model)
    model = GrokTransformer(mcfg)

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        return _evaluate_splits(m, data)

    val = f" / {len(data.val_x)} validation" if len(data.val_x) else ""
    return Workload(
        model=model,
        sample_batch=lambda g, n: sample_batch(data.train_x, data.train_y, batch_size=n, generator=g),
        loss=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
        evaluate=evaluate,
        description=f"{cfg.op} mod {cfg.modulus}, {len(data.train_x)} train{val} / {len(data.test_x)} test pairs",
    )


def _multitask(cfg: RunConfig) -> Workload:
    from ..models.transformer import MultitaskTransformer, TransformerConfig
    from ..tasks.modular import make_multitask_modular, sample_batch

    ops = tuple(o.strip() for o in cfg.op.split(",") if o.strip())
    data = make_multitask_modular(ops, p=cfg.modulus, train_frac=cfg.train_frac, seed=cfg.effective_data_seed,
                                  **_task_options(make_multitask_modular, cfg.task_options,
                                                  ("ops", "p", "train_frac", "seed")))
    mcfg = _override(TransformerConfig, TransformerConfig.modular(cfg.modulus, tasks=data.ops), cfg.model)
    model = MultitaskTransformer(mcfg)

    def loss(m: torch.nn.Module, b: Batch) -> torch.Tensor:
        out = m(b[0])
        return sum(F.cross_entropy(out[t], b[1][:, k]) for k, t in enumerate(data.ops))  # type: ignore[return-value]

    @torch.no_grad()
    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        res: dict[str, float] = {}
        for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
            out = m(x)
            losses, accs = [], []
            for k, t in enumerate(data.ops):
                lv = float(F.cross_entropy(out[t], y[:, k]))
                av = float((out[t].argmax(-1) == y[:, k]).float().mean())
                res[f"{split}_loss_{t}"], res[f"{split}_acc_{t}"] = lv, av
                losses.append(lv)
                accs.append(av)
            res[f"{split}_loss"] = sum(losses) / len(losses)
            res[f"{split}_acc"] = min(accs)  # grokked when every task has
        return res

    return Workload(model, lambda g, n: sample_batch(data.train_x, data.train_y, batch_size=n, generator=g),
                    loss, evaluate, f"multitask {'+'.join(data.ops)} mod {cfg.modulus}")


def _dyck(cfg: RunConfig) -> Workload:
    from ..models.transformer import GrokTransformer, TransformerConfig
    from ..tasks.dyck import make_dyck
    from ..tasks.modular import sample_batch

    data = make_dyck(seed=cfg.effective_data_seed, **_task_options(make_dyck, cfg.task_options, ("seed",)))
    mcfg = _override(TransformerConfig, TransformerConfig.dyck(data.ctx_len, data.n_classes), cfg.model)
    model = GrokTransformer(mcfg)

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        return _evaluate_splits(m, data)

    def loss(m: torch.nn.Module, b: Batch) -> torch.Tensor:
        logits = m(b[0])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[1].reshape(-1), ignore_index=-100)

    return Workload(model, lambda g, n: sample_batch(data.train_x, data.train_y, batch_size=n, generator=g),
                    loss, evaluate, f"Dyck-1 depth, {len(data.train_x)} train / {len(data.test_x)} test words")


def _scan(cfg: RunConfig) -> Workload:
    from ..models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
    from ..tasks.modular import sample_batch
    from ..tasks.scan import exact_match, make_scan

    opts = {"n_test": 1000, **_task_options(make_scan, cfg.task_options, ("seed",))}
    data = make_scan(seed=cfg.effective_data_seed, **opts)
    mcfg = _override(Seq2SeqConfig, Seq2SeqConfig(), cfg.model)
    model = Seq2SeqTransformer(mcfg)

    def loss(m: torch.nn.Module, b: Batch) -> torch.Tensor:
        logits = m(b[0], b[1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[2].reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        res = {}
        for split, src, tin, tout in (("train", data.train_src, data.train_tgt_in, data.train_tgt_out),
                                      ("test", data.test_src, data.test_tgt_in, data.test_tgt_out)):
            res[f"{split}_loss"] = float(loss(m, (src, tin, tout)))
            res[f"{split}_acc"] = float(exact_match(m.greedy_decode(src), tout).float().mean())
        return res

    return Workload(model, lambda g, n: sample_batch(data.train_src, data.train_tgt_in, data.train_tgt_out,
                                                     batch_size=n, generator=g),
                    loss, evaluate, f"SCAN simple split, {len(data.train_src)} train / {len(data.test_src)} test")


def _lm(cfg: RunConfig) -> Workload:
    from ..models.gpt import GPTConfig, TinyGPT
    from ..tasks.lm import lm_batch, make_lm_corpus

    opts = dict(cfg.task_options)
    block = check_value(opts.pop("block_size", 64), int, "task_options.block_size", msgspec.Meta(ge=2))
    corpus = make_lm_corpus(seed=cfg.effective_data_seed, **_task_options(make_lm_corpus, opts, ("seed",)))
    what = "generated-story" if opts.get("corpus", "stories") == "stories" else str(opts["corpus"]).upper()
    mcfg = _override(GPTConfig, GPTConfig(vocab_size=corpus.vocab_size, block_size=block), cfg.model)
    model = TinyGPT(mcfg)
    eval_gen_seed = cfg.effective_data_seed + 1

    def loss(m: torch.nn.Module, b: Batch) -> torch.Tensor:
        return m.loss(b[0], b[1])

    @torch.no_grad()
    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        res = {}
        for split, toks in (("train", corpus.train), ("test", corpus.val)):
            g = torch.Generator().manual_seed(eval_gen_seed)  # the same eval batches every time
            x, y = lm_batch(toks, 64, mcfg.block_size, g)
            logits = m(x)
            res[f"{split}_loss"] = float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)))
            res[f"{split}_acc"] = float((logits.argmax(-1) == y).float().mean())
        res["val_loss"] = res["test_loss"]
        return res

    return Workload(model, lambda g, n: lm_batch(corpus.train, n, mcfg.block_size, g), loss, evaluate,
                    f"character LM on {len(corpus.train):,} {what} characters")


_BUILDERS = {"modular": _modular, "multitask": _multitask, "dyck": _dyck, "scan": _scan, "lm": _lm}


def build_workload(cfg: RunConfig) -> Workload:
    """The workload of ``cfg.task``; the model is initialised from ``cfg.seed`` without
    touching the caller's global RNG state."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        return _BUILDERS[cfg.task](cfg)
