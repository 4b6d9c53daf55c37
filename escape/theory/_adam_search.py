"""Adversarial search over gradient histories for Adam's largest step and longest flat crossing.

Gradient ascent (optax's Adam on the history itself) from many starts at once (``vmap``): random histories of
several kinds and structured ones (constant, a last-step spike, geometric decays, the Cauchy-Schwarz maximiser),
each kept at unit maximum so that ``eps`` stays as small against the gradients as in training. Two objectives:
``"plain"`` is Prop. 1's quantity (no bias correction, ``eps = 0``); ``"optax"`` runs ``optax.scale_by_adam``
as it is (bias correction, ``eps``) over the history and, for the flat crossing, on through ``flat_steps``
zero gradients, summing its updates from the history's last step on.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._adam_bounds import _check, adam_flat_bound, adam_step_bound, adam_step_maximiser

VARIANTS = ("plain", "optax")
QUANTITIES = ("step", "flat")


class SearchResult(NamedTuple):
    """The search's outcome: ``best`` (largest value found, ``eta = 1``), ``bound``, ``ratio = best / bound``,
    ``best_random`` (the best from the random starts alone), ``history`` (the maximising history, oldest first)
    and ``values`` (per start)."""

    best: float
    bound: float
    ratio: float
    best_random: float
    history: np.ndarray
    values: np.ndarray


def _plain(g, b1, b2):
    lag = jnp.arange(g.shape[-1] - 1, -1, -1, dtype=g.dtype)
    return jnp.sum((1 - b1) * b1**lag * g) / jnp.sqrt(jnp.sum((1 - b2) * b2**lag * jnp.square(g)))


def _optax_value(g, b1, b2, eps, flat_steps):
    adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)

    def step(state, gi):
        u, state = adam.update(gi[None], state)
        return state, u[0]

    state, updates = jax.lax.scan(step, adam.init(jnp.zeros(1, g.dtype)), g)
    if flat_steps == 0:
        return updates[-1]
    _, drift = jax.lax.scan(step, state, jnp.zeros(flat_steps, g.dtype))
    return updates[-1] + jnp.sum(drift)


def _starts(b1, b2, length, n_random, key):
    s = [np.ones(length), np.eye(1, length, length - 1)[0] + 1e-3, adam_step_maximiser(b1, b2, length)]
    for r in (0.5, 0.8, 0.95, 0.99):
        s.append(r ** np.arange(length - 1, -1, -1.0))
    structured = jnp.asarray(np.stack(s) + 1e-6)  # no exact zeros: sqrt(v) has no derivative at v = 0
    k1, k2, k3 = jax.random.split(key, 3)
    counts = [n_random // 3 + (i < n_random % 3) for i in range(3)]  # n_random in all, as even as can be
    random = [jnp.abs(jax.random.normal(k1, (counts[0], length))), jax.random.uniform(k2, (counts[1], length)),
              jax.random.normal(k3, (counts[2], length))]
    return jnp.concatenate([structured, *random]), structured.shape[0]


def search_adam_bound(b1: float = 0.9, b2: float = 0.999, *, quantity: str = "step", variant: str = "optax",
                      length: int = 5000, flat_steps: int = 400, eps: float = 1e-8, n_random: int = 24,
                      iterations: int = 300, learning_rate: float = 0.01, seed: int = 0) -> SearchResult:
    """The largest step (``quantity="step"``) or flat crossing (``"flat"``) of Adam over gradient histories of
    ``length`` steps, against [`escape.theory.adam_step_bound`][] / [`escape.theory.adam_flat_bound`][]
    (``eta = 1``). With bias correction (``variant="optax"``) a step after ``t`` gradients carries the factor
    ``sqrt(1 - b2^t) / (1 - b1^t)``: ``length`` must be long enough for it to approach 1 (``b2^length``
    small) if the search is to approach the bound.
    """
    b1, b2 = _check("search_adam_bound", b1, b2)
    if quantity not in QUANTITIES:
        raise ValueError(f"search_adam_bound: quantity must be one of {QUANTITIES}, got {quantity!r}")
    if variant not in VARIANTS:
        raise ValueError(f"search_adam_bound: variant must be one of {VARIANTS}, got {variant!r}")
    if length < 2 or iterations < 1 or n_random < 1 or flat_steps < 1:
        raise ValueError("search_adam_bound: length >= 2, iterations, n_random and flat_steps >= 1 are needed")
    flat = quantity == "flat"
    if variant == "plain":
        factor = np.sqrt(b2) / (np.sqrt(b2) - b1) if flat else 1.0  # the crossing is the step times the sum

        def value(g):
            return factor * _plain(g, b1, b2)
    else:
        def value(g):
            return _optax_value(g, b1, b2, eps, flat_steps if flat else 0)

    starts, n_structured = _starts(b1, b2, length, n_random, jax.random.key(seed))
    values, histories = _ascend(value, starts, iterations, learning_rate)
    best = int(np.argmax(values))
    bound = adam_flat_bound(b1, b2) if flat else adam_step_bound(b1, b2)
    return SearchResult(float(values[best]), float(bound), float(values[best] / bound),
                        float(values[n_structured:].max()), histories[best], values)


def _ascend(value, starts, iterations, learning_rate):
    """Gradient ascent of ``value`` from every start (vmapped), histories rescaled to unit maximum each step;
    returns each start's best value (-inf if none was finite) and the history that gave it."""
    opt = optax.adam(learning_rate)

    def normalise(g):
        return g / jnp.max(jnp.abs(g))

    @jax.jit
    def run(g0):
        def body(carry, _):
            g, s, best, arg = carry
            v, grad = jax.value_and_grad(value)(g)
            better = jnp.isfinite(v) & (v > best)
            best, arg = jnp.where(better, v, best), jnp.where(better, g, arg)
            u, s = opt.update(-grad, s, g)
            return (normalise(optax.apply_updates(g, u)), s, best, arg), None

        g0 = normalise(g0)
        (g, _, best, arg), _ = jax.lax.scan(body, (g0, opt.init(g0), -jnp.inf, g0), None, length=iterations)
        v = value(g)
        keep = jnp.isfinite(v) & (v > best)  # a NaN at the end must not discard the best value found
        return jnp.where(keep, v, best), jnp.where(keep, g, arg)

    best, arg = jax.vmap(run)(starts)
    best = np.asarray(best)
    return np.where(np.isfinite(best), best, -np.inf), np.asarray(arg)
