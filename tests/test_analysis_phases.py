"""Phases of the gap ratio: planted rise/plateau/collapse recovered by every detector, exact
collapse events, degenerate series, and the smoothing reference."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_edge.analysis.datasets import planted_history, planted_phases
from spectral_edge.analysis.phases import (PHASE_METHODS, PhaseConfig, boundary_errors, collapse_events,
                                           derivative_phases, detect_phases, run_phases, smooth)
from spectral_edge.errors import ConfigError

EVERY = 100
TOL = 4 * EVERY  # boundary tolerance: 4 samples
CONFIGS = {
    "plateau": PhaseConfig(method="plateau"),
    "derivative": PhaseConfig(method="derivative"),
    "threshold": PhaseConfig(method="threshold"),
    "binseg": PhaseConfig(method="changepoint", algo="binseg", cost="l2"),
    "dynp": PhaseConfig(method="changepoint", algo="dynp", cost="l2"),
    "pelt": PhaseConfig(method="changepoint", algo="pelt", cost="l2"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_planted_boundaries_recovered(name, seed):
    pp = planted_phases(noise=0.01, seed=seed, every=EVERY)
    ph = detect_phases(pp.steps, pp.values, CONFIGS[name])
    assert ph.valid, ph.reason
    e_start, e_collapse = boundary_errors(ph, pp.truth)
    assert e_start <= TOL and e_collapse <= TOL, (name, ph.boundaries, pp.truth)
    # the peak lies on the plateau and the labels are ordered rise → plateau → collapse
    assert pp.truth[0] - TOL <= ph.peak_step < pp.truth[1] + TOL
    order = {"rise": 0, "plateau": 1, "collapse": 2}
    codes = [order[lab] for lab in ph.labels]
    assert codes == sorted(codes) and set(codes) == {0, 1, 2}
    assert ph.labels.count("plateau") == int(np.sum((pp.steps >= ph.plateau_start) & (pp.steps <= ph.plateau_end)))


def test_shifted_truth_is_detected_as_wrong():
    """The scoring can fail: boundaries of one planted series are far from another's truth."""
    a = planted_phases(rise_end=30, collapse_at=70, seed=0)
    b = planted_phases(rise_end=50, collapse_at=95, seed=0)
    ph = detect_phases(a.steps, a.values, CONFIGS["plateau"])
    e1, e2 = boundary_errors(ph, b.truth)
    assert e1 > TOL and e2 > TOL


def test_collapse_events_exact_on_clean_curve():
    # clean down-ramp: R_i = 1.7 − 0.65·(i − 69)/6 for i in 70…75, so R < τ first at
    # i > 69 + 6·(1.7 − τ)/0.65: τ=1.15 → 75, 1.20 → 74, 1.25 → 74, 1.30 → 73
    pp = planted_phases(noise=0.0, seed=0, every=EVERY)
    ev = {e.tau: e.step for e in collapse_events(pp.steps, pp.clean)}
    assert ev == {1.15: 7500, 1.20: 7400, 1.25: 7400, 1.30: 7300}
    ph = detect_phases(pp.steps, pp.clean, PhaseConfig(method="plateau"))
    assert ph.collapse_step == 7400 and ph.primary_tau == 1.20
    ph13 = detect_phases(pp.steps, pp.clean, PhaseConfig(method="plateau", primary_tau=1.30))
    assert ph13.collapse_step == 7300
    custom = detect_phases(pp.steps, pp.clean, PhaseConfig(taus=(1.5,), primary_tau=1.5))
    # 1.7 − 0.65·k/6 < 1.5 ⇔ k > 1.846 → i = 71
    assert [e.tau for e in custom.events] == [1.5] and custom.collapse_step == 7100


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collapse_events_noisy_within_one_sample(seed):
    pp = planted_phases(noise=0.01, seed=seed, every=EVERY)
    clean = {e.tau: e.step for e in collapse_events(pp.steps, pp.clean)}
    for e in collapse_events(pp.steps, pp.values):
        assert abs(e.step - clean[e.tau]) <= EVERY


def test_collapse_event_undefined_when_never_reached_or_never_left():
    steps = np.arange(10) * 10
    low = np.full(10, 1.1)
    assert all(e.step is None for e in collapse_events(steps, low))  # never reaches τ
    rising = np.linspace(1.0, 2.0, 10)
    assert all(e.step is None for e in collapse_events(steps, rising))  # never falls back


@pytest.mark.parametrize("method", PHASE_METHODS)
def test_degenerate_series_do_not_crash(method):
    cfg = PhaseConfig(method=method)
    # too short
    ph = detect_phases(np.array([0, 100]), np.array([1.2, 1.4]), cfg)
    assert not ph.valid and "finite" in ph.reason and ph.labels == ("unknown", "unknown")
    # empty and all-NaN
    assert not detect_phases(np.array([], dtype=int), np.array([]), cfg).valid
    ph = detect_phases(np.arange(20), np.full(20, np.nan), cfg)
    assert not ph.valid and set(ph.labels) == {"unknown"} and ph.peak_step is None
    # constant: one plateau or undefined, never an error
    ph = detect_phases(np.arange(30), np.full(30, 1.5), cfg)
    assert ph.valid is True or ph.reason


