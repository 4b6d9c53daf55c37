"""Fixed-step SDE solves of many particles: first-passage times and saved states (MSD).

Naive ``jax.vmap(diffrax.diffeqsolve)`` use is slow mostly because of the Brownian path: a
``diffrax.VirtualBrownianTree`` descends ``log2(t1 / tol)`` levels of random draws for every increment
(25-30x the rest of a step here); dense ``SaveAt(ts=...)`` costs another 2x. With a constant step, no
backpropagation, ``ForwardMode`` and a boolean ``Event``, ``diffeqsolve`` itself costs little (measured in
``docs/api/dynamics.md``).

:func:`solve_sde` keeps diffrax's terms and solvers and drives them with diffrax's per-step API
``solver.step(terms, t0, t1, y, ...)``, vmapped over particles inside a jitted ``fori_loop`` whose step count
and ``dt`` are traced (no recompilation across horizons). Increments come from counter-based words
(``CounterBrownianPath``), escape is tested after every step (the in-loop equivalent of a boolean
``diffrax.Event``), the run stops after the first chunk in which every particle is done, and states are saved
only at chunk boundaries placed on the requested times. ``method="diffeqsolve"`` runs the same model through
``jax.vmap(diffrax.diffeqsolve)`` with a boolean ``diffrax.Event`` (for cross-checks and benchmarks).
"""

from collections.abc import Callable
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .. import _distributed
from .._checks import check_integer, check_positive
from .._custom_types import Array, Bool, Float, Int, Key, Points
from ..simulate._engine import passage_masks
from ._base import AbstractDynamics
from ._brownian import BROWNIAN_KINDS, BrownianKind, BrownianSpec, counter_words, step_key, step_normals

__all__ = ["SDEResult", "solve_sde"]


class SDEResult(eqx.Module):
    """Raw result of :func:`solve_sde`, one entry per particle; compatible with ``escape.stats``.

    Attributes:
        first_passage_step: solver steps taken when the escape test first held (-1: never).
        first_divergence_step: solver steps taken when the state first became non-finite (-1: never).
        n_steps: solver steps run (``t1 / dt`` unless every particle finished earlier).
        t1: the horizon asked for (dynamical time).
        dt: the step (dynamical time).
        learning_rate: ``eta`` of the model: ``T = t / eta`` iterations.
        final: states at the end, shape ``(particles, components, dim)``.
        ts: the save times, shape ``(saves,)``.
        ys: states at ``ts``, shape ``(saves, particles, components, dim)``.
        theta0: starting positions, shape ``(particles, dim)``.
        components: names of the state's rows.

    ``first_passage`` / ``steps_run`` (iterations, float64) and ``first_passage_time`` / ``t_run``
    (dynamical time) are computed from the step counts with one multiplier each, so an escape at the last
    step never lies beyond the horizon: ``escape.stats.censored_rate(result)`` reads this result as it
    reads an ``EscapeResult`` and gives a rate per iteration.
    """

    first_passage_step: Int[Array, " particles"]
    first_divergence_step: Int[Array, " particles"]
    n_steps: int = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    learning_rate: float = eqx.field(static=True)
    final: Float[Array, "particles components dim"]
    ts: Float[Array, " saves"]
    ys: Float[Array, "saves particles components dim"]
    theta0: Points
    components: tuple[str, ...] = eqx.field(static=True)

    def _scaled(self, steps, unit: float) -> np.ndarray:
        k = np.asarray(steps)
        return np.where(k >= 0, k * unit, -1.0)

    @property
    def first_passage_time(self) -> np.ndarray:
        """Dynamical time at the end of the step where the escape test first held (-1: never)."""
        return self._scaled(self.first_passage_step, self.dt)

    @property
    def first_passage(self) -> np.ndarray:
        """Escape time in iterations ``t / eta`` (-1: never)."""
        return self._scaled(self.first_passage_step, self.dt / self.learning_rate)

    @property
    def first_divergence(self) -> np.ndarray:
        return self._scaled(self.first_divergence_step, self.dt / self.learning_rate)

    @property
    def t_run(self) -> float:
        """Dynamical time simulated."""
        return self.n_steps * self.dt

    @property
    def steps_run(self) -> float:
        """The observation horizon in iterations, ``t_run / eta``."""
        return self.n_steps * (self.dt / self.learning_rate)

    @property
    def max_steps(self) -> float:
        return self.t1 / self.learning_rate

    @property
    def escaped(self) -> Bool[Array, " particles"]:
        return passage_masks(self.first_passage_step, self.first_divergence_step)[0]

    @property
    def diverged(self) -> Bool[Array, " particles"]:
        return passage_masks(self.first_passage_step, self.first_divergence_step)[1]

    @property
    def censored(self) -> Bool[Array, " particles"]:
        return passage_masks(self.first_passage_step, self.first_divergence_step)[2]

    @property
    def n_particles(self) -> int:
        return int(self.first_passage_step.shape[0])

    @property
    def positions(self) -> Float[Array, "saves particles dim"]:
        """``theta`` at the save times."""
        return self.ys[:, :, 0, :]

    @property
    def msd(self) -> Float[Array, "saves dim"]:
        """Mean over particles of ``(theta(t) - theta(0))^2`` per coordinate at the save times."""
        return jnp.mean((self.positions - self.theta0[None]) ** 2, axis=1)

    def summary(self) -> dict:
        esc = np.asarray(self.escaped)
        fp = self.first_passage
        return {
            "particles": self.n_particles,
            "escapes": int(esc.sum()),
            "censored": int(np.asarray(self.censored).sum()),
            "diverged": int(np.asarray(self.diverged).sum()),
            "mean_escape_step": float(fp[esc].mean()) if esc.any() else float("nan"),
            "steps_run": self.steps_run,
            "solver_steps": self.n_steps,
        }


