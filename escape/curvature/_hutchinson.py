"""Hessian trace by Hutchinson's estimator with Rademacher probes."""

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._hvp import Estimate, FlatObjective


def _mean_and_stderr(samples) -> Estimate:
    x = np.asarray(samples, np.float64)
    stderr = x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else float("inf")
    return Estimate(float(x.mean()), float(stderr))


def hessian_trace(
    loss_fn: Callable[..., Float[Array, ""]],
    params: PyTree,
    *,
    key: PRNGKeyArray,
    num_samples: int = 100,
    batches: Iterable | None = None,
) -> Estimate:
    """Hutchinson's estimate of ``tr H``: the mean of ``z^T H z`` over Rademacher probes ``z`` (entries ±1).

    Each sample is unbiased, ``E[z^T H z] = tr H``, with variance ``2 sum_{i != j} H_ij^2`` (the diagonal
    contributes none, the reason for Rademacher rather than Gaussian probes). ``num_samples`` products.

    Args:
        loss_fn, params, batches: as [`escape.curvature.top_hessian_eigenvalue`][].
        key: PRNG key; probe ``i`` uses ``jax.random.fold_in(key, i)``.
        num_samples: number of probes, ``>= 2`` for a standard error.

    Returns:
        ``Estimate(value, stderr)``, the standard error being the sample standard deviation over
        ``sqrt(num_samples)``.
    """
    if int(num_samples) != num_samples or num_samples < 2:
        raise ValueError(f"hessian_trace: num_samples must be an integer >= 2, got {num_samples!r}")
    obj = FlatObjective(loss_fn, params, batches)
    samples = []
    for i in range(int(num_samples)):
        z = jax.random.rademacher(jax.random.fold_in(key, i), (obj.dim,), obj.dtype)
        samples.append(jnp.vdot(z, obj.matvec(z)))
    return _mean_and_stderr(jax.device_get(samples))
