"""Adam's step and flat-crossing bounds (Kaiser, "Exploring the Dynamics of Adam", Props. 1 and 2).

Without bias correction and with ``eps = 0``, Adam's step along one coordinate after the gradient history
``g_0 .. g_t`` is ``eta sum_i a_i g_{t-i} / sqrt(sum_i b_i g_{t-i}^2)`` with ``a_i = (1 - b1) b1^i`` and
``b_i = (1 - b2) b2^i``. By Cauchy-Schwarz it is at most ``eta ||a / sqrt(b)||``, attained (as the history
grows) by ``g_{t-i} ~ a_i / b_i ~ (b1 / b2)^i``. On a flat (zero gradients from step ``t`` on) the moments
decay by ``b1`` and ``b2`` per step, each step is ``b1 / sqrt(b2)`` times the previous one, and the distance
crossed from the step at ``t`` on is at most the step bound times ``sqrt(b2) / (sqrt(b2) - b1)``. Bias
correction multiplies a step by ``sqrt(1 - b2^t) / (1 - b1^t) <= 1`` and ``eps`` only shrinks it, so the
bounds hold for optax's Adam as it is.
"""

import numpy as np

from .._checks import check_integer
from ..optim._validate import check_interval, check_positive


def _check(owner: str, b1, b2) -> tuple[float, float]:
    for name, value in (("b1", b1), ("b2", b2)):
        check_interval(owner, name, value, 0.0, 1.0, closed_low=True, closed_high=False)
    b1, b2 = float(b1), float(b2)
    if not b1 < np.sqrt(b2):
        raise ValueError(f"{owner}: needs b1 < sqrt(b2) (b1^2 < b2), got b1={b1!r}, b2={b2!r}: the bound diverges")
    return b1, b2


def _check_lr(owner: str, learning_rate) -> float:
    check_positive(owner, "learning_rate", learning_rate)
    return float(learning_rate)


def adam_step_bound(b1: float = 0.9, b2: float = 0.999, learning_rate: float = 1.0) -> float:
    """Prop. 1: ``|step| <= eta (1 - b1) sqrt(b2) / sqrt((1 - b2)(b2 - b1^2))`` (7.27 eta at 0.9 / 0.999).

    Raises:
        ValueError: ``b1`` or ``b2`` outside ``[0, 1)``, ``b1^2 >= b2`` (the sum diverges), ``eta <= 0``.
    """
    b1, b2 = _check("adam_step_bound", b1, b2)
    eta = _check_lr("adam_step_bound", learning_rate)
    return eta * (1 - b1) * np.sqrt(b2) / np.sqrt((1 - b2) * (b2 - b1**2))


def adam_flat_bound(b1: float = 0.9, b2: float = 0.999, learning_rate: float = 1.0) -> float:
    """Prop. 2: the distance crossed on a flat, from the last step with a gradient on, is at most
    ``eta b2 (1 - b1) / ((sqrt(b2) - b1) sqrt((1 - b2)(b2 - b1^2)))`` (72.7 eta at 0.9 / 0.999).

    Raises:
        ValueError: as [`escape.theory.adam_step_bound`][]; ``b1 >= sqrt(b2)`` is where it diverges.
    """
    b1, b2 = _check("adam_flat_bound", b1, b2)
    eta = _check_lr("adam_flat_bound", learning_rate)
    return adam_step_bound(b1, b2, eta) * np.sqrt(b2) / (np.sqrt(b2) - b1)


def adam_step_maximiser(b1: float = 0.9, b2: float = 0.999, length: int = 1000) -> np.ndarray:
    """The Cauchy-Schwarz maximiser of Prop. 1 as a gradient history of ``length`` steps, oldest first:
    ``g_{t-i} = (b1 / b2)^i`` (largest entry 1, the last). Its step is the bound times
    ``sqrt(1 - (b1^2 / b2)^length)``."""
    b1, b2 = _check("adam_step_maximiser", b1, b2)
    check_integer("adam_step_maximiser", "length", length, 1)
    ratio = b1 / b2 if b2 > 0 else 0.0
    return ratio ** np.arange(length - 1, -1, -1, dtype=float)


def plain_adam_step(history, b1: float, b2: float) -> np.ndarray:
    """Prop. 1's quantity: the step (``eta = 1``) without bias correction and with ``eps = 0`` after the
    gradient history(ies) ``history[..., t]`` (oldest first)."""
    g = np.asarray(history, float)
    lag = np.arange(g.shape[-1] - 1, -1, -1)
    m = np.sum((1 - b1) * b1**lag * g, axis=-1)
    v = np.sum((1 - b2) * b2**lag * g**2, axis=-1)
    return m / np.sqrt(v)
