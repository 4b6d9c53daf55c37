"""Styblinski-Tang with the Gaussian data model and rescaled sharpness (docs/theory.md §4, paper App. E)."""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .. import _random
from .._custom_types import Array, Bool, Float, Point
from .._checks import check_integer, check_positive
from ._base import AbstractLandscape, CriticalPoints
from ._noise import AbstractNoise, make_noise


def styblinski_tang(u):
    """f(u) = (1/2) sum_i (u_i^4 - 16 u_i^2 + 5 u_i), the per-sample loss at u = sqrt(k) theta - x."""
    return 0.5 * jnp.sum(u**4 - 16.0 * u**2 + 5.0 * u, axis=-1)


def _grad_1d(u):
    return 2.0 * u * u * u - 16.0 * u + 2.5


def _var_1d_grad(u, moments):
    """Var_x f'(u - x) per coordinate, in closed form from the raw moments m_0..m_6 of x.

    f'(u - x) = a0 + a1 x + a2 x^2 + a3 x^3 with a0 = f'(u), a1 = -f''(u) = 16 - 6u^2, a2 = 6u, a3 = -2, so
    E f' = sum_j a_j m_j and E f'^2 = sum_ij a_i a_j m_(i+j).
    """
    a = jnp.stack([_grad_1d(u), 16.0 - 6.0 * u * u, 6.0 * u, jnp.full_like(u, -2.0)], axis=-1)  # (dim, 4)
    mean = jnp.sum(a * moments[:, :4], axis=-1)
    idx = jnp.arange(4)[:, None] + jnp.arange(4)[None, :]
    second = jnp.einsum("di,dj,dij->d", a, a, moments[:, idx])
    return second - mean * mean


def _quartic_coefficients(m1, m2, m3, m4):
    """Coefficients (c4, c3, c2, c1, c0) of E_x f(u - x) per coordinate from the raw moments of x."""
    c4 = np.full_like(m1, 0.5)
    c3 = -2.0 * m1
    c2 = 3.0 * m2 - 8.0
    c1 = -2.0 * m3 + 16.0 * m1 + 2.5
    c0 = 0.5 * (m4 - 16.0 * m2 - 5.0 * m1)
    return np.stack([c4, c3, c2, c1, c0], axis=-1)


def _stationary_points(coef):
    """Sorted real roots (global min, saddle, local min) of each coordinate's quartic derivative."""
    roots = []
    for c4, c3, c2, c1, _ in coef:
        r = np.roots([4 * c4, 3 * c3, 2 * c2, c1])
        if np.max(np.abs(r.imag)) > 1e-9:
            raise ValueError("StyblinskiTang: the smoothed loss lost its double well (data moments too wide)")
        roots.append(np.sort(r.real))
    roots = np.array(roots)
    # Newton polish in float64.
    for _ in range(3):
        for i, c in enumerate(coef):
            p = np.poly1d(c)
            dp, ddp = p.deriv(), p.deriv(2)
            roots[i] = roots[i] - dp(roots[i]) / ddp(roots[i])
    return roots


