"""Particle-steps per second: the escape engine against a vectorised NumPy loop doing the same work.

Two workloads, SGD on 10-d Styblinski-Tang with batch 1:

* ``fresh`` (the main job, ``escape run fig6``): a fresh Gaussian sample x ~ N(0, I) every step: draw 10
  normals, evaluate the per-sample gradient, update, test escape, record the first-passage step. The NumPy
  loop draws its normals with NumPy's fastest Gaussian generator (``Generator.standard_normal`` in float32,
  ziggurat, written into a preallocated buffer).
* ``fixed``: a fixed data set of 50000 samples: draw one index, gather the sample row, then the same.

The NumPy loops are written with in-place operations and preallocated buffers, vectorised over particles (the
way one would write them by hand), plus an "idiomatic" version written as the formulas read. The learning
rate is small enough that nobody escapes, so all run every step. For the fresh workload the script also
prints the share of a step spent generating the normals: the same words and normals computed alone, in the
engine's layout (and NumPy's ``standard_normal`` alone for the NumPy loop).

The XLA host-device layout is the CLI's default (``escape.configure_cpu``: one host device per core) unless
XLA_FLAGS or ``--devices`` say otherwise.

    python benchmarks/escape_throughput.py [--workload fresh fixed] [--particles 8192] [--steps 16384]
"""

import argparse
import sys
import time

from escape import configure_cpu

if __name__ == "__main__":  # the layout must be fixed before JAX starts its backend
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--devices", type=int, default=None)
    configure_cpu(_pre.parse_known_args()[0].devices, owner="--devices")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from escape import _random  # noqa: E402
from escape.landscapes import StyblinskiTang  # noqa: E402
from escape.simulate import escape_times  # noqa: E402


def numpy_idiomatic(landscape: StyblinskiTang, lr: float, n: int, steps: int, seed: int = 0) -> float:
    """Fixed set: seconds for ``steps`` steps of ``n`` particles, written as the formulas read (``u**3``)."""
    rng = np.random.default_rng(seed)
    data = np.asarray(landscape.data)
    s = float(landscape.scale)
    u_sad = np.asarray(landscape.u_saddle)
    theta = np.broadcast_to(np.asarray(landscape.initial_point()), (n, landscape.dim)).copy()
    fp = np.full(n, -1, np.int64)
    t0 = time.perf_counter()
    for t in range(steps):
        x = data[rng.integers(0, data.shape[0], n)]
        u = s * theta - x
        theta = theta - lr * s * (2 * u**3 - 16 * u + 2.5)
        esc = np.any(s * theta < u_sad, axis=1)
        fp = np.where((fp < 0) & esc, t + 1, fp)
    return time.perf_counter() - t0


def numpy_loop(landscape: StyblinskiTang, lr: float, n: int, steps: int, seed: int = 0) -> float:
    """Fixed set: seconds for ``steps`` steps of ``n`` particles (the engine's work), tuned: in place, no pow."""
    rng = np.random.default_rng(seed)
    data = np.asarray(landscape.data)
    s = float(landscape.scale)
    u_sad = np.asarray(landscape.u_saddle)
    theta = np.broadcast_to(np.asarray(landscape.initial_point()), (n, landscape.dim)).copy()
    u = np.empty_like(theta)
    g = np.empty_like(theta)
    fp = np.full(n, -1, np.int64)
    t0 = time.perf_counter()
    for t in range(steps):
        idx = rng.integers(0, data.shape[0], n)
        np.multiply(theta, s, out=u)
        u -= data[idx]
        np.multiply(u, u, out=g)
        g -= 8.0
        g *= u
        g *= 2.0
        g += 2.5  # g = 2u^3 - 16u + 2.5
        theta -= (lr * s) * g
        esc = (theta * s < u_sad).any(axis=1)
        fp[(fp < 0) & esc] = t + 1
    return time.perf_counter() - t0


