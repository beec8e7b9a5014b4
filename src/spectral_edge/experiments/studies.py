"""Trajectory studies: the papers' language-model, JL, optimizer and backbone claims, re-measured.

Four studies share one set of runs (each run is a :class:`~.suite.SuiteRun`, trained by
:func:`~.suite.run_suite`, so the whole set is resumable and runs in parallel processes):

1. ``lm``         a tiny character-level GPT (4 layers, d = 128, 0.8M parameters) on the
                  generated story corpus with AdamW, three seeds: k* over training, the gap
                  ratio's phases and peak, coupling with validation loss per W and the lag flip.
2. ``jl``         relative gap-ratio error of sketches against the exact window for
                  d = 2W…100W (W = 10), on the saved checkpoints of the LM run and of the
                  modular reference run, computed by :func:`spectral_edge.analysis.jl.jl_errors`:
                  a dense Gaussian sketch (drawn from its exact law, see that module), the
                  default ``fold`` sketch and ``countsketch``.
3. ``optimizers`` the modular reference model (add mod 97) and the tiny LM under AdamW, Muon
                  and SGD: the distribution of k* over training.
4. ``backbone``   the tiny LM under AdamW with β2 ∈ {0.999, 0.99, 0.95, 0.9} and under SGD: the
                  backbone probe's displacement fraction a²/‖Δθ‖² and its trend.

Three scales: ``full`` (the documented numbers; about an hour of CPU per LM run pair),
``quick`` (a few hundred steps; the pipeline end to end in minutes) and ``tiny`` (seconds;
for tests). :func:`reproduce_trajectories` runs what is missing, analyses every study into
plain records (``results.json``) and writes the Markdown document with its figures.

Analysis code imports numpy/pandas/matplotlib lazily: importing this module costs nothing
beyond the experiment configs.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._numbers import finite_or_none as _finite
from ..errors import ConfigError
from .config import RunConfig
from .suite import SuiteRun

SCALES = ("full", "quick", "tiny")
STUDIES = ("lm", "jl", "optimizers", "backbone")
LM_SEEDS = (42, 137, 2024)
BETA2S = (0.999, 0.99, 0.95, 0.9)
#: the LM baseline's β2 (shared between the LM study and the β2 sweep)
BASE_BETA2 = 0.95
#: groups the LM's parameters into ``emb`` (token and position embeddings; the output head is
#: tied to the token embedding) and ``other`` = everything else, i.e. the *trunk*; the ``all``
#: group is always analysed too. (A regex group needs a capture group, hence the names.)
LM_GROUP_BY = r"re:(?:tok|pos)_(emb)\..*"
TRUNK_GROUP = "other"
JL_W = 10
JL_FACTORS = (2, 5, 10, 20, 50, 100)
#: "gaussian" in the study = a dense Gaussian JL sketch, sampled from its exact law (the Gram of
#: L·Z with L·Lᵀ the exact Gram): the same distribution as the on-the-fly ``gaussian`` family,
#: without generating d × P normals per state
JL_GAUSSIAN = "gaussian-exact-law"
JL_FAMILIES = (JL_GAUSSIAN, "fold", "countsketch")
CLAIMED_JL_PCT = 5.7


@dataclass(frozen=True)
class Scale:
    """Sizes of every run and of the JL sweep at one scale."""

    name: str
    lm_model: Mapping[str, Any]
    lm_task: Mapping[str, Any]
    lm_batch: int
    lm_steps: int
    lm_every: int
    lm_warmup: int
    lm_backbone_every: int
    mod_modulus: int
    mod_model: Mapping[str, Any]
    mod_steps: int
    mod_every: int
    mod_ckpt_every: int
    jl_mod_max_step: int  # modular JL trajectory: checkpoints up to this step
    jl_factors: tuple[int, ...]
    jl_seeds: int
    lm_seeds: tuple[int, ...]
    windows: tuple[int, ...] = (5, 10, 20)
    n_perm: int = 999  # circular shifts for the coupling's permutation p-value


SCALE_PRESETS: dict[str, Scale] = {
    "full": Scale("full", lm_model={"n_layer": 4, "d_model": 128, "n_head": 4}, lm_task={"block_size": 64},
                  lm_batch=32, lm_steps=3000, lm_every=50, lm_warmup=200, lm_backbone_every=100,
                  mod_modulus=97, mod_model={}, mod_steps=5000, mod_every=100, mod_ckpt_every=25,
                  jl_mod_max_step=2000, jl_factors=JL_FACTORS, jl_seeds=5, lm_seeds=LM_SEEDS),
    "quick": Scale("quick", lm_model={"n_layer": 2, "d_model": 64, "n_head": 4}, lm_task={"block_size": 64},
                   lm_batch=16, lm_steps=300, lm_every=10, lm_warmup=20, lm_backbone_every=20,
                   mod_modulus=97, mod_model={}, mod_steps=400, mod_every=10, mod_ckpt_every=10,
                   jl_mod_max_step=400, jl_factors=(2, 10, 50), jl_seeds=2, lm_seeds=(42, 137), n_perm=199),
    "tiny": Scale("tiny", lm_model={"n_layer": 1, "d_model": 16, "n_head": 2},
                  lm_task={"block_size": 16, "n_stories": 40}, lm_batch=4, lm_steps=60, lm_every=2, lm_warmup=0,
                  lm_backbone_every=4, mod_modulus=11, mod_model={"d_model": 16, "n_heads": 2, "d_ff": 32},
                  mod_steps=60, mod_every=2, mod_ckpt_every=2, jl_mod_max_step=60, jl_factors=(2, 10),
                  jl_seeds=1, lm_seeds=(42,), n_perm=99),
}

#: optimizer settings per task (tuned so each trains; see docs/trajectories.md)
OPTIMIZER_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "lm": {
        "adamw": {"lr": 1e-3, "weight_decay": 0.1, "betas": (0.9, BASE_BETA2)},
        "muon": {"lr": 0.02, "weight_decay": 0.1, "betas": (0.9, BASE_BETA2)},
        "sgd": {"lr": 0.5, "weight_decay": 0.0, "momentum": 0.9},
    },
    "modular": {
        "adamw": {"lr": 1e-3, "weight_decay": 1.0, "betas": (0.9, 0.98)},
        "muon": {"lr": 0.02, "weight_decay": 0.1, "betas": (0.9, 0.98)},
        "sgd": {"lr": 1.0, "weight_decay": 0.0, "momentum": 0.9},
    },
}


def get_scale(scale: str | Scale) -> Scale:
    if isinstance(scale, Scale):
        return scale
    if scale not in SCALE_PRESETS:
        raise ConfigError(f"unknown study scale {scale!r}; choose one of {', '.join(SCALES)}")
    return SCALE_PRESETS[scale]


# ---------------------------------------------------------------------- configs
def lm_config(sc: Scale, seed: int = 42, optimizer: str = "adamw", beta2: float | None = None,
              checkpoints: bool = False) -> RunConfig:
    """The tiny-LM run of a study: monitor on all parameters (trunk as a group), backbone probe."""
    opt = dict(OPTIMIZER_SETTINGS["lm"][optimizer])
    if beta2 is not None:
        if optimizer == "sgd":
            raise ConfigError("β2 is an Adam parameter; SGD has none")
        opt["betas"] = (opt["betas"][0], float(beta2))
    return RunConfig(
        task="lm", seed=int(seed), model=dict(sc.lm_model), task_options=dict(sc.lm_task), optimizer=optimizer,
        batch_size=sc.lm_batch, grad_clip=1.0, warmup_steps=sc.lm_warmup, steps=sc.lm_steps,
        eval_every=sc.lm_every, early_stop=False, every=sc.lm_every, windows=sc.windows, sketch="exact",
        selection="all", group_by=LM_GROUP_BY,
        probes={"backbone": {"every": sc.lm_backbone_every, "window": 20, "reference": "init"}},
        checkpoint_every=sc.lm_every if checkpoints else 0, threads=1, **opt)


def modular_config(sc: Scale, optimizer: str = "adamw", seed: int = 42, checkpoints: bool = False) -> RunConfig:
    """The modular reference run (add mod p, attention weights monitored, no early stop)."""
    return RunConfig(
        task="modular", op="add", modulus=sc.mod_modulus, seed=int(seed), model=dict(sc.mod_model),
        optimizer=optimizer, steps=sc.mod_steps, eval_every=sc.mod_every, early_stop=False, every=sc.mod_every,
        windows=sc.windows, sketch="exact", selection="attention",
        checkpoint_every=sc.mod_ckpt_every if checkpoints else 0, threads=1,
        **OPTIMIZER_SETTINGS["modular"][optimizer])


def _b2(b: float) -> str:
    return f"{b:g}"


def lm_name(optimizer: str = "adamw", seed: int = 42, beta2: float | None = None) -> str:
    if optimizer == "adamw" and beta2 is not None and beta2 != BASE_BETA2:
        return f"lm-adamw-b2_{_b2(beta2)}-s{seed}"
    return f"lm-{optimizer}-s{seed}"


def mod_name(optimizer: str = "adamw", seed: int = 42) -> str:
    return f"mod-{optimizer}-s{seed}"


@dataclass(frozen=True)
class StudyPlan:
    """Every run of the four studies (deduplicated by name) and which study reads which run."""

    scale: Scale
    runs: tuple[SuiteRun, ...]
    uses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def run(self, name: str) -> SuiteRun:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)


def study_plan(scale: str | Scale = "full", studies: Sequence[str] = STUDIES) -> StudyPlan:
    """The runs the chosen studies need. Shared runs appear once: the LM study's seed-42 AdamW run
    is also the JL study's LM trajectory, the optimizer study's LM AdamW run and the β2 = 0.95
    point of the backbone study; the modular AdamW run also gives the JL study its modular
    trajectory (checkpoints every ``mod_ckpt_every`` steps)."""
    sc = get_scale(scale)
    bad = sorted(set(studies) - set(STUDIES))
    if bad:
        raise ConfigError(f"unknown studies {bad}; choose from {', '.join(STUDIES)}")
    runs: dict[str, SuiteRun] = {}
    uses: dict[str, list[str]] = {s: [] for s in studies}

    def add(study: str, name: str, cfg: RunConfig, role: str) -> None:
        if name in runs and runs[name].config != cfg:
            raise AssertionError(f"two configs named {name}")  # a bug in this module
        runs.setdefault(name, SuiteRun(name, role, cfg))
        if name not in uses[study]:
            uses[study].append(name)

    base = lm_name("adamw", 42)
    # the first-listed runs start first: the long LM baseline, then the short modular runs
    if "lm" in studies or "jl" in studies or "optimizers" in studies or "backbone" in studies:
        cfg42 = lm_config(sc, 42, "adamw", checkpoints=True)
        for st in ("lm", "jl", "optimizers", "backbone"):
            if st in studies:
                add(st, base, cfg42, "lm")
    if "optimizers" in studies or "jl" in studies:
        add("jl" if "jl" in studies else "optimizers", mod_name("adamw"), modular_config(sc, "adamw", checkpoints=True),
            "modular")
        if "optimizers" in studies:
            add("optimizers", mod_name("adamw"), modular_config(sc, "adamw", checkpoints=True), "modular")
            for opt in ("muon", "sgd"):
                add("optimizers", mod_name(opt), modular_config(sc, opt), "modular")
            for opt in ("muon", "sgd"):
                add("optimizers", lm_name(opt), lm_config(sc, 42, opt), "lm")
    if "backbone" in studies:
        for b in BETA2S:
            if b != BASE_BETA2:
                add("backbone", lm_name("adamw", 42, b), lm_config(sc, 42, "adamw", beta2=b), "lm")
        add("backbone", lm_name("sgd"), lm_config(sc, 42, "sgd"), "lm")
    if "lm" in studies:
        for s in sc.lm_seeds:
            if s != 42:
                add("lm", lm_name("adamw", s), lm_config(sc, s, "adamw"), "lm")
    return StudyPlan(sc, tuple(runs.values()), {k: tuple(v) for k, v in uses.items()})


# ---------------------------------------------------------------------- small helpers


def _group(name: str) -> str:
    """Study-facing group names: the monitor's ``other`` group of the LM is the trunk."""
    return "trunk" if name == TRUNK_GROUP else name