class _State(eqx.Module):
    y: Float[Array, "particles components dim"]
    first_passage: Int[Array, " particles"]  # solver steps, -1: never
    first_divergence: Int[Array, " particles"]


def _grid_index(name: str, t: np.ndarray, dt: float) -> np.ndarray:
    k = np.rint(t / dt)
    if np.any(np.abs(k * dt - t) > 1e-6 * np.maximum(np.abs(t), dt)):
        raise ValueError(f"solve_sde: {name} must be multiples of dt = {dt!r}; got {t.tolist()}")
    return k.astype(np.int64)


def _particle_step(dynamics, solver, spec, y, particle, t0, t1, normals=None):
    """One diffrax solver step of one particle. The solver state is rebuilt by ``init`` every step: exact
    for every solver (FSAL solvers only lose their cached first stage), and free for the fixed-step SDE
    solvers used here, whose state is ``None``. ``normals``: the step's precomputed counter normals."""
    terms = dynamics.terms(spec(particle) if normals is None else spec(particle, normals), _stratonovich(solver))
    state = solver.init(terms, t0, t1, y, None)
    y1, _, _, _, _ = solver.step(terms, t0, t1, y, None, state, made_jump=False)
    return y1


def _stratonovich(solver) -> bool:
    """Whether ``solver`` converges to the Stratonovich solution (then the model's terms carry its Ito correction)."""
    return isinstance(solver, diffrax.AbstractStratonovichSolver)


