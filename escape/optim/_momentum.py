"""Heavy-ball momentum in the two conventions of docs/theory.md §2 (SGD-style and EMA-style)."""

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import ArrayLike

from ._validate import check_choice, check_interval, check_learning_rate

MomentumStyle = Literal["sgd", "ema"]
_STYLES: tuple[str, ...] = ("sgd", "ema")


class ScaleByMomentumState(NamedTuple):
    """State of [`escape.optim.scale_by_momentum`][].

    Attributes:
        mu: the momentum buffer ``m``, one array per parameter (dtype of the parameter).
    """

    mu: optax.Updates


def _check_momentum_args(owner: str, beta, style) -> None:
    check_interval(owner, "beta", beta, 0.0, 1.0, closed_low=True, closed_high=False)
    check_choice(owner, "style", style, _STYLES)


def scale_by_momentum(beta: ArrayLike = 0.9, style: MomentumStyle = "sgd") -> optax.GradientTransformation:
    r"""Heavy-ball buffer ``m <- beta m + beta3 g``; the output is ``m``.

    ``beta3 = 1`` for ``style="sgd"`` (as in ``torch.optim.SGD`` and ``optax.trace``) and
    ``beta3 = 1 - beta`` for ``style="ema"`` (Adam's first moment, without bias correction).

    Args:
        beta: momentum coefficient, in ``[0, 1)``.
        style: ``"sgd"`` or ``"ema"``, a static choice.

    Returns:
        An `optax.GradientTransformation` whose state is a [`escape.optim.ScaleByMomentumState`][].
    """
    _check_momentum_args("scale_by_momentum", beta, style)

    def init_fn(params):
        return ScaleByMomentumState(mu=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params

        def step(g, m):
            # Hyperparameters in the buffer's dtype first: plain floats and inject_hyperparams' arrays
            # then give the same arithmetic. Branch on the static style, never on beta's value.
            b = jnp.asarray(beta, m.dtype)
            beta3 = 1 if style == "sgd" else 1 - b
            return (b * m + beta3 * g).astype(m.dtype)

        mu = jax.tree.map(step, updates, state.mu)
        return mu, ScaleByMomentumState(mu=mu)

    return optax.GradientTransformation(init_fn, update_fn)


def momentum(
    learning_rate: optax.ScalarOrSchedule, beta: ArrayLike = 0.9, style: MomentumStyle = "sgd"
) -> optax.GradientTransformation:
    r"""Heavy-ball momentum: ``m <- beta m + beta3 g``, ``theta <- theta - eta m``.

    ``beta3 = 1`` (``style="sgd"``) or ``1 - beta`` (``style="ema"``). In the continuous-time model
    (theory §3) the mass is ``eta / beta3`` and the damping ``(1 - beta) / beta3``.

    Args:
        learning_rate: ``eta``, a number ``> 0`` or an optax schedule.
        beta: momentum coefficient, in ``[0, 1)``.
        style: ``"sgd"`` or ``"ema"``.

    Returns:
        An `optax.GradientTransformation` (an `optax.chain`).

    Raises:
        ValueError: if a concrete hyperparameter is out of range or ``style`` is unknown.
    """
    check_learning_rate("momentum", learning_rate)
    _check_momentum_args("momentum", beta, style)
    return optax.chain(scale_by_momentum(beta=beta, style=style), optax.scale_by_learning_rate(learning_rate))
