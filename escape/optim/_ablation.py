"""Adam and Adai with one ingredient switched at a time: the discrete side of the SDE-fidelity diagnosis.

The continuous-time models of Adam and Adai (``escape.dynamics``) differ from the optimizers in how they
treat the second moment ``v`` and the bias corrections. These transformations run the *discrete* optimizer
with the same simplification as a model closure, so that each closure's error splits into the ingredient it
drops (docs/models/adam.md, docs/models/adai.md):

- ``v="sampled"``: the optimizer itself, ``v`` an EMA of the sampled ``g^2``;
- ``v="mean"``: the EMA is fed the conditional mean ``E[g^2 | theta] = C(theta) + (grad L)^2`` instead of
  ``g^2`` (the ``"augmented"`` closure's ``v``);
- ``v="frozen"``: ``v = E g^2`` at the start point for ever (the ``"quasi-static"`` closure);
- ``v="shifted"``: the EMA is fed ``(grad_i L + xi'_i)^2`` with ``xi'_i = xi_{i+1} sqrt(C_i / C_{i+1})``, the
  next coordinate's gradient noise (cyclically) rescaled: on a separable landscape with independent
  coordinates the same law as ``g_i^2``, but independent of this coordinate's own kick ``xi_i``;
- ``bias_correction=False``: no ``1 - beta^t`` corrections (Adai: no ``1 - P``); ``m`` starts at 0 and
  ``v`` at ``E g^2`` of the start, as the models do;
- ``lagged_v=True``: the step uses the ``v`` of the previous iteration (the optimizer's ``v`` already holds
  the current ``g^2`` when it scales, or sets the inertia of, that same ``g``).

The parameters must be one point of the landscape (an array of shape ``(dim,)``), as in ``escape.simulate``.
"""

from typing import NamedTuple

import jax.numpy as jnp
import optax

from .._checks import check_integer
from ._validate import check_choice, check_interval, check_learning_rate, check_nonnegative, check_positive


class AblationState(NamedTuple):
    """State of [`escape.optim.moment_ablation`][]: the step count, ``m``, ``v`` and Adai's ``P``."""

    count: jnp.ndarray
    mu: jnp.ndarray
    nu: jnp.ndarray
    beta1_prod: jnp.ndarray


