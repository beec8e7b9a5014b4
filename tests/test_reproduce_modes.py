"""``spectral-edge reproduce modes``: the quick pipeline end to end through the CLI (runs →
modes → claims → document and figures), its reuse of finished runs and cached analyses, each
claim's verdict flipping on hand-made records at the thresholds its rule states, the choice
rows, and the command's bad inputs (the corpus harness of badinput.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from badinput import Case, check
from badinput import run as cli

from spectral_edge.reproduce import modes_claims as mc
from spectral_edge.reproduce import modes_documents as md
from spectral_edge.reproduce.plans import modes_plan

VERDICTS = {mc.REPRODUCED, mc.PARTLY, mc.NOT_REPRODUCED, mc.NOT_TESTABLE}


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick pipeline once through the CLI: (runs folder, document, the --json output)."""
    pytest.importorskip("matplotlib")
    base = tmp_path_factory.mktemp("reproduce-modes")
    out, doc = base / "runs", base / "doc" / "modes.md"
    r = cli(["reproduce", "modes", "--out", out, "--quick", "--doc", doc, "--json", "--jobs", "2"])
    assert r.exit_code == 0, r.output
    return out, doc, json.loads(r.stdout)


def test_quick_pipeline_writes_the_document_with_computed_claims(quick):
    out, doc, got = quick
    names = [r.name for r in modes_plan(quick=True)]
    assert all((out / n / "snapshots.safetensors").is_file() for n in names)
    assert got["doc"] == str(doc) and got["missing"] == [] and got["failed"] == []
    assert [c["key"] for c in got["claims"]] == [r.key for r in mc.MODES_CLAIMS]
    assert all(c["verdict"] in VERDICTS for c in got["claims"])
    # every run counts in the quick check, so every claim is measured (none "not testable")
    assert all(c["verdict"] != mc.NOT_TESTABLE for c in got["claims"]), got["claims"]
    text = doc.read_text()
    assert "Quick pipeline check" in text and mc.modes_rules_text() in text
    for c in got["claims"]:
        assert f"**{c['verdict']}** — {c['why']}" in text
    for n in names:
        assert f"| {n} |" in text
    # the choice rows: every claim under the default and each alternative
    assert [r["key"] for r in got["choices"]] == [r.key for r in mc.MODES_CLAIMS if r.key not in mc.NOT_PER_CHOICE]
    assert set(got["choices"][0]["cells"]) == {"default", "uncentred", "W10", "eps_x0.2", "eps_x4"}
    assert "## Where a claim depends on a choice" in text
    for f in got["figures"].values():
        assert (doc.parent / "figures" / f["file"]).read_bytes()[:4] == b"\x89PNG"
        assert f["caption"] in text
    saved = json.loads((out / "modes_results.json").read_text())
    assert saved["claims"] == got["claims"]


def test_a_second_call_trains_nothing_and_reuses_the_analyses(quick, tmp_path):
    out, doc, got = quick
    summaries = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    cache = {p: p.stat().st_mtime_ns for p in (out / "modes_cache").iterdir()}
    doc2 = tmp_path / "again.md"
    r = cli(["reproduce", "modes", "--out", out, "--quick", "--doc", doc2, "--json"])
    assert r.exit_code == 0, r.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")} == summaries
    assert {p: p.stat().st_mtime_ns for p in (out / "modes_cache").iterdir()} == cache
    assert json.loads(r.stdout)["claims"] == got["claims"]


