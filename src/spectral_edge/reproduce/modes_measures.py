"""Measures of the functional-modes reproduction: the modes of every finished run of
:func:`~.plans.modes_plan` (:func:`spectral_edge.analysis.modes.run_modes` with the defaults of
METHODS §7), and of one seed per operation again under each alternative choice of
:data:`CHOICES` (uncentred window, W = 10, ε × 0.2 and × 4), as one JSON-safe record: no
verdicts, no text (those are :mod:`.modes_claims`).

The record (:func:`modes_study`)::

    {"quick", "modulus", "min_acc", "choice_seed",
     "runs":    [run record, …],                 # every finished run, the default choices
     "choices": {name: {"label", "config", "runs": [run record, …]}},   # the choice seed only
     "failed":  [{"run", "error"}, …],           # runs whose modes could not be computed
     "heatmap": {"run", "direction", "field"},   # f_1(a, b) of the addition run, for the figure
     "loss_modes": [LossModes.to_dict() + op, seed, …],  # the spectral loss decomposition per run
     "timing":  {"analysis_seconds", "analyses", "this_call_seconds"}}   # analysis_seconds: as computed,
                                                                        # cached or not

A *run record*: ``run`` (folder name), ``op`` (the operation, ``multitask`` for the tri-task
model), ``ops``, ``seed``, ``modulus``, ``grok_step``, ``steps_run``, ``final_test_acc``,
``wall_seconds`` and ``modes`` (``ModesResult.to_dict(spectra=True)``).

The analyses are cached in ``OUT/modes_cache/`` (one JSON per run and choice, keyed by the
choices and the snapshots file's size and time; the heatmap's field beside them), so
regenerating the document costs nothing. A run folder without ``snapshots.safetensors`` (the
committed evidence, docs/data/modes) is read from its cache entries of the same choices.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..experiments.suite import SuiteRun
from .plans import CHOICE_SEED

#: the alternative choices (METHODS §7 and the issue): name → (label, ModesConfig overrides)
CHOICES: dict[str, tuple[str, dict[str, Any]]] = {
    "uncentred": ("uncentred window", {"centred": False}),
    "W10": ("W = 10", {"window": 10}),
    "eps_x0.2": ("ε × 0.2", {"epsilon": 0.001}),
    "eps_x4": ("ε × 4", {"epsilon": 0.02}),
}
#: the modes of a model that has generalised (METHODS §7): final test accuracy at least this
MIN_TEST_ACC = 0.95
CACHE = "modes_cache"
HEATMAP_OP = "add"


def run_op(run: SuiteRun) -> str:
    """The operation a run stands for in the claims: its op, or ``multitask`` for the tri-task model."""
    return "multitask" if run.config.task == "multitask" else run.config.op


def _cache_key(folder: Path, cfg: Any) -> dict[str, Any]:
    st = (folder / "snapshots.safetensors").stat()
    return {"config": cfg.to_dict(), "snapshots": [st.st_size, st.st_mtime_ns]}


def _cached(path: Path, folder: Path, cfg: Any) -> dict[str, Any] | None:
    """The cache entry at ``path`` when it answers the run's key (:func:`_cache_key`); for a
    folder without snapshots (committed evidence) when it was computed with the same choices."""
    key = _cache_key(folder, cfg) if (folder / "snapshots.safetensors").is_file() else None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("key"), dict):
        return None
    if key is not None:
        return saved if saved["key"] == key else None
    return saved if saved["key"].get("config") == json.loads(json.dumps(cfg.to_dict())) else None


def _modes(folder: Path, cfg: Any, cache: Path, name: str) -> tuple[dict[str, Any], Any, float]:
    """(the result's JSON form, the ModesResult or None when it came from the cache, the seconds
    the analysis took when it was computed). A run folder without its snapshots (the committed
    evidence) is answered from the cache alone."""
    from ..analysis.modes import run_modes
    from ..experiments.checkpoint import write_text_file

    path = cache / f"{folder.name}--{name}.json"
    saved = _cached(path, folder, cfg)
    if saved is not None and isinstance(saved.get("seconds"), float) and isinstance(saved.get("modes"), dict):
        return saved["modes"], None, saved["seconds"]
    t0 = time.perf_counter()
    res = run_modes(folder, cfg)
    seconds = time.perf_counter() - t0
    rec = json.loads(json.dumps(res.to_dict(spectra=True), default=float))
    cache.mkdir(parents=True, exist_ok=True)
    write_text_file(path, json.dumps({"key": _cache_key(folder, cfg), "seconds": seconds, "modes": rec}))
    return rec, res, seconds


def run_record(folder: Path, run: SuiteRun, modes: Mapping[str, Any]) -> dict[str, Any]:
    """One run's record (module docs) from its summary.json and its modes."""
    summary = json.loads((folder / "summary.json").read_text())
    return {"run": run.name, "op": run_op(run), "ops": list(modes.get("op", "").split(",")), "seed": run.config.seed,
            "modulus": run.config.modulus, "grok_step": summary.get("grok_step"),
            "grok_step_098x3": summary.get("grok_step_098x3"), "steps_run": summary.get("steps_run"),
            "final_test_acc": summary.get("final_test_acc"), "wall_seconds": summary.get("wall_seconds"),
            "modes": dict(modes)}


