"""Continuous-time models: hyperparameter mapping, linear-model oracle, strong orders, escape times, solver paths."""

from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from escape import _random
from escape.dynamics import (
    AdaiLangevin,
    AdamLangevin,
    FixedHeun,
    HeavyBallLangevin,
    make_dynamics,
    SGDLangevin,
    solve_sde,
)
from escape.landscapes import AbstractNoise, DoubleWell, Quadratic, StyblinskiTang
from escape.optim import make_optimizer
from escape.simulate import escape_times
from escape.stats import censored_rate
from escape.theory import (
    adai_coefficients,
    adam_coefficients,
    heavy_ball_coefficients,
    linear_moments,
    mean_first_passage_1d,
    phase_space_linear_model,
    sgd_linear_model,
)


class ProportionalNoise(AbstractNoise):
    """Gaussian gradient noise with standard deviation ``scale |theta|``: SGD on a quadratic becomes a
    geometric Brownian motion, whose exact solution given W(t) is known (multiplicative-noise oracle)."""

    name: ClassVar[str] = "proportional"
    scale: float

    def n_words(self, landscape, batch_size):
        return landscape.dim

    def gradient(self, landscape, theta, words, batch_size):
        return landscape.gradient(theta) + self.scale * jnp.abs(theta) * _random.normal(words)

    def covariance_diag(self, landscape, theta, batch_size):
        return self.scale**2 * theta**2


# ------------------------------------------------------------------------------------------------
# Hyperparameter mapping


def _euler_step(dynamics, y, z, dt):
    """One Euler-Maruyama step with standard normals ``z`` (shape (dim,))."""
    return y + dynamics.drift(0.0, y, None) * dt + dynamics.diffusion(0.0, y, None).mv(jnp.sqrt(dt) * z)


def test_one_euler_step_of_length_eta_is_the_optimizers_buffer_update():
    # With g = grad L - sqrt(C) z (the SDE's +sqrt(2D) dW is the optimizer's -eta xi), an Euler step of
    # length eta gives theta - eta g (SGD) and, on the velocity row, r' = -m' for the optimizer's buffer m'
    # (r = displacement per unit time = -m / s).
    st = StyblinskiTang(dim=3, sharpness=2.0, noise="hessian")
    theta = st.initial_point() + jnp.array([0.05, -0.02, 0.01])
    z = jnp.array([0.3, -1.2, 0.7])
    eta, batch = 0.01, 2
    g = st.gradient(theta) - jnp.sqrt(st.gradient_covariance_diag(theta, batch)) * z
    # SGD
    y1 = _euler_step(SGDLangevin(st, eta, batch), theta[None], z, eta)
    np.testing.assert_allclose(y1[0], theta - eta * g, rtol=1e-6)
    r0 = jnp.array([0.4, -0.1, 0.2])
    cases = []
    for style, beta3 in (("sgd", 1.0), ("ema", 0.1)):
        dyn = HeavyBallLangevin(st, eta, batch, beta=0.9, style=style)
        cases.append((dyn, 0.9 * (-r0) + beta3 * g, jnp.ones(3)))
    adam = AdamLangevin(st, eta, batch, b1=0.9, eps=1e-8, v_point=theta)
    s = jnp.sqrt(adam.v_frozen) + 1e-8
    cases.append((adam, 0.9 * (-r0 * s) + 0.1 * g, s))  # Adam: m = -r s
    adai = AdaiLangevin(st, eta, batch, beta0=0.1, eps=1e-3, v_point=theta)
    b1 = 1 - np.clip(0.1 * adai.v_frozen / adai.v_frozen.mean(), 1e-3, 1)
    cases.append((adai, b1 * (-r0) + (1 - b1) * g, jnp.ones(3)))
    for dyn, m_new, s in cases:
        y1 = _euler_step(dyn, jnp.stack([theta, r0]), z, eta)
        np.testing.assert_allclose(y1[1], -m_new / s, rtol=2e-5, err_msg=repr(dyn))
        np.testing.assert_allclose(y1[0], theta + eta * r0, rtol=1e-6)


