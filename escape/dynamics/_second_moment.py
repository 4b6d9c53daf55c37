"""Adam's and Adai's second moment ``v`` in continuous time: three closures (docs/models/adam.md, adai.md).

- ``"quasi-static"`` (the papers'): ``v`` frozen at ``E g^2`` of one point; state ``(theta, r)``.
- ``"augmented"``: ``v`` a third row relaxing to ``E[g^2 | theta] = C + (grad L)^2`` (its mean); ``(theta, r, v)``.
- ``"stochastic"`` (the improved model): what the optimizer carries, state ``(theta, m, v[, log P])``
  with ``m`` the optimizer's momentum buffer and ``v`` its (bias-corrected) second moment, both EMAs
  written as SDEs in the dynamical time ``t = eta T``, with the weight ``rho`` of the current gradient
  (``(1 - beta2) / (1 - beta2^T)`` with bias correction, ``T = t / eta + 1``):

      dv = (rho / eta) (E g^2 - v) dt + (rho / sqrt(eta)) sqrt(v / E g^2) (2 grad L sqrt(C) dW1 + sqrt(2) C dW2)

  and ``m`` driven by the gradient noise ``dW1`` (per model). The fluctuation ``g^2 - E g^2 = 2 grad L xi +
  (xi^2 - C)`` of a Gaussian gradient has variance ``4 (grad L)^2 C + 2 C^2``: its first part is the gradient
  noise itself, the second is uncorrelated with it (``dW2``). The factor ``sqrt(v / E g^2)`` (1 where ``v``
  sits at its mean) makes ``v`` a Cox-Ingersoll-Ross process, positive for every ``rho <= 1`` (Feller's
  condition). The optimizer scales (Adam) or sets the inertia of (Adai) the current gradient with the ``v``
  that already holds its square; the mean of that correlation ("co-update") is a drift of order ``rho``.

The model is Ito; for Stratonovich solvers (Heun, the default) ``ito_correction`` gives the drift change.
"""

import abc

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, Float, Point
from ..landscapes import AbstractLandscape
from ._base import AbstractPhaseSpaceDynamics, State, StackedDiagonalOperator
from ._solvers import FixedHeun

CLOSURES = ("quasi-static", "augmented", "stochastic")


def check_closure(owner: str, closure) -> str:
    if closure not in CLOSURES:
        raise ValueError(f"{owner}: closure must be one of {', '.join(map(repr, CLOSURES))}, got {closure!r}")
    return closure


def check_flag(owner: str, name: str, value, closure: str) -> bool:
    """A boolean option of the stochastic closure (``None``: its default, on for ``"stochastic"``)."""
    if value is None:
        return closure == "stochastic"
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    if value and closure != "stochastic":
        raise ValueError(f"{owner}: {name}=True needs closure='stochastic', got closure={closure!r}")
    return value


