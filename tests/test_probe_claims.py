"""The probe claims (gradient-SED sensitivity, the commutator's share outside the execution
subspace and its alignment, the manifold's dimension): the run options they need (a probe
linked to another, gradient-SED on the monitor's parameters), the per-run statistics against
hand computation on a planted history, and the verdict rules at their edges."""

from __future__ import annotations

import json

import pytest

from spectral_edge.errors import ConfigError
from spectral_edge.experiments import RunConfig, run_experiment
from spectral_edge.reproduce.probe_claims import probe_claims, probe_claims_section, probe_run_record

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

TINY = dict(op="add", modulus=13, steps=60, eval_every=20, every=5, windows=(5,), batch_size=64, lr=3e-3,
            model={"d_model": 32, "d_ff": 64, "n_heads": 2}, snapshots=0, alarm=False, threads=1)


def _rows(folder):
    return [json.loads(x) for x in (folder / "history.jsonl").read_text().splitlines()]


def test_a_probe_option_naming_another_probe_links_it_and_gradient_sed_reads_the_monitor_parameters(tmp_path):
    cfg = RunConfig(**TINY, probes={"manifold": {"every": 10},
                                    "defect": {"every": 10, "batch_size": 32, "subspace": "manifold"},
                                    "gradient_sed": {"every": 5, "window": 3, "batch_size": 32}})
    run_experiment(cfg, tmp_path / "r")
    rows = _rows(tmp_path / "r")
    defect = [r for r in rows if r.get("probe") == "defect" and "exec_frac" in r]
    assert defect and all(r["exec_dim"] == 16 and 0 <= r["exec_frac"] <= 1 for r in defect)  # 2 × 8 matrices
    sed = [r for r in rows if r.get("probe") == "grad_sed" and "update_sens_ratio" in r]
    assert sed and all(r["sens_ratio"] > 0 for r in sed)  # the update-SED comparison ran: same parameters
    assert any(r.get("probe") == "manifold" and "dim90_mean" in r for r in rows)


@pytest.mark.parametrize("probes,match", [
    ({"defect": {"every": 10, "subspace": "nope"}}, "'nope' is not another probe of this run"),
    ({"defect": {"every": 10, "subspace": "manifold"}, "manifold": {"every": 10}}, "list the manifold probe before"),
    ({"defect": {"every": 10, "subspace": "defect"}}, "'defect' is not another probe"),
])
def test_a_bad_probe_link_is_refused_before_the_folder_is_touched(tmp_path, probes, match):
    with pytest.raises(ConfigError, match=match):
        run_experiment(RunConfig(**TINY, probes=probes), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def _planted(folder, grok=1000):
    """A history with known probe values up to and after the grok step."""
    folder.mkdir()
    rows = []
    for i, s in enumerate(range(100, 1301, 100)):
        rows.append({"kind": "probe", "probe": "grad_sed", "step": s, "sens_ratio": 10.0 * (i + 1),
                     "update_sens_ratio": 2.0 + i})
        rows.append({"kind": "probe", "probe": "defect", "step": s, "exec_frac": 0.1, "exec_dim": 16.0,
                     "exec_random": 0.01, "exec_ratio": 12.0 - i})
        rows.append({"kind": "probe", "probe": "manifold", "step": s, "dim90_mean": 1.0 + i / 4, "dim95_mean": 2.0 + i / 4})
    (folder / "history.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "summary.json").write_text(json.dumps({"grok_step": grok}))
    return folder


def test_probe_run_record_reads_the_records_up_to_the_grok_step(tmp_path):
    rec = probe_run_record(_planted(tmp_path / "p"), "probes-add-s42", "add")
    # steps 100…1000: 10 records, i = 0…9
    assert rec["n_grad_sed"] == 10 and rec["grad_sed_ratio"] == pytest.approx(55.0)  # median of 10, 20, …, 100
    assert rec["update_sed_ratio"] == pytest.approx(6.5)
    assert rec["orthogonal_share"] == pytest.approx(0.99) and rec["random_orthogonal_share"] == pytest.approx(0.9999)
    assert rec["exec_ratio_early"] == pytest.approx(11.0) and rec["exec_ratio_late"] == pytest.approx(4.0)  # thirds of 3
    assert rec["exec_ratio_max"] == 12.0 and rec["exec_dim"] == 16.0
    assert rec["dim90"] == pytest.approx(1.0 + 9 / 4) and rec["dim90_step"] == 1000  # the record at the grok step
    assert probe_run_record(_planted(tmp_path / "q", grok=None), "q", "add")["n_grad_sed"] == 13  # no grok: all 13


def _rec(**kw):
    base = {"run": "r", "op": "add", "grok_step": 3000, "n_grad_sed": 20, "grad_sed_ratio": 200.0,
            "update_sed_ratio": 5.0, "orthogonal_share": 0.99, "random_orthogonal_share": 0.9999, "exec_dim": 16.0,
            "exec_ratio_early": 5.0, "exec_ratio_late": 2.0, "exec_ratio_max": 9.0, "dim90": 3.5, "dim95": 5.0,
            "dim90_step": 3000}
    return {**base, **kw}


@pytest.mark.parametrize("kw,verdicts", [
    ({}, ["reproduced"] * 5),
    ({"grad_sed_ratio": 20.0, "update_sed_ratio": 12.0}, ["partly", "partly", "reproduced", "reproduced", "reproduced"]),
    ({"grad_sed_ratio": 5.0, "update_sed_ratio": 12.0}, ["not reproduced", "not reproduced", "reproduced",
                                                         "reproduced", "reproduced"]),
    ({"orthogonal_share": 0.9, "exec_ratio_early": 0.2, "exec_ratio_late": 0.1, "dim90": 1.5},
     ["reproduced", "reproduced", "not reproduced", "not reproduced", "not reproduced"]),
    ({"exec_ratio_late": 6.0, "dim90": 5.0}, ["reproduced", "reproduced", "reproduced", "partly", "partly"]),
])
def test_probe_claim_verdicts(kw, verdicts):
    rows = probe_claims([_rec(), _rec(run="s", **kw)])
    assert [r[3] for r in rows] == verdicts


def test_the_section_says_how_little_the_orthogonal_share_tells():
    text = "\n".join(probe_claims_section([_rec()]))
    assert "99.990%" in text and "holds for almost any direction" in text and "Rules:" in text
    assert "nothing to report" in "\n".join(probe_claims_section([]))