def test_coefficients_agree_with_the_theory_mappings():
    q = Quadratic([0.5, -2.0, 8.0], noise="hessian")
    eta, batch = 0.05, 4
    y = jnp.zeros((2, 3))
    c = np.abs([0.5, -2.0, 8.0]) / batch
    for style in ("sgd", "ema"):
        m, g, d = HeavyBallLangevin(q, eta, batch, beta=0.8, style=style).coefficients(y)
        mass, damping = heavy_ball_coefficients(eta, 0.8, style)
        np.testing.assert_allclose(m, mass, rtol=1e-6)
        np.testing.assert_allclose(g, damping, rtol=1e-6)
        np.testing.assert_allclose(d, eta * c / 2, rtol=1e-6)
    m, g, d = AdamLangevin(q, eta, batch, b1=0.8, eps=1e-6).coefficients(y)
    mass, damping = adam_coefficients(eta, c, b1=0.8, eps=1e-6)
    np.testing.assert_allclose(m, mass, rtol=1e-6)
    np.testing.assert_allclose(g, damping, rtol=1e-6)
    m, g, d = AdaiLangevin(q, eta, batch, beta0=0.3, eps=1e-3).coefficients(y)
    mass, damping = adai_coefficients(eta, c, beta0=0.3, eps=1e-3)
    np.testing.assert_allclose(m, mass, rtol=1e-6)
    np.testing.assert_allclose(g, damping, rtol=1e-6)


def test_augmented_closure_relaxes_v_to_its_mean_square_gradient():
    q = Quadratic([1.0, 4.0], noise="hessian")
    eta, batch = 0.1, 2
    for cls, kw in ((AdamLangevin, dict(b2=0.99)), (AdaiLangevin, dict(beta2=0.99))):
        dyn = cls(q, eta, batch, closure="augmented", **kw)
        assert dyn.components == ("theta", "r", "v")
        theta = jnp.array([0.5, -0.25])
        y = dyn.initial_state(theta)
        target = np.array([1.0, 4.0]) / batch + (np.array([1.0, 4.0]) * np.asarray(theta)) ** 2
        np.testing.assert_allclose(y[2], target, rtol=1e-6)  # starts at E g^2
        y = y.at[2].set(jnp.array([3.0, 0.1]))
        dv = dyn.drift(0.0, y, None)[2]
        np.testing.assert_allclose(dv, (1 - 0.99) / eta * (target - np.array([3.0, 0.1])), rtol=1e-5)
        assert not dyn.additive_noise()  # the noise coefficient depends on v
        assert isinstance(dyn.default_solver(), FixedHeun)
    assert AdamLangevin(q, eta, batch).additive_noise()
    assert isinstance(AdamLangevin(q, eta, batch).default_solver(), diffrax.ShARK)
    assert isinstance(SGDLangevin(StyblinskiTang(dim=2, noise="hessian"), eta).default_solver(), diffrax.Euler)


def test_make_dynamics_takes_the_optimizers_names_and_hyperparameters():
    q = Quadratic([1.0, -1.0])
    dyn = make_dynamics("momentum-ema", q, batch_size=3, learning_rate=0.02, beta=0.8)
    assert isinstance(dyn, HeavyBallLangevin) and dyn.style == "ema" and dyn.beta == 0.8 and dyn.batch_size == 3
    rms = make_dynamics("rmsprop", q, batch_size=1, learning_rate=0.01, decay=0.95)
    assert isinstance(rms, AdamLangevin) and rms.b1 == 0.0 and rms.b2 == 0.95
    assert make_dynamics("adai", q, batch_size=1, learning_rate=0.1, closure="augmented").closure == "augmented"
    with pytest.raises(ValueError, match="no hyperparameter 'b1'"):
        make_dynamics("sgd", q, batch_size=1, learning_rate=0.1, b1=0.9)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_dynamics("lion", q, batch_size=1, learning_rate=0.1)
    with pytest.raises(ValueError, match="closure"):
        AdamLangevin(q, 0.1, closure="frozen")
    with pytest.raises(ValueError, match="learning_rate"):
        SGDLangevin(q, -0.1)


# ------------------------------------------------------------------------------------------------
# Linear-model oracle (quadratic landscape, constant diffusion): exact Gaussian law at every time