def _field(res: Any, folder: Path, cfg: Any, cache: Path) -> list[list[float | None]]:
    """f_1(a, b) of the run: from ``res``, else from the cache (``<run>--field.json``), else
    computed again; cached beside the modes so that committed evidence (no snapshots) draws it."""
    import math

    from ..analysis.modes import run_modes
    from ..experiments.checkpoint import write_text_file

    path = cache / f"{folder.name}--field.json"
    if res is None:
        saved = _cached(path, folder, cfg)
        if saved is not None and isinstance(saved.get("field"), list):
            return saved["field"]
        res = run_modes(folder, cfg)
    f = res.field_of(res.by_role("edge")[0])
    field = [[None if not math.isfinite(x) else float(x) for x in row] for row in f]
    cache.mkdir(parents=True, exist_ok=True)
    write_text_file(path, json.dumps({"key": _cache_key(folder, cfg), "field": field}))
    return field


#: the loss decomposition's window (the monitor's W = 10 of the papers' spectral edge)
LOSS_MODES_WINDOW = 10


@dataclass(frozen=True)
class _LossModesChoice:
    window: int = LOSS_MODES_WINDOW

    def to_dict(self) -> dict[str, Any]:
        return {"analysis": "loss_modes", "window": self.window}


def _loss_modes(folder: Path, cache: Path) -> dict[str, Any] | None:
    """:func:`~spectral_edge.analysis.loss_modes.run_loss_decomposition` of a modular run,
    cached beside its modes (``<run>--lossmodes.json``); from the cache alone without snapshots."""
    from ..analysis.loss_modes import run_loss_decomposition
    from ..experiments.checkpoint import write_text_file

    cfg = _LossModesChoice()
    path = cache / f"{folder.name}--lossmodes.json"
    saved = _cached(path, folder, cfg)
    if saved is not None and isinstance(saved.get("result"), dict):
        return saved["result"]
    if not (folder / "snapshots.safetensors").is_file():
        return None
    res = run_loss_decomposition(folder, cfg.window).to_dict()
    cache.mkdir(parents=True, exist_ok=True)
    write_text_file(path, json.dumps({"key": _cache_key(folder, cfg), "result": res}))
    return res


def modes_study(out: str | Path, runs: Sequence[SuiteRun], *, quick: bool = False,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The record of the module docs for the finished ``runs`` (folders ``out/<name>``)."""
    from ..analysis.modes import ModesConfig
    from ..errors import SpectralEdgeError

    out = Path(out)
    cache = out / CACHE
    t0, spent, n = time.perf_counter(), 0.0, 0
    rec: dict[str, Any] = {"quick": bool(quick), "modulus": runs[0].config.modulus if runs else None,
                           "min_acc": 0.0 if quick else MIN_TEST_ACC, "choice_seed": CHOICE_SEED, "runs": [],
                           "choices": {name: {"label": label, "config": ModesConfig(**kw).to_dict(), "runs": []}
                                       for name, (label, kw) in CHOICES.items()},
                           "failed": [], "heatmap": None, "loss_modes": []}
    for run in runs:
        folder = out / run.name
        todo = [("default", ModesConfig())]
        if run.config.seed == CHOICE_SEED:
            todo += [(name, ModesConfig(**kw)) for name, (_, kw) in CHOICES.items()]
        for name, cfg in todo:
            if log:
                log(f"modes of {run.name} ({name})")
            try:
                modes, res, secs = _modes(folder, cfg, cache, name)
                spent, n = spent + secs, n + 1
                r = run_record(folder, run, modes)
                if name == "default" and run_op(run) == HEATMAP_OP and rec["heatmap"] is None:
                    rec["heatmap"] = {"run": run.name, "direction": "v1", "field": _field(res, folder, cfg, cache)}
            except SpectralEdgeError as e:
                rec["failed"].append({"run": run.name, "choice": name, "error": str(e)})
                continue
            (rec["runs"] if name == "default" else rec["choices"][name]["runs"]).append(r)
    for run in runs:  # the spectral loss decomposition of every single-operation run (METHODS §5)
        if run.config.task != "modular":
            continue
        try:
            lm = _loss_modes(out / run.name, cache)
        except SpectralEdgeError as e:
            rec["failed"].append({"run": run.name, "choice": "loss_modes", "error": str(e)})
            continue
        if lm is not None:
            rec["loss_modes"].append({**lm, "op": run_op(run), "seed": run.config.seed})
    rec["timing"] = {"analysis_seconds": spent, "analyses": n, "this_call_seconds": time.perf_counter() - t0}
    return rec
