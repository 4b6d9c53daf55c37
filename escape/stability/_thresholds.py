"""Stability thresholds of gradient methods on a quadratic (docs/theory.md §8).

On ``L = theta' A theta / 2`` every method below is a linear recurrence; along an eigendirection of curvature
``a`` it diverges once ``a`` exceeds the method's threshold. With a fixed diagonal preconditioner ``P`` (the
step ``-eta P^-1 d`` for the method's direction ``d``), the same threshold holds for ``lambda_1(P^-1 A)``,
the largest eigenvalue of ``P^-1/2 A P^-1/2``.
"""

import math

from .._checks import suggest

METHODS = ("gd", "heavy-ball", "heavy-ball-ema", "nesterov", "nesterov-ema", "adam", "rmsprop")
"""The methods [`stability_threshold`][escape.stability.stability_threshold] knows:

- ``gd``: ``theta <- theta - eta g``;
- ``heavy-ball``: ``m <- beta m + g``, ``theta <- theta - eta m`` (``torch.optim.SGD(momentum=beta)``; the
  registry's ``momentum``);
- ``heavy-ball-ema``: ``m <- beta m + (1 - beta) g``, ``theta <- theta - eta m`` (the registry's
  ``momentum-ema``, Adam's first moment);
- ``nesterov``: ``m <- beta m + g``, ``theta <- theta - eta (g + beta m)`` (``optax.sgd(nesterov=True)``);
- ``nesterov-ema``: ``m <- beta m + (1 - beta) g``, ``theta <- theta - eta ((1 - beta) g + beta m)``;
- ``adam``: Adam as ``theta <- theta - eta P^-1 m`` with ``m`` the EMA of ``g`` and ``P`` its preconditioner
  (the ``heavy-ball-ema`` line at ``beta = b1``; frozen ``P``: exact, see
  [`frozen_adam`][escape.stability.frozen_adam]);
- ``rmsprop``: ``theta <- theta - eta g / P`` (the ``gd`` line).
"""


def _canonical(method: str) -> str:
    if not isinstance(method, str):
        raise ValueError(f"stability_threshold: method must be a string, got {method!r}")
    m = method.strip().lower().replace("_", "-")
    m = {"sgd": "gd", "momentum": "heavy-ball", "momentum-ema": "heavy-ball-ema"}.get(m, m)
    if m not in METHODS:
        raise ValueError(
            f"stability_threshold: unknown method {method!r}{suggest(m, METHODS)}; known: {', '.join(METHODS)}"
        )
    return m


def stability_threshold(method: str, learning_rate: float, beta: float = 0.9) -> float:
    """The largest curvature ``a`` (of ``A``, or of ``P^-1 A`` preconditioned) at which ``method`` is stable.

    | method | threshold |
    |---|---|
    | ``gd``, ``rmsprop`` | ``2 / eta`` |
    | ``heavy-ball`` | ``(2 + 2 beta) / eta`` |
    | ``heavy-ball-ema``, ``adam`` | ``(2 + 2 beta) / ((1 - beta) eta)`` (38 / eta at beta = 0.9) |
    | ``nesterov`` | ``(2 + 2 beta) / ((1 + 2 beta) eta)`` |
    | ``nesterov-ema`` | ``(2 + 2 beta) / ((1 - beta)(1 + 2 beta) eta)`` |

    Each is where a root of the recurrence's characteristic polynomial crosses ``z = -1`` (period-2
    divergence); below it every root lies inside the unit circle. Exact for the linear recurrences (tested
    by simulation at 0.98 and 1.02 times the threshold).

    Args:
        method: one of [`METHODS`][escape.stability.METHODS] (also ``sgd``, ``momentum``, ``momentum-ema``).
        learning_rate: ``eta > 0``.
        beta: the momentum ``beta`` in ``[0, 1)`` (Adam's ``b1``); unused by ``gd`` and ``rmsprop``.

    Raises:
        ValueError: unknown method, ``eta <= 0`` or ``beta`` outside ``[0, 1)`` (one line).
    """
    m = _canonical(method)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not (
            math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"stability_threshold: learning_rate must be a number > 0, got {learning_rate!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
        raise ValueError(f"stability_threshold: beta must be in [0, 1), got {beta!r}")
    eta, b = float(learning_rate), float(beta)
    if m in ("gd", "rmsprop"):
        return 2.0 / eta
    if m == "heavy-ball":
        return (2 + 2 * b) / eta
    if m in ("heavy-ball-ema", "adam"):
        return (2 + 2 * b) / ((1 - b) * eta)
    if m == "nesterov":
        return (2 + 2 * b) / ((1 + 2 * b) * eta)
    return (2 + 2 * b) / ((1 - b) * (1 + 2 * b) * eta)
