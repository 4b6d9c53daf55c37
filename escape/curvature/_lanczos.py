"""Extreme Hessian eigenvalues by Lanczos with full reorthogonalisation; preconditioned sharpness."""

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
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


class Eigenpairs(NamedTuple):
    """Top-k eigenpairs, largest algebraic first.

    Attributes:
        eigenvalues: ``(k,)`` NumPy float64 array, descending.
        eigenvectors: list of ``k`` unit-norm pytrees shaped as the parameters (for a preconditioned operator,
            eigenvectors of ``P^-1 H``: ``H u = lambda P u``).
        basis: ``(k, dim)`` flat unit eigenvectors of the symmetric operator itself; pass it as ``init`` to
            the next call to warm-start it (along a training run).
        num_matvecs: operator products used (Hessian-vector products).
        residuals: ``(k,)`` Lanczos residual bounds ``|beta_{m+1} s_{m,i}|`` of the Ritz pairs.
    """

    eigenvalues: Any
    eigenvectors: list
    basis: Any
    num_matvecs: int
    residuals: Any


def _ritz(alphas, betas, m: int, k: int):
    """Top-k Ritz values (descending), their tridiagonal eigenvectors and residual bounds after ``m`` steps."""
    a = np.asarray(alphas[:m], np.float64)
    b = np.asarray(betas[1:m], np.float64)
    values, vectors = scipy.linalg.eigh_tridiagonal(a, b) if m > 1 else (a, np.ones((1, 1)))
    order = np.argsort(values)[::-1][:k]
    beta_next = float(np.asarray(betas[m])) if m < betas.shape[0] else 0.0
    return values[order], vectors[:, order], np.abs(beta_next * vectors[-1, order])


def lanczos_eigenpairs(
    matvec: Callable[[Float[Array, " dim"]], Float[Array, " dim"]],
    dim: int,
    dtype: Any,
    *,
    k: int = 1,
    key: PRNGKeyArray,
    num_iters: int,
    init=None,
    tol: float | None = None,
):
    """Top-``k`` (largest algebraic) eigenpairs of a symmetric operator by Lanczos with full
    reorthogonalisation.

    Args:
        matvec: ``v -> A v`` on flat vectors of length ``dim``.
        dim, dtype: the vectors' length and floating dtype.
        k: how many eigenpairs, ``1 <= k <= num_iters``.
        key: PRNG key of the random part of the start vector.
        num_iters: the most Lanczos steps (capped at ``dim``: then the Ritz values are exact).
        init: ``(k', dim)`` previous eigenvectors (``Eigenpairs.basis``): the start vector is their sum, so a
            Krylov space that begins near the old top eigenspace converges in few steps (an exactly invariant
            start is handled by the breakdown restart).
        tol: stop once every top-k residual bound is below ``tol * max(|lambda|)`` (checked every step from
            step ``k`` on); ``None`` runs ``num_iters`` steps.

    Returns:
        ``(values (k,), vectors (k, dim), num_matvecs, residuals (k,))``.
    """
    if int(num_iters) != num_iters or num_iters < 1:
        raise ValueError(f"lanczos: num_iters must be a positive integer, got {num_iters!r}")
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= min(int(num_iters), int(dim)):
        raise ValueError(f"lanczos: k must be an integer in [1, min(num_iters, dim)], got {k!r}")
    if tol is not None and not tol > 0:
        raise ValueError(f"lanczos: tol must be > 0 or None, got {tol!r}")
    m_max = min(int(num_iters), int(dim))
    basis, alphas, betas = _lanczos_init(key, m_max, int(dim), jnp.dtype(dtype))
    if init is not None:
        init = jnp.atleast_2d(jnp.asarray(init, dtype))
        if init.shape[-1] != dim:
            raise ValueError(f"lanczos: init has vectors of length {init.shape[-1]}, the operator {dim}")
        v0 = jnp.sum(init, axis=0)
        basis = basis.at[0].set(v0 / jnp.linalg.norm(v0))
    m = m_max
    for j in range(m_max):
        w = matvec(basis[j])
        basis, alphas, betas = _lanczos_update(basis, alphas, betas, j, w, last=(j == m_max - 1))
        if tol is not None and j + 1 >= k and j + 1 < m_max:
            values, _, resid = _ritz(*jax.device_get((alphas, betas)), j + 1, k)
            if np.all(resid <= tol * max(np.max(np.abs(values)), np.finfo(np.float64).tiny)):
                m = j + 1
                break
    values, svecs, resid = _ritz(*jax.device_get((alphas, betas)), m, k)
    vectors = jnp.asarray(svecs.T, dtype) @ basis[:m]
    vectors = vectors / jnp.linalg.norm(vectors, axis=1, keepdims=True)
    return values, vectors, m, resid


