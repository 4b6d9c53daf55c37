"""Runs over several processes with JAX's own distributed runtime (``jax.distributed``).

Every process runs the same program; arrays are global (sharded over every device of every process) and
each process holds its own devices' shards. The three pieces the rest of the package needs live here:

* :func:`initialize`: start the runtime (gloo collectives on CPU), from explicit flags or a cluster manager
  JAX detects (SLURM, Open MPI).
* :func:`put` and :func:`fetch`: a host array onto a sharding that may span other processes' devices, and a
  global array back to the host of every process (an all-gather where it is not all addressable here).
* :func:`is_writer`: process 0 writes results, checkpoints and figures; the others compute with it.

In one process these are ``jax.device_put``, ``np.asarray`` and ``True``.
"""

import os

import jax
import numpy as np

_CLUSTER_SIZES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def cluster_detected() -> bool:
    """Whether this process was started by a cluster manager with more than one task (SLURM, Open MPI, PMI)."""
    for name in _CLUSTER_SIZES:
        try:
            if int(os.environ.get(name, "1")) > 1:
                return True
        except ValueError:
            continue
    return False


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, owner: str = "initialize") -> bool:
    """Start JAX's distributed runtime for a multi-process run; returns whether one was started.

    Args:
        coordinator: ``HOST:PORT`` of process 0's coordinator service (every process passes the same).
        num_processes: the number of processes (>= 1).
        process_id: this process's index in ``[0, num_processes)``.
        owner: the name in error messages.

    With all three None: started under a cluster manager that JAX detects (:func:`cluster_detected`), and a
    no-op otherwise. On CPU the collectives are gloo's. Call it before the first JAX operation.

    Raises:
        ValueError: some of the three given and not the others, or out of range.
    """
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError(f"{owner}: give --coordinator, --num-processes and --process-id together (or none of them "
                         "under SLURM or Open MPI)")
    if not any(given) and not cluster_detected():
        return False
    if all(given):
        if not isinstance(coordinator, str) or ":" not in coordinator:
            raise ValueError(f"{owner}: --coordinator must be HOST:PORT, got {coordinator!r}")
        if not isinstance(num_processes, int) or num_processes < 1:
            raise ValueError(f"{owner}: --num-processes must be an integer >= 1, got {num_processes!r}")
        if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
            raise ValueError(f"{owner}: --process-id must be in [0, {num_processes}), got {process_id!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return True


def is_writer() -> bool:
    """Whether this process writes the run's files (process 0; always in a single-process run)."""
    return jax.process_index() == 0


def _spans_processes(sharding) -> bool:
    return len(sharding.device_set) > len(sharding.addressable_devices)


def put(tree, sharding):
    """``jax.device_put`` of the arrays of ``tree`` (``sharding``: one, or a pytree of them like ``tree``), where
    every process holds the same host values: onto devices of other processes each process places only its
    own shards. Typed PRNG keys travel as their raw words. Leaves that are not arrays (a module's Python numbers, static in its jitted functions) are
    left as they are."""
    if isinstance(sharding, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda a: sharding, tree)
    else:
        shardings = sharding

    def one(a, s):
        if not isinstance(a, (jax.Array, np.ndarray)):
            return a
        if not _spans_processes(s):
            return jax.device_put(a, s)
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):  # a typed key: its raw words, wrapped again
            impl = jax.random.key_impl(a)
            return jax.random.wrap_key_data(one(jax.random.key_data(a), s), impl=impl)
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, s, lambda index: host[index])

    return jax.tree.map(one, tree, shardings)


def fetch(array) -> np.ndarray:
    """A global array as a NumPy array on every process (an all-gather where other processes hold shards)."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable and not array.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(array)


def broadcast(value: np.ndarray) -> np.ndarray:
    """Process 0's ``value`` on every process (itself in a single-process run)."""
    if jax.process_count() == 1:
        return np.asarray(value)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value)))
