"""Adam (and RMSProp, ``b1 = 0``) as a phase-space model with a per-coordinate learning rate (docs/theory.md §3)."""

from typing import Literal

import equinox as eqx
import jax.numpy as jnp

from .._checks import check_positive
from .._custom_types import Array, Float
from ..landscapes import AbstractLandscape
from ._base import check_batch_size, check_interval, check_landscape
from ._second_moment import AbstractSecondMomentDynamics, check_closure, check_flag, frozen_second_moment


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
    - ``"stochastic"`` (the improved model, docs/models/adam.md): the optimizer's own variables, state
      ``(theta, m, v)`` with the bias-corrected ``m`` and ``v``::

          d theta = -clip(m / s, -B(T), B(T)) dt (+ co-update),   s = sqrt(v) + eps
          dm = (k1 / eta) (grad L - m) dt + k1 sqrt(C / eta) dW1,      k1 = (1 - b1) / (1 - b1^T)

      and ``v`` the stochastic EMA of ``g^2`` with ``k2 = (1 - b2) / (1 - b2^T)`` (escape.dynamics._second_moment),
      ``T = t / eta + 1``. ``B(T)`` is the optimizer's own bound on ``|m_hat / sqrt(v_hat)|`` (:meth:`step_bound`:
      1 at the first step), which the model's independent ``m`` and ``v`` noises would otherwise break in
      the first iterations. The co-update term ``+ k1 k2 grad L C / (sqrt(v) s^2)`` is the mean of the
      correlation between the current gradient in ``m`` and its square in ``v``.

    Args:
        landscape: the loss landscape with its noise model.
        learning_rate: ``eta``.
        batch_size: minibatch size ``B``.
        b1, b2, eps: Adam's hyperparameters (``eps`` outside the square root, as ``optax.adam``).
        closure: ``"quasi-static"``, ``"augmented"`` or ``"stochastic"``.
        v_point: where the quasi-static ``v`` is evaluated (shape ``(dim,)``).
        bias_correction, v_noise, co_update: the stochastic closure's ingredients (default: all on with
            ``closure="stochastic"``; only that closure accepts ``True``).
        shared_normal: draw the noise of ``g^2`` from the gradient's own normal
            ([`SharedSquarePath`][escape.dynamics.SharedSquarePath]; default off: an independent ``dW2``).
    """

    landscape: AbstractLandscape
    learning_rate: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    b1: float = eqx.field(static=True)
    b2: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    closure: Literal["quasi-static", "augmented", "stochastic"] = eqx.field(static=True)
    v_frozen: Float[Array, " dim"]
    bias_correction: bool = eqx.field(static=True)
    v_noise: bool = eqx.field(static=True)
    co_update: bool = eqx.field(static=True)
    shared_normal: bool = eqx.field(static=True)

    def __init__(
        self,
        landscape: AbstractLandscape,
        learning_rate: float,
        batch_size: int = 1,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        closure: Literal["quasi-static", "augmented", "stochastic"] = "quasi-static",
        v_point=None,
        bias_correction: bool | None = None,
        v_noise: bool | None = None,
        co_update: bool | None = None,
        shared_normal: bool = False,
    ):
        self.landscape = check_landscape("AdamLangevin", landscape)
        self.learning_rate = check_positive("AdamLangevin", "learning_rate", learning_rate)
        self.batch_size = check_batch_size("AdamLangevin", batch_size)
        self.b1 = check_interval("AdamLangevin", "b1", b1, 0.0, 1.0)
        self.b2 = check_interval("AdamLangevin", "b2", b2, 0.0, 1.0)
        self.eps = check_interval("AdamLangevin", "eps", eps, 0.0, float("inf"))
        self.closure = check_closure("AdamLangevin", closure)
        self.v_frozen = frozen_second_moment(landscape, v_point, self.batch_size)
        self.bias_correction = check_flag("AdamLangevin", "bias_correction", bias_correction, self.closure)
        self.v_noise = check_flag("AdamLangevin", "v_noise", v_noise, self.closure)
        self.co_update = check_flag("AdamLangevin", "co_update", co_update, self.closure)
        self.shared_normal = check_flag("AdamLangevin", "shared_normal", False if shared_normal is None else shared_normal,
                                        self.closure)

    @property
    def v_decay(self) -> float:
        return self.b2

    def coefficients(self, y):
        s = jnp.sqrt(jnp.maximum(self.second_moment(y), 0.0)) + self.eps
        return self.learning_rate * s / (1.0 - self.b1), s, self.diffusion_coefficient(y[0])

    def step_bound(self, t):
        """The largest ``|m_hat / sqrt(v_hat)|`` Adam can take at the step starting at ``t`` (bias-corrected).

        With EMA weights ``a_k`` of ``m`` and ``b_k`` of ``v`` (Cauchy-Schwarz): ``|m_hat| <= sqrt(sum a_k^2 /
        b_k) sqrt(v_hat)``, ``sum a_k^2 / b_k = (1-b1)^2 (1-b2^T) (1-q^T) / ((1-b1^T)^2 (1-b2) (1-q))``,
        ``q = b1^2 / b2``: 1 at the first step, ``(1-b1) / sqrt((1-b2)(1-q))`` in the long run (Prop. 1 of
        Kaiser's paper, [`escape.theory.adam_step_bound`][], 7.27 at 0.9 / 0.999).
        """
        count = t / self.learning_rate + 1.0
        b1, b2 = self.b1, self.b2
        if b2 == 0:  # v_hat = g^2: |m_hat| / |g| is unbounded for b1 > 0 (and 1 for b1 = 0)
            return jnp.asarray(jnp.inf if b1 > 0 else 1.0)
        q = b1 * b1 / b2
        # sum_{j < count} q^j (q = 0: one term; q = 1: count terms)
        geometric = 1.0 if q == 0 else (count if q == 1 else -jnp.expm1(count * jnp.log(q)) / (1.0 - q))
        correction = -jnp.expm1(count * jnp.log(b2)) / (-jnp.expm1(count * jnp.log(b1)) if b1 > 0 else 1.0) ** 2
        return jnp.sqrt((1 - b1) ** 2 / (1 - b2) * correction * geometric)

    def moment_terms(self, t, y):
        m = y[1]
        grad, cov, v, rho, drift_v, noise_v, correction_v = self.moment_noise(t, y)
        eta = self.learning_rate
        k1 = self.ema_weight(self.b1, t).astype(y.dtype)
        root = jnp.sqrt(v)
        s = root + self.eps
        live = s > 0
        safe = jnp.where(live, s, 1.0)
        step = jnp.where(live, m / safe, 0.0)
        if self.co_update:  # E[m' / s(v')]: the current gradient is in m' and its square in v'
            # first order in rho (v - E g^2) / v: kept where v is within a factor 10 below its mean, dropped
            # below (where it has no expansion and would blow up as v -> 0)
            near = v > 0.1 * (cov + grad**2)
            term = jnp.where(near, k1 * rho * grad * cov / (jnp.where(near, root, 1.0) * safe**2), 0.0)
            step = step - term
        if self.bias_correction:  # the optimizer's m_hat and v_hat hold the same gradients: |step| is bounded
            bound = self.step_bound(t).astype(y.dtype)
            step = jnp.clip(step, -bound, bound)
        drift = jnp.stack([-step, (k1 / eta) * (grad - m), drift_v])
        zero = jnp.zeros_like(m)
        noise = jnp.stack([jnp.stack([zero, zero]), jnp.stack([k1 * jnp.sqrt(cov / eta), zero]), noise_v])
        return drift, noise, jnp.stack([zero, zero, correction_v])
