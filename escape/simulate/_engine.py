"""The Monte-Carlo engine: first-passage times of optimizer particles out of a valley.

Particles are vmapped, steps are a ``lax.scan`` inside a jitted chunk, and chunks repeat until every
particle has escaped or diverged, or ``max_steps`` is reached. Particles are sharded over devices
with ``jax.shard_map``; noise comes from counter-based words (``escape._random``) so the result for a
given key does not depend on the chunk size, the number of devices, or the number of particles run
beside it.
"""

import collections
import functools
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from .. import _distributed, _random
from .._checks import check_integer
from .._custom_types import Array, Bool, Float, Int, Key, Points
from ..landscapes import AbstractLandscape

_AXIS = "particles"


def passage_masks(first_passage, first_divergence):
    """(escaped, diverged, censored) masks from first-passage and first-divergence steps (-1: never).

    A particle escaped if it crossed before (or without) diverging; it diverged if its state became
    non-finite before any escape; otherwise it is censored at the horizon.
    """
    fp, fd = first_passage, first_divergence
    escaped = (fp >= 0) & ((fd < 0) | (fd > fp))
    diverged = (fd >= 0) & ~escaped
    return escaped, diverged, ~escaped & ~diverged


class EscapeResult(eqx.Module):
    """Raw result of :func:`escape_times`, one entry per particle.

    Attributes:
        saved_steps: the steps at which positions were saved (``save_steps`` of the call; empty if none).
        positions: positions after each saved step, ``(saves, particles, dim)`` (None if nothing was saved).
        states: the optimizer states after each saved step (``save_state=True``): the optimizer's state
            pytree with leading axes ``(saves, particles)``; None otherwise.
        first_passage: number of optimizer steps taken when the escape test first held (-1: never).
        first_divergence: steps taken when a coordinate first became NaN/inf (-1: never).
        escaped: ``first_passage >= 0`` and the particle had not diverged before.
        diverged: ``first_divergence >= 0`` before any escape.
        steps_run: steps run (``max_steps`` unless every particle finished earlier); censored particles
            were observed for this many steps.
        max_steps: the horizon asked for.
        final: positions at the end of the run.
    """

    first_passage: Int[Array, " particles"]
    first_divergence: Int[Array, " particles"]
    steps_run: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    final: Points
    saved_steps: tuple[int, ...] = eqx.field(static=True, default=())
    positions: Array | None = None
    states: optax.OptState | None = None

    @property
    def escaped(self) -> Bool[Array, " particles"]:
        return passage_masks(self.first_passage, self.first_divergence)[0]

    @property
    def diverged(self) -> Bool[Array, " particles"]:
        return passage_masks(self.first_passage, self.first_divergence)[1]

    @property
    def censored(self) -> Bool[Array, " particles"]:
        return passage_masks(self.first_passage, self.first_divergence)[2]

    @property
    def n_particles(self) -> int:
        return int(self.first_passage.shape[0])

    def summary(self) -> dict:
        """Counts and the mean escape step over escaped particles (NumPy scalars)."""
        esc = np.asarray(self.escaped)
        fp = np.asarray(self.first_passage)
        return {
            "particles": self.n_particles,
            "escapes": int(esc.sum()),
            "censored": int(np.asarray(self.censored).sum()),
            "diverged": int(np.asarray(self.diverged).sum()),
            "mean_escape_step": float(fp[esc].mean()) if esc.any() else float("nan"),
            "steps_run": self.steps_run,
        }


class _State(eqx.Module):
    theta: Float[Array, "dim particles"]  # particles last (see _make_chunk)
    opt_state: optax.OptState  # every leaf has the particle axis last
    first_passage: Int[Array, " particles"]
    first_divergence: Int[Array, " particles"]