def lanczos_top_eigenpair(
    matvec: Callable[[Float[Array, " dim"]], Float[Array, " dim"]],
    dim: int,
    dtype: Any,
    *,
    key: PRNGKeyArray,
    num_iters: int,
) -> tuple[Float[Array, ""], Float[Array, " dim"]]:
    """Largest algebraic eigenvalue of a symmetric operator and a unit eigenvector: ``num_iters`` Lanczos steps
    from a random Gaussian start, full reorthogonalisation ([`lanczos_eigenpairs`][escape.curvature.lanczos_eigenpairs]
    with ``k = 1``)."""
    values, vectors, _, _ = lanczos_eigenpairs(matvec, dim, dtype, k=1, key=key, num_iters=num_iters)
    return jnp.asarray(values[0], dtype), vectors[0]


def _operator(obj: FlatObjective, preconditioner):
    """``(matvec, inv_sqrt)``: the Hessian, or ``P^-1/2 H P^-1/2`` for a diagonal ``P``."""
    if preconditioner is None:
        return obj.matvec, None
    from ._preconditioner import Preconditioner

    diagonal = preconditioner.diagonal if isinstance(preconditioner, Preconditioner) else preconditioner
    p_flat, _ = ravel_pytree(diagonal)
    if p_flat.shape != obj.flat.shape:
        raise ValueError(f"curvature: preconditioner has {p_flat.size} entries, params have {obj.dim}")
    if bool(jnp.any(~(jnp.isfinite(p_flat) & (p_flat > 0)))):
        raise ValueError("curvature: every entry of the preconditioner must be > 0 (and finite)")
    inv_sqrt = (1 / jnp.sqrt(p_flat)).astype(obj.dtype)
    return (lambda u: inv_sqrt * obj.matvec(inv_sqrt * u)), inv_sqrt


def hessian_eigenpairs(
    loss_fn: Callable[..., Float[Array, ""]],
    params: PyTree,
    *,
    k: int = 1,
    key: PRNGKeyArray,
    num_iters: int = 40,
    batches: Iterable | None = None,
    preconditioner=None,
    init=None,
    tol: float | None = None,
) -> Eigenpairs:
    """Top-``k`` eigenpairs, largest algebraic, of the Hessian ``H`` of ``loss_fn`` at ``params``, or of
    ``P^-1/2 H P^-1/2`` (the spectrum of ``P^-1 H``) for a diagonal preconditioner ``P``; matrix-free.

    Largest *algebraic*, not largest magnitude: a Hessian whose most negative eigenvalue dominates still
    returns its top positive ones (scipy's ``eigsh`` default ``which="LM"`` would return the negative one).

    Args:
        loss_fn, params, batches: as [`escape.curvature.top_hessian_eigenvalue`][] (``batches``: the Hessian of
            the mean loss over them, one batch at a time: a whole data set in chunks).
        k: how many eigenpairs.
        key: PRNG key of the start vector.
        num_iters: the most Lanczos steps (HVPs).
        preconditioner: ``None``, a pytree of the diagonal of ``P`` (entries ``> 0``), or a
            [`Preconditioner`][escape.curvature.Preconditioner] (from [`escape.curvature.preconditioner`][]).
        init: the ``basis`` of an earlier result (warm start, e.g. the previous step of a training run).
        tol: relative residual at which to stop early (e.g. ``1e-4``); ``None`` runs ``num_iters`` steps.

    Returns:
        [`Eigenpairs`][escape.curvature.Eigenpairs], with the number of HVPs used.
    """
    obj = FlatObjective(loss_fn, params, batches)
    matvec, inv_sqrt = _operator(obj, preconditioner)
    values, vectors, n, resid = lanczos_eigenpairs(matvec, obj.dim, obj.dtype, k=k, key=key, num_iters=num_iters,
                                                   init=init, tol=tol)
    out = vectors if inv_sqrt is None else vectors * inv_sqrt[None, :]
    out = out / jnp.linalg.norm(out, axis=1, keepdims=True)
    return Eigenpairs(values, [obj.unravel(u) for u in out], vectors, n, resid)


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
    pairs = hessian_eigenpairs(loss_fn, params, key=key, num_iters=num_iters, batches=batches,
                               preconditioner=preconditioner)
    return EigenPair(float(pairs.eigenvalues[0]), pairs.eigenvectors[0])

