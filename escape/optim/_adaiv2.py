"""AdaiV2: Adai with a dampening exponent (the official ``adai_optim/adaiv2.py`` of
github.com/zeke-xie/adaptive-inertia-adai), as an optax transformation in the shape of [`escape.optim.adai`][]."""

import optax
from jaxtyping import ArrayLike

from ._adai import _check_adai_args, adaptive_inertia, with_weight_decay
from ._validate import check_choice, check_interval, check_learning_rate, check_nonnegative


def scale_by_adaiv2(
    beta0: ArrayLike = 0.1,
    beta2: ArrayLike = 0.99,
    eps: ArrayLike = 1e-3,
    dampening: ArrayLike = 1.0,
) -> optax.GradientTransformation:
    r"""Rescale updates by AdaiV2, without learning rate or weight decay.

    With ``g`` the incoming updates, ``t`` the 1-based step and ``d`` the dampening,

    ```
    v      <- beta2 v + (1 - beta2) g^2                  v_hat = v / (1 - beta2^t)
    v_bar  = mean of v_hat over every element of every leaf   (one scalar)
    beta1  = clip(1 - beta0 (v_hat / v_bar)^(1 / (3 - 2 d)), 0, 1 - eps)
    m      <- beta1 m + (1 - beta1)^d g                  P <- P beta1
    output = beta0^(1 - d) m / (1 - P)
    ```

    At ``d = 1`` this is [`escape.optim.scale_by_adai`][] (equal to round-off); ``d < 1`` weights the gradient
    by ``(1 - beta1)^d``, more than Adai along flat directions (small ``v_hat``, ``beta1`` near its bound).

    Args:
        beta0: scale of the adaptive inertia, ``> 0``.
        beta2: decay rate of the second-moment EMA, in ``[0, 1)``.
        eps: inertia bound, ``beta1 <= 1 - eps``, in ``(0, 1)``.
        dampening: ``d`` in ``[0, 1]``.

    Returns:
        An `optax.GradientTransformation` whose state is a [`escape.optim.ScaleByAdaiState`][] (kept in at
        least float32).

    Raises:
        ValueError: a concrete hyperparameter out of range; at ``init``, a parameter that is not real floating
            (complex or integer), named by its path.
    """
    _check_adai_args("scale_by_adaiv2", beta0, beta2, eps)
    check_interval("scale_by_adaiv2", "dampening", dampening, 0.0, 1.0, closed_low=True, closed_high=True)
    return adaptive_inertia("scale_by_adaiv2", beta0, beta2, eps, dampening=dampening)


def adaiv2(
    learning_rate: optax.ScalarOrSchedule,
    beta0: ArrayLike = 0.1,
    beta2: ArrayLike = 0.99,
    eps: ArrayLike = 1e-3,
    weight_decay: ArrayLike = 0.0,
    dampening: ArrayLike = 1.0,
    decoupled: bool = True,
) -> optax.GradientTransformation:
    r"""AdaiV2, with decoupled (default, as the official code) or L2 weight decay.

    One step, with ``lambda = weight_decay`` and ``eta = learning_rate``:

    - decoupled (``decoupled=True``): ``theta <- theta (1 - eta lambda) - eta beta0^(1-d) m / (1 - P)``, with
      ``m``, ``v`` built from the raw gradient ([`escape.optim.scale_by_adaiv2`][]).
    - L2 (``decoupled=False``): ``g <- g + lambda theta`` first; the decay enters ``m`` and ``v``.

    ``dampening=1, decoupled=True`` is AdaiW ([`escape.optim.adai`][] with ``decoupled=True``). Hyperparameters
    are never branched on by value, so ``optax.inject_hyperparams(adaiv2)(...)`` gives the same updates. Pass
    ``params`` to ``update`` when ``weight_decay`` is non-zero.

    Args:
        learning_rate: ``eta``, a number ``> 0`` or an optax schedule.
        beta0: scale of the adaptive inertia, ``> 0``.
        beta2: decay rate of the second-moment EMA, in ``[0, 1)``.
        eps: inertia bound, in ``(0, 1)``.
        weight_decay: ``lambda >= 0``.
        dampening: ``d`` in ``[0, 1]``.
        decoupled: a Python bool.

    Returns:
        An `optax.GradientTransformation` (an `optax.chain`).

    Raises:
        ValueError: if a concrete hyperparameter is out of range (schedules and arrays are not checked).
    """
    check_learning_rate("adaiv2", learning_rate)
    _check_adai_args("adaiv2", beta0, beta2, eps)
    check_interval("adaiv2", "dampening", dampening, 0.0, 1.0, closed_low=True, closed_high=True)
    check_nonnegative("adaiv2", "weight_decay", weight_decay)
    check_choice("adaiv2", "decoupled", decoupled, (False, True))
    scale = adaptive_inertia("adaiv2", beta0, beta2, eps, dampening=dampening)
    return with_weight_decay(scale, learning_rate, weight_decay, decoupled)
