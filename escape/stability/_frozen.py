"""Fixed preconditioners as optax transformations: ``scale_by_preconditioner`` and "frozen Adam"."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import PyTree

from ..optim._validate import check_interval, check_learning_rate


def _check_preconditioner(owner: str, preconditioner: PyTree) -> None:
    leaves = jax.tree.leaves(preconditioner)
    if not leaves:
        raise ValueError(f"{owner}: preconditioner holds no arrays")
    for leaf in leaves:
        if isinstance(leaf, jax.core.Tracer):
            continue
        if not bool(jnp.all(jnp.isfinite(leaf) & (jnp.asarray(leaf) > 0))):
            raise ValueError(f"{owner}: every entry of the preconditioner must be finite and > 0")


def scale_by_preconditioner(preconditioner: PyTree) -> optax.GradientTransformation:
    """Divide updates by a fixed diagonal preconditioner ``P`` (a pytree shaped as the parameters, ``> 0``).

    ``optax.chain(method, scale_by_preconditioner(P), optax.scale_by_learning_rate(eta))`` is the
    preconditioned ``method``: the step ``-eta P^-1 d``; stable on a quadratic while
    ``lambda_1(P^-1 A)`` is below ``method``'s threshold ([`escape.stability.stability_threshold`][]).
    """
    _check_preconditioner("scale_by_preconditioner", preconditioner)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, p: (u / p).astype(u.dtype), updates, preconditioner), state

    return optax.GradientTransformation(init_fn, update_fn)


class FrozenAdamState(NamedTuple):
    """Frozen Adam's state: the EMA of the gradients ``mu`` (not bias-corrected)."""

    mu: PyTree


def frozen_adam(
    learning_rate: optax.ScalarOrSchedule, preconditioner: PyTree, b1: float = 0.9, mu: PyTree | None = None
) -> optax.GradientTransformation:
    """Adam's update with its preconditioner held fixed: ``m <- b1 m + (1 - b1) g``, ``theta <- theta - eta P^-1 m``.

    With ``P`` from [`escape.curvature.preconditioner`][] (``P = (1 - b1^t)(sqrt(v_hat) + eps)``) and ``mu``
    from the same Adam state, the first step of frozen Adam equals the Adam step that state would take next
    (if ``P`` was read with that step's gradient); afterwards the momentum carries on while ``P`` stays. On a
    quadratic it is a linear recurrence (EMA heavy ball in the metric ``P``), stable exactly while
    ``lambda_1(P^-1 H) < (2 + 2 b1) / ((1 - b1) eta)``.

    Args:
        learning_rate: ``eta``, a number ``> 0`` or a schedule.
        preconditioner: the diagonal of ``P``, a pytree shaped as the parameters with entries ``> 0``.
        b1: the momentum, in ``[0, 1)``.
        mu: the momentum to start from (``ScaleByAdamState.mu`` of a running Adam); zeros if ``None``.
    """
    check_learning_rate("frozen_adam", learning_rate)
    check_interval("frozen_adam", "b1", b1, 0.0, 1.0, closed_low=True, closed_high=False)
    _check_preconditioner("frozen_adam", preconditioner)

    def init_fn(params):
        start = jax.tree.map(jnp.zeros_like, params) if mu is None else jax.tree.map(jnp.asarray, mu)
        return FrozenAdamState(mu=start)

    def update_fn(updates, state, params=None):
        del params
        new_mu = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g, updates, state.mu)
        out = jax.tree.map(lambda m, p, g: (m / p).astype(g.dtype), new_mu, preconditioner, updates)
        return out, FrozenAdamState(mu=new_mu)

    return optax.chain(optax.GradientTransformation(init_fn, update_fn), optax.scale_by_learning_rate(learning_rate))