@eqx.filter_jit
def _advance(dynamics, solver, spec, detect: bool, state: _State, pid, n0, n_steps, dt):
    """``n_steps`` solver steps from global step ``n0`` for every particle (a ``fori_loop``).

    With counter paths the normals of every particle are drawn in one vectorised pass per step, one step
    ahead, and carried in the loop state: a carried array is materialised, so the inverse-erf runs in its
    own kernel with particles on the minor axis (where it vectorises on CPU; fused into the solver step it
    runs along the 10-long state axis, ~7x slower), and the words' hash is evaluated once per word.
    """
    # Counter paths: draw every particle's normals for the step in one vectorised pass (same words).
    counter = isinstance(spec, BrownianSpec) and spec.kind == "counter"
    n_words = counter_words(spec.shape, spec.levy_area) if counter else 0
    step = jax.vmap(_particle_step, in_axes=(None, None, None, 0, 0, None, None, 0 if counter else None))
    escaped = jax.vmap(dynamics.landscape.escaped)
    dtype = state.y.dtype

    def draw(t):  # (particles, n_words) normals of the step starting at t, computed particles-last
        return step_normals(step_key(spec.key, t), pid, n_words).T

    def body(i, carry):
        s, normals = carry
        n = n0 + i
        t0 = n.astype(dtype) * dt
        t1 = (n + 1).astype(dtype) * dt
        y = step(dynamics, solver, spec, s.y, pid, t0, t1, normals if counter else None)
        if counter:
            normals = draw(t1)
        fd = s.first_divergence
        bad = (fd < 0) & ~jnp.all(jnp.isfinite(y), axis=(1, 2))
        fd = jnp.where(bad, n + 1, fd)
        fp = s.first_passage
        if detect:
            hit = (fp < 0) & (fd < 0) & escaped(y[:, 0, :])
            fp = jnp.where(hit, n + 1, fp)
        return _State(y, fp, fd), normals

    normals0 = draw(n0.astype(dtype) * dt) if counter else jnp.zeros((0,), dtype)
    state, _ = jax.lax.fori_loop(0, n_steps, body, (state, normals0))
    done = jnp.all((state.first_passage >= 0) | (state.first_divergence >= 0))
    return state, done




