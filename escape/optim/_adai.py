"""Adai: adaptive inertia (Xie et al., ICML 2022, Algorithm 2), as an optax transformation.

The official reference is ``adai_optim/adai.py`` in github.com/zeke-xie/adaptive-inertia-adai; see
``docs/api/optim.md`` for the update rule, the conventions, and how this port differs at the edges.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike

from ._validate import (
    check_choice,
    check_interval,
    check_learning_rate,
    check_nonnegative,
    check_positive,
    is_concrete_number,
)


class ScaleByAdaiState(NamedTuple):
    """State of [`escape.optim.scale_by_adai`][].

    Attributes:
        count: number of updates done so far, shape ``()``, int32.
        mu: first moment ``m`` (the momentum buffer), one array per parameter.
        nu: second moment ``v`` (EMA of squared gradients, not bias-corrected).
        beta1_prod: elementwise running product ``P`` of the adaptive inertia ``beta1``; starts at 1.
    """

    count: Array
    mu: optax.Updates
    nu: optax.Updates
    beta1_prod: optax.Updates


def _state_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """Accumulator dtype: the parameter's dtype, promoted to at least float32.

    In bfloat16 the inertia bound ``1 - eps = 0.999`` rounds to exactly 1, so ``P`` would stay 1 and the
    bias correction ``m / (1 - P)`` would be 0/0; the state therefore never drops below float32.
    """
    return jnp.promote_types(dtype, jnp.float32)


def _check_adai_args(owner: str, beta0, beta2, eps) -> None:
    check_positive(owner, "beta0", beta0)
    check_interval(owner, "beta2", beta2, 0.0, 1.0, closed_low=True, closed_high=False)
    check_interval(owner, "eps", eps, 0.0, 1.0, closed_low=False, closed_high=False)


def scale_by_adai(
    beta0: ArrayLike = 0.1,
    beta2: ArrayLike = 0.99,
    eps: ArrayLike = 1e-3,
) -> optax.GradientTransformation:
    r"""Rescale updates by the Adai algorithm (adaptive inertia), without learning rate or weight decay.

    With ``g`` the incoming updates and ``t`` the 1-based step,

    ```
    v      <- beta2 v + (1 - beta2) g^2                  v_hat = v / (1 - beta2^t)
    v_bar  = mean of v_hat over every element of every leaf   (one scalar)
    beta1  = clip(1 - beta0 v_hat / v_bar, 0, 1 - eps)        (elementwise)
    m      <- beta1 m + (1 - beta1) g                    P <- P beta1
    output = m / (1 - P)
    ```

    See [`escape.optim.adai`][] for the full optimizer.

    Args:
        beta0: scale of the adaptive inertia, ``> 0``.
        beta2: decay rate of the second-moment EMA, in ``[0, 1)``.
        eps: inertia bound, ``beta1 <= 1 - eps``, in ``(0, 1)``.

    Returns:
        An `optax.GradientTransformation` whose state is a [`escape.optim.ScaleByAdaiState`][]. The
        state is kept in at least float32; the output has the dtype of the incoming updates.
    """
    _check_adai_args("scale_by_adai", beta0, beta2, eps)
    return adaptive_inertia("scale_by_adai", beta0, beta2, eps, dampening=None)


def _check_real(owner: str, params) -> None:
    """A one-line ValueError naming the first parameter whose dtype is not real floating (complex, integer)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            where = jax.tree_util.keystr(path) or "(the single leaf)"
            kind = "complex" if jnp.issubdtype(dtype, jnp.complexfloating) else str(dtype)
            raise ValueError(
                f"{owner}: parameter {where} is {kind} ({dtype}); adaptive inertia is defined for real "
                "floating parameters only (split a complex parameter into real and imaginary parts)"
            )


