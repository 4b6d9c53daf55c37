"""Escape-rate estimators and the exponential-law KS test (escape.stats._rates, escape.stats._ks)."""

import math
import types

import numpy as np
import pytest
from scipy import stats as sps

from escape.stats import censored_rate, exponential_ks, KSResult, paper_rate, RateEstimate


def _binomial_band(p: float, reps: int, z: float = 3.0) -> float:
    return z * math.sqrt(p * (1 - p) / reps)


# --------------------------------------------------------------------------------------------------------
# censored_rate


def test_censored_rate_hand_example():
    # Escapes at 2 and 5, one censored at the horizon 10, one diverged (excluded even though it "escaped").
    times = np.array([2, 5, 999, 1])
    escaped = np.array([True, True, False, True])
    diverged = np.array([False, False, False, True])
    est = censored_rate(times, escaped, 10, diverged=diverged)
    assert isinstance(est, RateEstimate)
    assert est.exposure == 17.0
    assert est.rate == 2 / 17
    assert (est.n, est.events, est.censored, est.diverged) == (3, 2, 1, 1)
    assert est.lower == pytest.approx(sps.chi2.ppf(0.025, 4) / 34, rel=1e-12)
    assert est.upper == pytest.approx(sps.chi2.ppf(0.975, 6) / 34, rel=1e-12)
    assert est.mean_time == pytest.approx(8.5)
    assert est.log_rate_se == pytest.approx(1 / math.sqrt(2))
    assert est.method == "censored-mle"
    assert est.to_dict()["events"] == 2


def test_censored_rate_no_escape():
    est = censored_rate(np.zeros(4), np.zeros(4, bool), 50)
    assert est.rate == 0.0 and est.lower == 0.0
    # chi2 with 2 dof: ppf(0.975) = -2 log(0.025), so the upper bound is -log(0.025) / S.
    assert est.upper == pytest.approx(-math.log(0.025) / 200, rel=1e-12)
    assert est.mean_time == math.inf and est.log_rate_se == math.inf
    assert est.censored == 4 and est.events == 0


def test_censored_rate_all_diverged_is_reported_not_averaged():
    est = censored_rate(np.ones(3), np.ones(3, bool), 10, diverged=np.ones(3, bool))
    assert math.isnan(est.rate) and est.n == 0 and est.diverged == 3


@pytest.mark.parametrize("law", ["exponential", "geometric"])
def test_censored_rate_interval_coverage(law):
    # 2000 cells of 200 particles, horizon 1.5 tau (about 22% censored); the 95% interval must cover the true
    # rate (per-step escape probability for the geometric law) within 3 binomial standard errors of 0.95.
    rng = np.random.default_rng(20240601)
    reps, n, tau = 2000, 200, 100.0
    horizon = 150
    if law == "exponential":
        times = rng.exponential(tau, (reps, n))
    else:
        times = rng.geometric(1 / tau, (reps, n))
    escaped = times <= horizon
    hits = 0
    for r in range(reps):
        est = censored_rate(times[r], escaped[r], horizon)
        hits += est.lower <= 1 / tau <= est.upper
    coverage = hits / reps
    assert abs(coverage - 0.95) < _binomial_band(0.95, reps), coverage


def test_censored_rate_accepts_engine_result_and_per_particle_horizon():
    rng = np.random.default_rng(3)
    first = rng.geometric(0.02, 50)
    horizon = np.where(np.arange(50) < 25, 40, 80)
    escaped = first <= horizon
    diverged = np.zeros(50, bool)
    diverged[7] = True
    result = types.SimpleNamespace(first_passage=first, escaped=escaped, diverged=diverged, steps_run=horizon)
    a = censored_rate(result)
    b = censored_rate(first, escaped, horizon, diverged=diverged)
    assert a == b
    expected_s = first[escaped & ~diverged].sum() + horizon[~escaped & ~diverged].sum()
    assert a.exposure == expected_s and a.diverged == 1
    with pytest.raises(TypeError, match="not both"):
        censored_rate(result, escaped)


def test_censored_rate_validation():
    with pytest.raises(ValueError, match="horizon"):
        censored_rate([5.0, 20.0], [True, True], 10)
    with pytest.raises(ValueError, match="escaped"):
        censored_rate([1.0, 2.0], [True], 10)
    with pytest.raises(ValueError, match="1-D"):
        censored_rate(np.ones((2, 3)), np.ones((2, 3), bool), 10)
    with pytest.raises(ValueError, match="confidence"):
        censored_rate([1.0], [True], 10, confidence=1.5)
    with pytest.raises(TypeError, match="escaped"):
        censored_rate([1.0], None, 10)


# --------------------------------------------------------------------------------------------------------
# paper_rate


