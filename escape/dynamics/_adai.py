"""Adai as an EMA heavy ball with adaptive, per-coordinate inertia (docs/theory.md §3)."""

from typing import Literal

import equinox as eqx
import jax.numpy as jnp

from .._checks import check_positive
from .._custom_types import Array, Float
from ..landscapes import AbstractLandscape
from ._base import (
    AbstractSecondMomentDynamics,
    check_batch_size,
    check_closure,
    check_interval,
    check_landscape,
    frozen_second_moment,
)


class AdaiLangevin(AbstractSecondMomentDynamics):
    r"""Adai: EMA heavy ball with ``beta1_i = clip(1 - beta0 v_i / v_bar, 0, 1 - eps)``.

    In dynamical time ``t = eta T``:

        d theta = r dt,   M_i dr_i = -r_i dt - d_i L dt + sqrt(2 D_i) dW_i,
        M_i = eta / (1 - beta1_i),   gamma = 1,   D_i = (eta / 2) C_i(theta),

    with ``v_bar`` the mean of ``v`` over every coordinate: SGD's temperature ``T_eff = D``, an adaptive
    mass. Bias corrections (``v_hat``, ``m / (1 - P)``) are dropped (stationary regime), as is weight decay.
    Closures for ``v`` as in [`escape.dynamics.AdamLangevin`][]: ``"quasi-static"`` (``v = E g^2`` frozen at
    ``v_point``) or ``"augmented"`` (``dv/dt = ((1 - beta2) / eta) (C + (grad L)^2 - v)``).

    Args:
        landscape: the loss landscape with its noise model.
        learning_rate: ``eta``.
        batch_size: minibatch size ``B``.
        beta0, beta2, eps: Adai's hyperparameters ([`escape.optim.adai`][]; ``eps`` bounds the inertia).
        closure: ``"quasi-static"`` or ``"augmented"``.
        v_point: where the quasi-static ``v`` is evaluated (default the landscape's initial point).
    """

    landscape: AbstractLandscape
    learning_rate: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    beta0: float = eqx.field(static=True)
    beta2: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    closure: Literal["quasi-static", "augmented"] = eqx.field(static=True)
    v_frozen: Float[Array, " dim"]

    def __init__(
        self,
        landscape: AbstractLandscape,
        learning_rate: float,
        batch_size: int = 1,
        beta0: float = 0.1,
        beta2: float = 0.99,
        eps: float = 1e-3,
        closure: Literal["quasi-static", "augmented"] = "quasi-static",
        v_point=None,
    ):
        self.landscape = check_landscape("AdaiLangevin", landscape)
        self.learning_rate = check_positive("AdaiLangevin", "learning_rate", learning_rate)
        self.batch_size = check_batch_size("AdaiLangevin", batch_size)
        self.beta0 = check_positive("AdaiLangevin", "beta0", beta0)
        self.beta2 = check_interval("AdaiLangevin", "beta2", beta2, 0.0, 1.0)
        if not (isinstance(eps, (int, float)) and 0.0 < eps < 1.0):
            raise ValueError(f"AdaiLangevin: eps must be in (0, 1), got {eps!r}")
        self.eps = float(eps)
        self.closure = check_closure("AdaiLangevin", closure)
        self.v_frozen = frozen_second_moment(landscape, v_point, self.batch_size)

    def inertia(self, y) -> Float[Array, " dim"]:
        """``1 - beta1_i = clip(beta0 v_i / v_bar, eps, 1)``."""
        v = self.second_moment(y)
        v_bar = jnp.mean(v)
        ratio = jnp.where(v_bar > 0, v / jnp.where(v_bar > 0, v_bar, 1.0), 1.0)
        return jnp.clip(self.beta0 * ratio, self.eps, 1.0)

    @property
    def v_decay(self) -> float:
        return self.beta2

    def coefficients(self, y):
        theta = y[0]
        return self.learning_rate / self.inertia(y), jnp.ones_like(theta), self.diffusion_coefficient(theta)

