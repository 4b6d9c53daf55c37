"""Brownian paths for fixed-step SDE solves: a counter-based path and the choice between diffrax's paths.

:class:`CounterBrownianPath` draws the increment over ``[t0, t1]`` from the same counter-based words as the
discrete engine (``escape._random``): word ``j`` of particle ``p`` over the step that starts at ``t0`` is

    threefry2x32(fold_in(key, bits(t0)), (p, j // 2))[j % 2]

with ``bits(t0)`` the float32 bit pattern of ``t0`` (``escape._random.block_words`` with that block).
One shared ``fold_in`` per step and one (unrolled) threefry call per two normals per particle: cheaper
than ``diffrax.UnsafeBrownianPath`` with one key per particle (two ``fold_in`` and a ``split`` per
particle per step, with JAX's rolled threefry), and the result for a key does not depend on the number
of particles run beside it. Like ``UnsafeBrownianPath`` it is valid only for fixed steps and without
backpropagation: increments over different intervals are independent, so only the solver's own step
intervals may be queried. For the same Brownian path at several step sizes (strong-order tests) use
``brownian="virtual"`` (``diffrax.VirtualBrownianTree``).
"""

from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _random
from .._custom_types import Array, Key, UInt32

BrownianKind = Literal["counter", "unsafe", "virtual"]
BROWNIAN_KINDS: tuple[str, ...] = ("counter", "unsafe", "virtual")


class CounterBrownianPath(diffrax.AbstractBrownianPath):
    """Independent Gaussian increments per solver step from counter-based words (one particle).

    Args:
        shape: the shape and dtype of one increment (``jax.ShapeDtypeStruct``).
        key: the run's PRNG key (shared by all particles).
        particle: this particle's global index (uint32 scalar; vmapped over particles).
        levy_area: ``diffrax.BrownianIncrement`` or ``diffrax.SpaceTimeLevyArea`` (for SRK solvers such as
            ``diffrax.SEA`` and ``diffrax.ShARK``; doubles the words per step).
        normals: optional, this particle's standard normals for the step about to be taken (its column of
            ``step_normals(step_key(key, t0), particles, n_words)``), drawn for all particles at once by the
            caller (``solve_sde`` does: vectorised and materialised once, several times faster than per
            particle inside the solver). The increment is then valid for that step only.
    """

    shape: jax.ShapeDtypeStruct = eqx.field(static=True)
    levy_area: type[diffrax.BrownianIncrement | diffrax.SpaceTimeLevyArea] = eqx.field(static=True)
    key: Key
    particle: UInt32[Array, ""]
    normals: Array | None = None

    @property
    def n_words(self) -> int:
        """Noise words (= normals, rounded up to even) one increment uses."""
        return counter_words(self.shape, self.levy_area)

    def __check_init__(self):
        if self.levy_area not in (diffrax.BrownianIncrement, diffrax.SpaceTimeLevyArea):
            raise ValueError(
                "CounterBrownianPath: levy_area must be diffrax.BrownianIncrement or diffrax.SpaceTimeLevyArea, "
                f"got {self.levy_area!r}"
            )

    @property
    def t0(self):
        return -jnp.inf

    @property
    def t1(self):
        return jnp.inf

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        del left
        if t1 is None:
            raise ValueError("CounterBrownianPath: only increments over a solver step (t0, t1) can be evaluated")
        dtype = self.shape.dtype
        size = int(np.prod(self.shape.shape, dtype=np.int64))
        n_words = self.n_words
        if self.normals is None:
            z = step_normals(step_key(self.key, t0), self.particle[None], n_words)[:, 0].astype(dtype)
        else:
            z = self.normals.astype(dtype)
        h = jnp.asarray(t1 - t0, dtype)
        w = z[:size].reshape(self.shape.shape) * jnp.sqrt(h)
        if not use_levy:
            return w
        if self.levy_area is diffrax.BrownianIncrement:
            return diffrax.BrownianIncrement(dt=h, W=w)
        hh = z[size : 2 * size].reshape(self.shape.shape) * jnp.sqrt(h / 12)
        return diffrax.SpaceTimeLevyArea(dt=h, W=w, H=hh)


def counter_words(shape: jax.ShapeDtypeStruct, levy_area: type) -> int:
    """Noise words (= normals, rounded up to even) one counter increment of ``shape`` uses."""
    size = int(np.prod(shape.shape, dtype=np.int64))
    n = 2 * size if levy_area is diffrax.SpaceTimeLevyArea else size
    return n + (n % 2)


def step_key(key: Key, t0) -> UInt32[Array, "2"]:
    """The block key of the solver step starting at ``t0``: ``fold_in(key_data(key), bits(float32(t0)))``."""
    block = jax.lax.bitcast_convert_type(jnp.asarray(t0, jnp.float32), jnp.uint32)
    return _random.fold_in(jax.random.key_data(key), block)


def step_normals(kb: UInt32[Array, "2"], particle: UInt32[Array, " particles"], n_words: int) -> Array:
    """Standard normals of a solver step (block key ``kb = step_key(key, t0)``) for each particle, laid out
    particles-last: ``(n_words, particles)``.

    The words are materialised before the inverse-erf (``optimization_barrier``): fused into their
    consumers, XLA's loop emitter re-evaluates the 20-round hash for every element that uses a word. The
    inverse-erf runs with particles on the minor axis: on CPU it vectorises there, and is ~7x slower with
    a minor axis of ``n_words`` (its result must then be materialised in this layout, e.g. as a loop carry,
    as ``solve_sde`` does, or XLA fuses it into the consumer's loop order).
    """
    words = jax.lax.optimization_barrier(_random.block_key_words(kb, particle, n_words))
    return _random.normal(words)


class BrownianSpec(eqx.Module):
    """How to build each particle's Brownian path: ``spec(particle) -> AbstractBrownianPath``.

    ``kind="counter"``: :class:`CounterBrownianPath`. ``"unsafe"``: ``diffrax.UnsafeBrownianPath`` with key
    ``fold_in(key, particle)``. ``"virtual"``: ``diffrax.VirtualBrownianTree`` on ``[0, t1]`` with tolerance
    ``tol`` and key ``fold_in(key, particle)`` (the same path whatever the step size, as long as ``t1``,
    ``tol`` and ``key`` are the same).
    """

    kind: str = eqx.field(static=True)
    shape: jax.ShapeDtypeStruct = eqx.field(static=True)
    levy_area: type = eqx.field(static=True)
    key: Key
    t1: float = eqx.field(static=True)
    tol: float = eqx.field(static=True)

    def __call__(self, particle: UInt32[Array, ""], normals: Array | None = None) -> diffrax.AbstractBrownianPath:
        if self.kind == "counter":
            return CounterBrownianPath(self.shape, self.levy_area, self.key, particle, normals)
        key = jax.random.fold_in(self.key, particle)
        if self.kind == "unsafe":
            return diffrax.UnsafeBrownianPath(self.shape, key, levy_area=self.levy_area)
        return diffrax.VirtualBrownianTree(0.0, self.t1, self.tol, self.shape, key, levy_area=self.levy_area)