def solve_sde(
    dynamics: AbstractDynamics,
    *,
    n_particles: int,
    t1: float,
    dt: float,
    key: Key,
    saveat_times=None,
    escape: bool = True,
    init: Array | None = None,
    solver: diffrax.AbstractSolver | None = None,
    brownian: BrownianKind | Callable[[Array], diffrax.AbstractBrownianPath] = "counter",
    brownian_tol: float | None = None,
    method: Literal["scan", "diffeqsolve"] = "scan",
    chunk_size: int = 1024,
    progress: bool = False,
) -> SDEResult:
    """Solve ``dynamics`` for ``n_particles`` independent particles with a constant step.

    Each particle starts at ``init`` (default ``landscape.initial_point()``) in the model's initial state
    (velocity 0, ``v`` stationary), runs ``t1 / dt`` solver steps of ``solver`` (default
    ``dynamics.default_solver()``, Euler-Maruyama), and is tested for escape (``landscape.escaped``) and
    divergence after every step. With ``escape=True`` the run stops early once every particle has escaped
    or diverged and every save time is passed.

    Args:
        dynamics: an [`escape.dynamics.AbstractDynamics`][] (built from the optimizer's hyperparameters).
        n_particles: number of particles.
        t1: horizon in dynamical time (``eta * max_steps`` for a horizon of ``max_steps`` iterations); a
            multiple of ``dt``.
        dt: the step in dynamical time (``eta`` is one iteration; ``eta / k`` takes ``k`` steps per iteration).
        key: a PRNG key. With ``brownian="counter"`` particle ``p``'s noise depends only on ``(key, p, t)``.
        saveat_times: dynamical times (multiples of ``dt``, in ``[0, t1]``) at which to save every
            particle's state; default none.
        escape: whether to test for escape (``False``: run to ``t1``, e.g. for MSD from a saddle).
        init: starting positions, shape ``(dim,)`` or ``(n_particles, dim)``; their dtype sets the state's.
        solver: a fixed-step diffrax SDE solver: ``Euler`` (Ito), ``ItoMilstein`` (Ito, commutative noise),
            ``SEA``/``ShARK`` (additive noise only, see ``dynamics.additive_noise()``).
        brownian: ``"counter"`` (default, fastest), ``"unsafe"`` (``diffrax.UnsafeBrownianPath``),
            ``"virtual"`` (``diffrax.VirtualBrownianTree``: the same path for every ``dt``), or an
            ``eqx.Module`` mapping a particle index (uint32 scalar) to a diffrax Brownian path of shape
            ``dynamics.brownian_shape(dtype)`` with the Levy area the solver needs (then ``key`` is unused).
        brownian_tol: the virtual tree's tolerance (default ``dt / 8``; fix it across step sizes to keep
            the same path).
        method: ``"scan"`` (default) or ``"diffeqsolve"`` (``jax.vmap(diffrax.diffeqsolve)``, ``ForwardMode``,
            a boolean ``diffrax.Event``; for cross-checks: no early stop, one compilation per horizon,
            divergence seen only at the end, saved states after a particle's escape are inf).
        chunk_size: solver steps per compiled call (the run can stop after any chunk).
        progress: show a progress bar.

    With ``method="scan"`` the particles are sharded over every device (of every process, in a multi-process
    run: ``escape.distributed``); the result is bit-identical whatever the number of devices.

    Returns:
        An [`escape.dynamics.SDEResult`][].
    """
    if not isinstance(dynamics, AbstractDynamics):
        raise ValueError(f"solve_sde: dynamics must be an AbstractDynamics, got {type(dynamics).__name__}")
    n_particles = check_integer("solve_sde", "n_particles", n_particles, 1)
    chunk_size = check_integer("solve_sde", "chunk_size", chunk_size, 1)
    t1 = check_positive("solve_sde", "t1", t1)
    dt = check_positive("solve_sde", "dt", dt)
    if not (brownian in BROWNIAN_KINDS or callable(brownian)):
        raise ValueError(
            f"solve_sde: brownian must be one of {BROWNIAN_KINDS} or a callable particle -> path, got {brownian!r}"
        )
    if method not in ("scan", "diffeqsolve"):
        raise ValueError(f"solve_sde: method must be 'scan' or 'diffeqsolve', got {method!r}")
    solver = dynamics.default_solver() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(f"solve_sde: solver must be a diffrax solver, got {type(solver).__name__}")
    n_total = int(_grid_index("t1", np.array([t1]), dt)[0])
    ts = np.zeros((0,)) if saveat_times is None else np.atleast_1d(np.asarray(saveat_times, dtype=np.float64))
    if ts.ndim != 1 or np.any(np.diff(ts) < 0) or np.any(ts < 0) or np.any(ts > t1 * (1 + 1e-9)):
        raise ValueError("solve_sde: saveat_times must be a sorted 1-d list of times in [0, t1]")
    save_steps = _grid_index("saveat_times", ts, dt)

    dim = dynamics.dim
    theta0 = dynamics.landscape.initial_point() if init is None else jnp.asarray(init)
    if theta0.shape == (dim,):
        theta0 = jnp.broadcast_to(theta0, (n_particles, dim))
    if theta0.shape != (n_particles, dim):
        raise ValueError(f"solve_sde: init must have shape ({dim},) or ({n_particles}, {dim}), got {theta0.shape}")
    if not jnp.issubdtype(theta0.dtype, jnp.floating):
        theta0 = theta0.astype(jnp.float32)
    dtype = theta0.dtype
    y0 = jax.vmap(dynamics.initial_state)(theta0).astype(dtype)
    levy_area = getattr(solver, "minimal_levy_area", diffrax.BrownianIncrement)
    if levy_area is diffrax.AbstractSpaceTimeLevyArea:
        levy_area = diffrax.SpaceTimeLevyArea
    elif levy_area is diffrax.AbstractBrownianIncrement:
        levy_area = diffrax.BrownianIncrement
    tol = dt / 8 if brownian_tol is None else check_positive("solve_sde", "brownian_tol", brownian_tol)
    if callable(brownian):
        spec = brownian
    else:
        spec = BrownianSpec(brownian, dynamics.brownian_shape(dtype), levy_area, key, float(t1), tol)
    pid = jnp.arange(n_particles, dtype=jnp.uint32)
    common = dict(
        t1=float(t1),
        dt=float(dt),
        learning_rate=dynamics.learning_rate,
        ts=jnp.asarray(save_steps * dt, dtype),
        theta0=theta0,
        components=tuple(dynamics.components),
    )
    if method == "diffeqsolve":
        return _solve_diffeqsolve(dynamics, solver, spec, y0, pid, n_total, escape, common)

    devices = jax.devices()
    padded = -(-n_particles // len(devices)) * len(devices)
    mesh = jax.sharding.Mesh(np.array(devices), ("particles",))
    by_particle = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("particles"))
    y_pad = jnp.concatenate([y0, jnp.broadcast_to(y0[:1], (padded - n_particles,) + y0.shape[1:])])
    state = _State(y_pad, jnp.full((padded,), -1, jnp.int32), jnp.full((padded,), -1, jnp.int32))
    state = _distributed.put(state, by_particle)
    pid = _distributed.put(jnp.arange(padded, dtype=jnp.uint32), by_particle)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    dynamics, spec = _distributed.put((dynamics, spec), replicated)
    local = lambda a: jnp.asarray(_distributed.fetch(a)[:n_particles])  # noqa: E731
    saves = []
    si = 0
    while si < len(save_steps) and save_steps[si] == 0:
        saves.append(local(state.y))
        si += 1
    n = 0
    dt_arr = jnp.asarray(dt, dtype)
    bar = tqdm(total=n_total, disable=not progress, unit="step", leave=False, dynamic_ncols=True)
    try:
        while n < n_total:
            stop = min(n + chunk_size, n_total)
            if si < len(save_steps):
                stop = min(stop, int(save_steps[si]))
            state, done = _advance(
                dynamics, solver, spec, bool(escape), state, pid, jnp.int32(n), jnp.int32(stop - n), dt_arr
            )
            bar.update(stop - n)
            n = stop
            while si < len(save_steps) and save_steps[si] == n:
                saves.append(local(state.y))
                si += 1
            if escape and si == len(save_steps) and bool(done):
                break
    finally:
        bar.close()
    ys = jnp.stack(saves) if saves else jnp.zeros((0,) + y0.shape, dtype)
    return SDEResult(
        first_passage_step=local(state.first_passage),
        first_divergence_step=local(state.first_divergence),
        n_steps=n,
        final=local(state.y),
        ys=ys,
        **common,
    )