@functools.lru_cache(maxsize=32)
def _make_chunk(optimizer, batch_size: int, n_words: int, unroll: int, n_blocks: int, masked: bool = False,
                record: bool = False):
    """A jitted function advancing the state by ``n_blocks * unroll`` steps (``record``: and returning the
    positions after every one of them, ``(n_blocks * unroll, dim, particles)``, for dense saves).

    Inputs arrive sharded over the particle axis; every operation is per particle (the data set is
    replicated), so the partitioner keeps each device on its own particles with no communication but
    the final ``all done`` reduction. Cached: runs with the same optimizer object and noise layout reuse
    the compiled chunk (the landscape's arrays, e.g. its sharpness, are arguments, not constants).

    Layout: particles are the *last* axis of every state array (``theta`` is ``(dim, particles)``), so
    elementwise updates and the per-particle reductions over coordinates (escape and divergence tests)
    run along contiguous, vectorisable rows; particle-major storage made each step ~1.3x slower on CPU.
    The noise words are materialised once per block (``optimization_barrier``), particles last like the state:
    fused into a data-row gather, XLA's loop emitter re-evaluated the 20-round hash for every gathered
    coordinate (the fixed-set step 1.6x slower); the fresh-sample step runs as fast either way.
    """

    @eqx.filter_jit
    def chunk(state: _State, pid, landscape, key, t0, max_steps):
        """Steps ``t0 .. t0 + n_blocks * unroll``; masked: only the steps in ``[t0, max_steps)`` act."""
        grad_fn = jax.vmap(landscape.stochastic_gradient, in_axes=(-1, -1, None), out_axes=-1)
        update_fn = jax.vmap(optimizer.update, in_axes=-1, out_axes=-1)
        escaped_fn = jax.vmap(landscape.escaped, in_axes=-1)
        n_local = pid.shape[0]

        def body(carry: _State, block):
            theta, opt_state, fp, fd = carry.theta, carry.opt_state, carry.first_passage, carry.first_divergence
            if n_words:
                words = _random.block_words(key, block, pid, n_words * unroll)
                words = jax.lax.optimization_barrier(words)
            else:
                words = jnp.zeros((0, n_local), jnp.uint32)
            seen = []
            for u in range(unroll):
                t = block * unroll + u
                g = grad_fn(theta, words[u * n_words : (u + 1) * n_words], batch_size)
                updates, new_state = update_fn(g, opt_state, theta)
                live = (t < max_steps) & (t >= t0) if masked else t < max_steps
                new = optax.apply_updates(theta, updates)
                # Only a chunk that crosses the horizon or a save step (or starts between blocks) is masked (a
                # select costs ~40% of a step on CPU): the state is then exactly the one after max_steps.
                if masked:
                    theta = jnp.where(live, new, theta)
                    opt_state = jax.tree.map(lambda a, b: jnp.where(live, a, b), new_state, opt_state)
                else:
                    theta, opt_state = new, new_state
                bad = live & (fd < 0) & ~jnp.all(jnp.isfinite(theta), axis=0)
                fd = jnp.where(bad, t + 1, fd)
                hit = live & (fp < 0) & (fd < 0) & escaped_fn(theta)
                fp = jnp.where(hit, t + 1, fp)
                seen.append(theta)
            return _State(theta, opt_state, fp, fd), (jnp.stack(seen) if record else None)

        blocks = t0 // unroll + jnp.arange(n_blocks, dtype=t0.dtype)
        state, seen = jax.lax.scan(body, state, blocks)
        done = jnp.all((state.first_passage >= 0) | (state.first_divergence >= 0))
        if record:
            return state, done, seen.reshape(-1, *seen.shape[2:])
        return state, done

    return chunk


