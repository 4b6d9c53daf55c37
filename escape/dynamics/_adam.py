"""Adam (and RMSProp, ``b1 = 0``) as a phase-space model with a per-coordinate learning rate (docs/theory.md §3)."""

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


class AdamLangevin(AbstractSecondMomentDynamics):
    r"""Adam as EMA heavy ball with the diagonal learning rate ``eta_i = eta / s_i``, ``s_i = sqrt(v_i) + eps``.

    In dynamical time ``t = eta T`` (one time unit per ``1 / eta`` iterations, as for every model):

        d theta = r dt,   M_i dr_i = -gamma_i r_i dt - d_i L dt + sqrt(2 D_i) dW_i,
        M_i = eta s_i / (1 - b1),   gamma_i = s_i,   D_i = (eta / 2) C_i(theta),

    i.e. ``dr = ((1 - b1) / eta) (-r - grad L / s) dt + ...``; ``T_eff,i = D_i / gamma_i = eta_i C_i / 2``.
    Bias corrections are dropped (stationary regime). Closures for ``v``:

    - ``"quasi-static"``: ``v`` frozen at ``E g^2 = C + (grad L)^2`` evaluated at ``v_point`` (default the
      landscape's initial point: the minimum or the saddle); the state is ``(theta, r)``.
    - ``"augmented"``: ``v`` is a third row with ``dv/dt = ((1 - b2) / eta) (C(theta) + (grad L)^2 - v)``
      (``g^2`` replaced by its mean), starting at ``E g^2`` of the particle's start.

    Args:
        landscape: the loss landscape with its noise model.
        learning_rate: ``eta``.
        batch_size: minibatch size ``B``.
        b1, b2, eps: Adam's hyperparameters (``eps`` outside the square root, as ``optax.adam``).
        closure: ``"quasi-static"`` or ``"augmented"``.
        v_point: where the quasi-static ``v`` is evaluated (shape ``(dim,)``).
    """

    landscape: AbstractLandscape
    learning_rate: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    b1: float = eqx.field(static=True)
    b2: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    closure: Literal["quasi-static", "augmented"] = eqx.field(static=True)
    v_frozen: Float[Array, " dim"]

    def __init__(
        self,
        landscape: AbstractLandscape,
        learning_rate: float,
        batch_size: int = 1,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        closure: Literal["quasi-static", "augmented"] = "quasi-static",
        v_point=None,
    ):
        self.landscape = check_landscape("AdamLangevin", landscape)
        self.learning_rate = check_positive("AdamLangevin", "learning_rate", learning_rate)
        self.batch_size = check_batch_size("AdamLangevin", batch_size)
        self.b1 = check_interval("AdamLangevin", "b1", b1, 0.0, 1.0)
        self.b2 = check_interval("AdamLangevin", "b2", b2, 0.0, 1.0)
        self.eps = check_interval("AdamLangevin", "eps", eps, 0.0, float("inf"))
        self.closure = check_closure("AdamLangevin", closure)
        self.v_frozen = frozen_second_moment(landscape, v_point, self.batch_size)

    @property
    def v_decay(self) -> float:
        return self.b2

    def coefficients(self, y):
        s = jnp.sqrt(jnp.maximum(self.second_moment(y), 0.0)) + self.eps
        return self.learning_rate * s / (1.0 - self.b1), s, self.diffusion_coefficient(y[0])

