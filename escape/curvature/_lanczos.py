"""Extreme Hessian eigenvalues by Lanczos with full reorthogonalisation; preconditioned sharpness."""

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._hvp import FlatObjective


class EigenPair(NamedTuple):
    """Top eigenvalue (a float) and a unit-norm eigenvector (a pytree shaped as the parameters)."""

    eigenvalue: float
    eigenvector: PyTree


@partial(jax.jit, static_argnums=(1, 2, 3))
def _lanczos_init(key, m, dim, dtype):
    """Basis ``(m + 1, dim)`` with a random unit first row; ``alphas`` ``(m,)``; ``betas`` ``(m + 1,)``, where
    ``betas[j]`` couples ``v_{j-1}`` and ``v_j`` (``betas[0]`` unused)."""
    v0 = jax.random.normal(key, (dim,), dtype)
    basis = jnp.zeros((m + 1, dim), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    return basis, jnp.zeros((m,), dtype), jnp.zeros((m + 1,), dtype)


@partial(jax.jit, static_argnames=("last",))
def _lanczos_update(basis, alphas, betas, j, w, *, last):
    """Orthogonalise ``w = A v_j`` against the basis, record ``alpha_j``, ``beta_{j+1}`` and ``v_{j+1}``.

    Classical Gram-Schmidt against every stored vector, applied twice ("twice is enough"): full
    reorthogonalisation, so the Ritz values carry no spurious copies. Rows of ``basis`` past ``j`` are zero and
    drop out of the projections. If ``w`` vanishes (the Krylov space is invariant), ``beta`` is set to 0,
    which splits the tridiagonal matrix into exact blocks, and the next vector is the coordinate vector
    ``e_k`` least represented in the basis (smallest column norm, so ``||(I - V^T V) e_k||^2 >= 1 - (j+1)/dim``),
    orthogonalised against it: no division by ~0, and no random numbers to draw.
    """
    v = basis[j]
    scale = jnp.linalg.norm(w)
    alpha = jnp.vdot(v, w)
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    alphas = alphas.at[j].set(alpha)
    if last:
        return basis, alphas, betas
    beta = jnp.linalg.norm(w)
    breakdown = beta <= 100 * jnp.finfo(w.dtype).eps * scale

    def restart(_):
        k = jnp.argmin(jnp.sum(jnp.square(basis), axis=0))
        r = jnp.zeros_like(w).at[k].set(1)
        for _ in range(2):
            r = r - basis.T @ (basis @ r)
        return r / jnp.linalg.norm(r), jnp.zeros_like(beta)

    def proceed(_):
        return w / beta, beta

    v_next, beta = jax.lax.cond(breakdown, restart, proceed, None)
    return basis.at[j + 1].set(v_next), alphas, betas.at[j + 1].set(beta)


@jax.jit
def _top_ritz_pair(basis, alphas, betas):
    """Largest eigenvalue of the tridiagonal matrix and its Ritz vector ``V^T s`` (unit norm)."""
    m = alphas.shape[0]
    off = betas[1:m]
    tridiag = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
    values, vectors = jnp.linalg.eigh(tridiag)  # ascending
    ritz = basis[:m].T @ vectors[:, -1]
    return values[-1], ritz / jnp.linalg.norm(ritz)


def lanczos_top_eigenpair(
    matvec: Callable[[Float[Array, " dim"]], Float[Array, " dim"]],
    dim: int,
    dtype: Any,
    *,
    key: PRNGKeyArray,
    num_iters: int,
) -> tuple[Float[Array, ""], Float[Array, " dim"]]:
    """Largest algebraic eigenvalue of a symmetric operator and a unit eigenvector, by ``num_iters`` Lanczos
    steps from a random Gaussian start, with full reorthogonalisation.

    ``num_iters`` is capped at ``dim`` (then the Ritz values are the exact eigenvalues). Memory:
    ``(num_iters + 1) * dim`` numbers for the basis.

    Args:
        matvec: ``v -> A v`` on flat vectors of length ``dim``; called ``num_iters`` times.
        dim: the dimension.
        dtype: floating dtype of the vectors.
        key: PRNG key for the start vector.
        num_iters: Krylov dimension, ``>= 1``.

    Returns:
        ``(eigenvalue, eigenvector)`` as arrays.
    """
    if int(num_iters) != num_iters or num_iters < 1:
        raise ValueError(f"lanczos: num_iters must be a positive integer, got {num_iters!r}")
    m = min(int(num_iters), int(dim))
    basis, alphas, betas = _lanczos_init(key, m, int(dim), jnp.dtype(dtype))
    for j in range(m):
        w = matvec(basis[j])
        basis, alphas, betas = _lanczos_update(basis, alphas, betas, j, w, last=(j == m - 1))
    return _top_ritz_pair(basis, alphas, betas)


def top_hessian_eigenvalue(
    loss_fn: Callable[..., Float[Array, ""]],
    params: PyTree,
    *,
    key: PRNGKeyArray,
    num_iters: int = 20,
    batches: Iterable | None = None,
) -> EigenPair:
    """Largest (algebraic) eigenvalue ``lambda_1`` of the Hessian of ``loss_fn`` at ``params``, by Lanczos.

    Uses ``num_iters`` Hessian-vector products (``jax.jvp`` of ``jax.grad``); the Hessian is never formed.
    Convergence is fast when ``lambda_1`` is separated from the rest of the spectrum; check it by raising
    ``num_iters`` or through the residual ``||H u - lambda_1 u||`` with [`escape.curvature.hvp`][].

    Args:
        loss_fn: ``loss_fn(params)``, or ``loss_fn(params, batch)`` when ``batches`` is given. ``params`` is a
            pytree of floating arrays (for an Equinox model, the ``eqx.partition(model, eqx.is_inexact_array)``
            half; close over the rest and the BatchNorm state).
        params: where the Hessian is taken.
        key: PRNG key of the start vector.
        num_iters: Lanczos steps (capped at the number of parameters).
        batches: optional sequence of batches; the Hessian is then that of the mean of
            ``loss_fn(params, batch)`` over the batches, accumulated one batch at a time.

    Returns:
        ``EigenPair(eigenvalue, eigenvector)``: a float and a unit-norm pytree shaped as ``params``.
    """
    obj = FlatObjective(loss_fn, params, batches)
    value, vector = lanczos_top_eigenpair(obj.matvec, obj.dim, obj.dtype, key=key, num_iters=num_iters)
    return EigenPair(float(value), obj.unravel(vector))


def preconditioned_sharpness(
    loss_fn: Callable[..., Float[Array, ""]],
    params: PyTree,
    preconditioner: PyTree,
    *,
    key: PRNGKeyArray,
    num_iters: int = 20,
    batches: Iterable | None = None,
) -> EigenPair:
    """``lambda_1(P^-1 H)`` for a diagonal preconditioner ``P`` (docs/theory.md §8).

    ``P^-1 H`` is similar to the symmetric ``P^-1/2 H P^-1/2``, whose largest algebraic eigenvalue is found by
    Lanczos on products ``u -> P^-1/2 H (P^-1/2 u)``. An adaptive method with preconditioner ``P`` and
    learning rate ``eta`` is stable on a quadratic while ``lambda_1(P^-1 H)`` stays below the threshold of
    its momentum scheme (``2 / eta`` without momentum, ``38 / eta`` for Adam's EMA momentum with
    ``beta1 = 0.9``).

    Args:
        loss_fn, params, key, num_iters, batches: as [`escape.curvature.top_hessian_eigenvalue`][].
        preconditioner: the diagonal of ``P``, a pytree shaped as ``params`` with positive entries (e.g.
            [`escape.curvature.adam_preconditioner`][]).

    Returns:
        ``EigenPair(eigenvalue, eigenvector)``; the eigenvector ``u = P^-1/2 w`` (normalised) is an eigenvector
        of ``P^-1 H``: ``H u = lambda_1 P u``.
    """
    obj = FlatObjective(loss_fn, params, batches)
    p_flat, _ = ravel_pytree(preconditioner)
    if p_flat.shape != obj.flat.shape:
        raise ValueError(
            f"preconditioned_sharpness: preconditioner has {p_flat.size} entries, params have {obj.dim}"
        )
    if bool(jnp.any(~(jnp.isfinite(p_flat) & (p_flat > 0)))):
        raise ValueError("preconditioned_sharpness: every entry of the preconditioner must be > 0 (and finite)")
    inv_sqrt = (1 / jnp.sqrt(p_flat)).astype(obj.dtype)
    matvec = lambda u: inv_sqrt * obj.matvec(inv_sqrt * u)
    value, w = lanczos_top_eigenpair(matvec, obj.dim, obj.dtype, key=key, num_iters=num_iters)
    u = inv_sqrt * w
    return EigenPair(float(value), obj.unravel(u / jnp.linalg.norm(u)))
