"""Particle-steps per second: the escape engine against a vectorised NumPy loop doing the same work.

Work per particle-step (SGD on 10-d Styblinski-Tang, data noise with a fixed set of 50000 samples, batch 1):
draw one sample index, gather the sample, evaluate the per-sample gradient, update, test escape, record the
first-passage step. The NumPy loop is written with in-place operations and preallocated buffers, vectorised
over particles (the way one would write it by hand). The learning rate is small enough that nobody escapes,
so both run every step.

On a CPU the engine shards particles over one XLA host device per core; this script sets
``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` unless XLA_FLAGS is already set.

    python benchmarks/escape_throughput.py [--particles 4096] [--steps 16384] [--numpy-steps 1000]
"""

import argparse
import os
import time

if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count()}"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from escape.landscapes import StyblinskiTang  # noqa: E402
from escape.simulate import escape_times  # noqa: E402


def numpy_idiomatic(landscape: StyblinskiTang, lr: float, n: int, steps: int, seed: int = 0) -> float:
    """Seconds for ``steps`` steps of ``n`` particles, written as the formulas read (temporaries, ``u**3``)."""
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
    """Seconds for ``steps`` steps of ``n`` particles (same work as the engine), tuned: in place, no pow."""
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=16384)
    ap.add_argument("--numpy-steps", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; medians are reported")
    args = ap.parse_args()
    st = StyblinskiTang(dim=10, sharpness=1.0, noise="data", n_data=50_000)
    lr = 1e-4
    n = args.particles
    kw = dict(batch_size=1, n_particles=n, key=jax.random.key(0), chunk_size=args.chunk)
    opt = optax.sgd(lr)  # one object: compiled chunks are cached per optimizer object
    escape_times(st, opt, max_steps=args.chunk, **kw).first_passage.block_until_ready()  # compile

    def engine_rate():
        t0 = time.perf_counter()
        res = escape_times(st, opt, max_steps=args.steps, **kw)
        res.first_passage.block_until_ready()
        dt = time.perf_counter() - t0
        assert res.steps_run == args.steps and not bool(res.escaped.any())
        return n * args.steps / dt

    # The machine is shared and noisy: interleave the three measurements and report medians.
    rates = {"engine": [], "tuned": [], "idiomatic": []}
    for _ in range(args.repeats):
        rates["engine"].append(engine_rate())
        rates["tuned"].append(n * args.numpy_steps / numpy_loop(st, lr, n, args.numpy_steps))
        rates["idiomatic"].append(n * args.numpy_steps / numpy_idiomatic(st, lr, n, args.numpy_steps))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}; particles {n}; dim 10; batch 1")
    print(f"medians of {args.repeats} interleaved runs (engine {args.steps} steps, numpy {args.numpy_steps} steps)")
    for name, label in (("engine", "engine"), ("tuned", "numpy (tuned, in place)"), ("idiomatic", "numpy (idiomatic)")):
        runs = ", ".join(f"{r:.2e}" for r in rates[name])
        print(f"{label:24s}: {med[name]:.3e} particle-steps/s  [{runs}]")
    print(f"ratio engine / tuned numpy     : {med['engine'] / med['tuned']:.1f}x")
    print(f"ratio engine / idiomatic numpy : {med['engine'] / med['idiomatic']:.1f}x")


if __name__ == "__main__":
    main()
