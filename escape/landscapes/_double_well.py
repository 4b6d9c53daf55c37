"""One-dimensional double well with constant noise: the Kramers oracle (docs/theory.md §6)."""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive
from ._base import AbstractLandscape, CriticalPoints
from ._noise import AbstractNoise, make_noise


class DoubleWell(AbstractLandscape):
    """``L(x) = barrier * ((x / width)^2 - 1)^2``: minima at ``+-width``, saddle (maximum) at 0.

    ``H_a = 8 barrier / width^2`` at the minima and ``H_b = -4 barrier / width^2`` at the saddle.
    Particles start in the left minimum. ``exit`` chooses what counts as escape: ``"minimum"``
    (reaching the right minimum, whose mean first-passage time is the Eyring-Kramers transition
    time), ``"saddle"`` (crossing 0, about half of it) or a number (crossing that point).

    Args:
        barrier: the barrier height Delta L > 0.
        width: the distance between the saddle and each minimum.
        noise: ``"isotropic"`` (default, constant D: the Kramers setting) or ``"hessian"``.
        sigma: gradient-noise standard deviation for ``"isotropic"``; with learning rate eta the
            diffusion is ``D = eta sigma^2 / 2``.
        exit: ``"minimum"``, ``"saddle"`` or a float in (-width, inf).
    """

    dim: int = eqx.field(static=True)
    barrier_height: float = eqx.field(static=True)
    width: float = eqx.field(static=True)
    noise: AbstractNoise
    exit_point: float = eqx.field(static=True)
    separable: ClassVar[bool] = True

    def __init__(self, barrier=1.0, width=1.0, noise: str | AbstractNoise = "isotropic", sigma=1.0, exit="minimum"):
        check_positive("DoubleWell", "barrier", barrier)
        check_positive("DoubleWell", "width", width)
        self.dim = 1
        self.barrier_height = float(barrier)
        self.width = float(width)
        self.noise = make_noise(noise, sigma)
        if exit == "minimum":
            self.exit_point = self.width
        elif exit == "saddle":
            self.exit_point = 0.0
        elif isinstance(exit, (int, float)) and exit > -self.width:
            self.exit_point = float(exit)
        else:
            raise ValueError(f"DoubleWell: exit must be 'minimum', 'saddle' or a number > -width, got {exit!r}")

    def loss(self, theta):
        y = (theta[0] / self.width) ** 2 - 1.0
        return self.barrier_height * y * y

    def gradient(self, theta):
        a2 = self.width**2
        return 4.0 * self.barrier_height * theta * (theta**2 / a2 - 1.0) / a2

    def hessian_diag(self, theta):
        a2 = self.width**2
        return 4.0 * self.barrier_height * (3.0 * theta**2 / a2 - 1.0) / a2

    def hessian(self, theta):
        return jnp.diag(self.hessian_diag(theta))

    def critical_points(self) -> CriticalPoints:
        a2 = self.width**2
        h_a = 8.0 * self.barrier_height / a2
        h_b = -4.0 * self.barrier_height / a2
        return CriticalPoints(
            np.array([-self.width]), np.array([0.0]), self.barrier_height, np.array([h_a]), np.array([h_b])
        )

    def initial_point(self):
        return jnp.array([-self.width], dtype=jnp.float32)

    def escaped(self, theta):
        return theta[0] >= self.exit_point
