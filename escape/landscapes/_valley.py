"""Narrow valleys (Kaiser, "Exploring the Dynamics of Adam"): smooth ``a x^2 + b y^2`` and sharp ``a|x| + b|y|``."""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..optim._validate import check_positive
from ._base import AbstractLandscape, CriticalPoints
from ._noise import AbstractNoise, make_noise

SHAPES = ("smooth", "sharp")


class Valley(AbstractLandscape):
    """A two-dimensional valley, minimum at the origin: ``shape="smooth"`` is ``a x^2 + b y^2`` (the seed's
    ``x^2 + 1e-3 y^2``), ``"sharp"`` is ``a |x| + b |y|`` (``|x| + 1e-4 |y|``).

    The engine's event is *arrival*: a particle "escapes" when it comes within ``tolerance`` of the origin.
    Coefficients are Python floats, so a float64 start runs in float64. Noise ``"none"`` (exact gradients) by
    default; ``"isotropic"`` with ``sigma`` adds Gaussian gradient noise.
    """

    dim: int = eqx.field(static=True)
    shape: str = eqx.field(static=True)
    a: float = eqx.field(static=True)
    b: float = eqx.field(static=True)
    tolerance: float = eqx.field(static=True)
    start: tuple = eqx.field(static=True)
    noise: AbstractNoise
    separable: ClassVar[bool] = True

    def __init__(self, shape: str = "smooth", a: float | None = None, b: float | None = None, *,
                 start=(1.0, 1.0), tolerance: float = 1e-3, noise: str | AbstractNoise = "none", sigma=None):
        if shape not in SHAPES:
            raise ValueError(f"Valley: shape must be one of {SHAPES}, got {shape!r}")
        a = 1.0 if a is None else a
        b = (1e-3 if shape == "smooth" else 1e-4) if b is None else b
        check_positive("Valley", "a", a)
        check_positive("Valley", "b", b)
        check_positive("Valley", "tolerance", tolerance)
        start = np.asarray(start, float)
        if start.shape != (2,) or not np.all(np.isfinite(start)):
            raise ValueError(f"Valley: start must be two finite numbers, got {start.tolist()!r}")
        self.dim, self.shape, self.a, self.b = 2, shape, float(a), float(b)
        self.tolerance, self.start = float(tolerance), tuple(start.tolist())
        self.noise = make_noise(noise, sigma)

    def _coef(self, theta):
        return jnp.stack([jnp.asarray(self.a, theta.dtype), jnp.asarray(self.b, theta.dtype)])

    def loss(self, theta):
        c = self._coef(theta)
        return jnp.sum(c * (theta**2 if self.shape == "smooth" else jnp.abs(theta)))

    def gradient(self, theta):
        c = self._coef(theta)
        return 2 * c * theta if self.shape == "smooth" else c * jnp.sign(theta)

    def hessian_diag(self, theta):
        c = self._coef(theta)
        return 2 * c * jnp.ones_like(theta) if self.shape == "smooth" else jnp.zeros_like(theta)

    def critical_points(self) -> CriticalPoints:
        origin = np.zeros(2)
        h = 2 * np.array([self.a, self.b]) if self.shape == "smooth" else np.zeros(2)
        return CriticalPoints(origin, None, None, h, None)

    def initial_point(self):
        return jnp.asarray(self.start, jnp.float32)

    def escaped(self, theta):
        return jnp.sqrt(jnp.sum(theta**2)) <= self.tolerance
