"""Heavy-ball momentum: both styles against closed forms and the recursion of docs/theory.md §2."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.optim import momentum, scale_by_momentum, ScaleByMomentumState

LR, BETA, STEPS = 0.1, 0.9, 6


def _beta3(style):
    return 1.0 if style == "sgd" else 1.0 - BETA


@pytest.mark.parametrize("style", ["sgd", "ema"])
def test_constant_gradient_closed_form(style):
    """With g constant, m_t = beta3 g (1 - beta^t) / (1 - beta) and theta_t = theta_0 - eta sum_k m_k."""
    opt = momentum(LR, beta=BETA, style=style)
    theta0, g = jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0])
    theta, state = theta0, opt.init(theta0)
    for t in range(1, STEPS + 1):
        updates, state = opt.update(g, state, theta)
        theta = optax.apply_updates(theta, updates)
        m_t = _beta3(style) * np.asarray(g) * (1 - BETA**t) / (1 - BETA)
        ks = np.arange(1, t + 1)
        theta_t = np.asarray(theta0) - LR * _beta3(style) * np.asarray(g) * np.sum((1 - BETA**ks) / (1 - BETA))
        np.testing.assert_allclose(state[0].mu, m_t, rtol=1e-6)
        np.testing.assert_allclose(theta, theta_t, rtol=1e-6)


@pytest.mark.parametrize("style", ["sgd", "ema"])
def test_random_gradients_recursion(style, getkey):
    """The recursion m <- beta m + beta3 g, theta <- theta - eta m, step by step on a tree."""
    params = {"a": jax.random.normal(getkey(), (3,)), "b": jax.random.normal(getkey(), (2, 2))}
    opt = momentum(LR, beta=BETA, style=style)
    state = opt.init(params)
    m = {k: np.zeros(v.shape) for k, v in params.items()}
    theta = {k: np.asarray(v, np.float64) for k, v in params.items()}
    for _ in range(STEPS):
        g = {k: jax.random.normal(getkey(), v.shape) for k, v in params.items()}
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
        for k in m:
            m[k] = BETA * m[k] + _beta3(style) * np.asarray(g[k])
            theta[k] = theta[k] - LR * m[k]
            np.testing.assert_allclose(params[k], theta[k], rtol=1e-5, atol=1e-6)


def test_ema_is_sgd_style_scaled():
    """EMA style equals SGD style with the learning rate times 1 - beta (theory §3: mass eta / beta3)."""
    g = jnp.array([1.0, -2.0, 0.5])
    ema, sgd = momentum(LR, BETA, "ema"), momentum(LR * (1 - BETA), BETA, "sgd")
    s_ema, s_sgd = ema.init(g), sgd.init(g)
    for _ in range(STEPS):
        u_ema, s_ema = ema.update(g, s_ema)
        u_sgd, s_sgd = sgd.update(g, s_sgd)
        np.testing.assert_allclose(u_ema, u_sgd, rtol=1e-6)


@pytest.mark.parametrize("style", ["sgd", "ema"])
def test_inject_hyperparams(style):
    g = jnp.array([1.0, -2.0, 0.5])
    plain, injected = momentum(LR, BETA, style), optax.inject_hyperparams(momentum)(LR, BETA, style)
    s_plain, s_inj = plain.init(g), injected.init(g)
    for _ in range(3):
        u_plain, s_plain = plain.update(g, s_plain)
        u_inj, s_inj = injected.update(g, s_inj)
        np.testing.assert_array_equal(u_inj, u_plain)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("style", ["sgd", "ema"])
def test_dtype_kept(dtype, style):
    params = jnp.array([1.0, 2.0], dtype)
    opt = momentum(LR, BETA, style)
    state = jax.jit(opt.init)(params)
    updates, new_state = jax.jit(opt.update)(params, state, params)
    assert updates.dtype == dtype and new_state[0].mu.dtype == state[0].mu.dtype == dtype
    assert isinstance(new_state[0], ScaleByMomentumState)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"beta": -0.1}, "beta"),
        ({"beta": 1.0}, "beta"),
        ({"style": "nesterov"}, "style"),
    ],
)
def test_invalid_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=f"^momentum: {name} "):
        momentum(**{"learning_rate": LR, **kwargs})
    if name != "learning_rate":
        with pytest.raises(ValueError, match=f"^scale_by_momentum: {name} "):
            scale_by_momentum(**kwargs)
