"""Stochastic modified equations of order 2 (Li, Tai and E) for SGD and heavy ball: weak order in eta.

On ``L = theta' H theta / 2`` (diagonal ``H``) with additive Gaussian gradient noise the discrete optimizer
is a linear recursion and its continuous model a linear SDE, so both laws are Gaussian with exact moments:
the optimizer's by the recursion (NumPy float64), the model's by ``escape.theory.linear_moments`` with
``(A, G)`` and the initial-state map read from the model object (``jax.jacfwd`` of ``drift`` and
``initial_state``, ``diffusion(...).as_matrix()``): the code the solver runs. The errors at a fixed time
``t = eta K`` over a geometric range of ``eta`` must fall as ``eta^order``.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.dynamics import HeavyBallLangevin, make_dynamics, SGDLangevin
from escape.landscapes import AbstractLandscape, AbstractNoise, IsotropicNoise, Quadratic, StyblinskiTang
from escape.modified import horizon_step_sizes, order_slope
from escape.optim import make_optimizer
from escape.theory import linear_moments

H = np.array([0.5, 2.0])  # float32-exact: Quadratic keeps its Hessian in float32
MEAN0 = np.array([1.0, -0.5])
COV0 = np.array([[0.5, 0.2], [0.2, 0.3]])
HORIZON = 1.0
ETAS = horizon_step_sizes(HORIZON, 1 / 512, 1 / 32, 6)  # 1/32 ... 1/512, each HORIZON / integer

# name: (hyperparameters, beta3, noise, batch size, constant gradient-noise variance per coordinate)
CASES = {
    "sgd": ({}, 1.0, dict(noise="isotropic", sigma=1.5), 1, np.full(2, 2.25)),
    "momentum": ({"beta": 0.5}, 1.0, dict(noise="hessian"), 2, H / 2),
    "momentum-ema": ({"beta": 0.5}, 0.5, dict(noise="hessian"), 2, H / 2),
}


def _recursion(name, eta):
    """``(F, b)`` of ``z' = F z + b xi``, ``z = theta`` (SGD) or ``(theta, m)`` (heavy ball), ``g = H theta + xi``."""
    hyper, beta3 = CASES[name][:2]
    eye, h = np.eye(H.size), np.diag(H)
    if name == "sgd":
        return eye - eta * h, -eta * eye
    beta = hyper["beta"]  # m' = beta m + beta3 g,  theta' = theta - eta m'
    f = np.block([[eye - eta * beta3 * h, -eta * beta * eye], [beta3 * h, beta * eye]])
    return f, np.vstack([-eta * beta3 * eye, beta3 * eye])


def _discrete_moments(name, eta, steps):
    """Exact mean and covariance of ``theta`` after ``steps`` iterations from ``N(MEAN0, COV0)``, ``m = 0``."""
    f, b = _recursion(name, eta)
    n, d = f.shape[0], H.size
    mean, cov = np.zeros(n), np.zeros((n, n))
    mean[:d], cov[:d, :d] = MEAN0, COV0
    noise = b @ np.diag(CASES[name][4]) @ b.T
    for _ in range(steps):
        mean, cov = f @ mean, f @ cov @ f.T + noise
    return mean[:d], cov[:d, :d]


def _model_moments(dyn, t):
    """Exact mean and covariance of ``theta(t)`` of the model, its linear system read off the model itself."""
    d = H.size
    theta0 = jnp.asarray(MEAN0)
    y0 = dyn.initial_state(theta0)
    n = y0.size
    a = np.asarray(jax.jacfwd(lambda y: dyn.drift(0.0, y, None))(y0)).reshape(n, n)
    g = np.asarray(dyn.diffusion(0.0, y0, None).as_matrix())  # (n, d): rows theta_1..d, then r_1..d
    start = np.asarray(jax.jacfwd(dyn.initial_state)(theta0)).reshape(n, d)  # initial_state is linear here
    mean, cov = linear_moments(a, g, np.asarray(y0).ravel(), start @ COV0 @ start.T, [t])
    return mean[0, :d], cov[0, :d, :d]


def _errors(name, order):
    hyper, _, noise, batch, _ = CASES[name]
    q = Quadratic(H, **noise)
    mean_err, cov_err = [], []
    for eta in ETAS:
        dyn = make_dynamics(name, q, batch_size=batch, learning_rate=float(eta), order=order, **hyper)
        assert dyn.order == order and dyn.additive_noise()
        md, cd = _discrete_moments(name, eta, int(round(HORIZON / eta)))
        mm, cm = _model_moments(dyn, HORIZON)
        mean_err.append(np.linalg.norm(md - mm))
        cov_err.append(np.linalg.norm(cd - cm))  # Frobenius
    return np.array(mean_err), np.array(cov_err)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_weak_order_of_the_modified_equation_on_the_exact_linear_model(name, order):
    with jax.enable_x64(True):
        mean_err, cov_err = _errors(name, order)
    slopes = order_slope(ETAS, mean_err), order_slope(ETAS, cov_err)
    print(name, order, "slopes mean %.3f cov %.3f" % slopes, "at eta = 1/512: %.2e %.2e" % (mean_err[-1], cov_err[-1]))
    assert abs(slopes[0] - order) <= 0.2, (name, order, slopes)
    assert abs(slopes[1] - order) <= 0.2, (name, order, slopes)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_recursion_is_the_optimizer(name):
    # The affine recursion of the moment oracle against escape.optim's optimizer on the same gradients.
    with jax.enable_x64(True):
        hyper = CASES[name][0]
        eta = 0.05
        opt = make_optimizer(name, learning_rate=eta, **hyper)
        f, b = _recursion(name, eta)
        theta = jnp.asarray(MEAN0)
        state = opt.init(theta)
        z = np.concatenate([MEAN0, np.zeros(f.shape[0] - H.size)])
        xis = np.random.default_rng(0).normal(size=(5, H.size))
        for xi in xis:
            updates, state = opt.update(jnp.asarray(H) * theta + jnp.asarray(xi), state, theta)
            theta = optax.apply_updates(theta, updates)
            z = f @ z + b @ xi
        np.testing.assert_allclose(np.asarray(theta), z[: H.size], rtol=1e-12, atol=1e-14)


