"""The landscape interface (an Equinox abstract module, concrete classes are final)."""

import abc
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._custom_types import Array, Bool, Float, Point, Scalar, Words
from ._noise import AbstractNoise


class CriticalPoints(NamedTuple):
    """Where a run starts and what it must cross (computed numerically, never hard-coded).

    Attributes:
        minimum: the minimum the particles start in (``None`` if the start is not a minimum).
        saddle: the index-1 saddle on the escape route (the start itself for a saddle landscape).
        barrier: ``L(saddle) - L(minimum)`` (``None`` where undefined).
        hessian_minimum: Hessian eigenvalues at the minimum.
        hessian_saddle: Hessian eigenvalues at the saddle (one negative).
    """

    minimum: np.ndarray | None
    saddle: np.ndarray
    barrier: float | None
    hessian_minimum: np.ndarray | None
    hessian_saddle: np.ndarray


class AbstractLandscape(eqx.Module):
    """A loss landscape with a noise model and an escape test.

    Concrete landscapes give the full-batch loss, its gradient (autodiff by default), Hessian, the
    critical points, the initial point, the escape test, and (for ``noise="data"``) a data model.
    """

    dim: eqx.AbstractVar[int]
    noise: eqx.AbstractVar[AbstractNoise]
    separable: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def loss(self, theta: Point) -> Scalar:
        """Full-batch loss L(theta)."""

    def gradient(self, theta: Point) -> Point:
        """Full-batch gradient."""
        return jax.grad(self.loss)(theta)

    def hessian(self, theta: Point) -> Float[Array, "dim dim"]:
        """Full-batch Hessian."""
        return jax.hessian(self.loss)(theta)

    def hessian_diag(self, theta: Point) -> Point:
        """Diagonal of the Hessian (the whole Hessian when ``separable``)."""
        return jnp.diagonal(self.hessian(theta))

    @abc.abstractmethod
    def critical_points(self) -> CriticalPoints:
        """Minimum, saddle and barrier (numerical, in float64)."""

    @abc.abstractmethod
    def initial_point(self) -> Point:
        """Where particles start."""

    @abc.abstractmethod
    def escaped(self, theta: Point) -> Bool[Array, ""]:
        """Whether ``theta`` is outside the starting valley (or past the saddle's escape radius)."""

    # Data model: only landscapes with per-sample losses implement these.
    def data_words(self, batch_size: int) -> int:
        raise ValueError(f"noise: {type(self).__name__} has no data model; use 'hessian' or 'isotropic'")

    def data_gradient(self, theta: Point, words: Words, batch_size: int) -> Point:
        raise ValueError(f"noise: {type(self).__name__} has no data model; use 'hessian' or 'isotropic'")

    def data_covariance_diag(self, theta: Point) -> Point:
        raise ValueError(f"noise: {type(self).__name__} has no data model; use 'hessian' or 'isotropic'")

    # Noise dispatch used by the engine.
    def noise_words(self, batch_size: int) -> int:
        """uint32 words one stochastic gradient consumes."""
        return self.noise.n_words(self, batch_size)

    def stochastic_gradient(self, theta: Point, words: Words, batch_size: int) -> Point:
        """One minibatch gradient at ``theta`` under this landscape's noise model."""
        return self.noise.gradient(self, theta, words, batch_size)

    def gradient_covariance_diag(self, theta: Point, batch_size: int) -> Point:
        """Diagonal of C(theta) for this noise model and batch size."""
        return self.noise.covariance_diag(self, theta, batch_size)


