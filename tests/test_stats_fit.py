"""Sharpness-exponent fit (escape.stats._fit): recovery, interval coverage, prefactor handling, validation."""

import math

import jax
import numpy as np
import pytest

from escape.stats import censored_rate, fit_sharpness_exponent, SharpnessFit

KS = np.array([1.0, 1.5, 2.0, 3.0, 4.0, 6.0])  # k_max / k_min = 6 (docs/theory.md §7 asks for >= 3)


def _simulate(rng, ks, a, b, p, q, n=400):
    """One censored_rate per k from geometric escape steps with mean exp(a + b k^-p - q log k).

    The horizon is 2 tau, so ~86% of the 400 particles escape: d ~ 345 events per cell, var(log rate) ~ 1/d.
    Mean times run from ~80 to ~6e4 steps (the quasi-equilibrium window of theory §7).
    """
    tau = np.exp(a + b * ks ** (-p) - q * np.log(ks))
    out = []
    for t in tau:
        horizon = int(np.ceil(2 * t))
        x = rng.geometric(1 / t, n)
        out.append(censored_rate(x, x <= horizon, horizon))
    return out


def _band(p, reps, z=3.0):
    return z * math.sqrt(p * (1 - p) / reps)


def test_noiseless_exact_recovery():
    a, b, p, q = 2.0, 7.0, 0.7, 1.0
    rates = np.exp(-(a + b * KS ** (-p) - q * np.log(KS)))
    fit = fit_sharpness_exponent(KS, rates, events=np.full(6, 1000.0), prefactor=1.0)
    assert fit.p_hat == pytest.approx(p, abs=1e-5)
    assert fit.fit_hat.a == pytest.approx(a, abs=1e-4) and fit.fit_hat.b == pytest.approx(b, abs=1e-4)
    assert fit.fit_hat.r2 == pytest.approx(1.0, abs=1e-10)
    assert fit.p_lower < p < fit.p_upper


@pytest.mark.parametrize(("p_true", "a", "b"), [(1.0, 3.0, 8.0), (0.5, -3.0, 14.0)])
def test_recovers_p_with_coverage(p_true, a, b):
    # 100 synthetic experiments; the 95% profile interval must cover p_true at a rate within 3 binomial
    # standard errors of 0.95 (it can be conservative, s^2 >= 1), and R^2 must prefer the true exponent.
    rng = np.random.default_rng(17)
    reps = 100
    covered, r2_right, p_hats = 0, 0, []
    for _ in range(reps):
        fit = fit_sharpness_exponent(KS, _simulate(rng, KS, a, b, p_true, 0.0))
        covered += fit.p_lower <= p_true <= fit.p_upper
        right, wrong = (fit.fit_p1, fit.fit_p05) if p_true == 1.0 else (fit.fit_p05, fit.fit_p1)
        r2_right += right.r2 > wrong.r2
        p_hats.append(fit.p_hat)
    assert covered / reps >= 0.95 - _band(0.95, reps)
    assert r2_right == reps
    p_hats = np.array(p_hats)
    # Unbiased to within 3 standard errors of the Monte-Carlo mean.
    assert abs(p_hats.mean() - p_true) < 3 * p_hats.std(ddof=1) / math.sqrt(reps)


def test_fixed_prefactor_and_bootstrap():
    # True model has the Kramers prefactor q = 1. With prefactor=1 the interval covers p; ignoring it
    # (prefactor=None) biases p downwards (theory §7: ~0.76-0.78 instead of 1).
    rng = np.random.default_rng(23)
    reps, p_true = 60, 1.0
    covered, p_fixed, p_none = 0, [], []
    for _ in range(reps):
        rates = _simulate(rng, KS, 3.5, 8.0, p_true, 1.0)
        fit = fit_sharpness_exponent(KS, rates, prefactor=1.0)
        covered += fit.p_lower <= p_true <= fit.p_upper
        p_fixed.append(fit.p_hat)
        p_none.append(fit_sharpness_exponent(KS, rates).p_hat)
    assert fit.q == 1.0 and fit.prefactor == "fixed"
    assert covered / reps >= 0.95 - _band(0.95, reps)
    sd = np.std(p_fixed, ddof=1)
    assert abs(np.mean(p_fixed) - p_true) < 3 * sd / math.sqrt(reps)
    assert np.mean(p_none) < p_true - 5 * np.std(p_none, ddof=1) / math.sqrt(reps)

    # Parametric bootstrap on the last data set: its spread matches the Monte-Carlo spread of p_hat
    # (relative standard error of both sds ~ 1/sqrt(2 * 60) + 1/sqrt(2 * 200) ~ 0.14; allow 0.4).
    boot = fit_sharpness_exponent(KS, rates, prefactor=1.0, bootstrap=200, seed=3)
    assert boot.n_boot == 200 and boot.n_boot_failed == 0
    assert abs(boot.p_boot_se / sd - 1) < 0.4
    assert boot.p_boot_lower < boot.p_hat < boot.p_boot_upper
    again = fit_sharpness_exponent(KS, rates, prefactor=1.0, bootstrap=200, seed=3)
    assert again.p_boot_lower == boot.p_boot_lower
    keyed = fit_sharpness_exponent(KS, rates, prefactor=1.0, bootstrap=5, seed=jax.random.key(0))
    assert math.isfinite(keyed.p_boot_se)


