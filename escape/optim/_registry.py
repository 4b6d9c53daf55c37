"""Optimizers by name: the one table that experiment configs, ``escape run``, ``escape train`` and
[`escape.optim.make_optimizer`][] use.

Each entry is a factory with an explicit signature (the hyperparameters a config may set); the
factories for optax's optimizers pin the conventions of theory §2 (docs/theory.md) and validate their
inputs. Names are case-insensitive, ``_`` and ``-`` are the same, and a few aliases
([`escape.optim.OPTIMIZER_ALIASES`][]) name the same entries.
"""

import functools
import inspect
from collections.abc import Callable

import numpy as np
import optax
from jaxtyping import ArrayLike

from .._checks import suggest

from ._adai import adai
from ._adaiv2 import adaiv2
from ._bounded import adabound, padam
from ._momentum import momentum
from ._validate import check_adam_betas, check_interval, check_learning_rate, check_nonnegative

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
    return _adam_family("adam", optax.adam, learning_rate, b1, b2, eps)


def _rmsprop(
    learning_rate: optax.ScalarOrSchedule, decay: ArrayLike = 0.9, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    """RMSProp as theory §2 writes it: Adam with ``b1 = 0``, no bias correction, ``g / (sqrt(v) + eps)``.

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


def _adamw(
    learning_rate: optax.ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 1e-4,
) -> optax.GradientTransformation:
    """AdamW: Adam with decoupled weight decay ``theta <- theta - eta lambda theta`` (``optax.adamw``)."""
    check_learning_rate("adamw", learning_rate)
    check_adam_betas("adamw", b1, b2, eps)
    check_nonnegative("adamw", "weight_decay", weight_decay)
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


def _adaiv2(
    learning_rate: optax.ScalarOrSchedule,
    beta0: ArrayLike = 0.1,
    beta2: ArrayLike = 0.99,
    eps: ArrayLike = 1e-3,
    weight_decay: ArrayLike = 0.0,
    dampening: ArrayLike = 1.0,
) -> optax.GradientTransformation:
    """AdaiV2 with decoupled weight decay, the official default ([`escape.optim.adaiv2`][])."""
    return adaiv2(learning_rate, beta0=beta0, beta2=beta2, eps=eps, weight_decay=weight_decay, dampening=dampening)


def _adam_family(owner: str, factory, learning_rate, b1, b2, eps, **extra) -> optax.GradientTransformation:
    check_learning_rate(owner, learning_rate)
    check_adam_betas(owner, b1, b2, eps)
    return factory(learning_rate, b1=b1, b2=b2, eps=eps, **extra)


def _amsgrad(
    learning_rate: optax.ScalarOrSchedule, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    """AMSGrad: Adam with the running maximum of the bias-corrected second moment (``optax.amsgrad``)."""
    return _adam_family("amsgrad", optax.amsgrad, learning_rate, b1, b2, eps)


def _yogi(
    learning_rate: optax.ScalarOrSchedule, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-3
) -> optax.GradientTransformation:
    """Yogi: ``v <- v - (1 - b2) sign(v - g^2) g^2`` (``optax.yogi``, the authors' ``eps = 1e-3``)."""
    return _adam_family("yogi", optax.yogi, learning_rate, b1, b2, eps)


def _radam(
    learning_rate: optax.ScalarOrSchedule, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> optax.GradientTransformation:
    """RAdam: Adam with the variance rectification, SGD-with-momentum steps while it is undefined (``optax.radam``,
    threshold 5)."""
    return _adam_family("radam", optax.radam, learning_rate, b1, b2, eps)


def _adabelief(
    learning_rate: optax.ScalarOrSchedule, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-16
) -> optax.GradientTransformation:
    """AdaBelief: the second moment of ``g - m`` (``optax.adabelief``, the authors' ``eps = eps_root = 1e-16``)."""
    return _adam_family("adabelief", optax.adabelief, learning_rate, b1, b2, eps)


def _adabound(
    learning_rate: optax.ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    final_lr: ArrayLike = 0.1,
    gamma: ArrayLike = 1e-3,
    weight_decay: ArrayLike = 0.0,
) -> optax.GradientTransformation:
    """AdaBound with L2 weight decay ([`escape.optim.adabound`][])."""
    return adabound(learning_rate, b1=b1, b2=b2, eps=eps, final_lr=final_lr, gamma=gamma, weight_decay=weight_decay)


def _padam(
    learning_rate: optax.ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    partial: ArrayLike = 0.125,
    weight_decay: ArrayLike = 0.0,
) -> optax.GradientTransformation:
    """Padam with L2 weight decay ([`escape.optim.padam`][])."""
    return padam(learning_rate, b1=b1, b2=b2, eps=eps, partial=partial, weight_decay=weight_decay)


OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": _sgd,
    "momentum": _momentum_sgd,
    "momentum-ema": _momentum_ema,
    "adam": _adam,
    "adamw": _adamw,
    "rmsprop": _rmsprop,
    "adai": _adai,
    "adaiw": _adaiw,
    "adaiv2": _adaiv2,
    "amsgrad": _amsgrad,
    "yogi": _yogi,
    "radam": _radam,
    "adabelief": _adabelief,
    "adabound": _adabound,
    "padam": _padam,
}
"""Factory of each named optimizer; its signature lists the hyperparameters a config may set."""

OPTIMIZER_ALIASES: dict[str, str] = {
    "sgd-momentum": "momentum",
    "heavy-ball": "momentum",
    "ema-momentum": "momentum-ema",
    "heavy-ball-ema": "momentum-ema",
}
"""Other names of registry entries: ``sgd-momentum`` and ``heavy-ball`` are ``momentum``, the SGD-style
heavy ball ``m <- beta m + g``, ``theta <- theta - eta m`` (``torch.optim.SGD(momentum=beta)``);
``ema-momentum`` and ``heavy-ball-ema`` are ``momentum-ema``."""


def optimizer_names() -> tuple[str, ...]:
    """The canonical names [`escape.optim.make_optimizer`][] accepts, sorted (aliases not included)."""
    return tuple(sorted(OPTIMIZERS))


def _fold(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def lookup_optimizer(name, *, owner: str = "make_optimizer") -> str | None:
    """The canonical registry name of ``name`` (case-insensitive, ``_`` as ``-``, aliases resolved), or None."""
    if not isinstance(name, str):
        raise ValueError(f"{owner}: the optimizer name must be a string, got {name!r}")
    folded = _fold(name)
    folded = OPTIMIZER_ALIASES.get(folded, folded)
    return folded if folded in OPTIMIZERS else None


def canonical_optimizer_name(name, *, owner: str = "make_optimizer") -> str:
    """The canonical registry name of ``name``; a one-line ValueError with a "did you mean" if unknown."""
    found = lookup_optimizer(name, owner=owner)
    if found is None:
        known = sorted({*OPTIMIZERS, *OPTIMIZER_ALIASES})
        raise ValueError(
            f"{owner}: unknown optimizer {name!r}{suggest(_fold(name), known)}; known: {', '.join(known)}"
        )
    return found


def optimizer_hyperparameters(name: str) -> dict[str, object]:
    """The hyperparameters of a registry optimizer and their defaults (``inspect.Parameter.empty`` if
    required), in signature order."""
    factory = OPTIMIZERS[canonical_optimizer_name(name)]
    return {k: p.default for k, p in inspect.signature(factory).parameters.items()}


def check_hyperparameters(name: str, hyperparameters: dict, *, owner: str = "make_optimizer") -> str:
    """Check the names of ``hyperparameters`` for the optimizer ``name`` without building it (their types and
    ranges are the factories' own checks).

    Returns the canonical name. Raises a one-line ValueError naming the hyperparameter: unknown (with a
    "did you mean") or missing.
    """
    canonical = canonical_optimizer_name(name, owner=owner)
    parameters = optimizer_hyperparameters(canonical)
    accepted = ", ".join(parameters)
    for key in hyperparameters:
        if key not in parameters:
            raise ValueError(
                f"{owner}: {canonical!r} has no hyperparameter {key!r}{suggest(key, parameters)}; accepted: {accepted}"
            )
    missing = [k for k, d in parameters.items() if d is inspect.Parameter.empty and k not in hyperparameters]
    if missing:
        raise ValueError(f"{owner}: {canonical!r} requires {', '.join(missing)}; accepted: {accepted}")
    return canonical


def make_optimizer(name: str, **hyperparameters) -> optax.GradientTransformation:
    """Build a named optimizer.

    Args:
        name: one of [`escape.optim.optimizer_names`][] or an alias
            ([`escape.optim.OPTIMIZER_ALIASES`][]), in any case (``"SGD"``, ``"sgd_momentum"``).
        **hyperparameters: the factory's arguments, e.g. ``learning_rate=0.1, beta0=0.1``;
            ``learning_rate`` is required.

    Returns:
        An `optax.GradientTransformation`. Equal arguments (numbers equal in type and value, the same schedule
        object) return the same object, so that a loop rebuilding its optimizer, e.g.
        ``make_optimizer("sgd", learning_rate=lr)`` once per seed, reuses the compiled steps of
        [`escape.simulate.escape_times`][] and of training, which are cached per optimizer object.

    Raises:
        ValueError: unknown ``name`` or hyperparameter (with a "did you mean"), a missing one, a value that
            is not a number (``learning_rate="0.1"``), or a value out of range.
    """
    canonical = check_hyperparameters(name, hyperparameters)
    key = _memo_key(hyperparameters)
    return OPTIMIZERS[canonical](**hyperparameters) if key is None else _build(canonical, key)


@functools.lru_cache(maxsize=256)
def _build(canonical: str, key: tuple) -> optax.GradientTransformation:
    """The optimizer ``canonical`` built from the hyperparameters of ``key`` (:func:`_memo_key`), once per key."""
    return OPTIMIZERS[canonical](**{name: value for name, _, value in key})


def _memo_key(hyperparameters: dict) -> tuple | None:
    """The key under which an optimizer built from these arguments is reused, or None (not reusable).

    Compiled engine and training steps are cached per optimizer *object* (an optax transformation is a pair of
    closures, equal only to itself), so equal arguments must give the same object for a loop that rebuilds
    the optimizer to reuse its compiled step. Python and NumPy scalars are keyed by type and value (``0.1`` and
    ``np.float32(0.1)`` stay apart), callables such as schedules by identity; arrays and unhashable values
    are not keyed. The key holds the values themselves, which build the optimizer.
    """
    items = []
    for name, value in sorted(hyperparameters.items()):
        if isinstance(value, (bool, int, float, str, np.generic)) or value is None:
            items.append((name, type(value).__name__, value))
        elif callable(value):
            items.append((name, id(value), value))  # by identity; held in the key, its id is not reused
        else:
            return None
    key = tuple(items)
    try:
        hash(key)
    except TypeError:
        return None
    return key
