"""Theory oracles: exact results checked against independent computations, approximations in their limits."""

import numpy as np
import pytest
from scipy import integrate, linalg

from escape.theory import (
    adai_coefficients,
    adai_escape_exponent,
    adai_saddle_msd,
    adam_coefficients,
    adam_escape_exponent,
    adam_saddle_msd,
    eyring_kramers_time,
    heavy_ball_coefficients,
    linear_moments,
    momentum_escape_exponent,
    momentum_saddle_msd,
    phase_space_linear_model,
    SHARPNESS_EXPONENTS,
    sgd_escape_exponent,
    sgd_linear_model,
    sgd_saddle_msd,
    stationary_covariance,
    underdamped_kramers_rate,
    underdamped_kramers_time,
)


def _lyapunov_ode(a, g, mean0, cov0, times):
    """Mean and covariance by integrating dm/dt = A m, dS/dt = A S + S A' + G G' (independent of Van Loan)."""
    n = a.shape[0]
    qq = g @ g.T

    def rhs(_, z):
        m, s = z[:n], z[n:].reshape(n, n)
        return np.concatenate([a @ m, (a @ s + s @ a.T + qq).ravel()])

    z0 = np.concatenate([mean0, np.asarray(cov0, float).ravel()])
    sol = integrate.solve_ivp(rhs, (0, max(times)), z0, t_eval=times, method="Radau", rtol=1e-11, atol=1e-13)
    assert sol.success
    return sol.y[:n].T, sol.y[n:].T.reshape(len(times), n, n)


def test_theorem1_is_the_exact_ou_variance_for_both_signs():
    t = np.array([0.0, 0.3, 1.0, 4.0])
    for h in (-2.0, -0.1, 0.3, 1.5):
        d = 0.07
        a, g = sgd_linear_model([h], d)
        _, cov = linear_moments(a, g, [0.0], 0.0, t)
        np.testing.assert_allclose(sgd_saddle_msd(t, h, d), cov[:, 0, 0], rtol=1e-10, atol=1e-15)
    # H = 0: free diffusion 2 D t, and continuity on both sides of it
    np.testing.assert_allclose(sgd_saddle_msd(t, 0.0, 0.07), 2 * 0.07 * t)
    np.testing.assert_allclose(sgd_saddle_msd(2.0, [-1e-9, 1e-9], 0.07), 2 * 0.07 * 2.0, rtol=1e-7)
    # the iteration form of theory §5 (docs/theory.md): D = eta |H| / (2B) gives (eta / 2B)(exp(2 |H| eta T) - 1)
    eta, b, h, steps = 0.01, 4, -0.3, 500
    np.testing.assert_allclose(
        sgd_saddle_msd(eta * steps, h, eta * abs(h) / (2 * b)), eta / (2 * b) * np.expm1(2 * abs(h) * eta * steps)
    )


@pytest.mark.parametrize("stiff", [False, True])
def test_linear_moments_match_a_direct_lyapunov_ode_solve(stiff):
    rng = np.random.default_rng(0)
    if stiff:  # EMA heavy ball, eta = 0.0125: velocity relaxes 80x faster than the slowest position mode
        a, g = phase_space_linear_model([0.5, 2.0], 0.125, 1.0, [0.003, 0.0125])
        times = np.array([0.5, 4.0, 20.0])
    else:  # a generic non-normal system with an unstable direction
        a = rng.normal(size=(4, 4)) - 0.5 * np.eye(4)
        g = rng.normal(size=(4, 2))
        times = np.array([0.1, 0.7, 2.0])
    mean0 = rng.normal(size=4)
    b = rng.normal(size=(4, 4))
    cov0 = 0.1 * b @ b.T
    m, c = linear_moments(a, g, mean0, cov0, times)
    m_ode, c_ode = _lyapunov_ode(a, g, mean0, cov0, times)
    scale = np.abs(c_ode).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(m, m_ode, rtol=1e-7, atol=1e-9 * np.abs(m_ode).max())
    np.testing.assert_allclose(c / scale, c_ode / scale, atol=1e-7)


def test_linear_moments_converge_to_the_stationary_lyapunov_solution():
    a, g = phase_space_linear_model([0.5, 2.0, 7.0], 0.1, 0.1, [0.05, 0.2, 0.7])
    s = stationary_covariance(a, g)
    np.testing.assert_allclose(a @ s + s @ a.T, -g @ g.T, atol=1e-12)
    _, c = linear_moments(a, g, np.ones(6), 0.0, [200.0])
    np.testing.assert_allclose(c[0], s, atol=1e-10 * np.abs(s).max())
    with pytest.raises(ValueError, match="eigenvalue"):
        stationary_covariance(*sgd_linear_model([-1.0], 0.1))


