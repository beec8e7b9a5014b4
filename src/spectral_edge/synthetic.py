"""Synthetic trajectories with a known answer: planted spectra and planted phases.

- :func:`planted_window` builds W updates whose singular values are exactly the ones asked
  for (for exact-recovery tests).
- :func:`planted_trajectory` builds parameter states θ_t of a model made of matrices, whose
  updates are matrix-shaped low-rank signal plus noise::

      δ_t = Σ_k A_k(t) c_k(t) u_k v_kᵀ  (per matrix, unit-norm rank-one directions)
            + ν · n_t                     (noise, AR(1) in time with correlation ρ)
            + D(t) · m                    (a slowly moving drift direction)

  with c_k(t) ~ N(0, 1) independent across k and t, so a window of W updates has ``rank``
  signal modes; the amplitudes A_k(t) follow a rise → plateau → collapse schedule, which
  plants the three phases of the gap ratio. All randomness comes from one seed.
- :func:`write_checkpoints` saves such a trajectory as a folder of safetensors files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


def planted_window(sigma: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """W updates (W, dim) with singular values exactly ``sigma`` (W,): ``Δ = U diag(σ) Vᵀ``."""
    sigma = np.asarray(sigma, dtype=np.float64)
    W = sigma.size
    if dim < W:
        raise ValueError(f"dim must be ≥ W, got dim={dim}, W={W}")
    g = np.random.default_rng(seed)
    U, _ = np.linalg.qr(g.standard_normal((W, W)))
    V, _ = np.linalg.qr(g.standard_normal((dim, W)))
    return (U * sigma) @ V.T


def phase_schedule(t: np.ndarray, rise_end: float, plateau_end: float, floor: float = 0.15) -> np.ndarray:
    """Amplitude in [floor, 1]: linear rise on [0, rise_end], 1 on the plateau, then an
    exponential collapse back towards ``floor``. ``t`` is the fraction of training in [0, 1]."""
    t = np.asarray(t, dtype=np.float64)
    rise = floor + (1 - floor) * np.clip(t / max(rise_end, 1e-9), 0, 1)
    decay = floor + (1 - floor) * np.exp(-(t - plateau_end) / 0.06)
    return np.where(t <= plateau_end, rise, np.minimum(rise, decay))


@dataclass(frozen=True)
class PlantedSpec:
    """A planted trajectory (see module docs). Defaults give k* = 2 and clear phases."""

    shapes: Mapping[str, tuple[int, ...]] = field(
        default_factory=lambda: {
            "layers.0.attn.q_proj.weight": (64, 64),
            "layers.0.attn.k_proj.weight": (64, 64),
            "layers.0.mlp.fc.weight": (128, 64),
            "layers.1.attn.q_proj.weight": (64, 64),
            "layers.1.mlp.fc.weight": (128, 64),
            "layers.1.norm.weight": (64,),
        }
    )
    n_samples: int = 61  # parameter states (updates = n_samples − 1)
    every: int = 100  # optimizer steps between samples
    rank: int = 2  # number of planted signal modes
    amplitudes: tuple[float, ...] = (6.0, 4.0)  # A_k at full strength (units of ν·sqrt(P))
    noise: float = 1.0  # ν, per-coordinate noise scale of an update (relative)
    noise_corr: float = 0.0  # ρ of the AR(1) noise in time
    drift: float = 0.0  # D, drift amplitude (same units as amplitudes)
    rise_end: float = 0.25  # phases as fractions of training
    plateau_end: float = 0.6
    step_size: float = 1e-3  # overall scale of updates
    init_scale: float = 0.02  # scale of θ_0 (‖θ‖/‖δ‖ is about init_scale/step_size·sqrt)
    seed: int = 0

    @property
    def planted_k(self) -> int:
        """Coherent modes of a window: the signal modes plus the drift direction, if any."""
        return self.rank + (1 if self.drift else 0)

    def steps(self) -> list[int]:
        return [i * self.every for i in range(self.n_samples)]

    def phase_bounds(self) -> tuple[int, int]:
        """Steps where the planted rise ends and the plateau ends."""
        T = (self.n_samples - 1) * self.every
        return int(self.rise_end * T), int(self.plateau_end * T)


def planted_trajectory(spec: PlantedSpec = PlantedSpec()) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """Yield ``(step, {name: float32 tensor})`` for every sample of the planted trajectory."""
    g = np.random.default_rng(spec.seed)
    names = list(spec.shapes)
    P = sum(int(np.prod(s)) for s in spec.shapes.values())
    amps = np.asarray(spec.amplitudes, dtype=np.float64)[: spec.rank]
    if amps.size < spec.rank:
        raise ValueError(f"need {spec.rank} amplitudes, got {len(spec.amplitudes)}")
    # unit-norm signal directions per mode, matrix-shaped per tensor (rank one per matrix)
    dirs = []
    for _ in range(spec.rank + 1):  # last one is the drift direction
        parts = {}
        for n, shp in spec.shapes.items():
            if len(shp) == 2:
                u = g.standard_normal(shp[0])
                v = g.standard_normal(shp[1])
                parts[n] = np.outer(u, v)
            else:
                parts[n] = g.standard_normal(shp)
        norm = np.sqrt(sum((p**2).sum() for p in parts.values()))
        dirs.append({n: p / norm for n, p in parts.items()})
    theta = {n: spec.init_scale * g.standard_normal(s) for n, s in spec.shapes.items()}
    noise = {n: g.standard_normal(s) for n, s in spec.shapes.items()}
    T = spec.n_samples - 1
    scale = spec.step_size
    yield 0, {n: torch.tensor(theta[n], dtype=torch.float32) for n in names}
    rho = spec.noise_corr
    for i in range(1, spec.n_samples):
        frac = i / T
        a = phase_schedule(np.array(frac), spec.rise_end, spec.plateau_end)
        coef = g.standard_normal(spec.rank)
        for n in names:
            fresh = g.standard_normal(spec.shapes[n])
            noise[n] = rho * noise[n] + np.sqrt(1 - rho**2) * fresh
            delta = spec.noise * noise[n]
            for k in range(spec.rank):
                delta = delta + amps[k] * float(a) * coef[k] * np.sqrt(P) * spec.noise * dirs[k][n]
            if spec.drift:
                delta = delta + spec.drift * np.sqrt(P) * spec.noise * dirs[-1][n]
            theta[n] = theta[n] + scale * delta
        yield i * spec.every, {n: torch.tensor(theta[n], dtype=torch.float32) for n in names}


def write_checkpoints(folder: str | Path, spec: PlantedSpec = PlantedSpec(), prefix: str = "step_") -> list[Path]:
    """Save a planted trajectory as ``<folder>/<prefix><step:06d>.safetensors``; returns the paths."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for step, state in planted_trajectory(spec):
        p = folder / f"{prefix}{step:06d}.safetensors"
        save_file(state, str(p))
        paths.append(p)
    return paths
