"""Theorem 3.1's piecewise modified equation of mini-batch Adam (one piece per step, one minibatch per step)."""

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PyTree

from ._fields import check_adam_hyperparameters
from ._norm import ema_weights


class MinibatchAdamEquation(eqx.Module):
    """Mini-batch Adam's piecewise ODE (Theorem 3.1): in piece ``n``, ``theta' = -M/R + h (M (2P + P~) / (2 R^3)
    - (2L + L~) / (2R))``.

    ``M^(l)``, ``R^(l)`` are the bias-corrected moments Adam would hold after step ``l`` if every minibatch
    gradient were taken at the current ``theta``; ``L``, ``P`` (and ``L~``, ``P~``) carry the Hessians of the
    minibatches along the lags ``sum_{l=k}^{n-1} M^(l)/R^(l)`` (and ``M^(n)/R^(n)``). Per evaluation: one gradient
    and two Hessian-vector products per distinct minibatch (the lags of all steps that used a minibatch fold
    into one tangent), and O(steps x minibatches x parameters) for the moment history. ``batch_loss(params,
    b)`` is minibatch ``b``'s loss; ``schedule[k]`` the minibatch of step ``k`` (its length is the number of
    pieces). With one minibatch this is [`escape.modified.AdamEquation`][] with its bias correction.
    """

    batch_loss: Callable[[PyTree, Array], Array] = eqx.field(static=True)
    n_batches: int = eqx.field(static=True)
    learning_rate: float | Array
    b1: float | Array
    b2: float | Array
    eps: float | Array
    schedule: Array
    moments_b1: Array
    moments_b2: Array
    order: int = eqx.field(static=True, default=1)

    def __init__(self, batch_loss, schedule, learning_rate, b1=0.9, b2=0.999, eps=1e-8, *, n_batches=None, order=1):
        check_adam_hyperparameters("MinibatchAdamEquation", learning_rate, b1, b2, eps)
        sched = np.asarray(schedule)
        if sched.ndim != 1 or sched.size == 0 or not np.issubdtype(sched.dtype, np.integer) or sched.min() < 0:
            raise ValueError("MinibatchAdamEquation: schedule must be a non-empty 1-d array of minibatch indices >= 0")
        m = int(sched.max()) + 1 if n_batches is None else int(n_batches)
        if sched.max() >= m:
            raise ValueError(f"MinibatchAdamEquation: schedule names minibatch {sched.max()} but n_batches is {m}")
        if order not in (0, 1):
            raise ValueError(f"MinibatchAdamEquation: order must be 0 or 1, got {order!r}")
        self.batch_loss, self.n_batches, self.order = batch_loss, m, order
        self.learning_rate, self.b1, self.b2, self.eps = learning_rate, b1, b2, eps
        self.schedule = jnp.asarray(sched)
        self.moments_b1 = jnp.asarray(ema_weights(float(b1), sched, m))
        self.moments_b2 = jnp.asarray(ema_weights(float(b2), sched, m))

    def _step_weights(self, beta, n):
        """Bias-corrected weights of steps ``k <= n`` in step ``n``'s moment, summed per minibatch: ``(N, m)``."""
        k = jnp.arange(self.schedule.shape[0])
        lag = jnp.maximum(n - k, 0).astype(self.moments_b1.dtype)
        w = jnp.where(k <= n, (1 - beta) * beta**lag / (1 - beta ** (n + 1.0)), 0.0)
        return w[:, None] * jax.nn.one_hot(self.schedule, self.n_batches, dtype=w.dtype)

    def __call__(self, n, theta: PyTree) -> PyTree:
        flat, unravel = ravel_pytree(theta)
        loss = lambda f, b: self.batch_loss(unravel(f), b)  # noqa: E731
        grads = jax.vmap(jax.grad(loss), in_axes=(None, 0))(flat, jnp.arange(self.n_batches))  # (m, p)
        m_n = self.moments_b1[n] @ grads
        r_n = jnp.sqrt(self.moments_b2[n] @ jnp.square(grads) + self.eps)
        if self.order == 0:
            return unravel(-m_n / r_n)
        ratio = (self.moments_b1 @ grads) / jnp.sqrt(self.moments_b2 @ jnp.square(grads) + self.eps)  # (N, p)
        before = jnp.cumsum(ratio, axis=0) - ratio  # sum_{l<k} M^(l)/R^(l)
        lags = 2.0 * (before[n][None, :] - before) + ratio[n][None, :]  # 2 sum_{l=k}^{n-1} M^(l)/R^(l) + M^(n)/R^(n), per step k
        tangents = jnp.stack([self._step_weights(self.b1, n).T @ lags, self._step_weights(self.b2, n).T @ lags], 1)

        def hvps(b, vs):  # one linearisation of minibatch b's gradient, two tangents
            _, lin = jax.linearize(lambda f: jax.grad(loss)(f, b), flat)
            return jax.vmap(lin)(vs)

        hv = jax.vmap(hvps)(jnp.arange(self.n_batches), tangents)  # (m, 2, p)
        two_l = jnp.sum(hv[:, 0], axis=0)
        two_p = jnp.sum(grads * hv[:, 1], axis=0)
        h = self.learning_rate
        return unravel(-m_n / r_n + h * (m_n * two_p / (2 * r_n**3) - two_l / (2 * r_n)))