def moment_ablation(
    name: str,
    learning_rate: float,
    *,
    landscape,
    batch_size: int = 1,
    v: str = "sampled",
    bias_correction: bool = True,
    lagged_v: bool = False,
    **hyperparameters,
) -> optax.GradientTransformation:
    """Adam (``name="adam"``) or Adai (``"adai"``) on ``landscape`` with the ``v`` treatment ``v``.

    With ``v="sampled"``, ``bias_correction=True``, ``lagged_v=False`` this is ``optax.adam`` (resp.
    [`escape.optim.adai`][] without weight decay) step for step (tested).

    Args:
        name: ``"adam"`` or ``"adai"``.
        learning_rate: ``eta``.
        landscape: the landscape whose ``C(theta) + (grad L)^2`` the ``"mean"`` and ``"frozen"`` variants use.
        batch_size: the minibatch size of ``C``.
        v: ``"sampled"``, ``"mean"``, ``"frozen"`` or ``"shifted"`` (see the module).
        bias_correction: keep the bias corrections.
        lagged_v: scale (Adam) or set the inertia (Adai) with the previous iteration's ``v``.
        **hyperparameters: Adam's ``b1``, ``b2``, ``eps``; Adai's ``beta0``, ``beta2``, ``eps``.

    Raises:
        ValueError: an unknown name, variant or hyperparameter, or a value out of range.
    """
    owner = "moment_ablation"
    check_choice(owner, "name", name, ("adam", "adai"))
    check_choice(owner, "v", v, ("sampled", "mean", "frozen", "shifted"))
    check_integer(owner, "batch_size", batch_size, 1)
    for flag, value in (("bias_correction", bias_correction), ("lagged_v", lagged_v)):
        if not isinstance(value, bool):
            raise ValueError(f"{owner}: {flag} must be True or False, got {value!r}")
    if v == "shifted" and getattr(landscape, "dim", 0) < 2:
        raise ValueError(f"{owner}: v='shifted' needs a landscape of dim >= 2 (it borrows the next coordinate's noise)")
    check_learning_rate(owner, learning_rate)
    defaults = {"adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8}, "adai": {"beta0": 0.1, "beta2": 0.99, "eps": 1e-3}}[name]
    unknown = set(hyperparameters) - set(defaults)
    if unknown:
        raise ValueError(f"{owner}: {name!r} has no hyperparameter {sorted(unknown)[0]!r}; accepted: {', '.join(defaults)}")
    hp = {**defaults, **hyperparameters}
    if name == "adam":
        b1, b2 = hp["b1"], hp["b2"]
        check_interval(owner, "b1", b1, 0.0, 1.0, closed_low=True, closed_high=False)
        check_interval(owner, "b2", b2, 0.0, 1.0, closed_low=True, closed_high=False)
        check_nonnegative(owner, "eps", hp["eps"])
    else:
        b1, b2 = None, hp["beta2"]
        check_positive(owner, "beta0", hp["beta0"])
        check_interval(owner, "beta2", b2, 0.0, 1.0, closed_low=True, closed_high=False)
        check_interval(owner, "eps", hp["eps"], 0.0, 1.0, closed_low=False, closed_high=False)

    # imported here, not at the top: escape.landscapes, which escape.dynamics imports, imports escape.optim
    from ..dynamics._second_moment import stationary_second_moment

    def mean_square(theta):
        return stationary_second_moment(landscape, theta, batch_size)

    def shifted_square(g, theta):
        grad = landscape.gradient(theta)
        cov = landscape.gradient_covariance_diag(theta, batch_size)
        nxt = jnp.roll(cov, -1)
        other = jnp.roll(g - grad, -1) * jnp.sqrt(cov / jnp.where(nxt > 0, nxt, 1.0)) * (nxt > 0)
        return ((grad + other) ** 2).astype(g.dtype)

    def init_fn(params):
        start = mean_square(params).astype(params.dtype)
        nu = start if (v == "frozen" or not bias_correction) else jnp.zeros_like(params)
        return AblationState(jnp.zeros([], jnp.int32), jnp.zeros_like(params), nu, jnp.ones_like(params))

    def update_fn(g, state, params):
        count = optax.safe_increment(state.count)
        fresh = {"sampled": lambda: g * g, "mean": lambda: mean_square(params).astype(g.dtype), "frozen": None,
                 "shifted": lambda: shifted_square(g, params)}[v]
        nu = state.nu if v == "frozen" else b2 * state.nu + (1 - b2) * fresh()
        used = state.nu if lagged_v else nu
        if bias_correction and v != "frozen":
            if lagged_v:  # the previous v averages count - 1 gradients; the first step has none but the current
                previous = state.nu / (1 - b2 ** jnp.maximum(count - 1, 1))
                used = jnp.where(count == 1, nu / (1 - b2), previous)
            else:
                used = nu / (1 - b2**count)
        if name == "adam":
            mu = b1 * state.mu + (1 - b1) * g
            m_hat = mu / (1 - b1**count) if bias_correction else mu
            step = -learning_rate * m_hat / (jnp.sqrt(used) + hp["eps"])
            return step, AblationState(count, mu, nu, state.beta1_prod)
        v_bar = jnp.mean(used)
        ratio = jnp.where(v_bar > 0, used / jnp.where(v_bar > 0, v_bar, 1), 1)
        beta1 = jnp.clip(1 - hp["beta0"] * ratio, 0, 1 - hp["eps"])
        mu = beta1 * state.mu + (1 - beta1) * g
        prod = state.beta1_prod * beta1
        step = -learning_rate * (mu / (1 - prod) if bias_correction else mu)
        return step, AblationState(count, mu, nu, prod)

    return optax.GradientTransformation(init_fn, update_fn)