class StyblinskiTang(AbstractLandscape):
    """``L_k(theta) = E_x f(sqrt(k) theta - x)`` with f the Styblinski-Tang function, x ~ N(0, I).

    Per-sample loss ``l(theta; x) = f(sqrt(k) theta - x)``, so the Hessian and the gradient-noise
    covariance scale by ``k`` while barrier heights do not. The full-batch loss is a smoothed f whose
    critical points are computed from the data moments (per coordinate: the loss is separable).

    Particles start at the local minimum (every coordinate in the right-hand, shallower valley) and
    escape when any coordinate crosses its saddle coordinate (paper App. E).

    Args:
        dim: number of coordinates (10 in the paper).
        sharpness: the rescaling factor k > 0.
        noise: ``"data"`` (default), ``"hessian"``, ``"isotropic"`` or an ``AbstractNoise``.
        n_data: size of the fixed data set (50000 in the paper); ``None`` or ``"fresh"`` draws fresh samples
            every step (the population law: no quenched disorder from one finite data set; TOML configs
            spell it ``n_data = "fresh"``).
        data_seed: seed of the fixed data set (NumPy generator).
        sigma: standard deviation for ``noise="isotropic"``.
    """

    dim: int = eqx.field(static=True)
    sharpness: Float[Array, ""]
    noise: AbstractNoise
    n_data: int | None = eqx.field(static=True)
    data_seed: int = eqx.field(static=True)
    data: Float[Array, "n_data dim"] | None
    coef: Float[Array, "dim 5"]
    u_saddle: Float[Array, " dim"]
    u_local: Float[Array, " dim"]
    moments: Float[Array, "dim 7"]
    _coef64: tuple = eqx.field(static=True)
    separable: ClassVar[bool] = True

    def __init__(
        self,
        dim: int = 10,
        sharpness: float = 1.0,
        noise: str | AbstractNoise = "data",
        n_data: int | str | None = 50_000,
        data_seed: int = 0,
        sigma: float | None = None,
    ):
        self.dim = check_integer("StyblinskiTang", "dim", dim, 1)
        check_positive("StyblinskiTang", "sharpness", sharpness)
        # A dynamic leaf: changing k reuses the engine's compiled step.
        self.sharpness = jnp.asarray(sharpness, dtype=jnp.float32)
        self.noise = make_noise(noise, sigma)
        if isinstance(n_data, str) and n_data == "fresh":
            n_data = None
        if n_data is not None and (not isinstance(n_data, (int, np.integer)) or n_data < 2):
            raise ValueError(f"StyblinskiTang: n_data must be an integer >= 2, 'fresh' or None, got {n_data!r}")
        self.n_data = None if n_data is None else int(n_data)
        self.data_seed = int(data_seed)
        if self.n_data is None:
            self.data = None
            raw = np.tile(np.array([1.0, 0.0, 1.0, 0.0, 3.0, 0.0, 15.0]), (self.dim, 1))  # N(0, 1) moments
        else:
            x = np.random.default_rng(self.data_seed).standard_normal((self.n_data, self.dim))
            self.data = jnp.asarray(x, dtype=jnp.float32)
            raw = np.stack([np.mean(x**j, axis=0) for j in range(7)], axis=-1)
        self.moments = jnp.asarray(raw, dtype=jnp.float32)
        coef = _quartic_coefficients(*(raw[:, j] for j in (1, 2, 3, 4)))
        roots = _stationary_points(coef)
        self._coef64 = tuple(tuple(float(v) for v in row) for row in coef)
        self.coef = jnp.asarray(coef, dtype=jnp.float32)
        self.u_saddle = jnp.asarray(roots[:, 1], dtype=jnp.float32)
        self.u_local = jnp.asarray(roots[:, 2], dtype=jnp.float32)

    @property
    def scale(self):
        return jnp.sqrt(self.sharpness)

    def loss(self, theta):
        u = self.scale * theta
        c = self.coef
        return jnp.sum((((c[:, 0] * u + c[:, 1]) * u + c[:, 2]) * u + c[:, 3]) * u + c[:, 4])

    def gradient(self, theta):
        u = self.scale * theta
        c = self.coef
        return self.scale * (((4 * c[:, 0] * u + 3 * c[:, 1]) * u + 2 * c[:, 2]) * u + c[:, 3])

    def hessian_diag(self, theta):
        u = self.scale * theta
        c = self.coef
        return self.sharpness * ((12 * c[:, 0] * u + 6 * c[:, 1]) * u + 2 * c[:, 2])

    def hessian(self, theta):
        return jnp.diag(self.hessian_diag(theta))

    def critical_points(self) -> CriticalPoints:
        coef = np.array(self._coef64)
        roots = _stationary_points(coef)
        k = float(self.sharpness)
        s = np.sqrt(k)
        polys = [np.poly1d(c) for c in coef]
        barriers = np.array([p(r[1]) - p(r[2]) for p, r in zip(polys, roots)])
        j = int(np.argmin(barriers))
        minimum = roots[:, 2] / s
        saddle = minimum.copy()
        saddle[j] = roots[j, 1] / s
        h_min = np.array([k * p.deriv(2)(r[2]) for p, r in zip(polys, roots)])
        h_sad = h_min.copy()
        h_sad[j] = k * polys[j].deriv(2)(roots[j, 1])
        return CriticalPoints(minimum, saddle, float(barriers[j]), h_min, h_sad)

    def initial_point(self):
        return self.u_local / self.scale

    def escaped(self, theta) -> Bool[Array, ""]:
        return jnp.any(self.scale * theta < self.u_saddle)

    # data model
    def data_words(self, batch_size):
        return batch_size if self.n_data is not None else batch_size * self.dim

    def _samples(self, words, batch_size):
        if self.data is None:
            return _random.normal(words).reshape(batch_size, self.dim)
        return self.data[_random.index(words, self.n_data)]

    def data_gradient(self, theta: Point, words, batch_size) -> Point:
        x = self._samples(words, batch_size)
        return self.scale * jnp.mean(_grad_1d(self.scale * theta[None, :] - x), axis=0)

    def data_covariance_diag(self, theta):
        """Per-sample gradient variance ``k Var_x f'(sqrt(k) theta - x)`` per coordinate (closed form)."""
        return self.sharpness * _var_1d_grad(self.scale * theta, self.moments)
