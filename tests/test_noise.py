"""Gradient noise against the Hessian: matrix-free projections against the dense covariance (x64), minibatch
noise covariance C_1 / B, the tail index on known laws, and a tiny `escape run` of the noise experiment."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from jax.flatten_util import ravel_pytree

from escape.cli import main
from escape.curvature import hessian_eigenpairs
from escape.curvature._noise import dense_noise_covariance, hill_tail_index, minibatch_noise, per_sample_projections


def _problem(seed=0, n=64, d_in=5, width=6, classes=3):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, d_in)))
    y = jnp.asarray(rng.integers(0, classes, n))
    params = {"w1": jnp.asarray(rng.standard_normal((d_in, width)) / np.sqrt(d_in)), "b1": jnp.zeros(width),
              "w2": jnp.asarray(rng.standard_normal((width, classes)) / np.sqrt(width)), "b2": jnp.zeros(classes)}

    def logits(p, xb):
        return jnp.tanh(xb @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]

    def per_example(p, ex):
        xe, ye = ex
        return optax.softmax_cross_entropy_with_integer_labels(logits(p, xe[None, :]), ye[None])[0]

    def full(p):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits(p, x), y))

    return params, per_example, full, (x, y)


def test_matrix_free_projections_equal_the_dense_covariance():
    with jax.enable_x64(True):
        params, per_example, full, data = _problem()
        pairs = hessian_eigenpairs(full, params, k=8, key=jax.random.key(0), num_iters=60)
        v = np.asarray(pairs.basis)
        proj = per_sample_projections(per_example, params, data, v, chunk_size=10)  # chunks that do not divide 64
        c = dense_noise_covariance(per_example, params, data)
        np.testing.assert_allclose(proj.covariance_diag, np.einsum("id,de,ie->i", v, c, v), rtol=1e-5)
        g = np.asarray(ravel_pytree(jax.grad(full)(params))[0])
        np.testing.assert_allclose(proj.mean, v @ g, rtol=1e-8, atol=1e-12)
        # per-example losses average to the full loss, so C_1 is the covariance of the full loss's gradients
        assert proj.projections.shape == (64, 8)


def test_minibatch_noise_has_covariance_c1_over_b():
    rng = np.random.default_rng(1)
    p = rng.standard_gamma(2.0, size=(500, 3))  # skewed per-sample projections
    c1 = p.var(axis=0)
    for b in (1, 7):
        z = minibatch_noise(p, b, 20000, seed=2)
        var = np.mean(z**2, axis=0)
        se = np.std(z**2, axis=0) / np.sqrt(z.shape[0])
        assert np.all(np.abs(var - c1 / b) < 5 * se), (b, var, c1 / b, se)


def test_hill_tail_index_on_known_laws():
    rng = np.random.default_rng(3)
    alpha = hill_tail_index(rng.standard_t(1.5, size=200_000), fraction=0.01)
    assert alpha == pytest.approx(1.5, abs=0.2)
    assert hill_tail_index(rng.standard_normal(200_000), fraction=0.01) > 4


TINY = """
name = "noise-tiny"
kind = "noise"
[data]
n_examples = 120
[model]
width = 4
[train]
steps = 30
[run]
top_k = 5
bottom_k = 2
lanczos_iters = 20
batch_sizes = [1, 8]
n_batches = 300
gauss_k = 2
bands = 2
slq_iters = 8
slq_probes = 2
"""


def test_tiny_run_tables_dense_check_and_figure(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    main(["run", str(path), "--out", str(out), "--quiet"])
    eig = pd.read_csv(out / "eigen.csv")
    assert len(eig) == 2 * 7 and set(eig["point"]) == {"init", "trained"}
    assert (eig["lambda"] < 0).sum() >= 2  # the bottom eigenpairs: both signs are measured
    # float32 run: the matrix-free v' C_1 v and v' H v against the dense C_1 and H
    np.testing.assert_allclose(eig["vCv"], eig["vCv_dense"], rtol=2e-3)
    np.testing.assert_allclose(eig["lambda"], eig["vHv_dense"], rtol=2e-3, atol=1e-4)
    bands = pd.read_csv(out / "noise.csv")
    assert len(bands) == 4 and {"log_correlation", "log_slope", "ratio_median"} <= set(bands)
    gauss = pd.read_csv(out / "gaussianity.csv")
    assert list(gauss["batch_size"]) == [1, 8, 1, 8]
    assert (out / "noise.png").stat().st_size > 10_000


def test_bad_config(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("gauss_k = 2", "gauss_k = 9"))
    with pytest.raises(SystemExit) as e:
        main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    assert e.value.code == 2 and "run.gauss_k" in capsys.readouterr().err
