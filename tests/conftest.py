"""Strict test configuration (after diffrax's test/conftest.py).

float32 stays the default; tests that need float64 use ``jax.enable_x64(True)`` locally.
"""

import itertools

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "standard")


@pytest.fixture
def getkey():
    """A fresh, deterministic PRNG key on every call: ``getkey()``."""
    counter = itertools.count()

    def _getkey():
        return jax.random.key(next(counter))

    return _getkey