class AbstractSecondMomentDynamics(AbstractPhaseSpaceDynamics):
    """Phase-space models whose coefficients depend on the gradient's second moment ``v`` (Adam, Adai).

    See the module for the three closures. The ``"stochastic"`` closure's switches, each on by default, let
    the diagnosis drop one ingredient at a time: :attr:`bias_correction` (the optimizer's ``1 - beta^t``
    or ``1 - P``), :attr:`v_noise` (``v`` fluctuates; off: it follows its mean, as ``"augmented"`` but in
    the ``m`` form) and :attr:`co_update` (the co-update terms). Concrete models give :attr:`v_decay` (their
    ``beta2``), :meth:`coefficients` for the paper's closures and :meth:`moment_terms` for the stochastic one.
    """

    closure: eqx.AbstractVar[str]
    v_frozen: eqx.AbstractVar[Float[Array, " dim"]]
    bias_correction: eqx.AbstractVar[bool]
    v_noise: eqx.AbstractVar[bool]
    co_update: eqx.AbstractVar[bool]
    shared_normal: eqx.AbstractVar[bool]

    @property
    @abc.abstractmethod
    def v_decay(self) -> float:
        """The decay rate ``beta2`` of the optimizer's ``v`` average."""

    @abc.abstractmethod
    def moment_terms(self, t, y: State) -> tuple[State, Float[Array, "components 2 dim"], State]:
        """Stochastic closure: ``(drift, noise coefficient, ito_correction)`` at ``(t, y)``."""

    @property
    def stochastic(self) -> bool:
        return self.closure == "stochastic"

    @property
    def components(self):
        if self.stochastic:
            return ("theta", "m", "v")
        return ("theta", "r") if self.closure == "quasi-static" else ("theta", "r", "v")

    def second_moment(self, y: State) -> Point:
        """``v`` at state ``y`` (the frozen value or the third row; never below 0)."""
        if self.closure == "quasi-static":
            return self.v_frozen.astype(y.dtype)
        return jnp.maximum(y[2], 0.0) if self.stochastic else y[2]

    def initial_state(self, theta0):
        theta0 = jnp.asarray(theta0)
        mean_square = stationary_second_moment(self.landscape, theta0, self.batch_size).astype(theta0.dtype)
        if self.stochastic:
            # m at the mean gradient (the optimizer's first step replaces it by g_1 under bias correction).
            m0 = self.landscape.gradient(theta0) if self.bias_correction else jnp.zeros_like(theta0)
            return jnp.stack([theta0, m0.astype(theta0.dtype), mean_square])
        rows = [theta0, jnp.zeros_like(theta0)]
        if self.closure == "augmented":
            rows.append(mean_square)
        return jnp.stack(rows)

    def extra_drift(self, y):
        if self.closure == "quasi-static":
            return []
        target = stationary_second_moment(self.landscape, y[0], self.batch_size)
        return [(1.0 - self.v_decay) / self.learning_rate * (target - y[2])]

    # The stochastic closure ------------------------------------------------------------------------

    def ema_weight(self, decay: float, t) -> Array:
        """Weight of the current gradient in an EMA of rate ``decay`` at the step starting at time ``t``."""
        if not self.bias_correction:
            return jnp.asarray(1.0 - decay)
        count = t / self.learning_rate + 1.0
        return (1.0 - decay) / -jnp.expm1(count * jnp.log(decay)) if decay > 0 else jnp.asarray(1.0)

    def moment_noise(self, t, y: State):
        """``(G, C, v, rho, drift of v, noise of v (2, dim), Ito correction of v)`` for the row ``v``.

        ``dv = (rho / eta) (E g^2 - v) dt + (rho / sqrt(eta)) sqrt(v+ / E g^2) (2 G sqrt(C) dW1 + sqrt(2) C dW2)``
        with ``v+ = max(v, 0)``: the EMA's own mean dynamics (linear, never stiff) and its fluctuation, scaled
        so that ``v`` is a Cox-Ingersoll-Ross process (positive in continuous time; a solver step that
        overshoots below 0 is read as 0 and pushed back by the drift).
        """
        theta, v = y[0], y[2]
        grad = self.landscape.gradient(theta)
        cov = self.landscape.gradient_covariance_diag(theta, self.batch_size)
        mean_square = cov + grad**2
        safe = jnp.where(mean_square > 0, mean_square, 1.0)
        rho = self.ema_weight(self.v_decay, t).astype(y.dtype)
        eta = self.learning_rate
        drift = (rho / eta) * (mean_square - v)
        positive = jnp.maximum(v, 0.0)
        if not self.v_noise:
            zero = jnp.zeros_like(v)
            return grad, cov, positive, rho, drift, jnp.zeros((2,) + theta.shape, y.dtype), zero
        scale = rho / jnp.sqrt(eta) * jnp.sqrt(positive / safe)
        noise = scale[None] * jnp.stack([2.0 * grad * jnp.sqrt(cov), jnp.sqrt(2.0) * cov])
        # sigma ~ sqrt(v): (1/2) sum_k sigma_k d sigma_k / dv = |sigma|^2 / (4 v) = rho^2 Var(g^2) / (4 eta E g^2)
        variance = 4.0 * grad**2 * cov + 2.0 * cov**2
        correction = jnp.where(v > 0, rho**2 * variance / (4.0 * eta * safe), 0.0)
        return grad, cov, positive, rho, drift, noise.astype(y.dtype), correction

    def terms(self, brownian, stratonovich: bool = False):
        """diffrax's terms; with :attr:`shared_normal` the noise of ``g^2`` is drawn from the gradient's own
        normal (:class:`SharedSquarePath`)."""
        if self.stochastic and self.shared_normal:
            brownian = SharedSquarePath(brownian)
        return super().terms(brownian, stratonovich)

    def drift(self, t, y, args):
        if self.stochastic:
            return self.moment_terms(t, y)[0]
        return super().drift(t, y, args)

    def diffusion(self, t, y, args):
        if self.stochastic:
            return StackedDiagonalOperator(self.moment_terms(t, y)[1].astype(y.dtype))
        return super().diffusion(t, y, args)

    def ito_correction(self, t, y):
        return self.moment_terms(t, y)[2] if self.stochastic else None

    def brownian_shape(self, dtype=jnp.float32) -> jax.ShapeDtypeStruct:
        """``(dim,)``, or ``(2, dim)`` for the stochastic closure (``dW1`` the gradient noise, ``dW2`` that of ``g^2``)."""
        return jax.ShapeDtypeStruct((2, self.dim) if self.stochastic else (self.dim,), dtype)

    def additive_noise(self, theta0=None) -> bool:
        return False if self.stochastic else super().additive_noise(theta0)

    def default_solver(self):
        """Heun (:class:`escape.dynamics.FixedHeun`) with the Ito correction for the stochastic closure."""
        return FixedHeun() if self.stochastic else super().default_solver()