def numpy_fresh_idiomatic(landscape: StyblinskiTang, lr: float, n: int, steps: int, seed: int = 0) -> float:
    """Fresh samples: seconds for ``steps`` steps of ``n`` particles, written as the formulas read."""
    rng = np.random.default_rng(seed)
    s = float(landscape.scale)
    u_sad = np.asarray(landscape.u_saddle, np.float32)
    theta = np.broadcast_to(np.asarray(landscape.initial_point(), np.float32), (n, landscape.dim)).copy()
    fp = np.full(n, -1, np.int64)
    t0 = time.perf_counter()
    for t in range(steps):
        x = rng.standard_normal((n, landscape.dim), dtype=np.float32)
        u = s * theta - x
        theta = theta - lr * s * (2 * u**3 - 16 * u + 2.5)
        esc = np.any(s * theta < u_sad, axis=1)
        fp = np.where((fp < 0) & esc, t + 1, fp)
    return time.perf_counter() - t0


def numpy_fresh(landscape: StyblinskiTang, lr: float, n: int, steps: int, seed: int = 0,
                normals_only: bool = False) -> float:
    """Fresh samples: seconds for ``steps`` steps of ``n`` particles, tuned (float32, in place, the normals
    written by ``standard_normal(out=...)``); ``normals_only``: the normal draws alone."""
    rng = np.random.default_rng(seed)
    s = np.float32(landscape.scale)
    step = np.float32(lr * landscape.scale)
    u_sad = np.asarray(landscape.u_saddle, np.float32)
    theta = np.broadcast_to(np.asarray(landscape.initial_point(), np.float32), (n, landscape.dim)).copy()
    x = np.empty_like(theta)
    u = np.empty_like(theta)
    g = np.empty_like(theta)
    fp = np.full(n, -1, np.int64)
    t0 = time.perf_counter()
    for t in range(steps):
        rng.standard_normal(dtype=np.float32, out=x)
        if normals_only:
            continue
        np.multiply(theta, s, out=u)
        u -= x
        np.multiply(u, u, out=g)
        g -= 8.0
        g *= u
        g *= 2.0
        g += 2.5  # g = 2u^3 - 16u + 2.5
        g *= step
        theta -= g
        esc = (theta * s < u_sad).any(axis=1)
        fp[(fp < 0) & esc] = t + 1
    return time.perf_counter() - t0


def normals_alone(n: int, dim: int, steps: int, transform: bool):
    """A function timing the engine's noise for ``steps`` steps alone: per step one block of ``dim`` words per
    particle (the engine's ``block_words``, particles last, sharded the same way), turned into normals when
    ``transform``, summed into a per-particle accumulator so nothing is optimised away."""
    sharding = NamedSharding(jax.sharding.Mesh(np.array(jax.devices()), ("p",)), PartitionSpec(None, "p"))
    pid = jax.device_put(jnp.arange(n, dtype=jnp.uint32)[None, :], sharding)
    acc0 = jax.device_put(jnp.zeros((dim + dim % 2, n), jnp.float32), sharding)
    key = jax.random.key(0)

    @jax.jit
    def run(acc, pid):
        def body(acc, block):
            w = jax.lax.optimization_barrier(_random.block_words(key, block, pid[0], dim + dim % 2))
            z = _random.normal(w) if transform else w.astype(jnp.float32)
            return acc + z, None
        return jax.lax.scan(body, acc, jnp.arange(steps, dtype=jnp.int32))[0]

    run(acc0, pid).block_until_ready()

    def timed():
        t0 = time.perf_counter()
        run(acc0, pid).block_until_ready()
        return time.perf_counter() - t0
    return timed


