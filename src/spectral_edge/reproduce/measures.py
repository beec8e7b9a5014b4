"""Measures: what the runs show, as plain JSON-safe records. Per-run measurements (k* over
training, phases and coupling of the LM runs, the backbone probe, the JL sketch errors, each
grokking run's signals and detector leads) and their aggregation over a study's runs (the
``*_study`` functions). No verdicts and no text here: :mod:`.claims` judges these records and
:mod:`.documents` writes them.

numpy, pandas and the analysis modules are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._numbers import finite_or_none as _finite
from ..errors import ConfigError
from .plans import (BETA2S, JL_FACTORS, JL_FAMILIES, JL_W, TEXT_OPTIMIZERS, TRUNK_GROUP, StudyPlan, beta2_label, lm_name,
                    mod_name, text_name)

#: a phase of the gap ratio counts when it lasts at least this many windows (rise and collapse)
MIN_PHASE_WINDOWS = 3


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
    """Per window: how many σ_j (j < W) exceed the floor rule's threshold ρ_r·σ_noise (METHODS §2; r: the
    nonzero σ, r = W for a full-rank window). Zero means no mode stands out of the noise, and the floor
    rule's k* = 1 is then a default, not a mode."""
    import numpy as np

    from ..functional.spectrum import floor_threshold

    out = []
    for _, r in rows.iterrows():
        sig = np.array([_finite(r.get(f"sigma_{j}")) for j in range(1, W + 1)], dtype=float)
        if not np.all(np.isfinite(sig)):
            out.append(0)
            continue
        thr = floor_threshold(sig)
        out.append(int(np.count_nonzero(sig[: W - 1] > thr)))
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


def read_summary(folder: Path) -> dict[str, Any]:
    """A run folder's ``summary.json`` ({} when missing or unreadable)."""
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
    rec["three_phases"] = bool(ph.valid and labels.count("rise") >= MIN_PHASE_WINDOWS
                               and labels.count("collapse") >= MIN_PHASE_WINDOWS)
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
    raw = load_run(folder)
    # a window across a cadence schedule's boundary mixes update spacings (its spectrum counts the long
    # updates): every measure reads the evenly spaced windows; the dropped ones are kept for the figure
    mixed = raw.mixed_spacing()
    data = raw.evenly_spaced()
    have = [w for w in windows if w in data.windows]
    rec: dict[str, Any] = {"run": folder.name, "summary": read_summary(folder), "windows": have, "kstar": {},
                           "phases": {}, "coupling": {}, "series": {}, "mixed": _mixed_record(raw.spectral[mixed])}
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
            if g == "all":
                rec.setdefault("segments", {})[f"W{W}"] = contiguous_segments(rows)
    val = data.validation("val_loss" if "val_loss" in data.logs.columns else None)
    rec["val"] = {"step": val.steps.tolist(), "loss": [_finite(v) for v in val.values]}
    rec["val_convergence"] = convergence(val.steps.tolist(), val.values.tolist())
    rec["val_mid"] = mid_run_drop(val.steps.tolist(), val.values.tolist())
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


def contiguous_segments(rows: Any) -> list[list[int]]:
    """[first step, last step] of each run of consecutive windows (a window follows the previous one
    when it ends one sample later: its step minus the previous step is its ``sample_spacing``).
    One segment for a run sampled every N steps (or with no spacing recorded); more where windows
    were dropped between them."""
    steps = [int(x) for x in rows["step"]]
    gaps = [int(x) if _finite(x) is not None else None for x in rows.get("sample_spacing", [None] * len(steps))]
    segs: list[list[int]] = []
    for i, st in enumerate(steps):
        if segs and (gaps[i] is None or st - steps[i - 1] == gaps[i]):  # no spacing recorded: one segment
            segs[-1][1] = st
        else:
            segs.append([st, st])
    return segs


def _mixed_record(rows: Any) -> dict[str, Any]:
    """The dropped windows that mix sample spacings: their number per W (group ``all``) and the
    W = 10 series (step, gap ratio, k*) for the figure."""
    rows = rows[rows["group"] == "all"] if "group" in rows.columns else rows.iloc[0:0]
    out: dict[str, Any] = {"n": {str(int(w)): int((rows["window"] == w).sum()) for w in sorted(rows["window"].unique())}}
    w10 = rows[rows["window"] == 10].sort_values("step")
    if len(w10):
        out["W10"] = {"step": [int(x) for x in w10["step"]], "gap_ratio": [_finite(v) for v in w10["gap_ratio"]],
                      "k_star": [int(v) if _finite(v) else 0 for v in w10["k_star_floor"]]}
    return out


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
        "run": folder.name, "window": W, "group": group, "summary": read_summary(folder),
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
def random_walk_fraction(steps: Sequence[float]) -> float | None:
    """The backbone ``fraction`` of the latest drift for an isotropic random walk observed at
    ``steps`` (drifts from θ_0; P → ∞): the row-normalised drifts have the Gram matrix
    K_ij = min(s_i, s_j)/√(s_i s_j), and the latest drift's share on the top direction is
    λ_1·u_T² (λ_1, u: K's top eigenpair, T: the latest step). The null of the papers' 60–80%."""
    import numpy as np

    s = np.array(sorted(float(x) for x in steps if x > 0))
    if len(s) < 2:
        return None
    K = np.minimum.outer(s, s) / np.sqrt(np.outer(s, s))
    lam, U = np.linalg.eigh(K)
    return float(lam[-1] * U[-1, -1] ** 2)


