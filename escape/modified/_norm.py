"""The perturbed one-norm, its gradient through a Hessian-vector product, and the memory coefficients."""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree


def perturbed_one_norm(v: PyTree, eps: float) -> Array:
    """``||v||_{1,eps} = sum_i sqrt(v_i^2 + eps)`` over every leaf of ``v`` (the one-norm at ``eps = 0``)."""
    return sum(jnp.sum(jnp.sqrt(jnp.square(x) + eps)) for x in jax.tree.leaves(v))


def gradient_and_one_norm_gradient(loss: Callable[[PyTree], Array], theta: PyTree, eps) -> tuple[PyTree, PyTree]:
    """``(g, G)`` with ``g = grad E(theta)`` and ``G = grad ||grad E||_{1,eps} = H (g / sqrt(g^2 + eps))``.

    One linearisation of ``grad E`` at ``theta`` (its primal output is ``g``) applied to one tangent: a
    gradient and a Hessian-vector product, never the Hessian.
    """
    g, hvp = jax.linearize(jax.grad(loss), theta)
    return g, hvp(jax.tree.map(lambda x: x / jnp.sqrt(jnp.square(x) + eps), g))


def memory_coefficient(beta, n):
    """``beta / (1 - beta) - (n + 1) beta^(n+1) / (1 - beta^(n+1))``: the bias-corrected mean lag of an EMA.

    ``sum_{k<=n} w_k (n - k)`` for the bias-corrected weights ``w_k = (1 - beta) beta^(n-k) / (1 - beta^(n+1))``
    of step ``n``; 0 at ``n = 0``, tending to ``beta / (1 - beta)`` (Remark 3.2 of the implicit-bias paper:
    ``2 c + 1`` replaces ``(1 + beta) / (1 - beta)`` in the first steps). ``beta = 0`` gives 0.
    """
    beta = jnp.asarray(beta, dtype=jnp.result_type(float))
    n = jnp.asarray(n, dtype=beta.dtype)
    pw = beta ** (n + 1)
    safe = jnp.where(beta > 0, 1 - pw, 1.0)
    return jnp.where(beta > 0, beta / (1 - beta) - (n + 1) * pw / safe, 0.0)


def ema_weights(beta: float, schedule: np.ndarray, n_batches: int) -> np.ndarray:
    """Bias-corrected EMA weights ``A[l, b] = sum_{k<=l, b_k=b} (1-beta) beta^(l-k) / (1-beta^(l+1))`` (float64).

    ``schedule[k]`` is the minibatch of step ``k``; row ``l`` of ``A`` mixes the minibatch gradients into the
    moment Adam holds after step ``l``. ``beta = 0`` gives the one-hot rows of the schedule.
    """
    schedule = np.asarray(schedule, dtype=np.int64)
    out = np.zeros((schedule.size, n_batches))
    a = np.zeros(n_batches)
    for l, b in enumerate(schedule):
        a *= beta
        a[b] += 1.0 - beta
        out[l] = a / (1.0 - beta ** (l + 1)) if beta > 0 else a
    return out