@pytest.mark.parametrize("style", ["sgd", "ema"])
def test_heavy_ball_stationary_variance_is_teff_over_h(style):
    # theory §3 (exact for the continuous model): Var theta = T_eff / h = eta c beta3 / (2 (1 - beta1) h)
    eta, beta, c = 0.05, 0.9, np.array([0.3, 0.3, 2.0])
    h = np.array([0.5, 3.0, 3.0])
    mass, damping = heavy_ball_coefficients(eta, beta, style)
    a, g = phase_space_linear_model(h, mass, damping, eta * c / 2)
    beta3 = 1.0 if style == "sgd" else 1.0 - beta
    var = np.diagonal(stationary_covariance(a, g))[:3]
    np.testing.assert_allclose(var, eta * c * beta3 / (2 * (1 - beta) * h), rtol=1e-10)


def test_theorem2_approaches_the_exact_linear_model_as_the_mass_vanishes():
    # Theorem 2 assumes a thermal initial velocity and M |H| << gamma^2; measured against the exact law of
    # the linear model started with Var r = T_eff / M, at times t >> M / gamma. The relative error is
    # O(M / (gamma t)) (ballistic start) + O(M H^2 t / gamma^3) (the slow eigenvalue's shift): O(M).
    d, gamma = 0.05, 1.0
    t = np.array([0.5, 1.0, 2.0, 5.0])
    worst = {}
    for mass in (0.01, 0.001):
        ratios = []
        for h in (-0.5, 0.5):
            a, g = phase_space_linear_model([h], mass, gamma, d)
            _, cov = linear_moments(a, g, [0.0, 0.0], np.diag([0.0, d / gamma / mass]), t)
            ratios.append(momentum_saddle_msd(t, h, mass, gamma, d) / cov[:, 0, 0])
        worst[mass] = np.abs(np.array(ratios) - 1).max()
    assert worst[0.001] < 0.006  # measured 0.0040
    assert worst[0.001] < worst[0.01] / 5  # measured 0.040 -> 0.0040: the error is O(M)
    # at t << M / gamma the exact MSD and Theorem 2's drift term are both ballistic, (T_eff / M) t^2
    mass, t, h = 0.1, 1e-4, -0.5
    drift = momentum_saddle_msd(t, h, mass, gamma, d) - sgd_saddle_msd(t / gamma, h, d / gamma)
    a, g = phase_space_linear_model([h], mass, gamma, d)
    _, cov = linear_moments(a, g, [0.0, 0.0], np.diag([0.0, d / gamma / mass]), [t])
    np.testing.assert_allclose(drift, d / gamma / mass * t**2, rtol=1e-3)
    np.testing.assert_allclose(cov[0, 0, 0], d / gamma / mass * t**2, rtol=1e-3)


def test_propositions_1_and_3_are_theorem2_with_the_optimizers_coefficients():
    eta, t = 0.01, np.array([0.1, 1.0])
    h = np.array([-1.0, -0.01, 2.0])
    c = np.abs(h) / 4
    m, gam = adam_coefficients(eta, c, b1=0.9, eps=1e-8)
    np.testing.assert_allclose(m, eta * (np.sqrt(c) + 1e-8) / 0.1)
    np.testing.assert_allclose(gam, np.sqrt(c) + 1e-8)
    expected = [momentum_saddle_msd(tt, h, m, gam, eta * c / 2) for tt in t]
    np.testing.assert_allclose([adam_saddle_msd(tt, h, c, learning_rate=eta) for tt in t], expected)
    m, gam = adai_coefficients(eta, c, beta0=0.1, eps=1e-3)
    np.testing.assert_allclose(m, eta / np.clip(0.1 * c / c.mean(), 1e-3, 1))
    np.testing.assert_allclose(gam, 1.0)
    expected = [momentum_saddle_msd(tt, h, m, 1.0, eta * c / 2) for tt in t]
    np.testing.assert_allclose([adai_saddle_msd(tt, h, c, learning_rate=eta) for tt in t], expected)
    # Adam's temperature is eta_i C / 2 with eta_i = eta / (sqrt(v) + eps)
    m, gam = adam_coefficients(eta, c)
    np.testing.assert_allclose((eta * c / 2) / gam, eta / (np.sqrt(c) + 1e-8) * c / 2)