class CoupledLandscape(AbstractLandscape):
    """A non-separable, non-quadratic loss for the Hessian-vector product (isotropic noise)."""

    dim: int = 3
    noise: AbstractNoise = IsotropicNoise(sigma=0.5)
    separable: ClassVar[bool] = False

    def loss(self, theta):
        return jnp.sum(jnp.cos(theta)) + 0.3 * theta[0] * theta[1] ** 2 + 0.25 * jnp.sum(theta**4) + theta[1] * theta[2]

    def critical_points(self):
        raise NotImplementedError

    def initial_point(self):
        return jnp.zeros(3)

    def escaped(self, theta):
        return jnp.array(False)


def _fd_hessian(gradient, theta, step=1e-5):
    cols = [(gradient(theta + step * e) - gradient(theta - step * e)) / (2 * step) for e in jnp.eye(theta.size)]
    return jnp.stack(cols, axis=1)


def test_second_order_sgd_drift_is_the_first_order_drift_minus_half_eta_h_grad():
    with jax.enable_x64(True):
        eta = 0.03
        theta = jnp.array([0.7, -1.3, 0.4])
        for landscape in (StyblinskiTang(dim=3, sharpness=2.0, noise="hessian"), CoupledLandscape()):
            first = SGDLangevin(landscape, eta, 2)
            second = make_dynamics("sgd", landscape, batch_size=2, learning_rate=eta, order=2)
            y = theta.astype(jnp.float64)[None]
            grad = landscape.gradient(y[0])
            # Styblinski-Tang's closed-form Hessian (its polynomial coefficients 12 c_0, 6 c_1 are rounded in
            # float32, relative 1e-7) or central differences of the gradient (error ~ step^2, 1e-10)
            if landscape.separable:
                hess, rtol = landscape.hessian(y[0]), 1e-6
            else:
                hess, rtol = _fd_hessian(landscape.gradient, y[0]), 1e-8
            expected = first.drift(0.0, y, None) - 0.5 * eta * (hess @ grad)[None]
            np.testing.assert_allclose(second.drift(0.0, y, None), expected, rtol=rtol, atol=1e-10)
            np.testing.assert_allclose(first.drift(0.0, y, None), -grad[None], rtol=1e-12)
            # the noise is unchanged: sqrt(2 D) with D = eta C / 2
            np.testing.assert_allclose(second.noise_scale(y), first.noise_scale(y), rtol=1e-12)


def test_second_order_heavy_ball_mass_and_initial_velocity():
    with jax.enable_x64(True):
        st = StyblinskiTang(dim=3, sharpness=2.0, noise="hessian")
        theta0 = jnp.array([0.7, -1.3, 0.4])
        eta, beta = 0.02, 0.8
        for style, beta3 in (("sgd", 1.0), ("ema", 1.0 - beta)):
            first = HeavyBallLangevin(st, eta, 1, beta=beta, style=style)
            second = HeavyBallLangevin(st, eta, 1, beta=beta, style=style, order=2)
            assert second.mass == pytest.approx(first.mass * (1 + beta) / 2, rel=1e-12)
            assert second.damping == first.damping
            y0 = second.initial_state(theta0)
            np.testing.assert_allclose(y0[0], theta0)
            np.testing.assert_allclose(y0[1], -beta3 * st.gradient(theta0) / (1 + beta), rtol=1e-12)
            np.testing.assert_allclose(first.initial_state(theta0)[1], 0.0)
            m1, g1, d1 = first.coefficients(y0)
            m2, g2, d2 = second.coefficients(y0)
            np.testing.assert_allclose(d2, d1, rtol=1e-12)  # same diffusion D = eta C / 2
        # beta = 0: the slow manifold r = -grad L - M H r' ... is SGD's order-2 drift, M = eta / 2, gamma = 1
        hb = HeavyBallLangevin(st, eta, 1, beta=0.0, order=2)
        assert hb.mass == pytest.approx(eta / 2) and hb.damping == 1.0


def test_order_is_validated():
    q = Quadratic([1.0, 2.0])
    for bad in (0, 3, True, 2.0, "2", None):
        with pytest.raises(ValueError, match="order must be 1 or 2"):
            SGDLangevin(q, 0.1, order=bad)
        with pytest.raises(ValueError, match="order must be 1 or 2"):
            HeavyBallLangevin(q, 0.1, order=bad)
    for name in ("sgd", "momentum", "momentum-ema"):
        with pytest.raises(ValueError, match="HeavyBallLangevin: order|SGDLangevin: order"):
            make_dynamics(name, q, batch_size=1, learning_rate=0.1, order=3)
        assert make_dynamics(name, q, batch_size=1, learning_rate=0.1).order == 1
    with pytest.raises(ValueError, match="no hyperparameter 'order'"):
        make_dynamics("adam", q, batch_size=1, learning_rate=0.1, order=2)
