"""The papers' scaling laws for escape from a minimum (docs/theory.md §6): the exponent of ``log tau``.

With state-dependent noise ``C ~= H / B`` only the exponent ``Delta L / T_eff`` is claimed, ``log tau =
O(Delta L / T_eff)``: every function below returns that exponent (a number, not a time). On the rescaled
family ``L_k(theta) = L(sqrt(k) theta)`` the Hessian at the minimum scales as ``H_a = k H_a(1)`` while the
barrier does not, so ``-log Gamma`` is linear in ``k^(-p)`` with the exponent ``p`` of
:data:`SHARPNESS_EXPONENTS` (paper Fig. 6).
"""

from typing import Literal

import numpy as np

from ._saddle import heavy_ball_coefficients

__all__ = [
    "SHARPNESS_EXPONENTS",
    "adai_escape_exponent",
    "adam_escape_exponent",
    "momentum_escape_exponent",
    "sgd_escape_exponent",
]

SHARPNESS_EXPONENTS: dict[str, float] = {
    "sgd": 1.0,
    "momentum": 1.0,
    "momentum-ema": 1.0,
    "adai": 1.0,
    "adaiw": 1.0,
    "adam": 0.5,
    "rmsprop": 0.5,
}
"""``p`` in ``-log Gamma(k) = a + b k^(-p)`` for each optimizer name of ``escape.optim``."""


def _check(barrier, learning_rate, batch_size, h_min):
    if not (barrier > 0 and learning_rate > 0 and batch_size > 0 and np.all(np.asarray(h_min) > 0)):
        raise ValueError("escape exponent: need barrier > 0, learning_rate > 0, batch_size > 0, h_min > 0")


def sgd_escape_exponent(barrier: float, learning_rate: float, batch_size: int, h_min: float) -> float:
    """SGD (Theorem 3): ``log tau = O(2 B Delta L / (eta H_a))``.

    ``Delta L / T_eff`` with ``T_eff = D = eta H_a / (2 B)`` (Hessian noise at the minimum, overdamped,
    low temperature). Only the exponent is claimed; the prefactor is not.
    """
    _check(barrier, learning_rate, batch_size, h_min)
    return 2.0 * batch_size * barrier / (learning_rate * h_min)


def momentum_escape_exponent(
    barrier: float,
    learning_rate: float,
    batch_size: int,
    h_min: float,
    beta: float = 0.9,
    style: Literal["sgd", "ema"] = "sgd",
) -> float:
    """Heavy-ball momentum (Theorem 3): ``log tau = O(2 gamma B Delta L / (eta H_a))``.

    ``T_eff = D / gamma`` with ``gamma = 1 - beta`` (SGD style) or ``1`` (EMA style), see
    [`escape.theory.heavy_ball_coefficients`][]: the momentum only rescales SGD's exponent.
    """
    _check(barrier, learning_rate, batch_size, h_min)
    _, gamma = heavy_ball_coefficients(learning_rate, beta, style)
    return 2.0 * gamma * batch_size * barrier / (learning_rate * h_min)


def adai_escape_exponent(barrier: float, learning_rate: float, batch_size: int, h_min: float) -> float:
    """Adai (Proposition 4): ``log tau = O(2 B Delta L / (eta H_a))``, SGD's exponent (``gamma = 1``)."""
    _check(barrier, learning_rate, batch_size, h_min)
    return 2.0 * batch_size * barrier / (learning_rate * h_min)


def adam_escape_exponent(barrier: float, learning_rate: float, batch_size: int, h_min: float) -> float:
    """Adam (Proposition 2): ``log tau = O(2 sqrt(B) Delta L / (eta sqrt(H_a)))``.

    ``T_eff = eta_i C / 2`` with ``eta_i = eta / sqrt(v)`` and ``v ~= C = H_a / B``, so
    ``T_eff = eta sqrt(H_a / B) / 2``: the exponent grows like ``H_a^(-1/2)``, not ``H_a^(-1)``.
    """
    _check(barrier, learning_rate, batch_size, h_min)
    return 2.0 * np.sqrt(batch_size) * barrier / (learning_rate * np.sqrt(h_min))
