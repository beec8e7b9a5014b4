"""Figures: one PNG per study for the trajectory document (``trajectories_<study>.png``), each
kept under :data:`MAX_FIGURE_BYTES`. matplotlib is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .claims import CLAIMED_JL_PCT, JL_D_FACTOR
from .plans import JL_FAMILIES, JL_W, get_scale

FIG_PREFIX = "trajectories_"
MAX_FIGURE_BYTES = 200_000


def save_figure(fig: Any, path: Path) -> None:
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


# ---------------------------------------------------------------------- study 1: the LM
def _lm_ratio_panel(ax: Any, lm: Mapping[str, Any], r0: Mapping[str, Any]) -> None:
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


def _lm_window_panel(ax: Any, r0: Mapping[str, Any]) -> None:
    for key, c in (("all/W5", "tab:blue"), ("all/W10", "tab:orange"), ("all/W20", "tab:green")):
        s = r0["series"].get(key)
        if s:
            ax.plot(s["step"], s["gap_ratio"], lw=1, color=c, label=key.replace("all/", ""))
    ax.set_title(f"gap ratio by window size (seed {r0['summary'].get('seed')})", fontsize=9)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)


def _lm_kstar_panel(ax: Any, r0: Mapping[str, Any]) -> None:
    for key, mk in (("all/W10", "o"), ("trunk/W10", "x")):
        s = r0["series"].get(key)
        if s:
            ax.plot(s["step"], s["k_star"], mk, ms=3, label=key.replace("/W10", "") + " parameters")
    ax.set_title("k* over training (floor rule, W = 10)", fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("k*")
    ax.legend(fontsize=7)


def _lm_lag_panel(ax: Any, r0: Mapping[str, Any], res: Mapping[str, Any]) -> None:
    for W in r0["windows"]:
        c = r0["coupling"].get(f"all/W{W}", {})
        if "lags" in c:
            ax.plot(c["lags"], c["r"], "o-", ms=3, lw=1, label=f"W = {W} (peak lag {c.get('peak_lag')})")
    ax.axhline(0, color="grey", lw=0.6)
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_title("detrended r(gap ratio_t, val loss_t+lag); lag > 0: R leads", fontsize=9)
    ax.set_xlabel(f"lag (samples of {get_scale(res['scale']).lm_every} steps)")
    ax.legend(fontsize=7)


def lm_figure(res: Mapping[str, Any], plt: Any) -> Any:
    """Gap ratio with validation loss, gap ratio by W, k* over training, lagged correlation (None: no LM study)."""
    lm = res.get("lm")
    if not (lm and lm["runs"]):
        return None
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
    r0 = lm["runs"][0]
    _lm_ratio_panel(axes[0, 0], lm, r0)
    _lm_window_panel(axes[0, 1], r0)
    _lm_kstar_panel(axes[1, 0], r0)
    _lm_lag_panel(axes[1, 1], r0, res)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- study 2: JL accuracy
def jl_figure(res: Mapping[str, Any], plt: Any) -> Any:
    """Median and p95 gap-ratio error against d, per trajectory and sketch family (None: no JL study)."""
    jl = res.get("jl")
    if not (jl and jl["rows"]):
        return None
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
        ax.axvline(JL_D_FACTOR * JL_W, color="grey", lw=0.8)
        ax.axhline(CLAIMED_JL_PCT, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sketch dimension d")
        ax.set_ylabel("gap-ratio relative error (%)")
        ax.set_title(f"{traj} trajectory, W = {JL_W} (dashed: {CLAIMED_JL_PCT:g}% claim)", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- study 3: optimizers
def optimizers_figure(res: Mapping[str, Any], plt: Any) -> Any:
    """k* distribution and gap ratio per optimizer, for each task (None: no optimizer study)."""
    opt = res.get("optimizers")
    if not (opt and any(opt.values())):
        return None
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
    return fig


# ---------------------------------------------------------------------- study 4: backbone
def backbone_figure(res: Mapping[str, Any], plt: Any) -> Any:
    """The backbone fraction (latest drift and window mean) per run (None: no backbone study)."""
    bb = res.get("backbone")
    if not bb:
        return None
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
    return fig


#: study → the function drawing its figure, in the order the figures are made
# ---------------------------------------------------------------------- study 5: real text
_ARM_COLOURS = {"adamw": "tab:blue", "muon": "tab:red"}


def _broken(steps: list[Any], vals: list[Any], segments: list[list[int]] | None) -> tuple[list[Any], list[Any]]:
    """``steps``/``vals`` with a None (a break in the line) after each segment's last step."""
    ends = {int(b) for _, b in segments[:-1]} if segments else set()
    xs: list[Any] = []
    ys: list[Any] = []
    for x, y in zip(steps, vals):
        xs.append(x)
        ys.append(y)
        if int(x) in ends:
            xs.append(None)
            ys.append(None)
    return xs, ys


