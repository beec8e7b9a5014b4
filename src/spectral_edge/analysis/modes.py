"""Functional modes of a modular-arithmetic run (METHODS.md §7): what each spectral-edge
direction of the attention updates *computes*, read as a spectrum over the task's symmetry bases.

Entry points:

- :func:`run_modes` ``(run, config) -> ModesResult``: a run folder written by ``spectral-edge
  grok``/``run`` (config.json, model.safetensors, snapshots.safetensors, summary.json);
- :func:`analyze_modes` ``(model, snapshots, p, ops, config) -> ModesResult``: the same on objects
  in memory (any model: pass ``features``);
- the pieces: :func:`read_snapshots`, :func:`snapshot_directions`, :func:`random_directions`,
  :func:`mode_response` (the side-effect-free probe), :func:`default_features`.

**The method, as the authors' scripts do it** (the defaults; every constant is a
:class:`ModesConfig` field):

1. *Directions.* The last W = 20 updates δ_i = θ_{t_i} − θ_{t_{i−1}} of the monitored block
   (the attention weights W_Q, W_K, W_V, W_O of both layers: 131,072 numbers at p = 97), from
   the W+1 newest snapshots; **mean-centred** (``centred=False`` for the alternative: the
   paper reports that centring changes v3); SVD; v_1…v_3 are the *edge*, v_4…v_8 the *bulk*.
   The sign of each v_k is fixed so that its largest entry is positive (the response below is
   sign-blind to first order). Nulls, computed beside them through the same pipeline:
   ``n_random`` Gaussian directions in the same block (``numpy.random.default_rng(seed)``) and
   the bulk.
2. *Perturbation.* θ_block + ε·v/‖v‖ with ε = 0.005·‖θ_block‖, ‖θ_block‖ over the whole block;
   the rest of the model as it is; eval mode; a one-sided difference.
3. *Response.* f_k(a, b) = ‖h'(a, b) − h(a, b)‖² with h the read-out residual stream before
   the final LayerNorm (``model.features``; the 128-d state at position 0), over every pair of
   the task's domain (the heat map, ``ModesResult.response_field``).
4. *Spectra.* Class averages of f_k over the **test pairs** (the scripts' choice; ``pairs="all"``
   or ``"train"`` for the others) in each basis — ``add`` a+b, ``sub`` a−b, ``mul`` a·b (period
   p), ``dlog`` log_g a + log_g b (period p−1, g the smallest primitive root: 5 at p = 97), and
   ``output`` the task's label — then the normalised DFT power at ω = 1…⌊period/2⌋
   (:mod:`spectral_edge.functional.modes`). F = the top-1 share, ω its frequency, uniform level
   1/⌊period/2⌋ (1/48). The *best basis* of a direction is the one with the largest F.
5. *x² + y².* In-sample ridge R² (α = 1, unpenalised intercept) of f_k on the feature families
   (additive Fourier 96, dlog Fourier 96, combined 192, cross terms 400, full 592), over the
   profile pairs with a, b ≠ 0 (the dlog needs them).

**Where the sources differ, and what we follow.**

- *Which state.* METHODS §7 takes "the last update whose nearest evaluation has test accuracy
  > 0.95"; a run keeps the last W+1 snapshots, which end at the final step (1000 steps after
  grokking with early stopping), so the window is the final one. A note says when the model
  had not generalised there. When the last snapshot is not at the run's last step
  (``steps_run`` in summary.json), the model is model.safetensors with the snapshot's block
  substituted, and a note says so.
- *Multitask.* The tri-task model has one shared trunk, so Δh is the trunk's residual and there
  is one response per direction for all tasks (no per-head edge), as in the scripts. The
  "2.3×" compares two runs (the additive-basis share of x² + y² at the addition frequency,
  tri-task ÷ single-task); a single run reports its half: the addition frequency of the edge
  and the edge's additive share there (``summary["multitask"]``), and
  :meth:`Spectrum.share_at` gives any other run's share at that ω.
- *The "4×" of x² + y².* The paper's text says cross terms add a 4× variance boost; the
  authors' script only prints R² values. We report every family's R² and two derived numbers,
  ``cross_added`` = R²(full) − R²(combined) and ``cross_gain`` = R²(full) / R²(combined); which one
  the paper means is the claim's verdict rule, not ours to fix here.
- *Empty classes* (q = 0 of ``mul`` on nonzero pairs) get the mean of the other classes (no
  power except DC, which is dropped); the papers do not say.

Side effects: none. The model's parameters are never written (the perturbed weights go through
:func:`torch.func.functional_call`), every submodule's train/eval flag and the global RNGs are
restored (:func:`~spectral_edge.probes._isolation.isolated`), gradients are off.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..experiments.checkpoint import SNAPSHOTS_FILE, SNAPSHOTS_FORMAT
from ..errors import CheckpointError, ConfigError, CorruptCheckpointError, NonFiniteError, ShapeMismatchError
from ..functional.modes import ALGEBRAIC_BASES, FAMILIES, Spectrum, basis_classes, family_r2, is_prime, spectra_of
from ..io.history import json_safe
from ..probes._isolation import isolated, trainable
from ..selection import normalize_name

__all__ = ["SNAPSHOT_FORMAT", "SNAPSHOTS_FILE", "MODE_BASES", "ROLES", "PRIMARY_BASIS", "FeaturesFn", "ModesConfig",
           "Snapshots", "DirectionMode", "ModesResult", "read_snapshots", "snapshot_directions", "random_directions",
           "default_features", "mode_response", "analyze_modes", "run_modes", "load_model_weights"]

#: ``format`` in the snapshots file's metadata
SNAPSHOT_FORMAT = SNAPSHOTS_FORMAT  # the runner's format (experiments/checkpoint.py) under this module's name
#: every basis a direction's response can be folded in (``output``: the task's labels)
MODE_BASES = ("add", "sub", "mul", "dlog", "output")
ROLES = ("edge", "bulk", "random")
#: the basis each operation's claims are read in (multitask: ``add``, the shared frequency)
PRIMARY_BASIS = {"add": "add", "sub": "sub", "mul": "dlog", "x2y2": "output", "x2xyy2": "output",
                 "x3xy": "output"}
_PAIRS = ("test", "train", "all")
#: ``features(model, inputs) -> (N, d)``: the activations whose change is the response
FeaturesFn = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]


def _int_field(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be a whole number ≥ {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ModesConfig:
    """The constants of the method (module docs); defaults are the authors'."""

    window: int = 20  # W: updates in the window (needs W + 1 snapshots)
    n_directions: int = 8  # v_1…v_n from the SVD
    n_edge: int = 3  # v_1…v_{n_edge} are the edge, the rest of the n the bulk
    epsilon: float = 0.005  # perturbation size as a fraction of ‖θ_block‖
    n_random: int = 5  # random unit directions in the same block (a null)
    seed: int = 0  # seed of the random directions
    centred: bool = True  # mean-centre the window's updates before the SVD
    bases: tuple[str, ...] | str = "auto"  # "auto": every basis that applies; or a subset of MODE_BASES
    pairs: str = "test"  # pairs whose class averages make the profiles: test | train | all
    ridge: bool | None = None  # feature-family R²; None: when the task has x² + y²
    ridge_alpha: float = 1.0
    n_cross: int = 10  # cross terms: additive and dlog ω = 1…n_cross

    def __post_init__(self) -> None:
        window = _int_field("window (--window)", self.window, 2)
        _int_field("n_directions (--directions)", self.n_directions, 1)
        limit = window - 1 if self.centred else window
        if self.n_directions > limit:
            raise ConfigError(f"n_directions (--directions) must be ≤ {limit}: a {'centred ' if self.centred else ''}"
                              f"window of {window} updates has rank ≤ {limit}, got {self.n_directions}")
        _int_field("n_edge (--edge)", self.n_edge, 0)
        _int_field("n_random (--random)", self.n_random, 0)
        _int_field("seed (--seed)", self.seed, 0)
        _int_field("n_cross", self.n_cross, 1)
        if isinstance(self.epsilon, bool) or not isinstance(self.epsilon, (int, float)) or \
                not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError(f"epsilon (--epsilon) must be a finite number > 0, got {self.epsilon!r}")
        if not (isinstance(self.ridge_alpha, (int, float)) and math.isfinite(self.ridge_alpha) and self.ridge_alpha >= 0):
            raise ConfigError(f"ridge_alpha must be a finite number ≥ 0, got {self.ridge_alpha!r}")
        if self.pairs not in _PAIRS:
            raise ConfigError(f"pairs (--pairs) must be one of {', '.join(_PAIRS)}, got {self.pairs!r}")
        if self.bases != "auto":
            bases = (self.bases,) if isinstance(self.bases, str) else tuple(self.bases)
            bad = [b for b in bases if b not in MODE_BASES]
            if bad or not bases:
                raise ConfigError(f"bases (--basis) must be auto or some of {', '.join(MODE_BASES)}, got {list(bases)}")
            object.__setattr__(self, "bases", tuple(dict.fromkeys(bases)))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


