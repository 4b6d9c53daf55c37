"""Landscapes against exact identities: full-batch loss = data mean, autodiff, critical points, noise laws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from escape import _random
from escape.landscapes import DoubleWell, Quadratic, StyblinskiTang, make_landscape
from escape.landscapes._styblinski_tang import styblinski_tang


def test_full_batch_loss_is_mean_of_per_sample_losses():
    with jax.enable_x64(True):
        st = StyblinskiTang(dim=3, sharpness=2.5, n_data=500, data_seed=3)
        x = np.random.default_rng(3).standard_normal((500, 3))
        s = np.sqrt(2.5)
        for theta in np.random.default_rng(0).uniform(-3, 3, size=(5, 3)):
            direct = np.mean(0.5 * np.sum((s * theta - x) ** 4 - 16 * (s * theta - x) ** 2 + 5 * (s * theta - x), axis=1))
            assert float(st.loss(jnp.asarray(theta, jnp.float32))) == pytest.approx(direct, rel=2e-5, abs=1e-4)


def test_fresh_draw_loss_matches_gaussian_moments():
    st = StyblinskiTang(dim=2, n_data=None)
    u = jnp.array([0.3, -1.7])
    # E (u - x)^4 = u^4 + 6u^2 + 3, E (u - x)^2 = u^2 + 1 for x ~ N(0, 1).
    expected = 0.5 * np.sum(u**4 + 6 * u**2 + 3 - 16 * (u**2 + 1) + 5 * u)
    assert float(st.loss(u)) == pytest.approx(float(expected), rel=1e-6)


def test_fresh_spelling_is_fresh_draws():
    # TOML has no null: configs say n_data = "fresh" for the population law.
    a, b = StyblinskiTang(dim=3, n_data="fresh"), StyblinskiTang(dim=3, n_data=None)
    assert a.n_data is None and a.data is None and a.data_words(2) == b.data_words(2) == 6
    words = jnp.arange(6, dtype=jnp.uint32) * jnp.uint32(2654435761)
    theta = a.initial_point()
    np.testing.assert_array_equal(a.stochastic_gradient(theta, words, 2), b.stochastic_gradient(theta, words, 2))


@pytest.mark.parametrize("k", [0.5, 1.0, 4.0])
def test_analytic_derivatives_match_autodiff(k):
    st = StyblinskiTang(dim=4, sharpness=k, n_data=1000)
    theta = jnp.array([2.0, 0.1, -2.5, 1.0]) / np.sqrt(k)
    np.testing.assert_allclose(st.gradient(theta), jax.grad(st.loss)(theta), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(st.hessian_diag(theta), jnp.diag(jax.hessian(st.loss)(theta)), rtol=1e-4, atol=1e-3)


def test_critical_points_are_stationary_and_scale_with_sharpness():
    base = StyblinskiTang(dim=10, sharpness=1.0).critical_points()
    for k in (0.5, 3.0):
        cp = StyblinskiTang(dim=10, sharpness=k).critical_points()
        st = StyblinskiTang(dim=10, sharpness=k)
        with jax.enable_x64(True):
            for point in (cp.minimum, cp.saddle):
                g = np.asarray(jax.grad(lambda t: st.loss(t))(jnp.asarray(point, jnp.float32)))
                assert np.max(np.abs(g)) < 2e-3 * np.sqrt(k)
        assert cp.barrier == pytest.approx(base.barrier, rel=1e-10)  # barriers do not scale
        np.testing.assert_allclose(cp.hessian_minimum, k * base.hessian_minimum, rtol=1e-10)  # Hessians scale by k
        assert np.sum(cp.hessian_saddle < 0) == 1 and np.all(cp.hessian_minimum > 0)
        lmin = float(st.loss(jnp.asarray(cp.minimum, jnp.float32)))
        lsad = float(st.loss(jnp.asarray(cp.saddle, jnp.float32)))
        assert lsad - lmin == pytest.approx(cp.barrier, rel=1e-3)


def test_smoothed_critical_points_differ_from_raw_styblinski_tang():
    cp = StyblinskiTang(dim=1, n_data=None).critical_points()
    # raw f: local minimum 2.7468, barrier 25.23; the data model smooths both away.
    assert abs(cp.minimum[0] - 2.7468) > 0.3 and abs(cp.barrier - 25.23) > 5


def test_escape_test_uses_saddle_coordinate():
    st = StyblinskiTang(dim=3, sharpness=2.0)
    start = st.initial_point()
    assert not bool(st.escaped(start))
    sad = jnp.asarray(st.critical_points().saddle, jnp.float32)
    j = int(np.argmax(np.abs(np.asarray(sad) - np.asarray(start))))
    assert bool(st.escaped(start.at[j].set(sad[j] - 1e-3)))
    assert not bool(st.escaped(start.at[j].set(sad[j] + 1e-3)))


def _sample_gradients(landscape, theta, batch, n, seed=0):
    m = landscape.noise_words(batch)
    m2 = m + (m % 2)
    words = _random.block_words(jax.random.key(seed), jnp.int32(0), jnp.arange(n, dtype=jnp.uint32), m2)[:m].T
    return jax.vmap(lambda w: landscape.stochastic_gradient(theta, w, batch))(words)


@pytest.mark.parametrize(
    "noise,n_data", [("data", 2000), ("data", None), ("data-gaussian", 2000), ("data-gaussian", None), ("hessian", 2000)]
)
def test_stochastic_gradient_mean_and_covariance(noise, n_data):
    st = StyblinskiTang(dim=3, sharpness=1.5, noise=noise, n_data=n_data)
    theta = st.initial_point() + 0.05
    batch, n = 4, 200_000
    g = np.asarray(_sample_gradients(st, theta, batch, n), np.float64)
    c = np.asarray(st.gradient_covariance_diag(theta, batch), np.float64)
    mean_se = np.sqrt(c / n)
    np.testing.assert_array_less(np.abs(g.mean(0) - np.asarray(st.gradient(theta))), 5 * mean_se + 1e-4)
    # variance of a sample variance ~ 2 c^2 / n for near-Gaussian, larger for heavy tails: use kurtosis.
    var = g.var(0)
    kurt = np.mean((g - g.mean(0)) ** 4, 0) / var**2
    var_se = c * np.sqrt((kurt - 1) / n)
    np.testing.assert_array_less(np.abs(var - c), 5 * var_se + 1e-6 * c)


def test_data_gaussian_noise_keeps_moments_and_drops_heavy_tails():
    """Same covariance as the data model; excess kurtosis 0 (data: a cubic of a Gaussian, far above 0)."""
    st_data = StyblinskiTang(dim=2, sharpness=1.0, noise="data", n_data=None)
    st_gauss = StyblinskiTang(dim=2, sharpness=1.0, noise="data-gaussian", n_data=None)
    theta = st_data.initial_point()
    np.testing.assert_allclose(
        np.asarray(st_gauss.gradient_covariance_diag(theta, 1)), np.asarray(st_data.gradient_covariance_diag(theta, 1))
    )
    n = 200_000
    kurt = {}
    for name, st in (("data", st_data), ("gauss", st_gauss)):
        g = np.asarray(_sample_gradients(st, theta, 1, n, seed=3), np.float64)
        z = g - g.mean(0)
        kurt[name] = np.mean(z**4, 0) / np.mean(z**2, 0) ** 2
    np.testing.assert_array_less(np.abs(kurt["gauss"] - 3.0), 5 * np.sqrt(24 / n))
    assert np.all(kurt["data"] > 6.0), kurt["data"]


def test_data_gaussian_noise_needs_a_data_model():
    with pytest.raises(ValueError, match="no data model"):
        Quadratic([1.0, -1.0], noise="data-gaussian").noise_words(1)


def test_isotropic_noise_covariance():
    q = Quadratic([1.0, -2.0], noise="isotropic", sigma=0.7)
    g = np.asarray(_sample_gradients(q, jnp.array([0.5, 0.5]), 1, 100_000), np.float64)
    np.testing.assert_allclose(g.mean(0), [0.5, -1.0], atol=5 * 0.7 / np.sqrt(1e5))
    np.testing.assert_allclose(g.std(0), [0.7, 0.7], rtol=5 / np.sqrt(2e5))


def test_double_well_critical_points():
    dw = DoubleWell(barrier=2.0, width=1.5)
    cp = dw.critical_points()
    assert cp.hessian_minimum[0] == pytest.approx(float(jax.hessian(dw.loss)(jnp.array([-1.5]))[0, 0]), rel=1e-5)
    assert cp.hessian_saddle[0] == pytest.approx(float(jax.hessian(dw.loss)(jnp.array([0.0]))[0, 0]), rel=1e-5)
    assert float(dw.loss(jnp.array([0.0])) - dw.loss(jnp.array([-1.5]))) == pytest.approx(2.0)
    assert not bool(dw.escaped(dw.initial_point()))
    assert bool(dw.escaped(jnp.array([1.5])))
    assert bool(DoubleWell(exit="saddle").escaped(jnp.array([0.01])))


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: StyblinskiTang(dim=0), "dim"),
        (lambda: StyblinskiTang(dim=2.5), "dim"),
        (lambda: StyblinskiTang(sharpness=0.0), "sharpness"),
        (lambda: StyblinskiTang(sharpness=-1), "sharpness"),
        (lambda: StyblinskiTang(noise="pink"), "noise"),
        (lambda: StyblinskiTang(noise="isotropic"), "sigma"),
        (lambda: StyblinskiTang(n_data=1), "n_data"),
        (lambda: StyblinskiTang(n_data="new"), "n_data"),
        (lambda: Quadratic([1.0, 0.0]), "hessian"),
        (lambda: Quadratic([-1.0], noise="data"), None),
        (lambda: DoubleWell(barrier=-1), "barrier"),
        (lambda: DoubleWell(exit="left"), "exit"),
        (lambda: make_landscape("rosenbrock"), "landscape"),
        (lambda: make_landscape("quadratic", hessian=[1.0], colour=1), "colour"),
    ],
)
def test_bad_input_raises_one_line_value_error(build, match):
    with pytest.raises(ValueError) as e:
        obj = build()
        # Quadratic with data noise fails when a gradient is drawn
        obj.stochastic_gradient(jnp.zeros(obj.dim), jnp.zeros(1, jnp.uint32), 1)
    assert "\n" not in str(e.value)
    if match:
        assert match in str(e.value)


@pytest.mark.parametrize("n_data", [3000, None])
def test_closed_form_data_covariance_matches_samples(n_data):
    st = StyblinskiTang(dim=3, sharpness=1.7, n_data=n_data, data_seed=2)
    theta = st.initial_point() * jnp.array([1.0, 0.5, -0.3])
    if n_data is None:
        x = np.random.default_rng(0).standard_normal((2_000_000, 3))
        tol = 5 * np.sqrt(2.0 / 2_000_000) * 10  # heavy tails: generous multiple of the Gaussian SE of a variance
    else:
        x = np.random.default_rng(2).standard_normal((n_data, 3))  # the landscape's own data set: exact
        tol = 1e-4
    u = np.sqrt(1.7) * np.asarray(theta, np.float64) - x
    direct = 1.7 * np.var(2 * u**3 - 16 * u + 2.5, axis=0)
    np.testing.assert_allclose(np.asarray(st.data_covariance_diag(theta)), direct, rtol=tol)