def test_fitted_prefactor_is_consistent():
    # prefactor="fit": at the true p, q_hat covers q = 1 within 1.96 standard errors at ~95%; the p interval
    # (wider: q and p trade off over k in [1, 6]) still covers p.
    rng = np.random.default_rng(29)
    reps, p_true, q_true = 60, 1.0, 1.0
    q_cov, p_cov, q_hats = 0, 0, []
    for _ in range(reps):
        fit = fit_sharpness_exponent(KS, _simulate(rng, KS, 3.5, 8.0, p_true, q_true), prefactor="fit")
        q_cov += abs(fit.fit_p1.q - q_true) < 1.96 * fit.fit_p1.q_se
        p_cov += fit.p_lower <= p_true <= fit.p_upper
        q_hats.append(fit.fit_p1.q)
    assert fit.prefactor == "fit" and fit.dof == 2
    assert q_cov / reps >= 0.95 - _band(0.95, reps)
    assert p_cov / reps >= 0.95 - _band(0.95, reps)
    assert abs(np.mean(q_hats) - q_true) < 3 * np.std(q_hats, ddof=1) / math.sqrt(reps)


def test_zero_event_cells_excluded_and_numbers_with_events():
    rng = np.random.default_rng(31)
    rates = _simulate(rng, KS, 3.0, 8.0, 1.0, 0.0)
    empty = censored_rate(np.zeros(10), np.zeros(10, bool), 5)
    ks = np.append(KS, 0.5)
    fit = fit_sharpness_exponent(ks, [*rates, empty])
    assert fit.excluded_k == (0.5,) and fit.n_points == 6
    row = fit.to_dict()
    assert row["n_excluded"] == 1 and row["excluded_k"] == "0.5"
    for key in ("p_hat", "p_lower", "p_upper", "a_p1", "b_p1", "r2_p1", "a_p05", "b_p05", "r2_p05", "q"):
        assert isinstance(row[key], float), key
    assert all(np.isscalar(v) for v in row.values())
    # Plain rates with events= give the same fit as RateEstimate objects.
    same = fit_sharpness_exponent(KS, [r.rate for r in rates], events=[r.events for r in rates])
    assert isinstance(same, SharpnessFit)
    assert same.p_hat == pytest.approx(fit.p_hat, abs=1e-9)


def test_validation_errors():
    r = np.exp(-(3 + 8 / KS))
    ev = np.full(6, 100.0)
    with pytest.raises(ValueError, match="`ks` needs at least 3"):
        fit_sharpness_exponent([1.0, 2.0, 2.0], r[:3], events=ev[:3])
    with pytest.raises(ValueError, match="`ks` needs at least 4"):
        fit_sharpness_exponent([1.0, 2.0, 3.0], r[:3], events=ev[:3], prefactor="fit")
    with pytest.raises(ValueError, match="`ks`.*> 0"):
        fit_sharpness_exponent([0.0, 2.0, 3.0], r[:3], events=ev[:3])
    with pytest.raises(ValueError, match="`prefactor`"):
        fit_sharpness_exponent(KS, r, events=ev, prefactor="kramers")
    with pytest.raises(ValueError, match="`p_grid`"):
        fit_sharpness_exponent(KS, r, events=ev, p_grid=[0.5, 0.4, 1.0])
    with pytest.raises(ValueError, match="`rates` has 5"):
        fit_sharpness_exponent(KS, r[:5], events=ev[:5])
    with pytest.raises(TypeError, match="events="):
        fit_sharpness_exponent(KS, r)
    with pytest.raises(ValueError, match="distinct k have escapes"):
        fit_sharpness_exponent(KS, r, events=[100.0, 100.0, 0.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("p_true", [1.0, 0.5])
def test_tied_prefactor_recovers_p_when_q_equals_p(p_true):
    """Theory §7 on L_k: one factor (effective learning rate times k) sets both the exponent ~ k^-p and the
    attempt frequency ~ k^p, so q = p. Synthetic rates from that law with Poisson events are fitted with
    prefactor="tied"; over 40 data sets the 95% interval covers p at a rate consistent with >= 0.95."""
    from escape.stats import fit_sharpness_exponent

    rng = np.random.default_rng(5)
    k = np.array([1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0])
    a, b = 1.0, 9.0
    gamma = np.exp(-(a + b * k**-p_true - p_true * np.log(k)))
    exposure = 800 / gamma  # about 800 escapes per cell
    covered, wrong_excluded = 0, 0
    for _ in range(40):
        d = rng.poisson(gamma * exposure)
        fit = fit_sharpness_exponent(k, d / exposure, events=d, prefactor="tied")
        covered += fit.p_lower <= p_true <= fit.p_upper
        other = 0.5 if p_true == 1.0 else 1.0
        wrong_excluded += not (fit.p_lower <= other <= fit.p_upper)
        assert fit.q == pytest.approx(fit.p_hat)
    # binomial: P(covered <= 34 | 40, 0.95) < 0.01
    assert covered >= 35 and wrong_excluded == 40