def _backbone_null(rows: Any, every: int, window: int, late: Any) -> float | None:
    """Median over the late records of :func:`random_walk_fraction` at each record's drift steps."""
    import numpy as np

    vals = [random_walk_fraction([t - k * every for k in range(window)]) for t in rows["step"].to_numpy()[late]]
    vals = [v for v in vals if v is not None]
    return float(np.median(vals)) if vals else None


def analyse_backbone_run(folder: str | Path) -> dict[str, Any]:
    """The backbone probe's rows of one run: fraction a²/‖Δθ‖² (latest drift), its mean over the
    window, PC1 share, update/gradient alignment; medians over the second half and the trend."""
    import numpy as np

    from ..io.history import read_history

    folder = Path(folder)
    df = read_history(folder / "history.jsonl")
    if "probe" not in df.columns:
        return {"run": folder.name, "summary": read_summary(folder), "n": 0}
    rows = df[(df["kind"] == "probe") & (df["probe"] == "backbone")]
    if "fraction" in rows.columns:
        rows = rows[rows["fraction"].notna()]
    rows = rows.sort_values("step")
    rec: dict[str, Any] = {"run": folder.name, "summary": read_summary(folder), "n": int(len(rows))}
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
    opts = ((_read_json(folder / "config.json") or {}).get("probes") or {}).get("backbone") or {}
    every, window = opts.get("every"), opts.get("window", 20)
    if isinstance(every, int) and every > 0 and (opts.get("reference", "init") == "init"):
        rec["null_fraction_late"] = _backbone_null(rows, every, int(window), half)
    return rec


