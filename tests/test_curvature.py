"""escape.curvature against dense Hessians (x64) and closed forms; tolerances from standard errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from escape.curvature import (
    adam_preconditioner,
    expected_sharpness,
    hessian_trace,
    hvp,
    preconditioned_sharpness,
    top_hessian_eigenvalue,
)


# Test inputs come from NumPy: each new shape drawn with jax.random costs a threefry compilation (~1 s on CPU).


def _normal(rng, shape):
    return jnp.asarray(rng.standard_normal(shape))


def _mlp_problem(seed=0):
    """A 4-12-2 tanh MLP with squared loss on 32 random points: 86 parameters, an indefinite Hessian."""
    rng = np.random.default_rng(seed)
    x, y = _normal(rng, (32, 4)), _normal(rng, (32, 2))
    params = {
        "w1": _normal(rng, (4, 12)) / 2,
        "b1": jnp.full((12,), 0.1),
        "w2": _normal(rng, (12, 2)) / 3,
        "b2": jnp.zeros((2,)),
    }

    def loss(p, batch=(x, y)):
        xb, yb = batch
        pred = jnp.tanh(xb @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]
        return jnp.mean(jnp.sum((pred - yb) ** 2, axis=-1))

    return loss, params, (x, y)


def _dense_hessian(loss, params):
    flat, unravel = ravel_pytree(params)
    return jax.jit(jax.hessian(lambda f: loss(unravel(f))))(flat)


def test_hvp_matches_dense(getkey):
    with jax.enable_x64(True):
        loss, params, _ = _mlp_problem()
        hess = _dense_hessian(loss, params)
        flat, unravel = ravel_pytree(params)
        v = _normal(np.random.default_rng(1), flat.shape)
        out, _ = ravel_pytree(hvp(loss, params, unravel(v)))
        np.testing.assert_allclose(out, hess @ v, rtol=1e-12, atol=1e-12)


def test_lanczos_top_eigenvalue_matches_dense(getkey):
    """Acceptance 3: Lanczos lambda_1 = eigvalsh(dense Hessian)[-1] to 1e-4 relative in x64."""
    with jax.enable_x64(True):
        loss, params, _ = _mlp_problem()
        hess = _dense_hessian(loss, params)
        exact = jnp.linalg.eigvalsh(hess)
        assert exact[0] < 0 < exact[-1]  # indefinite: "largest algebraic" is not "largest magnitude" here
        value, vector = top_hessian_eigenvalue(loss, params, key=getkey(), num_iters=20)
        rel = abs(value - float(exact[-1])) / abs(float(exact[-1]))
        assert rel < 1e-4, rel
        u, _ = ravel_pytree(vector)
        assert jax.tree.structure(vector) == jax.tree.structure(params)
        np.testing.assert_allclose(jnp.linalg.norm(u), 1.0, rtol=1e-12)
        # Residual of the Ritz pair, relative to ||H|| = max |eigenvalue|.
        resid = jnp.linalg.norm(hess @ u - value * u) / jnp.max(jnp.abs(exact))
        assert resid < 1e-4, resid


def test_lanczos_largest_algebraic_and_breakdown(getkey):
    """Repeated eigenvalues make the Krylov space invariant after 4 steps: the restart must keep it exact."""
    with jax.enable_x64(True):
        diag = jnp.array([-10.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
        loss = lambda p: 0.5 * jnp.sum(diag * p["x"] ** 2)
        params = {"x": jnp.ones(7)}
        value, vector = top_hessian_eigenvalue(loss, params, key=getkey(), num_iters=7)
        assert value == pytest.approx(3.0, rel=1e-12)
        np.testing.assert_allclose(jnp.abs(vector["x"][:5]), 0.0, atol=1e-12)  # in the eigenspace of 3


def test_lanczos_over_batches_equals_full_data(getkey):
    """With equal-size batches the mean of per-batch Hessians is the full-data Hessian."""
    with jax.enable_x64(True):
        loss, params, (x, y) = _mlp_problem()
        batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
        key = getkey()
        full, _ = top_hessian_eigenvalue(loss, params, key=key, num_iters=20)
        split, _ = top_hessian_eigenvalue(loss, params, key=key, num_iters=20, batches=batches)
        assert split == pytest.approx(full, rel=1e-10)


def test_hutchinson_trace_within_4_se(getkey):
    with jax.enable_x64(True):
        loss, params, _ = _mlp_problem()
        exact = float(jnp.trace(_dense_hessian(loss, params)))
        est = hessian_trace(loss, params, key=getkey(), num_samples=200)
        assert est.stderr > 0
        assert abs(est.value - exact) < 4 * est.stderr, (est, exact)


def test_hutchinson_exact_for_diagonal_hessian(getkey):
    """Rademacher probes: z^T D z = tr D for every z, so the estimate is exact with zero spread."""
    with jax.enable_x64(True):
        diag = jnp.arange(1.0, 11.0)
        est = hessian_trace(lambda p: 0.5 * jnp.sum(diag * p**2), jnp.zeros(10), key=getkey(), num_samples=5)
        assert est.value == pytest.approx(55.0, rel=1e-12)
        assert est.stderr == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("antithetic", [True, False])
def test_expected_sharpness_quadratic_closed_form(getkey, antithetic):
    """L = theta^T A theta / 2 + b^T theta: E[L(theta + e)] - L(theta) = sigma^2 / 2 tr A exactly."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        m = _normal(rng, (20, 20))
        a = m @ m.T / 20 + jnp.eye(20)
        b = _normal(rng, (20,))
        theta = {"t": _normal(rng, (20,))}  # not the minimum: the gradient is not 0
        loss = lambda p: 0.5 * p["t"] @ a @ p["t"] + b @ p["t"]
        sigma = 0.1
        exact = sigma**2 / 2 * float(jnp.trace(a))
        est = expected_sharpness(loss, theta, key=getkey(), sigma=sigma, num_samples=400, antithetic=antithetic)
        assert abs(est.value - exact) < 4 * est.stderr, (est, exact)
        # Antithetic pairs remove the first-order term: SE = sigma^2/2 sqrt(2 tr A^2 / n).
        if antithetic:
            se = sigma**2 / 2 * np.sqrt(2 * float(jnp.trace(a @ a)) / 400)
            assert est.stderr == pytest.approx(se, rel=0.25)