def text_figure(res: Mapping[str, Any], plt: Any) -> Any:
    """Gap ratio (W = 10) of every real-text run, AdamW and Muon; validation loss; k* over training
    of the first seed under each optimizer (None: no real-text study)."""
    text = res.get("text") or {}
    arms = [(o, r) for o in ("adamw", "muon") for r in (text.get(o) or {}).get("runs", [])]
    if not arms:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for o, r in arms:
        s = r["series"].get("all/W10")
        lab = f"{o} s{r['summary'].get('seed')}"
        if s:  # one line per run of consecutive windows, so no line bridges the dropped ones
            steps, vals = _broken(s["step"], s["gap_ratio"], (r.get("segments") or {}).get("W10"))
            axes[0].plot(steps, vals, ".-", ms=2, lw=1, color=_ARM_COLOURS[o], alpha=0.8, label=lab)
        axes[1].plot(r["val"]["step"], r["val"]["loss"], lw=1, color=_ARM_COLOURS[o], alpha=0.8, label=lab)
    mixed: dict[str, Any] = {}
    for o, r in arms:
        mixed.setdefault(o, (r.get("mixed") or {}).get("W10"))
    for o, m in mixed.items():
        if m:  # the first run of each optimizer: the dropped windows that mix spacings
            axes[0].plot(m["step"], m["gap_ratio"], ":", lw=1, color=_ARM_COLOURS[o], alpha=0.4,
                         label=f"{o}: windows mixing spacings (dropped)")
            axes[2].plot(m["step"], m["k_star"], "+", ms=5, color=_ARM_COLOURS[o], alpha=0.4,
                         label=f"{o}: windows mixing spacings (dropped)")
    axes[0].set_title("gap ratio R = σ_k*/σ_k*+1 (W = 10, all parameters)", fontsize=9)
    axes[1].set_title("validation loss (held-out paragraphs)", fontsize=9)
    axes[1].set_yscale("log")
    seen = set()
    for o, r in arms:
        s = r["series"].get("all/W10")
        if o in seen or not s:
            continue
        seen.add(o)
        axes[2].plot(s["step"], s["k_star"], "o" if o == "adamw" else "x", ms=3, color=_ARM_COLOURS[o],
                     label=f"{o} s{r['summary'].get('seed')}")
    axes[2].set_title("k* over training (floor rule, W = 10; 1 = no mode above the floor)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[Mapping[str, Any], Any], Any]] = {
    "lm": lm_figure, "jl": jl_figure, "optimizers": optimizers_figure, "backbone": backbone_figure,
    "text": text_figure}


def make_figures(res: Mapping[str, Any], fig_dir: Path) -> dict[str, str]:
    """One PNG per study in ``fig_dir`` (names ``trajectories_<study>.png``); returns study → file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    for study, draw in FIGURES.items():
        fig = draw(res, plt)
        if fig is not None:
            made[study] = f"{FIG_PREFIX}{study}.png"
            save_figure(fig, fig_dir / made[study])
    return made