def _moment_z_scores(x, mean, cov):
    """z-scores of the sample mean and covariance of ``x`` (times, n, k) against the exact Gaussian law.

    Standard errors of a Gaussian sample: ``sqrt(S_ii / n)`` for the mean of coordinate i and
    ``sqrt((S_ii S_jj + S_ij^2) / n)`` for the covariance entry ij.
    """
    n = x.shape[1]
    mu = x.mean(axis=1)
    dev = x - mu[:, None]
    s = np.einsum("tpi,tpj->tij", dev, dev) / (n - 1)
    var = np.diagonal(cov, axis1=1, axis2=2)
    z_mean = (mu - mean) / np.sqrt(var / n)
    se_cov = np.sqrt((var[:, :, None] * var[:, None, :] + cov**2) / n)
    iu = np.triu_indices(cov.shape[1])
    z_cov = ((s - cov) / se_cov)[:, iu[0], iu[1]]
    return z_mean, z_cov


LINEAR_CASES = {
    # name: (dynamics factory, hessian, init, dt)
    "sgd-saddle-isotropic": (lambda q: SGDLangevin(q, 0.1), ([-0.5, 2.0], "isotropic"), [0.5, -0.5], 0.01),
    "momentum-sgd": (lambda q: HeavyBallLangevin(q, 0.1, 1, beta=0.9, style="sgd"), ([0.5, 2.0], "hessian"), [1.0, 1.0], 0.005),
    "momentum-ema": (lambda q: HeavyBallLangevin(q, 0.1, 1, beta=0.9, style="ema"), ([0.5, 2.0], "hessian"), [1.0, 1.0], 0.005),
}


def _linear_model(dyn, h):
    """(A, G) of the model from the theory §3 mapping (independent of the dynamics' own coefficients)."""
    c = dyn.landscape.gradient_covariance_diag(jnp.zeros(2), dyn.batch_size)
    d = dyn.learning_rate * np.asarray(c, np.float64) / 2
    if isinstance(dyn, SGDLangevin):
        return sgd_linear_model(h, d)
    mass, damping = heavy_ball_coefficients(dyn.learning_rate, dyn.beta, dyn.style)
    return phase_space_linear_model(h, mass, damping, d)


@pytest.mark.parametrize("case", sorted(LINEAR_CASES))
def test_sde_moments_match_the_exact_linear_model(case):
    factory, (h, noise), init, dt = LINEAR_CASES[case]
    q = Quadratic(h, noise=noise, sigma=1.0 if noise == "isotropic" else None, escape_radius=100.0)
    dyn = factory(q)
    assert dyn.additive_noise() and isinstance(dyn.default_solver(), diffrax.ShARK)
    times = np.array([0.5, 1.0, 2.0])
    n = 4000
    res = solve_sde(dyn, n_particles=n, t1=2.0, dt=dt, key=jax.random.key(11), saveat_times=times, init=jnp.array(init))
    k = len(dyn.components)
    x = np.asarray(res.ys, np.float64).reshape(len(times), n, k * 2)  # (theta_1, theta_2, r_1, r_2)
    a, g = _linear_model(dyn, h)
    mean0 = np.concatenate([init, np.zeros(2 * (k - 1))])
    mean, cov = linear_moments(a, g, mean0, 0.0, times)
    z_mean, z_cov = _moment_z_scores(x, mean, cov)
    print(case, "max |z| mean", np.abs(z_mean).max(), "cov", np.abs(z_cov).max())
    assert np.abs(z_mean).max() < 3.0
    assert np.abs(z_cov).max() < 3.0
    assert not np.any(np.asarray(res.escaped))


def _discrete_moments(h, c, eta, beta, beta3, theta0, steps):
    """Exact mean and variance of theta after ``steps`` of m <- beta m + beta3 g, theta <- theta - eta m,
    g = h theta + xi, Var xi = c (one coordinate; SGD is beta = 0, beta3 = 1)."""
    f = np.array([[1 - eta * beta3 * h, -eta * beta], [beta3 * h, beta]])
    b = np.array([-eta * beta3, beta3])
    mu, s = np.array([theta0, 0.0]), np.zeros((2, 2))
    for _ in range(steps):
        mu, s = f @ mu, f @ s @ f.T + c * np.outer(b, b)
    return mu[0], s[0, 0]