def test_paper_rate_hand_example():
    est = paper_rate([2.0, 4.0, 6.0, 8.0, 10.0])
    assert est.rate == 5 / 30
    z = sps.norm.ppf(0.975)
    assert est.lower == pytest.approx(5 / 30 * (1 - z / math.sqrt(5)), rel=1e-12)
    assert est.upper == pytest.approx(5 / 30 * (1 + z / math.sqrt(5)), rel=1e-12)
    assert est.method == "paper-uncensored" and est.events == 5 and est.mean_time == 6.0
    # Without censoring it is the same point estimate as the censored MLE.
    assert censored_rate([2.0, 4.0, 6.0, 8.0, 10.0], [True] * 5, 10).rate == est.rate
    # With n < z^2 the lower end 1 - z / sqrt(n) is negative: clipped at 0.
    assert paper_rate([2.0, 4.0, 6.0]).lower == 0.0


def test_paper_rate_excludes_diverged_and_raises_on_censored():
    est = paper_rate([2.0, 4.0, np.nan], diverged=[False, False, True])
    assert est.rate == 2 / 6 and est.diverged == 1
    with pytest.raises(ValueError, match="1 of 3 particles are censored"):
        paper_rate([2.0, 4.0, 10.0], [True, True, False])
    with pytest.raises(ValueError, match="censored"):
        paper_rate([2.0, np.inf])


# --------------------------------------------------------------------------------------------------------
# exponential_ks


@pytest.mark.parametrize("mean", [50, 200])
def test_exponential_ks_null_integer_steps(mean):
    # Geometric steps (the discrete exponential) censored at 2 * mean; rate estimated. The test is
    # conservative (discreteness, estimated rate), so the rejection rates must not exceed the nominal level
    # by more than 3 binomial standard errors.
    rng = np.random.default_rng(mean)
    reps, horizon = 200, 2 * mean
    times = rng.geometric(1 / mean, (reps, 2000))
    pvals = np.array([exponential_ks(t, t <= horizon, horizon).pvalue for t in times])
    assert np.mean(pvals < 0.05) <= 0.05 + _binomial_band(0.05, reps)
    assert np.mean(pvals < 0.01) <= 0.01 + _binomial_band(0.01, reps)
    assert np.median(pvals) > 0.3


def test_exponential_ks_known_rate_pvalues_uniform():
    # Continuous exponential times with the true rate given: the p-values are exactly U(0, 1).
    rng = np.random.default_rng(11)
    reps, mean, horizon = 300, 80.0, 120.0
    times = rng.exponential(mean, (reps, 500))
    pvals = [exponential_ks(t, t <= horizon, horizon, rate=1 / mean).pvalue for t in times]
    assert sps.kstest(pvals, "uniform").pvalue > 1e-3


def test_exponential_ks_discreteness_matters():
    # 50000 geometric steps with mean 50: treating them as continuous shifts the CDF by ~rate / 2 and rejects;
    # the integer-support statistic does not.
    rng = np.random.default_rng(5)
    t = rng.geometric(1 / 50, 50_000)
    res = exponential_ks(t, t <= 100, 100)
    assert res.discrete and res.n == int((t <= 100).sum())
    assert res.pvalue > 0.01
    assert exponential_ks(t, t <= 100, 100, discrete=False).pvalue < 1e-6


def test_exponential_ks_per_particle_horizon():
    rng = np.random.default_rng(8)
    reps = 100
    horizon = np.where(np.arange(1000) % 2 == 0, 60, 150)
    pvals = []
    for _ in range(reps):
        t = rng.geometric(1 / 70, 1000)
        pvals.append(exponential_ks(t, t <= horizon, horizon).pvalue)
    assert np.mean(np.array(pvals) < 0.05) <= 0.05 + _binomial_band(0.05, reps)


@pytest.mark.parametrize("alternative", ["gamma5", "uniform"])
def test_exponential_ks_rejects_other_laws(alternative):
    rng = np.random.default_rng(2)
    mean = 100.0
    if alternative == "gamma5":
        t = np.ceil(rng.gamma(5.0, mean / 5, 500))
    else:
        t = np.ceil(rng.uniform(0.0, 2 * mean, 500))
    res = exponential_ks(t, t <= 1000, 1000)
    assert isinstance(res, KSResult)
    assert res.pvalue < 1e-6


def test_exponential_ks_no_escape_and_result_object():
    res = exponential_ks(np.zeros(5), np.zeros(5, bool), 10)
    assert res.n == 0 and math.isnan(res.pvalue)
    t = np.array([3, 9, 12, 40])
    result = types.SimpleNamespace(first_passage=t, escaped=t <= 20, diverged=np.zeros(4, bool), steps_run=20)
    assert exponential_ks(result) == exponential_ks(t, t <= 20, 20)
    with pytest.raises(ValueError, match="rate"):
        exponential_ks(t, t <= 20, 20, rate=-1.0)
