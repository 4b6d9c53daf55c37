"""Cost of curvature measurements, as ratios measured in one run.

1. An HVP (``jax.jvp`` of ``jax.grad``, escape.curvature's product) against one gradient of the same loss:
   target at most 3x. Median of interleaved timings of the jitted functions.
2. lambda_1 along a training run: Lanczos warm-started from the previous eigenvector against cold starts,
   mean HVPs per estimate (target: at most 30 with warm starts), at the same tolerance.

The model: a fully connected tanh network 64 -> W -> W -> 10 on the digits training set (full batch, MSE on
one-hot targets), W = 1000 by default: about 1.07M parameters.

    python benchmarks/curvature.py [--width 1000] [--steps 200] [--every 10] [--tol 1e-3]
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from escape.curvature import hessian_eigenpairs, hvp
from escape.experiments import check_config, load_config
from escape.experiments._aeos import init_params, load_data, mse_loss
from escape.stability import train_full_batch


def _time(fn, *args, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()

    x, y = load_data(check_config(load_config("aeos")))
    loss = mse_loss(x, y)
    params = init_params(jax.random.key(0), (x.shape[1], args.width, args.width, y.shape[1]))
    n_params = sum(p.size for p in jax.tree.leaves(params))
    grad = jax.jit(jax.grad(loss))
    v = jax.tree.map(jnp.ones_like, params)
    product = jax.jit(lambda p, t: hvp(loss, p, t))
    jax.block_until_ready(grad(params))
    jax.block_until_ready(product(params, v))
    tg, th = [], []
    for _ in range(args.repeats):  # interleaved, so that drifts of the machine hit both alike
        tg += _time(grad, params, repeats=1)
        th += _time(product, params, v, repeats=1)
    g_med, h_med = statistics.median(tg), statistics.median(th)
    print(f"model: tanh MLP 64-{args.width}-{args.width}-10, {n_params:,} parameters, {x.shape[0]} examples (full batch)")
    print(f"gradient {g_med * 1e3:.2f} ms, HVP {h_med * 1e3:.2f} ms (medians of {args.repeats}); "
          f"HVP / gradient = {h_med / g_med:.2f} (target <= 3)")

    opt = optax.adam(args.lr, b1=0.9, b2=0.99)
    state = opt.init(params)
    warm, cold, prev, values = [], [], None, []
    for i in range(args.steps // args.every + 1):
        key = jax.random.key(i)
        w = hessian_eigenpairs(loss, params, key=key, num_iters=100, tol=args.tol, init=prev)
        c = hessian_eigenpairs(loss, params, key=key, num_iters=100, tol=args.tol)
        warm.append(w.num_matvecs)
        cold.append(c.num_matvecs)
        values.append((w.eigenvalues[0], c.eigenvalues[0]))
        prev = w.basis
        params, state, _ = train_full_batch(loss, params, opt, args.every, opt_state=state)
    gap = max(abs(a - b) / abs(b) for a, b in values)
    print(f"lambda_1 every {args.every} of {args.steps} Adam steps (eta {args.lr}), tol {args.tol}: "
          f"warm {statistics.mean(warm):.1f} HVPs per estimate, cold {statistics.mean(cold):.1f}; "
          f"warm / cold = {statistics.mean(warm) / statistics.mean(cold):.2f} (target: warm <= 30); "
          f"largest relative difference of the two estimates {gap:.1e}; lambda_1 from {values[0][0]:.4g} "
          f"to {values[-1][0]:.4g}")


if __name__ == "__main__":
    main()