DISCRETE_CASES = {"sgd": (0.0, 1.0, None), "momentum": (0.9, 1.0, "sgd"), "momentum-ema": (0.9, 0.1, "ema")}


def _continuous_moments(h, c, eta, beta, style, t):
    if style is None:
        return linear_moments(*sgd_linear_model(h, eta * c / 2), np.ones(2), 0.0, [t])
    model = phase_space_linear_model(h, *heavy_ball_coefficients(eta, beta, style), eta * c / 2)
    return linear_moments(*model, np.array([1.0, 1.0, 0.0, 0.0]), 0.0, [t])


@pytest.mark.parametrize("name", sorted(DISCRETE_CASES))
def test_discrete_optimizers_match_the_linear_model_up_to_order_eta(name):
    # Stated allowance, for theta(0) = 1, beta = 0.9, h <= 2, t <= 2:
    #   |mean_discrete - mean| <= 1.5 eta,   |var_discrete - var| <= 2 eta var.
    # It is O(eta): the exact discrete recursion satisfies it with the same constants at eta and eta / 2
    # (measured maxima 0.94 eta and 1.34 eta); the engine's runs then match within 3 SE + the allowance.
    beta, beta3, style = DISCRETE_CASES[name]
    h, batch, eta, n = np.array([0.5, 2.0]), 1, 0.025, 4000
    c = h / batch
    hyper = {} if style is None else {"beta": beta}
    q = Quadratic(h, noise="hessian")
    for t in (1.0, 2.0):
        for e in (eta, eta / 2):
            m_c, c_c = _continuous_moments(h, c, e, beta, style, t)
            for i in range(2):
                md, vd = _discrete_moments(h[i], c[i], e, beta, beta3, 1.0, int(round(t / e)))
                assert abs(md - m_c[0, i]) <= 1.5 * e, (name, t, e, i)
                assert abs(vd - c_c[0, i, i]) <= 2 * e * c_c[0, i, i], (name, t, e, i)
        m_c, c_c = _continuous_moments(h, c, eta, beta, style, t)
        opt = make_optimizer(name, learning_rate=eta, **hyper)
        steps = int(round(t / eta))
        res = escape_times(q, opt, batch_size=batch, n_particles=n, max_steps=steps, key=jax.random.key(5), init=jnp.ones(2))
        theta = np.asarray(res.final, np.float64)
        for i in range(2):
            var = c_c[0, i, i]
            assert abs(theta[:, i].mean() - m_c[0, i]) <= 3 * np.sqrt(var / n) + 1.5 * eta
            assert abs(theta[:, i].var() - var) <= 3 * var * np.sqrt(2 / n) + 2 * eta * var


# ------------------------------------------------------------------------------------------------
# Strong order of each solver the models use (diffrax test/helpers.py style: slope of log error vs log dt
# with one Brownian path per particle shared by every step size)

# problem: Brownian grid level g (the path is exact on the dyadic grid of [0, 1] with 2^g intervals; the
# fine-step references use dt = 2^-g)
_GRIDS = {"well": 14, "gbm": 12}


class GridBrownian(eqx.Module):
    """An exact Brownian path with its space-time Levy area on the dyadic grid of [0, 1], per particle.

    Fine increments dW_j ~ N(0, h) and Levy areas H_j ~ N(0, h / 12) (independent) give W(t_k) and
    I(t_k) = int_0^{t_k} W du = sum_j h (W(t_j) + dW_j / 2 + H_j) exactly; then over any grid interval
    [s, t], W = W(t) - W(s) and H = (I(t) - I(s) - W(s)(t - s)) / (t - s) - W / 2 exactly. A
    VirtualBrownianTree does the same (tested by the solver paths test below) but is ~10x slower.
    """

    w: jax.Array
    integral: jax.Array
    levy_area: type = eqx.field(static=True)

    def __init__(self, n, dim, grid, seed, levy_area):
        rng = np.random.default_rng(seed)
        h = 2.0**-grid
        dw = np.sqrt(h) * rng.standard_normal((n, 2**grid, dim))
        hh = np.sqrt(h / 12) * rng.standard_normal((n, 2**grid, dim))
        w = np.concatenate([np.zeros((n, 1, dim)), np.cumsum(dw, axis=1)], axis=1)
        integral = np.concatenate([np.zeros((n, 1, dim)), np.cumsum(h * (w[:, :-1] + dw / 2 + hh), axis=1)], axis=1)
        self.w, self.integral, self.levy_area = jnp.asarray(w), jnp.asarray(integral), levy_area

    def __call__(self, particle):
        return _GridPath(self, particle, self.levy_area)