class SharedSquarePath(diffrax.AbstractBrownianPath):
    """The increments ``(dW1, (dW1^2 - h) / sqrt(2 h))`` of a ``(2, dim)`` Brownian path, ``h = t1 - t0``.

    The second component has mean 0 and variance ``h`` and is uncorrelated with the first, as an independent
    ``dW2``; a weak order-1 scheme therefore converges to the same SDE as ``h -> 0``. At the step
    ``h = eta`` it is the optimizer's ``xi^2 - C`` of the *same* kick ``xi`` (in units of ``sqrt(2) C``):
    dependent on the kick though uncorrelated with it, which no Ito diffusion is (``(dW)^2 = dt``). Valid for
    fixed steps with solvers that query each step's increment once per stage (Euler, Heun).
    """

    base: diffrax.AbstractBrownianPath
    levy_area: type = eqx.field(static=True, default=diffrax.BrownianIncrement)

    @property
    def t0(self):
        return self.base.t0

    @property
    def t1(self):
        return self.base.t1

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        w = self.base.evaluate(t0, t1, left)
        h = jnp.asarray(t1 - t0, w.dtype)
        square = (w[0] ** 2 - h) / jnp.sqrt(2.0 * h)
        return jnp.stack([w[0], square])


def frozen_second_moment(landscape: AbstractLandscape, v_point, batch_size: int) -> Point:
    """The quasi-static ``v``: ``E g^2`` at ``v_point`` (default the landscape's initial point)."""
    point = landscape.initial_point() if v_point is None else jnp.asarray(v_point)
    return stationary_second_moment(landscape, point, batch_size)


def stationary_second_moment(landscape: AbstractLandscape, theta: Point, batch_size: int) -> Point:
    """``E g^2 = C(theta) + (grad L(theta))^2``: the stationary value of Adam's / Adai's ``v`` at ``theta``."""
    return landscape.gradient_covariance_diag(theta, batch_size) + landscape.gradient(theta) ** 2
