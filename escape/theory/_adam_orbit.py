"""Prop. 4 of Kaiser's "Exploring the Dynamics of Adam": Adam's 2-cycle under a gradient of alternating sign."""

import numpy as np

from ..optim._validate import check_interval, check_positive
from ._adam_bounds import _check_lr

FORMS = ("eps-outside", "eps-inside", "seed")


def adam_two_cycle_jump(grad_magnitude: float, b1: float = 0.9, learning_rate: float = 1e-3, eps: float = 1e-8,
                        form: str = "eps-outside") -> float:
    """The distance between the two points of Adam's 2-cycle when the gradient alternates ``+C, -C``.

    In the cycle the first moment alternates ``+-C (1 - b1) / (1 + b1)``, the second tends to ``C^2`` and the
    bias corrections to 1, so each step is ``eta C (1 - b1) / ((1 + b1) D)`` with ``D = C + eps`` for optax's Adam
    (``eps`` outside the root, ``form="eps-outside"``), ``D = sqrt(C^2 + eps)`` with ``eps`` inside
    (``"eps-inside"``), and ``D = C^2 + eps`` as the seed's proof writes it (``"seed"``). The cycle lies on two
    points ``w``, ``w - jump`` with ``grad L(w) = C = -grad L(w - jump)``; its amplitude is half the jump.
    """
    eta = _check_lr("adam_two_cycle_jump", learning_rate)
    check_interval("adam_two_cycle_jump", "b1", b1, 0.0, 1.0, closed_low=True, closed_high=False)
    check_positive("adam_two_cycle_jump", "grad_magnitude", grad_magnitude)
    if form not in FORMS:
        raise ValueError(f"adam_two_cycle_jump: form must be one of {FORMS}, got {form!r}")
    c = float(grad_magnitude)
    denominator = {"eps-outside": c + eps, "eps-inside": np.sqrt(c * c + eps), "seed": c * c + eps}[form]
    return eta * c * (1 - b1) / ((1 + b1) * denominator)
