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



# ------------------------------------------------------------------------------------------ parallel shards


def pytest_addoption(parser):
    parser.addoption("--shard", default=None, metavar="I/N",
                     help="run shard I (0-based) of N: whole test files, balanced by tests/_durations.json "
                          "(what tests/_parallel.py, hence `make test`, runs one per core)")


def _shard_of_files(files: list[str], n: int) -> dict[str, int]:
    """Whole files to ``n`` shards, longest first onto the lightest shard (weights: the recorded seconds per file,
    10 s for a file not recorded), deterministically."""
    import json
    from pathlib import Path

    weights = json.loads((Path(__file__).parent / "_durations.json").read_text())
    load, out = [0.0] * n, {}
    for name in sorted(files, key=lambda f: (-weights.get(f, 10.0), f)):
        i = min(range(n), key=lambda k: (load[k], k))
        out[name] = i
        load[i] += weights.get(name, 10.0)
    return out


def pytest_collection_modifyitems(config, items):
    spec = config.getoption("--shard")
    if not spec:
        return
    try:
        index, count = (int(x) for x in spec.split("/"))
        assert 0 <= index < count
    except (ValueError, AssertionError):
        raise pytest.UsageError(f"--shard must be I/N with 0 <= I < N, got {spec!r}") from None
    shard = _shard_of_files(sorted({item.path.name for item in items}), count)
    keep = [item for item in items if shard[item.path.name] == index]
    dropped = [item for item in items if shard[item.path.name] != index]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
