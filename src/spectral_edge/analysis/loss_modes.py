"""The spectral loss decomposition of a finished modular run, per mode of its last update window.

METHODS §5: the loss change of one gradient step decomposes over the modes of the update
window; mode j contributes η·G_j^tr·G_j^val (G_j = ⟨v_j, ∇L⟩), and its Davis–Kahan stability
α_j = max(0, 1 − ‖ΔG‖_F²/gap_j²) says how much of it the mode keeps from one window to the
next. :func:`run_loss_decomposition` reads a run folder (config.json, model.safetensors and
the snapshots of the monitored tensors), takes the last W updates between snapshots (the
uncentred window the monitor analyses), its modes v_j (unit vectors in the monitored
parameters), ‖ΔG‖_F of the last two windows (exact, from the W + 1 updates) and each mode's α_j,
and compares for every mode the predicted change α_j·η·G_j^tr·G_j^val (and the same with α = 1)
with the measured L_val(θ + η·G_j^tr·v_j) − L_val(θ)
(:func:`~spectral_edge.analysis.thesis.spectral_loss_decomposition`: the model is restored
bit for bit). The training loss is read on a fixed batch of training pairs drawn from
``seed``; the validation loss on the run's validation pairs (its held-out test pairs when it
has no validation split). The model (a fresh copy built from config.json) is evaluated in
float64: near convergence a mode's share of one step moves the loss by far less than float32
resolves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

#: pairs of the fixed training batch
TRAIN_BATCH = 512


@dataclass(frozen=True)
class LossModes:
    """Per mode of the last window: σ_j, α_j, G_j^tr, G_j^val, the predicted change (with α and
    with α = 1) and the measured one; with the window's steps, ‖ΔG‖_F and the learning rate."""

    run: str
    steps: tuple[int, int]
    window: int
    lr: float
    delta_norm: float
    sigma: tuple[float, ...]
    alpha: tuple[float, ...]
    g_train: tuple[float, ...]
    g_val: tuple[float, ...]
    predicted: tuple[float, ...]
    predicted_raw: tuple[float, ...]
    measured: tuple[float, ...]
    val_split: str

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def run_loss_decomposition(run: str | Path, window: int = 10, seed: int = 0) -> LossModes:
    """The decomposition of the module docs for the run folder ``run`` (W = ``window``)."""
    import torch

    from ..experiments.config import RunConfig, check_task_options
    from ..experiments.workloads import build_workload
    from ..functional import spectrum as sp
    from ..tasks.modular import make_modular
    from .modes import SNAPSHOTS_FILE, load_model_weights, read_snapshots
    from .thesis import consecutive_operator_change, davis_kahan_alpha, spectral_loss_decomposition

    run = Path(run)
    rc = RunConfig.from_file(run / "config.json")
    if rc.task != "modular":
        raise ConfigError(f"{run / 'config.json'}: task is {rc.task!r}; the loss decomposition reads a modular run")
    W = int(window)
    snaps = read_snapshots(run / SNAPSHOTS_FILE)
    if len(snaps.steps) < W + 2:
        raise ConfigError(f"{run / SNAPSHOTS_FILE}: {len(snaps.steps)} snapshots; the decomposition needs W + 2 = "
                          f"{W + 2} (two consecutive windows of {W} updates)")
    wl = build_workload(rc)
    model = wl.model
    load_model_weights(model, run / "model.safetensors")
    model.double()  # our own copy: float64, so that changes far below float32's resolution are measured
    params = dict(model.named_parameters())
    last = snaps.unflatten(snaps.values[-1].astype(np.float64))
    with torch.no_grad():  # the model at the last snapshot (the final model when the run ended there)
        for n, v in last.items():
            params[n].copy_(torch.as_tensor(v, dtype=params[n].dtype))
    D = np.diff(snaps.values[-(W + 2):].astype(np.float64), axis=0)  # (W + 1, P), oldest first
    delta = consecutive_operator_change(D @ D.T)
    win = D[1:]
    lam, U = sp.eig_gram(win @ win.T)
    sigma = np.sqrt(np.maximum(lam, 0.0))
    alpha = davis_kahan_alpha(delta, lam)
    r = int((sigma > sigma[0] * 1e-9).sum()) if sigma[0] > 0 else 0
    if r == 0:
        raise ConfigError(f"{run / SNAPSHOTS_FILE}: the monitored tensors did not move over the last window")
    dirs = []
    for j in range(r):
        v = win.T @ U[:, j] / sigma[j]
        dirs.append({n: torch.as_tensor(t.copy()) for n, t in snaps.unflatten(v).items()})

    opts = check_task_options(make_modular, rc.task_options, ("op", "p", "train_frac", "seed"))
    data = make_modular(rc.op, p=rc.modulus, train_frac=rc.train_frac, seed=rc.effective_data_seed, **opts)
    has_val = len(data.val_x) > 0
    vx, vy = (data.val_x, data.val_y) if has_val else (data.test_x, data.test_y)
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, len(data.train_x), (min(TRAIN_BATCH, len(data.train_x)),), generator=gen)
    tx, ty = data.train_x[idx], data.train_y[idx]
    was = model.training
    model.eval()
    try:
        rows = spectral_loss_decomposition(model, dirs, lambda: wl.loss(model, (tx, ty)),
                                           lambda: wl.loss(model, (vx, vy)), lr=rc.lr, alphas=list(alpha[:r]))
    finally:
        model.train(was)
    f = lambda xs: tuple(float(x) for x in xs)  # noqa: E731
    return LossModes(run.name, (int(snaps.steps[-W - 1]), int(snaps.steps[-1])), W, float(rc.lr), float(delta),
                     f(sigma[:r]), f(alpha[:r]), f(m.g_train for m in rows), f(m.g_val for m in rows),
                     f(m.predicted for m in rows), f(rc.lr * m.g_train * m.g_val for m in rows),
                     f(m.measured for m in rows), "validation" if has_val else "test")
