"""Hessian-vector products by forward-over-reverse differentiation (``jax.jvp`` of ``jax.grad``).

The Hessian is never formed: one product costs about two gradient evaluations and the memory of one.
"""

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree


class Estimate(NamedTuple):
    """A Monte Carlo estimate: ``value`` and its standard error ``stderr`` (unpacks as a 2-tuple)."""

    value: float
    stderr: float


def hvp(loss_fn: Callable[[PyTree], Float[Array, ""]], params: PyTree, tangent: PyTree) -> PyTree:
    """Hessian-vector product ``H v`` of ``loss_fn`` at ``params``, ``jax.jvp(jax.grad(loss_fn), (params,), (v,))``.

    Args:
        loss_fn: scalar function of a pytree of floating arrays.
        params: where the Hessian is taken.
        tangent: ``v``, a pytree with the structure, shapes and dtypes of ``params``.

    Returns:
        ``H v``, with the structure of ``params``. Jit-able.
    """
    return jax.jvp(jax.grad(loss_fn), (params,), (tangent,))[1]


def _as_sequence(batches):
    if batches is None:
        return None
    seq = batches if isinstance(batches, Sequence) else list(batches)
    if len(seq) == 0:
        raise ValueError("curvature: batches is empty; pass None to call loss_fn(params) without data")
    return seq


@functools.lru_cache(maxsize=64)
def _compiled(loss_fn, structure, shapes, unbatched: bool):
    """The jitted flat loss and HVP of ``loss_fn`` for parameters of this structure, shapes and dtypes.

    Cached on the function and the structure, so that repeated measurements of one loss (every few steps of a
    training run) reuse one compiled product instead of compiling (and keeping) a new one each time.
    """
    like = jax.tree.unflatten(structure, [jnp.zeros(shape, dtype) for shape, dtype in shapes])
    _, unravel = ravel_pytree(like)
    if unbatched:
        f = lambda flat, batch: loss_fn(unravel(flat))
    else:
        f = lambda flat, batch: loss_fn(unravel(flat), batch)
    hvp_fn = lambda flat, v, batch: jax.jvp(jax.grad(lambda q: f(q, batch)), (flat,), (v,))[1]
    return eqx.filter_jit(f), eqx.filter_jit(hvp_fn)


class FlatObjective:
    """A loss, its Hessian-vector product and its parameters as one flat vector (internal helper).

    With ``batches=None`` the objective is ``loss_fn(params)``; otherwise it is the mean over ``batches`` of
    ``loss_fn(params, batch)`` (the full-data loss when the batches have equal size), evaluated one batch at a
    time so that only one batch's activations are alive at once. Products are jitted once per loss function and
    parameter structure (cached across objectives).
    """

    def __init__(self, loss_fn: Callable[..., Any], params: PyTree, batches: Iterable | None = None):
        self.flat, self.unravel = ravel_pytree(params)
        if not jnp.issubdtype(self.flat.dtype, jnp.inexact):
            raise ValueError(f"curvature: params must be floating arrays, got dtype {self.flat.dtype}")
        self.batches = _as_sequence(batches)
        structure = jax.tree.structure(params)
        shapes = tuple((tuple(jnp.shape(x)), jnp.result_type(x).name) for x in jax.tree.leaves(params))
        try:
            self._loss, self._hvp = _compiled(loss_fn, structure, shapes, self.batches is None)
        except TypeError:  # an unhashable loss_fn: compile for this objective only
            self._loss, self._hvp = _compiled.__wrapped__(loss_fn, structure, shapes, self.batches is None)

    @property
    def dim(self) -> int:
        return int(self.flat.size)

    @property
    def dtype(self):
        return self.flat.dtype

    def _mean(self, fn):
        if self.batches is None:
            return fn(None)
        total = None
        for batch in self.batches:
            out = fn(batch)
            total = out if total is None else total + out
        return total / len(self.batches)

    def loss(self, flat: Float[Array, " dim"] | None = None) -> Float[Array, ""]:
        """The objective at ``flat`` (default: at the given parameters)."""
        flat = self.flat if flat is None else flat
        return self._mean(lambda b: self._loss(flat, b))

    def matvec(self, v: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """``H v`` at the given parameters, flat."""
        return self._mean(lambda b: self._hvp(self.flat, v.astype(self.dtype), b))