def test_monotone_series():
    steps = np.arange(40) * 10
    up = np.linspace(1.0, 2.0, 40)
    for m in ("plateau", "derivative", "threshold"):
        ph = detect_phases(steps, up, PhaseConfig(method=m))
        assert ph.valid and ph.collapse_start is None and ph.plateau_end == steps[-1], m
        assert ph.labels[-1] == "plateau" and "collapse" not in ph.labels
    down = up[::-1]
    ph = detect_phases(steps, down, PhaseConfig(method="plateau"))
    assert ph.plateau_start == 0 and "rise" not in ph.labels and ph.labels[-1] == "collapse"
    # 0.85·2.0 = 1.7 → plateau while R ≥ 1.7: first 12 samples (R_11 = 2 − 11/39 ≈ 1.718, R_12 ≈ 1.692)
    assert ph.plateau_end == steps[11] and ph.collapse_start == steps[12]


def test_threshold_never_reached_is_invalid_with_reason():
    pp = planted_phases(high=1.25, noise=0.0)
    ph = detect_phases(pp.steps, pp.values, PhaseConfig(method="threshold", tau=1.30))
    assert not ph.valid and "never reaches" in ph.reason
    ok = detect_phases(pp.steps, pp.values, PhaseConfig(method="threshold", tau=1.20))
    assert ok.valid


@pytest.mark.parametrize("method", ["plateau", "derivative", "binseg"])
def test_nan_gaps(method):
    cfg = CONFIGS[method]
    pp = planted_phases(noise=0.01, seed=5, every=EVERY)
    v = pp.values.copy()
    g = np.random.default_rng(7)
    holes = g.choice(np.arange(2, 118), size=12, replace=False)
    v[holes] = np.nan
    ph = detect_phases(pp.steps, v, cfg)
    assert ph.valid
    e1, e2 = boundary_errors(ph, pp.truth)
    assert e1 <= TOL + EVERY and e2 <= TOL + EVERY
    for i in holes:  # a NaN row gets the label of the phase its step falls in
        st = pp.steps[i]
        want = "rise" if st < ph.plateau_start else "plateau" if st <= ph.plateau_end else "collapse"
        assert ph.labels[i] == want


def test_unsorted_input_is_sorted():
    pp = planted_phases(noise=0.01, seed=1)
    perm = np.random.default_rng(3).permutation(pp.steps.size)
    a = detect_phases(pp.steps, pp.values, CONFIGS["plateau"])
    b = detect_phases(pp.steps[perm], pp.values[perm], CONFIGS["plateau"])
    assert a.boundaries == b.boundaries and a.labels == b.labels


def test_smooth_matches_brute_force():
    g = np.random.default_rng(0)
    x = g.standard_normal(23)
    x[[0, 5, 6, 22]] = np.nan
    for w in (1, 3, 5, 7):
        got = smooth(x, w)
        h = w // 2
        ref = []
        for i in range(x.size):
            seg = x[max(0, i - h): i + h + 1]
            seg = seg[np.isfinite(seg)]
            ref.append(seg.mean() if seg.size else np.nan)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(smooth(x[1:5], 1), x[1:5])
    with pytest.raises(ConfigError):
        smooth(x, 4)


def test_derivative_detector_exposes_its_smoothing():
    pp = planted_phases(noise=0.01, seed=2)
    ph = derivative_phases(pp.steps, pp.values, window=7, threshold=0.01)
    np.testing.assert_allclose(ph.smoothed, smooth(pp.values, 7))
    np.testing.assert_allclose(ph.derivative, np.gradient(smooth(pp.values, 7)))
    # first sample after the smoothed peak with derivative < −0.01 starts the collapse
    p = int(np.argmax(ph.smoothed))
    first = p + 1 + int(np.flatnonzero(ph.derivative[p + 1:] < -0.01)[0])
    assert ph.collapse_start == pp.steps[first]
    # a looser threshold moves the collapse later, never earlier
    loose = derivative_phases(pp.steps, pp.values, window=7, threshold=0.05)
    assert loose.collapse_start >= ph.collapse_start


def test_changepoint_segments_and_penalty():
    pp = planted_phases(noise=0.01, seed=0)
    few = detect_phases(pp.steps, pp.values, PhaseConfig(method="changepoint", algo="binseg", n_bkps=2))
    assert few.valid
    # an enormous Pelt penalty gives one segment: everything is "plateau"
    one = detect_phases(pp.steps, pp.values, PhaseConfig(method="changepoint", algo="pelt", penalty=1e9))
    assert one.valid and set(one.labels) == {"plateau"}
    short = detect_phases(np.arange(5), np.array([1.0, 1.5, 1.6, 1.5, 1.0]),
                          PhaseConfig(method="changepoint", min_size=3))
    assert not short.valid and "need" in short.reason


def test_config_validation():
    with pytest.raises(ConfigError, match="phase method"):
        PhaseConfig(method="nope")
    with pytest.raises(ConfigError, match="odd"):
        PhaseConfig(smooth_window=4)
    with pytest.raises(ConfigError, match="cost"):
        PhaseConfig(method="changepoint", cost="banana")
    with pytest.raises(ConfigError, match="algorithm"):
        PhaseConfig(algo="magic")
    assert 1.4 in PhaseConfig(taus=(1.2,), primary_tau=1.4).taus


def test_run_phases_on_a_history(tmp_path):
    path = planted_history(tmp_path / "history.jsonl", windows=(5, 10), n=80, seed=1)
    ph = run_phases(path, window=10)
    assert (ph.window, ph.group, ph.column) == (10, "all", "gap_ratio")
    assert ph.steps.size == 80 and ph.valid
    s = ph.to_dict()
    assert s["window"] == 10 and "collapse_tau_1.20" in s
    # no window given: the primary window, the smallest W recorded (the library's one meaning)
    assert run_phases(path).window == 5
    with pytest.raises(ConfigError, match="the run has W = 5, 10"):
        run_phases(path, window=20)