@eqx.filter_jit
def _diffeqsolve_particles(dynamics, solver, spec, y0, pid, ts, dt, n_total: int, escape: bool):
    """``jax.vmap(diffrax.diffeqsolve)`` over particles with a boolean ``diffrax.Event`` for escape."""
    dtype = y0.dtype
    subs = [diffrax.SubSaveAt(t1=True)] + ([diffrax.SubSaveAt(ts=ts)] if ts.shape[0] else [])
    saveat = diffrax.SaveAt(subs=subs)
    event = diffrax.Event(lambda t, y, args, **kwargs: dynamics.landscape.escaped(y[0])) if escape else None

    def one(y, p):
        sol = diffrax.diffeqsolve(
            dynamics.terms(spec(p), _stratonovich(solver)),
            solver,
            t0=jnp.zeros((), dtype),
            t1=n_total * dt,
            dt0=dt,
            y0=y,
            saveat=saveat,
            event=event,
            max_steps=n_total + 1,
            adjoint=diffrax.ForwardMode(),
            throw=False,
        )
        t_end, y_end = sol.ts[0][0], sol.ys[0][0]
        ys = sol.ys[1] if ts.shape[0] else jnp.zeros((0,) + y.shape, dtype)
        hit = sol.event_mask if escape else jnp.asarray(False)
        return jnp.where(hit, jnp.rint(t_end / dt).astype(jnp.int32), -1), ys, y_end

    return jax.vmap(one)(y0, pid)


def _solve_diffeqsolve(dynamics, solver, spec, y0, pid, n_total, escape, common) -> SDEResult:
    dt = jnp.asarray(common["dt"], y0.dtype)
    fp, ys, final = _diffeqsolve_particles(dynamics, solver, spec, y0, pid, common["ts"], dt, n_total, bool(escape))
    # divergence is only known at the end here (no per-step record): marked at the last step
    fd = jnp.where(jnp.all(jnp.isfinite(final), axis=(1, 2)) | (fp >= 0), -1, n_total).astype(jnp.int32)
    return SDEResult(
        first_passage_step=fp,
        first_divergence_step=fd,
        n_steps=n_total,
        final=final,
        ys=jnp.moveaxis(ys, 1, 0),
        **common,
    )
