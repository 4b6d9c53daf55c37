"""Monte-Carlo engine: exact first-passage steps, exact stationary laws, invariances, divergence, Kramers."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.landscapes import DoubleWell, Quadratic, StyblinskiTang
from escape.optim import make_optimizer
from escape.simulate import escape_times
from escape.stats import censored_rate
from escape.theory import eyring_kramers_time, mean_first_passage_1d

XLA_OPTIMISED = True  # bound by running, not compiling (conftest.py)


def test_deterministic_first_passage_step_is_exact():
    # L = -theta^2/2 (h = -1), negligible noise: theta_t = theta_0 (1 + eta)^t, escape once |theta| > 1.
    eta, theta0 = 0.05, 0.01
    q = Quadratic([-1.0], noise="isotropic", sigma=1e-20, escape_radius=1.0)
    res = escape_times(q, optax.sgd(eta), batch_size=1, n_particles=8, max_steps=500, chunk_size=50, key=jax.random.key(0), init=jnp.array([theta0]))
    expected = int(np.ceil(np.log(1.0 / theta0) / np.log1p(eta)))
    assert np.all(np.asarray(res.first_passage) == expected)
    assert np.all(np.asarray(res.escaped)) and res.steps_run < 500  # stopped early


def test_discrete_ou_stationary_variance_is_exact():
    # theta' = (1 - eta h) theta - eta sigma z: Var = eta^2 sigma^2 / (1 - (1 - eta h)^2) exactly.
    eta, h, sigma, n = 0.1, np.array([1.0, 4.0]), 0.5, 20_000
    q = Quadratic(h, noise="isotropic", sigma=sigma)
    res = escape_times(q, optax.sgd(eta), batch_size=1, n_particles=n, max_steps=400, key=jax.random.key(1))
    var = np.asarray(res.final, np.float64).var(0)
    exact = eta**2 * sigma**2 / (1 - (1 - eta * h) ** 2)
    # after 400 steps the initial transient (1 - eta h)^800 is < 1e-18; SE of a Gaussian variance: sqrt(2/n)
    np.testing.assert_allclose(var, exact, rtol=4 * np.sqrt(2 / n))
    assert not np.any(np.asarray(res.escaped)) and res.steps_run == 400


def test_same_key_same_result_whatever_chunk_size_and_particle_count():
    st = StyblinskiTang(dim=4, sharpness=2.0, n_data=1000)
    opt = make_optimizer("adam", learning_rate=0.25)
    kw = dict(batch_size=1, max_steps=3000, key=jax.random.key(7))
    a = escape_times(st, opt, n_particles=64, chunk_size=64, **kw)
    b = escape_times(st, opt, n_particles=64, chunk_size=1000, **kw)
    c = escape_times(st, opt, n_particles=100, chunk_size=250, **kw)
    np.testing.assert_array_equal(a.first_passage, b.first_passage)
    np.testing.assert_array_equal(a.first_passage, c.first_passage[:64])
    assert np.asarray(a.escaped).sum() > 10  # the comparison is not between empty results
    d = escape_times(st, opt, n_particles=64, chunk_size=64, **{**kw, "key": jax.random.key(8)})
    assert not np.array_equal(a.first_passage, d.first_passage)


def test_same_result_on_four_devices():
    code = textwrap.dedent(
        """
        import json, jax
        from escape.landscapes import StyblinskiTang
        from escape.optim import make_optimizer
        from escape.simulate import escape_times
        assert jax.device_count() == 4
        r = escape_times(StyblinskiTang(dim=4, sharpness=2.0, n_data=1000), make_optimizer("adai", learning_rate=0.01),
                         batch_size=2, n_particles=30, max_steps=2000, chunk_size=300, key=jax.random.key(3))
        print(json.dumps(r.first_passage.tolist()))
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    four = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    one = escape_times(StyblinskiTang(dim=4, sharpness=2.0, n_data=1000), make_optimizer("adai", learning_rate=0.01),
                       batch_size=2, n_particles=30, max_steps=2000, chunk_size=300, key=jax.random.key(3))
    np.testing.assert_array_equal(four, np.asarray(one.first_passage))
    assert (four >= 0).sum() > 5


def test_sgd_depends_on_learning_rate_times_sharpness_only():
    # On L_k, u = sqrt(k) theta follows u' = u - eta k f'(u - x): (eta, k) and (eta k, 1) give the same run.
    kw = dict(batch_size=1, n_particles=200, max_steps=20_000, key=jax.random.key(2))
    a = escape_times(StyblinskiTang(dim=3, sharpness=2.0, n_data=500), optax.sgd(0.004), **kw)
    b = escape_times(StyblinskiTang(dim=3, sharpness=1.0, n_data=500), optax.sgd(0.008), **kw)
    ea, eb = np.asarray(a.escaped), np.asarray(b.escaped)
    assert ea.sum() > 50
    # float32 rounding can move a rare escape by a step; the laws must agree, the bulk exactly.
    same = np.mean(np.asarray(a.first_passage) == np.asarray(b.first_passage))
    assert same > 0.95