def test_preconditioned_sharpness_matches_dense(getkey):
    with jax.enable_x64(True):
        loss, params, _ = _mlp_problem()
        hess = _dense_hessian(loss, params)
        rng = np.random.default_rng(3)
        precond = jax.tree.map(lambda p: jnp.exp(_normal(rng, p.shape)), params)
        p_flat, _ = ravel_pytree(precond)
        s = 1 / jnp.sqrt(p_flat)
        exact = jnp.linalg.eigvalsh(s[:, None] * hess * s[None, :])[-1]
        value, vector = preconditioned_sharpness(loss, params, precond, key=getkey(), num_iters=40)
        assert abs(value - float(exact)) / abs(float(exact)) < 1e-4
        u, _ = ravel_pytree(vector)  # H u = lambda P u
        resid = jnp.linalg.norm(hess @ u - value * p_flat * u) / jnp.linalg.norm(value * p_flat * u)
        assert resid < 1e-4, resid


def test_adam_preconditioner_reproduces_optax_adam_step(getkey):
    """optax.adam's update is -lr m / P with P = (1 - b1^t)(sqrt(v / (1 - b2^t)) + eps)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        params = {"w": _normal(rng, (5,))}
        opt = optax.adam(0.1)
        state = opt.init(params)
        for _ in range(3):
            grads = {"w": _normal(rng, (5,))}
            updates, state = opt.update(grads, state, params)
        adam_state = state[0]
        p = adam_preconditioner(adam_state.nu, adam_state.count)
        np.testing.assert_allclose(updates["w"], -0.1 * adam_state.mu["w"] / p["w"], rtol=1e-12)


def test_preconditioned_sharpness_rejects_bad_preconditioner(getkey):
    params = {"x": jnp.ones(3)}
    loss = lambda p: jnp.sum(p["x"] ** 2)
    with pytest.raises(ValueError, match="must be > 0"):
        preconditioned_sharpness(loss, params, {"x": jnp.array([1.0, 0.0, 1.0])}, key=getkey())
    with pytest.raises(ValueError, match="entries"):
        preconditioned_sharpness(loss, params, {"x": jnp.ones(4)}, key=getkey())