def test_no_train_documents_the_finished_runs_and_names_the_missing(quick, tmp_path):
    out, _, _ = quick
    part = tmp_path / "part"
    for n in ("add-s42", "mul-s42", "x2y2-s42"):
        (part / n).mkdir(parents=True)
        for f in (out / n).iterdir():
            if f.is_file():
                (part / n / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((part / "x2y2-s42" / "config.json").read_text())  # a finished run of another config
    (part / "x2y2-s42" / "config.json").write_text(json.dumps({**cfg, "lr": 0.01}))
    doc = tmp_path / "m.md"
    r = cli(["reproduce", "modes", "--out", part, "--quick", "--doc", doc, "--no-train", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert set(got["missing"]) == {"multitask-s42", "sub-s42", "x2y2-s42"}
    verdict = {c["key"]: c["verdict"] for c in got["claims"]}
    assert verdict["subtraction"] == verdict["x2y2"] == verdict["multitask"] == mc.NOT_TESTABLE
    assert verdict["addition"] != mc.NOT_TESTABLE and verdict["multiplication"] != mc.NOT_TESTABLE
    text = doc.read_text()
    assert "holding another config) when this page was written (3 runs" in text and "`sub-s42`" in text
    assert not (part / "sub-s42").exists()


# ---------------------------------------------------------------------- the claims on hand-made records
def _dir(role, k, bases, r2=None):
    return {"k": k, "role": role, "bases": bases, **({"r2": r2} if r2 else {})}


def _run(op, seed=42, acc=1.0, summary=None, directions=()):
    return {"run": f"{op}-s{seed}", "op": op, "seed": seed, "final_test_acc": acc,
            "modes": {"summary": summary or {}, "directions": list(directions)}}


def _rec(*runs, min_acc=0.95):
    return {"runs": list(runs), "min_acc": min_acc, "modulus": 97, "choice_seed": 42, "choices": {}}


def test_addition_claim_counts_seeds_with_one_shared_omega():
    def add(seed, om, acc=1.0):
        return _run("add", seed, acc, summary={"addition": {"omegas": om, "one_omega": len(set(om)) == 1}})

    assert mc.addition_claim(_rec(add(42, [26, 26, 26]), add(137, [9, 9, 9]))).verdict == mc.REPRODUCED
    c = mc.addition_claim(_rec(add(42, [28, 28, 48]), add(137, [9, 9, 9])))
    assert c.verdict == mc.PARTLY and c.why.startswith("1/2") and "28, 28, 48" in c.ours
    assert mc.addition_claim(_rec(add(42, [28, 28, 48]))).verdict == mc.NOT_REPRODUCED
    # a model that did not generalise does not count
    c = mc.addition_claim(_rec(add(42, [26, 26, 26]), add(137, [1, 2, 3], acc=0.3)))
    assert c.verdict == mc.REPRODUCED and c.why.startswith("1/1") and "137" not in c.our_setup
    c = mc.addition_claim(_rec(add(42, [1, 1, 1], acc=0.3)))
    assert c.verdict == mc.NOT_TESTABLE and "add-s42" in c.why
    assert mc.addition_claim(_rec(add(42, [1, 1, 1], acc=0.3), min_acc=0.0)).verdict == mc.REPRODUCED


def _mul(ratio, seed=42):
    return _run("mul", seed, summary={"multiplication": {"dlog_F_mean": 0.5, "mul_F_mean": 0.5 / ratio,
                                                         "dlog_over_mul": ratio, "dlog_omegas": [29, 29, 29]}})


def test_multiplication_claim_flips_at_its_factor_and_prints_it():
    k, c0 = mc.RATIO_FACTOR, mc.MUL_CLAIM
    got = [mc.multiplication_claim(_rec(_mul(x))).verdict for x in (c0 * k * 0.99, c0 * k * 1.01, c0 / k * 1.01,
                                                                    c0 / k * 0.99, 0.9)]
    assert got == [mc.REPRODUCED, mc.PARTLY, mc.REPRODUCED, mc.PARTLY, mc.NOT_REPRODUCED]
    rule = mc.multiplication_claim.rule_text
    assert f"×/÷ {k}" in rule and str(c0) in rule and rule in mc.modes_rules_text()


def test_subtraction_claim_needs_several_and_few_modes():
    def sub(omegas, modes, seed=42):
        d = _dir("edge", 1, {"sub": {"period": 97, "omega": omegas[0], "F": 0.3}})
        return _run("sub", seed, summary={"subtraction": {"omegas": omegas, "n_omegas": len(set(omegas)),
                                                          "modes_mean": modes}}, directions=[d])

    small = mc.SMALL_FAMILY_FRAC * 48
    assert mc.subtraction_claim(_rec(sub([3, 5, 7], small - 0.1))).verdict == mc.REPRODUCED
    assert mc.subtraction_claim(_rec(sub([3, 5, 7], small + 0.1))).verdict == mc.NOT_REPRODUCED
    assert mc.subtraction_claim(_rec(sub([3, 3, 3], 1.2))).verdict == mc.NOT_REPRODUCED  # one mode, not a family
    assert mc.subtraction_claim(_rec(sub([3, 5, 7], 4.0), sub([3, 3, 3], 1.0, 137))).verdict == mc.PARTLY


def _x2y2(gain, edge_added, random_added, seed=42):
    comb = 0.2
    rnd = [_dir("random", k, {}, r2={"combined": 0.1, "full": 0.1 + random_added}) for k in (1, 2)]
    return _run("x2y2", seed, summary={"x2y2": {"r2": {"combined": comb, "full": comb * gain}, "cross_gain": gain,
                                                "cross_added": edge_added}}, directions=rnd)


def test_x2y2_claim_needs_the_gain_and_more_than_random_directions():
    assert mc.x2y2_claim(_rec(_x2y2(4.2, 0.6, 0.1))).verdict == mc.REPRODUCED
    assert mc.x2y2_claim(_rec(_x2y2(1.3, 0.06, 0.1))).verdict == mc.NOT_REPRODUCED
    assert mc.x2y2_claim(_rec(_x2y2(1.3, 0.2, 0.1))).verdict == mc.PARTLY  # adds more than noise, not 4×
    assert mc.x2y2_claim(_rec(_x2y2(4.2, 0.05, 0.1))).verdict == mc.PARTLY  # 4×, but random directions gain more


def _shares(w, share, n=48):
    rest = (1 - share) / (n - 1)
    return [share if i == w - 1 else rest for i in range(n)]


def _multitask_pair(tri, single, w=26):
    t = _run("multitask", summary={"multitask": {"add_omega": w, "add_share_at_omega": tri, "ops": ["add", "mul", "x2y2"],
                                                 "random_share_at_omega": 0.05}})
    s = _run("x2y2", summary={"x2y2": {"add_omegas": [w, 3, 3]}},
             directions=[_dir("edge", k, {"add": {"shares": _shares(w, single)}}) for k in (1, 2, 3)])
    return t, s


def test_multitask_claim_divides_the_tri_task_share_by_the_single_task_one():
    c = mc.multitask_claim(_rec(*_multitask_pair(0.46, 0.2)))
    assert c.verdict == mc.REPRODUCED and "2.30×" in c.why
    assert mc.multitask_claim(_rec(*_multitask_pair(0.8, 0.2))).verdict == mc.PARTLY  # 4×: inherits, more so
    assert mc.multitask_claim(_rec(*_multitask_pair(0.1, 0.2))).verdict == mc.NOT_REPRODUCED
    t, _ = _multitask_pair(0.46, 0.2)
    assert mc.multitask_claim(_rec(t)).verdict == mc.NOT_TESTABLE  # no single-task run to compare with
    assert mc.multitask_claim(_rec()).verdict == mc.NOT_TESTABLE


def _nulls_run(op, edge, rmean, rmax, seed=42):
    return _run(op, seed, summary={"basis": "add", "edge": {"F_mean": edge},
                                   "nulls": {"random_F_mean": rmean, "random_F_max": rmax, "bulk_F_mean": 0.1}})


def test_nulls_claim_asks_for_the_edge_above_every_random_direction():
    # the seed-42 addition run of this project: edge 0.292, random 0.290 (max 0.372)
    honest = _nulls_run("add", 0.292, 0.290, 0.372)
    c = mc.nulls_claim(_rec(honest))
    assert c.verdict == mc.PARTLY and "0.292" in c.ours and "0.290" in c.ours
    assert mc.nulls_claim(_rec(_nulls_run("add", 0.5, 0.29, 0.37))).verdict == mc.REPRODUCED
    assert mc.nulls_claim(_rec(_nulls_run("add", 0.2, 0.29, 0.37))).verdict == mc.NOT_REPRODUCED


def test_choice_rows_say_which_choice_changes_a_verdict():
    base = _rec(_mul(5.9), _mul(20.0, seed=137))
    base["choices"] = {"W10": {"label": "W = 10", "runs": [_mul(20.0)]}, "eps_x4": {"label": "ε × 4",
                                                                                     "runs": [_mul(6.5)]}}
    rows = {r["key"]: r for r in mc.choice_rows(base)}
    mul = rows["multiplication"]
    assert mul["cells"]["default"][0] == mc.REPRODUCED  # the choice seed's default run alone: 5.9×
    assert mul["cells"]["W10"][0] == mc.PARTLY and mul["cells"]["eps_x4"][0] == mc.REPRODUCED
    assert mul["depends"] == ["W10"]
    assert rows["addition"]["depends"] == []  # not testable under every choice alike


def test_the_document_prints_what_the_claims_computed():
    rec = _rec(_mul(5.9))
    rec.update(quick=False, failed=[], claims=[c.__dict__ for c in mc.modes_claims_table(rec)],
               choice_rows=mc.choice_rows(rec))
    text = md.render_modes_document(rec, {}, missing=["add-s42"])
    assert "| multiplication: dlog-basis F" in text and "**reproduced** — mean ratio 5.9×" in text
    assert "**not testable here**" in text and "`add-s42`" in text
    flipped = copy.deepcopy(rec)
    flipped["runs"] = [_mul(1.2)]
    flipped["claims"] = [c.__dict__ for c in mc.modes_claims_table(flipped)]
    assert "**partly** — mean ratio 1.2×" in md.render_modes_document(flipped, {})


# ---------------------------------------------------------------------- bad inputs
def _file(d: Path) -> Path:
    (d / "runs").write_text("not a folder\n")
    return d / "runs"


CASES = [
    Case("out-is-a-file", lambda d: ["reproduce", "modes", "--out", _file(d), "--quick", "--doc", d / "m.md"],
         expect=["--out", "runs", "is a file"]),
    Case("no-finished-runs", lambda d: ["reproduce", "modes", "--out", d / "empty", "--no-train", "--quick",
                                        "--doc", d / "m.md"], expect=["no finished runs", "empty"]),
    Case("doc-not-markdown", lambda d: ["reproduce", "modes", "--out", d / "runs", "--quick", "--doc", d / "m.html"],
         expect=["--doc", "m.html", ".md"]),
    Case("doc-is-a-folder", lambda d: ["reproduce", "modes", "--out", d / "runs", "--quick", "--doc",
                                       (d / "x.md").mkdir() or d / "x.md"], expect=["--doc", "x.md", "folder"]),
    Case("jobs-zero", lambda d: ["reproduce", "modes", "--out", d / "runs", "--quick", "--jobs", "0"],
         expect=["--jobs", "greater than or equal to 1"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path):
    check(case, tmp_path)
