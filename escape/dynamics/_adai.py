"""Adai as an EMA heavy ball with adaptive, per-coordinate inertia (docs/theory.md §3)."""

from typing import Literal

import equinox as eqx
import jax.numpy as jnp

from .._checks import check_positive
from .._custom_types import Array, Float
from ..landscapes import AbstractLandscape
from ._base import check_batch_size, check_interval, check_landscape
from ._second_moment import AbstractSecondMomentDynamics, check_closure, check_flag, frozen_second_moment


class AdaiLangevin(AbstractSecondMomentDynamics):
    r"""Adai: EMA heavy ball with ``beta1_i = clip(1 - beta0 v_i / v_bar, 0, 1 - eps)``.

    In dynamical time ``t = eta T``:

        d theta = r dt,   M_i dr_i = -r_i dt - d_i L dt + sqrt(2 D_i) dW_i,
        M_i = eta / (1 - beta1_i),   gamma = 1,   D_i = (eta / 2) C_i(theta),

    with ``v_bar`` the mean of ``v`` over every coordinate: SGD's temperature ``T_eff = D``, an adaptive
    mass. Bias corrections (``v_hat``, ``m / (1 - P)``) are dropped (stationary regime), as is weight decay.
    Closures for ``v`` as in [`escape.dynamics.AdamLangevin`][]: ``"quasi-static"`` (``v = E g^2`` frozen at
    ``v_point``) or ``"augmented"`` (``dv/dt = ((1 - beta2) / eta) (C + (grad L)^2 - v)``).

    ``closure="stochastic"`` (the improved model, docs/models/adai.md) carries the optimizer's buffers:
    state ``(theta, m, v, log P)`` with ``m`` the momentum buffer, ``v`` the bias-corrected ``v_hat`` (a
    stochastic EMA of ``g^2``, escape.dynamics._second_moment) and ``P`` the product of the inertias::

        d theta = -m / (1 - P) dt
        dm = ((1 - beta1) / eta) (grad L - m) dt + (1 - beta1) sqrt(C / eta) dW1 (+ co-update drift)
        d log P = log(beta1) / eta dt

    with ``beta1`` from ``v`` as above; at ``t = 0``, ``m = 0`` and ``P = 1`` as in the optimizer (the step
    ``m / (1 - P)`` is read as 0 there). The inertia is set by the ``v`` that already holds the current
    gradient's square; to first order in ``rho = (1 - beta2) / (1 - beta2^T)`` its mean adds the drift
    ``2 a rho grad L C / eta`` with ``a = d(1 - beta1_i) / d v_i``.

    Args:
        landscape: the loss landscape with its noise model.
        learning_rate: ``eta``.
        batch_size: minibatch size ``B``.
        beta0, beta2, eps: Adai's hyperparameters ([`escape.optim.adai`][]; ``eps`` bounds the inertia).
        closure: ``"quasi-static"``, ``"augmented"`` or ``"stochastic"``.
        v_point: where the quasi-static ``v`` is evaluated (default the landscape's initial point).
        bias_correction, v_noise, co_update: the stochastic closure's ingredients (default: all on with
            ``closure="stochastic"``; only that closure accepts ``True``).
        shared_normal: draw the noise of ``g^2`` from the gradient's own normal
            ([`SharedSquarePath`][escape.dynamics.SharedSquarePath]; default off: an independent ``dW2``).
    """

    landscape: AbstractLandscape
    learning_rate: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    beta0: float = eqx.field(static=True)
    beta2: float = eqx.field(static=True)
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
        beta0: float = 0.1,
        beta2: float = 0.99,
        eps: float = 1e-3,
        closure: Literal["quasi-static", "augmented", "stochastic"] = "quasi-static",
        v_point=None,
        bias_correction: bool | None = None,
        v_noise: bool | None = None,
        co_update: bool | None = None,
        shared_normal: bool = False,
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
        self.bias_correction = check_flag("AdaiLangevin", "bias_correction", bias_correction, self.closure)
        self.v_noise = check_flag("AdaiLangevin", "v_noise", v_noise, self.closure)
        self.co_update = check_flag("AdaiLangevin", "co_update", co_update, self.closure)
        self.shared_normal = check_flag("AdaiLangevin", "shared_normal", False if shared_normal is None else shared_normal,
                                        self.closure)

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

    # The stochastic closure: the optimizer's own buffers m (not bias-corrected: its EMA weight is the inertia
    # 1 - beta1, never singular) and P, with the step m / (1 - P); v is v_hat.

    @property
    def components(self):
        if self.stochastic:
            return ("theta", "m", "v", "log_p") if self.bias_correction else ("theta", "m", "v")
        return super().components

    def initial_state(self, theta0):
        if not self.stochastic:
            return super().initial_state(theta0)
        theta0 = jnp.asarray(theta0)
        zero = jnp.zeros_like(theta0)
        v0 = frozen_second_moment(self.landscape, theta0, self.batch_size).astype(theta0.dtype)
        # the optimizer's start: m = 0, P = 1 (log P = 0); v_hat at its mean (bias correction forgets it at once)
        return jnp.stack([theta0, zero, v0, zero] if self.bias_correction else [theta0, zero, v0])

    def moment_terms(self, t, y):
        m = y[1]
        grad, cov, v, rho, drift_v, noise_v, correction_v = self.moment_noise(t, y)
        eta = self.learning_rate
        v_bar = jnp.mean(v)
        positive = v_bar > 0
        safe_bar = jnp.where(positive, v_bar, 1.0)
        scaled = jnp.where(positive, self.beta0 * v / safe_bar, self.beta0)
        raw = jnp.clip(scaled, self.eps, 1.0)  # 1 - beta1
        free = positive & (scaled > self.eps) & (scaled < 1.0)
        slope = jnp.where(free, self.beta0 * (1.0 / safe_bar - v / (v.shape[0] * safe_bar**2)), 0.0)  # d raw_i / d v_i
        if self.bias_correction:
            p = jnp.exp(y[3])
            one_minus_p = 1.0 - p
            step = jnp.where(one_minus_p > 0, m / jnp.where(one_minus_p > 0, one_minus_p, 1.0), 0.0)
            extra = [jnp.log1p(-jnp.minimum(raw, 1.0 - 1e-7)) / eta]
        else:
            step, extra = m, []
        dm = (raw / eta) * (grad - m)
        if self.co_update:  # the inertia of g is set by a v that holds g^2: E[raw(v + dv) xi] = slope dv-covariance
            dm = dm + 2.0 * slope * rho * grad * cov / eta
        sigma = raw * jnp.sqrt(cov / eta)
        zero = jnp.zeros_like(m)
        drift = jnp.stack([-step, dm, drift_v, *extra])
        noise = jnp.stack([jnp.stack([zero, zero]), jnp.stack([sigma, zero]), noise_v, *[jnp.stack([zero, zero])] * len(extra)])
        # sigma depends on v through the inertia: (1/2) (d sigma_i / d v_i) times v_i's dW1 coefficient.
        correction_m = 0.5 * slope * jnp.sqrt(cov / eta) * noise_v[0]
        return drift, noise, jnp.stack([zero, correction_m, correction_v, *[zero] * len(extra)])