def test_divergence_is_counted_not_averaged():
    # h = 1010, eta = 0.1: theta' = -100 theta, so |theta| overflows float32 in ~20 steps; no escape direction.
    q = Quadratic([1010.0], noise="isotropic", sigma=1e-3)
    res = escape_times(q, optax.sgd(0.1), batch_size=1, n_particles=16, max_steps=100, chunk_size=10, key=jax.random.key(0), init=jnp.array([1.0]))
    assert np.all(np.asarray(res.diverged)) and not np.any(np.asarray(res.escaped))
    assert np.all(np.asarray(res.first_divergence) > 0) and res.steps_run < 100
    est = censored_rate(res)
    assert est.diverged == 16 and est.n == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(n_particles=-3), "n_particles"),
        (dict(max_steps=1.5), "max_steps"),
        (dict(init=jnp.zeros((3, 5))), "init"),
    ],
)
def test_bad_arguments(kwargs, match):
    base = dict(batch_size=1, n_particles=4, max_steps=10, key=jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        escape_times(StyblinskiTang(dim=2, n_data=100), optax.sgd(0.1), **{**base, **kwargs})


def test_kramers_oracle_double_well():
    """SGD with constant isotropic noise on the double well: mean escape time vs Eyring-Kramers.

    D = eta sigma^2 / 2 with barrier / D = 6. Allowances: the estimate's 95% interval, plus O(D / barrier)
    = 1/6 relative for Eyring-Kramers (its first correction), plus the discretisation: discrete SGD near the
    minimum has temperature D / (1 - eta H_a / 2), which moves exp(barrier / D) by barrier/D * eta H_a / 2
    = 4.8% here. Against the exact 1-d mean first-passage time only the interval and discretisation remain.
    """
    barrier, ratio, eta = 1.0, 6.0, 0.002
    D = barrier / ratio
    sigma = np.sqrt(2 * D / eta)
    dw = DoubleWell(barrier=barrier, width=1.0, noise="isotropic", sigma=float(sigma), exit="minimum")
    cp = dw.critical_points()
    tau_ek = eyring_kramers_time(barrier, D, cp.hessian_minimum[0], cp.hessian_saddle[0]) / eta  # in steps
    tau_exact = mean_first_passage_1d(lambda x: float(dw.loss(jnp.array([x]))), D, -1.0, 1.0, lower=-3.0) / eta
    res = escape_times(dw, optax.sgd(eta), batch_size=1, n_particles=512, max_steps=int(3 * tau_ek), key=jax.random.key(11))
    est = censored_rate(res)
    assert est.events > 400
    disc = ratio * eta * cp.hessian_minimum[0] / 2
    lo_t, hi_t = 1 / est.upper, 1 / est.lower  # 95% interval of the mean escape time
    # Eyring-Kramers: within the interval widened by O(D/barrier) + discretisation
    allow = D / barrier + disc
    assert lo_t * (1 - allow) <= tau_ek <= hi_t * (1 + allow), (est.mean_time, tau_ek)
    # exact MFPT: within the interval widened by the discretisation allowance only
    assert lo_t * (1 - disc) <= tau_exact <= hi_t * (1 + disc), (est.mean_time, tau_exact)


def test_adam_depends_on_learning_rate_times_sqrt_sharpness_only():
    # Adam's normalised step is scale-free (eps << sqrt(v)): in u = sqrt(k) theta the update is
    # u' = u - eta sqrt(k) m_u / sqrt(v_u), so (eta, k = 4) and (2 eta, k = 1) give the same run.
    kw = dict(batch_size=1, n_particles=200, max_steps=20_000, key=jax.random.key(4))
    a = escape_times(StyblinskiTang(dim=3, sharpness=4.0, n_data=500), optax.adam(0.1), **kw)
    b = escape_times(StyblinskiTang(dim=3, sharpness=1.0, n_data=500), optax.adam(0.2), **kw)
    assert np.asarray(a.escaped).sum() > 50
    assert np.mean(np.asarray(a.first_passage) == np.asarray(b.first_passage)) > 0.95
    # ... and not through eta * k (the SGD invariant): (eta, 4) differs from (4 eta, 1)
    c = escape_times(StyblinskiTang(dim=3, sharpness=1.0, n_data=500), optax.adam(0.4), **kw)
    assert np.mean(np.asarray(a.first_passage) == np.asarray(c.first_passage)) < 0.5


def test_final_positions_are_taken_at_max_steps():
    # Deterministic growth theta_t = theta_0 (1 + eta)^t on h = -1 with no escape: final = theta_0 (1+eta)^T
    # exactly at T = max_steps, even when the chunk is longer than the horizon's remainder.
    q = Quadratic([-1.0, -1.0], noise="isotropic", sigma=1e-20, escape_radius=1e9)
    res = escape_times(q, optax.sgd(0.01), batch_size=1, n_particles=4, max_steps=37, chunk_size=16,
                       key=jax.random.key(0), init=jnp.array([1.0, 2.0]))
    expected = np.array([1.0, 2.0]) * 1.01**37
    np.testing.assert_allclose(np.asarray(res.final), np.broadcast_to(expected, (4, 2)), rtol=1e-5)
    assert res.steps_run == 37


def test_saved_positions_are_the_runs_themselves():
    """Positions saved at any steps equal the final positions of runs stopped there; dense and sparse saves,
    and any chunk size, give the same numbers; optimizer states come with them on request."""
    from escape.landscapes import Quadratic
    from escape.optim import make_optimizer

    land = Quadratic([-1.0, 0.5, 2.0], noise="hessian")  # 3 noise words: the engine draws two steps per block
    opt = make_optimizer("adam", learning_rate=0.01)
    key = jax.random.key(5)
    kw = dict(batch_size=1, n_particles=12, key=key)
    saves = [0, 1, 2, 9, 64, 65, 150]
    sparse = escape_times(land, opt, max_steps=150, save_steps=saves, chunk_size=64, save_state=True, **kw)
    dense = escape_times(land, opt, max_steps=150, save_steps=np.arange(151), chunk_size=40, **kw)
    np.testing.assert_array_equal(np.asarray(dense.positions)[saves], np.asarray(sparse.positions))
    for s, p in zip(saves[1:], np.asarray(sparse.positions)[1:]):
        np.testing.assert_array_equal(np.asarray(escape_times(land, opt, max_steps=s, **kw).final), p)
    assert sparse.saved_steps == tuple(saves) and sparse.states[0].mu.shape == (len(saves), 12, 3)
    assert np.all(np.asarray(sparse.states[0].count)[:, 0] == np.asarray(saves))
    np.testing.assert_array_equal(np.asarray(sparse.first_passage),
                                  np.asarray(escape_times(land, opt, max_steps=150, **kw).first_passage))
    with pytest.raises(ValueError, match="save_steps must lie in"):
        escape_times(land, opt, max_steps=10, save_steps=[11], **kw)


def test_valley_arrival_is_the_first_passage():
    from escape.landscapes import Valley
    from escape.optim import make_optimizer

    for shape in ("smooth", "sharp"):
        land = Valley(shape)
        theta = jnp.asarray([0.3, -0.7])
        np.testing.assert_allclose(land.gradient(theta), jax.grad(land.loss)(theta), rtol=1e-6)
        r = escape_times(land, make_optimizer("adam", learning_rate=1e-2), batch_size=1, n_particles=1,
                         max_steps=3000, key=jax.random.key(0), save_steps=np.arange(3001))
        d = np.linalg.norm(np.asarray(r.positions)[:, 0], axis=1)
        assert int(r.first_passage[0]) == int(np.argmax(d <= 1e-3)) > 0
    with pytest.raises(ValueError, match="Valley: shape must be one of"):
        Valley("round")


@pytest.mark.parametrize("name, hyper", [("sgd", {"learning_rate": 1.234e-3}), ("adai", {"learning_rate": 1.234e-3, "beta0": 0.2})])
def test_equal_registry_optimizer_built_again_compiles_nothing(name, hyper):
    # A loop over seeds that rebuilds its optimizer inline: the second call must reuse the compiled chunk.
    # A program counts when XLA compiles it or when it comes out of a persistent compilation cache (where
    # JAX_COMPILATION_CACHE_DIR is set): either way it was traced and lowered afresh.
    compiles = []
    listener = lambda event, duration, **kw: compiles.append(event) if "backend_compile" in event else None  # noqa: E731
    hit = lambda event, **kw: compiles.append(event) if event.endswith("/cache_hits") else None  # noqa: E731
    st = StyblinskiTang(dim=3, sharpness=1.5, n_data="fresh")
    kw = dict(batch_size=1, n_particles=16, max_steps=40, chunk_size=16)
    jax.monitoring.register_event_duration_secs_listener(listener)
    jax.monitoring.register_event_listener(hit)
    try:
        first = escape_times(st, make_optimizer(name, **hyper), key=jax.random.key(0), **kw)
        n_first = len(compiles)
        again = escape_times(st, make_optimizer(name, **hyper), key=jax.random.key(1), **kw)
        n_again = len(compiles) - n_first
        other = escape_times(st, make_optimizer(name, **{**hyper, "learning_rate": 2.345e-3}), key=jax.random.key(1), **kw)
        n_other = len(compiles) - n_first - n_again
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
        jax.monitoring.unregister_event_listener(hit)
    assert n_first > 0 and n_again == 0  # the listener sees compilations, and the second call has none
    assert n_other > 0  # another learning rate is another optimizer (the rate is a compiled constant)
    assert not np.array_equal(first.final, again.final) and not np.array_equal(again.final, other.final)
    assert make_optimizer(name, **hyper) is make_optimizer(name.upper(), **hyper)
    assert make_optimizer(name, **{**hyper, "learning_rate": np.float32(1.234e-3)}) is not make_optimizer(name, **hyper)
