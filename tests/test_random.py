"""Noise words: the unrolled Threefry-2x32 against JAX's primitive, and the word-to-variate maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry2x32_p
from scipy import special, stats

from escape import _random

XLA_OPTIMISED = True  # bound by running, not compiling (conftest.py)


def test_unrolled_threefry_is_bit_identical_to_jax():
    rng = np.random.default_rng(0)
    k0, k1, x0, x1 = (jnp.asarray(rng.integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32)) for _ in range(4))
    ours = _random.threefry2x32(k0, k1, x0, x1)
    ref = threefry2x32_p.bind(k0, k1, x0, x1)
    np.testing.assert_array_equal(np.asarray(ours[0]), np.asarray(ref[0]))
    np.testing.assert_array_equal(np.asarray(ours[1]), np.asarray(ref[1]))
    # Random123 known-answer test for Threefry2x32-20: key = ctr = (0, 0)
    z = jnp.zeros((1,), jnp.uint32)
    a, b = _random.threefry2x32(z, z, z, z)
    assert (int(a[0]), int(b[0])) == (0x6B200159, 0x99BA4EFE)


def test_block_words_depend_only_on_key_block_particle():
    key = jax.random.key(3)
    all_p = _random.block_words(key, jnp.int32(5), jnp.arange(100, dtype=jnp.uint32), 4)
    some = _random.block_words(key, jnp.int32(5), jnp.arange(40, 60, dtype=jnp.uint32), 4)
    np.testing.assert_array_equal(np.asarray(all_p[:, 40:60]), np.asarray(some))
    other = _random.block_words(key, jnp.int32(6), jnp.arange(100, dtype=jnp.uint32), 4)
    assert np.mean(np.asarray(all_p) == np.asarray(other)) < 0.01


def test_variates_follow_their_laws():
    words = _random.block_words(jax.random.key(0), jnp.int32(0), jnp.arange(50_000, dtype=jnp.uint32), 2).reshape(-1)
    u = np.asarray(_random.uniform(words))
    assert stats.kstest(u, "uniform").pvalue > 1e-3 and u.min() >= 0 and u.max() < 1
    z = np.asarray(_random.normal(words))
    assert stats.kstest(z, "norm").pvalue > 1e-3 and np.all(np.isfinite(z))
    idx = np.asarray(_random.index(words, 7))
    counts = np.bincount(idx, minlength=7)
    assert idx.min() >= 0 and idx.max() < 7 and stats.chisquare(counts).pvalue > 1e-3


def test_fold_in_matches_jax():
    key = jax.random.key(123)
    for data in (0, 1, 7, 2**31 - 5):
        ref = jax.random.key_data(jax.random.fold_in(key, data))
        np.testing.assert_array_equal(np.asarray(_random.fold_in(jax.random.key_data(key), data)), np.asarray(ref))


@pytest.mark.parametrize("n", [1, 7, 50_000, 1 << 16, (1 << 16) + 1, 3_000_000])
def test_index_is_the_exact_multiply_high(n):
    """index(w, n) = floor(w n / 2^32) (computed in uint64 here) for n <= 2^16; w mod n above."""
    w = np.random.default_rng(n).integers(0, 2**32, 200_000, dtype=np.uint64)
    w[:4] = [0, 1, 2**32 - 1, 2**31]
    got = np.asarray(_random.index(jnp.asarray(w.astype(np.uint32)), n))
    ref = (w * np.uint64(n)) >> np.uint64(32) if n <= 1 << 16 else w % np.uint64(n)
    np.testing.assert_array_equal(got, ref.astype(np.int64))


def test_normal_is_the_inverse_cdf_at_every_input():
    """All 2**23 distinct inputs (the top 23 bits of a word): within 5e-7 relative of scipy's exact ndtri of the
    midpoint uniform, exactly antisymmetric under the complementary word, and finite (|z| <= 5.3)."""
    k = np.arange(1 << 23, dtype=np.uint32)
    words = jnp.asarray(k << np.uint32(9))
    z = np.asarray(jax.jit(_random.normal)(words)).astype(np.float64)
    ref = special.ndtri((k.astype(np.float64) + 0.5) * 2.0**-23)
    rel = np.abs(z - ref) / np.maximum(np.abs(ref), 1e-300)
    assert rel.max() < 5e-7, rel.max()
    np.testing.assert_array_equal(z, -z[::-1])
    assert np.abs(z).max() < 5.3