def _median_rates(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Interleaved repetitions of every rate function (the machine is shared and noisy); medians and runs."""
    runs = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            runs[k].append(f())
    return {k: float(np.median(v)) for k, v in runs.items()}, runs


def bench(workload: str, args) -> dict:
    fresh = workload == "fresh"
    st = StyblinskiTang(dim=10, sharpness=1.0, noise="data", n_data="fresh" if fresh else 50_000)
    lr = 1e-4
    n = args.particles
    ns = args.numpy_steps
    kw = dict(batch_size=1, n_particles=n, key=jax.random.key(0), chunk_size=args.chunk)
    opt = optax.sgd(lr)  # one object: compiled chunks are cached per optimizer object
    escape_times(st, opt, max_steps=args.chunk, **kw).first_passage.block_until_ready()  # compile

    def engine():
        t0 = time.perf_counter()
        res = escape_times(st, opt, max_steps=args.steps, **kw)
        res.first_passage.block_until_ready()
        dt = time.perf_counter() - t0
        assert res.steps_run == args.steps and not bool(res.escaped.any())
        return n * args.steps / dt

    if fresh:
        words_t = normals_alone(n, st.dim, args.steps, transform=False)
        normals_t = normals_alone(n, st.dim, args.steps, transform=True)
        fns = {"engine": engine,
               "tuned": lambda: n * ns / numpy_fresh(st, lr, n, ns),
               "idiomatic": lambda: n * ns / numpy_fresh_idiomatic(st, lr, n, ns),
               "engine normals": lambda: n * args.steps / normals_t(),
               "engine words": lambda: n * args.steps / words_t(),
               "numpy normals": lambda: n * ns / numpy_fresh(st, lr, n, ns, normals_only=True)}
    else:
        fns = {"engine": engine,
               "tuned": lambda: n * ns / numpy_loop(st, lr, n, ns),
               "idiomatic": lambda: n * ns / numpy_idiomatic(st, lr, n, ns)}
    med, runs = _median_rates(fns, args.repeats)
    print(f"\n[{workload}] {'fresh N(0, I) sample every step' if fresh else 'fixed set of 50000 samples'}; "
          f"particles {n}; dim 10; batch 1; medians of {args.repeats} interleaved runs "
          f"(engine {args.steps} steps, numpy {ns} steps)")
    labels = {"engine": "engine", "tuned": "numpy (tuned, in place)", "idiomatic": "numpy (idiomatic)",
              "engine normals": "engine's normals alone", "engine words": "engine's words alone",
              "numpy normals": "numpy's normals alone"}
    for k, f in fns.items():
        print(f"  {labels[k]:26s}: {med[k]:.3e} particle-steps/s  [{', '.join(f'{r:.2e}' for r in runs[k])}]")
    print(f"  ratio engine / tuned numpy     : {med['engine'] / med['tuned']:.1f}x")
    print(f"  ratio engine / idiomatic numpy : {med['engine'] / med['idiomatic']:.1f}x")
    if fresh:  # time per step = 1 / rate: share = rate(step) / rate(normals alone)
        print(f"  share of the engine's step generating normals: {med['engine'] / med['engine normals']:.0%} "
              f"(the threefry words alone: {med['engine'] / med['engine words']:.0%})")
        print(f"  share of numpy's step generating normals     : {med['tuned'] / med['numpy normals']:.0%}")
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", nargs="+", choices=("fresh", "fixed"), default=["fresh", "fixed"])
    ap.add_argument("--particles", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=16384)
    ap.add_argument("--numpy-steps", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; medians are reported")
    ap.add_argument("--devices", type=int, default=None, help="XLA host devices (default: escape's CPU layout)")
    args = ap.parse_args()
    for name, v in (("--particles", args.particles), ("--steps", args.steps), ("--numpy-steps", args.numpy_steps),
                    ("--chunk", args.chunk), ("--repeats", args.repeats)):
        if v < 1:
            sys.exit(f"escape_throughput: {name} must be >= 1, got {v}")
    print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}")
    for w in args.workload:
        bench(w, args)


if __name__ == "__main__":
    main()