# ---------------------------------------------------------------------- study 5: real text
def text_study(out: Path, plan: StudyPlan) -> dict[str, Any]:
    """Study 5: the larger LM on a packaged real text, per optimizer the LM study's record
    (:func:`analyse_lm_run` per seed, :func:`lm_aggregate` over seeds), and per run the backbone
    probe (:func:`analyse_backbone_run`)."""
    sc = plan.scale
    res: dict[str, Any] = {}
    for opt in TEXT_OPTIMIZERS:
        names = [text_name(opt, s) for s in sc.text_seeds if text_name(opt, s) in plan.uses["text"]]
        runs = [analyse_lm_run(out / n, sc.windows, sc.n_perm) for n in names]
        res[opt] = {"runs": runs, "aggregate": lm_aggregate(runs),
                    "backbone": [analyse_backbone_run(out / n) for n in names]}
    return res


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
        rows += jl_errors(name, states, dims, window=JL_W, families=JL_FAMILIES, seeds=int(seeds), debias=debias,
                          log=(lambda r: log(f"JL {r['trajectory']} {r['family']} d={r['d']}: median "
                                             f"{r['R_median_pct']:.1f}%")) if log else None)
    return [{k: (_finite(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]



# ---------------------------------------------------------------------- studies → records
def _mean_sd(xs: Sequence[Any]) -> tuple[float | None, float | None]:
    v = [float(x) for x in xs if _finite(x) is not None]
    if not v:
        return None, None
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None
    return m, sd


#: seed of the isotropic null of the peak gap ratio
NULL_SEED = 0


def isotropic_peak_ratio(n_parameters: int, window: int, n_windows: int, seed: int = NULL_SEED) -> float | None:
    """The peak gap ratio (the library's default k* rule) over ``n_windows`` windows of ``window``
    i.i.d. isotropic Gaussian updates in ``n_parameters`` dimensions: a trajectory with no edge.
    The Gram matrix of such a window is Wishart(P, I_W); it is drawn exactly by the Bartlett
    decomposition (L lower triangular, L_ii² ~ χ²(P − i), L_ij ~ N(0, 1) below the diagonal),
    so the cost is W × W per window whatever P. Seeded; None without a window."""
    import numpy as np

    from ..functional.spectrum import window_stats

    W, P = int(window), int(n_parameters)
    if W < 2 or P < W or n_windows < 1:
        return None
    rng = np.random.default_rng(seed)
    peak = None
    for _ in range(int(n_windows)):
        L = np.tril(rng.standard_normal((W, W)), -1)
        L[np.diag_indices(W)] = np.sqrt(rng.chisquare(P - np.arange(W)))
        r = _finite(window_stats(L @ L.T).gap_ratio)
        if r is not None and (peak is None or r > peak):
            peak = r
    return peak


def lm_study(out: Path, plan: StudyPlan) -> dict[str, Any]:
    """Study 1: every seed's :func:`analyse_lm_run`, plus the cross-seed aggregates the claims need."""
    runs = [analyse_lm_run(out / name, plan.scale.windows, plan.scale.n_perm) for name in plan.uses["lm"]]
    return {"runs": runs, "aggregate": lm_aggregate(runs)}


def lm_aggregate(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The cross-seed aggregates of :func:`analyse_lm_run` records that the LM claims read."""
    agg: dict[str, Any] = {"seeds": [r["summary"].get("seed") for r in runs]}
    for key in ("all/W10", "trunk/W10", "all/W5", "all/W20"):
        agg[f"modal_kstar_{key}"] = [r["kstar"].get(key, {}).get("floor", {}).get("modal") for r in runs]
        agg[f"modal_kstar_argmax_{key}"] = [r["kstar"].get(key, {}).get("argmax", {}).get("modal") for r in runs]
    agg["signal_share_all/W10"] = [r["kstar"].get("all/W10", {}).get("signal", {}).get("signal_share") for r in runs]
    agg["signal_kstar_all/W10"] = [r["kstar"].get("all/W10", {}).get("signal", {}).get("modal") for r in runs]
    peaks = [r["phases"].get("all/W10", {}).get("plateau", {}).get("peak_value") for r in runs]
    agg["peak_ratio_W10"] = peaks
    agg["peak_ratio_W10_mean"], agg["peak_ratio_W10_sd"] = _mean_sd(peaks)
    first = runs[0] if runs else {}
    n_par = (first.get("summary") or {}).get("n_parameters_monitored")
    n_win = first.get("kstar", {}).get("all/W10", {}).get("floor", {}).get("n")
    agg["n_parameters"], agg["n_windows_W10"] = n_par, n_win
    agg["null_peak_ratio_W10"] = isotropic_peak_ratio(n_par, 10, n_win) if n_par and n_win else None
    agg["three_phases_W10"] = [r["phases"].get("all/W10", {}).get("plateau", {}).get("three_phases") for r in runs]
    agg["flip"] = [r["coupling"].get("all/flip", {}) for r in runs]
    agg["coupling_p_perm"] = {str(W): [r["coupling"].get(f"all/W{W}", {}).get("p_perm") for r in runs]
                              for W in (10, 20)}
    ph_r: dict[str, list[Any]] = {"rise": [], "plateau": [], "collapse": []}
    for r in runs:
        c = r["coupling"].get("all/W10", {})
        for p in ph_r:
            ph_r[p].append(c.get("phases", {}).get(p, {}).get("r"))
    agg["phase_r_W10"] = ph_r
    agg["phase_n_W10"] = {p: [r["coupling"].get("all/W10", {}).get("phases", {}).get(p, {}).get("n") for r in runs]
                          for p in ph_r}
    agg["val_mid"] = [r.get("val_mid") for r in runs]
    return agg


def mid_run_drop(steps: Sequence[Any], loss: Sequence[Any]) -> dict[str, Any]:
    """Whether a validation-loss curve is still falling in the middle of the run: its value at the
    middle step (linear interpolation), the final value, the relative drop between them, and the
    least-squares slope per 1000 steps over the middle fifth of the run (40–60%)."""
    import numpy as np

    pts = [(float(s), float(v)) for s, v in zip(steps, loss) if _finite(v) is not None]
    if len(pts) < 3:
        return {"mid": None, "final": None, "drop": None, "slope_per_1k": None}
    s = np.array([p[0] for p in pts])
    v = np.array([p[1] for p in pts])
    mid_step = s[0] + (s[-1] - s[0]) / 2
    mid = float(np.interp(mid_step, s, v))
    band = (s >= s[0] + 0.4 * (s[-1] - s[0])) & (s <= s[0] + 0.6 * (s[-1] - s[0]))
    slope = trend(s[band].tolist(), v[band].tolist())["slope_per_1k"] if band.sum() >= 3 else None
    return {"mid_step": int(mid_step), "mid": mid, "final": float(v[-1]), "drop": (mid - float(v[-1])) / mid if mid else None,
            "slope_per_1k": _finite(slope)}


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
        res[beta2_label(b)] = analyse_backbone_run(out / lm_name("adamw", 42, b)) | {"beta2": b}
    res["sgd"] = analyse_backbone_run(out / lm_name("sgd")) | {"beta2": None}
    return res


#: the JL study's cache files under ``out/jl/`` (part of the committed evidence)
JL_CACHE_FILES = ("jl_accuracy.json", "jl_accuracy.csv")


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


# ---------------------------------------------------------------------- grokking runs
def _named(name: str) -> Callable[[], Any]:
    def make() -> Any:
        from ..detectors.alarm import make_alarm

        return make_alarm(name)

    return make


#: Detectors compared in the grokking tables (replayed on each history): the library's named
#: alarms with their default settings ("paper rule" is the papers' onset rule).
DETECTORS: dict[str, Callable[[], Any]] = {
    "recommended": _named("recommended"),
    "geometry": _named("geometry"),
    "paper rule": _named("paper"),
    "validation": _named("validation"),
}


def summarize_run(folder: str | Path, role: str, detectors: dict[str, Callable[[], Any]] | None = None
                  ) -> dict[str, Any]:
    """Signals, grok step and each detector's warning for one run folder."""
    import numpy as np

    from ..detectors.alarm import replay
    from ..detectors.signals import gram_edge_summary, ratio_series, series
    from ..io.history import read_history

    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    cfg = json.loads((folder / "config.json").read_text())
    hist = read_history(folder / "history.jsonl")
    grok = summary.get("grok_step")
    row: dict[str, Any] = {
        "run": folder.name, "role": role, "task": cfg.get("task"), "op": cfg.get("op"), "seed": cfg.get("seed"),
        "weight_decay": cfg.get("weight_decay"), "lr": cfg.get("lr"), "modulus": cfg.get("modulus"),
        "steps_run": summary.get("steps_run"), "grok_step": grok,
        "grok_step_098x3": summary.get("grok_step_098x3"), "final_test_acc": _finite(summary.get("final_test_acc")),
    }
    for name, make in (detectors or DETECTORS).items():
        w = replay(hist, make())
        row[f"warn[{name}]"] = w
        row[f"lead[{name}]"] = (grok - w) if (grok is not None and w is not None) else None
    ds, dv = series(hist, "defect", kind="probe", probe="defect")
    upto = ds <= grok if grok is not None else np.ones(ds.shape, bool)
    row["peak_defect"] = _finite(dv[upto].max()) if upto.any() else None
    ge = gram_edge_summary(hist, grok)
    row["g23_decline"] = _finite(ge.decline)
    row["g23_peak_step"] = ge.peak_step
    rs, rv = ratio_series(hist, "weighted")
    pre = rs < grok if grok is not None else np.ones(rs.shape, bool)
    row["R_weighted_pre"] = _finite(np.mean(rv[pre])) if pre.any() else None
    fs, fv = series(hist, "gap_ratio")
    pre = fs < grok if grok is not None else np.ones(fs.shape, bool)
    row["R_floor_pre"] = _finite(np.mean(fv[pre])) if pre.any() else None
    ms, mv = series(hist, "pc1_pct_mean", kind="probe", probe="manifold")
    if ms.size:
        at = np.flatnonzero(ms <= grok)[-1] if grok is not None and (ms <= grok).any() else ms.size - 1
        row["pc1_pct"] = _finite(mv[at])
    return row


def grokking_rows(suite_dir: str | Path, runs: Sequence[Any], detectors: dict[str, Callable[[], Any]] | None = None
                  ) -> list[dict[str, Any]]:
    """:func:`summarize_run` for every finished run of a suite (``runs``: SuiteRun objects)."""
    out = []
    for r in runs:
        folder = Path(suite_dir) / r.name
        if (folder / "summary.json").is_file():
            out.append({**summarize_run(folder, r.role, detectors), "split": getattr(r, "split", "dev"),
                        "kind": getattr(r, "kind", ""), "folder": str(folder)})
    _twin_declines(out)
    return out


def _twin_declines(rows: list[dict[str, Any]]) -> None:
    """For each modular run without weight decay: g23's decline by the grok step of its *twin* (the
    same operation, seed, modulus and learning rate with weight decay, when that run grokked):
    ``twin_grok_step`` and ``g23_decline_twin`` (the gap-dynamics claim compares the two at
    matched steps)."""
    from ..detectors.signals import gram_edge_summary
    from ..io.history import read_history

    twins = {(r["op"], r["seed"], r.get("modulus"), r.get("lr")): r["grok_step"] for r in rows
             if r["task"] == "modular" and (r["weight_decay"] or 0) > 0 and r["grok_step"] is not None}
    for r in rows:
        r["twin_grok_step"], r["g23_decline_twin"] = None, None
        if r["task"] != "modular" or (r["weight_decay"] or 0) > 0:
            continue
        t = twins.get((r["op"], r["seed"], r.get("modulus"), r.get("lr")))
        if t is None:
            continue
        ge = gram_edge_summary(read_history(Path(r["folder"]) / "history.jsonl"), t)
        r["twin_grok_step"], r["g23_decline_twin"] = t, _finite(ge.decline)
