"""Construction-time checks of optimizer hyperparameters.

Only concrete Python (or NumPy) numbers are checked. Schedules (callables) and JAX arrays pass through
unchecked: ``optax.inject_hyperparams`` calls the factories again with (possibly traced) arrays inside
``update``, where a Python comparison would either fail or force a recompilation.
"""

import numbers
from typing import Any


def is_concrete_number(value: Any) -> bool:
    """Whether ``value`` is a plain real number (Python or NumPy scalar), hence checkable now."""
    return isinstance(value, numbers.Real)


def check_positive(owner: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value > 0`` (skipped for schedules and arrays)."""
    check_hyperparameter_type(owner, name, value)
    if is_concrete_number(value) and not value > 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")


def check_nonnegative(owner: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value >= 0`` (skipped for schedules and arrays)."""
    check_hyperparameter_type(owner, name, value)
    if is_concrete_number(value) and not value >= 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")


def check_interval(
    owner: str, name: str, value: Any, low: float, high: float, *, closed_low: bool, closed_high: bool
) -> None:
    """Raise ``ValueError`` unless ``value`` lies in the interval from ``low`` to ``high``.

    Args:
        owner: the factory being built, first word of the message (e.g. ``"adai"``).
        name: the argument's name.
        value: the argument's value; skipped unless a concrete number.
        low, high: the bounds.
        closed_low, closed_high: whether each bound belongs to the interval.
    """
    check_hyperparameter_type(owner, name, value)
    if not is_concrete_number(value):
        return
    above = value >= low if closed_low else value > low
    below = value <= high if closed_high else value < high
    if not (above and below):  # also catches NaN
        interval = f"{'[' if closed_low else '('}{low:g}, {high:g}{']' if closed_high else ')'}"
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")


def check_learning_rate(owner: str, value: Any) -> None:
    """A learning rate is a schedule (unchecked) or a number ``> 0``."""
    check_hyperparameter_type(owner, "learning_rate", value, schedule=True)
    if not callable(value):
        check_positive(owner, "learning_rate", value)


def check_choice(owner: str, name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (a structural, static option)."""
    if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
        raise ValueError(f"{owner}: {name} must be one of {choices}, got {value!r}")


def check_hyperparameter_type(owner: str, name: str, value: Any, *, schedule: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a number (not a bool or a string) or an array; with
    ``schedule``, also a callable (an optax schedule). Catches ``learning_rate="0.1"`` at construction
    instead of inside the first jitted update."""
    if isinstance(value, bool) or isinstance(value, (str, bytes)) or value is None:
        ok = False
    elif isinstance(value, numbers.Number):
        ok = True
    elif callable(value):
        ok = schedule
    else:
        ok = hasattr(value, "dtype") and hasattr(value, "shape")  # NumPy or JAX array (inject_hyperparams)
    if not ok:
        what = "a number or a schedule" if schedule else "a number"
        raise ValueError(f"{owner}: {name} must be {what}, got {value!r}")


def check_adam_betas(owner: str, b1: Any, b2: Any, eps: Any) -> None:
    """Adam's hyperparameters: ``b1`` and ``b2`` in ``[0, 1)``, ``eps >= 0``."""
    check_interval(owner, "b1", b1, 0.0, 1.0, closed_low=True, closed_high=False)
    check_interval(owner, "b2", b2, 0.0, 1.0, closed_low=True, closed_high=False)
    check_nonnegative(owner, "eps", eps)
