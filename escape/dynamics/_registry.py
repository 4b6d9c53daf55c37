"""Continuous-time models by optimizer name: the same names and hyperparameters as ``escape.optim``."""

import inspect
from collections.abc import Callable

from ..landscapes import AbstractLandscape
from ._adai import AdaiLangevin
from ._adam import AdamLangevin
from ._base import AbstractDynamics
from ._heavy_ball import HeavyBallLangevin
from ._sgd import SGDLangevin


def _sgd(landscape, batch_size, learning_rate, order=1):
    return SGDLangevin(landscape, learning_rate, batch_size, order=order)


def _momentum(landscape, batch_size, learning_rate, beta=0.9, order=1):
    return HeavyBallLangevin(landscape, learning_rate, batch_size, beta=beta, style="sgd", order=order)


def _momentum_ema(landscape, batch_size, learning_rate, beta=0.9, order=1):
    return HeavyBallLangevin(landscape, learning_rate, batch_size, beta=beta, style="ema", order=order)


def _adam(landscape, batch_size, learning_rate, b1=0.9, b2=0.999, eps=1e-8, closure="quasi-static",
          bias_correction=None, v_noise=None, co_update=None, shared_normal=False):
    return AdamLangevin(landscape, learning_rate, batch_size, b1=b1, b2=b2, eps=eps, closure=closure,
                        bias_correction=bias_correction, v_noise=v_noise, co_update=co_update,
                        shared_normal=shared_normal)


def _rmsprop(landscape, batch_size, learning_rate, decay=0.9, eps=1e-8, closure="quasi-static", v_noise=None,
             co_update=None, shared_normal=False):
    # RMSProp has no bias correction (optax.rmsprop): the stochastic closure runs without it.
    return AdamLangevin(landscape, learning_rate, batch_size, b1=0.0, b2=decay, eps=eps, closure=closure,
                        bias_correction=False, v_noise=v_noise, co_update=co_update, shared_normal=shared_normal)


def _adai(landscape, batch_size, learning_rate, beta0=0.1, beta2=0.99, eps=1e-3, weight_decay=0.0, closure="quasi-static",
          bias_correction=None, v_noise=None, co_update=None, shared_normal=False):
    if weight_decay != 0:
        raise ValueError("make_dynamics: the Adai model has no weight decay; use weight_decay=0")
    return AdaiLangevin(landscape, learning_rate, batch_size, beta0=beta0, beta2=beta2, eps=eps, closure=closure,
                        bias_correction=bias_correction, v_noise=v_noise, co_update=co_update,
                        shared_normal=shared_normal)


DYNAMICS: dict[str, Callable[..., AbstractDynamics]] = {
    "sgd": _sgd,
    "momentum": _momentum,
    "momentum-ema": _momentum_ema,
    "adam": _adam,
    "rmsprop": _rmsprop,
    "adai": _adai,
    "adaiw": _adai,
}
"""Factory of each model, keyed by the optimizer names of ``escape.optim.OPTIMIZERS``."""


def make_dynamics(name: str, landscape: AbstractLandscape, *, batch_size: int, **hyperparameters) -> AbstractDynamics:
    """The continuous-time model of the optimizer ``name`` with the hyperparameters it takes.

    ``make_dynamics("adam", landscape, batch_size=1, learning_rate=0.01, b1=0.9)`` models
    ``make_optimizer("adam", learning_rate=0.01, b1=0.9)`` at batch size 1. Adam, RMSProp and Adai also
    accept ``closure="quasi-static" | "augmented" | "stochastic"`` and the stochastic closure's switches
    ``bias_correction``, ``v_noise``, ``co_update``, ``shared_normal`` (docs/models/adam.md, adai.md); SGD, momentum and momentum-ema accept ``order=1 | 2``
    (``2``: the second-order stochastic modified equation, docs/models/sgd.md and heavy_ball.md).

    Raises:
        ValueError: unknown name, unknown or missing hyperparameter, or a value out of range.
    """
    if name not in DYNAMICS:
        raise ValueError(f"make_dynamics: unknown optimizer {name!r}; known: {', '.join(sorted(DYNAMICS))}")
    factory = DYNAMICS[name]
    parameters = list(inspect.signature(factory).parameters)[2:]
    for k in hyperparameters:
        if k not in parameters:
            raise ValueError(f"make_dynamics: {name!r} has no hyperparameter {k!r}; accepted: {', '.join(parameters)}")
    if "learning_rate" not in hyperparameters:
        raise ValueError(f"make_dynamics: {name!r} requires learning_rate")
    return factory(landscape, batch_size, **hyperparameters)
