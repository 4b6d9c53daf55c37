"""Modified equations solved with diffrax at the step times, beside the discrete optimizer they model (optax)."""

from typing import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PyTree

from .._checks import check_integer
from ..optim._validate import check_positive
from ._fields import check_adam_hyperparameters


def _check_steps(owner: str, step_size, steps) -> None:
    check_positive(owner, "step_size", step_size)
    check_integer(owner, "steps", steps, 1)  # a horizon of at least one step


def solve_modified(
    equation: Callable[[Array, PyTree], PyTree],
    params: PyTree,
    *,
    step_size: float,
    steps: int,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    max_steps: int = 4096,
    throw: bool = True,
) -> PyTree:
    """Solve the piecewise ODE ``theta' = equation(n, theta)`` on ``[n h, (n + 1) h]``, ``n = 0 .. steps - 1``.

    One ``diffrax.diffeqsolve`` per piece inside a ``lax.scan`` (a piece's field is smooth; the bias
    correction and the minibatch change only between pieces), saved at the step times ``n h``.
    ``solver`` defaults to ``diffrax.Dopri8()`` with a PID controller at ``rtol`` / ``atol``: run under x64
    (``jax.enable_x64``) for tolerances below float32's resolution. ``throw=False``: a piece that fails (say
    where the first-order field blows up, near minima at small eps) leaves NaN from there on instead of raising.

    Returns:
        The trajectory: ``params``' pytree with a leading axis of ``steps + 1`` (the start first).
    """
    _check_steps("solve_modified", step_size, steps)
    return _solve(equation, params, jnp.asarray(step_size), int(steps), jnp.asarray(steps), solver or diffrax.Dopri8(),
                  rtol, atol, max_steps, throw)


@eqx.filter_jit
def _solve(equation, params, h, length, active, solver, rtol, atol, max_steps, throw=True):
    """Pieces ``n < active`` solved, the rest of the ``length`` held at the end (one compilation per length)."""
    term = diffrax.ODETerm(lambda t, y, n: equation(n, y))
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    end = active * h

    def piece(theta, n):
        alive = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(y)) for y in jax.tree.leaves(theta)]))
        t0 = jnp.minimum(n * h, end)
        t1 = jnp.where(alive, jnp.minimum((n + 1) * h, end), t0)  # a failed piece (throw=False) ends the solve
        sol = diffrax.diffeqsolve(term, solver, t0, t1, h, theta, args=n, saveat=diffrax.SaveAt(t1=True),
                                  stepsize_controller=controller, max_steps=max_steps, throw=throw)
        ok = sol.result == diffrax.RESULTS.successful
        out = jax.tree.map(lambda y: jnp.where(ok, y[-1], jnp.nan), sol.ys)
        return out, out

    _, ys = jax.lax.scan(piece, params, jnp.arange(length))
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), params, ys)


def adam_transform(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam with eps inside the square root (the modified equations' Adam): ``optax.scale_by_adam(eps=0, eps_root=eps)``."""
    return optax.scale_by_adam(b1=b1, b2=b2, eps=0.0, eps_root=eps)


def adam_iterates(
    loss: Callable[..., Array],
    params: PyTree,
    *,
    learning_rate: float,
    steps: int,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    schedule: Array | None = None,
) -> PyTree:
    """Adam's iterates ``theta^(0) .. theta^(steps)`` (optax, eps inside the root; ``b1 = 0``: RMSProp).

    Full batch: ``loss(params)``. Mini-batch: ``loss(params, b)`` with ``schedule[k]`` the minibatch of step
    ``k`` (as [`escape.modified.MinibatchAdamEquation`][]). Returns ``params``' pytree with a leading axis of
    ``steps + 1``.
    """
    check_adam_hyperparameters("adam_iterates", learning_rate, b1, b2, eps)
    _check_steps("adam_iterates", learning_rate, steps)
    if schedule is not None and len(schedule) < steps:
        raise ValueError(f"adam_iterates: schedule has {len(schedule)} entries for {steps} steps")
    sched = jnp.zeros(steps, int) if schedule is None else jnp.asarray(schedule)[:steps]
    return _iterates(loss, params, jnp.asarray(learning_rate), int(steps), jnp.asarray(steps), sched, schedule is not None,
                     adam_transform(b1, b2, eps))


@eqx.filter_jit
def _iterates(loss, params, h, length, active, schedule, minibatch, transform):
    opt = optax.chain(transform, optax.scale_by_learning_rate(h))

    def body(carry, k):
        p, s = carry
        g = jax.grad(loss)(p, schedule[k]) if minibatch else jax.grad(loss)(p)
        u, s2 = opt.update(g, s, p)
        live = k < active
        p2 = jax.tree.map(lambda a, b: jnp.where(live, a, b), optax.apply_updates(p, u), p)
        s2 = jax.tree.map(lambda a, b: jnp.where(live, a, b), s2, s)
        return (p2, s2), p2

    _, ps = jax.lax.scan(body, (params, opt.init(params)), jnp.arange(length))
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), params, ps)


def global_error(discrete: PyTree, continuous: PyTree) -> Array:
    """``max_n ||theta^(n) - theta~(n h)||`` (Euclidean over all leaves) of two trajectories on the same steps."""
    sq = sum(jnp.sum(jnp.square(a - b).reshape(a.shape[0], -1), axis=1)
             for a, b in zip(jax.tree.leaves(discrete), jax.tree.leaves(continuous)))
    return jnp.sqrt(jnp.max(sq))