class _GridPath(diffrax.AbstractBrownianPath):
    grid: GridBrownian
    particle: jax.Array
    levy_area: type = eqx.field(static=True)

    @property
    def t0(self):
        return 0.0

    @property
    def t1(self):
        return 1.0

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        n = self.grid.w.shape[1] - 1
        k0 = jnp.rint(t0 * n).astype(jnp.int32)
        k1 = jnp.rint(t1 * n).astype(jnp.int32)
        w0, w1 = self.grid.w[self.particle, k0], self.grid.w[self.particle, k1]
        w = w1 - w0
        if not use_levy:
            return w
        dt = t1 - t0
        if self.levy_area is diffrax.BrownianIncrement:
            return diffrax.BrownianIncrement(dt=dt, W=w)
        i0, i1 = self.grid.integral[self.particle, k0], self.grid.integral[self.particle, k1]
        return diffrax.SpaceTimeLevyArea(dt=dt, W=w, H=(i1 - i0 - w0 * dt) / dt - w / 2)


_SGD = lambda q: SGDLangevin(q, 0.5)
_HB = lambda q: HeavyBallLangevin(q, 0.5, beta=0.5, style="ema")
_ADAM = lambda q: AdamLangevin(q, 0.5, b1=0.5, b2=0.5, closure="augmented")
STRONG_CASES = {
    # name: (problem, dynamics, solver, reference ("exact" or a fine-step solver), order, log2(1/dt) levels)
    "sgd-additive-shark": ("well", _SGD, diffrax.ShARK(), diffrax.ShARK(), 1.5, np.arange(5, 11)),
    "sgd-additive-euler": ("well", _SGD, diffrax.Euler(), diffrax.ShARK(), 1.0, np.arange(5, 11)),
    # Euler's h^1 error term still shows at coarse steps on the GBM: finer levels, exact reference
    "sgd-multiplicative-euler": ("gbm", _SGD, diffrax.Euler(), "exact", 0.5, np.arange(6, 12)),
    "sgd-multiplicative-itomilstein": ("gbm", _SGD, diffrax.ItoMilstein(), "exact", 1.0, np.arange(3, 9)),
    "momentum-multiplicative-heun": ("gbm", _HB, FixedHeun(), diffrax.Euler(), 1.0, np.arange(3, 9)),
    "adam-augmented-heun": ("gbm", _ADAM, FixedHeun(), diffrax.Euler(), 1.0, np.arange(3, 9)),
}


