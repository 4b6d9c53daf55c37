"""Strict test configuration (after diffrax's test/conftest.py).

float32 stays the default; tests that need float64 use ``jax.enable_x64(True)`` locally.
"""

import atexit
import itertools
import os
import shutil
import tempfile

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "standard")

# Most of the suite's time is XLA compiling programs that then run for milliseconds (on one test file, 613
# compilations, 573 of them eager operations of under 0.1 s each). XLA's optimisation level 0
# (jax_disable_most_optimizations) compiles them about 30 % faster: the whole suite took 6 min 41 s against 7 min
# 49 s, every test passing either way. Modules whose tests are bound by running, not compiling, set
# ``XLA_OPTIMISED = True`` and keep the optimised build (the `_xla_level` fixture below); so do the processes the
# tests start, unless their test asks otherwise. JAX_DISABLE_MOST_OPTIMIZATIONS=0 turns it off for a whole run.
_UNOPTIMISED = os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS", "1") not in ("0", "false", "False")
jax.config.update("jax_disable_most_optimizations", _UNOPTIMISED)


@pytest.fixture(autouse=True)
def _xla_level(request):
    """The optimised XLA build for the tests of a module with ``XLA_OPTIMISED = True``."""
    if _UNOPTIMISED and getattr(request.module, "XLA_OPTIMISED", False):
        jax.config.update("jax_disable_most_optimizations", False)
        yield
        jax.config.update("jax_disable_most_optimizations", True)
    else:
        yield


# The processes that tests start (CLI and experiment runs, several of them the same run) share one persistent
# compilation cache: every shard's (tests/_parallel.py passes ESCAPE_TEST_COMPILATION_CACHE), else this session's.
# Set after `import jax`, so the test processes themselves compile in memory only (a cache there cost more than it
# saved: their programs rarely repeat).
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _cache = os.environ.get("ESCAPE_TEST_COMPILATION_CACHE")
    if not _cache:
        _cache = tempfile.mkdtemp(prefix="escape-test-jax-cache-")
        atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


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


# ------------------------------------------------------------------------------ recorded seconds per file

_FILE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    name = report.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    _FILE_SECONDS[name] = _FILE_SECONDS.get(name, 0.0) + report.duration


def pytest_sessionfinish(session):
    """With ``ESCAPE_TEST_DURATIONS=DIR`` (``TEST_DURATIONS=1 make test``), this process's seconds per test file
    (setup, call and teardown) go to ``DIR/<pid>.json``; tests/_parallel.py merges them into _durations.json."""
    import json
    from pathlib import Path

    where = os.environ.get("ESCAPE_TEST_DURATIONS")
    if where and _FILE_SECONDS:
        Path(where).mkdir(parents=True, exist_ok=True)
        (Path(where) / f"{os.getpid()}.json").write_text(json.dumps(_FILE_SECONDS))
