"""Construction-time checks of concrete arguments, one-line ValueErrors naming the argument.

(Optimizer hyperparameters have their own, lenient checks in ``escape.optim._validate``: they skip schedules
and traced values so that ``optax.inject_hyperparams`` works.)
"""

import difflib

import numpy as np


def check_positive(owner: str, name: str, value) -> float:
    """``value`` as a float if it is a finite number > 0 (not a bool); else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        np.isfinite(value) and value > 0
    ):
        raise ValueError(f"{owner}: {name} must be a positive number, got {value!r}")
    return float(value)


def check_integer(owner: str, name: str, value, minimum: int) -> int:
    """``value`` as an int if it is an integer >= ``minimum`` (not a bool); else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def suggest(word, candidates) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``candidates`` to ``word``, or ``""`` if none is close."""
    word, candidates = str(word), [str(c) for c in candidates]
    # Short names ("b3" for "b2") differ in a larger fraction of their letters.
    match = difflib.get_close_matches(word, candidates, n=3, cutoff=0.5 if len(word) <= 3 else 0.6)
    # A transposition ("adia" for "adai") keeps the letters: prefer such a candidate among the close ones.
    match.sort(key=lambda c: sorted(c) != sorted(word))
    return f" (did you mean {match[0]!r}?)" if match else ""