@pytest.mark.parametrize("case", sorted(STRONG_CASES))
def test_strong_order_of_each_solver(case):
    # "well" (SGD on a double well with isotropic noise) has additive noise and a nonlinear drift (on a
    # quadratic ShARK is exact to order 2, which would hide its order 1.5); "gbm" is the quadratic with
    # noise standard deviation s |theta|: SGD is then a geometric Brownian motion with an exact solution,
    # and the phase-space models have theta-dependent (multiplicative) noise on r. The phase-space references
    # are fine-step Ito (Euler) solutions: Heun (Stratonovich) converging to them at order 1 confirms that
    # the Ito-Stratonovich correction vanishes for these models.
    problem, factory, solver, reference, order, levels = STRONG_CASES[case]
    with jax.enable_x64(True):
        grid = _GRIDS[problem]
        if problem == "well":
            q, init = DoubleWell(barrier=1.0, noise="isotropic", sigma=2.0), jnp.array([-0.5], jnp.float64)
        else:
            q, init = Quadratic([1.0, 3.0], noise=ProportionalNoise(2.0**0.5), escape_radius=1e3), jnp.array([1.0, 0.5], jnp.float64)
        dyn = factory(q)
        n, dim = 256, q.dim
        levy_area = lambda solver: (
            diffrax.SpaceTimeLevyArea
            if getattr(solver, "minimal_levy_area", None) is diffrax.AbstractSpaceTimeLevyArea
            else diffrax.BrownianIncrement
        )
        path = GridBrownian(n, dim, grid, seed=3, levy_area=levy_area(solver))
        kw = dict(n_particles=n, t1=1.0, key=jax.random.key(0), brownian=path, escape=False, init=init)
        if reference == "exact":
            h, s2, eta = jnp.array([1.0, 3.0]), 2.0, dyn.learning_rate
            ref = (init[None] * jnp.exp(-(h[None] + eta * s2 / 2) + jnp.sqrt(eta * s2) * path.w[:, -1]))[:, None, :]
        else:
            ref_path = GridBrownian(n, dim, grid, seed=3, levy_area=levy_area(reference))  # same W
            ref = solve_sde(dyn, dt=2.0**-grid, solver=reference, **{**kw, "brownian": ref_path}).final
        errors = []
        for level in levels:
            y = solve_sde(dyn, dt=2.0**-level, solver=solver, **kw).final
            errors.append(float(jnp.mean(jnp.max(jnp.abs(y - ref), axis=(1, 2)))))
    slope = np.polyfit(-levels * np.log(2.0), np.log(errors), 1)[0]
    print(case, "errors", np.array(errors), "slope", slope)
    assert abs(slope - order) < 0.15


# ------------------------------------------------------------------------------------------------
# Escape times, solver paths and determinism


def test_sde_escape_rate_matches_the_exact_mean_first_passage_time():
    # Overdamped Langevin on the double well, D = eta sigma^2 / 2 = 1/3 (barrier / D = 3): the exact 1-d
    # mean first-passage time to the other minimum (no low-temperature assumption) against the censored
    # MLE from escape.stats, read in iterations T = t / eta like the discrete engine's.
    eta, sigma = 0.1, np.sqrt(20 / 3)
    well = DoubleWell(barrier=1.0, noise="isotropic", sigma=sigma)
    dyn = SGDLangevin(well, eta)
    res = solve_sde(dyn, n_particles=1000, t1=60.0, dt=0.01, key=jax.random.key(2))
    rate = censored_rate(res)
    d = eta * sigma**2 / 2
    exact = mean_first_passage_1d(lambda x: (x * x - 1.0) ** 2, d, -1.0, 1.0, lower=-3.0) / eta  # = well.loss
    print("escapes", rate.events, "rate * exact time", rate.rate * exact, "1/sqrt(d)", rate.log_rate_se)
    assert rate.events > 800 and rate.diverged == 0
    assert abs(np.log(rate.rate * exact)) < 3 * rate.log_rate_se
    fp = res.first_passage[np.asarray(res.escaped)]
    assert np.all(fp <= res.steps_run) and res.steps_run == pytest.approx(600.0)
    np.testing.assert_allclose(res.first_passage_time, np.where(res.first_passage >= 0, eta * res.first_passage, -1))


def test_scan_and_diffeqsolve_agree_on_the_same_brownian_path():
    # The fast loop is diffrax's own solver step: on one VirtualBrownianTree per particle it reproduces
    # jax.vmap(diffrax.diffeqsolve) with a boolean diffrax.Event (times up to float rounding of t).
    saddle = Quadratic([-1.0, 2.0], noise="hessian", escape_radius=0.5)
    dyn = HeavyBallLangevin(saddle, 0.1, 1, beta=0.9, style="sgd")
    kw = dict(n_particles=32, t1=1.0, dt=0.02, key=jax.random.key(4), brownian="virtual", saveat_times=[0.5])
    kw["solver"] = diffrax.Euler()  # no Levy area: the tree compiles faster
    fast = solve_sde(dyn, **kw)
    slow = solve_sde(dyn, method="diffeqsolve", **kw)
    esc = np.asarray(fast.escaped)
    assert 5 < esc.sum() < 32
    np.testing.assert_array_equal(esc, np.asarray(slow.escaped))
    np.testing.assert_array_equal(fast.first_passage_step, slow.first_passage_step)
    late = ~esc | (np.asarray(fast.first_passage_time) > 0.5)  # diffeqsolve saves inf after its event
    assert late.sum() > 5
    np.testing.assert_allclose(fast.ys[:, late], slow.ys[:, late], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast.final[~esc], slow.final[~esc], rtol=1e-4, atol=1e-5)


