"""The improved (stochastic-closure) models of Adam and Adai and the discrete ablations they are diagnosed with."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.dynamics import AdaiLangevin, AdamLangevin, FixedHeun, make_dynamics, solve_sde
from escape.dynamics import SharedSquarePath
from escape.dynamics._base import StackedDiagonalOperator
from escape.landscapes import Quadratic, StyblinskiTang
from escape.optim import make_optimizer, moment_ablation
from escape.theory import adam_step_bound


def _gradients(n, dim, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, dim)) * jnp.array([0.3, 1.0, 2.0])[None, :dim]


@pytest.mark.parametrize("name", ["adam", "adai"])
def test_the_ablation_with_every_ingredient_on_is_the_optimizer(name):
    with jax.enable_x64(True):  # float64: the two write 1 - beta^t differently (1e-5 apart in float32)
        st = StyblinskiTang(dim=3, noise="hessian")
        theta = jnp.asarray(st.initial_point(), jnp.float64)
        reference = make_optimizer(name, learning_rate=0.01)
        ablated = moment_ablation(name, 0.01, landscape=st)
        s_ref, s_abl = reference.init(theta), ablated.init(theta)
        for g in np.asarray(_gradients(20, 3), np.float64):
            u_ref, s_ref = reference.update(jnp.asarray(g), s_ref, theta)
            u_abl, s_abl = ablated.update(jnp.asarray(g), s_abl, theta)
            np.testing.assert_allclose(u_abl, u_ref, rtol=1e-12, atol=1e-15)


def test_ablation_variants_change_only_their_ingredient():
    st = StyblinskiTang(dim=3, sharpness=2.0, noise="hessian")
    theta = st.initial_point() + 0.1
    mean_square = st.gradient_covariance_diag(theta, 1) + st.gradient(theta) ** 2
    gs = _gradients(5, 3, seed=1)
    # frozen: v is E g^2 at the start for ever, so the step is Adam's without bias correction on v = mean_square
    frozen = moment_ablation("adam", 0.01, landscape=st, v="frozen", bias_correction=False)
    state = frozen.init(theta)
    m = jnp.zeros(3)
    for g in gs:
        step, state = frozen.update(g, state, theta)
        m = 0.9 * m + 0.1 * g
        np.testing.assert_allclose(step, -0.01 * m / (jnp.sqrt(mean_square) + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(state.nu, mean_square, rtol=1e-7)
    # mean: the EMA is fed E[g^2 | theta], whatever g was
    mean = moment_ablation("adai", 0.01, landscape=st, v="mean")
    state = mean.init(theta)
    for g in gs:
        _, state = mean.update(g, state, theta)
    np.testing.assert_allclose(state.nu, (1 - 0.99**5) * mean_square, rtol=1e-5)
    # lagged: the first step is the optimizer's; the second uses v of step 1 only
    lagged = moment_ablation("adam", 0.01, landscape=st, lagged_v=True)
    state = lagged.init(theta)
    first, state = lagged.update(gs[0], state, theta)
    np.testing.assert_allclose(first, -0.01 * gs[0] / (jnp.abs(gs[0]) + 1e-8), rtol=1e-6)
    second, _ = lagged.update(gs[1], state, theta)
    m_hat = (0.9 * 0.1 * gs[0] + 0.1 * gs[1]) / (1 - 0.81)
    np.testing.assert_allclose(second, -0.01 * m_hat / (jnp.abs(gs[0]) + 1e-8), rtol=1e-5)
    with pytest.raises(ValueError, match="v must be one of"):
        moment_ablation("adam", 0.01, landscape=st, v="noisy")
    with pytest.raises(ValueError, match="no hyperparameter 'beta0'"):
        moment_ablation("adam", 0.01, landscape=st, beta0=0.1)
    with pytest.raises(ValueError, match="batch_size"):
        moment_ablation("adam", 0.01, landscape=st, batch_size=0)
    with pytest.raises(ValueError, match="dim >= 2"):
        moment_ablation("adai", 0.01, landscape=StyblinskiTang(dim=1, noise="hessian"), v="shifted")


def _euler(dyn, y, t, z):
    """One Ito Euler step of length eta with standard normals z of shape (2, dim)."""
    eta = dyn.learning_rate
    return y + eta * dyn.drift(t, y, None) + dyn.diffusion(t, y, None).mv(jnp.sqrt(eta) * z)


def test_one_euler_step_of_the_stochastic_closure_is_the_optimizers_buffer_update():
    # Row by row, an (Ito) Euler step of length eta is the optimizer's update at the step count T = t / eta + 1
    # with g = grad L + sqrt(C) z1, the fluctuation of g^2 Gaussianised (xi^2 - C -> sqrt(2) C z2) and scaled
    # by sqrt(v / E g^2) (the CIR form), and the inertia / scale taken from the v before the update.
    st = StyblinskiTang(dim=3, sharpness=2.0, noise="hessian")
    theta = st.initial_point() + jnp.array([0.05, -0.02, 0.01])
    eta, n = 0.01, 6
    t = eta * (n - 1)  # the step that makes iteration n
    grad, cov = st.gradient(theta), st.gradient_covariance_diag(theta, 1)
    mean_square = cov + grad**2
    z = jnp.array([[0.3, -1.2, 0.7], [1.1, 0.4, -0.5]])
    g = grad + jnp.sqrt(cov) * z[0]
    m0, v0 = jnp.array([0.2, -0.1, 0.3]), jnp.array([30.0, 20.0, 40.0])
    fluctuation = jnp.sqrt(v0 / mean_square) * (2 * grad * jnp.sqrt(cov) * z[0] + jnp.sqrt(2.0) * cov * z[1])
    adam = AdamLangevin(st, eta, closure="stochastic", co_update=False)
    y1 = _euler(adam, jnp.stack([theta, m0, v0]), t, z)
    k1, k2 = 0.1 / (1 - 0.9**n), 0.001 / (1 - 0.999**n)
    np.testing.assert_allclose(y1[1], m0 + k1 * (g - m0), rtol=1e-5)
    np.testing.assert_allclose(y1[2], v0 + k2 * (mean_square - v0) + k2 * fluctuation, rtol=1e-5)
    np.testing.assert_allclose(y1[0], theta - eta * m0 / (jnp.sqrt(v0) + 1e-8), rtol=1e-6)
    adai = AdaiLangevin(st, eta, closure="stochastic", co_update=False)
    log_p = jnp.log(jnp.array([0.5, 0.7, 0.2]))
    y1 = _euler(adai, jnp.stack([theta, m0, v0, log_p]), t, z)
    beta1 = jnp.clip(1 - 0.1 * v0 / v0.mean(), 0, 1 - 1e-3)
    k2 = 0.01 / (1 - 0.99**n)
    np.testing.assert_allclose(y1[1], beta1 * m0 + (1 - beta1) * g, rtol=1e-5)  # the optimizer's own m
    np.testing.assert_allclose(y1[2], v0 + k2 * (mean_square - v0) + k2 * fluctuation, rtol=1e-5)  # v_hat
    np.testing.assert_allclose(y1[3], log_p + jnp.log(beta1), rtol=1e-5)  # P <- P beta1
    np.testing.assert_allclose(y1[0], theta - eta * m0 / (1 - jnp.exp(log_p)), rtol=1e-6)  # step m / (1 - P)


def test_adams_model_step_respects_the_optimizers_bound():
    # |m_hat / sqrt(v_hat)| <= sqrt(sum a_k^2 / b_k) for Adam's EMA weights a (of m) and b (of v); the model
    # clips its step there (early on its independent m and v noise would otherwise allow any step).
    st = StyblinskiTang(dim=2, noise="hessian")
    adam = AdamLangevin(st, 0.01, b1=0.9, b2=0.999, closure="stochastic")
    for n in (1, 2, 10, 100, 5000):
        k = np.arange(1, n + 1)
        a = 0.1 * 0.9 ** (n - k) / (1 - 0.9**n)
        b = 0.001 * 0.999 ** (n - k) / (1 - 0.999**n)
        np.testing.assert_allclose(float(adam.step_bound(0.01 * (n - 1))), np.sqrt(np.sum(a**2 / b)), rtol=1e-5)
        g = np.asarray(_gradients(n, 2, seed=n))
        m_hat = (a[:, None] * g).sum(0)
        v_hat = (b[:, None] * g**2).sum(0)
        assert np.all(np.abs(m_hat) / np.sqrt(v_hat) <= np.sqrt(np.sum(a**2 / b)) * (1 + 1e-6))
    np.testing.assert_allclose(float(adam.step_bound(0.01 * 1e6)), adam_step_bound(0.9, 0.999), rtol=1e-5)  # Prop. 1
    y = jnp.stack([st.initial_point(), jnp.array([50.0, -50.0]), jnp.array([1e-6, 1e-6])])
    np.testing.assert_allclose(jnp.abs(adam.drift(0.0, y, None)[0]), 1.0, rtol=1e-5)  # first step: |step| <= 1


@pytest.mark.parametrize("name", ["adam", "adai"])
def test_ito_correction_is_half_the_noise_derivative_along_the_noise(name):
    # Reference: (1/2) sum over Brownian components k of (d sigma_k / dy) sigma_k, by forward-mode autodiff of
    # each column of the noise (component (j, i) drives coordinate i of every row through noise[:, j, i]).
    st = StyblinskiTang(dim=3, sharpness=1.5, noise="hessian")
    dyn = make_dynamics(name, st, batch_size=1, learning_rate=0.01, closure="stochastic")
    theta = st.initial_point() + jnp.array([0.1, -0.05, 0.02])
    y = dyn.initial_state(theta).at[1].set(jnp.array([0.5, -1.0, 0.2]))
    y = y.at[2].multiply(jnp.array([1.3, 0.8, 1.1]))
    if name == "adai":
        y = y.at[3].set(jnp.log(jnp.array([0.3, 0.6, 0.9])))
    t = 0.01 * 7
    noise = lambda y: dyn.moment_terms(t, y)[1]
    sigma = noise(y)
    reference = jnp.zeros_like(y)
    for j in range(2):
        for i in range(3):
            column = jnp.zeros_like(y).at[:, i].set(sigma[:, j, i])
            _, tangent = jax.jvp(lambda z: noise(z)[:, j, i], (y,), (column,))
            reference = reference.at[:, i].add(0.5 * tangent)
    np.testing.assert_allclose(dyn.ito_correction(t, y), reference, rtol=1e-5, atol=1e-7)


def test_stacked_operator_and_closure_switches():
    coefficient = jax.random.normal(jax.random.key(0), (3, 2, 4))
    op = StackedDiagonalOperator(coefficient)
    dw = jax.random.normal(jax.random.key(1), (2, 4))
    np.testing.assert_allclose(op.mv(dw).ravel(), op.as_matrix() @ dw.ravel(), rtol=1e-6)
    np.testing.assert_allclose(op.transpose().mv(op.mv(dw)), jnp.einsum("knd,kd->nd", coefficient, op.mv(dw)), rtol=1e-6)
    st = StyblinskiTang(dim=2, noise="hessian")
    dyn = make_dynamics("adai", st, batch_size=1, learning_rate=0.01, closure="stochastic")
    assert dyn.components == ("theta", "m", "v", "log_p") and dyn.brownian_shape().shape == (2, 2)
    assert make_dynamics("adam", st, batch_size=1, learning_rate=0.01, closure="stochastic").components == ("theta", "m", "v")
    assert make_dynamics("rmsprop", st, batch_size=1, learning_rate=0.01, closure="stochastic").bias_correction is False
    with pytest.raises(ValueError, match="bias_correction=True needs closure='stochastic'"):
        AdamLangevin(st, 0.01, closure="augmented", bias_correction=True)
    with pytest.raises(ValueError, match="closure must be one of"):
        AdaiLangevin(st, 0.01, closure="noisy")
    with pytest.raises(ValueError, match="co_update must be True or False"):
        AdaiLangevin(st, 0.01, closure="stochastic", co_update=1)


def test_stochastic_v_fluctuates_with_the_ema_variance_of_g_squared():
    # At the minimum of a quadratic with Hessian noise (theta barely moves: tiny eta), v_hat is an EMA of
    # g^2 = C z^2: stationary mean C and variance (rho / (2 - rho)) 2 C^2, to O(rho^2) the CIR's rho C^2
    # (rho = 1 - b2 = 0.02, 400 steps: 8 relaxation times of v, 16 of its variance, after the bias-corrected start). Monte Carlo over particles;
    # tolerances from the standard errors (the variance's: sqrt(2 / n) for a nearly Gaussian v) plus the
    # O(rho) difference between the two laws.
    q = Quadratic(hessian=[1.0, 4.0], noise="hessian")
    dyn = make_dynamics("adam", q, batch_size=1, learning_rate=1e-5, b2=0.98, closure="stochastic")
    n = 4000
    res = solve_sde(dyn, n_particles=n, t1=1e-5 * 400, dt=1e-5, key=jax.random.key(3), saveat_times=[1e-5 * 400],
                    escape=False)
    v = np.asarray(res.ys[-1, :, 2, :], np.float64)
    c = np.array([1.0, 4.0])
    rho = 0.02
    expected_var = rho / (2 - rho) * 2 * c**2
    se_mean = np.sqrt(expected_var / n)
    assert np.all(np.abs(v.mean(0) - c) < 4 * se_mean), (v.mean(0), c)
    ratio = v.var(0) / expected_var
    assert np.all(np.abs(ratio - 1) < 4 * np.sqrt(2 / n) + rho), ratio  # + O(rho) between CIR and the EMA


def test_shared_normal_draws_the_square_noise_from_the_kick():
    # (dW1, (dW1^2 - h) / sqrt(2 h)): the second increment is a function of the first with mean 0, variance h
    # and no correlation with it (so the same SDE as h -> 0), but it is the square of the same kick.
    q = Quadratic(hessian=[1.0, -2.0], noise="hessian")
    dyn = make_dynamics("adai", q, batch_size=1, learning_rate=0.01, closure="stochastic", shared_normal=True)
    base = diffrax.UnsafeBrownianPath((2, 50_000), jax.random.key(0))
    h = 0.01
    w = SharedSquarePath(base).evaluate(0.0, h)
    raw = base.evaluate(0.0, h)
    np.testing.assert_allclose(w[0], raw[0])
    np.testing.assert_allclose(w[1], (raw[0] ** 2 - h) / np.sqrt(2 * h), rtol=1e-5, atol=1e-7)
    # y = (z^2 - 1) / sqrt(2): Var(y^2) = 14 and Var(z y) = 5 set the standard errors of the two estimates
    n = 50_000
    assert abs(float(jnp.mean(w[1] ** 2)) / h - 1) < 4 * np.sqrt(14 / n)
    assert abs(float(jnp.mean(w[0] * w[1])) / h) < 4 * np.sqrt(5 / n)
    terms = dyn.terms(base)
    assert isinstance(terms.terms[1].control, SharedSquarePath)
    with pytest.raises(ValueError, match="shared_normal=True needs closure='stochastic'"):
        AdaiLangevin(q, 0.01, closure="augmented", shared_normal=True)


def test_adam_model_guards_a_vanishing_second_moment():
    # b2 = 0 (v_hat = g^2): no finite bound, no division by zero; v = 0 with eps = 0: a zero step, not NaN;
    # the first-order co-update term is dropped where v lies far below its mean.
    st = StyblinskiTang(dim=2, noise="hessian")
    theta = st.initial_point() + 0.1
    for kwargs in ({"b2": 0.0}, {"eps": 0.0}):
        adam = AdamLangevin(st, 0.01, closure="stochastic", **kwargs)
        y = jnp.stack([theta, jnp.array([0.3, -0.2]), jnp.array([0.0, 1e-12])])
        drift = adam.drift(0.05, y, None)
        assert np.all(np.isfinite(np.asarray(drift))), drift
    adam = AdamLangevin(st, 0.01, closure="stochastic")
    plain = AdamLangevin(st, 0.01, closure="stochastic", co_update=False)
    mean_square = st.gradient_covariance_diag(theta, 1) + st.gradient(theta) ** 2
    m = jnp.array([0.3, -0.2])
    tiny = jnp.stack([theta, m, 1e-10 * mean_square])  # far below its mean: no first-order term
    np.testing.assert_allclose(adam.drift(100.0, tiny, None)[0], plain.drift(100.0, tiny, None)[0])
    at_mean = jnp.stack([theta, m, mean_square])  # at its mean: the term k1 rho G C / (sqrt(v) s^2)
    s = jnp.sqrt(mean_square) + 1e-8
    k1, k2 = 0.1 / (1 - 0.9**10001), 0.001 / (1 - 0.999**10001)
    term = k1 * k2 * st.gradient(theta) * st.gradient_covariance_diag(theta, 1) / (jnp.sqrt(mean_square) * s**2)
    np.testing.assert_allclose(adam.drift(100.0, at_mean, None)[0] - plain.drift(100.0, at_mean, None)[0], term,
                               rtol=1e-3)
