"""The drivers: train what is missing, measure, judge, draw and write.

:func:`reproduce_trajectories` runs the four trajectory studies (:func:`analyse` turns their run
folders into the results record, with the claims); :func:`reproduce_grokking` runs the grokking
suite and the Dyck/SCAN suite; :func:`reproduce_modes` the functional-modes runs. All train
through :func:`spectral_edge.experiments.suite.run_suite` (resumable, one process per run), so a
second call reuses every finished run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..experiments.suite import SuiteRun
from .claims import claims_table
from .documents import render_document
from .figures import make_figures
from .formatting import hms
from .measures import (JL_CACHE_FILES, backbone_study, grokking_rows, jl_records, lm_study, optimizer_study,
                       read_summary, text_study)
from .plans import STUDIES, Scale, StudyPlan, check_out_and_doc, grokking_plan, study_plan


# ---------------------------------------------------------------------- trajectory studies
def analyse(out: str | Path, plan: StudyPlan, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every study of ``plan`` on the run folders in ``out`` → one JSON-safe record (with the claims)."""
    out = Path(out)
    res: dict[str, Any] = {"scale": plan.scale.name, "studies": list(plan.uses), "timing": {}}
    fns: dict[str, Callable[[], Any]] = {
        "lm": lambda: lm_study(out, plan),
        "jl": lambda: jl_records(out, plan, log),
        "optimizers": lambda: optimizer_study(out, plan),
        "backbone": lambda: backbone_study(out, plan),
        "text": lambda: text_study(out, plan),
    }
    for st in plan.uses:
        t0 = time.perf_counter()
        if log:
            log(f"analysing study {st}")
        res[st] = fns[st]()
        secs = [read_summary(out / n).get("wall_seconds") for n in plan.uses[st]]
        # the analysis time is reported for the JL study only (cached with it: the others take seconds,
        # and a page recomputed from the evidence must not depend on how long this call took)
        res["timing"][st] = {"n_runs": len(plan.uses[st]), "runs_seconds": sum(s for s in secs if s),
                             "analysis_seconds": res[st].get("seconds") if st == "jl" else None,
                             "this_call_seconds": time.perf_counter() - t0}
    res["claims"] = [c.__dict__ for c in claims_table(res)]
    return res


