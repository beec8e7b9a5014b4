"""Optimizers for the runner: AdamW, SGD, and Muon (2-D weights) with AdamW (the rest)."""

from __future__ import annotations

from typing import Any

import torch

from .config import RunConfig


class MuonWithAdamW(torch.optim.Optimizer):
    """``torch.optim.Muon`` on 2-D weight matrices and AdamW on everything else, stepped as
    one optimizer (so optimizer hooks, schedulers and state dicts see a single object).

    Embeddings and output heads are 2-D but are not hidden-layer matrices; like the Muon
    authors we keep them on AdamW (names containing ``emb`` or ``head``).
    """

    def __init__(self, named_params: list[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float,
                 betas: tuple[float, float], adamw_lr: float | None = None):
        muon = [p for n, p in named_params if p.ndim == 2 and "emb" not in n and "head" not in n]
        ids = {id(p) for p in muon}
        rest = [p for _, p in named_params if id(p) not in ids]
        super().__init__([p for _, p in named_params], {"lr": lr})
        self.muon = torch.optim.Muon(muon, lr=lr, weight_decay=weight_decay) if muon else None
        self.adamw = torch.optim.AdamW(rest, lr=adamw_lr or lr, weight_decay=weight_decay, betas=betas) if rest else None
        # the runner's warm-up scales param_groups[i]["lr"]; expose the inner groups
        self.param_groups = [g for o in (self.muon, self.adamw) if o is not None for g in o.param_groups]

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        for opt in (self.muon, self.adamw):
            if opt is not None:
                loss = opt.step(closure) if closure is not None and loss is None else opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in (self.muon, self.adamw):
            if opt is not None:
                opt.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {"muon": None if self.muon is None else self.muon.state_dict(),
                "adamw": None if self.adamw is None else self.adamw.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # type: ignore[override]
        if self.muon is not None:
            self.muon.load_state_dict(state["muon"])
        if self.adamw is not None:
            self.adamw.load_state_dict(state["adamw"])


def build_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named in ``cfg`` over the model's trainable parameters."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW([p for _, p in params], lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD([p for _, p in params], lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    return MuonWithAdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
