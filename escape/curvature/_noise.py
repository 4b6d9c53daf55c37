"""Gradient noise against the Hessian: the per-sample gradient covariance in the Hessian's eigenbasis.

With per-sample gradients ``g_n`` and their mean ``g``, the per-sample covariance is
``C_1 = mean_n g_n g_n' - g g'`` and a minibatch of ``B`` samples drawn with replacement has covariance
``C_1 / B``. The claim tested (Adai paper, Fig. 1) is ``C ~= H / B`` near critical points. Along a unit
eigenvector ``v`` of ``H``, ``v' C_1 v = mean_n (v . g_n)^2 - (v . g)^2``: only the projections
``v . g_n`` are needed, from per-sample gradients (``jax.vmap`` of ``jax.grad``) a chunk of examples at a
time, never a ``D x D`` matrix.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import PyTree


class NoiseProjections(NamedTuple):
    """Per-sample gradients projected on directions ``V`` (columns): ``projections[n, i] = v_i . g_n``.

    Attributes:
        projections: ``(N, k)`` NumPy float64 array.
        mean: ``(k,)`` ``v_i . g`` with ``g`` the mean gradient.
        covariance_diag: ``(k,)`` ``v_i' C_1 v_i`` (per-sample covariance, ``ddof = 0``).
    """

    projections: np.ndarray
    mean: np.ndarray
    covariance_diag: np.ndarray


def per_sample_projections(
    loss_fn: Callable[[PyTree, PyTree], jax.Array],
    params: PyTree,
    data: tuple,
    directions,
    *,
    chunk_size: int = 256,
) -> NoiseProjections:
    """Project every per-sample gradient on ``directions``, a chunk of examples at a time.

    Args:
        loss_fn: ``loss_fn(params, example)`` for ONE example (a pytree of arrays without the batch axis);
            per-sample gradients are ``jax.vmap(jax.grad(loss_fn), (None, 0))``.
        params: where the gradients are taken.
        data: a tuple of arrays with a leading example axis (``(x, y)``).
        directions: ``(k, D)`` flat unit vectors (e.g. ``Eigenpairs.basis`` of the Hessian), or a list of
            pytrees shaped as ``params``.
        chunk_size: examples per vmapped chunk (memory ``chunk_size * D``).
    """
    flat, unravel = ravel_pytree(params)
    if isinstance(directions, (list, tuple)):
        directions = jnp.stack([ravel_pytree(d)[0] for d in directions])
    v = jnp.asarray(directions, flat.dtype)
    if v.ndim != 2 or v.shape[1] != flat.size:
        raise ValueError(f"per_sample_projections: directions must be (k, {flat.size}), got {tuple(v.shape)}")
    n = int(jax.tree.leaves(data)[0].shape[0])
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"per_sample_projections: chunk_size must be a positive integer, got {chunk_size!r}")

    @jax.jit
    def project(chunk):
        grads = jax.vmap(lambda ex: ravel_pytree(jax.grad(loss_fn)(unravel(flat), ex))[0])(chunk)
        return grads @ v.T

    parts = []
    for start in range(0, n, int(chunk_size)):
        chunk = jax.tree.map(lambda a: a[start:start + int(chunk_size)], data)
        parts.append(np.asarray(project(chunk), np.float64))
    p = np.concatenate(parts)
    mean = p.mean(axis=0)
    return NoiseProjections(p, mean, np.mean(p**2, axis=0) - mean**2)


def dense_noise_covariance(loss_fn, params, data) -> np.ndarray:
    """The dense per-sample covariance ``C_1 = mean_n g_n g_n' - g g'`` (``D x D``; small models only, a check)."""
    flat, unravel = ravel_pytree(params)
    grads = jax.vmap(lambda ex: ravel_pytree(jax.grad(loss_fn)(unravel(flat), ex))[0])(data)
    g = np.asarray(grads, np.float64)
    mean = g.mean(axis=0)
    return g.T @ g / g.shape[0] - np.outer(mean, mean)


def minibatch_noise(projections: np.ndarray, batch_size: int, n_batches: int, *, seed: int = 0) -> np.ndarray:
    """``(n_batches, k)`` projections of minibatch gradient noise ``v . (g_B - g)`` for batches of ``batch_size``
    samples drawn with replacement: their covariance is ``C_1 / B`` along each direction."""
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"minibatch_noise: batch_size must be a positive integer, got {batch_size!r}")
    rng = np.random.default_rng(seed)
    p = np.asarray(projections, np.float64)
    idx = rng.integers(0, p.shape[0], size=(int(n_batches), int(batch_size)))
    return p[idx].mean(axis=1) - p.mean(axis=0)


def hill_tail_index(samples: np.ndarray, fraction: float = 0.05) -> float:
    """Hill's estimator of the tail index ``alpha`` of ``|samples|`` from its largest ``fraction``: Gaussian noise
    gives large values (no power tail; about 4-6 at the usual fractions), heavy tails small ones (``alpha < 2``:
    infinite variance)."""
    x = np.sort(np.abs(np.asarray(samples, np.float64)))[::-1]
    k = max(int(fraction * x.size), 2)
    top, threshold = x[:k], x[k]
    if threshold <= 0:
        return np.nan
    return float(1.0 / np.mean(np.log(top / threshold)))