def reproduce_trajectories(out: str | Path, *, jobs: int = 2, scale: str | Scale = "full",
                           studies: Sequence[str] = STUDIES, doc: str | Path | None = None,
                           train: bool = True, evidence: str | Path | None = None,
                           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the missing runs of ``studies`` (resumable, ``jobs`` processes), analyse them, and write
    ``out/results.json`` and the document ``doc`` (default ``out/trajectories.md``) with its figures
    in ``<doc folder>/figures/``. ``evidence``: also copy each run's compact files and the JL
    cache there (the checkpoints the JL study reads stay behind). Returns the results record."""
    import torch

    from ..experiments.suite import run_suite

    out = Path(out)
    plan = study_plan(scale, studies)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if train:
        def on_event(kind: str, r: SuiteRun, s: Mapping[str, Any] | None) -> None:
            if log:
                extra = f" ({hms(s.get('wall_seconds'))})" if s else ""
                log(f"{kind} {r.name}{extra}")

        run_suite(plan.runs, out, jobs=jobs, on_event=on_event)
    missing = [r.name for r in plan.runs if not (out / r.name / "summary.json").is_file()]
    if missing:
        raise ConfigError(f"runs did not finish: {', '.join(missing)} (see their run.log in {out})")
    res = analyse(out, plan, log)
    if evidence is not None:
        copy_evidence(out, Path(evidence), [r.name for r in plan.runs], "trajectories",
                      files=[f"jl/{f}" for f in JL_CACHE_FILES])
    res["out_name"] = str(out)
    res["env"] = {"jobs": int(jobs), "cpus": os.cpu_count(), "torch": torch.__version__.split("+")[0]}
    doc = Path(doc) if doc is not None else out / "trajectories.md"
    figures = make_figures(res, doc.parent / "figures")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render_document(res, figures))
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    res["doc"], res["figures"] = str(doc), figures
    return res


# ---------------------------------------------------------------------- grokking
#: what a run folder keeps as evidence: no weights, tens of KB per run
EVIDENCE_FILES = ("config.json", "summary.json", "eval.csv", "history.jsonl")


def copy_evidence(out: Path, dest: Path, names: Sequence[str], study: str = "grokking",
                  extra: str | None = None, files: Sequence[str] = ()) -> list[str]:
    """Copy the compact files (:data:`EVIDENCE_FILES`) of the finished runs ``names`` from ``out``
    to ``dest/<name>/`` (a run's existing evidence there is replaced: it is a copy), with a README
    naming the command (``spectral-edge reproduce <study>``) that recomputes the document from
    them; ``extra``: a folder of ``out`` whose files of those runs (``<run>--*``) go along (the
    modes cache); ``files``: paths under ``out`` copied as they are when present (the JL cache).
    Returns the runs copied. Nothing is copied onto itself (``dest`` = ``out``)."""
    if Path(dest).resolve() == Path(out).resolve():
        return []
    import shutil

    from ..experiments.checkpoint import write_text_file

    done = [n for n in names if (out / n / "summary.json").is_file()]
    _check_evidence_target(out, Path(dest), done)  # everything is checked before the first write
    copied = []
    for n in done:
        src = out / n
        (dest / n).mkdir(parents=True, exist_ok=True)
        for f in EVIDENCE_FILES:
            if (src / f).is_file():
                shutil.copyfile(src / f, dest / n / (f + ".tmp"))
                os.replace(dest / n / (f + ".tmp"), dest / n / f)
        copied.append(n)
    if extra is not None and (out / extra).is_dir():
        (dest / extra).mkdir(parents=True, exist_ok=True)
        for f in sorted((out / extra).iterdir()):
            if f.is_file() and f.name.split("--", 1)[0] in copied:
                shutil.copyfile(f, dest / extra / (f.name + ".tmp"))
                os.replace(dest / extra / (f.name + ".tmp"), dest / extra / f.name)
    for rel in files:
        if (out / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / rel, dest / (rel + ".tmp"))
            os.replace(dest / (rel + ".tmp"), dest / rel)
    write_text_file(dest / "README.md", EVIDENCE_README + " `spectral-edge reproduce " + study + " --out "
                    "<a copy of this folder> --no-train` recomputes every table from them.\n")
    return copied


#: the first sentence of the README an evidence folder gets (a README without it is the user's)
EVIDENCE_README = ("Compact outputs of the runs behind the document (config, summary, evaluation curve and monitor "
                   "history of each run; no weights).")


def _check_evidence_target(out: Path, dest: Path, names: Sequence[str]) -> None:
    """Refuse (one line) an ``--evidence`` folder that holds anything but earlier evidence of the
    same runs: a run folder (weights, logs), another run's evidence (a different config.json) or
    a README of its own. Nothing is written before this check."""
    where = f"--evidence {dest}"
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{where}: is a file; give a folder for the evidence")
    readme = dest / "README.md"
    if readme.is_file() and not readme.read_text(errors="replace").startswith(EVIDENCE_README):
        raise ConfigError(f"{where}: {readme} is not an evidence README; refusing to write over it (choose an "
                          "empty or evidence folder)")
    for n in names:
        d = dest / n
        if not d.exists():
            continue
        if not d.is_dir():
            raise ConfigError(f"{where}: {d} is a file, not a run's evidence; refusing to write over it")
        foreign = sorted(p.name for p in d.iterdir() if p.name not in EVIDENCE_FILES)
        if foreign:
            raise ConfigError(f"{where}: {d} holds {foreign[0]}, which evidence never does (a run folder?); "
                              "refusing to write over it")
        try:
            same = json.loads((d / "config.json").read_text()) == json.loads((out / n / "config.json").read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            same = False
        if not same:
            raise ConfigError(f"{where}: {d / 'config.json'} is another run's config; refusing to replace its "
                              "evidence (remove it, or choose another folder)")


def reproduce_grokking(out: str | Path, doc: str | Path, *, jobs: int = 2, quick: bool = False,
                       sweep: bool = True, train: bool = True, evidence: str | Path | None = None,
                       on_event: Callable[..., None] | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Run (or reuse) the early-warning suite and the lead-time runs under ``out``, score every
    alarm under the protocol (:mod:`.alarm_study`), then write ``doc``, ``out/grokking_runs.csv``
    and ``out/alarm_study.json``. ``quick`` shrinks everything to check the pipeline end to end.
    ``train=False`` trains nothing and documents the finished runs (the document lists the rest).
    ``evidence``: also copy each finished run's compact files there (:func:`copy_evidence`)."""
    from ..experiments.checkpoint import write_text_file
    from ..experiments.suite import run_suite
    from .alarm_documents import write_grokking_doc
    from .alarm_study import alarm_study
    from .measures import DETECTORS

    out, doc = check_out_and_doc(out, doc)
    runs, lead = grokking_plan(quick, sweep)
    if train:
        run_suite(runs + lead, out, jobs=jobs, on_event=on_event)
    rows = grokking_rows(out, runs + lead)
    if not rows:
        raise ConfigError(f"no finished runs in {out} (a run is finished when its folder has a summary.json)")
    study = alarm_study(out, runs, lead, log=log)
    import pandas as pd

    pd.DataFrame([{k: v for k, v in r.items() if k != "folder"} for r in rows]).to_csv(out / "grokking_runs.csv",
                                                                                       index=False)
    light = {**study, "families": {f: {k: v for k, v in rec.items() if k != "warnings"}
                                   for f, rec in study["families"].items()}}
    write_text_file(out / "alarm_study.json", json.dumps(light, indent=1, default=str))
    if evidence is not None:
        copy_evidence(out, Path(evidence), [r.name for r in runs + lead])
    return write_grokking_doc(study, rows, list(DETECTORS), doc, quick=quick)


# ---------------------------------------------------------------------- functional modes
def reproduce_modes(out: str | Path, doc: str | Path, *, jobs: int = 2, quick: bool = False, train: bool = True,
                    evidence: str | Path | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or reuse) the functional-modes runs (:func:`~.plans.modes_plan`) under ``out``, compute
    their modes and the alternative choices (:mod:`.modes_measures`), judge the claims
    (:mod:`.modes_claims`) and write ``doc`` with its figures in ``<doc folder>/figures/`` and
    ``out/modes_results.json``. ``train=False`` trains nothing and documents the finished runs
    (the document names the missing ones). ``evidence``: also copy each finished run's compact
    files and its cached analyses there. Returns the record (with ``doc``, ``figures``,
    ``missing``)."""
    import torch

    from .plans import modes_plan

    out, doc = check_out_and_doc(out, doc)
    runs = modes_plan(quick)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the analyses run beside the training processes (one thread each)
    try:
        return _modes_pipeline(out, doc, runs, jobs=jobs, quick=quick, train=train, evidence=evidence, log=log)
    finally:
        torch.set_num_threads(threads)


def _finished(folder: Path, run: SuiteRun) -> bool:
    """The run's folder holds a finished run of this config: a summary.json, and a config.json that
    differs from it in no key (a key missing from the file meaning null, as for ``--resume``)."""
    from ..experiments.checkpoint import config_differences

    try:
        saved = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    wanted = json.loads(json.dumps(run.config.to_dict()))
    return (folder / "summary.json").is_file() and isinstance(saved, dict) and not config_differences(saved, wanted)


def _modes_pipeline(out: Path, doc: Path, runs: Sequence[SuiteRun], *, jobs: int, quick: bool, train: bool,
                    evidence: str | Path | None, log: Callable[[str], None] | None) -> dict[str, Any]:
    import torch

    from ..experiments.checkpoint import write_text_file
    from ..experiments.suite import run_suite
    from .modes_claims import choice_rows, modes_claims_table
    from .modes_documents import modes_figures, render_modes_document
    from .modes_measures import CACHE, modes_study

    if train:
        def on_event(kind: str, r: SuiteRun, s: Mapping[str, Any] | None) -> None:
            if log:
                extra = f" (grok step {s.get('grok_step')}, {hms(s.get('wall_seconds'))})" if s else ""
                log(f"{kind} {r.name}{extra}")

        run_suite(runs, out, jobs=jobs, on_event=on_event)
    done = [r for r in runs if _finished(out / r.name, r)]
    missing = [r.name for r in runs if r not in done]
    if not done:
        raise ConfigError(f"no finished runs in {out} (a run is finished when its folder has a summary.json and "
                          "the plan's config.json); run without --no-train to train them")
    rec = modes_study(out, done, quick=quick, log=log)
    rec["missing"] = missing
    rec["claims"] = [c.__dict__ for c in modes_claims_table(rec)]
    rec["choice_rows"] = choice_rows(rec)
    if evidence is not None:
        copy_evidence(out, Path(evidence), [r.name for r in done], "modes", extra=CACHE)
    env = {"out": str(out), "jobs": int(jobs), "cpus": os.cpu_count(), "torch": torch.__version__.split("+")[0]}
    figures = modes_figures(rec, doc.parent / "figures")
    doc.parent.mkdir(parents=True, exist_ok=True)
    write_text_file(doc, render_modes_document(rec, figures, missing=missing, env=env))
    light = {k: v for k, v in rec.items() if k != "heatmap"}
    write_text_file(out / "modes_results.json", json.dumps({**light, "env": env, "figures": figures}, indent=1,
                                                            default=str))
    return {**rec, "doc": str(doc), "figures": figures, "env": env}
