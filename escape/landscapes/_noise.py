"""Gradient-noise models (docs/theory.md §1): how a minibatch gradient is drawn at a point.

* :class:`DataNoise` -- the real minibatch noise of the landscape's data model.
* :class:`GaussianDataNoise` -- Gaussian with the data model's exact covariance ``C(theta)`` (its diffusion
  approximation: same first two moments, no heavy tails).
* :class:`HessianNoise` -- Gaussian with covariance ``|H(theta)| / B``.
* :class:`IsotropicNoise` -- Gaussian with covariance ``sigma**2 I`` (SGLD); batch size plays no role.

Each model declares how many 32-bit noise words it consumes per step (a static int), and maps
(landscape, theta, words) to one stochastic gradient. The engine supplies the words.
"""

import abc
from typing import TYPE_CHECKING, ClassVar

import equinox as eqx
import jax.numpy as jnp

from .. import _random
from .._custom_types import Point, Words

if TYPE_CHECKING:
    from ._base import AbstractLandscape


class AbstractNoise(eqx.Module):
    """Interface of a gradient-noise model."""

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def n_words(self, landscape: "AbstractLandscape", batch_size: int) -> int:
        """Number of uint32 noise words one stochastic gradient consumes (a Python int)."""

    @abc.abstractmethod
    def gradient(
        self, landscape: "AbstractLandscape", theta: Point, words: Words, batch_size: int
    ) -> Point:
        """One minibatch gradient at ``theta`` from ``words``."""

    def covariance_diag(self, landscape: "AbstractLandscape", theta: Point, batch_size: int) -> Point:
        """Diagonal of the minibatch-gradient covariance C(theta) (theory §1)."""
        raise NotImplementedError(f"{type(self).__name__} does not give C(theta) in closed form")


class DataNoise(AbstractNoise):
    """Minibatch noise of the landscape's data model (sample B data points, average their gradients)."""

    name: ClassVar[str] = "data"

    def n_words(self, landscape, batch_size):
        return landscape.data_words(batch_size)

    def gradient(self, landscape, theta, words, batch_size):
        return landscape.data_gradient(theta, words, batch_size)

    def covariance_diag(self, landscape, theta, batch_size):
        return landscape.data_covariance_diag(theta) / batch_size


class GaussianDataNoise(AbstractNoise):
    """Gaussian noise with the data model's covariance: ``grad L(theta) + sqrt(C(theta)) z``, ``z ~ N(0, I)``.

    ``C(theta)`` is the diagonal of the per-sample gradient covariance of the landscape's data model over
    B (closed form), so this model has the same mean and covariance as ``"data"`` but Gaussian tails: a
    discrete optimizer under it is the Euler-Maruyama discretisation (dt = eta) of the diffusion
    approximation that the continuous-time models of ``escape.dynamics`` solve. Comparing it with
    ``"data"`` isolates what the non-Gaussian tails of real minibatch noise do. Needs a separable
    landscape with a data model (independent coordinates: the covariance is diagonal).
    """

    name: ClassVar[str] = "data-gaussian"

    def n_words(self, landscape, batch_size):
        if not landscape.separable:
            raise ValueError(f"noise: 'data-gaussian' needs a separable landscape, {type(landscape).__name__} is not")
        landscape.data_words(batch_size)  # raises a one-line ValueError for landscapes without a data model
        return landscape.dim

    def gradient(self, landscape, theta, words, batch_size):
        scale = jnp.sqrt(self.covariance_diag(landscape, theta, batch_size))
        return landscape.gradient(theta) + scale * _random.normal(words)

    def covariance_diag(self, landscape, theta, batch_size):
        return landscape.data_covariance_diag(theta) / batch_size


class HessianNoise(AbstractNoise):
    """Gaussian noise with covariance ``|H(theta)| / B`` (the papers' near-critical-point model)."""

    name: ClassVar[str] = "hessian"

    def n_words(self, landscape, batch_size):
        return landscape.dim

    def gradient(self, landscape, theta, words, batch_size):
        z = _random.normal(words)
        if landscape.separable:
            scale = jnp.sqrt(self.covariance_diag(landscape, theta, batch_size))
            return landscape.gradient(theta) + scale * z
        evals, evecs = jnp.linalg.eigh(landscape.hessian(theta))
        root = (evecs * jnp.sqrt(jnp.abs(evals) / batch_size)) @ evecs.T
        return landscape.gradient(theta) + root @ z

    def covariance_diag(self, landscape, theta, batch_size):
        return jnp.abs(landscape.hessian_diag(theta)) / batch_size


class IsotropicNoise(AbstractNoise):
    """Gaussian noise with covariance ``sigma**2 I`` whatever the batch size (SGLD)."""

    name: ClassVar[str] = "isotropic"
    sigma: float

    def __check_init__(self):
        if not self.sigma > 0:
            raise ValueError(f"IsotropicNoise: sigma must be > 0, got {self.sigma}")

    def n_words(self, landscape, batch_size):
        return landscape.dim

    def gradient(self, landscape, theta, words, batch_size):
        return landscape.gradient(theta) + self.sigma * _random.normal(words)

    def covariance_diag(self, landscape, theta, batch_size):
        return jnp.full_like(theta, self.sigma**2)


class NoNoise(AbstractNoise):
    """The exact gradient (deterministic optimizer dynamics): no noise words, zero covariance."""

    name: ClassVar[str] = "none"

    def n_words(self, landscape, batch_size):
        return 0

    def gradient(self, landscape, theta, words, batch_size):
        return landscape.gradient(theta)

    def covariance_diag(self, landscape, theta, batch_size):
        return jnp.zeros_like(theta)


NOISE_MODELS = ("data", "data-gaussian", "hessian", "isotropic", "none")


def make_noise(noise: "str | AbstractNoise", sigma: float | None) -> AbstractNoise:
    """Resolve a noise-model name (``"data"``, ``"data-gaussian"``, ``"hessian"``, ``"isotropic"``, ``"none"``) to an
    instance."""
    if isinstance(noise, AbstractNoise):
        return noise
    if noise == "data":
        return DataNoise()
    if noise == "data-gaussian":
        return GaussianDataNoise()
    if noise == "hessian":
        return HessianNoise()
    if noise == "none":
        return NoNoise()
    if noise == "isotropic":
        if sigma is None:
            raise ValueError("noise: 'isotropic' needs sigma (the gradient-noise standard deviation)")
        return IsotropicNoise(float(sigma))
    raise ValueError(f"noise: unknown noise model {noise!r}; choose one of {', '.join(NOISE_MODELS)}")