def test_counter_noise_does_not_depend_on_chunks_saves_or_particle_count():
    saddle = Quadratic([-1.0, 2.0, -0.5], noise="hessian", escape_radius=1.0)
    dyn = make_dynamics("adam", saddle, batch_size=1, learning_rate=0.1)
    kw = dict(t1=20.0, dt=0.05, key=jax.random.key(7))
    a = solve_sde(dyn, n_particles=48, chunk_size=64, **kw)
    b = solve_sde(dyn, n_particles=48, chunk_size=1000, saveat_times=[1.0, 2.5], **kw)
    c = solve_sde(dyn, n_particles=80, chunk_size=37, **kw)
    assert 10 < np.asarray(a.escaped).sum()
    np.testing.assert_array_equal(a.first_passage_step, b.first_passage_step)
    np.testing.assert_array_equal(a.first_passage_step, c.first_passage_step[:48])
    d = solve_sde(dyn, n_particles=48, **{**kw, "key": jax.random.key(8)})
    assert not np.array_equal(a.first_passage_step, d.first_passage_step)
    # the estimators read the result; an escape at the very last step is not beyond the horizon
    rate = censored_rate(a)
    assert rate.events == int(np.asarray(a.escaped).sum()) and a.t_run <= kw["t1"]
    last = eqx.tree_at(lambda r: r.first_passage_step, a, jnp.full(48, a.n_steps, jnp.int32))
    assert censored_rate(last).events == 48


def test_solve_sde_saves_the_msd_and_checks_its_arguments():
    q = Quadratic([-1.0], noise="isotropic", sigma=1.0, escape_radius=1e3)
    dyn = SGDLangevin(q, 0.1)
    res = solve_sde(dyn, n_particles=2000, t1=1.0, dt=0.01, key=jax.random.key(0), saveat_times=[0.0, 0.5, 1.0], escape=False)
    assert res.ys.shape == (3, 2000, 1, 1) and res.msd.shape == (3, 1)
    assert float(res.msd[0, 0]) == 0.0 and res.n_steps == 100
    # Theorem 1 (exact for this OU process): D / |H| (exp(2 |H| t) - 1), D = eta sigma^2 / 2
    exact = 0.05 * np.expm1(2 * np.array([0.5, 1.0]))
    np.testing.assert_allclose(np.asarray(res.msd[1:, 0]), exact, rtol=3 * np.sqrt(2 / 2000))
    with pytest.raises(ValueError, match="multiples of dt"):
        solve_sde(dyn, n_particles=2, t1=1.0, dt=0.3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="saveat_times"):
        solve_sde(dyn, n_particles=2, t1=1.0, dt=0.1, key=jax.random.key(0), saveat_times=[0.5, 0.2])
    with pytest.raises(ValueError, match="init"):
        solve_sde(dyn, n_particles=2, t1=1.0, dt=0.1, key=jax.random.key(0), init=jnp.zeros(3))
    with pytest.raises(ValueError, match="brownian"):
        solve_sde(dyn, n_particles=2, t1=1.0, dt=0.1, key=jax.random.key(0), brownian="sobol")


@pytest.mark.parametrize("name", ["momentum", "adam", "adai"])
def test_fixed_heun_is_diffrax_heun(name):
    """FixedHeun (the phase-space default) takes diffrax.Heun's steps: same path, float64 round-off apart."""
    with jax.enable_x64(True):
        land = StyblinskiTang(dim=3, sharpness=1.0, noise="hessian")
        dyn = make_dynamics(name, land, batch_size=1, learning_rate=1e-2)
        init = jnp.asarray(land.initial_point(), jnp.float64)
        kw = dict(n_particles=16, t1=2.0, dt=1e-2, key=jax.random.key(3), escape=False, init=init)
        a = solve_sde(dyn, solver=diffrax.Heun(), **kw).final
        b = solve_sde(dyn, solver=FixedHeun(), **kw).final
        assert bool(jnp.all(jnp.isfinite(a)))
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-10, atol=1e-12)
