"""Full-batch training with the sharpness tracked: raw ``lambda_1(H)``, the top of ``lambda(P^-1 H)``, the line."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jaxtyping import PRNGKeyArray, PyTree

from ..curvature import hessian_eigenpairs


class SharpnessTrajectory(NamedTuple):
    """Measurements along a run, one entry per measured step (NumPy arrays).

    Attributes:
        step: the number of updates done at each measurement.
        loss: the full-batch loss there.
        raw: ``lambda_1(H)``.
        preconditioned: ``(measurements, k)`` top eigenvalues of ``P^-1 H`` (of ``H`` without a preconditioner).
        hvps: Hessian-vector products spent per measurement.
        diverged: the loss became non-finite or grew 1e10-fold (the run stopped there).
        params, opt_state: the final parameters and optimizer state.
    """

    step: np.ndarray
    loss: np.ndarray
    raw: np.ndarray
    preconditioned: np.ndarray
    hvps: np.ndarray
    diverged: bool
    params: PyTree
    opt_state: Any


def train_full_batch(loss_fn, params, optimizer: optax.GradientTransformation, steps: int, opt_state=None):
    """``steps`` full-batch updates (one jitted ``lax.scan``); returns ``(params, opt_state, losses)``."""
    opt_state = optimizer.init(params) if opt_state is None else opt_state
    return _scan(loss_fn, optimizer, int(steps))(params, opt_state)


def _scan(loss_fn, optimizer, steps):
    @jax.jit
    def run(params, opt_state):
        def body(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p)
            u, s = optimizer.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (p, s), losses = jax.lax.scan(body, (params, opt_state), None, length=steps)
        return p, s, losses

    return run


def track_sharpness(
    loss_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    optimizer: optax.GradientTransformation,
    *,
    steps: int,
    every: int,
    key: PRNGKeyArray,
    precondition: Callable[[Any, PyTree], Any] | None = None,
    opt_state=None,
    k: int = 1,
    lanczos_iters: int = 40,
    tol: float = 1e-3,
    on_measure: Callable[[int, float, float, np.ndarray], None] | None = None,
) -> SharpnessTrajectory:
    """Train full batch for ``steps`` updates and measure the curvature every ``every`` updates (and at 0).

    At each measurement the preconditioner is the one the *next* update will use: ``precondition(opt_state,
    grads)`` with the current full-batch gradient (e.g. ``lambda s, g: escape.curvature.preconditioner(s,
    grads=g, b1=0.9, b2=0.99, eps=1e-8)``); ``None`` measures ``H`` itself (gradient descent). Both Lanczos
    runs are warm-started from the previous measurement's eigenvectors.

    Args:
        loss_fn: the full-batch loss of the parameters.
        params, optimizer, opt_state: the start (``opt_state`` defaults to ``optimizer.init(params)``).
        steps, every: updates in all, and between measurements.
        key: PRNG key of the Lanczos start vectors.
        precondition: ``(opt_state, grads) -> P`` (a pytree or an [`escape.curvature.Preconditioner`][]).
        k: eigenvalues of ``P^-1 H`` per measurement.
        lanczos_iters, tol: the most Lanczos steps, and the relative residual to stop at.
        on_measure: called as ``on_measure(step, loss, raw, preconditioned)`` after each measurement.
    """
    if isinstance(every, bool) or int(every) != every or every < 1:
        raise ValueError(f"track_sharpness: every must be a positive integer, got {every!r}")
    opt_state = optimizer.init(params) if opt_state is None else opt_state
    chunk = _scan(loss_fn, optimizer, int(every))
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    rows, warm_raw, warm_pre, diverged = [], None, None, False
    done = 0
    while True:
        loss, grads = value_and_grad(params)
        loss = float(loss)
        if not np.isfinite(loss) or (rows and loss > 1e10 * max(rows[0][1], 1e-30)):
            diverged = True  # non-finite, or ten orders of magnitude above the start: it will overflow
            break
        mkey = jax.random.fold_in(key, done)
        # Without a preconditioner one top-k solve of H gives both the raw sharpness and the top k.
        raw = hessian_eigenpairs(loss_fn, params, k=k if precondition is None else 1, key=mkey,
                                 num_iters=lanczos_iters, tol=tol, init=warm_raw)
        warm_raw, hvps, pre_values = raw.basis, raw.num_matvecs, raw.eigenvalues
        if precondition is not None:
            pre = hessian_eigenpairs(loss_fn, params, k=k, key=jax.random.fold_in(mkey, 1), num_iters=lanczos_iters,
                                     tol=tol, init=warm_pre, preconditioner=precondition(opt_state, grads))
            warm_pre, pre_values, hvps = pre.basis, pre.eigenvalues, hvps + pre.num_matvecs
        rows.append((done, loss, float(raw.eigenvalues[0]), np.asarray(pre_values[:k], np.float64), hvps))
        if on_measure is not None:
            on_measure(done, loss, float(raw.eigenvalues[0]), rows[-1][3])
        if done >= steps:
            break
        params, opt_state, _ = chunk(params, opt_state)
        done += int(every)
    return SharpnessTrajectory(
        step=np.array([r[0] for r in rows], np.int64), loss=np.array([r[1] for r in rows]),
        raw=np.array([r[2] for r in rows]), preconditioned=np.array([r[3] for r in rows]).reshape(len(rows), -1),
        hvps=np.array([r[4] for r in rows], np.int64), diverged=diverged, params=params, opt_state=opt_state,
    )


def edge_summary(ratio: np.ndarray, raw: np.ndarray, entry: float = 0.9, skip: int = 0) -> dict:
    """Where a run enters the edge of stability and how it sits there.

    Args:
        ratio: ``lambda_1(P^-1 H) / threshold`` per measurement.
        raw: ``lambda_1(H)`` per measurement.
        entry: the ratio that counts as having reached the line.
        skip: measurements to leave out at the start (an adaptive method's warm-up, while its second moment
            is still near zero and ``P`` is far smaller than it will be).

    Returns:
        ``reached``, ``entry_index``: the first rise of the ratio to ``entry`` after it has been below it (a
        run that starts above the line and falls, as GD's catapult, enters when it comes back), or the first
        counted measurement if the ratio never falls below ``entry`` (a run started on the line);
        ``ratio_median`` (median over the measurements from entry on), ``raw_sharpness_at_entry``,
        ``raw_sharpness_final``.
    """
    ratio, raw = np.asarray(ratio, np.float64), np.asarray(raw, np.float64)
    index = np.arange(ratio.size)
    below = np.flatnonzero((ratio < entry) & (index >= skip))
    if below.size == 0:  # on the line from the first counted measurement on (a frozen run started there)
        hit = index[index >= skip]
    else:  # the first rise to the line after having been below it (not a start above the line)
        hit = np.flatnonzero((ratio >= entry) & (index > below[0]))
    if hit.size == 0:
        return {"reached": False, "entry_index": -1, "ratio_median": np.nan, "raw_sharpness_at_entry": np.nan,
                "raw_sharpness_final": float(raw[-1]) if raw.size else np.nan}
    i = int(hit[0])
    return {"reached": True, "entry_index": i, "ratio_median": float(np.median(ratio[i:])),
            "raw_sharpness_at_entry": float(raw[i]), "raw_sharpness_final": float(raw[-1])}
