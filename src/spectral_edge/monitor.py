"""The live monitor: watch the spectral edge of a model while it trains.

::

    mon = Monitor(model, windows=(10,), every=100, history="runs/a/history.jsonl")
    handle = mon.attach(optimizer)        # or call mon.step() after each optimizer.step()
    ...                                   # train as usual; mon.log(loss=..., val_loss=...)
    handle.remove(); mon.close()

On the optimizer steps its cadence chooses (every ``every``-th step, or a schedule such as
``every=[(2000, 10), (None, 100)]``; see :mod:`spectral_edge.stream.cadence`) the monitor
sketches the selected parameters (one pass, d numbers kept per sample), updates its windows,
computes the spectrum of each window and streams a typed row to the history file and the
loggers. It reads parameters and gradients
without changing them, never touches an RNG, and its state resumes bit-identically
(``state_dict()`` / ``load_state_dict()``).

Streams: ``sed`` (the updates θ_t − θ_{t−1} between samples) and, with ``gradients=True``,
``grad`` (the gradients just before the sampled optimizer steps, gradient-SED).

Distributed (``torch.distributed``): replicated parameters (DDP) need no communication and
rank 0 records; sharded parameters (FSDP2 / DTensor) are sketched shard by shard at their
global coordinates and one all-reduce of d floats per group and sample gives the full sketch.

What ``sketch="auto"`` costs in checkpoints
-------------------------------------------
``auto`` (the default) keeps the *exact* window for models whose exact window state fits
:data:`AUTO_EXACT_BYTES` (64 MiB): ``(W+2)·P·8`` bytes per stream, i.e. P ≤ 699k parameters
at W = 10 (350k with ``gradients=True``). Exact spectra carry no projection error, which is
why the papers' small modular and Dyck models use it (their windows: 26–29 MB). But the
whole window is the monitor's state, and ``state_dict()`` — what the Hugging Face and
Lightning callbacks save with every checkpoint — holds all of it: about **24× the model's
float32 weights at W = 10** (48× with ``gradients=True``), up to 64 MiB per checkpoint.
Measured (``torch.save`` of ``state_dict()``, W = 10): a GPT-2 of 84k parameters (0.34 MB of
weights) writes 8.1 MB per checkpoint with ``auto`` (16.2 MB with gradients), 0.014 MB with
``fold``; one of 4.4k parameters writes 0.42 MB against 0.019 MB of weights. ``fold`` keeps
d = 10·W numbers per sample whatever the model (about 14 KB per stream at W = 10) and costs
a JL error in the gap ratio (median 7–12% at d = 10·W, see docs/benchmarks.md). Choose
``sketch="fold"`` when checkpoints are many or disk is tight; keep ``auto``/``exact`` when
exact spectra matter more than checkpoint size. :attr:`Monitor.state_bytes` tells the
size of the state before any checkpoint is written.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from . import __version__
from .errors import ConfigError, NonFiniteError, StateError
from .functional.sketch import SketchSpec
from .io.history import HistoryWriter
from .probes.base import Probe, ProbeContext
from .selection import Selection, normalize_name
from .stream.analyzer import AnalysisConfig, Row, TrajectoryAnalyzer, default_sketch
from .stream.cadence import Cadence, CadenceSpec, mixes_spacings
from .stream.sampler import Item
from .stream.sharding import allreduce_sketches, dtensor_pieces, is_dtensor

#: ``sketch="auto"`` keeps the exact window while it costs at most this many bytes. The whole
#: window is saved with every checkpoint (about 24× the float32 weights at W = 10, see the
#: module docs); the bound is not lowered because the papers' reproductions rely on it.
AUTO_EXACT_BYTES = 64 << 20
STATE_VERSION = 1


def resolve_sketch(sketch: SketchSpec | str, n_params: int, max_window: int, streams: int = 1) -> SketchSpec:
    """``auto`` → exact when the exact window state fits AUTO_EXACT_BYTES, else fold with the
    default d = 10·W; a family name → that family with the default d (:func:`default_sketch`)."""
    if isinstance(sketch, SketchSpec):
        return sketch
    if sketch == "auto":
        exact_bytes = streams * (max_window + 2) * n_params * 8
        return SketchSpec("exact") if exact_bytes <= AUTO_EXACT_BYTES else default_sketch((max_window,))
    return default_sketch((max_window,), sketch)


class _Handle:
    """Removes the optimizer hooks installed by :meth:`Monitor.attach`."""

    def __init__(self, handles: Sequence[Any]):
        self._handles = list(handles)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


class Monitor:
    """Spectral-edge monitor for a live PyTorch model (see module docs).

    Parameters
    ----------
    model: an ``nn.Module`` or an iterable of ``(name, parameter)`` pairs. Tied parameters
        count once; only parameters with ``requires_grad`` are watched.
    windows: window sizes W (rows for each; one pairwise matrix serves all).
    every: when to sample: every this many optimizer steps (the papers: 100 for modular
        arithmetic, 200 for language models), a schedule of ``(until_step, every)`` pairs
        (``[(2000, 10), (None, 100)]``: steps 0, 10, …, 1990, then 2000, 2100, …; ``until`` is
        exclusive and each entry samples its first step), or a callable ``step -> bool``
        (see :mod:`spectral_edge.stream.cadence`). A window is W consecutive *samples*,
        whatever their spacing: across a schedule's boundary it mixes updates over different
        numbers of steps (a 100-step update is typically ~10× a 10-step one and dominates the
        spectrum). Each row records ``sample_spacing`` (steps since the previous sample) and
        ``step_first`` (the first step its window spans), and the history's meta row the
        cadence (``every``: the int, the schedule as lists, or ``"callable <name>"``). The
        sample at ``start_step`` (``sample_initial``) is taken whatever the cadence says.
    sketch: a :class:`SketchSpec`, a family name, or ``"auto"`` (exact for small models,
        fold with d = 10·W otherwise). The exact window is saved whole in ``state_dict()``,
        about 24× the model's float32 weights at W = 10 (see the module docs for the numbers
        and when to choose ``"fold"``, ~14 KB whatever the model).
    selection: which parameters and groups (default: all, one group).
    kstar_rule: ``floor`` (default), ``argmax`` or ``weighted``.
    gradients: also run the gradient stream (gradient-SED) on the sampled steps.
    history: path of the JSON-lines history file (None: keep rows in memory only).
    loggers: objects with ``log_metrics(metrics: dict, step: int)`` (TensorBoard, W&B…).
    probes: :class:`~spectral_edge.probes.base.Probe` objects run on their own schedule.
    detectors: online detectors, objects with ``update(rows) -> list of event rows`` (and
        optionally ``state_dict``/``load_state_dict`` and a ``name``): they see every row
        the monitor records, and the events they return are recorded too (alarms).
    on_nonfinite: ``"warn"`` (record an event, skip the sample) or ``"raise"``.
    start_step: optimizer step of the current parameters (0 for a fresh run).
    sample_initial: sketch the current parameters now, as the sample at ``start_step``.
    distributed: ``"auto"``, ``"replicated"``, ``"sharded"`` or ``None`` (single process).
    log_lr: with :meth:`attach`, record the optimizer's learning rate at sampled steps.
    """

    def __init__(
        self,
        model: torch.nn.Module | Iterable[tuple[str, torch.nn.Parameter]],
        *,
        windows: Sequence[int] = (10,),
        every: CadenceSpec = 100,
        sketch: SketchSpec | str = "auto",
        selection: Selection | None = None,
        kstar_rule: str = "floor",
        gradients: bool = False,
        history: str | Path | None = None,
        loggers: Sequence[Any] = (),
        probes: Sequence[Probe] = (),
        detectors: Sequence[Any] = (),
        on_nonfinite: str = "warn",
        start_step: int = 0,
        sample_initial: bool = True,
        distributed: str | None = "auto",
        process_group: Any = None,
        log_lr: bool = True,
        keep_rows: bool = True,
    ):
        cadence = Cadence(every)
        if on_nonfinite not in ("warn", "raise"):
            raise ConfigError(f"on_nonfinite must be 'warn' or 'raise', got {on_nonfinite!r}")
        self.model = model if isinstance(model, torch.nn.Module) else None
        named = model.named_parameters() if isinstance(model, torch.nn.Module) else model
        self._params: dict[str, torch.nn.Parameter] = {}
        seen_ids: set[int] = set()
        for raw, p in named:
            if not p.requires_grad or id(p) in seen_ids:
                continue
            seen_ids.add(id(p))
            name = normalize_name(raw)
            if name in self._params:
                raise ConfigError(f"two parameters are both named {name!r} once wrapper prefixes are removed")
            self._params[name] = p
        if not self._params:
            raise ConfigError("the model has no trainable parameters to monitor")
        #: the cadence as given (an int stays an int); :attr:`cadence` answers for a step
        self.every = cadence.period if cadence.period is not None else every
        self.cadence = cadence
        self.gradients = bool(gradients)
        self.on_nonfinite = on_nonfinite
        self.loggers = list(loggers)
        self.probes = list(probes)
        self.detectors = list(detectors)
        self.log_lr = log_lr
        self.keep_rows = keep_rows
        self.rows: list[Row] = []
        self.pg = process_group
        self.mode = self._dist_mode(distributed)
        self.rank = torch.distributed.get_rank(self.pg) if self.mode else 0
        #: bytes this process has all-reduced (sharded mode only; replicated mode sends nothing)
        self.bytes_communicated = 0
        infos = {n: (tuple(self._global_shape(p)), p.dtype) for n, p in self._params.items()}
        n_params = sum(math.prod(s) for s, _ in infos.values())
        spec = resolve_sketch(sketch, n_params, max(windows), 2 if gradients else 1)
        self.config = AnalysisConfig(windows=tuple(windows), sketch=spec, selection=selection or Selection(),
                                     kstar_rule=kstar_rule)
        self.updates = TrajectoryAnalyzer(self.config, infos)
        self.grads = TrajectoryAnalyzer(self.config, infos, difference=False) if gradients else None
        self.global_step = int(start_step)
        self._history_path = None if history is None else Path(history)
        self._history: HistoryWriter | None = None
        self._history_started = False  # once written, a reopened history appends
        self._optimizer: torch.optim.Optimizer | None = None
        if sample_initial:
            self._sample(self.global_step)

    # ------------------------------------------------------------------ set-up helpers
    def _dist_mode(self, distributed: str | None) -> str | None:
        if distributed not in (None, "auto", "replicated", "sharded"):
            raise ConfigError(f"distributed must be auto, replicated, sharded or None, got {distributed!r}")
        import torch.distributed as dist

        active = dist.is_available() and dist.is_initialized() and dist.get_world_size(self.pg if hasattr(self, "pg") else None) > 1
        if distributed is None or not active:
            if distributed in ("replicated", "sharded") and not active:
                raise ConfigError(f"distributed={distributed!r} needs an initialised torch.distributed process group")
            return None
        if distributed == "auto":
            return "sharded" if any(is_dtensor(p) for p in self._params.values()) else "replicated"
        return distributed

    @staticmethod
    def _global_shape(p: torch.Tensor) -> torch.Size:
        return p.shape  # a DTensor reports its global shape

    @property
    def n_parameters(self) -> int:
        return self.updates.n_parameters

    @property
    def state_bytes(self) -> int:
        """Bytes of window state in :meth:`state_dict` (what each saved checkpoint gets; the
        file adds a few KB): ``(W+2)·d·8 + (W+1)²·8`` per group and stream, with d = P for
        the exact sketch."""
        analyzers = [self.updates] + ([self.grads] if self.grads is not None else [])
        return sum(w.nbytes() for a in analyzers for w in a.windows.values())

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer given to :meth:`attach` (None before)."""
        return self._optimizer

    @property
    def is_recorder(self) -> bool:
        """True on the process that writes history and logs (rank 0)."""
        return self.rank == 0

    # ------------------------------------------------------------------ sampling
    def _pieces(self, use_grad: bool) -> Iterator[Item]:
        """Every selected parameter (or gradient) as ``(name, tensor)``, or for a DTensor as
        pieces ``(name, local values, global flat offset)``.

        In sharded mode a plain (non-DTensor) tensor is taken to be replicated and only rank 0
        contributes it, so the all-reduce counts it once."""
        wanted = self.updates.shapes
        for name, p in self._params.items():
            if name not in wanted:
                continue
            t = p.grad if use_grad else p
            if t is None:
                continue
            t = t.detach()
            if is_dtensor(t):
                yield from dtensor_pieces(name, t)
            elif self.mode != "sharded" or self.rank == 0:
                yield name, t

    def _sketch(self, analyzer: TrajectoryAnalyzer, use_grad: bool) -> dict[str, torch.Tensor] | None:
        """Sketch the current parameters (or gradients); None if a tensor is non-finite."""
        sk = analyzer.sketcher
        first = next(iter(self._params.values()))
        device = first.to_local().device if is_dtensor(first) else first.device
        try:
            out = sk.sketch_pieces(self._pieces(use_grad), device)
        except NonFiniteError as e:
            if self.mode != "sharded":
                return self._nonfinite(e, use_grad)
            # every rank must still join the all-reduce: send NaN, which every rank then sees
            out = {g: torch.full((sk.dims[g],), float("nan"), dtype=torch.float64) for g in sk.groups}
        if self.mode == "sharded":
            out = self._allreduce(out)
            if any(not bool(torch.isfinite(v).all()) for v in out.values()):
                return self._nonfinite(NonFiniteError(None, "a shard holds NaN or Inf"), use_grad)
        return out

    def _allreduce(self, sketches: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sum the per-rank sketches: one all-reduce of (groups × d) float64 numbers."""
        out = allreduce_sketches(sketches, self.pg)
        self.bytes_communicated += sum(v.numel() * v.element_size() for v in out.values())
        return out

    def _nonfinite(self, e: NonFiniteError, use_grad: bool) -> None:
        what = "gradient" if use_grad else "parameter"
        msg = f"step {self.global_step}: {what} {e.problem}; sample skipped"
        if self.on_nonfinite == "raise":
            raise NonFiniteError(None, f"step {self.global_step}: {what} {e.problem}")
        warnings.warn(f"spectral-edge: {msg}", RuntimeWarning, stacklevel=3)
        self._record([{"kind": "event", "step": self.global_step, "event": "nonfinite",
                       "stream": "grad" if use_grad else "sed", "message": msg}])
        return None

    def _sample(self, step: int) -> list[Row]:
        if self.mode == "replicated" and not self.is_recorder:
            return []
        sk = self._sketch(self.updates, use_grad=False)
        if sk is None:
            return []
        rows = [{"kind": "sed", **r} for r in self.updates.push_sketches(step, sk)]
        if self.log_lr and self._optimizer is not None:
            lr = self._optimizer.param_groups[0].get("lr")
            if lr is not None:
                rows.append({"kind": "log", "step": step, "lr": float(lr)})
        self._record(rows)
        return rows

    def sample_gradients(self, step: int | None = None) -> list[Row]:
        """Sketch the current gradients as the gradient-stream sample at ``step`` (default:
        the step about to be taken). Called by the pre-step hook on sampled steps."""
        if self.grads is None:
            raise ConfigError("this monitor was made with gradients=False")
        step = self.global_step + 1 if step is None else int(step)
        if self.mode == "replicated" and not self.is_recorder:
            return []
        sk = self._sketch(self.grads, use_grad=True)
        if sk is None:
            return []
        rows = [{"kind": "grad", **r} for r in self.grads.push_sketches(step, sk)]
        self._record(rows)
        return rows

    def step(self, step: int | None = None) -> list[Row]:
        """Call after each optimizer step (or let :meth:`attach` do it). Counts the step,
        samples on the cadence, runs due probes; returns the rows written."""
        self.global_step = self.global_step + 1 if step is None else int(step)
        rows: list[Row] = []
        if self.cadence(self.global_step):
            rows += self._sample(self.global_step)
        for probe in self.probes:
            if probe.should_run(self.global_step):
                res = probe.run(self.probe_context())
                if res and self.is_recorder:
                    row = {"kind": "probe", "probe": probe.name, "step": self.global_step, **dict(res)}
                    self._record([row])
                    rows.append(row)
        return rows

    def probe_context(self) -> ProbeContext:
        """What the probes see now: the model, the optimizer, the step and a read-only view of
        the update stream's windows (see :class:`~spectral_edge.probes.base.ProbeContext`)."""
        return ProbeContext(step=self.global_step, model=self.model, optimizer=self._optimizer,
                            windows=MappingProxyType(self.updates.windows), sketch=self.config.sketch,
                            names=tuple(self.updates.plan.names))

    def pre_step(self, step: int | None = None) -> list[Row]:
        """Call just before optimizer step ``step`` (default: the next one) is applied: samples
        the gradient stream when that step is on the cadence. :meth:`attach` does it for you."""
        step = self.global_step + 1 if step is None else int(step)
        if self.grads is not None and self.cadence(step):
            return self.sample_gradients(step)
        return []

    def _pre_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.pre_step()  # a step pre-hook must return None (or replacement args)

    def _post_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.step()

    def attach(self, optimizer: torch.optim.Optimizer) -> _Handle:
        """Install optimizer step hooks: gradients before the step (if enabled), sampling
        after it. Returns a handle whose ``remove()`` detaches the monitor."""
        self._optimizer = optimizer
        handles = [optimizer.register_step_post_hook(self._post_hook)]
        if self.grads is not None:
            handles.append(optimizer.register_step_pre_hook(self._pre_hook))
        return _Handle(handles)

    # ------------------------------------------------------------------ history & loggers
    def log(self, step: int | None = None, **metrics: float) -> None:
        """Record user metrics (lr, loss, val_loss, val_acc…) at ``step`` (default: now)."""
        if not metrics:
            return
        step = self.global_step if step is None else int(step)
        clean = {k: (float(v.item()) if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
        self._record([{"kind": "log", "step": step, **clean}])

    def record_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> dict[str, float]:
        """Record a training framework's logged metrics (a Trainer's loss, validation metrics…)
        as one ``log`` row at ``step`` (default: now); the framework callbacks use it. A tensor
        of one element or a numpy scalar becomes a float; what is not a number (text, booleans,
        larger tensors) is left out; a NaN or infinite value is left out too, with one
        ``nonfinite_metric`` event naming the metric. Returns the metrics recorded."""
        step = self.global_step if step is None else int(step)
        clean: dict[str, float] = {}
        events: list[Row] = []
        for k, v in metrics.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    continue
                v = v.detach().item()
            elif hasattr(v, "item") and getattr(v, "ndim", None) == 0:
                v = v.item()  # a numpy scalar
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if not math.isfinite(v):
                events.append({"kind": "event", "step": step, "event": "nonfinite_metric", "metric": k,
                               "message": f"step {step}: the logged metric {k} is {v}; not recorded"})
                continue
            clean[k] = float(v)
        if clean:
            self._record([{"kind": "log", "step": step, **clean}])
        self._record(events)
        return clean

    def _open_history(self, mode: str) -> None:
        if self._history is None and self._history_path is not None and self.is_recorder:
            meta = {"library": "spectral-edge", "version": __version__, "config": self.config.to_dict(),
                    "every": self.cadence.record(), "gradients": self.gradients, "n_parameters": self.n_parameters,
                    "groups": self.updates.groups, "distributed": self.mode}
            self._history = HistoryWriter(self._history_path, meta, mode=mode)
            self._history_started = True

    def record_events(self, rows: list[Row]) -> None:
        """Write rows made elsewhere (an intervention's ``event`` rows) into this monitor's history
        and loggers, as the monitor's own rows are (only on the recording rank)."""
        self._record([dict(r) for r in rows])

    def _record(self, rows: list[Row]) -> None:
        if not rows or not self.is_recorder:
            return
        if self.keep_rows:
            self.rows.extend(rows)
        self._open_history("a" if self._history_started else "w")
        if self._history is not None:
            self._history.write(rows)
        if self.loggers:
            metrics = logger_metrics(rows, self.config.windows[0])
            for lg in self.loggers:
                for step, m in metrics.items():
                    lg.log_metrics(m, step)
        feed = [r for r in rows if not mixes_spacings(r)]  # a window across a schedule's boundary is not judged
        events = [ev for det in self.detectors for ev in (det.update(feed) or [])]
        if events:
            self._record([{"kind": "event", **ev} for ev in events])

    @property
    def history_path(self) -> Path | None:
        return self._history_path

    def frame(self, kind: str | None = "sed"):
        """The rows recorded in this process as a DataFrame (one ``kind``, or all)."""
        import pandas as pd

        rows = self.rows if kind is None else [r for r in self.rows if r["kind"] == kind]
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: counters, windows, probe states (tensors and numbers)."""
        return {
            "version": STATE_VERSION,
            "global_step": self.global_step,
            "every": self.cadence.record(),
            "updates": self.updates.state_dict(),
            "grads": None if self.grads is None else self.grads.state_dict(),
            "probes": {p.name: p.state_dict() for p in self.probes},
            "detectors": {_name(d, i): d.state_dict() for i, d in enumerate(self.detectors) if hasattr(d, "state_dict")},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume. The history (if any) is reopened for appending, and rows written after the
        saved step by the interrupted run are dropped, so the file matches an uninterrupted run."""
        if state.get("version") != STATE_VERSION:
            raise StateError(f"monitor state version {state.get('version')} is not {STATE_VERSION}")
        if not self.cadence.matches(state["every"]):
            saved = state["every"]
            was = f"every {saved} steps" if isinstance(saved, int) else f"with every = {saved!r}"
            raise StateError(f"the saved monitor sampled {was}, this one {self.cadence.describe()} "
                             "(pass the same every to resume)")
        try:
            self.updates.load_state_dict(state["updates"])
        except StateError as e:
            raise StateError(f"cannot resume the monitor: {e} (the parameter set or settings changed)") from None
        if (state.get("grads") is None) != (self.grads is None):
            raise StateError("the saved monitor and this one differ in gradients=True/False")
        if self.grads is not None:
            self.grads.load_state_dict(state["grads"])
        for p in self.probes:
            if p.name in state.get("probes", {}):
                p.load_state_dict(state["probes"][p.name])
        for i, d in enumerate(self.detectors):
            saved = state.get("detectors", {}).get(_name(d, i))
            if saved is not None and hasattr(d, "load_state_dict"):
                d.load_state_dict(saved)
        self.global_step = int(state["global_step"])
        self.rows = [r for r in self.rows if r.get("step") is not None and r["step"] <= self.global_step]
        if self._history is None and self._history_path is not None and self.is_recorder:
            if self._history_path.exists():
                self._open_history("a")
                assert self._history is not None
                self._history.truncate_after(self.global_step)
        elif self._history is not None:
            self._history.truncate_after(self.global_step)

    def close(self) -> None:
        """Close the history file (the monitor can still be inspected)."""
        if self._history is not None:
            self._history.close()
            self._history = None

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def logger_metrics(rows: Iterable[Row], primary_window: int) -> dict[int, dict[str, float]]:
    """Namespaced scalars per step: ``sed/k_star``, ``sed/gap_ratio``… for group ``all`` at
    the primary W; ``sed/W20/…`` for other windows, ``sed/<group>/…`` for other groups,
    ``grad/…`` for the gradient stream, ``log/…``, ``probe/<name>/…``, ``event/…``."""
    keys = ("k_star", "gap_ratio", "gap", "g23", "pc1_pct", "k95", "drift_speed", "turning", "sigma_1", "sigma_2", "sigma_3")
    out: dict[int, dict[str, float]] = {}
    for r in rows:
        step = r.get("step")
        if step is None:
            continue
        m = out.setdefault(int(step), {})
        kind = r["kind"]
        if kind in ("sed", "grad"):
            prefix = kind
            if r.get("group", "all") != "all":
                prefix += f"/{r['group']}"
            if r.get("window") != primary_window:
                prefix += f"/W{r['window']}"
            for k in keys:
                v = r.get(k)
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    m[f"{prefix}/{k}"] = float(v)
        elif kind in ("log", "probe"):
            prefix = "log" if kind == "log" else f"probe/{r.get('probe')}"
            for k, v in r.items():
                if k in ("kind", "step", "probe"):
                    continue
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
                    m[f"{prefix}/{k}"] = float(v)
        elif kind == "event":
            m[f"event/{r.get('event', 'event')}"] = 1.0
    return {s: m for s, m in out.items() if m}


def _name(obj: Any, index: int) -> str:
    return str(getattr(obj, "name", f"{type(obj).__name__}{index}"))

