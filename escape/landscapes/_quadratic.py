"""Quadratic landscape ``L = theta^T diag(h) theta / 2`` (negative curvatures allowed: a saddle)."""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._custom_types import Array, Float
from .._checks import check_positive
from ._base import AbstractLandscape, CriticalPoints
from ._noise import AbstractNoise, make_noise


class Quadratic(AbstractLandscape):
    """``L(theta) = (1/2) sum_i h_i theta_i^2`` with any diagonal Hessian ``h``.

    Particles start at the origin (the critical point). With some ``h_i < 0`` the origin is a saddle
    and a particle escapes once ``|theta_i| > escape_radius`` along any negative-curvature direction;
    with ``h > 0`` everywhere it is a minimum and nothing escapes (use it for stationary laws).

    Args:
        hessian: the diagonal of the Hessian (any signs, no zeros).
        noise: ``"hessian"`` (default, C = |H| / B) or ``"isotropic"`` (needs ``sigma``).
        sigma: standard deviation for ``noise="isotropic"``.
        escape_radius: distance along an escape direction that counts as escaped.
    """

    dim: int = eqx.field(static=True)
    h: Float[Array, " dim"]
    noise: AbstractNoise
    escape_radius: float = eqx.field(static=True)
    _h64: tuple = eqx.field(static=True)
    separable: ClassVar[bool] = True

    def __init__(self, hessian, noise: str | AbstractNoise = "hessian", sigma=None, escape_radius=1.0):
        h = np.atleast_1d(np.asarray(hessian, dtype=np.float64))
        if h.ndim != 1 or h.size < 1 or not np.all(np.isfinite(h)) or np.any(h == 0):
            raise ValueError(f"Quadratic: hessian must be a non-empty list of finite non-zero numbers, got {hessian!r}")
        check_positive("Quadratic", "escape_radius", escape_radius)
        self.dim = int(h.size)
        self._h64 = tuple(h.tolist())
        self.h = jnp.asarray(h, dtype=jnp.float32)
        self.noise = make_noise(noise, sigma)
        self.escape_radius = float(escape_radius)

    def loss(self, theta):
        return 0.5 * jnp.sum(self.h * theta**2)

    def gradient(self, theta):
        return self.h * theta

    def hessian_diag(self, theta):
        return jnp.broadcast_to(self.h, theta.shape)

    def hessian(self, theta):
        return jnp.diag(self.h)

    def critical_points(self) -> CriticalPoints:
        h = np.array(self._h64)
        origin = np.zeros(self.dim)
        if np.all(h > 0):
            return CriticalPoints(origin, origin, None, h, h)
        return CriticalPoints(None, origin, None, None, h)

    def initial_point(self):
        return jnp.zeros(self.dim, dtype=jnp.float32)

    def escaped(self, theta):
        return jnp.any((self.h < 0) & (jnp.abs(theta) > self.escape_radius))