def _monitor_group(name: str) -> str:
    return TRUNK_GROUP if name == "trunk" else name


def kstar_distribution(values: Sequence[Any]) -> dict[str, Any]:
    """Counts of k* over windows (undefined k* = 0 and missing values dropped), the modal k*
    (ties → the smaller k) and its share, and the mean."""
    ks = []
    for v in values:
        f = _finite(v)
        if f is not None and f >= 1:
            ks.append(int(f))
    if not ks:
        return {"n": 0, "counts": {}, "modal": None, "modal_share": None, "mean": None}
    c = Counter(ks)
    top = max(c.values())
    modal = min(k for k, n in c.items() if n == top)
    return {"n": len(ks), "counts": {str(k): c[k] for k in sorted(c)}, "modal": modal,
            "modal_share": top / len(ks), "mean": sum(ks) / len(ks)}


def modes_above_floor(rows: Any, W: int) -> list[int]:
    """Per window: how many σ_j (j < W) exceed the floor rule's threshold ρ_W·σ_noise (METHODS §2). Zero
    means no mode stands out of the noise, and the floor rule's k* = 1 is then a default, not a mode."""
    from ..functional.spectrum import ratio_floor

    rho = ratio_floor(W)
    out = []
    for _, r in rows.iterrows():
        thr = rho * float(r["noise_floor"])
        out.append(sum(1 for j in range(1, W) if _finite(r.get(f"sigma_{j}")) is not None
                       and float(r[f"sigma_{j}"]) > thr))
    return out


def signal_kstar(rows: Any, W: int) -> dict[str, Any]:
    """k* (floor rule) over the windows with at least one mode above the floor, and the share of such windows."""
    above = modes_above_floor(rows, W)
    ks = rows["k_star_floor"].tolist()
    d = kstar_distribution([k for k, a in zip(ks, above) if a > 0])
    d["signal_share"] = (sum(1 for a in above if a > 0) / len(above)) if above else None
    d["modes_above_floor"] = kstar_distribution([a for a in above if a > 0])["counts"]
    return d


def kstar_over_training(values: Sequence[Any], parts: int = 3) -> list[dict[str, Any]]:
    """:func:`kstar_distribution` of consecutive thirds (``parts``) of the windows."""
    vals = list(values)
    n = len(vals)
    out = []
    for i in range(parts):
        lo, hi = (i * n) // parts, ((i + 1) * n) // parts
        out.append(kstar_distribution(vals[lo:hi]))
    return out