def escape_times(
    landscape: AbstractLandscape,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    n_particles: int,
    max_steps: int,
    key: Key,
    chunk_size: int = 1024,
    init: Array | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = False,
    save_steps: Sequence[int] | None = None,
    save_state: bool = False,
) -> EscapeResult:
    """Run ``n_particles`` independent optimizers on ``landscape`` and record first-passage steps.

    Each particle starts at ``init`` (default ``landscape.initial_point()``), draws one minibatch
    gradient per step from the landscape's noise model, applies ``optimizer`` (any optax
    GradientTransformation; its state is per particle), and is checked for escape and divergence after
    every step.

    Args:
        landscape: the loss landscape with its noise model.
        optimizer: an optax GradientTransformation (see ``escape.optim.make_optimizer``). The compiled steps
            are cached per optimizer *object* (an optax transformation is a pair of closures, equal only to
            itself): build your own optax object once and pass the same one to every call (a fresh
            ``optax.sgd(lr)`` inside a loop over seeds compiles again each time, 1-3 s). ``make_optimizer``
            returns the same object for equal arguments, so rebuilding a registry optimizer costs nothing.
        batch_size: minibatch size B.
        n_particles: number of independent particles.
        max_steps: horizon; particles still inside are censored there.
        key: a JAX PRNG key; particle ``p``'s noise depends only on (key, p, step).
        chunk_size: steps per compiled chunk (the run can stop after any chunk).
        init: starting point, shape ``(dim,)`` or ``(n_particles, dim)``.
        devices: devices to shard particles over (default: every device; in a multi-process run, see
            ``escape.distributed``, the devices of every process, each process stepping its own particles and
            every process receiving the whole result).
        progress: show a progress bar.
        save_steps: steps (integers in ``[0, max_steps]``) after which every particle's position is saved
            (``positions``), with its optimizer state if ``save_state``. The same stepping and noise as the
            first-passage times (saving changes no particle's path); the run goes on to the last save even if
            every particle has escaped.
        save_state: save the optimizer states too (``states``). States are read between chunks, so each save
            then ends a chunk: saving states at many close steps costs a chunk per save (positions alone are
            recorded inside one chunk when saves are dense).

    Returns:
        An :class:`EscapeResult`.
    """
    if not isinstance(landscape, AbstractLandscape):
        raise ValueError(f"escape_times: landscape must be an AbstractLandscape, got {type(landscape).__name__}")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError("escape_times: optimizer must be an optax.GradientTransformation")
    batch_size = check_integer("escape_times", "batch_size", batch_size, 1)
    n_particles = check_integer("escape_times", "n_particles", n_particles, 1)
    max_steps = check_integer("escape_times", "max_steps", max_steps, 1)
    chunk_size = check_integer("escape_times", "chunk_size", chunk_size, 1)
    raw = np.zeros(0, np.int64) if save_steps is None else np.asarray(save_steps).ravel()
    if raw.size and not (np.issubdtype(raw.dtype, np.integer) or np.all(np.mod(raw, 1) == 0)):
        raise ValueError("escape_times: save_steps must be integers")
    saves = np.unique(raw.astype(np.int64))
    if saves.size and (saves[0] < 0 or saves[-1] > max_steps):
        raise ValueError(f"escape_times: save_steps must lie in [0, max_steps = {max_steps}]")
    devices = list(jax.devices() if devices is None else devices)
    n_dev = len(devices)
    n_words = landscape.noise_words(batch_size)
    unroll = 2 if n_words % 2 else 1  # both words of every threefry call are used
    n_blocks = math.ceil(min(chunk_size, max_steps) / unroll)
    padded = math.ceil(n_particles / n_dev) * n_dev

    dim = landscape.dim
    theta0 = landscape.initial_point() if init is None else jnp.asarray(init)
    if theta0.dtype != jnp.float64:
        theta0 = theta0.astype(jnp.float32)  # a float64 start (under jax x64) runs in float64, all else float32
    if theta0.shape == (dim,):
        theta0 = jnp.broadcast_to(theta0, (n_particles, dim))
    if theta0.shape != (n_particles, dim):
        raise ValueError(f"escape_times: init must have shape ({dim},) or ({n_particles}, {dim}), got {theta0.shape}")
    theta0 = jnp.concatenate([theta0, jnp.broadcast_to(theta0[:1], (padded - n_particles, dim))]).T
    state = _State(
        theta0,
        jax.vmap(optimizer.init, in_axes=-1, out_axes=-1)(theta0),
        jnp.full((padded,), -1, jnp.int32),
        jnp.full((padded,), -1, jnp.int32),
    )
    mesh = Mesh(np.array(devices), (_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = NamedSharding(mesh, PartitionSpec(_AXIS))
    state = _distributed.put(
        state, jax.tree.map(lambda a: NamedSharding(mesh, PartitionSpec(*([None] * (a.ndim - 1)), _AXIS)), state)
    )
    pid = _distributed.put(jnp.arange(padded, dtype=jnp.uint32), sharded)
    # its Python numbers too become (replicated) arrays: arguments of the compiled chunk, not constants
    landscape = _distributed.put(jax.tree.map(jnp.asarray, landscape), NamedSharding(mesh, PartitionSpec()))
    chunk = _make_chunk(optimizer, batch_size, n_words, unroll, n_blocks)
    chunk_last = _make_chunk(optimizer, batch_size, n_words, unroll, n_blocks, masked=True)

    steps_per_chunk = n_blocks * unroll
    positions, states = [], []

    def record():
        positions.append(_distributed.fetch(state.theta).T[:n_particles])
        if save_state:
            states.append(jax.tree.map(lambda a: np.moveaxis(_distributed.fetch(a), -1, 0)[:n_particles],
                                       state.opt_state))

    pending = collections.deque(int(s) for s in saves)
    if pending and pending[0] == 0:
        record()
        pending.popleft()
    recorder = None
    t = 0
    bar = tqdm(total=max_steps, disable=not progress, unit="step", leave=False, dynamic_ncols=True)
    try:
        while t < max_steps:
            start = t - t % unroll
            full_end = min(start + steps_per_chunk, max_steps)
            dense = len(pending) > 2 and pending[2] <= full_end and not save_state
            if dense:  # many saves in this chunk: one recording chunk, positions picked on the host
                recorder = recorder or _make_chunk(optimizer, batch_size, n_words, unroll, n_blocks, True, True)
                state, done, seen = recorder(state, pid, landscape, key, jnp.int32(t), jnp.int32(full_end))
                seen = _distributed.fetch(seen)
                picked = []
                while pending and pending[0] <= full_end:
                    picked.append(pending.popleft() - start - 1)
                positions.extend(np.swapaxes(seen[np.asarray(picked)], 1, 2)[:, :n_particles])
                bar.update(full_end - t)
                t = full_end
            else:
                end = min(full_end, pending[0] if pending else max_steps)
                whole = t == start and end - t == steps_per_chunk
                fn = chunk if whole else chunk_last
                state, done = fn(state, pid, landscape, key, jnp.int32(t), jnp.int32(max_steps if whole else end))
                bar.update(end - t)
                t = end
                if pending and t == pending[0]:
                    record()
                    pending.popleft()
            if bool(done) and not pending:
                break
    finally:
        bar.close()
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs) if xs else None  # noqa: E731
    local = lambda a: jnp.asarray(_distributed.fetch(a))  # noqa: E731  (every process gets every particle)
    return EscapeResult(
        first_passage=local(state.first_passage)[:n_particles],
        first_divergence=local(state.first_divergence)[:n_particles],
        steps_run=t,
        max_steps=max_steps,
        final=local(state.theta).T[:n_particles],
        saved_steps=tuple(int(s) for s in saves),
        positions=jnp.asarray(np.stack(positions)) if positions else None,
        states=stack(states) if save_state else None,
    )
