"""The two optimizers of the Adai paper's comparison that optax lacks, in optax's shape: AdaBound (Luo et al.,
ICLR 2019, the authors' ``adabound.py``) and Padam (Chen & Gu, 2018, the authors' ``Padam.py``)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike

from ._adai import with_weight_decay
from ._validate import check_adam_betas, check_interval, check_learning_rate, check_nonnegative, check_positive


class ScaleByAdaBoundState(NamedTuple):
    """State of [`escape.optim.scale_by_adabound`][] and [`escape.optim.scale_by_padam`][]: the step count,
    Adam's two moments (not bias-corrected) and, for Padam, the running maximum of the second (AMSGrad)."""

    count: Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates


def _moments(updates, state: ScaleByAdaBoundState, b1, b2):
    count = optax.safe_increment(state.count)
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    return count, mu, nu


def _compute_dtype(like) -> jnp.dtype:
    """The leaf's dtype, at least float32: in bfloat16 ``b2 = 0.999`` rounds to 1 and ``1 - b2^t`` to 0."""
    return jnp.promote_types(like.dtype, jnp.float32)


def _corrections(b1, b2, count, dtype):
    """Adam's bias corrections ``1 - b1^t`` and ``sqrt(1 - b2^t)`` in ``dtype``."""
    cast = lambda x: jnp.asarray(x, dtype)
    return 1 - cast(b1) ** count, jnp.sqrt(1 - cast(b2) ** count)


def _init(params, track_max: bool) -> ScaleByAdaBoundState:
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)
    return ScaleByAdaBoundState(jnp.zeros([], jnp.int32), zeros(), zeros(), zeros() if track_max else None)


def scale_by_adabound(
    base_learning_rate: ArrayLike, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8,
    final_lr: ArrayLike = 0.1, gamma: ArrayLike = 1e-3,
) -> optax.GradientTransformation:
    r"""AdaBound's step in units of the learning rate (multiply by ``eta_t``, e.g. ``optax.scale_by_learning_rate``).

    With ``t`` the 1-based step and ``f = final_lr / base_learning_rate`` (the authors scale the final rate with
    the schedule, ``final_lr * eta_t / eta_0``):

    ```
    m <- b1 m + (1 - b1) g        v <- b2 v + (1 - b2) g^2
    s = clip(sqrt(1 - b2^t) / ((1 - b1^t) (sqrt(v) + eps)), f (1 - 1/(gamma t + 1)), f (1 + 1/(gamma t)))
    output = s m
    ```

    Clipping ``eta_t s`` to ``[eta_t a, eta_t b]`` is ``eta_t`` times clipping ``s`` to ``[a, b]``, so the learning
    rate stays the chain's last factor, as in optax. Early on the bounds are wide (Adam); as ``t`` grows both
    tend to ``final_lr`` (SGD with momentum ``b1``, EMA-style).
    """
    check_positive("scale_by_adabound", "base_learning_rate", base_learning_rate)
    check_positive("scale_by_adabound", "final_lr", final_lr)
    check_positive("scale_by_adabound", "gamma", gamma)

    def update_fn(updates, state, params=None):
        del params
        count, mu, nu = _moments(updates, state, b1, b2)

        def step_of(m, v):
            dtype = _compute_dtype(m)
            bc1, sqrt_bc2 = _corrections(b1, b2, count, dtype)
            t = count.astype(dtype)
            f = jnp.asarray(final_lr, dtype) / jnp.asarray(base_learning_rate, dtype)
            low, high = f * (1 - 1 / (gamma * t + 1)), f * (1 + 1 / (gamma * t))
            scale = jnp.clip(sqrt_bc2 / (bc1 * (jnp.sqrt(v.astype(dtype)) + eps)), low, high)
            return (scale * m.astype(dtype)).astype(m.dtype)

        step = jax.tree.map(step_of, mu, nu)
        return step, ScaleByAdaBoundState(count, mu, nu, None)

    return optax.GradientTransformation(lambda p: _init(p, False), update_fn)


def scale_by_padam(
    b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8, partial: ArrayLike = 0.125
) -> optax.GradientTransformation:
    r"""Padam's step in units of the learning rate: AMSGrad with the denominator to the power ``2 partial``.

    ```
    m <- b1 m + (1 - b1) g     v <- b2 v + (1 - b2) g^2     v_max <- max(v_max, v)
    output = sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v_max) + eps)^(2 partial)
    ```

    As the authors' code: the maximum is over the raw ``v``, and the bias correction is Adam's ``sqrt(1 - b2^t)``
    whatever ``partial``. ``partial = 1/2`` is AMSGrad (that form of it); ``partial -> 0`` is SGD with momentum.
    """
    check_interval("scale_by_padam", "partial", partial, 0.0, 0.5, closed_low=False, closed_high=True)

    def update_fn(updates, state, params=None):
        del params
        count, mu, nu = _moments(updates, state, b1, b2)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)

        def step_of(m, v):
            dtype = _compute_dtype(m)
            bc1, sqrt_bc2 = _corrections(b1, b2, count, dtype)
            denom = (jnp.sqrt(v.astype(dtype)) + eps) ** (2 * partial)
            return (sqrt_bc2 / bc1 * m.astype(dtype) / denom).astype(m.dtype)

        step = jax.tree.map(step_of, mu, nu_max)
        return step, ScaleByAdaBoundState(count, mu, nu, nu_max)

    return optax.GradientTransformation(lambda p: _init(p, True), update_fn)


def adabound(
    learning_rate: optax.ScalarOrSchedule, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8,
    final_lr: ArrayLike = 0.1, gamma: ArrayLike = 1e-3, weight_decay: ArrayLike = 0.0,
) -> optax.GradientTransformation:
    """AdaBound (the authors' defaults): [`escape.optim.scale_by_adabound`][] with L2 weight decay.

    The final rate follows the schedule (``final_lr * eta_t / eta_0``, ``eta_0`` the rate at step 0)."""
    check_learning_rate("adabound", learning_rate)
    check_adam_betas("adabound", b1, b2, eps)
    check_nonnegative("adabound", "weight_decay", weight_decay)
    check_positive("adabound", "final_lr", final_lr)
    check_positive("adabound", "gamma", gamma)
    base = learning_rate(0) if callable(learning_rate) else learning_rate
    scale = scale_by_adabound(base, b1=b1, b2=b2, eps=eps, final_lr=final_lr, gamma=gamma)
    return with_weight_decay(scale, learning_rate, weight_decay, decoupled=False)  # the authors' L2 decay


def padam(
    learning_rate: optax.ScalarOrSchedule, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8,
    partial: ArrayLike = 0.125, weight_decay: ArrayLike = 0.0,
) -> optax.GradientTransformation:
    """Padam (the authors' CIFAR settings: ``partial = 1/8``, AMSGrad on): [`escape.optim.scale_by_padam`][]
    with L2 weight decay."""
    check_learning_rate("padam", learning_rate)
    check_adam_betas("padam", b1, b2, eps)
    check_nonnegative("padam", "weight_decay", weight_decay)
    scale = scale_by_padam(b1=b1, b2=b2, eps=eps, partial=partial)
    return with_weight_decay(scale, learning_rate, weight_decay, decoupled=False)  # the authors' L2 decay
