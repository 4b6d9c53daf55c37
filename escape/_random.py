"""Counter-based noise words for the Monte-Carlo engine.

Every random number the engine uses is a 32-bit word

    word(p, b, j) = threefry2x32(fold_in(key, b), (p, j // 2))[j % 2]

for particle ``p``, noise block ``b`` and word index ``j``. The word depends only on (key, p, b, j):
not on how many particles run, how the steps are chunked, or how particles are spread over devices.
This is the same construction as ``jax.random.bits`` in partitionable mode, written out so that the
engine can (i) use both output words of every threefry call and (ii) compute the particle counter
from the device's shard index without materialising per-particle keys.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry2x32_p

from ._custom_types import Array, Float, Int, Key, UInt32


def block_words(
    key: Key, block: Int[Array, ""], particle: UInt32[Array, " particles"], n_words: int
) -> UInt32[Array, "particles {n_words}"]:
    """The ``n_words`` (even) noise words of ``block`` for each particle index in ``particle``."""
    if n_words % 2:
        raise ValueError(f"block_words: n_words must be even, got {n_words}")
    kb = jax.random.key_data(jax.random.fold_in(key, block))
    k0 = jnp.broadcast_to(kb[0], particle.shape)
    k1 = jnp.broadcast_to(kb[1], particle.shape)
    halves = []
    for j in range(n_words // 2):
        a, b = threefry2x32_p.bind(k0, k1, particle, jnp.full_like(particle, j))
        halves += [a, b]
    return jnp.stack(halves, axis=-1)


def uniform(words: UInt32[Array, "..."]) -> Float[Array, "..."]:
    """Uniform on [0, 1) from the top 23 bits of each word (float32 mantissa trick)."""
    bits = (words >> 9) | jnp.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(bits, jnp.float32) - 1.0


def normal(words: UInt32[Array, "..."]) -> Float[Array, "..."]:
    """Standard normals, one per word, by inverse-erf as in ``jax.random.normal``."""
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    u = 2.0 * uniform(words) - 1.0
    u = jnp.maximum(u, lo)
    return jnp.sqrt(2.0).astype(jnp.float32) * jax.lax.erf_inv(u)


def index(words: UInt32[Array, "..."], n: int) -> Int[Array, "..."]:
    """Indices in [0, n) by ``word mod n`` (relative bias at most n / 2**32)."""
    return (words % jnp.uint32(n)).astype(jnp.int32)