def adaptive_inertia(owner: str, beta0, beta2, eps, dampening) -> optax.GradientTransformation:
    """The shared core of [`escape.optim.scale_by_adai`][] (``dampening=None``: Algorithm 2 exactly) and
    [`escape.optim.scale_by_adaiv2`][] (``dampening`` in ``[0, 1]``; 1 is Adai up to round-off)."""

    def init_fn(params):
        _check_real(owner, params)
        zeros = lambda p: jnp.zeros(jnp.shape(p), _state_dtype(jnp.result_type(p)))
        ones = lambda p: jnp.ones(jnp.shape(p), _state_dtype(jnp.result_type(p)))
        return ScaleByAdaiState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(zeros, params),
            nu=jax.tree.map(zeros, params),
            beta1_prod=jax.tree.map(ones, params),
        )

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        if not jax.tree.leaves(state.nu):  # nothing to optimize (structure, not a hyperparameter value)
            return updates, state._replace(count=count)
        # Hyperparameters may arrive as low-precision arrays (inject_hyperparams casts them to the
        # parameters' dtype): do all arithmetic in each leaf's state dtype.
        cast = lambda x, like: jnp.asarray(x, like.dtype)

        def second_moment(g, v):
            b2 = cast(beta2, v)
            return b2 * v + (1 - b2) * jnp.square(g.astype(v.dtype))

        nu = jax.tree.map(second_moment, updates, state.nu)
        v_hat = jax.tree.map(lambda v: v / (1 - cast(beta2, v) ** count), nu)
        # v_bar: one scalar over the whole model, sum of per-leaf sums over the total element count.
        leaves = jax.tree.leaves(v_hat)
        v_bar = sum(jnp.sum(v) for v in leaves) / sum(jnp.size(v) for v in leaves)
        # v_bar = 0 only if every gradient so far was exactly 0; then v_hat = v_bar everywhere and the
        # ratio is taken as 1 (the official code returns 0/0 = NaN there).
        positive = v_bar > 0
        safe_v_bar = jnp.where(positive, v_bar, 1)

        def inertia(v):
            ratio = jnp.where(positive, v / safe_v_bar.astype(v.dtype), 1)
            if dampening is not None:  # AdaiV2: the ratio to the power 1 / (3 - 2 dampening)
                ratio = ratio ** (1 / (3 - 2 * cast(dampening, v)))
            return jnp.clip(1 - cast(beta0, v) * ratio, 0, 1 - cast(eps, v))

        beta1 = jax.tree.map(inertia, v_hat)
        if dampening is None:
            gain = lambda b: 1 - b
        else:  # AdaiV2's gradient weight (1 - beta1)^dampening
            gain = lambda b: (1 - b) ** cast(dampening, b)
        mu = jax.tree.map(lambda g, m, b: b * m + gain(b) * g.astype(m.dtype), updates, state.mu, beta1)
        beta1_prod = jax.tree.map(lambda p, b: p * b, state.beta1_prod, beta1)
        if dampening is None:
            out = lambda g, m, p: (m / (1 - p)).astype(g.dtype)
        else:  # AdaiV2 rescales the bias-corrected momentum by beta0^(1 - dampening)
            out = lambda g, m, p: (m / (1 - p) * cast(beta0, m) ** (1 - cast(dampening, m))).astype(g.dtype)
        new_updates = jax.tree.map(out, updates, mu, beta1_prod)
        return new_updates, ScaleByAdaiState(count=count, mu=mu, nu=nu, beta1_prod=beta1_prod)

    return optax.GradientTransformation(init_fn, update_fn)


def adai(
    learning_rate: optax.ScalarOrSchedule,
    beta0: ArrayLike = 0.1,
    beta2: ArrayLike = 0.99,
    eps: ArrayLike = 1e-3,
    weight_decay: ArrayLike = 0.0,
    decoupled: bool = False,
) -> optax.GradientTransformation:
    r"""Adai (adaptive inertia), with L2 or decoupled ("AdaiW") weight decay.

    One step, with ``lambda = weight_decay`` and ``eta = learning_rate``:

    - L2 (``decoupled=False``): ``g <- g + lambda theta``, then the [`escape.optim.scale_by_adai`][]
      step ``theta <- theta - eta m / (1 - P)``; the decay enters both ``m`` and ``v``.
    - decoupled (``decoupled=True``): ``theta <- theta (1 - eta lambda) - eta m / (1 - P)`` with
      ``m``, ``v`` built from the raw gradient.

    Hyperparameters are never branched on by value, so ``optax.inject_hyperparams(adai)(...)`` gives
    the same updates. Pass ``params`` to ``update`` when ``weight_decay`` is non-zero (the decay needs them).

    Args:
        learning_rate: ``eta``, a number ``> 0`` or an optax schedule.
        beta0: scale of the adaptive inertia, ``> 0``.
        beta2: decay rate of the second-moment EMA, in ``[0, 1)``.
        eps: inertia bound, ``beta1 <= 1 - eps``, in ``(0, 1)``.
        weight_decay: ``lambda >= 0``.
        decoupled: a Python bool; ``True`` gives AdaiW.

    Returns:
        An `optax.GradientTransformation` (an `optax.chain`).

    Raises:
        ValueError: if a concrete hyperparameter is out of range (schedules and arrays are not checked).
    """
    check_learning_rate("adai", learning_rate)
    _check_adai_args("adai", beta0, beta2, eps)
    check_nonnegative("adai", "weight_decay", weight_decay)
    check_choice("adai", "decoupled", decoupled, (False, True))
    return with_weight_decay(scale_by_adai(beta0=beta0, beta2=beta2, eps=eps), learning_rate, weight_decay, decoupled)


def with_weight_decay(scale, learning_rate, weight_decay, decoupled: bool) -> optax.GradientTransformation:
    """``scale`` with L2 (decay before it) or decoupled (after it) weight decay, then the learning rate."""
    # A concrete zero decay needs no params: optax.identity() has add_decayed_weights' (empty) state, so the
    # state structure, checkpoints and inject_hyperparams (which passes arrays, hence keeps the decay) agree.
    no_decay = is_concrete_number(weight_decay) and weight_decay == 0
    decay = optax.identity() if no_decay else optax.add_decayed_weights(weight_decay)
    steps = (scale, decay) if decoupled else (decay, scale)
    return optax.chain(*steps, optax.scale_by_learning_rate(learning_rate))
