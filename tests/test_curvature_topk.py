"""Top-k eigenpairs (largest algebraic) of H and of P^-1/2 H P^-1/2 against dense eigh in x64; warm starts;
stochastic Lanczos quadrature moments against the dense Hessian."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from escape.curvature import hessian_eigenpairs, preconditioner, spectral_density


def _mlp(seed=0, n=24, d_in=4, width=6, d_out=2):
    rng = np.random.default_rng(seed)
    x, y = jnp.asarray(rng.standard_normal((n, d_in))), jnp.asarray(rng.standard_normal((n, d_out)))
    params = {"w1": jnp.asarray(rng.standard_normal((d_in, width))), "b1": jnp.zeros(width),
              "w2": jnp.asarray(rng.standard_normal((width, d_out)) / np.sqrt(width)), "b2": jnp.zeros(d_out)}

    def loss(p):
        pred = jnp.tanh(x @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]
        return 0.5 * jnp.mean(jnp.sum((pred - y) ** 2, axis=-1))

    return loss, params


def _dense(loss, params):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat))


def _negative_dominated(loss, params, strength=50.0):
    """The MLP loss minus a steep concave ridge: the most negative eigenvalue outweighs the largest one."""
    flat, _ = ravel_pytree(params)
    u = jnp.asarray(np.random.default_rng(9).standard_normal(flat.size))
    u = u / jnp.linalg.norm(u)
    return lambda p: loss(p) - 0.5 * strength * jnp.dot(u, ravel_pytree(p)[0] - flat) ** 2


@pytest.mark.parametrize("dominated", [False, True])
@pytest.mark.parametrize("preconditioned", [False, True])
def test_top4_match_dense_eigh(dominated, preconditioned):
    with jax.enable_x64(True):
        loss, params = _mlp()
        if dominated:
            loss = _negative_dominated(loss, params)
        h = _dense(loss, params)
        p = None
        if preconditioned:
            p = jax.tree.map(lambda x: jnp.asarray(np.random.default_rng(2).uniform(0.2, 3.0, x.shape)), params)
            s = 1 / np.sqrt(np.asarray(ravel_pytree(p)[0]))
            h = s[:, None] * h * s[None, :]
        exact = np.linalg.eigvalsh(h)
        if dominated:
            assert -exact[0] > exact[-1] > 0  # largest magnitude is negative: the trap
        got = hessian_eigenpairs(loss, params, k=4, key=jax.random.key(0), num_iters=h.shape[0], preconditioner=p,
                                 tol=1e-12)
        np.testing.assert_allclose(got.eigenvalues, exact[::-1][:4], rtol=1e-6)
        for lam, w in zip(got.eigenvalues, got.basis):  # eigenvectors of the symmetric operator
            np.testing.assert_allclose(h @ np.asarray(w), lam * np.asarray(w), atol=1e-6 * abs(exact).max())


def test_warm_starts_cut_the_hvp_count():
    """lambda_1 along 25 Adam steps: warm-started Lanczos converges to the same values in fewer HVPs."""
    with jax.enable_x64(True):
        loss, params = _mlp(seed=1)
        opt = optax.adam(0.002)
        state = opt.init(params)
        cold, warm, prev = 0, 0, None
        for step in range(25):
            a = hessian_eigenpairs(loss, params, k=1, key=jax.random.key(step), num_iters=40, tol=1e-6)
            b = hessian_eigenpairs(loss, params, k=1, key=jax.random.key(step), num_iters=40, tol=1e-6, init=prev)
            assert b.eigenvalues[0] == pytest.approx(a.eigenvalues[0], rel=1e-6)
            cold, warm, prev = cold + a.num_matvecs, warm + b.num_matvecs, b.basis
            updates, state = opt.update(jax.grad(loss)(params), state, params)
            params = optax.apply_updates(params, updates)
        assert warm < 0.85 * cold, (warm, cold)  # measured: 15 against 21 HVPs per estimate
        exact = np.linalg.eigvalsh(_dense(loss, params))[-1]
        last = hessian_eigenpairs(loss, params, k=1, key=jax.random.key(0), num_iters=40, tol=1e-8, init=prev)
        assert last.eigenvalues[0] == pytest.approx(exact, rel=1e-6)


def test_preconditioned_top_eigenvalue_from_an_adam_state():
    with jax.enable_x64(True):
        loss, params = _mlp(seed=2)
        opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.01, b1=0.9, b2=0.99)
        state = opt.init(params)
        for _ in range(5):
            updates, state = opt.update(jax.grad(loss)(params), state, params)
            params = optax.apply_updates(params, updates)
        pre = preconditioner(state, grads=jax.grad(loss)(params))
        s = 1 / np.sqrt(np.asarray(ravel_pytree(pre.diagonal)[0]))
        h = _dense(loss, params)
        exact = np.linalg.eigvalsh(s[:, None] * h * s[None, :])[-1]
        got = hessian_eigenpairs(loss, params, key=jax.random.key(1), num_iters=h.shape[0], preconditioner=pre)
        assert got.eigenvalues[0] == pytest.approx(exact, rel=1e-8)
        u, _ = ravel_pytree(got.eigenvectors[0])  # an eigenvector of P^-1 H: H u = lambda P u
        p = np.asarray(ravel_pytree(pre.diagonal)[0])
        np.testing.assert_allclose(h @ np.asarray(u), exact * p * np.asarray(u), atol=1e-6 * exact * p.max())


def test_slq_quadrature_is_exact_for_low_moments():
    """Each probe's Gauss rule reproduces v' H^j v for j < 2m; the density integrates to 1."""
    with jax.enable_x64(True):
        loss, params = _mlp(seed=3)
        h = _dense(loss, params)
        m = 6
        sd = spectral_density(loss, params, key=jax.random.key(4), num_iters=m, num_probes=3)
        assert sd.nodes.shape == (3, m) and sd.num_matvecs == 3 * m
        for i in range(3):
            v = np.asarray(jax.random.rademacher(jax.random.fold_in(jax.random.key(4), i), (h.shape[0],), jnp.float64))
            v = v / np.linalg.norm(v)
            for j in range(2 * m):
                want = v @ np.linalg.matrix_power(h, j) @ v
                got = np.sum(sd.weights[i] * sd.nodes[i] ** j)
                assert got == pytest.approx(want, rel=1e-8, abs=1e-10 * np.abs(h).max() ** j), (i, j)
        full = spectral_density(loss, params, key=jax.random.key(5), num_iters=h.shape[0], num_probes=2)
        exact = np.linalg.eigvalsh(h)
        assert np.allclose(np.sort(full.nodes[0]), exact, atol=1e-8 * np.abs(exact).max())
        grid = np.linspace(exact[0] - 1, exact[-1] + 1, 4001)
        assert np.trapezoid(full.density(grid, 0.05), grid) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kwargs,needle", [(dict(k=0), "k must be"), (dict(k=50), "k must be"),
                                           (dict(tol=-1.0), "tol"), (dict(num_iters=0), "num_iters")])
def test_bad_input(kwargs, needle):
    loss, params = _mlp()
    with pytest.raises(ValueError, match=needle):
        hessian_eigenpairs(loss, params, key=jax.random.key(0), **{"num_iters": 20, **kwargs})
    with pytest.raises(ValueError, match="preconditioner"):
        hessian_eigenpairs(loss, params, key=jax.random.key(0), preconditioner=jax.tree.map(jnp.zeros_like, params))


def test_solution_sharpness_top10_matches_dense_eigh():
    """escape.train.solution_sharpness(top_eigenvalues=10), the spectra of `compare`: the top 10 eigenvalues of the
    mean loss over two batches equal dense eigh's to 1e-5 (x64, as many Lanczos steps as parameters)."""
    from escape.train import solution_sharpness

    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        x, y = jnp.asarray(rng.standard_normal((24, 4))), jnp.asarray(rng.standard_normal((24, 2)))
        _, params = _mlp()

        def loss_fn(p, batch):
            xb, yb = batch
            pred = jnp.tanh(xb @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]
            return 0.5 * jnp.mean(jnp.sum((pred - yb) ** 2, axis=-1))

        batches = [(x[:12], y[:12]), (x[12:], y[12:])]
        h = _dense(lambda p: 0.5 * (loss_fn(p, batches[0]) + loss_fn(p, batches[1])), params)
        exact = np.linalg.eigvalsh(h)[::-1][:10]
        got = solution_sharpness(loss_fn, params, batches, key=jax.random.key(1), lanczos_iters=h.shape[0],
                                 hutchinson_samples=2, sharpness_samples=2, top_eigenvalues=10)
        np.testing.assert_allclose(got["top_eigenvalues"], exact, rtol=1e-5)
        assert got["lambda_max"] == got["top_eigenvalues"][0]
