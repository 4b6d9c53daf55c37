"""SDE mode against discrete mode: particle-steps per second on the same landscape.

10-d Styblinski-Tang (sharpness 1, Hessian noise), 4096 particles, SGD, Adam and Adai: ``escape_times``
(the discrete optax optimizer) against ``solve_sde(make_dynamics(...), dt = eta)`` (one solver step per
iteration), for the papers' closure (quasi-static) and the improved one (stochastic: bias corrections and a
stochastic ``v``, two Brownian motions per coordinate). Both run ``--steps`` iterations after a compile-and-warm-up call; learning rates are small
enough that no particle escapes, so both run the full horizon. Prints the ratio discrete / SDE time.

    python benchmarks/sde_throughput.py [--steps 2000] [--particles 4096] [--optimizers sgd,adam,adai]
"""

import argparse
import time

import jax

from escape.dynamics import make_dynamics, solve_sde
from escape.landscapes import StyblinskiTang
from escape.optim import make_optimizer
from escape.simulate import escape_times

# (optimizer, its hyperparameters, the model's extra options)
SETTINGS = [
    ("sgd", {"learning_rate": 1e-3}, {}),
    ("adam", {"learning_rate": 1e-3}, {}),
    ("adam", {"learning_rate": 1e-3}, {"closure": "stochastic"}),
    ("adai", {"learning_rate": 1e-3}, {}),
    ("adai", {"learning_rate": 1e-3}, {"closure": "stochastic"}),
]


def _time(fn):
    fn()  # compile and warm up
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out.final)
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--particles", type=int, default=4096)
    p.add_argument("--optimizers", default="sgd,adam,adai", help="comma-separated subset of sgd, adam, adai")
    args = p.parse_args()
    chosen = [v.strip() for v in args.optimizers.split(",") if v.strip()]
    unknown = sorted(set(chosen) - {name for name, _, _ in SETTINGS})
    if unknown or not chosen:
        p.error(f"--optimizers: unknown {', '.join(unknown)}; choose from sgd, adam, adai")
    land = StyblinskiTang(dim=10, sharpness=1.0, noise="hessian")
    key = jax.random.key(0)
    n, steps = args.particles, args.steps
    print(f"devices: {jax.devices()}; {n} particles x {steps} steps, 10-d Styblinski-Tang, hessian noise")
    for name, hyper, model in (s for s in SETTINGS if s[0] in chosen):
        opt = make_optimizer(name, **hyper)
        dyn = make_dynamics(name, land, batch_size=1, **hyper, **model)
        eta = hyper["learning_rate"]
        td = _time(lambda: escape_times(land, opt, batch_size=1, n_particles=n, max_steps=steps, key=key, chunk_size=1024))
        ts = _time(lambda: solve_sde(dyn, n_particles=n, t1=eta * steps, dt=eta, key=key, chunk_size=1024))
        rd, rs = n * steps / td, n * steps / ts
        closure = model.get("closure", "quasi-static" if name != "sgd" else "-")
        print(f"{name:5s} {closure:12s} discrete {rd:.3e} particle-steps/s   sde {rs:.3e} particle-steps/s   "
              f"sde time / discrete time = {td and ts / td:.2f}")


if __name__ == "__main__":
    main()
