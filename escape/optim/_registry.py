"""Optimizers by name: the table that experiment configs use.

Each entry is a factory with an explicit signature (the hyperparameters a config may set); the
factories for optax's optimizers pin the conventions of THEORY.md section 2 and validate their inputs.
"""

import inspect
from collections.abc import Callable

import optax
from jaxtyping import ArrayLike

from ._adai import adai
from ._momentum import momentum
from ._validate import check_interval, check_learning_rate, check_nonnegative

OptimizerFactory = Callable[..., optax.GradientTransformation]


def _check_beta(owner: str, name: str, value) -> None:
    check_interval(owner, name, value, 0.0, 1.0, closed_low=True, closed_high=False)


def _sgd(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """SGD: ``theta <- theta - eta g`` (``optax.sgd``)."""
    check_learning_rate("sgd", learning_rate)
    return optax.sgd(learning_rate)


def _momentum_sgd(learning_rate: optax.ScalarOrSchedule, beta: ArrayLike = 0.9) -> optax.GradientTransformation:
    """Heavy ball, SGD style: ``m <- beta m + g`` ([`escape.optim.momentum`][], ``style="sgd"``)."""
    check_learning_rate("momentum", learning_rate)
    _check_beta("momentum", "beta", beta)
    return momentum(learning_rate, beta=beta, style="sgd")


def _momentum_ema(learning_rate: optax.ScalarOrSchedule, beta: ArrayLike = 0.9) -> optax.GradientTransformation:
    """Heavy ball, EMA style: ``m <- beta m + (1 - beta) g`` ([`escape.optim.momentum`][], ``style="ema"``)."""
    check_learning_rate("momentum-ema", learning_rate)
    _check_beta("momentum-ema", "beta", beta)
    return momentum(learning_rate, beta=beta, style="ema")


def _adam(
    learning_rate: optax.ScalarOrSchedule, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    """Adam with bias corrections, ``eps`` outside the square root (``optax.adam``)."""
    check_learning_rate("adam", learning_rate)
    _check_beta("adam", "b1", b1)
    _check_beta("adam", "b2", b2)
    check_nonnegative("adam", "eps", eps)
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


def _rmsprop(
    learning_rate: optax.ScalarOrSchedule, decay: ArrayLike = 0.9, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    """RMSProp as THEORY.md writes it: Adam with ``b1 = 0``, no bias correction, ``g / (sqrt(v) + eps)``.

    ``optax.rmsprop`` puts ``eps`` inside the square root by default; this entry sets
    ``eps_in_sqrt=False`` so that ``eps`` means the same as in Adam.
    """
    check_learning_rate("rmsprop", learning_rate)
    _check_beta("rmsprop", "decay", decay)
    check_nonnegative("rmsprop", "eps", eps)
    return optax.rmsprop(learning_rate, decay=decay, eps=eps, eps_in_sqrt=False)


def _adai(
    learning_rate: optax.ScalarOrSchedule,
    beta0: ArrayLike = 0.1,
    beta2: ArrayLike = 0.99,
    eps: ArrayLike = 1e-3,
    weight_decay: ArrayLike = 0.0,
) -> optax.GradientTransformation:
    """Adai with L2 weight decay ([`escape.optim.adai`][], ``decoupled=False``)."""
    return adai(learning_rate, beta0=beta0, beta2=beta2, eps=eps, weight_decay=weight_decay, decoupled=False)


def _adaiw(
    learning_rate: optax.ScalarOrSchedule,
    beta0: ArrayLike = 0.1,
    beta2: ArrayLike = 0.99,
    eps: ArrayLike = 1e-3,
    weight_decay: ArrayLike = 0.0,
) -> optax.GradientTransformation:
    """AdaiW: Adai with decoupled weight decay ([`escape.optim.adai`][], ``decoupled=True``)."""
    return adai(learning_rate, beta0=beta0, beta2=beta2, eps=eps, weight_decay=weight_decay, decoupled=True)


OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": _sgd,
    "momentum": _momentum_sgd,
    "momentum-ema": _momentum_ema,
    "adam": _adam,
    "rmsprop": _rmsprop,
    "adai": _adai,
    "adaiw": _adaiw,
}
"""Factory of each named optimizer; its signature lists the hyperparameters a config may set."""


def optimizer_names() -> tuple[str, ...]:
    """The names [`escape.optim.make_optimizer`][] accepts, sorted."""
    return tuple(sorted(OPTIMIZERS))


def make_optimizer(name: str, **hyperparameters) -> optax.GradientTransformation:
    """Build a named optimizer.

    Args:
        name: one of [`escape.optim.optimizer_names`][].
        **hyperparameters: the factory's arguments, e.g. ``learning_rate=0.1, beta0=0.1``;
            ``learning_rate`` is required.

    Returns:
        An `optax.GradientTransformation`.

    Raises:
        ValueError: unknown ``name``, unknown or missing hyperparameter, or a value out of range.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"make_optimizer: unknown optimizer {name!r}; known: {', '.join(optimizer_names())}")
    factory = OPTIMIZERS[name]
    parameters = inspect.signature(factory).parameters
    accepted = ", ".join(parameters)
    for key in hyperparameters:
        if key not in parameters:
            raise ValueError(f"make_optimizer: {name!r} has no hyperparameter {key!r}; accepted: {accepted}")
    missing = [k for k, p in parameters.items() if p.default is inspect.Parameter.empty and k not in hyperparameters]
    if missing:
        raise ValueError(f"make_optimizer: {name!r} requires {', '.join(missing)}; accepted: {accepted}")
    return factory(**hyperparameters)