# ---------------------------------------------------------------------- snapshots
@dataclass(frozen=True, eq=False)
class Snapshots:
    """The last S snapshots of a block of parameters, taken every ``every`` steps, oldest
    first: ``values`` (S, P) float32 holds the tensors ``names`` (shapes ``shapes``) flattened
    and concatenated in that order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    steps: tuple[int, ...]
    values: np.ndarray
    every: int | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        sizes = [math.prod(s) for s in self.shapes]
        if len(self.names) != len(self.shapes) or self.values.ndim != 2 or self.values.shape[1] != sum(sizes):
            raise ConfigError(f"snapshots: values of shape {self.values.shape} do not hold the tensors {list(self.names)} "
                              f"of sizes {sizes}")
        if self.values.shape[0] != len(self.steps):
            raise ConfigError(f"snapshots: {self.values.shape[0]} snapshots but {len(self.steps)} steps")

    @property
    def size(self) -> int:
        """P: numbers per snapshot."""
        return int(self.values.shape[1])

    def unflatten(self, vec: np.ndarray) -> dict[str, np.ndarray]:
        """name → a view of ``vec`` (P,) shaped like that tensor."""
        out, at = {}, 0
        for n, s in zip(self.names, self.shapes):
            k = math.prod(s)
            out[n] = vec[at:at + k].reshape(s)
            at += k
        return out

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Any], steps: Sequence[int], every: int | None = None) -> "Snapshots":
        """From name → (S, *shape) arrays (the file's layout), names sorted."""
        names = tuple(sorted(tensors))
        arrs = [np.asarray(tensors[n], dtype=np.float32) for n in names]
        S = len(steps)
        for n, a in zip(names, arrs):
            if a.ndim < 1 or a.shape[0] != S:
                raise ConfigError(f"snapshots: tensor {n!r} has shape {a.shape}, expected ({S}, …) for {S} steps")
        values = np.concatenate([a.reshape(S, -1) for a in arrs], axis=1) if arrs else np.zeros((S, 0), np.float32)
        return cls(names, tuple(a.shape[1:] for a in arrs), tuple(int(s) for s in steps), values, every)


def _meta_steps(path: Path, meta: Mapping[str, str]) -> tuple[tuple[int, ...], int | None]:
    if meta.get("format") != SNAPSHOT_FORMAT:
        raise CorruptCheckpointError(path, f"metadata key 'format' is {meta.get('format')!r}, expected "
                                           f"{SNAPSHOT_FORMAT!r}: not a snapshots file of spectral-edge")
    try:
        steps = json.loads(meta.get("steps", ""))
    except json.JSONDecodeError:
        steps = None
    if not isinstance(steps, list) or not steps or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                          for s in steps):
        raise CorruptCheckpointError(path, f"metadata key 'steps' must be a JSON list of steps, got "
                                           f"{meta.get('steps')!r:.80}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise CorruptCheckpointError(path, f"metadata key 'steps' must increase, got {steps}")
    every = meta.get("every")
    if every is not None:
        if not every.isdigit() or int(every) < 1:
            raise CorruptCheckpointError(path, f"metadata key 'every' must be a whole number ≥ 1, got {every!r}")
        every = int(every)
    return tuple(steps), every


def read_snapshots(path: str | Path) -> Snapshots:
    """Read and check a snapshots file (format in :data:`SNAPSHOT_FORMAT`): a CheckpointError
    subclass naming the file (and the key or tensor) for anything wrong with it."""
    from safetensors import safe_open

    from ..io.checkpoints import CheckpointRef, open_checkpoint

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "not found: this run kept no snapshots of its attention weights (runs made "
                                    "before snapshots were kept, or with snapshots = 0); train it again to use "
                                    "`spectral-edge modes`")
    with open_checkpoint(CheckpointRef(0, path, "safetensors")) as reader:  # validates the header
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as e:  # noqa: BLE001 - any library failure is a damaged file
            raise CorruptCheckpointError(path, f"cannot open safetensors file ({type(e).__name__}: {e})") from e
        steps, every = _meta_steps(path, meta)
        info = reader.tensor_info()
        if not info:
            raise CorruptCheckpointError(path, "holds no tensors")
        S = len(steps)
        for name, ti in info.items():
            if not ti.dtype.is_floating_point:
                raise CorruptCheckpointError(path, f"tensor {name!r} has dtype {ti.dtype}; snapshots are floating point")
            if len(ti.shape) < 1 or ti.shape[0] != S:
                raise ShapeMismatchError(path, f"tensor {name!r} has shape {list(ti.shape)}; expected ({S}, …): one "
                                               f"row per step of metadata key 'steps' ({S} steps)")
        tensors: dict[str, np.ndarray] = {}
        for name, t in reader.iter_tensors(sorted(info)):
            a = t.detach().to(torch.float32).numpy()
            bad = ~np.isfinite(a.reshape(S, -1)).all(axis=1)
            if bad.any():
                i = int(np.argmax(bad))
                raise NonFiniteError(path, f"tensor {name!r} holds NaN or Inf (snapshot {i + 1} of {S}, step {steps[i]})")
            key = normalize_name(name)
            if key in tensors:
                raise CorruptCheckpointError(path, f"tensor {name!r} appears twice (as {key!r})")
            tensors[key] = a
    snaps = Snapshots.from_tensors(tensors, steps, every)
    return replace(snaps, path=path)


