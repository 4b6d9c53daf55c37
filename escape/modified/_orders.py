"""Global error of a modified equation against its optimizer over a fixed horizon, and its order in h."""

from typing import Callable

import diffrax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

from ._fields import check_adam_hyperparameters
from ._solve import _iterates, _solve, adam_transform, global_error


def horizon_step_sizes(horizon: float, h_min: float, h_max: float, num: int) -> np.ndarray:
    """``num`` step sizes from about ``h_max`` down to about ``h_min``, each ``horizon / N`` for an integer ``N``."""
    if not h_min > 0 or not h_max >= h_min:
        raise ValueError(f"horizon_step_sizes: need 0 < h_min <= h_max, got h_min={h_min!r}, h_max={h_max!r}")
    if not horizon >= h_max:
        raise ValueError(f"horizon_step_sizes: horizon {horizon!r} is shorter than one step (h_max = {h_max!r})")
    counts = np.unique(np.round(np.geomspace(horizon / h_max, horizon / h_min, int(num))).astype(int))
    return horizon / counts


def global_errors(
    make_equation: Callable[[jnp.ndarray], Callable],
    loss: Callable,
    params: PyTree,
    *,
    learning_rates,
    horizon: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    schedule: np.ndarray | None = None,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    max_steps: int = 4096,
) -> np.ndarray:
    """``max_{n <= T/h} ||theta^(n) - theta~(n h)||`` of Adam (optax) against ``make_equation(h)`` for each ``h``.

    ``make_equation(h)`` builds the ODE for step ``h`` (a JAX scalar: one compilation serves every ``h``; the
    trajectories are padded to the smallest step's length ``T / h_min``). ``loss(params)`` is full batch;
    with ``schedule``, ``loss(params, b)`` is minibatch ``b`` and ``schedule`` (at least ``T / h_min`` long)
    gives each step's minibatch. ``T / h`` must be an integer (see ``horizon_step_sizes``).
    """
    hs = np.asarray(learning_rates, dtype=float).ravel()
    if hs.size == 0 or not np.all(hs > 0):
        raise ValueError("global_errors: learning_rates must be a non-empty list of numbers > 0")
    check_adam_hyperparameters("global_errors", float(hs.min()), b1, b2, eps)
    if not horizon >= hs.max():
        raise ValueError(f"global_errors: horizon {horizon!r} is shorter than one step (learning rate {hs.max()!r})")
    counts = np.round(horizon / hs).astype(int)
    if not np.allclose(counts * hs, horizon, rtol=1e-9, atol=0):
        raise ValueError("global_errors: horizon / learning_rate must be an integer for every learning rate")
    length = int(counts.max())
    if schedule is not None and len(schedule) < length:
        raise ValueError(f"global_errors: schedule has {len(schedule)} entries; the horizon needs {length}")
    sched = jnp.zeros(length, int) if schedule is None else jnp.asarray(schedule)[:length]
    transform = adam_transform(b1, b2, eps)
    out = []
    for h, n in zip(hs, counts):
        hj, nj = jnp.asarray(h), jnp.asarray(n)
        ode = _solve(make_equation(hj), params, hj, length, nj, solver or diffrax.Dopri8(), rtol, atol, max_steps)
        adam = _iterates(loss, params, hj, length, nj, sched, schedule is not None, transform)
        out.append(float(global_error(adam, ode)))
    return np.asarray(out)


def order_slope(learning_rates, errors) -> float:
    """The least-squares slope of ``log(error)`` against ``log(h)``: the observed global order."""
    hs, errs = np.asarray(learning_rates, float), np.asarray(errors, float)
    if hs.size < 2 or not np.all(errs > 0):
        return float("nan")
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])
