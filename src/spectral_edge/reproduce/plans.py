"""Plans: what to train. The studies' scales, run configs, run names and the run list of each
study (:func:`study_plan`), the grokking suite as :func:`reproduce_grokking` runs it
(:func:`grokking_plan`), and the functional-modes runs (:func:`modes_plan`).

Nothing here reads a run or imports numpy: building a plan costs only the experiment configs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError
from ..experiments.config import RunConfig
from ..experiments.suite import SuiteRun, grokking_suite

SCALES = ("full", "quick", "tiny")
STUDIES = ("lm", "jl", "optimizers", "backbone", "text")
#: the real-text study's optimizers (each with every seed of ``Scale.text_seeds``)
TEXT_OPTIMIZERS = ("adamw", "muon")
#: seconds per training step of candidate real-text models, measured on this project's 2-core CPU
#: machine to choose the study's size (one torch thread, the other core busy; KJV text, all
#: parameters monitored exactly every 10 steps, W = 10; 60 steps each)
TEXT_SIZE_PROBE = {"4×128 (0.81M, context 64)": 0.13, "4×256 (3.2M, context 128)": 0.69,
                   "6×256 (4.8M, context 128)": 1.04, "8×384 (14.3M, context 128)": 2.66}
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
    # the real-text study (a larger LM on the KJV text, sampled densely early: a cadence schedule)
    text_model: Mapping[str, Any] = field(default_factory=dict)
    text_task: Mapping[str, Any] = field(default_factory=dict)
    text_batch: int = 32
    text_steps: int = 1600
    text_every: Any = ((320, 10), (None, 80))  # monitor and evaluation cadence (int or schedule)
    text_warmup: int = 100
    text_seeds: tuple[int, ...] = LM_SEEDS


SCALE_PRESETS: dict[str, Scale] = {
    "full": Scale("full", lm_model={"n_layer": 4, "d_model": 128, "n_head": 4}, lm_task={"block_size": 64},
                  lm_batch=32, lm_steps=3000, lm_every=50, lm_warmup=200, lm_backbone_every=100,
                  mod_modulus=97, mod_model={}, mod_steps=5000, mod_every=100, mod_ckpt_every=25,
                  jl_mod_max_step=2000, jl_factors=JL_FACTORS, jl_seeds=5, lm_seeds=LM_SEEDS,
                  # 4.8M parameters (6× the LM above), 1600 steps: 2 optimizers × 3 seeds in ~1 h 45 min on 2 cores
                  # (1.3 s a step, two runs side by side; see docs/trajectories.md §6)
                  text_model={"n_layer": 6, "d_model": 256, "n_head": 4}, text_task={"corpus": "kjv", "block_size": 128},
                  text_batch=32, text_steps=1600, text_every=((320, 10), (None, 80)), text_warmup=100),
    "quick": Scale("quick", lm_model={"n_layer": 2, "d_model": 64, "n_head": 4}, lm_task={"block_size": 64},
                   lm_batch=16, lm_steps=300, lm_every=10, lm_warmup=20, lm_backbone_every=20,
                   mod_modulus=97, mod_model={}, mod_steps=400, mod_every=10, mod_ckpt_every=10,
                   jl_mod_max_step=400, jl_factors=(2, 10, 50), jl_seeds=2, lm_seeds=(42, 137), n_perm=199,
                   text_model={"n_layer": 2, "d_model": 64, "n_head": 4},
                   text_task={"corpus": "kjv", "block_size": 64, "max_chars": 400_000}, text_batch=16, text_steps=300,
                   text_every=((60, 10), (None, 30)), text_warmup=20, text_seeds=(42, 137)),
    "tiny": Scale("tiny", lm_model={"n_layer": 1, "d_model": 16, "n_head": 2},
                  lm_task={"block_size": 16, "n_stories": 40}, lm_batch=4, lm_steps=60, lm_every=2, lm_warmup=0,
                  lm_backbone_every=4, mod_modulus=11, mod_model={"d_model": 16, "n_heads": 2, "d_ff": 32},
                  mod_steps=60, mod_every=2, mod_ckpt_every=2, jl_mod_max_step=60, jl_factors=(2, 10),
                  jl_seeds=1, lm_seeds=(42,), n_perm=99,
                  text_model={"n_layer": 1, "d_model": 16, "n_head": 2},
                  text_task={"corpus": "kjv", "block_size": 16, "max_chars": 20_000}, text_batch=4, text_steps=60,
                  text_every=((20, 2), (None, 5)), text_warmup=0, text_seeds=(42,)),
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


def check_out_and_doc(out: Any, doc: Any) -> tuple[Any, Any]:
    """``(Path(out), Path(doc))`` of a reproduction, refused (one line) when ``out`` is a file or
    ``doc`` is not a Markdown file name."""
    from pathlib import Path

    out, doc = Path(out), Path(doc)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a folder for the runs")
    if doc.suffix.lower() != ".md":
        raise ConfigError(f"--doc {doc}: the document is Markdown; give a file name ending in .md")
    if doc.is_dir():
        raise ConfigError(f"--doc {doc}: is a folder; give a file name ending in .md")
    return out, doc


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


def text_config(sc: Scale, seed: int = 42, optimizer: str = "adamw") -> RunConfig:
    """The real-text study's run: the LM study's run at ``sc.text_*`` sizes on a packaged text, the
    monitor and the evaluations on the ``text_every`` schedule (dense early, so that the rise of
    the loss curve falls inside the windows), no checkpoints."""
    return replace(lm_config(sc, seed, optimizer), model=dict(sc.text_model), task_options=dict(sc.text_task),
                   batch_size=sc.text_batch, warmup_steps=sc.text_warmup, steps=sc.text_steps,
                   eval_every=sc.text_every, every=sc.text_every, checkpoint_every=0)


def modular_config(sc: Scale, optimizer: str = "adamw", seed: int = 42, checkpoints: bool = False) -> RunConfig:
    """The modular reference run (add mod p, attention weights monitored, no early stop)."""
    return RunConfig(
        task="modular", op="add", modulus=sc.mod_modulus, seed=int(seed), model=dict(sc.mod_model),
        optimizer=optimizer, steps=sc.mod_steps, eval_every=sc.mod_every, early_stop=False, every=sc.mod_every,
        windows=sc.windows, sketch="exact", selection="attention",
        checkpoint_every=sc.mod_ckpt_every if checkpoints else 0, threads=1,
        **OPTIMIZER_SETTINGS["modular"][optimizer])



def beta2_label(b: float) -> str:
    """β2 as it appears in run names and record keys (``0.999``, ``0.9``)."""
    return f"{b:g}"


def lm_name(optimizer: str = "adamw", seed: int = 42, beta2: float | None = None) -> str:
    if optimizer == "adamw" and beta2 is not None and beta2 != BASE_BETA2:
        return f"lm-adamw-b2_{beta2_label(beta2)}-s{seed}"
    return f"lm-{optimizer}-s{seed}"


def text_name(optimizer: str = "adamw", seed: int = 42) -> str:
    return f"text-{optimizer}-s{seed}"


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
    if "text" in studies:  # seed by seed, the two optimizers side by side (a cut-short study stays paired)
        for s in sc.text_seeds:
            for opt in TEXT_OPTIMIZERS:
                add("text", text_name(opt, s), text_config(sc, s, opt), "text")
    return StudyPlan(sc, tuple(runs.values()), {k: tuple(v) for k, v in uses.items()})


# ---------------------------------------------------------------------- the grokking suite
def quick_grokking_config(cfg: Any) -> Any:
    """A grokking-suite config shrunk for the ``--quick`` pipeline check (p = 23 or 29, a d = 32
    model, 300 steps, sparse probes)."""
    return replace(cfg, modulus=23 if cfg.modulus == 97 else 29, steps=300, eval_every=50, every=25, windows=(3,),
                   model={"d_model": 32, "d_ff": 64, "n_heads": 2}, stop_margin=50,
                   probes={"manifold": {"every": 25}, "defect": {"every": 25, "n_samples": 2, "batch_size": 64}})


#: the ``--quick`` check's runs: two seeds of add and of x³+xy (so that both cross-validations have
#: two groups), one final-check grokking run and one final-check control
QUICK_RUNS = ("add-s42", "add-s137", "x3xy-s42", "x3xy-s137", "final-add-p89-s7", "final-x3xy-p89-s7")


def grokking_plan(quick: bool = False, sweep: bool = True) -> tuple[list[SuiteRun], list[SuiteRun]]:
    """The early-warning runs that :func:`reproduce_grokking` trains: the alarm suite
    (:func:`~spectral_edge.experiments.suite.alarm_suite`) and, with ``sweep``, the lead-time
    runs (:func:`~spectral_edge.experiments.suite.lead_time_suite`: slower learning rates and Dyck
    with the probes dense early) and the probe-claims runs
    (:func:`~spectral_edge.experiments.suite.probe_claims_suite`). ``quick``: :data:`QUICK_RUNS`
    shrunk (a pipeline check)."""
    from ..experiments.suite import alarm_suite, lead_time_suite, probe_claims_suite

    runs = alarm_suite()
    if quick:
        return [replace(r, config=quick_grokking_config(r.config)) for r in runs if r.name in QUICK_RUNS], []
    return runs, (lead_time_suite() + probe_claims_suite() if sweep else [])


# ---------------------------------------------------------------------- functional modes
#: the tri-task model of the "2.3×" claim (METHODS §7): one shared trunk, one head per operation
MULTITASK_OPS = "add,mul,x2y2"
#: its step budget (early stop 1000 steps after every task's test accuracy reaches 0.9)
MULTITASK_STEPS = 20_000
#: the run whose alternative choices (uncentred, W, ε) are recomputed, one per operation
CHOICE_SEED = 42
#: the ``--quick`` pipeline check: modulus, model and steps (nothing groks: the numbers mean nothing)
MODES_QUICK = {"modulus": 23, "model": {"d_model": 32, "n_heads": 2, "d_ff": 64}, "steps": 150, "every": 5,
               "eval_every": 50}


def multitask_name(seed: int = CHOICE_SEED) -> str:
    """The run folder of the tri-task model."""
    return f"multitask-s{seed}"


def modes_plan(quick: bool = False) -> list[SuiteRun]:
    """The runs :func:`reproduce_modes` reads: the tri-task model first (the longest), then the
    grokking suite's twelve runs (add, sub, mul, x²+y² × seeds 42, 137, 2024 at p = 97, weight
    decay 1; the same configs as :func:`grokking_plan`, so a folder of ``reproduce grokking``
    serves both once its runs keep snapshots). ``quick``: p = 23, a d = 32 model, seed 42 only,
    150 steps, no probes (a pipeline check)."""
    from ..experiments.suite import GROKKING_OPS

    seeds = (CHOICE_SEED,) if quick else (42, 137, 2024)
    runs = grokking_suite(seeds=seeds, ops=GROKKING_OPS, controls=False)
    mt = RunConfig(task="multitask", op=MULTITASK_OPS, modulus=97, seed=CHOICE_SEED, steps=MULTITASK_STEPS, threads=1)
    runs.insert(0, SuiteRun(multitask_name(), "grok", mt))
    if quick:
        q = MODES_QUICK
        runs = [SuiteRun(r.name, r.role, replace(r.config, modulus=q["modulus"], model=dict(q["model"]),
                                                 steps=q["steps"], every=q["every"], eval_every=q["eval_every"],
                                                 early_stop=False, probes={})) for r in runs]
    return runs