def test_adam_saddle_msd_at_short_times_barely_depends_on_the_curvature():
    # theory §5: with v = C = |H| / B, Adam's MSD is nearly Hessian-independent; SGD's is proportional to |H|.
    eta, batch, steps = 0.01, 1, 10
    h = -np.geomspace(1e-3, 1.0, 7)
    c = np.abs(h) / batch
    adam = adam_saddle_msd(eta * steps, h, c, learning_rate=eta)
    sgd = sgd_saddle_msd(eta * steps, h, eta * c / 2)
    assert adam.max() / adam.min() < 1.2  # measured 1.09
    slope = np.polyfit(np.log(np.abs(h)), np.log(sgd), 1)[0]
    assert abs(slope - 1.0) < 0.02


def test_underdamped_kramers_reduces_to_overdamped_at_strong_friction():
    barrier, temperature, h_a, h_b = 1.0, 0.1, 8.0, -4.0
    overdamped_rate = 1.0 / eyring_kramers_time(barrier, temperature, h_a, h_b)
    ratios = [
        underdamped_kramers_rate(barrier, temperature, h_a, h_b, mass, 1.0) / overdamped_rate
        for mass in (1.0, 1e-2, 1e-4, 1e-6)
    ]
    np.testing.assert_allclose(ratios[-1], 1.0, rtol=1e-5)
    assert np.all(np.diff(ratios) > 0)  # inertia lowers the rate (the transmission factor < 1)
    # friction gamma: the overdamped time is gamma times the gamma = 1 time at the same T_eff
    tau = underdamped_kramers_time(barrier, temperature, h_a, h_b, 1e-6, 3.0)
    np.testing.assert_allclose(tau, 3.0 * eyring_kramers_time(barrier, temperature, h_a, h_b), rtol=1e-5)
    # the n-d prefactor enters as in Eyring-Kramers
    np.testing.assert_allclose(
        underdamped_kramers_time(barrier, temperature, h_a, h_b, 1e-6, 1.0, det_ratio=2.0),
        eyring_kramers_time(barrier, temperature, h_a, h_b, det_ratio=2.0),
        rtol=1e-5,
    )
    with pytest.raises(ValueError):
        underdamped_kramers_rate(barrier, temperature, h_a, -h_b, 1.0, 1.0)


def test_scaling_exponents_follow_the_temperatures_and_the_sharpness_exponents():
    barrier, eta, batch, h = 25.0, 0.01, 4, 29.3
    d = eta * h / (2 * batch)  # SGD's diffusion at the minimum: the exponent is Delta L / D
    np.testing.assert_allclose(sgd_escape_exponent(barrier, eta, batch, h), barrier / d)
    np.testing.assert_allclose(adai_escape_exponent(barrier, eta, batch, h), barrier / d)
    _, gamma = heavy_ball_coefficients(eta, 0.9, "sgd")
    np.testing.assert_allclose(momentum_escape_exponent(barrier, eta, batch, h, 0.9, "sgd"), barrier / (d / gamma))
    np.testing.assert_allclose(momentum_escape_exponent(barrier, eta, batch, h, 0.9, "ema"), barrier / d)
    _, gam = adam_coefficients(eta, h / batch, eps=0.0)
    np.testing.assert_allclose(adam_escape_exponent(barrier, eta, batch, h), barrier / (d / gam))
    # on L_k the curvature at the minimum is k H: the log-log slope of the exponent in k is -p
    k = np.array([1.0, 4.0])
    fns = {"sgd": sgd_escape_exponent, "adai": adai_escape_exponent, "adam": adam_escape_exponent}
    for name, fn in fns.items():
        e = np.array([fn(barrier, eta, batch, h * kk) for kk in k])
        np.testing.assert_allclose(np.diff(np.log(e)) / np.diff(np.log(k)), -SHARPNESS_EXPONENTS[name])


def test_coefficients_match_the_optimizer_conventions():
    assert heavy_ball_coefficients(0.1, 0.9, "sgd") == (0.1, pytest.approx(0.1))
    mass, damping = heavy_ball_coefficients(0.1, 0.9, "ema")
    assert mass == pytest.approx(1.0) and damping == 1.0
    with pytest.raises(ValueError, match="style"):
        heavy_ball_coefficients(0.1, 0.9, "nesterov")
    # Q(t) by quadrature of e^{As} G G' e^{A's} agrees
    a, g = phase_space_linear_model([1.0], 0.5, 0.5, 0.1)
    _, c = linear_moments(a, g, [0.0, 0.0], 0.0, [0.1])
    grid = np.linspace(0, 0.1, 201)
    q = integrate.simpson(np.array([linalg.expm(a * s) @ g @ g.T @ linalg.expm(a.T * s) for s in grid]), x=grid, axis=0)
    np.testing.assert_allclose(c[0], q, rtol=1e-6, atol=1e-12)
