"""Heavy-ball momentum in phase space (docs/theory.md §3), SGD-style and EMA-style."""

from typing import Literal

import equinox as eqx
import jax.numpy as jnp

from ..landscapes import AbstractLandscape
from .._checks import check_positive
from ._base import AbstractPhaseSpaceDynamics, check_batch_size, check_interval, check_landscape


class HeavyBallLangevin(AbstractPhaseSpaceDynamics):
    r"""Heavy-ball momentum as an underdamped Langevin equation in ``(theta, r)``.

    ``d theta = r dt``,  ``M dr = -gamma r dt - grad L(theta) dt + sqrt(2 D(theta)) dW``, with

    - ``style="sgd"`` (``m <- beta m + g``, ``theta <- theta - eta m``): ``M = eta``, ``gamma = 1 - beta``;
    - ``style="ema"`` (``m <- beta m + (1 - beta) g``): ``M = eta / (1 - beta)``, ``gamma = 1``;

    and ``D = (eta / 2) C(theta)`` in both; time ``t = eta T``. ``r`` is the displacement per unit time,
    ``r = -m`` after each step (``theta`` moves by ``eta r`` per iteration). The effective temperature is
    ``T_eff = D / gamma``. The particle starts at rest (``r = 0``, as the optimizer's ``m = 0``).

    Args:
        landscape: the loss landscape with its noise model.
        learning_rate: ``eta``.
        batch_size: minibatch size ``B``.
        beta: momentum coefficient in ``[0, 1)``.
        style: ``"sgd"`` or ``"ema"``, as [`escape.optim.momentum`][].
    """

    landscape: AbstractLandscape
    learning_rate: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    style: Literal["sgd", "ema"] = eqx.field(static=True)

    def __init__(
        self,
        landscape: AbstractLandscape,
        learning_rate: float,
        batch_size: int = 1,
        beta: float = 0.9,
        style: Literal["sgd", "ema"] = "sgd",
    ):
        self.landscape = check_landscape("HeavyBallLangevin", landscape)
        self.learning_rate = check_positive("HeavyBallLangevin", "learning_rate", learning_rate)
        self.batch_size = check_batch_size("HeavyBallLangevin", batch_size)
        self.beta = check_interval("HeavyBallLangevin", "beta", beta, 0.0, 1.0)
        if style not in ("sgd", "ema"):
            raise ValueError(f"HeavyBallLangevin: style must be 'sgd' or 'ema', got {style!r}")
        self.style = style

    @property
    def components(self):
        return ("theta", "r")

    @property
    def mass(self) -> float:
        """``M = eta / beta3``."""
        return self.learning_rate if self.style == "sgd" else self.learning_rate / (1.0 - self.beta)

    @property
    def damping(self) -> float:
        """``gamma = (1 - beta) / beta3``."""
        return 1.0 - self.beta if self.style == "sgd" else 1.0

    def initial_state(self, theta0):
        theta0 = jnp.asarray(theta0)
        return jnp.stack([theta0, jnp.zeros_like(theta0)])

    def coefficients(self, y):
        theta = y[0]
        ones = jnp.ones_like(theta)
        return self.mass * ones, self.damping * ones, self.diffusion_coefficient(theta)
