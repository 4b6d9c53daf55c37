"""Spectral density of the Hessian by stochastic Lanczos quadrature (SLQ), matrix-free."""

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._hvp import FlatObjective
from ._lanczos import _lanczos_init, _lanczos_update, _operator


class SpectralDensity(NamedTuple):
    """Gauss quadrature of the spectral measure, one rule per probe.

    For a probe ``v`` (unit norm) and ``m`` Lanczos steps, ``sum_i weights[i] f(nodes[i])`` equals
    ``v' f(A) v`` exactly for every polynomial ``f`` of degree ``< 2m``; the mean over Rademacher probes is an
    unbiased estimate of ``tr f(A) / dim``.

    Attributes:
        nodes: ``(probes, m)`` Ritz values.
        weights: ``(probes, m)`` squared first components of the tridiagonal eigenvectors (each row sums to 1).
        dim: the operator's dimension.
        num_matvecs: operator products used.
    """

    nodes: Any
    weights: Any
    dim: int
    num_matvecs: int

    def density(self, grid, sigma: float) -> np.ndarray:
        """The spectral density on ``grid``, each node broadened by a Gaussian of width ``sigma`` (integrates to
        1 over the real line; multiply by ``dim`` for eigenvalue counts)."""
        if not sigma > 0:
            raise ValueError(f"spectral_density: sigma must be > 0, got {sigma!r}")
        t = np.asarray(grid, np.float64)[:, None, None]
        g = np.exp(-0.5 * ((t - self.nodes[None]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        return np.mean(np.sum(self.weights[None] * g, axis=-1), axis=-1)

    def moment(self, j: int) -> float:
        """The estimate of ``tr(A^j) / dim``."""
        return float(np.mean(np.sum(self.weights * self.nodes**j, axis=-1)))


def spectral_density(
    loss_fn: Callable[..., Float[Array, ""]],
    params: PyTree,
    *,
    key: PRNGKeyArray,
    num_iters: int = 60,
    num_probes: int = 8,
    batches: Iterable | None = None,
    preconditioner=None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature of the Hessian's (or ``P^-1/2 H P^-1/2``'s) spectral density.

    ``num_probes`` Rademacher probes, ``num_iters`` Lanczos steps each (full reorthogonalisation), so
    ``num_probes * num_iters`` HVPs. Draw the density with [`SpectralDensity.density`][escape.curvature.SpectralDensity.density].

    Args:
        loss_fn, params, batches, preconditioner: as [`escape.curvature.hessian_eigenpairs`][].
        key: PRNG key of the probes.
        num_iters: Lanczos steps per probe (capped at the dimension).
        num_probes: independent probes, ``>= 1``.
    """
    if isinstance(num_probes, bool) or int(num_probes) != num_probes or num_probes < 1:
        raise ValueError(f"spectral_density: num_probes must be a positive integer, got {num_probes!r}")
    if isinstance(num_iters, bool) or int(num_iters) != num_iters or num_iters < 1:
        raise ValueError(f"spectral_density: num_iters must be a positive integer, got {num_iters!r}")
    obj = FlatObjective(loss_fn, params, batches)
    matvec, _ = _operator(obj, preconditioner)
    m = min(int(num_iters), obj.dim)
    nodes, weights = [], []
    for i in range(int(num_probes)):
        k = jax.random.fold_in(key, i)
        basis, alphas, betas = _lanczos_init(k, m, obj.dim, obj.dtype)
        v0 = jax.random.rademacher(k, (obj.dim,), obj.dtype)
        basis = basis.at[0].set(v0 / jnp.linalg.norm(v0))
        for j in range(m):
            basis, alphas, betas = _lanczos_update(basis, alphas, betas, j, matvec(basis[j]), last=(j == m - 1))
        a, b = (np.asarray(x, np.float64) for x in jax.device_get((alphas, betas)))
        values, vectors = scipy.linalg.eigh_tridiagonal(a, b[1:m]) if m > 1 else (a, np.ones((1, 1)))
        nodes.append(values)
        weights.append(vectors[0] ** 2)
    return SpectralDensity(np.stack(nodes), np.stack(weights), obj.dim, m * int(num_probes))
