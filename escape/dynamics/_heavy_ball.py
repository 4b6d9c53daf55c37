"""Heavy-ball momentum in phase space (docs/theory.md §3), SGD-style and EMA-style."""

from typing import Literal

import equinox as eqx
import jax.numpy as jnp

from ..landscapes import AbstractLandscape
from .._checks import check_positive
from ._base import AbstractPhaseSpaceDynamics, check_batch_size, check_interval, check_landscape
from ._sgd import check_order


class HeavyBallLangevin(AbstractPhaseSpaceDynamics):
    r"""Heavy-ball momentum as an underdamped Langevin equation in ``(theta, r)``.

    ``d theta = r dt``,  ``M dr = -gamma r dt - grad L(theta) dt + sqrt(2 D(theta)) dW``, with

    - ``style="sgd"`` (``m <- beta m + g``, ``theta <- theta - eta m``): ``M = eta``, ``gamma = 1 - beta``;
    - ``style="ema"`` (``m <- beta m + (1 - beta) g``): ``M = eta / (1 - beta)``, ``gamma = 1``;

    and ``D = (eta / 2) C(theta)`` in both; time ``t = eta T``. ``r`` is the displacement per unit time,
    ``r = -m`` after each step (``theta`` moves by ``eta r`` per iteration). The effective temperature is
    ``T_eff = D / gamma``. With ``order=1`` the particle starts at rest (``r = 0``, as the optimizer's ``m = 0``).

    ``order=2`` is the second-order stochastic modified equation (docs/models/heavy_ball.md): the mass
    becomes ``M = eta (1 + beta) / (2 beta3)`` (``beta3 = 1`` for ``"sgd"``, ``1 - beta`` for ``"ema"``),
    from Taylor-expanding the two-step recursion ``theta_{k+1} - theta_k = beta (theta_k - theta_{k-1}) -
    eta beta3 g_k`` to second order in ``eta``, and the particle starts with the velocity
    ``r(0) = -beta3 grad L(theta(0)) / (1 + beta)`` (its slow mode then carries the discrete iterates'
    initial amplitude to ``O(eta^2)``; with ``r(0) = 0`` it is off by ``O(eta)``). Damping and noise are
    those of order 1. The law of ``theta`` then matches the optimizer's to ``O(eta^2)`` at a fixed time
    (``O(eta)`` for order 1; ``tests/test_modified_sde.py``). With ``beta = 0`` its slow manifold is
    [`SGDLangevin`][escape.dynamics.SGDLangevin]'s order-2 drift.

    Args:
        landscape: the loss landscape with its noise model.
        learning_rate: ``eta``.
        batch_size: minibatch size ``B``.
        beta: momentum coefficient in ``[0, 1)``.
        style: ``"sgd"`` or ``"ema"``, as [`escape.optim.momentum`][].
        order: weak order in ``eta`` of the model: ``1`` (default) or ``2``.

    Raises:
        ValueError: an argument out of range (``order`` other than 1 or 2, ``style``, ``beta``).
    """

    landscape: AbstractLandscape
    learning_rate: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    style: Literal["sgd", "ema"] = eqx.field(static=True)
    order: int = eqx.field(static=True)

    def __init__(
        self,
        landscape: AbstractLandscape,
        learning_rate: float,
        batch_size: int = 1,
        beta: float = 0.9,
        style: Literal["sgd", "ema"] = "sgd",
        order: int = 1,
    ):
        self.landscape = check_landscape("HeavyBallLangevin", landscape)
        self.learning_rate = check_positive("HeavyBallLangevin", "learning_rate", learning_rate)
        self.batch_size = check_batch_size("HeavyBallLangevin", batch_size)
        self.beta = check_interval("HeavyBallLangevin", "beta", beta, 0.0, 1.0)
        if style not in ("sgd", "ema"):
            raise ValueError(f"HeavyBallLangevin: style must be 'sgd' or 'ema', got {style!r}")
        self.style = style
        self.order = check_order("HeavyBallLangevin", order)

    @property
    def components(self):
        return ("theta", "r")

    @property
    def beta3(self) -> float:
        """The gradient's weight in the buffer update: ``1`` (``"sgd"``) or ``1 - beta`` (``"ema"``)."""
        return 1.0 if self.style == "sgd" else 1.0 - self.beta

    @property
    def mass(self) -> float:
        """``M = eta / beta3`` (order 1) or ``eta (1 + beta) / (2 beta3)`` (order 2)."""
        factor = 1.0 if self.order == 1 else 0.5 * (1.0 + self.beta)
        return factor * self.learning_rate / self.beta3

    @property
    def damping(self) -> float:
        """``gamma = (1 - beta) / beta3``."""
        return 1.0 - self.beta if self.style == "sgd" else 1.0

    def initial_state(self, theta0):
        """``(theta0, 0)`` (order 1) or ``(theta0, -beta3 grad L(theta0) / (1 + beta))`` (order 2)."""
        theta0 = jnp.asarray(theta0)
        if self.order == 1:
            return jnp.stack([theta0, jnp.zeros_like(theta0)])
        r0 = -(self.beta3 / (1.0 + self.beta)) * self.landscape.gradient(theta0)
        return jnp.stack([theta0, r0.astype(theta0.dtype)])

    def coefficients(self, y):
        theta = y[0]
        ones = jnp.ones_like(theta)
        return self.mass * ones, self.damping * ones, self.diffusion_coefficient(theta)