# ---------------------------------------------------------------------- directions
def _check_window(snapshots: Snapshots, window: int) -> str:
    S = len(snapshots.steps)
    where = f"{snapshots.path}: " if snapshots.path is not None else ""
    if S < window + 1:
        raise ConfigError(f"{where}holds {S} snapshots; a window of W = {window} updates needs {window + 1} "
                          f"(use --window {S - 1} or fewer)" if S >= 3 else
                          f"{where}holds {S} snapshot{'s' if S != 1 else ''}; a window of 2 updates needs 3")
    return where


def snapshot_directions(snapshots: Snapshots, window: int = 20, n: int = 8,
                        centred: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(V (n, P) unit rows, σ (n,)): the top right singular vectors of the last ``window``
    updates of ``snapshots`` (mean-centred unless ``centred=False``), float64; each row's
    largest entry is positive."""
    where = _check_window(snapshots, window)
    D = np.diff(snapshots.values[-(window + 1):].astype(np.float64), axis=0)  # (W, P)
    if centred:
        D -= D.mean(axis=0, keepdims=True)
    _, s, Vt = np.linalg.svd(D, full_matrices=False)
    if s[0] == 0:
        raise ConfigError(f"{where}the parameters did not move over the window (steps {snapshots.steps[-window - 1]}–"
                          f"{snapshots.steps[-1]}): no update direction to analyse")
    rank = int((s > s[0] * 1e-9).sum())
    if n > rank:
        raise ConfigError(f"{where}the window's updates have rank {rank}; fewer than the {n} directions asked "
                          f"(--directions {rank} or fewer)")
    V = Vt[:n].copy()
    idx = np.argmax(np.abs(V), axis=1)
    V *= np.sign(V[np.arange(n), idx])[:, None]
    return V, s[:n].copy()


def random_directions(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size): Gaussian directions normalised to unit length, from ``default_rng(seed)``."""
    R = np.random.default_rng(int(seed)).standard_normal((int(n), int(size)))
    return R / np.linalg.norm(R, axis=1, keepdims=True) if n else R


# ---------------------------------------------------------------------- response
def default_features(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``model.features(inputs)`` (the reference models: the read-out residual before the final
    LayerNorm); ConfigError for a model without one."""
    fn = getattr(model, "features", None)
    if not callable(fn):
        raise ConfigError(f"{type(model).__name__} has no features(inputs) method: pass features=fn(model, inputs) "
                          "returning the (N, d) activations whose change is measured")
    return fn(inputs)


class _Features(torch.nn.Module):
    """``forward(x) = features(model, x)``, so functional_call can swap the model's tensors."""

    def __init__(self, model: torch.nn.Module, features: FeaturesFn):
        super().__init__()
        self.model = model
        self.fn = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.model, x)


def _block(model: torch.nn.Module, names: Sequence[str], shapes: Sequence[Sequence[int]] | None,
           where: str) -> list[tuple[str, torch.nn.Parameter]]:
    params = {n: (raw, p) for raw, n, p in trainable(model)}
    out = []
    for i, n in enumerate(names):
        if n not in params:
            raise ShapeMismatchError(None, f"{where}tensor {n!r} is not a trainable parameter of the model "
                                           f"({type(model).__name__})")
        raw, p = params[n]
        if shapes is not None and tuple(p.shape) != tuple(shapes[i]):
            raise ShapeMismatchError(None, f"{where}tensor {n!r} has shape {list(shapes[i])} but the model's is "
                                           f"{list(p.shape)}")
        out.append((raw, p))
    return out


def mode_response(model: torch.nn.Module, inputs: torch.Tensor, names: Sequence[str], directions: Any,
                  epsilon: float = 0.005, *, theta: Any = None, features: FeaturesFn | None = None,
                  chunk: int = 1024) -> np.ndarray:
    """f (K, N) float64: f[k, i] = ‖features(θ + ε·v_k/‖v_k‖)(x_i) − features(θ)(x_i)‖² with θ
    the block ``names`` (the model's parameters, or ``theta`` (P,) laid out like the
    directions (K, P)) and ε = ``epsilon``·‖θ‖; the rest of the model as it is, in eval mode.
    Side-effect free (module docs)."""
    V = np.asarray(directions, dtype=np.float64)
    V = V[None] if V.ndim == 1 else V
    block = _block(model, names, None, "")
    sizes = [p.numel() for _, p in block]
    if V.ndim != 2 or V.shape[1] != sum(sizes):
        raise ConfigError(f"directions of shape {V.shape} do not match the block's {sum(sizes)} parameters")
    norms = np.linalg.norm(V, axis=1)
    if not (np.isfinite(norms).all() and (norms > 0).all()):
        raise ConfigError("every direction must be finite and nonzero")
    if theta is None:
        base = torch.cat([p.detach().reshape(-1).to("cpu", torch.float64) for _, p in block])
    else:
        base = torch.as_tensor(np.asarray(theta, dtype=np.float64).reshape(-1))
        if base.numel() != sum(sizes):
            raise ConfigError(f"theta has {base.numel()} numbers, the block {sum(sizes)}")
    eps = float(epsilon) * float(base.norm())
    if not (math.isfinite(eps) and eps > 0):
        raise ConfigError(f"the perturbation ε = {epsilon}·‖θ‖ is {eps}: the block is zero or not finite")
    wrapper = _Features(model, features or default_features)

    def replaced(vec: torch.Tensor) -> dict[str, torch.Tensor]:
        out, at = {}, 0
        for (raw, p), k in zip(block, sizes):
            out[f"model.{raw}"] = vec[at:at + k].view(p.shape).to(device=p.device, dtype=p.dtype)
            at += k
        return out

    def run(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for i in range(0, len(inputs), chunk):
            x = inputs[i:i + chunk]
            y = torch.func.functional_call(wrapper, tensors, (x,), strict=False, tie_weights=True)
            if not isinstance(y, torch.Tensor) or y.shape[0] != len(x):
                raise ConfigError(f"features(model, inputs) must return a tensor with one row per input ({len(x)}), "
                                  f"got {getattr(y, 'shape', type(y).__name__)}")
            parts.append(y.reshape(len(x), -1).to("cpu", torch.float64))
        return torch.cat(parts)

    f = np.empty((V.shape[0], len(inputs)))
    with torch.no_grad(), isolated(model):
        h0 = run(replaced(base))
        for k in range(V.shape[0]):
            step = torch.as_tensor(V[k] * (eps / norms[k]))
            f[k] = ((run(replaced(base + step)) - h0) ** 2).sum(dim=1).numpy()
    return f


# ---------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class DirectionMode:
    """One direction's spectra: ``k`` (1-based within its role's numbering: v_k for edge and
    bulk, the k-th random direction), ``role`` (edge | bulk | random), ``sigma`` (its singular
    value; None for random), ``bases`` basis → :class:`Spectrum`, ``best_basis`` (largest F),
    ``r2`` feature family → in-sample ridge R² (None when not computed)."""

    k: int
    role: str
    sigma: float | None
    bases: Mapping[str, Spectrum]
    best_basis: str | None
    r2: Mapping[str, float] | None = None

    @property
    def label(self) -> str:
        return f"v{self.k}" if self.role != "random" else f"r{self.k}"

    def to_dict(self, spectra: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"k": self.k, "role": self.role, "sigma": self.sigma,
                               "bases": {b: s.to_dict(shares=spectra) for b, s in self.bases.items()},
                               "best_basis": self.best_basis}
        if self.r2 is not None:
            out["r2"] = dict(self.r2)
        return out


@dataclass(frozen=True, eq=False)
class ModesResult:
    """What :func:`analyze_modes` / :func:`run_modes` found (module docs).

    ``directions``: edge, bulk, then random :class:`DirectionMode`; ``summary``: the claims of
    METHODS §7 that apply to this run's operations (:meth:`to_dict` documents the keys);
    ``response_field`` (K, p, p): f_k(a, b) for every direction in ``directions`` order (NaN
    outside the task's domain, e.g. a or b = 0 for ``mul``); ``steps``: the window's W+1
    snapshot steps; ``theta_norm`` ‖θ_block‖ and ``epsilon_abs`` the absolute ε."""

    config: ModesConfig
    modulus: int
    ops: tuple[str, ...]
    task: str
    steps: tuple[int, ...]
    theta_norm: float
    epsilon_abs: float
    n_parameters: int
    n_pairs: int
    directions: tuple[DirectionMode, ...]
    summary: Mapping[str, Any]
    notes: tuple[str, ...]
    response_field: np.ndarray = field(repr=False)
    source: str | None = None

    @property
    def step(self) -> int:
        """The step analysed (the newest snapshot)."""
        return self.steps[-1]

    def by_role(self, role: str) -> list[DirectionMode]:
        return [d for d in self.directions if d.role == role]

    def field_of(self, direction: DirectionMode) -> np.ndarray:
        """f(a, b) (p, p) of one of this result's directions."""
        return self.response_field[self.directions.index(direction)]

    def to_dict(self, spectra: bool = False, response_field: bool = False) -> dict[str, Any]:
        """JSON-ready: ``source``, ``task``, ``op`` (comma-separated for multitask), ``modulus``,
        ``step``, ``window_steps``, ``config``, ``theta_norm``, ``epsilon_abs``, ``n_parameters``,
        ``n_pairs``, ``directions`` (each: ``k``, ``role``, ``sigma``, ``bases`` {basis: {``omega``,
        ``F``, ``ratio_to_uniform``, ``modes``, ``period`` [, ``shares``]}}, ``best_basis`` [, ``r2``]),
        ``summary`` and ``notes``; every share with ``spectra``, f_k(a, b) with ``response_field``."""
        out: dict[str, Any] = {
            "source": self.source, "task": self.task, "op": ",".join(self.ops), "modulus": self.modulus,
            "step": self.step, "window_steps": list(self.steps), "config": self.config.to_dict(),
            "theta_norm": self.theta_norm, "epsilon_abs": self.epsilon_abs, "n_parameters": self.n_parameters,
            "n_pairs": self.n_pairs, "directions": [d.to_dict(spectra) for d in self.directions],
            "summary": json_safe(self.summary), "notes": list(self.notes)}
        if response_field:
            out["response_field"] = [[[None if not math.isfinite(x) else float(x) for x in row] for row in f]
                                     for f in self.response_field]
        return out


# ---------------------------------------------------------------------- the analysis
def _ops(ops: Sequence[str] | str) -> tuple[str, ...]:
    from ..tasks.modular import canonical_op

    items = ops.split(",") if isinstance(ops, str) else list(ops)
    out = tuple(canonical_op(o.strip()) for o in items if o.strip())
    if not out:
        raise ConfigError("ops: name at least one modular operation (add, sub, mul, x2y2, …)")
    return out


def _bases(cfg: ModesConfig, p: int, ops: tuple[str, ...], notes: list[str]) -> list[str]:
    """The bases tried: names of :data:`MODE_BASES`, ``output`` expanded to ``output:<op>`` on
    a multitask run."""
    auto = cfg.bases == "auto"
    chosen = list(MODE_BASES) if auto else list(cfg.bases)
    if "dlog" in chosen and not is_prime(p):
        if not auto:
            raise ConfigError(f"--basis dlog needs a prime modulus; this run's p = {p} is not prime")
        chosen.remove("dlog")
        notes.append(f"p = {p} is not prime: no discrete-log basis")
    out = []
    for b in chosen:
        if b == "output" and len(ops) > 1:
            out += [f"output:{o}" for o in ops]
        else:
            out.append(b)
    return out


def _classes(basis: str, a: np.ndarray, b: np.ndarray, p: int, ops: tuple[str, ...]):
    from ..tasks.modular import OPERATIONS

    if basis in ALGEBRAIC_BASES:
        return basis_classes(basis, a, b, p)
    op = basis.partition(":")[2] or ops[0]
    return np.asarray(OPERATIONS[op](a, b, p), dtype=np.int64) % p, p, np.ones(a.shape, dtype=bool)


def _domain(p: int, ops: tuple[str, ...]) -> np.ndarray:
    from ..tasks.modular import NONZERO_OPERATIONS

    lo = 1 if any(o in NONZERO_OPERATIONS for o in ops) else 0
    r = np.arange(lo, p)
    a, b = np.meshgrid(r, r, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1)


def analyze_modes(model: torch.nn.Module, snapshots: Snapshots, p: int, ops: Sequence[str] | str,
                  config: ModesConfig | None = None, *, pairs: Any = None, features: FeaturesFn | None = None,
                  task: str | None = None) -> ModesResult:
    """Functional modes of ``model`` whose block ``snapshots.names`` was snapshotted (module
    docs). The block's base values are the newest snapshot's (the model's own are not used, nor
    changed); ``ops``: the task's operations (several: a shared-trunk multitask model);
    ``pairs`` (N, 2): the pairs whose class averages make the profiles (default: every pair of
    the domain; :func:`run_modes` passes the run's test split); ``features``: see
    :func:`mode_response`."""
    cfg = config or ModesConfig()
    ops = _ops(ops)
    p = int(p)
    if p < 5:
        raise ConfigError(f"p = {p} is too small for functional modes: a spectrum needs p ≥ 5 (two frequencies or more)")
    notes: list[str] = []
    bases = _bases(cfg, p, ops, notes)
    where = f"{snapshots.path}: " if snapshots.path is not None else "snapshots: "
    _block(model, snapshots.names, snapshots.shapes, where)
    V, sigma = snapshot_directions(snapshots, cfg.window, cfg.n_directions, cfg.centred)
    R = random_directions(cfg.n_random, snapshots.size, cfg.seed)
    theta = snapshots.values[-1].astype(np.float64)
    n_edge = min(cfg.n_edge, cfg.n_directions)
    roles = [("edge" if i < n_edge else "bulk", i + 1, float(sigma[i])) for i in range(len(V))]
    roles += [("random", i + 1, None) for i in range(len(R))]

    dom = _domain(p, ops)
    inputs = torch.as_tensor(dom, dtype=torch.long)
    f = mode_response(model, inputs, snapshots.names, np.vstack([V, R]), cfg.epsilon, theta=theta, features=features)
    resp = np.full((len(roles), p, p), np.nan)
    resp[:, dom[:, 0], dom[:, 1]] = f
    if not np.isfinite(f).all():
        raise NonFiniteError(snapshots.path, "the model's response is NaN or Inf: the model's weights or the "
                                             "perturbation overflow")

    sel = dom if pairs is None else np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if sel.size == 0:
        raise ConfigError("no pairs to fold the response over")
    if sel.min() < 0 or sel.max() >= p or np.isnan(resp[0, sel[:, 0], sel[:, 1]]).any():
        raise ConfigError(f"pairs must lie in the task's domain (0 ≤ a, b < {p}{', nonzero' if dom.min() else ''})")
    a, b = sel[:, 0], sel[:, 1]
    fs = resp[:, a, b]  # (K, N)
    spectra: dict[str, list[Spectrum]] = {}
    for basis in bases:
        q, period, mask = _classes(basis, a, b, p, ops)
        counts = np.bincount(q[mask], minlength=period)
        empty = int((counts == 0).sum())
        if empty and empty >= period // 2:
            notes.append(f"basis {basis}: {empty} of {period} classes have no pair; skipped")
            continue
        if empty:
            which = ", ".join(map(str, np.flatnonzero(counts == 0)[:5])) + (", …" if empty > 5 else "")
            notes.append(f"basis {basis}: class{'es' if empty > 1 else ''} {which} ha{'ve' if empty > 1 else 's'} "
                         "no pair (filled with the mean of the others)")
        spectra[basis] = spectra_of(fs[:, mask], q[mask], period)
    if not spectra:
        raise ConfigError("no basis could be folded: too few pairs")

    ridge = cfg.ridge if cfg.ridge is not None else "x2y2" in ops
    r2 = None
    if ridge:
        nz = (a != 0) & (b != 0)
        n_cross = min(cfg.n_cross, (p - 1) // 2)
        if n_cross < cfg.n_cross:
            notes.append(f"cross terms at ω = 1…{n_cross} only (p = {p})")
        fam = family_r2(fs[:, nz], a[nz], b[nz], p, cfg.ridge_alpha, n_cross) if is_prime(p) and nz.sum() > 1 \
            else None
        if fam is None:
            notes.append("feature-family R² skipped: it needs a prime p and pairs with a, b ≠ 0")
        else:
            r2 = [{k: float(v[i]) for k, v in fam.items()} for i in range(len(roles))]

    dirs = []
    for i, (role, k, s) in enumerate(roles):
        sp = {bname: spectra[bname][i] for bname in spectra}
        finite = {bname: x.F for bname, x in sp.items() if math.isfinite(x.F)}
        best = max(finite, key=lambda bn: (finite[bn], -list(sp).index(bn))) if finite else None
        dirs.append(DirectionMode(k, role, s, sp, best, None if r2 is None else r2[i]))
    flat = [d.label for d in dirs if d.best_basis is None]
    if flat:
        notes.append(f"no response to {', '.join(flat)} (a flat profile): ε too small for float32?")
    summary = _summary(dirs, ops, task or ("multitask" if len(ops) > 1 else "modular"))
    theta_norm = float(np.linalg.norm(theta))
    return ModesResult(cfg, p, ops, task or ("multitask" if len(ops) > 1 else "modular"),
                       tuple(snapshots.steps[-(cfg.window + 1):]), theta_norm, cfg.epsilon * theta_norm,
                       snapshots.size, len(sel), tuple(dirs), summary, tuple(notes), resp)


def _mean(xs: Sequence[float]) -> float | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(xs)) if xs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _F(ds: Sequence[DirectionMode], basis: str) -> list[float]:
    return [d.bases[basis].F for d in ds if basis in d.bases]


def _omegas(ds: Sequence[DirectionMode], basis: str) -> list[int | None]:
    return [d.bases[basis].omega for d in ds if basis in d.bases]


def _summary(dirs: Sequence[DirectionMode], ops: tuple[str, ...], task: str) -> dict[str, Any]:
    """The claims of METHODS §7 that apply to ``ops`` (see ModesResult.to_dict)."""
    edge, bulk, rnd = ([d for d in dirs if d.role == r] for r in ROLES)
    have = set(dirs[0].bases) if dirs else set()
    multitask = task == "multitask" or len(ops) > 1
    want = "add" if multitask else PRIMARY_BASIS.get(ops[0], "output")
    basis = want if want in have else next(iter(dirs[0].bases), None) if dirs else None
    out: dict[str, Any] = {"basis": basis}
    if basis is None:
        return out
    eF, bF, rF = _F(edge, basis), _F(bulk, basis), _F(rnd, basis)
    out["uniform"] = next(iter(dirs)).bases[basis].uniform
    out["edge"] = {"k": [d.k for d in edge], "omega": _omegas(edge, basis), "F": eF, "F_mean": _mean(eF)}
    out["nulls"] = {"bulk_F_mean": _mean(bF), "bulk_F_max": max(bF) if bF else None,
                    "random_F_mean": _mean(rF), "random_F_max": max(rF) if rF else None,
                    "edge_over_bulk": _ratio(_mean(eF), _mean(bF)), "edge_over_random": _ratio(_mean(eF), _mean(rF))}
    if "add" in ops and "add" in have:
        om = _omegas(edge, "add")
        one = bool(om) and None not in om and len(set(om)) == 1
        out["addition"] = {"omegas": om, "one_omega": one, "omega": om[0] if one else None,
                           "F_mean": _mean(_F(edge, "add"))}
    if "mul" in ops and {"mul", "dlog"} <= have:
        d, m = _mean(_F(edge, "dlog")), _mean(_F(edge, "mul"))
        out["multiplication"] = {"dlog_F_mean": d, "mul_F_mean": m, "dlog_over_mul": _ratio(d, m),
                                 "dlog_omegas": _omegas(edge, "dlog"), "mul_omegas": _omegas(edge, "mul")}
    if "sub" in ops and "sub" in have:
        om = _omegas(edge, "sub")
        out["subtraction"] = {"omegas": om, "n_omegas": len({o for o in om if o is not None}),
                              "modes_mean": _mean([d.bases["sub"].modes for d in edge]),
                              "F_mean": _mean(_F(edge, "sub"))}
    if "x2y2" in ops:
        block: dict[str, Any] = {}
        if "add" in have:
            block.update(add_F_mean=_mean(_F(edge, "add")), add_omegas=_omegas(edge, "add"))
        if edge and edge[0].r2 is not None:
            r2 = {fam: _mean([d.r2[fam] for d in edge if d.r2]) for fam in FAMILIES}
            block["r2"] = r2
            if r2["full"] is not None and r2["combined"] is not None:
                block["cross_added"] = r2["full"] - r2["combined"]
                block["cross_gain"] = _ratio(r2["full"], r2["combined"])
            if None not in (r2["combined"], r2["add"], r2["dlog"]):
                block["synergy"] = r2["combined"] - max(r2["add"], r2["dlog"])
        out["x2y2"] = block
    if multitask and "add" in have:
        om = [o for o in _omegas(edge, "add") if o is not None]
        if om:
            w = Counter(om).most_common(1)[0][0]
            out["multitask"] = {"ops": list(ops), "add_omega": w,
                                "add_share_at_omega": _mean([d.bases["add"].share_at(w) for d in edge]),
                                "bulk_share_at_omega": _mean([d.bases["add"].share_at(w) for d in bulk]),
                                "random_share_at_omega": _mean([d.bases["add"].share_at(w) for d in rnd])}
    return out


# ---------------------------------------------------------------------- a run folder
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(path, f"not readable JSON ({' '.join(str(e).split())[:120]})") from None


def load_model_weights(model: torch.nn.Module, path: Path) -> None:
    """Load model.safetensors into ``model`` (our own fresh copy), checking names, shapes, values."""
    from ..io.checkpoints import CheckpointRef, open_checkpoint

    if not path.is_file():
        raise CheckpointError(path, "not found: the run has no final model (did it finish?)")
    want = model.state_dict()
    with open_checkpoint(CheckpointRef(0, path, "safetensors")) as reader:
        info = reader.tensor_info()
        missing, extra = sorted(set(want) - set(info)), sorted(set(info) - set(want))
        if missing or extra:
            raise ShapeMismatchError(path, f"does not fit the model of config.json (missing {missing[:3]}, "
                                           f"unexpected {extra[:3]})")
        state = {}
        for name, t in reader.iter_tensors(sorted(info)):
            if tuple(t.shape) != tuple(want[name].shape):
                raise ShapeMismatchError(path, f"tensor {name!r} has shape {list(t.shape)}, the model's is "
                                               f"{list(want[name].shape)}")
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise NonFiniteError(path, f"tensor {name!r} holds NaN or Inf")
            state[name] = t.to(want[name].dtype)
    model.load_state_dict(state)


def run_modes(run: str | Path, config: ModesConfig | None = None, *,
              features: FeaturesFn | None = None) -> ModesResult:
    """Functional modes of a modular-arithmetic run folder (module docs). Reads config.json
    (task, op, modulus, model overrides, split), snapshots.safetensors, model.safetensors and,
    when present, summary.json; a user error (no snapshots, too few of them, a non-modular task,
    p too small, a damaged file) is a :class:`~spectral_edge.errors.SpectralEdgeError` naming the
    file."""
    from ..experiments.config import RunConfig, check_task_options
    from ..experiments.workloads import build_workload
    from ..tasks.modular import make_modular, make_multitask_modular

    cfg = config or ModesConfig()
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"{run}: {'not a folder' if run.exists() else 'no such folder'}; give a run folder "
                          "written by spectral-edge grok or run")
    if not (run / "config.json").is_file():
        raise CheckpointError(run, "no config.json: not a run folder written by spectral-edge grok or run")
    rc = RunConfig.from_file(run / "config.json")
    if rc.task not in ("modular", "multitask"):
        raise ConfigError(f"{run / 'config.json'}: task is {rc.task!r}; functional modes need a modular-arithmetic "
                          "run (task modular or multitask)")
    if rc.modulus < 5:
        raise ConfigError(f"{run / 'config.json'}: modulus p = {rc.modulus} is too small for functional modes "
                          "(p ≥ 5: a spectrum needs two frequencies or more)")
    snaps = read_snapshots(run / SNAPSHOTS_FILE)
    _check_window(snaps, cfg.window)
    summary_path = run / "summary.json"
    run_summary = _read_json(summary_path) if summary_path.is_file() else None
    notes: list[str] = []
    wl = build_workload(rc)
    model = wl.model
    load_model_weights(model, run / "model.safetensors")
    ops = _ops(rc.op)
    fixed = ("op", "p", "train_frac", "seed") if rc.task == "modular" else ("ops", "p", "train_frac", "seed")
    maker = make_modular if rc.task == "modular" else make_multitask_modular
    opts = check_task_options(maker, rc.task_options, fixed)
    pairs = None
    if cfg.pairs != "all":
        first = ops[0] if rc.task == "modular" else ops
        data = maker(first, p=rc.modulus, train_frac=rc.train_frac, seed=rc.effective_data_seed, **opts)
        pairs = (data.test_x if cfg.pairs == "test" else data.train_x).numpy()
    steps_run = run_summary.get("steps_run") if isinstance(run_summary, dict) else None
    if steps_run is None:
        notes.append("no summary.json with steps_run: cannot check that the last snapshot is the final model")
    elif steps_run != snaps.steps[-1]:
        notes.append(f"the last snapshot is at step {snaps.steps[-1]} but the run ended at step {steps_run}: the "
                     f"model is model.safetensors with the snapshot's {len(snaps.names)} tensors substituted")
    else:
        own = {n: p.detach().numpy() for _, n, p in trainable(model) if n in set(snaps.names)}
        last = snaps.unflatten(snaps.values[-1])
        if any(not np.array_equal(own[n], last[n]) for n in own):
            notes.append("model.safetensors differs from the last snapshot at the same step; the snapshot's "
                         "values are used")
    acc = run_summary.get("final_test_acc") if isinstance(run_summary, dict) else None
    if isinstance(acc, (int, float)) and acc < 0.95:
        notes.append(f"the model had not generalised at the end of the run (test accuracy {acc:.3f} < 0.95): "
                     "METHODS §7 reads the modes of a grokked model")
    res = analyze_modes(model, snaps, rc.modulus, ops, cfg, pairs=pairs, features=features, task=rc.task)
    return replace(res, source=str(run), notes=tuple(notes) + res.notes)
