"""Expected sharpness: the mean loss increase under Gaussian weight noise."""

from collections.abc import Callable, Iterable

import jax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._hutchinson import _mean_and_stderr
from ._hvp import Estimate, FlatObjective


def expected_sharpness(
    loss_fn: Callable[..., Float[Array, ""]],
    params: PyTree,
    *,
    key: PRNGKeyArray,
    sigma: float,
    num_samples: int = 32,
    antithetic: bool = True,
    batches: Iterable | None = None,
) -> Estimate:
    """``E[L(theta + e)] - L(theta)`` for ``e ~ N(0, sigma^2 I)`` on every parameter, by Monte Carlo.

    For small ``sigma`` it is ``sigma^2 / 2 tr H + O(sigma^4)``, exactly so for a quadratic. With
    ``antithetic=True`` each sample is ``(L(theta + e) + L(theta - e)) / 2 - L(theta)``: the same expectation,
    without the first-order term ``e . grad L`` whose variance dominates away from a minimum (on a quadratic
    the sample is exactly ``e^T H e / 2``).

    Args:
        loss_fn, params, batches: as [`escape.curvature.top_hessian_eigenvalue`][] (the loss, averaged over
            the batches, is evaluated at the same batches with and without noise).
        key: PRNG key; sample ``i`` uses ``jax.random.fold_in(key, i)``.
        sigma: noise standard deviation, ``> 0``, in parameter units (the same for every parameter).
        num_samples: noise draws (pairs when antithetic), ``>= 2``.
        antithetic: use ``e`` and ``-e`` together.

    Returns:
        ``Estimate(value, stderr)`` over the ``num_samples`` draws; ``2 * num_samples + 1`` loss evaluations
        when antithetic, ``num_samples + 1`` otherwise.
    """
    if not sigma > 0:
        raise ValueError(f"expected_sharpness: sigma must be > 0, got {sigma!r}")
    if int(num_samples) != num_samples or num_samples < 2:
        raise ValueError(f"expected_sharpness: num_samples must be an integer >= 2, got {num_samples!r}")
    obj = FlatObjective(loss_fn, params, batches)
    base = obj.loss()
    samples = []
    for i in range(int(num_samples)):
        e = sigma * jax.random.normal(jax.random.fold_in(key, i), (obj.dim,), obj.dtype)
        if antithetic:
            samples.append((obj.loss(obj.flat + e) + obj.loss(obj.flat - e)) / 2 - base)
        else:
            samples.append(obj.loss(obj.flat + e) - base)
    return _mean_and_stderr(jax.device_get(samples))