def trend(steps: Sequence[Any], values: Sequence[Any]) -> dict[str, Any]:
    """Least-squares slope of ``values`` against ``steps`` (per 1000 steps) over the finite
    points, with the Spearman correlation of value and step."""
    import numpy as np

    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray([np.nan if _finite(x) is None else float(x) for x in values], dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    if s.size < 3 or np.ptp(s) == 0:
        return {"n": int(s.size), "slope_per_1k": None, "spearman": None}
    slope = float(np.polyfit(s / 1000.0, v, 1)[0])
    rs = np.argsort(np.argsort(s)).astype(float)
    rv = np.argsort(np.argsort(v)).astype(float)
    sp = float(np.corrcoef(rs, rv)[0, 1]) if np.std(rv) > 0 else None
    return {"n": int(s.size), "slope_per_1k": slope, "spearman": sp}


def convergence(steps: Sequence[Any], loss: Sequence[Any], within: float = 0.10) -> dict[str, Any]:
    """How fast a loss curve flattens: the first step from which the loss stays within ``within``
    (relative) of its final value, as a step and as a fraction of the run."""
    pts = [(int(s), float(v)) for s, v in zip(steps, loss) if _finite(v) is not None]
    if len(pts) < 2:
        return {"final": None, "step": None, "fraction_of_run": None}
    final = pts[-1][1]
    k = len(pts) - 1
    while k > 0 and abs(pts[k - 1][1] - final) <= within * abs(final):
        k -= 1
    span = pts[-1][0] - pts[0][0]
    return {"final": final, "initial": pts[0][1], "within": within, "step": pts[k][0],
            "fraction_of_run": (pts[k][0] - pts[0][0]) / span if span > 0 else None}


def loglog_slope(d: Sequence[Any], err: Sequence[Any]) -> float | None:
    """Least-squares slope of log(err) against log(d) (−0.5 for an error ∝ 1/√d)."""
    pts = [(math.log(float(x)), math.log(float(y))) for x, y in zip(d, err)
           if _finite(x) is not None and _finite(y) is not None and float(x) > 0 and float(y) > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den > 0 else None


def _summary(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------------- study 1: the LM
def phase_record(ph: Any) -> dict[str, Any]:
    """A :class:`~spectral_edge.analysis.phases.Phases` as a record, with the number of samples in
    each phase and the rise/collapse amplitudes (peak over the first value, last value over the peak)."""
    import numpy as np

    s = ph.summary()
    labels = list(ph.labels)
    vals = np.asarray(ph.values, dtype=np.float64)
    ok = np.isfinite(vals)
    rec = {k: (_finite(v) if isinstance(v, float) else v) for k, v in s.items()
           if k in ("method", "valid", "reason", "n", "peak_step", "peak_value", "plateau_start", "plateau_end",
                    "collapse_start", "collapse_step")}
    rec.update({f"n_{p}": labels.count(p) for p in ("rise", "plateau", "collapse")})
    if ok.any() and ph.peak_value and math.isfinite(ph.peak_value):
        first, last = float(vals[ok][0]), float(vals[ok][-1])
        rec["first_value"], rec["last_value"] = first, last
        rec["rise_factor"] = ph.peak_value / first if first > 0 else None
        rec["collapse_factor"] = last / ph.peak_value if ph.peak_value > 0 else None
    rec["three_phases"] = bool(ph.valid and labels.count("rise") >= 3 and labels.count("collapse") >= 3)
    return rec


def coupling_record(res: Any) -> dict[str, Any]:
    """The scalar part of a :class:`~spectral_edge.analysis.coupling.CouplingResult`."""
    s = res.summary()
    keep = ("window", "group", "n", "max_lag", "peak_lag", "peak_r", "sign", "positive_lag", "positive_r", "p_naive",
            "n_eff", "p_eff", "p_perm", "n_perm", "granger_p", "granger_F", "granger_lag", "granger_reverse_p")
    rec = {k: (_finite(s.get(k)) if isinstance(s.get(k), float) else s.get(k)) for k in keep}
    rec["group"] = _group(str(rec["group"]))
    rec["lags"] = list(res.correlation.lags)
    rec["r"] = [_finite(v) for v in res.correlation.r]
    rec["phases"] = {pc.phase: {"n": pc.n, "r": _finite(pc.r_raw), "r_detrended": _finite(pc.r_detrended),
                                "p": _finite(pc.p_raw)} for pc in res.phases}
    return rec


def analyse_lm_run(folder: str | Path, windows: Sequence[int] = (5, 10, 20), n_perm: int = 999) -> dict[str, Any]:
    """Study 1 on one LM run folder: k* (three rules, all and trunk), phases (three detectors, each W),
    coupling of the gap ratio with validation loss per W, the lag flip, phase-specific r."""
    import numpy as np

    from ..analysis.coupling import lag_flip
    from ..analysis.phases import PhaseConfig, detect_phases
    from ..analysis.series import load_run

    folder = Path(folder)
    data = load_run(folder)
    have = [w for w in windows if w in data.windows]
    rec: dict[str, Any] = {"run": folder.name, "summary": _summary(folder), "windows": have, "kstar": {}, "phases": {},
                           "coupling": {}, "series": {}}
    groups = [g for g in ("all", TRUNK_GROUP) if g in data.groups]
    for g in groups:
        for W in have:
            rows = data.rows(W, g)
            key = f"{_group(g)}/W{W}"
            rec["kstar"][key] = {
                "floor": kstar_distribution(rows["k_star_floor"].tolist()),
                "argmax": kstar_distribution(rows["k_star_argmax"].tolist()),
                "weighted": kstar_distribution(rows["k_star_weighted"].tolist()),
                "thirds": kstar_over_training(rows["k_star_floor"].tolist()),
                "signal": signal_kstar(rows, W),
            }
            ser = data.spectral_series("gap_ratio", W, g)
            rec["phases"][key] = {m: phase_record(detect_phases(ser.steps, ser.values, PhaseConfig(method=m)))
                                  for m in ("plateau", "derivative", "threshold")}
            if g == "all" or W == 10:
                rec["series"][key] = {"step": ser.steps.tolist(), "gap_ratio": [_finite(v) for v in ser.values],
                                      "k_star": [int(v) if _finite(v) else 0 for v in rows["k_star_floor"]]}
    val = data.validation("val_loss" if "val_loss" in data.logs.columns else None)
    rec["val"] = {"step": val.steps.tolist(), "loss": [_finite(v) for v in val.values]}
    rec["val_convergence"] = convergence(val.steps.tolist(), val.values.tolist())
    rec["first_window"] = {}
    for W in have:
        rows = data.rows(W, "all")
        if len(rows):
            st0 = int(rows["step"].iloc[0])
            v0 = float(np.interp(st0, val.steps.astype(float), val.values)) if len(val) else None
            rec["first_window"][str(W)] = {"step": st0, "val_loss": _finite(v0),
                                           "initial": _finite(val.values[0]) if len(val) else None}
    for g in groups:
        results = []
        for W in have:
            try:
                flip = lag_flip(data, windows=[W], group=g, n_perm=n_perm, seed=0)
                results.append(flip.results[0])
                rec["coupling"][f"{_group(g)}/W{W}"] = coupling_record(flip.results[0])
            except ConfigError as e:  # too few windows at this W
                rec["coupling"][f"{_group(g)}/W{W}"] = {"window": W, "group": _group(g), "error": str(e)}
        signs = {r.window: r.sign for r in results}
        rec["coupling"][f"{_group(g)}/flip"] = {
            "signs": {str(w): s for w, s in signs.items()},
            "peak_lags": {str(r.window): r.peak_lag for r in results},
            "flip_10_20": (signs.get(10, 0) * signs.get(20, 0) < 0) if 10 in signs and 20 in signs else None,
            "paper_pattern": (signs.get(10) == -1 and signs.get(20) == 1) if 10 in signs and 20 in signs else None,
        }
    return rec


# ---------------------------------------------------------------------- study 3: optimizers
def analyse_kstar_run(folder: str | Path, window: int = 10, group: str = "all") -> dict[str, Any]:
    """k* over training of one run at one W: distributions under the three rules, by thirds, the series."""
    from ..analysis.series import load_run

    folder = Path(folder)
    data = load_run(folder)
    W = window if window in data.windows else data.windows[-1]
    rows = data.rows(W, _monitor_group(group))
    ser = data.spectral_series("gap_ratio", W, _monitor_group(group))
    return {
        "run": folder.name, "window": W, "group": group, "summary": _summary(folder),
        "floor": kstar_distribution(rows["k_star_floor"].tolist()),
        "argmax": kstar_distribution(rows["k_star_argmax"].tolist()),
        "weighted": kstar_distribution(rows["k_star_weighted"].tolist()),
        "thirds": kstar_over_training(rows["k_star_floor"].tolist()),
        "signal": signal_kstar(rows, W),
        "peak_gap_ratio": _finite(max((v for v in ser.values if _finite(v) is not None), default=float("nan"))),
        "series": {"step": ser.steps.tolist(), "k_star": [int(v) if _finite(v) else 0 for v in rows["k_star_floor"]],
                   "gap_ratio": [_finite(v) for v in ser.values]},
    }


# ---------------------------------------------------------------------- study 4: backbone
def analyse_backbone_run(folder: str | Path) -> dict[str, Any]:
    """The backbone probe's rows of one run: fraction a²/‖Δθ‖² (latest drift), its mean over the
    window, PC1 share, update/gradient alignment; medians over the second half and the trend."""
    import numpy as np

    from ..io.history import read_history

    folder = Path(folder)
    df = read_history(folder / "history.jsonl")
    if "probe" not in df.columns:
        return {"run": folder.name, "summary": _summary(folder), "n": 0}
    rows = df[(df["kind"] == "probe") & (df["probe"] == "backbone")]
    if "fraction" in rows.columns:
        rows = rows[rows["fraction"].notna()]
    rows = rows.sort_values("step")
    rec: dict[str, Any] = {"run": folder.name, "summary": _summary(folder), "n": int(len(rows))}
    if len(rows) == 0:
        return rec
    steps = rows["step"].to_numpy(dtype=np.float64)
    half = steps >= steps[0] + (steps[-1] - steps[0]) / 2
    for col in ("fraction", "mean_fraction", "pc1_pct", "update_align", "grad_align"):
        if col not in rows.columns:
            continue
        v = rows[col].to_numpy(dtype=np.float64)
        fin = np.isfinite(v)
        rec[col] = {"last": _finite(v[fin][-1]) if fin.any() else None,
                    "median_late": _finite(np.median(v[half & fin])) if (half & fin).any() else None,
                    "median": _finite(np.median(v[fin])) if fin.any() else None,
                    "trend": trend(steps, v)}
    rec["series"] = {"step": [int(s) for s in steps], "fraction": [_finite(v) for v in rows["fraction"]],
                     "mean_fraction": [_finite(v) for v in rows.get("mean_fraction", rows["fraction"])]}
    return rec


# ---------------------------------------------------------------------- study 2: JL accuracy
def checkpoint_states(folder: str | Path, max_step: int | None = None) -> list[dict[str, Any]]:
    """The parameter states saved in ``folder/checkpoints`` (oldest first), up to ``max_step``."""
    from safetensors.torch import load_file

    files = sorted(Path(folder, "checkpoints").glob("step_*.safetensors"))
    out = []
    for f in files:
        step = int(f.stem.split("_")[1])
        if max_step is None or step <= max_step:
            out.append(load_file(str(f)))
    return out


def jl_study(trajectories: Mapping[str, list[dict[str, Any]]], factors: Sequence[int] = JL_FACTORS, seeds: int = 5,
             debias: bool = True, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Relative gap-ratio error of every family at d = f·W (W = 10) against the exact window, over
    ``seeds`` projection seeds, for each trajectory (name → parameter states); one row per
    (trajectory, family, d) with median and 95th percentile, raw and debiased."""
    from ..analysis.jl import jl_errors

    dims = [int(f) * JL_W for f in factors]
    rows: list[dict[str, Any]] = []
    for name, states in trajectories.items():
        if len(states) < JL_W + 1:
            raise ConfigError(f"the {name} trajectory has {len(states)} states; the JL study needs ≥ {JL_W + 1}")
        rows += jl_errors(name, states, dims, W=JL_W, families=JL_FAMILIES, seeds=int(seeds), debias=debias,
                          log=(lambda r: log(f"JL {r['trajectory']} {r['family']} d={r['d']}: median "
                                             f"{r['R_median_pct']:.1f}%")) if log else None)
    return [{k: (_finite(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]


# ---------------------------------------------------------------------- studies → records
def _median(xs: Sequence[Any]) -> float | None:
    v = sorted(float(x) for x in xs if _finite(x) is not None)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else 0.5 * (v[m - 1] + v[m])


def _mean_sd(xs: Sequence[Any]) -> tuple[float | None, float | None]:
    v = [float(x) for x in xs if _finite(x) is not None]
    if not v:
        return None, None
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None
    return m, sd


def lm_study(out: Path, plan: StudyPlan) -> dict[str, Any]:
    """Study 1: every seed's :func:`analyse_lm_run`, plus the cross-seed aggregates the claims need."""
    runs = [analyse_lm_run(out / name, plan.scale.windows, plan.scale.n_perm) for name in plan.uses["lm"]]
    agg: dict[str, Any] = {"seeds": [r["summary"].get("seed") for r in runs]}
    for key in ("all/W10", "trunk/W10", "all/W5", "all/W20"):
        agg[f"modal_kstar_{key}"] = [r["kstar"].get(key, {}).get("floor", {}).get("modal") for r in runs]
        agg[f"modal_kstar_argmax_{key}"] = [r["kstar"].get(key, {}).get("argmax", {}).get("modal") for r in runs]
    peaks = [r["phases"].get("all/W10", {}).get("plateau", {}).get("peak_value") for r in runs]
    agg["peak_ratio_W10"] = peaks
    agg["peak_ratio_W10_mean"], agg["peak_ratio_W10_sd"] = _mean_sd(peaks)
    agg["three_phases_W10"] = [r["phases"].get("all/W10", {}).get("plateau", {}).get("three_phases") for r in runs]
    agg["flip"] = [r["coupling"].get("all/flip", {}) for r in runs]
    ph_r: dict[str, list[Any]] = {"rise": [], "plateau": [], "collapse": []}
    for r in runs:
        c = r["coupling"].get("all/W10", {})
        for p in ph_r:
            ph_r[p].append(c.get("phases", {}).get(p, {}).get("r"))
    agg["phase_r_W10"] = ph_r
    return {"runs": runs, "aggregate": agg}


def optimizer_study(out: Path, plan: StudyPlan) -> dict[str, Any]:
    """Study 3: k* at W = 10 (all monitored parameters) for each task × optimizer."""
    res: dict[str, dict[str, Any]] = {"modular": {}, "lm": {}}
    for opt in ("adamw", "muon", "sgd"):
        if mod_name(opt) in plan.uses["optimizers"]:
            res["modular"][opt] = analyse_kstar_run(out / mod_name(opt))
        if lm_name(opt) in plan.uses["optimizers"]:
            res["lm"][opt] = analyse_kstar_run(out / lm_name(opt))
    return res


def backbone_study(out: Path, plan: StudyPlan) -> dict[str, Any]:
    """Study 4: the backbone probe of the LM under AdamW for each β2, and under SGD."""
    res: dict[str, Any] = {}
    for b in BETA2S:
        res[_b2(b)] = analyse_backbone_run(out / lm_name("adamw", 42, b)) | {"beta2": b}
    res["sgd"] = analyse_backbone_run(out / lm_name("sgd")) | {"beta2": None}
    return res


def jl_records(out: Path, plan: StudyPlan, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Study 2, cached in ``out/jl/``: recomputed only when its inputs (runs, d, seeds) change."""
    sc = plan.scale
    lm_run, mod_run = out / lm_name("adamw", 42), out / mod_name("adamw")
    key = {"lm": str(lm_run.name), "lm_config": _read_json(lm_run / "config.json"), "modular": str(mod_run.name),
           "mod_config": _read_json(mod_run / "config.json"), "mod_max_step": sc.jl_mod_max_step,
           "factors": list(sc.jl_factors), "seeds": sc.jl_seeds, "W": JL_W}
    cache = out / "jl" / "jl_accuracy.json"
    if cache.is_file():
        try:
            saved = json.loads(cache.read_text())
            if saved.get("key") == key:
                return saved
        except ValueError:
            pass
    t0 = time.perf_counter()
    trajs = {"lm": checkpoint_states(lm_run), "modular": checkpoint_states(mod_run, sc.jl_mod_max_step)}
    n_states = {k: len(v) for k, v in trajs.items()}
    n_params = {k: int(sum(t.numel() for t in v[0].values())) for k, v in trajs.items()}
    rows = jl_study(trajs, sc.jl_factors, sc.jl_seeds, True, log)
    del trajs
    rec = {"key": key, "rows": rows, "n_states": n_states, "n_parameters": n_params,
           "cadence": {"lm": sc.lm_every, "modular": sc.mod_ckpt_every}, "seconds": time.perf_counter() - t0}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(rec, indent=1))
    try:
        import pandas as pd

        pd.DataFrame(rows).to_csv(out / "jl" / "jl_accuracy.csv", index=False)
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return rec


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------- verdicts
REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "partly", "not reproduced", "not testable here"


@dataclass(frozen=True)
class Claim:
    """One row of the claims table: the papers' statement and setup, ours, and the verdict."""

    key: str
    claim: str
    paper_setup: str
    ours: str
    our_setup: str
    verdict: str
    why: str


def _fmt(x: Any, nd: int = 3) -> str:
    f = _finite(x)
    if f is None:
        return "n/a"
    if abs(f) >= 100 or f == int(f) and abs(f) < 1e6 and nd == 0:
        return f"{f:.0f}"
    if abs(f) < 10 ** (-nd) and f != 0:
        return f"{f:.1e}"
    return f"{f:.{nd}f}"


def _fmt_p(p: Any) -> str:
    f = _finite(p)
    if f is None:
        return "n/a"
    return f"{f:.3f}" if f >= 0.001 else f"{f:.1e}"


def _lst(xs: Sequence[Any], nd: int = 2) -> str:
    return ", ".join("n/a" if _finite(x) is None else (str(int(x)) if nd == 0 else _fmt(x, nd)) for x in xs)


def lm_setup(sc: Scale) -> str:
    m = sc.lm_model
    return (f"char-level GPT (n_layer = {m.get('n_layer')}, d_model = {m.get('d_model')}, {m.get('n_head')} heads, "
            f"context {sc.lm_task.get('block_size')}), batch {sc.lm_batch}, AdamW lr 1e-3, β = (0.9, {BASE_BETA2}), "
            f"weight decay 0.1, {sc.lm_warmup}-step linear warm-up then constant lr, gradient clip 1.0, "
            f"{sc.lm_steps} steps, updates sampled every {sc.lm_every} steps, exact windows")


def claims_table(res: Mapping[str, Any]) -> list[Claim]:
    """Each claim next to our measurement, with a verdict by the rules stated in the document."""
    sc = get_scale(res["scale"])
    out: list[Claim] = []
    setup = "tiny LM of §1, all parameters"
    lm = res.get("lm")
    if lm:
        a = lm["aggregate"]
        modal = a["modal_kstar_all/W10"]
        trunk = a["modal_kstar_trunk/W10"]
        amax = a["modal_kstar_argmax_all/W10"]
        hits = [m in (2, 3) for m in modal if m is not None]
        v = REPRODUCED if hits and all(hits) else PARTLY if any(hits) else NOT_REPRODUCED
        out.append(Claim("kstar", "k* = 2 (8-layer 51M, TinyStories) and k* = 3 (GPT-2 124M)",
                         "W = 10, checkpoints every 200 steps", f"modal k* (floor rule) per seed: {_lst(modal, 0)}; "
                         f"trunk: {_lst(trunk, 0)}; plain argmax: {_lst(amax, 0)}", setup + ", W = 10", v,
                         "modal k* of every seed is 2 or 3" if v == REPRODUCED else
                         "modal k* is 2 or 3 in some seeds only" if v == PARTLY else
                         "the modal k* is neither 2 nor 3 at this scale"))
        tp = a["three_phases_W10"]
        n_ok = sum(1 for x in tp if x)
        ph = [r["phases"].get("all/W10", {}).get("plateau", {}) for r in lm["runs"]]
        rises = [bool(p.get("valid")) and (p.get("n_rise") or 0) >= 3 for p in ph]
        falls = [bool(p.get("valid")) and (p.get("n_collapse") or 0) >= 3 for p in ph]
        two = sum(1 for a_, b_ in zip(rises, falls) if a_ != b_)  # plateau plus one of rise/collapse
        no_rise = sum(1 for a_, b_ in zip(rises, falls) if b_ and not a_)
        v = REPRODUCED if tp and n_ok == len(tp) else PARTLY if n_ok or two else NOT_REPRODUCED
        desc = "; ".join(f"s{r['summary'].get('seed')}: rise {p.get('n_rise')}, plateau {p.get('n_plateau')}, "
                         f"collapse {p.get('n_collapse')} windows" for r, p in zip(lm["runs"], ph))
        first = [r.get("first_window", {}).get("10", {}) for r in lm["runs"]]
        why = f"{n_ok}/{len(tp)} seeds show ≥ 3 windows of rise and ≥ 3 of collapse around the plateau"
        if no_rise:
            why += (f"; {no_rise} show plateau and collapse but no rise: the first full window ends at step "
                    f"{_lst([f.get('step') for f in first], 0)}, when validation loss is already down to "
                    f"{_lst([f.get('val_loss') for f in first], 2)} "
                    f"(from {_lst([f.get('initial') for f in first], 2)})")
        out.append(Claim("phases", "the gap ratio rises, plateaus and collapses (three phases)",
                         "W = 10 over the whole run", desc, setup + ", W = 10, plateau detector (R ≥ 0.85·peak)", v,
                         why))
        pk_m, pk_sd = a["peak_ratio_W10_mean"], a["peak_ratio_W10_sd"]
        rel = abs(pk_m - 1.747) / 1.747 if pk_m is not None else None
        v = NOT_REPRODUCED if rel is None else REPRODUCED if rel <= 0.10 else PARTLY if rel <= 0.30 else NOT_REPRODUCED
        out.append(Claim("peak", "peak gap ratio 1.747", "W = 10", f"peak R per seed: {_lst(a['peak_ratio_W10'], 3)} "
                         f"(mean {_fmt(pk_m)}" + (f" ± {_fmt(pk_sd)})" if pk_sd is not None else ")"),
                         setup + ", W = 10", v, "n/a" if rel is None else
                         f"mean peak differs by {100 * rel:.0f}% (≤ 10%: reproduced, ≤ 30%: partly)"))
        pr = a["phase_r_W10"]
        cells, hits_n, tot = [], 0, 0
        for p in ("rise", "plateau", "collapse"):
            vals = pr[p]
            cells.append(f"{p} {_lst(vals, 2)}")
            for x in vals:
                if _finite(x) is not None:
                    tot += 1
                    hits_n += abs(float(x)) >= 0.87
        v = REPRODUCED if tot and hits_n == tot else PARTLY if hits_n else NOT_REPRODUCED
        out.append(Claim("phase_r", "phase-specific |r| with validation loss 0.87–0.94", "W = 10, per phase",
                         "r per seed — " + "; ".join(cells), setup + ", W = 10, lag 0, raw series", v,
                         f"{hits_n}/{tot} (seed, phase) cells reach |r| ≥ 0.87"))
        fl = a["flip"]
        lags = [(f.get("peak_lags", {}).get("10"), f.get("peak_lags", {}).get("20")) for f in fl]
        pat = [f.get("paper_pattern") for f in fl]
        anyflip = [f.get("flip_10_20") for f in fl]
        v = (REPRODUCED if pat and all(pat) else PARTLY if any(pat) or any(anyflip) else NOT_REPRODUCED)
        out.append(Claim("lag_flip", "peak lag negative at W = 10, positive at W = 20 (lag flip)", "gap ratio vs "
                         "validation loss, cubic detrend", "peak lag (W = 10, W = 20) per seed: "
                         + "; ".join(f"({a_}, {b_})" for a_, b_ in lags), setup + "; lags in samples of "
                         f"{sc.lm_every} steps", v, f"{sum(1 for x in pat if x)}/{len(pat)} seeds show the paper's "
                         f"(−, +) pattern; {sum(1 for x in anyflip if x)}/{len(anyflip)} show any sign change"))
    jl = res.get("jl")
    if jl:
        rows = jl["rows"]

        def at(traj: str, fam: str, key: str) -> Any:
            for r in rows:
                if r["trajectory"] == traj and r["family"] == fam and r["d"] == 10 * JL_W:
                    return r.get(key)
            return None

        g_lm, g_mod = at("lm", JL_GAUSSIAN, "R_median_pct"), at("modular", JL_GAUSSIAN, "R_median_pct")
        ours = (f"gaussian d = 100: median {_fmt(g_lm, 1)}% / p95 {_fmt(at('lm', JL_GAUSSIAN, 'R_p95_pct'), 1)}% (LM), "
                f"median {_fmt(g_mod, 1)}% / p95 {_fmt(at('modular', JL_GAUSSIAN, 'R_p95_pct'), 1)}% (modular); "
                f"fold {_fmt(at('lm', 'fold', 'R_median_pct'), 1)}%, countsketch "
                f"{_fmt(at('lm', 'countsketch', 'R_median_pct'), 1)}% (LM medians)")
        meds = [x for x in (g_lm, g_mod) if _finite(x) is not None]
        v = (NOT_REPRODUCED if not meds else REPRODUCED if all(m <= CLAIMED_JL_PCT for m in meds)
             else PARTLY if any(m <= 2 * CLAIMED_JL_PCT for m in meds) else NOT_REPRODUCED)
        out.append(Claim("jl", "a Gaussian sketch to d = 10W keeps the gap ratio within 5.7%", "W = 10, d = 100, "
                         "dense N(0, 1/d) projection", ours,
                         f"W = {JL_W}, {jl['key']['seeds']} projection seeds, every "
                         "window of the LM run (seed 42) and of the modular AdamW run", v,
                         "median relative error ≤ 5.7% on both trajectories" if v == REPRODUCED else
                         "median error above 5.7% but within 2× on at least one trajectory" if v == PARTLY else
                         "median error more than twice the claim"))
    opt = res.get("optimizers")
    if opt:
        parts, votes = [], []
        for task in ("modular", "lm"):
            t = opt.get(task, {})
            mm = {o: t.get(o, {}).get("floor", {}).get("modal") for o in ("adamw", "muon", "sgd")}
            parts.append(f"{task}: AdamW {mm['adamw']}, Muon {mm['muon']}, SGD {mm['sgd']}")
            if mm["adamw"] is not None and mm["muon"] is not None:
                votes.append(REPRODUCED if (mm["muon"] == 1 and mm["adamw"] == 2) else
                             PARTLY if mm["muon"] < mm["adamw"] else NOT_REPRODUCED)
        v = (REPRODUCED if votes and all(x == REPRODUCED for x in votes) else
             PARTLY if any(x in (REPRODUCED, PARTLY) for x in votes) else NOT_REPRODUCED)
        out.append(Claim("optimizer", "k* depends on the optimizer: Muon k* = 1, AdamW k* = 2 (same model)",
                         "Spectral Edge Thesis", "modal k* (W = 10, floor rule) — " + "; ".join(parts),
                         f"add mod {sc.mod_modulus} reference model (attention weights, every "
                         f"{sc.mod_every} steps, {sc.mod_steps} steps) and the tiny LM of §1 (all parameters), "
                         "one seed each (§3)", v,
                         "Muon 1 and AdamW 2 on both tasks" if v == REPRODUCED else
                         "Muon's modal k* is below AdamW's on at least one task, but not (1, 2) on both"
                         if v == PARTLY else "Muon's modal k* is not below AdamW's"))
    bb = res.get("backbone")
    if bb:
        late = {k: (bb[k].get("fraction") or {}).get("median_late") for k in [_b2(b) for b in BETA2S] + ["sgd"]}
        xs = [(b, late[_b2(b)]) for b in BETA2S if _finite(late[_b2(b)]) is not None]
        mono = None
        if len(xs) >= 3:
            xs.sort()
            rb = list(range(len(xs)))
            order = sorted(range(len(xs)), key=lambda i: xs[i][1])
            rv = [0] * len(xs)
            for rank, i in enumerate(order):
                rv[i] = rank
            mb = sum(rb) / len(rb)
            num = sum((a_ - mb) * (b_ - mb) for a_, b_ in zip(rb, rv))
            den = sum((a_ - mb) ** 2 for a_ in rb)
            mono = num / den if den else None
        sgd_lower = (_finite(late["sgd"]) is not None and xs and late["sgd"] < min(v_ for _, v_ in xs))
        weakens = mono is not None and mono >= 0.8
        v = REPRODUCED if weakens and sgd_lower else PARTLY if weakens or sgd_lower else NOT_REPRODUCED
        ours = ("late median backbone fraction — " + ", ".join(f"β2 {b}: {_fmt(late[_b2(b)])}" for b in BETA2S)
                + f"; SGD: {_fmt(late['sgd'])} (Spearman of fraction with β2: {_fmt(mono, 2)})")
        out.append(Claim("backbone", "lower β2 weakens the backbone; SGD removes it",
                         "LM drift θ_t − θ_0, AdamW (backbone holds 60–80% of the displacement)", ours,
                         f"tiny LM of §1 (seed 42) with β2 varied, and under SGD; probe every "
                         f"{sc.lm_backbone_every} steps, 20 drifts from θ_0 (§4)", v,
                         ("fraction rises with β2 and SGD is lowest" if v == REPRODUCED else
                          "only one of the two effects is seen" if v == PARTLY else "neither effect is seen")))
    out.append(Claim("gap_dynamics", "gap dynamics precede every grokking event with weight decay (24/24) and none "
                     "without (0/24)", "grokking runs (modular, Dyck, SCAN) with/without weight decay",
                     "not tested here", "—", NOT_TESTABLE,
                     "needs the 48-run grokking grid; these studies have one modular AdamW run with "
                     "weight decay and no matched controls"))
    return out


# ---------------------------------------------------------------------- figures
FIG_PREFIX = "trajectories_"
MAX_FIGURE_BYTES = 200_000


def _save(fig: Any, path: Path) -> None:
    """Save a PNG under MAX_FIGURE_BYTES (lowering the resolution if needed)."""
    import matplotlib.pyplot as plt

    for dpi in (100, 85, 70, 55):
        fig.savefig(path, dpi=dpi)
        if path.stat().st_size < MAX_FIGURE_BYTES:
            break
    plt.close(fig)


def _shade_phases(ax: Any, ph: Mapping[str, Any]) -> None:
    if ph.get("plateau_start") is not None and ph.get("plateau_end") is not None:
        ax.axvspan(ph["plateau_start"], ph["plateau_end"], color="tab:green", alpha=0.12, lw=0)
    if ph.get("collapse_start") is not None:
        ax.axvline(ph["collapse_start"], color="tab:red", lw=0.8, ls="--")


def make_figures(res: Mapping[str, Any], fig_dir: Path) -> dict[str, str]:
    """One PNG per study in ``fig_dir`` (names ``trajectories_<study>.png``); returns study → file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    lm = res.get("lm")
    if lm and lm["runs"]:
        fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
        r0 = lm["runs"][0]
        ax = axes[0, 0]
        for r in lm["runs"]:
            s = r["series"].get("all/W10")
            if s:
                ax.plot(s["step"], s["gap_ratio"], lw=1, label=f"seed {r['summary'].get('seed')}")
        _shade_phases(ax, r0["phases"].get("all/W10", {}).get("plateau", {}))
        ax.set_title("gap ratio R, W = 10 (shaded: plateau of the first seed)", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("R = σ_k*/σ_k*+1")
        ax2 = ax.twinx()
        ax2.plot(r0["val"]["step"], r0["val"]["loss"], color="k", lw=0.8, alpha=0.5, label="val loss (first seed)")
        ax2.set_yscale("log")
        ax2.set_ylabel("validation loss", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
        ax = axes[0, 1]
        for key, c in (("all/W5", "tab:blue"), ("all/W10", "tab:orange"), ("all/W20", "tab:green")):
            s = r0["series"].get(key)
            if s:
                ax.plot(s["step"], s["gap_ratio"], lw=1, color=c, label=key.replace("all/", ""))
        ax.set_title(f"gap ratio by window size (seed {r0['summary'].get('seed')})", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax = axes[1, 0]
        for key, mk in (("all/W10", "o"), ("trunk/W10", "x")):
            s = r0["series"].get(key)
            if s:
                ax.plot(s["step"], s["k_star"], mk, ms=3, label=key.replace("/W10", "") + " parameters")
        ax.set_title("k* over training (floor rule, W = 10)", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("k*")
        ax.legend(fontsize=7)
        ax = axes[1, 1]
        for W in r0["windows"]:
            c = r0["coupling"].get(f"all/W{W}", {})
            if "lags" in c:
                ax.plot(c["lags"], c["r"], "o-", ms=3, lw=1, label=f"W = {W} (peak lag {c.get('peak_lag')})")
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_title("detrended r(gap ratio_t, val loss_t+lag); lag > 0: R leads", fontsize=9)
        ax.set_xlabel(f"lag (samples of {get_scale(res['scale']).lm_every} steps)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        made["lm"] = f"{FIG_PREFIX}lm.png"
        _save(fig, fig_dir / made["lm"])
    jl = res.get("jl")
    if jl and jl["rows"]:
        trajs = sorted({r["trajectory"] for r in jl["rows"]}, key=lambda t: (t != "lm", t))
        fig, axes = plt.subplots(1, len(trajs), figsize=(5.5 * len(trajs), 4), squeeze=False)
        for ax, traj in zip(axes[0], trajs):
            for fam in JL_FAMILIES:
                rs = sorted((r for r in jl["rows"] if r["trajectory"] == traj and r["family"] == fam),
                            key=lambda r: r["d"])
                d = [r["d"] for r in rs]
                line, = ax.plot(d, [r["R_median_pct"] for r in rs], "o-", label=f"{fam} median")
                ax.plot(d, [r["R_p95_pct"] for r in rs], "o:", color=line.get_color(), alpha=0.6, label=f"{fam} p95")
                if all("R_debiased_median_pct" in r for r in rs):
                    ax.plot(d, [r["R_debiased_median_pct"] for r in rs], "s--", ms=3, color=line.get_color(),
                            alpha=0.8, label=f"{fam} debiased median")
            ax.axvline(10 * JL_W, color="grey", lw=0.8)
            ax.axhline(CLAIMED_JL_PCT, color="grey", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("sketch dimension d")
            ax.set_ylabel("gap-ratio relative error (%)")
            ax.set_title(f"{traj} trajectory, W = {JL_W} (dashed: 5.7% claim)", fontsize=9)
            ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        made["jl"] = f"{FIG_PREFIX}jl.png"
        _save(fig, fig_dir / made["jl"])
    opt = res.get("optimizers")
    if opt and any(opt.values()):
        fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
        for col, task in enumerate(("modular", "lm")):
            t = opt.get(task, {})
            ax = axes[0, col]
            ks = list(range(1, 7))
            width = 0.27
            for i, o in enumerate(("adamw", "muon", "sgd")):
                if o not in t:
                    continue
                d = t[o]["floor"]
                n = d["n"] or 1
                share = [d["counts"].get(str(k), 0) / n for k in ks[:-1]]
                share.append(sum(c for k, c in d["counts"].items() if int(k) >= ks[-1]) / n)
                ax.bar([k + (i - 1) * width for k in ks], share, width, label=f"{o} (modal {d['modal']})")
            ax.set_xticks(ks, [str(k) for k in ks[:-1]] + [f"≥{ks[-1]}"])
            ax.set_xlabel("k* (floor rule, W = 10)")
            ax.set_ylabel("share of windows")
            ax.set_title(f"{task}: k* distribution by optimizer", fontsize=9)
            ax.legend(fontsize=7)
            ax = axes[1, col]
            for o in ("adamw", "muon", "sgd"):
                if o in t:
                    s = t[o]["series"]
                    ax.plot(s["step"], s["gap_ratio"], lw=1, label=o)
            ax.set_xlabel("step")
            ax.set_ylabel("gap ratio (W = 10)")
            ax.set_title(f"{task}: gap ratio by optimizer", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        made["optimizers"] = f"{FIG_PREFIX}optimizers.png"
        _save(fig, fig_dir / made["optimizers"])
    bb = res.get("backbone")
    if bb:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for key, rec in bb.items():
            s = rec.get("series")
            if s:
                lab = f"AdamW β2 = {key}" if key != "sgd" else "SGD"
                axes[0].plot(s["step"], s["fraction"], lw=1, label=lab)
                axes[1].plot(s["step"], s["mean_fraction"], lw=1, label=lab)
        axes[0].set_title("backbone fraction a²/‖Δθ‖² of the latest drift", fontsize=9)
        axes[1].set_title("mean fraction over the 20 drifts in the probe's window", fontsize=9)
        for ax in axes:
            ax.set_xlabel("step")
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize=7)
        fig.tight_layout()
        made["backbone"] = f"{FIG_PREFIX}backbone.png"
        _save(fig, fig_dir / made["backbone"])
    return made


# ---------------------------------------------------------------------- the document
def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return out


def _dist(d: Mapping[str, Any]) -> str:
    if not d or not d.get("n"):
        return "n/a"
    return ", ".join(f"{k}: {v}" for k, v in d["counts"].items())


def _hms(seconds: Any) -> str:
    f = _finite(seconds)
    if f is None:
        return "n/a"
    m, s = divmod(int(round(f)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def render_document(res: Mapping[str, Any], figures: Mapping[str, str], fig_rel: str = "figures") -> str:
    """The Markdown document of the studies (every number comes from ``res``)."""
    sc = get_scale(res["scale"])
    L: list[str] = []
    L += ["# Trajectory studies: the papers' claims at CPU scale", ""]
    env = res.get("env", {})
    L += [f"Generated by `spectral-edge reproduce trajectories` (scale `{sc.name}`) from the runs in "
          f"`{res.get('out_name', 'results/trajectories')}`. Every number below was measured by those runs; "
          "the papers' "
          f"numbers are quoted as claims. Each run trains with one torch thread on a {env.get('cpus', '?')}-core CPU "
          f"(torch {env.get('torch', '?')}, no GPU), next to other runs and jobs (runs may have been trained by "
          "earlier, resumed invocations).", ""]
    if sc.name != "full":
        L += [f"> **Scale `{sc.name}`**: shrunken runs for testing the pipeline; the numbers are not evidence for "
              "or against any claim.", ""]
    L += ["## Claims and measurements", ""]
    claims = [Claim(**c) for c in res["claims"]]
    L += _table(["claim (papers)", "papers' setup", "our measurement", "our setup", "verdict"],
                [(c.claim, c.paper_setup, c.ours, c.our_setup, f"**{c.verdict}** — {c.why}") for c in claims])
    L += ["", "Verdict rules (applied by the code): k* — modal k* (floor rule, "
          "W = 10, all parameters) is 2 or 3 in every seed; three phases — the plateau detector (R ≥ 0.85·peak) "
          "leaves ≥ 3 windows of rise and ≥ 3 of collapse in every seed (only one of the two in some seed: partly); "
          "peak ratio — mean within 10% of 1.747 (30%: partly); "
          "phase-specific r — |r| ≥ 0.87 in every (seed, phase); lag flip — the peak lag is negative at W = 10 "
          "and positive at W = 20 (any sign change: partly); JL — median error at d = 10W ≤ 5.7% (≤ 11.4%: "
          "partly); optimizers — modal k* Muon 1 and AdamW 2 (Muon below AdamW: partly); backbone — late "
          "fraction increases with β2 (Spearman ≥ 0.8) and SGD's is the lowest (one of the two: partly).", ""]
    lm = res.get("lm")
    if lm:
        L += ["## 1. Small language model", "",
              f"Setup: {lm_setup(sc)}; windows W ∈ {{{', '.join(map(str, sc.windows))}}}; "
              f"seeds {', '.join(str(s) for s in lm['aggregate']['seeds'])}. Data: the library's generated story "
              "corpus (characters, 90/10 train/validation split). The trunk is every parameter except the "
              "token/position embeddings (the output head is tied to the token embedding). Validation loss is "
              f"measured every {sc.lm_every} steps on a fixed batch of 64 held-out windows of "
              f"{sc.lm_task.get('block_size')} characters. The gap ratio is R = σ_k*/σ_k*+1 with k* by the "
              "noise-floor rule (METHODS §2); the plain-argmax and weighted rules are shown beside it.", ""]
        if "lm" in figures:
            L += [f"![LM study]({fig_rel}/{figures['lm']})", ""]
        rows = []
        for r in lm["runs"]:
            s, cv = r["summary"], r.get("val_convergence", {})
            rows.append((s.get("seed"), f"{s.get('n_parameters_monitored', 0):,}", _fmt(cv.get("initial")),
                         _fmt(s.get("final_train_loss")), _fmt(s.get("final_test_loss")),
                         _fmt(s.get("final_test_acc")), f"{cv.get('step')} ({_fmt(cv.get('fraction_of_run'), 2)})",
                         _hms(s.get("wall_seconds"))))
        L += _table(["seed", "parameters", "initial val loss", "final train loss", "final val loss",
                     "final val next-char acc", "val loss within 10% of final from step (fraction of run)",
                     "wall time"], rows)
        L += [""]
        rows = []
        for r in lm["runs"]:
            s = r["summary"]
            for g in ("all", "trunk"):
                for W in r["windows"]:
                    k = r["kstar"].get(f"{g}/W{W}")
                    if not k:
                        continue
                    rows.append((s.get("seed"), g, W, k["floor"]["n"], k["floor"]["modal"],
                                 _fmt(k["floor"]["modal_share"], 2), _dist(k["floor"]), k["argmax"]["modal"],
                                 k["weighted"]["modal"], " / ".join(str(t["modal"]) for t in k["thirds"]),
                                 _fmt(k["signal"]["signal_share"], 2), k["signal"]["modal"], _dist(k["signal"])))
        L += ["### k* over training", ""]
        L += _table(["seed", "params", "W", "windows", "modal k*", "share", "k* counts (floor rule)",
                     "modal (argmax)", "modal (weighted)", "modal by thirds of training",
                     "windows with a mode above the floor", "modal k* there", "k* counts there"], rows)
        L += ["", "The floor rule returns k* = 1 by default when no σ_j exceeds ρ_W·σ_noise (ρ_W = 1 + 2W^(−2/3), "
              "σ_noise from the lower half of the spectrum); the last three columns keep only windows where at "
              "least one mode does.", ""]
        L += ["", "### Phases of the gap ratio", ""]
        rows = []
        for r in lm["runs"]:
            for W in r["windows"]:
                for m, p in r["phases"].get(f"all/W{W}", {}).items():
                    rows.append((r["summary"].get("seed"), W, m, p.get("valid"), _fmt(p.get("peak_value")),
                                 p.get("peak_step"), p.get("plateau_start"), p.get("plateau_end"),
                                 p.get("collapse_start"), p.get("collapse_step"),
                                 f"{p.get('n_rise')}/{p.get('n_plateau')}/{p.get('n_collapse')}",
                                 _fmt(p.get("rise_factor"), 2), _fmt(p.get("collapse_factor"), 2)))
        L += _table(["seed", "W", "detector", "valid", "peak R", "peak step", "plateau start", "plateau end",
                     "collapse start", "R < 1.20 after peak", "windows rise/plateau/collapse", "peak / first R",
                     "last R / peak"], rows)
        L += ["", "Detectors (METHODS §4): plateau = contiguous run with R ≥ 0.85·peak; derivative = first "
              "smoothed slope < −0.01 per sample after the peak; threshold = run with R ≥ 1.30 (invalid when R "
              "never "
              "reaches it).", "", "### Coupling with validation loss", ""]
        rows = []
        for r in lm["runs"]:
            for g in ("all", "trunk"):
                for W in r["windows"]:
                    c = r["coupling"].get(f"{g}/W{W}")
                    if not c:
                        continue
                    if "error" in c:
                        rows.append((r["summary"].get("seed"), g, W, "—", c["error"], "", "", "", "", "", ""))
                        continue
                    rows.append((r["summary"].get("seed"), g, W, c["n"], c["peak_lag"], _fmt(c["peak_r"]),
                                 _fmt_p(c["p_perm"]), f"{_fmt_p(c['p_eff'])} (n_eff {_fmt(c['n_eff'], 1)})",
                                 _fmt_p(c["granger_p"]), _fmt_p(c["granger_reverse_p"]),
                                 f"{c['positive_lag']} ({_fmt(c['positive_r'])})"))
        L += _table(["seed", "params", "W", "n", "peak lag", "peak r", "p (circular shift)", "p (ESS)",
                     "Granger p (R → loss)", "Granger p (loss → R)", "most positive lag (r)"], rows)
        L += ["", "Both series are detrended by a cubic in the step; lag ℓ > 0 means the gap ratio leads the loss; "
              "the peak lag is the most negative r within ±min(10, n/4) samples. The circular-shift p accounts for "
              "the search over lags; the ESS p does not.", ""]
        rows = []
        for r in lm["runs"]:
            f = r["coupling"].get("all/flip", {})
            lags = ", ".join(f"W{w}: {lag}" for w, lag in f.get("peak_lags", {}).items())
            rows.append((r["summary"].get("seed"), lags,
                         f.get("flip_10_20"), f.get("paper_pattern")))
        L += ["### Lag flip", ""]
        L += _table(["seed", "peak lag per W (samples)", "sign change W10 → W20", "paper's pattern (−, +)"], rows)
        rows = []
        for r in lm["runs"]:
            c = r["coupling"].get("all/W10", {})
            for p, v in c.get("phases", {}).items():
                rows.append((r["summary"].get("seed"), p, v["n"], _fmt(v["r"]), _fmt(v["r_detrended"]), _fmt_p(v["p"])))
        L += ["", "### Phase-specific correlation (W = 10, lag 0)", ""]
        L += _table(["seed", "phase", "n", "r (raw)", "r (detrended)", "p (naive)"], rows)
        L += ["", _lm_words(lm, sc), ""]
    jl = res.get("jl")
    if jl:
        L += ["## 2. Accuracy of the random projection (JL)", "",
              f"Setup: every right-aligned window (W = {JL_W}) of two real trajectories, sketched to d = f·W for "
              "f ∈ "
              f"{{{', '.join(map(str, sc.jl_factors))}}} with {jl['key']['seeds']} projection seeds per family; "
              "relative error |R̂/R − 1| of the gap ratio against the exact window (each side with its own k*, "
              "floor rule), and the same after Monte-Carlo eigenvalue debiasing (`functional/debias.py`). "
              f"Trajectories: `lm` = checkpoints of the LM run (seed 42) every {jl['cadence']['lm']} steps "
              f"({jl['n_states']['lm']} states, {jl['n_parameters']['lm']:,} parameters); `modular` = checkpoints of "
              f"the add-mod-97 AdamW run every {jl['cadence']['modular']} steps up to step {sc.jl_mod_max_step} "
              f"({jl['n_states']['modular']} states, {jl['n_parameters']['modular']:,} parameters). The error "
              "computation is `spectral_edge.analysis.jl.jl_errors` (also behind `benchmarks/bench_sketch_accuracy.py`); "
              f"`{JL_GAUSSIAN}` is a dense Gaussian sketch drawn from its exact law.", ""]
        if "jl" in figures:
            L += [f"![JL study]({fig_rel}/{figures['jl']})", ""]
        rows = []
        for r in sorted(jl["rows"], key=lambda r: (r["trajectory"] != "lm", r["trajectory"], r["family"], r["d"])):
            rows.append((r["trajectory"], r["family"], r["d"], f"{r['d'] // JL_W}W", _fmt(r.get("R_median_pct"), 2),
                         _fmt(r.get("R_p95_pct"), 2), _fmt(r.get("R_debiased_median_pct"), 2),
                         _fmt(r.get("R_debiased_p95_pct"), 2), _fmt(100 * r["kstar_agreement"], 0)))
        L += _table(["trajectory", "family", "d", "d/W", "median %", "p95 %", "debiased median %", "debiased p95 %",
                     "k* agreement %"], rows)
        L += ["", _jl_words(jl), ""]
    opt = res.get("optimizers")
    if opt:
        L += ["## 3. Optimizer dependence of k*", "",
              f"Setup: the modular reference model on add mod 97 (attention weights monitored, every {sc.mod_every} "
              f"steps, {sc.mod_steps} steps, no early stop, seed 42) and the tiny LM above (all parameters, seed 42), "
              "each under AdamW, Muon and SGD (momentum 0.9); W = 10, k* by the floor rule. Learning rates were "
              "chosen by short scans so that every run trains (see the table). Muon runs `torch.optim.Muon` on 2-D "
              "hidden matrices and AdamW on embeddings, head, biases and norms, both at the one `lr` of the config "
              "(the runner has no separate AdamW learning rate for Muon runs).", ""]
        if "optimizers" in figures:
            L += [f"![optimizer study]({fig_rel}/{figures['optimizers']})", ""]
        rows = []
        for task in ("modular", "lm"):
            for o, rec in opt.get(task, {}).items():
                st = OPTIMIZER_SETTINGS[task][o]
                s = rec["summary"]
                setting = ", ".join(f"{k} {v}" for k, v in st.items() if k != "betas") + (
                    f", β {tuple(st['betas'])}" if o != "sgd" else "")
                rows.append((task, o, setting, _fmt(s.get("final_train_loss")), _fmt(s.get("final_test_loss")),
                             _fmt(s.get("final_test_acc")), rec["floor"]["n"], rec["floor"]["modal"],
                             _fmt(rec["floor"]["modal_share"], 2), _dist(rec["floor"]), rec["argmax"]["modal"],
                             rec["weighted"]["modal"], " / ".join(str(t["modal"]) for t in rec["thirds"]),
                             _fmt(rec["peak_gap_ratio"]), _fmt(rec["signal"]["signal_share"], 2),
                             rec["signal"]["modal"]))
        L += _table(["task", "optimizer", "settings", "final train loss", "final test loss", "final test acc",
                     "windows", "modal k*", "share", "k* counts", "modal (argmax)", "modal (weighted)",
                     "modal by thirds", "peak R", "windows with a mode above the floor", "modal k* there"], rows)
        L += ["", _opt_words(opt), ""]
    bb = res.get("backbone")
    if bb:
        L += ["## 4. Backbone and β2", "",
              "Setup: the tiny LM (seed 42) under AdamW with β2 ∈ "
              f"{{{', '.join(_b2(b) for b in BETA2S)}}} (β1 {OPTIMIZER_SETTINGS['lm']['adamw']['betas'][0]}, "
              "everything else as in study 1) and under SGD (lr "
              f"{OPTIMIZER_SETTINGS['lm']['sgd']['lr']}, momentum {OPTIMIZER_SETTINGS['lm']['sgd']['momentum']}, "
              "no weight decay). The backbone probe keeps the "
              f"last 20 states (every {sc.lm_backbone_every} steps) of all parameters, takes the top direction v_b "
              "of the row-normalised drifts θ_t − θ_0 and reports the fraction a²/‖Δθ‖² (a = ⟨Δθ, v_b⟩) of the "
              "latest drift, its mean over the 20 drifts, the PC1 share, and the alignment |cos| of the last update "
              "and of "
              "the last gradient with v_b. \"Late\" = the second half of training; trend = least-squares slope per "
              "1000 steps.", ""]
        if "backbone" in figures:
            L += [f"![backbone study]({fig_rel}/{figures['backbone']})", ""]
        rows = []
        for key, rec in bb.items():
            s = rec.get("summary", {})
            f = rec.get("fraction") or {}
            mf = rec.get("mean_fraction") or {}
            rows.append(("SGD" if key == "sgd" else f"AdamW β2 {key}", _fmt(s.get("final_test_loss")), rec.get("n"),
                         _fmt(f.get("last")), _fmt(f.get("median_late")),
                         _fmt((f.get("trend") or {}).get("slope_per_1k")), _fmt(mf.get("median_late")),
                         _fmt((rec.get("pc1_pct") or {}).get("median_late"), 1),
                         _fmt((rec.get("update_align") or {}).get("median_late")),
                         _fmt((rec.get("grad_align") or {}).get("median_late"))))
        L += _table(["run", "final val loss", "probe rows", "fraction (last)", "fraction (late median)",
                     "fraction trend /1k steps", "mean fraction (late)", "PC1 % (late)", "update align (late)",
                     "gradient align (late)"], rows)
        L += ["", _bb_words(bb), ""]
    L += ["## Gap dynamics before grokking (24/24 vs 0/24)", "",
          "Not tested here: the claim is about 24 grokking runs with weight decay and 24 without; these studies "
          "train one modular run per optimizer and no matched no-decay controls, so there is nothing to count. "
          "The grokking suite ([grokking.md](grokking.md): 12 runs with weight decay, 3 without, 6 never-grokking "
          "operations) measures the nearest quantities, g23's decline and R before grokking. If g23's decline is the "
          "gap dynamics meant, that grid does not show the separation either: g23 falls ≥ 15× in all 3 runs "
          "without weight decay and in all 6 never-grokking runs with it.", ""]
    tm = res.get("timing", {})
    if tm:
        L += ["## Wall time", ""]
        rows = [(k, _hms(v.get("runs_seconds")), v.get("n_runs"), _hms(v.get("analysis_seconds")))
                for k, v in tm.items()]
        L += _table(["study", "training (sum over its runs, shared runs counted in each)", "runs",
                     "analysis"], rows)
        L += ["", "Training times are each run's own wall clock (one thread, on a CPU shared with other runs and "
              "jobs, so they vary between identical runs).", ""]
    L += ["## How to regenerate", "", "```", "spectral-edge reproduce trajectories --out results/trajectories --jobs 2",
          "```", "", "It trains the runs that are missing (a run folder with a `summary.json` of the same config is "
          "reused), recomputes the JL sweep when its inputs changed, and rewrites this file and "
          f"`docs/figures/{FIG_PREFIX}*.png`. `--quick` runs a few hundred steps per run into the output folder "
          "(for testing the pipeline). Under other load, prefix it with `nice -n 10`.", ""]
    return "\n".join(L)


def _lm_words(lm: Mapping[str, Any], sc: Scale) -> str:
    a = lm["aggregate"]
    modal = [m for m in a["modal_kstar_all/W10"] if m is not None]
    parts = []
    if modal:
        parts.append(f"At W = 10 the modal k* over training is {', '.join(map(str, modal))} across seeds "
                     f"(trunk: {_lst(a['modal_kstar_trunk/W10'], 0)}).")
    if a["peak_ratio_W10_mean"] is not None:
        parts.append(f"The gap ratio peaks at {_fmt(a['peak_ratio_W10_mean'])} on average (W = 10).")
    tp = a["three_phases_W10"]
    parts.append(f"{sum(1 for x in tp if x)}/{len(tp)} seeds show all three phases by the plateau rule.")
    fl = a["flip"]
    parts.append(f"The (−, +) lag pattern of the paper appears in {sum(1 for f in fl if f.get('paper_pattern'))}/"
                 f"{len(fl)} seeds.")
    cv = [r.get("val_convergence", {}).get("fraction_of_run") for r in lm["runs"]]
    n_p = [r["summary"].get("n_parameters_monitored") for r in lm["runs"]]
    if cv and all(_finite(x) is not None for x in cv) and n_p and n_p[0]:
        parts.append(f"What does not transfer: our model has {n_p[0]:,} parameters, {51e6 / n_p[0]:.0f}× and "
                     f"{124e6 / n_p[0]:.0f}× fewer than the papers' 51M and 124M models, and our corpus comes from a "
                     "small story grammar: the validation loss is within 10% of its final value after "
                     f"{_lst(cv, 2)} of the run (per seed), so most windows see a model near convergence, while "
                     "the papers' models keep learning real text across their whole runs.")
    return " ".join(parts)


def _jl_words(jl: Mapping[str, Any]) -> str:
    def get(traj: str, fam: str, f: int, key: str) -> Any:
        for r in jl["rows"]:
            if r["trajectory"] == traj and r["family"] == fam and r["d"] == f * JL_W:
                return r.get(key)
        return None

    bits = []
    for traj in ("lm", "modular"):
        m, p = get(traj, JL_GAUSSIAN, 10, "R_median_pct"), get(traj, JL_GAUSSIAN, 10, "R_p95_pct")
        dm = get(traj, JL_GAUSSIAN, 10, "R_debiased_median_pct")
        if m is not None:
            bits.append(f"{traj}: Gaussian at d = 10W, median {_fmt(m, 1)}%, p95 {_fmt(p, 1)}%, debiased median "
                        f"{_fmt(dm, 1)}%")
    slopes = []
    for traj in ("lm", "modular"):
        for fam in JL_FAMILIES:
            rs = sorted((r for r in jl["rows"] if r["trajectory"] == traj and r["family"] == fam), key=lambda r: r["d"])
            b = loglog_slope([r["d"] for r in rs], [r.get("R_median_pct") for r in rs])
            if b is not None:
                slopes.append(f"{traj}/{fam} {b:.2f}")
    return ("Our number next to the claimed 5.7%: " + "; ".join(bits) + ". Log-log slope of the median error "
            "against d (−0.5 would be 1/√d): " + ", ".join(slopes) + ".") if bits else ""


def _opt_words(opt: Mapping[str, Any]) -> str:
    bits = []
    for task in ("modular", "lm"):
        t = opt.get(task, {})
        if t:
            bits.append(f"{task}: " + ", ".join(f"{o} {r['floor']['modal']}" for o, r in t.items()))
    return ("Modal k* (W = 10): " + "; ".join(bits) + ". One seed per cell; the distributions above show how "
            "stable the mode is over training.") if bits else ""


def _bb_words(bb: Mapping[str, Any]) -> str:
    vals = []
    for key, rec in bb.items():
        f = (rec.get("fraction") or {}).get("median_late")
        vals.append(f"{'SGD' if key == 'sgd' else 'β2 ' + key}: {_fmt(f)}")
    return "Late median backbone fraction — " + ", ".join(vals) + "."


# ---------------------------------------------------------------------- orchestration
def analyse(out: str | Path, plan: StudyPlan, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every study of ``plan`` on the run folders in ``out`` → one JSON-safe record (with the claims)."""
    out = Path(out)
    res: dict[str, Any] = {"scale": plan.scale.name, "studies": list(plan.uses), "timing": {}}
    fns: dict[str, Callable[[], Any]] = {
        "lm": lambda: lm_study(out, plan),
        "jl": lambda: jl_records(out, plan, log),
        "optimizers": lambda: optimizer_study(out, plan),
        "backbone": lambda: backbone_study(out, plan),
    }
    for st in plan.uses:
        t0 = time.perf_counter()
        if log:
            log(f"analysing study {st}")
        res[st] = fns[st]()
        secs = [_summary(out / n).get("wall_seconds") for n in plan.uses[st]]
        res["timing"][st] = {"n_runs": len(plan.uses[st]), "runs_seconds": sum(s for s in secs if s),
                             "analysis_seconds": time.perf_counter() - t0}
        if st == "jl":
            res["timing"][st]["analysis_seconds"] = res[st].get("seconds", res["timing"][st]["analysis_seconds"])
    res["claims"] = [c.__dict__ for c in claims_table(res)]
    return res


def reproduce_trajectories(out: str | Path, *, jobs: int = 2, scale: str | Scale = "full",
                           studies: Sequence[str] = STUDIES, doc: str | Path | None = None,
                           train: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the missing runs of ``studies`` (resumable, ``jobs`` processes), analyse them, and write
    ``out/results.json`` and the document ``doc`` (default ``out/trajectories.md``) with its figures
    in ``<doc folder>/figures/``. Returns the results record."""
    import torch

    from .suite import run_suite

    out = Path(out)
    plan = study_plan(scale, studies)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if train:
        def on_event(kind: str, r: SuiteRun, s: Mapping[str, Any] | None) -> None:
            if log:
                extra = f" ({_hms(s.get('wall_seconds'))})" if s else ""
                log(f"{kind} {r.name}{extra}")

        run_suite(plan.runs, out, jobs=jobs, on_event=on_event)
    missing = [r.name for r in plan.runs if not (out / r.name / "summary.json").is_file()]
    if missing:
        raise ConfigError(f"runs did not finish: {', '.join(missing)} (see their run.log in {out})")
    res = analyse(out, plan, log)
    res["out_name"] = str(out)
    res["env"] = {"jobs": int(jobs), "cpus": os.cpu_count(), "torch": torch.__version__.split("+")[0]}
    doc = Path(doc) if doc is not None else out / "trajectories.md"
    figures = make_figures(res, doc.parent / "figures")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render_document(res, figures))
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    res["doc"], res["figures"] = str(doc), figures
    return res
